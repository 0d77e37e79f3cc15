"""Matching without I/O: what arrived against what a step expects.

An expectation is a pure function ``(step, events, scope) -> Result``: given
the events a connection has delivered so far (ending, perhaps, in a mark the
engine added: ``Synced``, ``Stalled``, ``TimedOut``) it answers ``Met`` (how
many events it used, and the variables it captured), ``Unmet`` (what was
expected, what arrived instead) or ``PENDING`` (it cannot tell yet).  The
engine calls it while playing, after every event; ``expect-one-of`` calls
the same functions on the events collected up to an ECHO marker.  After
h2spec's ``verifier.go``: the verdict on a step never touches a socket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conformance.events import Event, describe, show
from conformance.scenario import VARIABLE, Matcher, Value
from reference_server.protocol import Packet, PacketType


@dataclass(frozen=True)
class Met:
    consumed: int  # events used, ignored ones included
    variables: Mapping[str, bytes] = field(default_factory=dict)  # all of them, captures added


@dataclass(frozen=True)
class Unmet:
    """An expectation not met: where (a field, a line), what was expected, what
    arrived; ``text`` when a sentence says it better than the three."""

    expected: str
    actual: str
    where: str = ""
    text: str = ""

    @property
    def message(self) -> str:
        if self.text:
            return self.text
        return f"{self.where}: " * bool(self.where) + f"expected {self.expected}, got {self.actual}"


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()
Result = Met | Unmet | _Pending


class Mismatch(Exception):
    """Raised inside a matcher; the expectation turns it into ``Unmet``."""

    def __init__(self, unmet: Unmet) -> None:
        super().__init__(unmet.message)
        self.unmet = unmet


class Unbound(Exception):
    """A variable is used in an expectation before it has a value (a scenario bug)."""


def to_bytes(text: str) -> bytes:
    """Scenario text as bytes: Latin-1 where it can be (so "\\xff" is the byte 0xff),
    UTF-8 otherwise."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


@dataclass(frozen=True)
class Scope:
    """What an expectation may read: the case's variables (never changed in place:
    captures go into the ``Met``), its tag for fresh names, and the packet types it
    skips while waiting (NOOP unless the case says otherwise)."""

    variables: Mapping[str, bytes]
    tag: str
    ignore: frozenset[PacketType] = frozenset({PacketType.NOOP})

    def with_variables(self, variables: Mapping[str, bytes]) -> Scope:
        return Scope(variables, self.tag, self.ignore)

    def fresh_name(self, name: str) -> bytes:
        """The value an unbound variable takes in a send: unique to this case and run."""
        return f"{self.tag}{name}".encode()

    def resolve(self, value: Value, *, fresh: bool) -> tuple[bytes, dict[str, bytes]]:
        """A value's bytes, and the variables with any fresh names it made (only
        with ``fresh``: in an expectation an unbound variable is ``Unbound``)."""
        if value.raw is not None:
            return value.raw, dict(self.variables)
        variables = dict(self.variables)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "$":
                return "$"
            name = name.strip("{}")
            if name not in variables:
                if not fresh:
                    raise Unbound(f"${name} is used before it has a value")
                variables[name] = self.fresh_name(name)
            return variables[name].decode("latin-1")

        return to_bytes(VARIABLE.sub(substitute, value.text)) * value.times, variables

    def check(self, matcher: Matcher, actual: bytes, what: str) -> dict[str, bytes]:
        """The variables after comparing ``actual`` (captures bound), or ``Mismatch``."""
        variables = dict(self.variables)
        if matcher.any:
            pass
        elif matcher.pattern is not None:
            pattern = VARIABLE.sub(lambda m: re.escape(
                variables.get(m.group(1).strip("{}"), b"").decode("latin-1"))
                if m.group(1) != "$" else r"\$", matcher.pattern)
            if not re.fullmatch(pattern, actual.decode("latin-1"), re.DOTALL):
                raise Mismatch(Unmet(f"/{matcher.pattern}/", show(actual), what,
                                     f"{what}: {show(actual)} does not match "
                                     f"/{matcher.pattern}/"))
        else:
            assert matcher.value is not None
            name = matcher.value.capture
            if name is not None and name not in variables:
                variables[name] = actual
            else:
                wanted, _ = self.resolve(matcher.value, fresh=False)
                if actual != wanted:
                    raise Mismatch(Unmet(show(wanted), show(actual), what))
        if matcher.capture is not None:
            variables[matcher.capture] = actual
        return variables

    def ignored(self, event: Event, wanted: tuple[PacketType, ...] = ()) -> bool:
        return isinstance(event, Packet) and event.type in self.ignore and \
            event.type not in wanted


def skip_ignored(events: Sequence[Event], scope: Scope, start: int = 0,
                 wanted: tuple[PacketType, ...] = ()) -> int:
    """The index of the first event from ``start`` that is not ignored."""
    index = start
    while index < len(events) and scope.ignored(events[index], wanted):
        index += 1
    return index


def seen(events: Sequence[Event]) -> str:
    """What arrived, for a failure message."""
    return "; ".join(describe(e) for e in events) or "nothing"
