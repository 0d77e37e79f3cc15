"""The interop grid: client libraries down, servers across, a cell of letters each.

The QUIC interop runner's page, for Gearman.  A run JSON of ``gearspec
interop`` has one target per cell (``CLIENT@SERVER``) and one scenario per
interop test (``interop/R-round-trip``: its letter comes first in the title).
A cell shows each test's letter coloured by its verdict and links to a page
for the cell: each test's verdict, expected and actual, and links to the
test's transcript page (adapter events, stderr) and its capture.
"""

from __future__ import annotations

import os
from pathlib import Path

from tabulate import tabulate

from reports.html import _env, case_path, render, target_dir
from results import CaseResult, RunResult, Verdict


def split_pair(name: str) -> tuple[str, str]:
    client, _, server = name.partition("@")
    return client, server


def letter(scenario_id: str) -> str:
    return scenario_id.split("/", 1)[1].split("-", 1)[0]


def cells(run: RunResult) -> dict[tuple[str, str], list[CaseResult]]:
    """(client, server) → the cell's results in the tests' order."""
    order = {s.id: i for i, s in enumerate(run.scenarios)}
    grid: dict[tuple[str, str], list[CaseResult]] = {}
    for target in run.targets:
        grid[split_pair(target.name)] = []
    for result in run.results:
        grid.setdefault(split_pair(result.target), []).append(result)
    for results in grid.values():
        results.sort(key=lambda r: order.get(r.scenario, len(order)))
    return grid


def _axes(run: RunResult) -> tuple[list[str], list[str]]:
    clients = list(dict.fromkeys(split_pair(t.name)[0] for t in run.targets))
    servers = list(dict.fromkeys(split_pair(t.name)[1] for t in run.targets))
    return clients, servers


def cell_text(results: list[CaseResult]) -> str:
    """Letters of the tests passed; then ``✗`` and the failed ones, ``·`` and the ones
    not played (``!`` marks an unexpected result, ``⚑`` a baselined one)."""
    passed = "".join(letter(r.scenario) for r in results if r.verdict.ok
                     and r.verdict is not Verdict.UNSUPPORTED)
    failed = "".join(letter(r.scenario) + ("⚑" if r.baseline else "!") for r in results
                     if not r.verdict.ok)
    unplayed = "".join(letter(r.scenario) for r in results if r.verdict is Verdict.UNSUPPORTED)
    return passed + (f" ✗{failed}" if failed else "") + (f" ·{unplayed}" if unplayed else "")


def grid_text(run: RunResult, table_format: str = "simple") -> str:
    clients, servers = _axes(run)
    grid = cells(run)
    rows = [[client, *(cell_text(grid.get((client, s), [])) for s in servers)]
            for client in clients]
    legend = [f"  {letter(s.id)}  {s.title.split(': ', 1)[-1]}" for s in run.scenarios]
    lines = [tabulate(rows, ["client \\ server", *servers], tablefmt=table_format), "",
             "letters: passed; ✗ failed (! unexpected, ⚑ in the pair's baseline); "
             "· not played (the library lacks an API for it)", *legend]
    for name, why in run.options.get("not_installed", {}).items():
        lines.append(f"not played: {name}: {why}")
    return "\n".join(lines)


def cell_path(pair: str) -> str:
    return f"interop/{target_dir(pair)}.html"


def render_grid(run: RunResult, out: Path) -> Path:
    """The grid page (``interop.html``), a page per cell, and the run's usual report
    (a page per test and cell with its transcript and the adapters' stderr)."""
    render(run, out)
    clients, servers = _axes(run)
    grid = cells(run)
    page = _env.get_template("interop-cell.html")
    for (client, server), results in grid.items():
        pair = f"{client}@{server}"
        path = out / cell_path(pair)
        path.parent.mkdir(parents=True, exist_ok=True)
        captures = {}
        for result in results:
            if result.capture and Path(result.capture).exists():
                captures[result.scenario] = os.path.relpath(result.capture, path.parent)
        path.write_text(page.render(run=run, pair=pair, client=client, server=server,
                                    results=results, letter=letter, case_path=case_path,
                                    captures=captures, titles={s.id: s.title
                                                               for s in run.scenarios}))
    index = out / "interop.html"
    index.write_text(_env.get_template("interop.html").render(
        run=run, clients=clients, servers=servers, grid=grid, letter=letter,
        cell_path=cell_path, not_installed=run.options.get("not_installed", {})))
    return index

