"""Scenarios are data: a case, its steps, and the values and matchers in them.

A scenario file ``scenarios/<area>/<topic>.yaml`` holds the cases of one
topic; a case's id is ``<area>/<topic>/<case>`` and never changes once
published.  A case reads like this::

    - case: coalesce-foreground
      title: Two foreground submits with the same unique share one job
      level: MUST
      source: PROTOCOL "SUBMIT_JOB"; gearmand job.cc
      requirement: >
        A submit whose function and unique match a job in the queue gets that
        job's handle, and its client hears the job's results.
      sections: ["3.3"]
      steps:
        - alice send SUBMIT_JOB: {function: $fn, unique: $u, data: x}
        - alice expect JOB_CREATED: {handle: $h}
        - bob send SUBMIT_JOB: {function: $fn, unique: $u, data: y}
        - bob expect JOB_CREATED: {handle: $h}        # the same handle

A step is ``CONNECTION VERB [PACKET]``, alone or as the key of its arguments;
connections open on first use.  ``$name`` is a variable: used in a send
before it has a value it gets a fresh name unique to this run (so cases can
share a server), used in an expect before it has a value it captures what
arrived.  Each verb (its step class, and how it is read, played, written and
described) is one record of the verb table, ``conformance.verbs``; files are
read by ``conformance.loader``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from conformance import services
from reference_server.protocol import PacketType

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
LEVELS = ("MUST", "SHOULD", "MAY")
VERDICT_NAMES = ("PASS", "NON-STRICT", "INFO", "FAIL")
VARIABLE = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")
#: How a connection of a TLS case is made, when not with the run's TLS settings.
TLS_MODES = ("plaintext", "untrusted", "anonymous")


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message is ``file:line: field: what``."""


@dataclass(frozen=True)
class Value:
    """Bytes to send, or to compare with: a string with ``$variables``, or the
    repetition of one (``{repeat: x, times: 65}``), or hex (``{hex: "00 52"}``)."""

    text: str = ""
    times: int = 1
    raw: bytes | None = None

    @property
    def variables(self) -> list[str]:
        return [m.strip("{}") for m in VARIABLE.findall(self.text) if m != "$"]

    @property
    def capture(self) -> str | None:
        """The variable name when the whole value is one variable."""
        match = VARIABLE.fullmatch(self.text)
        if match and match.group(1) != "$" and self.times == 1 and self.raw is None:
            return match.group(1).strip("{}")
        return None


@dataclass(frozen=True)
class Matcher:
    """How an expected field (or text line) is compared with what arrived."""

    value: Value | None = None  # exact (after variables), or a capture
    pattern: str | None = None  # a regular expression the whole thing must match
    capture: str | None = None  # bind what matched to this variable
    any: bool = False

    @classmethod
    def distinct(cls, name: str, others: list[str]) -> Matcher:
        """Capture into ``name`` a value that none of the variables ``others`` holds
        (a new job must get a new handle)."""
        if not others:
            return cls(value=Value(f"${name}"))
        taken = "|".join(f"${{{other}}}" for other in sorted(others))
        return cls(pattern=rf"(?!(?:{taken})\Z).*", capture=name)


@dataclass
class Step:
    """One step of a case.  Each verb's step class is defined beside its record in
    ``conformance.verbs``; ``needs`` says which target capabilities it takes."""

    line: int
    conn: str = ""
    note: str = ""
    source: str = field(default="", compare=False, kw_only=True)  # as written, for reports

    needs: ClassVar[frozenset[str]] = frozenset()

    def substeps(self) -> list[Step]:
        """Steps held inside this one (the alternatives of ``expect-one-of``)."""
        return []


@dataclass
class Scenario:
    id: str
    title: str
    level: str
    source: str
    requirement: str
    sections: list[str]
    steps: list[Step]
    file: str
    line: int
    server_options: list[str] = field(default_factory=list)
    ignore: frozenset[PacketType] = frozenset({PacketType.NOOP})
    exclusive: bool = False  # needs the target alone (restarts, timing)
    fresh: bool = False  # needs a server of its own, started for it (shared names)
    timeout: float | None = None  # default per-step timeout override
    # A case about TLS: it needs a TLS target; connections named here do not use the
    # run's TLS settings (TLS_MODES): "plaintext" (no TLS at all), "untrusted" (TLS
    # that trusts only the system's CAs, not the one that signed the server's
    # certificate) or "anonymous" (the run's CA, but no client certificate).
    tls: dict[str, str] | None = None
    # A case about a client or worker library (conformance.jobspec.JobSpec): the
    # harness plays the job server and this is what the application does.
    library: Any = None
    budget: float | None = None  # seconds the whole case may take (library cases)

    @property
    def mode(self) -> str:
        """"server" (the target is a job server) or "library" (a client or worker
        library, through its adapter: the harness is the server)."""
        return "library" if self.library is not None else "server"

    @property
    def needs(self) -> set[str]:
        """Capabilities a target must have for this case to run (conformance.capabilities)."""
        needs: set[str] = set()
        options = self.server_options
        if options:
            needs.add("gearmand-options")
        if "-q" in options or "--queue-type" in options:
            needs.add("persistence")
        if "-r" in options or "--protocol" in options:
            needs.add("http")
        if self.fresh:
            needs.add("restart")
        if self.tls is not None:
            needs.add("tls")
        if self.library is not None:
            needs |= {"library", *self.library.needs}
        for step in self.all_steps():
            needs |= step.needs
        return needs | services.needed(options)

    @property
    def alone(self) -> bool:
        """Must run with no other case on its server (it restarts or kills it)."""
        return self.exclusive or any("restart" in step.needs for step in self.steps)

    def all_steps(self) -> list[Step]:
        steps: list[Step] = []
        for step in self.steps:
            steps.append(step)
            steps.extend(step.substeps())
        return steps
