"""``gearspec run``: play the scenario catalog against targets.

    gearspec run                                   # against the reference server
    gearspec run --target gearmand --target ref
    gearspec run --target tcp://10.0.0.5:4730 --select 'submit/*'

This module parses the command line and drives the runner; the ``gearspec``
command (gearspec/cli.py) then writes the run JSON, prints the summary and
renders what was asked for.  Exit status: 1 if there was any unexpected
result (a FAIL or ERROR not in the target's baseline, a baselined case that
passes, or with ``--strict`` a NON-STRICT); a bad scenario file, an unknown or
unreachable target, or a bad option: one line, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from conformance.runner import RunOptions, run, select, terminal_progress
from conformance.scenario import SCENARIO_DIR, ScenarioError, load_catalog, load_file
from conformance.specs import parse_target
from conformance.targets import TargetError
from reference_server.usage import Parser, UsageError
from results import RunResult

DEFAULT_JSON = Path("reports/latest/run.json")



def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="Play the Gearman conformance scenarios against "
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
    add("--tls", action="store_true",
        help="over TLS: servers started here get --ssl and throwaway certificates")
    add("--tls-ca", help="CA file clients trust (tls:// targets; default: the system's)")
    add("--tls-cert", help="certificate clients show (PEM)")
    add("--tls-key", help="its key (PEM)")
    add("--scenarios", type=Path, default=SCENARIO_DIR, help="scenario directory")
    add("--scenario", type=Path, action="append", default=[], metavar="FILE",
        help="play this scenario file (e.g. a fuzz finding) instead of the catalog; repeatable")
    add("--baselines", type=Path, default=None, help="baseline directory")
    add("--list", action="store_true", help="list the selected case ids and exit")
    add("--format", choices=["plain", "github", "markdown"], default="plain",
        help="table style of the summary")
    add("--report", type=Path, default=None, metavar="DIR",
        help="also render the HTML report into DIR")
    add("--junit", type=Path, default=None, metavar="FILE", help="also write JUnit XML")
    add("--pcap-dir", type=Path, default=None, metavar="DIR",
        help="write each case's traffic as DIR/<target>/<case id, / as __>.pcap")
    add("--bench", type=Path, default=None, metavar="FILE",
        help="gearspec bench --json figures to chart in the HTML report")
    return parser


def execute(argv: list[str], prog: str = "gearspec run") -> tuple[RunResult, argparse.Namespace]:
    """Parse the command line and play the selection.  Raises ``UsageError``,
    ``ScenarioError`` or ``TargetError`` (each a one-line message) for bad input."""
    args = build_parser(prog).parse_args(argv)
    if args.jobs < 1 or args.timeout_factor <= 0:
        raise UsageError("--jobs and --timeout-factor must be positive")
    if args.scenario:
        catalog = [s for path in args.scenario for s in load_file(path, path.parent)]
    else:
        catalog = load_catalog(args.scenarios)
    chosen = select(catalog, args.select, args.exclude)
    if not chosen:
        raise UsageError("no scenario matches the selection")
    args.chosen = chosen
    if args.list:
        return RunResult(started="", scenarios=[]), args
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
                         baseline_dir=str(args.baselines) if args.baselines else None,
                         pcap_dir=str(args.pcap_dir) if args.pcap_dir else None,
                         tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                         tls_key=args.tls_key)
    result = asyncio.run(run(chosen, [(s, extra.get(s, [])) for s in specs], options,
                             terminal_progress, {s.id for s in catalog},
                             check_baselines=not args.scenario))
    return result, args


ERRORS = (UsageError, ScenarioError, TargetError)
