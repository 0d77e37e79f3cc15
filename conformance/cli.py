"""``gearspec run``: play the scenario catalog against targets.

    gearspec run                                   # against the reference server
    gearspec run --target gearmand --target ref
    gearspec run --target tcp://10.0.0.5:4730 --select 'submit/*'

Writes the run JSON (default ``reports/latest/run.json``), prints a summary
per target and every unexpected result, and exits 1 if there was any (a
FAIL or ERROR not in the target's baseline, a baselined case that passes, or
with ``--strict`` a NON-STRICT).  A bad scenario file, an unknown or
unreachable target, or a bad option: one line, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tabulate import tabulate

from conformance.coverage import summary_lines
from conformance.results import RunResult, Verdict
from conformance.runner import RunOptions, run, select, terminal_progress
from conformance.scenario import SCENARIO_DIR, ScenarioError, load_catalog
from conformance.targets import TargetError, parse_target

DEFAULT_JSON = Path("reports/latest/run.json")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Play the Gearman conformance scenarios against "
                     "servers.", allow_abbrev=False)
    add = parser.add_argument
    add("--target", action="append", default=[], metavar="SPEC",
        help="ref (default), gearmand, perl, gear or tcp://HOST:PORT; repeatable")
    add("--target-option", action="append", default=[], metavar="TARGET=OPTION",
        help="an extra server option, e.g. gearmand=-t0; repeatable")
    add("--select", action="append", default=[], metavar="GLOB", help="only these case ids")
    add("--exclude", action="append", default=[], metavar="GLOB", help="not these case ids")
    add("--jobs", type=int, default=RunOptions().jobs, help="cases at once (CPUs × 4)")
    add("--timeout-factor", type=float, default=1.0, help="scale every step timeout")
    add("--strict", action="store_true", help="a NON-STRICT result counts as a failure")
    add("--json", type=Path, default=DEFAULT_JSON, help=f"run JSON ({DEFAULT_JSON})")
    add("--scenarios", type=Path, default=SCENARIO_DIR, help="scenario directory")
    add("--baselines", type=Path, default=None, help="baseline directory")
    add("--list", action="store_true", help="list the selected case ids and exit")
    add("--format", choices=["plain", "github", "markdown"], default="plain",
        help="table style of the summary")
    return parser


def summary(result: RunResult, table_format: str = "plain") -> str:
    fmt = {"plain": "simple", "github": "github", "markdown": "pipe"}[table_format]
    rows = []
    for target in result.targets:
        mine = [r for r in result.results if r.target == target.name]
        counts = [sum(r.verdict is v for r in mine) for v in Verdict]
        rows.append([target.name, target.version or "?", *counts,
                     sum(r.baseline is not None for r in mine),
                     sum(not r.expected for r in mine)])
    headers = ["target", "version", *[v.value for v in Verdict], "baselined", "unexpected"]
    lines = [tabulate(rows, headers, tablefmt=fmt)]
    unexpected = result.unexpected
    if unexpected:
        lines.append("")
        lines.append(tabulate(
            [[r.target, r.scenario, r.verdict.value, r.message[:160]] for r in unexpected],
            ["target", "case", "verdict", "why"], tablefmt=fmt))
    lines.append("")
    lines.extend(f"coverage: {line}" for line in summary_lines(result.coverage))
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "gearspec run") -> int:
    try:
        args = build_parser(prog).parse_args(argv)
        if args.jobs < 1 or args.timeout_factor <= 0:
            raise UsageError("--jobs and --timeout-factor must be positive")
        catalog = load_catalog(args.scenarios)
        chosen = select(catalog, args.select, args.exclude)
        if not chosen:
            raise UsageError("no scenario matches the selection")
        if args.list:
            print("\n".join(s.id for s in chosen))
            return 0
        extra: dict[str, list[str]] = {}
        for item in args.target_option:
            name, sep, option = item.partition("=")
            if not sep:
                raise UsageError(f"--target-option wants TARGET=OPTION, got {item!r}")
            extra.setdefault(name, []).append(option)
        specs = args.target or ["ref"]
        for spec in specs:
            parse_target(spec)  # unknown kinds fail here, before anything starts
        options = RunOptions(jobs=args.jobs, timeout_factor=args.timeout_factor,
                             strict=args.strict, select=args.select, exclude=args.exclude,
                             baseline_dir=str(args.baselines) if args.baselines else None)
        result = asyncio.run(run(chosen, [(s, extra.get(s, [])) for s in specs], options,
                                 terminal_progress, {s.id for s in catalog}))
    except (UsageError, ScenarioError, TargetError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    result.write(args.json)
    print(summary(result, args.format))
    print(f"\nresults: {args.json}")
    return 1 if result.unexpected else 0
