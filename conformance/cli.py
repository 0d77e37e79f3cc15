"""``gearspec run``: play the scenario catalog against targets.

    gearspec run                                   # against the reference server
    gearspec run --target gearmand --target ref
    gearspec run --target tcp://10.0.0.5:4730 --select 'submit/*'
    gearspec run --target "exec:/opt/myserver -p {port}" --capabilities gearmand-options
    gearspec run --target gearmand --shard 2/4 --json shard2.json   # one of four machines

This module parses the command line and drives the runner; the ``gearspec``
command (gearspec/cli.py) then writes the run JSON, prints the summary and
renders what was asked for.  The pytest plugin takes the same options with a
``--gearspec-`` prefix and builds its ``RunOptions`` here too.  Exit status:
1 if there was any unexpected result (a FAIL or ERROR not in the target's
baseline, a baselined case that passes, with ``--strict`` a NON-STRICT, with
``--require-all`` an UNSUPPORTED); a bad scenario file, an unknown or
unreachable target, or a bad option: one line, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance import capabilities
from conformance.coverage import coverage
from conformance.loader import load_catalog, load_file
from conformance.runner import RunOptions, run, select, terminal_progress
from conformance.scenario import SCENARIO_DIR, ScenarioError
from conformance.shards import fingerprint, parse_shard, recorded_durations, shard_of
from conformance.specs import mode_of, parse_target
from conformance.targets import TargetError
from reference_server.usage import Parser, UsageError
from results import RunResult
from results.figures import bench_file, mutation_file

DEFAULT_JSON = Path("reports/latest/run.json")

#: Options the runner takes, shared by ``gearspec run`` and the pytest plugin
#: (``--gearspec-<name>``): name → (argparse keywords, help).
RUNNER_OPTIONS: dict[str, dict[str, Any]] = {
    "select": dict(action="append", default=[], metavar="GLOB", help="only these case ids"),
    "exclude": dict(action="append", default=[], metavar="GLOB", help="not these case ids"),
    "jobs": dict(type=int, default=RunOptions().jobs, help="cases at once (CPUs × 4)"),
    "timeout-factor": dict(type=float, default=1.0, help="scale every step timeout"),
    "strict": dict(action="store_true", help="a NON-STRICT result counts as a failure"),
    "require-all": dict(action="store_true",
                        help="a case the target cannot play (UNSUPPORTED) counts as a failure"),
    "capabilities": dict(action="append", default=[], metavar="[TARGET=]LIST",
                         help="what an exec: or tcp:// target takes beyond its kind, e.g. "
                              "gearmand-options,persistence,http (known: "
                              f"{', '.join(capabilities.CAPABILITIES)}); TARGET= (a --target "
                              "or its kind) limits it to one target"),
    "judge-by": dict(action="append", default=[], metavar="[TARGET=]NAME",
                     help="judge by baselines/NAME.yaml (e.g. gearmand) instead of the kind's"),
    "tls": dict(action="store_true",
                help="over TLS: servers started here get --ssl and throwaway certificates"),
    "tls-ca": dict(help="CA file clients trust (tls:// targets; default: the system's)"),
    "tls-cert": dict(help="certificate clients show (PEM)"),
    "tls-key": dict(help="its key (PEM)"),
    "baselines": dict(type=Path, default=None, help="baseline directory"),
}


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="Play the Gearman conformance scenarios against "
                     "servers.", allow_abbrev=False)
    add = parser.add_argument
    add("--target", action="append", default=[], metavar="SPEC",
        help="ref (default), inproc, gearmand, perl, gear, exec:COMMAND, tcp://HOST:PORT, "
             "tls://HOST:PORT, docker:IMAGE; repeatable")
    add("--client", action="append", default=[], metavar="LIBRARY",
        help="a client or worker library under test (the harness plays the server): "
             "gearspec, libgearman, php, perl, gear, pygearman, python3-gearman, py3gearman, "
             "aiogear, npm-gearman, npm-node-gearman, or exec:ADAPTER; repeatable")
    add("--target-option", action="append", default=[], metavar="TARGET=OPTION",
        help="an extra server option, e.g. gearmand=-t0; repeatable")
    for name, keywords in RUNNER_OPTIONS.items():
        add(f"--{name}", **keywords)
    add("--json", type=Path, default=DEFAULT_JSON, help=f"run JSON ({DEFAULT_JSON})")
    add("--scenarios", type=Path, default=SCENARIO_DIR, help="scenario directory")
    add("--scenario", type=Path, action="append", default=[], metavar="FILE",
        help="play this scenario file (e.g. a fuzz finding) instead of the catalog; repeatable")
    add("--shard", type=parse_shard, default=None, metavar="K/N",
        help="play only shard K of N of the selection (the same cases on every machine; "
             "merge the shards with gearspec report --merge)")
    add("--durations", type=Path, default=None, metavar="RUN.json",
        help="balance --shard by the durations of this earlier run (else by count)")
    add("--list", action="store_true", help="list the selected case ids and exit")
    add("--format", choices=["plain", "github", "markdown"], default="plain",
        help="table style of the summary")
    add("--report", type=Path, default=None, metavar="DIR",
        help="also render the HTML report into DIR")
    add("--junit", type=Path, default=None, metavar="FILE", help="also write JUnit XML")
    add("--pcap-dir", type=Path, default=None, metavar="DIR",
        help="write each case's traffic as DIR/<target>/<case id, / as __>.pcap")
    add("--bench", type=bench_file, default=None, metavar="FILE",
        help="gearspec bench --json figures to chart in the HTML report")
    add("--mutation", type=mutation_file, default=None, metavar="FILE",
        help="gearspec mutate --json figures: into the run JSON and the HTML report")
    return parser


def _kind(spec: str) -> str:
    return spec.split("://", 1)[0] if "://" in spec else spec.split(":", 1)[0]


def per_target(values: list[str], specs: list[str], flag: str,
               target_required: bool = False) -> dict[str, list[str]]:
    """``[TARGET=]VALUE`` options → spec → values.  TARGET is a spec given with
    ``--target`` or its kind (``exec``, ``tcp``); without it the value is for all."""
    found: dict[str, list[str]] = {spec: [] for spec in specs}
    for item in values:
        name, sep, value = item.partition("=")
        chosen = [s for s in specs if sep and name in (s, _kind(s))]
        if not chosen and target_required and sep:
            chosen = [name]  # a target not in this run: its option goes unused
            found.setdefault(name, [])
        elif not chosen:
            chosen, value = specs, item
        if not value or (target_required and not sep):
            raise UsageError(f"{flag} wants {'TARGET' if target_required else '[TARGET]'}"
                             f"=VALUE, got {item!r}")
        for spec in chosen:
            found[spec].append(value)
    return found


def run_options(get: Callable[[str], Any], specs: list[str]) -> RunOptions:
    """The runner's options from what ``get(name)`` says of each of RUNNER_OPTIONS."""
    if get("jobs") < 1 or get("timeout-factor") <= 0:
        raise UsageError("--jobs and --timeout-factor must be positive")
    told: dict[str, frozenset[str]] = {}
    for spec, words in per_target(get("capabilities"), specs, "--capabilities").items():
        try:
            extra = capabilities.parse(",".join(words))
        except capabilities.CapabilityError as error:
            raise UsageError(str(error)) from None
        started_only = extra & capabilities.STARTED_ONLY
        if spec.startswith(("tcp://", "tls://")) and started_only:
            raise UsageError(f"{spec} runs as its owner started it: it cannot take "
                             f"{', '.join(capabilities.sorted_names(started_only))} (give an "
                             "exec: target that the harness starts)")
        told[spec] = extra
    judges = {spec: names[-1] for spec, names in
              per_target(get("judge-by"), specs, "--judge-by").items() if names}
    baselines = get("baselines")
    return RunOptions(jobs=get("jobs"), timeout_factor=get("timeout-factor"),
                      strict=get("strict"), require_all=get("require-all"),
                      select=get("select"), exclude=get("exclude"),
                      baseline_dir=str(baselines) if baselines else None,
                      tls=get("tls"), tls_ca=get("tls-ca"), tls_cert=get("tls-cert"),
                      tls_key=get("tls-key"), capabilities=told, baselines=judges)


def execute(argv: list[str], prog: str = "gearspec run") -> tuple[RunResult, argparse.Namespace]:
    """Parse the command line and play the selection.  Raises ``UsageError``,
    ``ScenarioError`` or ``TargetError`` (each a one-line message) for bad input."""
    args = build_parser(prog).parse_args(argv)
    specs = [*args.target, *(f"client:{name}" for name in args.client)] or ["ref"]
    options = run_options(lambda name: getattr(args, name.replace("-", "_")), specs)
    if args.scenario:
        catalog = [s for path in args.scenario for s in load_file(path, path.parent)]
    else:
        catalog = load_catalog(args.scenarios)
    selection = select(catalog, args.select, args.exclude)
    if not selection:
        raise UsageError("no scenario matches the selection")
    if args.durations and not args.shard:
        raise UsageError("--durations balances shards: give --shard K/N too")
    chosen = selection
    if args.shard:  # a shard may be empty (more shards than cases): an empty run
        durations = recorded_durations(args.durations) if args.durations else None
        modes = {mode_of(spec) for spec in specs}  # split only what these targets play
        chosen = shard_of([s for s in selection if s.mode in modes], args.shard, durations)
    options.shard, options.catalog = str(args.shard or ""), fingerprint(catalog)
    args.chosen = chosen
    if args.list:
        return RunResult(started="", scenarios=[]), args
    extra = per_target(args.target_option, specs, "--target-option", target_required=True)
    for spec in specs:
        parse_target(spec)  # unknown kinds fail here, before anything starts
    options.pcap_dir = str(args.pcap_dir) if args.pcap_dir else None
    result = asyncio.run(run(chosen, [(s, extra[s]) for s in specs], options,
                             terminal_progress, {s.id for s in catalog},
                             check_baselines=not args.scenario))
    if args.shard:  # what the cases cover is the whole selection's, in every shard
        result.coverage = coverage([s for s in selection if s.mode == "server"])
    return result, args


ERRORS = (UsageError, ScenarioError, TargetError)
