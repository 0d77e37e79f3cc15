"""``python -m conformance.catalog_bench``: how long the whole catalog takes per target
(a benchmark, not a test: nothing asserts on time).

Each target plays the whole catalog ``--repeat`` times in this one process, as
``gearspec run`` does (servers started per option set, cases concurrent where
they may be); the table gives the median wall time, cases per second, and the
ratio to gearmand's time measured in the same run.  ``inproc`` is the
reference server inside the harness (no sockets, a clock the engine moves):
its time is the cost of the harness and the server's logic alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from tabulate import tabulate

from conformance.loader import load_catalog
from conformance.runner import RunOptions, run
from conformance.targets import gearmand_available


def measure(target: str, repeat: int) -> tuple[float, int, int]:
    """Median wall seconds of a whole-catalog run, the cases, and the cases that were
    unexpected in the last run (a benchmark of a broken run says so)."""
    catalog = load_catalog()
    times = []
    unexpected = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = asyncio.run(run(catalog, [(target, [])], RunOptions()))
        times.append(time.perf_counter() - started)
        unexpected = len(result.unexpected)
    return statistics.median(times), len(catalog), unexpected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", default=[],
                        help="targets to time (default: inproc, ref and gearmand)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    targets = args.target or ["inproc", "ref", *(["gearmand"] if gearmand_available() else [])]
    figures = {target: measure(target, max(args.repeat, 1)) for target in targets}
    oracle = figures.get("gearmand", (None, 0, 0))[0]
    rows = [[target, f"{seconds:.2f}", f"{cases / seconds:.0f}", unexpected,
             f"{oracle / seconds:.2f}×" if oracle else "-"]
            for target, (seconds, cases, unexpected) in figures.items()]
    print(tabulate(rows, ["target", "catalog wall s (median)", "cases/s", "unexpected",
                          "speed vs gearmand"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
