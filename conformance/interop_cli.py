"""``gearspec interop``: the grid of client libraries × servers (``interop_run.py``).

Reads the command line, finds which libraries are installed (a library that
is not is named with what installs it, never silently left out), plays the
grid and hands the run back to ``gearspec/cli.py``, which writes and renders it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from conformance.interop import TESTS
from conformance.interop_run import BUDGET, SERVERS, Options, run_grid
from conformance.libraries import KNOWN, parse_library
from conformance.targets import TargetError
from results import RunResult

ERRORS = (TargetError, ValueError, OSError)


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Every client library against every "
                                "server: a grid of interop tests, one letter each.")
    p.add_argument("--client", action="append", metavar="LIBRARY",
                   help=f"a client library (default: every installed one of "
                        f"{', '.join(KNOWN)}); repeatable")
    p.add_argument("--server", action="append", metavar="SPEC",
                   help=f"a server target, as for run --target (default: "
                        f"{', '.join(SERVERS)}); repeatable")
    p.add_argument("--tests", default="", metavar="LETTERS",
                   help=f"only these tests (letters of {''.join(TESTS)})")
    p.add_argument("--jobs", type=int, default=8,
                   help="cells at once (%(default)s: the libraries mostly wait)")
    p.add_argument("--budget", type=float, default=BUDGET,
                   help="seconds any one wait of a test may take (%(default)s)")
    p.add_argument("--json", type=Path, default=Path("reports/latest/interop.json"),
                   help="run JSON (%(default)s)")
    p.add_argument("--report", type=Path, default=Path("reports/latest/interop"),
                   help="HTML report directory (%(default)s)")
    p.add_argument("--junit", type=Path, help="also write JUnit XML here")
    p.add_argument("--pcap-dir", type=Path,
                   help="a capture of each test that did not pass (default: REPORT/pcaps)")
    p.add_argument("--format", choices=["plain", "github", "markdown"], default="plain",
                   help="table style of the grid")
    return p


def _installed(names: list[str]) -> tuple[list[str], dict[str, str]]:
    playable, missing = [], {}
    for name in names:
        try:
            why = parse_library(f"client:{name}").present()
        except TargetError as error:
            why = str(error)
        if why is None:
            playable.append(name)
        else:
            missing[name] = why
    return playable, missing


def execute(argv: list[str], prog: str) -> tuple[RunResult, argparse.Namespace]:
    p = parser(prog)
    args = p.parse_args(argv)
    unknown = set(args.tests) - set(TESTS)
    if unknown:
        p.error(f"unknown test letter(s) {''.join(sorted(unknown))!r} (tests: {''.join(TESTS)})")
    if args.jobs < 1 or args.budget <= 0:
        p.error("--jobs and --budget must be positive")
    named = args.client or list(KNOWN)
    clients, missing = _installed(named)
    if args.client and missing:  # asked for by name: that it cannot run is an error
        p.error("; ".join(f"{name}: {why}" for name, why in missing.items()))
    if not clients:
        p.error("no client library is installed here (make clients)")
    servers = args.server or list(SERVERS)
    args.pcap_dir = args.pcap_dir or args.report / "pcaps"
    options = Options(jobs=args.jobs, budget=args.budget, pcap_dir=args.pcap_dir.resolve(),
                      select=args.tests)
    run = asyncio.run(run_grid(clients, servers, options))
    run.options["not_installed"] = missing
    return run, args
