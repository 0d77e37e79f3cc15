"""``gearspec report``: render a saved run (or compare two) without running anything.

    gearspec report reports/latest/run.json [--out DIR] [--junit FILE] [--bench FILE]
                    [--mutation FILE] [--json RUN.json]
    gearspec report --compare OLD.json NEW.json [--out DIR]
    gearspec report --merge A.json B.json ... [--json MERGED.json] [--out DIR] [--junit FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from reports.compare import compare
from reports.html import render, render_compare
from reports.junit import write_junit
from reports.terminal import FORMATS, summary
from results import RunResult
from results.figures import bench_file, mutation_file
from results.merge import merge


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def main(argv: list[str], prog: str = "gearspec report") -> int:
    parser = _Parser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", type=Path, help="a run JSON written by gearspec run")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    parser.add_argument("--merge", nargs="+", type=Path, metavar="RUN",
                        help="shards (gearspec run --shard) or runs of other targets of one "
                             "catalog, as one run")
    parser.add_argument("--json", type=Path,
                        help="write the run JSON (merged, or with --mutation attached) here")
    parser.add_argument("--out", type=Path, default=Path("reports/latest"))
    parser.add_argument("--junit", type=Path, help="also write JUnit XML here")
    parser.add_argument("--bench", type=bench_file, help="a gearspec bench --json file to chart")
    parser.add_argument("--mutation", type=mutation_file, metavar="FILE",
                        help="a gearspec mutate --json file: its scores and survivors go into "
                             "the run JSON and the report")
    parser.add_argument("--format", choices=list(FORMATS), default="plain")
    try:
        args = parser.parse_args(argv)
        if args.compare:
            old, new = (RunResult.read(p) for p in args.compare)
            changes = compare(old, new)
            rows = [[c["kind"], c["target"], c["scenario"], c["old"] or "", c["new"] or ""]
                    for c in changes]
            print(tabulate(rows, ["change", "target", "scenario", "old", "new"],
                           tablefmt=FORMATS[args.format]) if rows else "no differences")
            print(f"\nreport: {render_compare(changes, old, new, args.out)}")
            return 1 if any(c["kind"] == "new failure" for c in changes) else 0
        if args.merge:
            run = merge([(str(path), RunResult.read(path)) for path in
                         ([args.run] if args.run else []) + args.merge])
        elif args.run is None:
            raise ValueError("give a run JSON, --compare OLD NEW or --merge RUN ...")
        else:
            run = RunResult.read(args.run)
        if args.mutation:
            run.mutation = args.mutation
    except ValueError as error:  # MergeError too
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        run.write(args.json)
        print(f"results: {args.json}")
    print(summary(run, args.format))
    if args.junit:
        write_junit(run, args.junit)
        print(f"junit: {args.junit}")
    print(f"report: {render(run, args.out, args.bench)}")
    return 1 if args.merge and run.unexpected else 0
