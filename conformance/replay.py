"""``gearspec replay FILE --target X``: play a capture's clients and workers
against a server and compare its answers with the captured ones.

The capture becomes a scenario (``conformance.capture.scenario``): every
connection's sends in capture order, each captured answer an expectation, so
a worker's GRAB goes out only after the client's SUBMIT was answered, as it
did when captured.  The runner plays it like any case (one engine, one
client), then the verdict is given per connection: the connection whose
expectation failed FAILs with the difference, connections whose steps all
passed PASS, and those cut short by another's failure are ERROR ("not
reached").  The result is a run JSON the reports render, with the captured
conversation as the case's steps beside the live transcript.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from pathlib import Path

from conformance.capture.reader import GEARMAN_PORT, CaptureError
from conformance.capture.scenario import capture_scenario
from conformance.runner import RunOptions, run, terminal_progress
from conformance.scenario import Scenario, ScenarioError
from conformance.specs import parse_target
from conformance.targets import TargetError
from reference_server.usage import Parser, UsageError
from results import CaseResult, RunResult, ScenarioInfo, Verdict


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("file", type=Path, nargs="+", help="pcap or pcapng captures")
    parser.add_argument("--target", action="append", default=[],
                        help="server to replay against (default ref); repeatable")
    parser.add_argument("--port", type=int, action="append", default=[],
                        help=f"the captured server's port (default {GEARMAN_PORT})")
    parser.add_argument("--json", type=Path, default=Path("reports/latest/replay.json"))
    parser.add_argument("--report", type=Path, default=None, help="also render HTML here")
    parser.add_argument("--timeout-factor", type=float, default=1.0)
    parser.add_argument("--format", choices=["plain", "github", "markdown"], default="plain")
    return parser


def per_connection(result: RunResult, scenarios: list[Scenario]) -> RunResult:
    """One case per captured connection, judged from the capture's one case."""
    by_id = {s.id: s for s in scenarios}
    cases: list[CaseResult] = []
    infos: list[ScenarioInfo] = []
    for info in result.scenarios:
        scenario = by_id[info.id]
        for conn in dict.fromkeys(step.conn for step in scenario.steps):
            infos.append(replace(info, id=f"{info.id}/{conn.upper()}",
                                 title=f"{info.title}, connection {conn.upper()}"))
    for case in result.results:
        scenario = by_id[case.scenario]
        conns = list(dict.fromkeys(step.conn for step in scenario.steps))
        failed_conn = scenario.steps[case.step].conn if case.step is not None and \
            case.verdict not in (Verdict.PASS, Verdict.UNSUPPORTED) else None
        for conn in conns:
            own = [i for i, step in enumerate(scenario.steps) if step.conn == conn]
            if failed_conn is None or conn == failed_conn:
                verdict, message = case.verdict, case.message
            elif case.step is not None and own and own[-1] < case.step:
                verdict, message = Verdict.PASS, ""
            else:
                verdict = Verdict.ERROR
                message = (f"not reached: connection {failed_conn.upper()} diverged first "
                           f"({case.message})")
            transcript = [e for e in case.transcript if e.conn == conn]
            cases.append(replace(case, scenario=f"{case.scenario}/{conn.upper()}",
                                 verdict=verdict, message=message, transcript=transcript,
                                 expected=verdict in (Verdict.PASS, Verdict.UNSUPPORTED)))
    return replace(result, scenarios=infos, results=cases)


def replay(files: list[Path], targets: list[str], ports: list[int],
           timeout_factor: float = 1.0) -> RunResult:
    scenarios = [capture_scenario(f, ports or [GEARMAN_PORT]) for f in files]
    for spec in targets:
        parse_target(spec)
    options = RunOptions(jobs=4, timeout_factor=timeout_factor)
    result = asyncio.run(run(scenarios, [(t, []) for t in targets], options,
                             terminal_progress, {s.id for s in scenarios},
                             check_baselines=False))
    return per_connection(result, scenarios)


def execute(argv: list[str], prog: str = "gearspec replay") -> tuple[RunResult, argparse.Namespace]:
    """Parse the command line and replay; the command renders the result.  Raises
    one of ``ERRORS`` (a one-line message) for bad input."""
    args = build_parser(prog).parse_args(argv)
    if args.timeout_factor <= 0:
        raise UsageError("--timeout-factor must be positive")
    return replay(args.file, args.target or ["ref"], args.port, args.timeout_factor), args


ERRORS = (UsageError, CaptureError, ScenarioError, TargetError)
