"""The findings page: for each library under test, what it gets wrong, as a bug report.

From a run's results alone: every case a library (a ``client:`` target) did
not pass, with the stimulus (the case's requirement and steps: what the
server did), what the library did (the baseline's reason, where the library's
baseline knows the case, else what the run saw) and the case id that
reproduces it (``gearspec run --client NAME --select ID``).  Written as
Markdown, so that an entry can be pasted into the library's tracker, and
rendered on the report's ``findings.html``.
"""

from __future__ import annotations

from dataclasses import dataclass

from results import CaseResult, RunResult, ScenarioInfo, Verdict

NOT_FOUND = (Verdict.PASS, Verdict.UNSUPPORTED)


@dataclass(frozen=True)
class Finding:
    library: str
    case: ScenarioInfo
    result: CaseResult

    @property
    def what_it_does(self) -> str:
        if self.result.baseline:
            return self.result.baseline
        failure = self.result.failure
        if failure is not None:
            return f"expected {failure.expected}, got {failure.actual} ({self.result.message})"
        return self.result.message


def findings(run: RunResult) -> dict[str, list[Finding]]:
    """Library target → its findings, in case order."""
    cases = {s.id: s for s in run.scenarios}
    found: dict[str, list[Finding]] = {}
    for result in run.results:
        if not result.target.startswith("client:") or result.verdict in NOT_FOUND:
            continue
        case = cases.get(result.scenario)
        if case is not None:
            found.setdefault(result.target, []).append(Finding(result.target, case, result))
    return found


def markdown(run: RunResult) -> str:
    """Every finding of every library, as Markdown."""
    lines = ["# Findings", ""]
    versions = {t.name: t.version or "?" for t in run.targets}
    for library, items in findings(run).items():
        name = library[len("client:"):]
        lines += [f"## {name} {versions.get(library, '?')}: {len(items)} finding"
                  f"{'s' * (len(items) != 1)}", ""]
        for item in items:
            lines += [f"### {item.case.title}", "",
                      f"- **Case:** `{item.case.id}` ({item.case.level}; reproduce with "
                      f"`gearspec run --client {name} --select '{item.case.id}'`)",
                      f"- **Expected:** {item.case.requirement}",
                      f"- **What {name} does:** {item.what_it_does}",
                      f"- **Source:** {item.case.source}",
                      "- **The server's side:**", "", "```yaml",
                      *item.case.steps, "```", ""]
    return "\n".join(lines)
