"""Terminal tables: a summary per target and the unexpected results."""

from __future__ import annotations

from tabulate import tabulate

from results import CaseResult, RunResult, Verdict

FORMATS = {"plain": "simple", "github": "github", "markdown": "pipe"}


def summary(result: RunResult, table_format: str = "plain") -> str:
    fmt = FORMATS[table_format]
    rows = []
    for target in result.targets:
        mine = [r for r in result.results if r.target == target.name]
        counts = [sum(r.verdict is v for r in mine) for v in Verdict]
        rows.append([target.name, target.version or "?", *counts,
                     sum(r.baseline is not None for r in mine),
                     sum(not r.expected for r in mine)])
    headers = ["target", "version", *[v.value for v in Verdict], "baselined", "unexpected"]
    lines = [tabulate(rows, headers, tablefmt=fmt)]
    # A skipped part of the catalog must never pass for green: say what was not played.
    lines += result.unsupported_lines()
    if result.unexpected:
        lines += ["", tabulate([[r.target, r.scenario, r.verdict.value, _clip(_why(r))]
                                for r in result.unexpected],
                               ["target", "case", "verdict", "why"], tablefmt=fmt)]
    if result.coverage:
        lines += ["", *(f"coverage: {line}" for line in result.coverage.get("lines", []))]
    return "\n".join(lines)


def _why(result: CaseResult) -> str:
    if result.failure is None:
        return result.message
    return (f"{result.message} [expected: {result.failure.expected}; actual: "
            f"{result.failure.actual}]") if result.failure.expected not in result.message \
        else result.message


def _clip(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
