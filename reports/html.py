"""The HTML report: a static folder that opens from file:// with nothing else.

``render(run, out)`` writes ``out/index.html`` (run metadata, per-target
totals and verdict bars, the cases not played and for lack of what, coverage,
and the scenario × target matrix grouped by protocol area, with filters) and
one page per scenario × target under ``out/cases/<target>/<scenario
id>.html`` (requirement, steps, what the failing step expected beside what
arrived, the numbered wire transcript with decoded fields and hex, the
server's log lines, the baseline reason).  CSS and the few lines of JS are inline.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from reports.charts import COLOURS, bench_charts, verdict_bar
from reports.findings import findings, markdown
from results import CaseResult, RunResult, ScenarioInfo, Verdict
from results.mutation import score_rows

_env = Environment(loader=PackageLoader("reports", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True,
                   lstrip_blocks=True)
_env.globals.update(colours={v.value: c for v, c in COLOURS.items()})


def target_dir(name: str) -> str:
    """A target name as a directory name (tcp://host:port → tcp_host_port)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def case_path(target: str, scenario: str) -> str:
    return f"cases/{target_dir(target)}/{scenario}.html"


def _root_from(path: str) -> str:
    return "../" * path.count("/")


def mutation_view(mutation: dict[str, Any]) -> dict[str, Any]:
    """The mutation section: a row per module and one for all."""
    if not mutation.get("modules"):
        return {}
    return {"rows": score_rows(mutation["modules"]), "survivors": mutation.get("survivors", []),
            "equivalent": mutation.get("equivalent", []),
            "unplayed": len(mutation.get("unplayed", []))}


def render(run: RunResult, out: Path, bench: dict[str, Any] | None = None) -> Path:
    """Write the report; returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    scenarios = {s.id: s for s in run.scenarios}
    by_case: dict[str, dict[str, CaseResult]] = defaultdict(dict)
    for result in run.results:
        by_case[result.scenario][result.target] = result
    targets = [t.name for t in run.targets]
    totals = run.totals()
    areas: dict[str, list[ScenarioInfo]] = defaultdict(list)
    for scenario in run.scenarios:
        areas[scenario.id.split("/", 1)[0]].append(scenario)
    index = _env.get_template("index.html").render(
        run=run, targets=run.targets, names=targets, totals=totals, areas=areas,
        by_case=by_case, case_path=case_path, verdicts=[v.value for v in Verdict],
        bars={t: verdict_bar(totals.get(t, {})) for t in targets},
        coverage=run.coverage.get("lines", []), unsupported=run.unsupported_lines(),
        findings=sum(len(v) for v in findings(run).values()),
        bench=bench_charts(bench) if bench else "", mutation=mutation_view(run.mutation),
        options=json.dumps(run.options, ensure_ascii=False))
    (out / "index.html").write_text(index)
    found = findings(run)
    if found:
        (out / "findings.md").write_text(markdown(run))
        (out / "findings.html").write_text(_env.get_template("findings.html").render(
            run=run, found=found, case_path=case_path,
            versions={t.name: t.version for t in run.targets}))
    page = _env.get_template("case.html")
    for result in run.results:
        scenario = scenarios.get(result.scenario)
        if scenario is None:
            continue
        path = case_path(result.target, result.scenario)
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        others = {name: case_path(name, result.scenario) for name in by_case[result.scenario]}
        target.write_text(page.render(
            run=run, scenario=scenario, result=result, root=_root_from(path),
            others=others, all_results=by_case[result.scenario]))
    return out / "index.html"


def render_compare(changes: list[dict[str, Any]], old: RunResult, new: RunResult,
                   out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compare.html"
    path.write_text(_env.get_template("compare.html").render(changes=changes, old=old, new=new,
                                                              case_path=case_path))
    return path
