"""What a run produces: verdicts, transcripts, case results and the run itself.

This is the results model the reports render.  ``RunResult.to_json()`` writes
the run JSON (schema name and version in ``SCHEMA``); ``RunResult.from_json()``
reads it back, so reports never need the runner.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "gearspec-run/1"


class Verdict(enum.Enum):
    """Autobahn-style verdicts, best first."""

    PASS = "PASS"
    NON_STRICT = "NON-STRICT"  # a SHOULD not met
    INFO = "INFO"  # a MAY behaviour, recorded
    UNSUPPORTED = "UNSUPPORTED"  # the target lacks a capability the case needs
    FAIL = "FAIL"
    ERROR = "ERROR"  # the harness or the target broke

    @property
    def ok(self) -> bool:
        """Acceptable without --strict."""
        return self in (Verdict.PASS, Verdict.NON_STRICT, Verdict.INFO, Verdict.UNSUPPORTED)


@dataclass
class Entry:
    """One line of a transcript: a packet, a text line, raw bytes, or an event."""

    t: float  # seconds since the case started
    conn: str
    direction: str  # "send", "recv" or "event"
    kind: str  # "packet", "text", "raw", "close", "open", "timeout", "note", "app"
    summary: str  # what a reader sees first, e.g. "SUBMIT_JOB function=.. unique=.."
    hex: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    sync: bool = False  # the harness's own ECHO marker, not part of the scenario


@dataclass
class Failure:
    """The step that decided a failing verdict: what it expected, what arrived."""

    step: int  # index in the case's steps
    line: int  # in the scenario file
    step_text: str  # the step as written
    expected: str
    actual: str
    where: str = ""  # the field or line compared, e.g. "JOB_CREATED.handle"


@dataclass
class CaseResult:
    scenario: str  # scenario id
    target: str
    verdict: Verdict
    message: str = ""
    step: int | None = None  # index of the step that decided the verdict
    duration: float = 0.0
    transcript: list[Entry] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # the target's log lines of that window
    baseline: str | None = None  # the reason, when the target's baseline lists the case
    expected: bool = True  # False: an unexpected result (a failure, or a baselined pass)
    failure: Failure | None = None  # FAIL, NON-STRICT, INFO: expected and actual
    missing: list[str] = field(default_factory=list)  # UNSUPPORTED: the capabilities lacking
    capture: str = ""  # the case's pcap, when --pcap-dir wrote one

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        data = dict(data)
        data["verdict"] = Verdict(data["verdict"])
        data["transcript"] = [Entry(**e) for e in data.get("transcript", [])]
        if data.get("failure") is not None:
            data["failure"] = Failure(**data["failure"])
        return cls(**data)


@dataclass
class TargetInfo:
    name: str
    kind: str
    version: str | None = None
    options: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)  # what it was said to take


@dataclass
class ScenarioInfo:
    id: str
    title: str
    level: str
    source: str
    requirement: str
    sections: list[str]
    file: str
    line: int
    steps: list[str] = field(default_factory=list)  # each step as written


@dataclass
class RunResult:
    started: str
    finished: str = ""
    gearspec_version: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    targets: list[TargetInfo] = field(default_factory=list)
    scenarios: list[ScenarioInfo] = field(default_factory=list)
    results: list[CaseResult] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    #: ``gearspec mutate --json`` figures attached to the run (``--mutation FILE``):
    #: the score per module, the survivors with their diffs, the equivalents.
    mutation: dict[str, Any] = field(default_factory=dict)

    def totals(self) -> dict[str, dict[str, int]]:
        """target → verdict → count."""
        totals: dict[str, dict[str, int]] = {t.name: {v.value: 0 for v in Verdict}
                                             for t in self.targets}
        for result in self.results:
            totals.setdefault(result.target, {v.value: 0 for v in Verdict})
            totals[result.target][result.verdict.value] += 1
        return totals

    def unsupported(self) -> dict[str, dict[str, int]]:
        """target → missing capability → cases not played for lack of it (a case
        lacking two counts under both)."""
        counts: dict[str, dict[str, int]] = {}
        for result in self.results:
            if result.verdict is Verdict.UNSUPPORTED:
                per_target = counts.setdefault(result.target, {})
                for need in result.missing or ["unknown"]:
                    per_target[need] = per_target.get(need, 0) + 1
        return counts

    def unsupported_lines(self) -> list[str]:
        """One sentence per target with unplayed cases: how many, and for what."""
        totals = self.totals()
        lines = []
        for target, needs in self.unsupported().items():
            count = totals.get(target, {}).get(Verdict.UNSUPPORTED.value, 0)
            why = ", ".join(f"{n} need {need}" for need, n in
                            sorted(needs.items(), key=lambda item: (-item[1], item[0])))
            lines.append(f"{target}: {count} case{'s' * (count != 1)} not played ({why})")
        return lines

    @property
    def unexpected(self) -> list[CaseResult]:
        return [r for r in self.results if not r.expected]

    def to_json(self) -> str:
        data = {"schema": SCHEMA, **asdict(self)}
        data["results"] = [r.to_dict() for r in self.results]
        return json.dumps(data, indent=1, ensure_ascii=False)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())

    @classmethod
    def read(cls, path: Path) -> RunResult:
        """A run JSON from a file; a ``ValueError`` saying why it cannot be read."""
        try:
            return cls.from_json(path.read_text())
        except OSError as error:
            raise ValueError(f"cannot read {path}: {error.strerror}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a gearspec run file ({error})") from None

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        data = json.loads(text)
        if data.pop("schema", None) != SCHEMA:
            raise ValueError(f"not a {SCHEMA} file")
        data["targets"] = [TargetInfo(**t) for t in data["targets"]]
        data["scenarios"] = [ScenarioInfo(**s) for s in data["scenarios"]]
        data["results"] = [CaseResult.from_dict(r) for r in data["results"]]
        return cls(**data)
