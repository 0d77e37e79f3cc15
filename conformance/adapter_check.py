"""``gearspec adapter check 'COMMAND'``: is this adapter keeping the contract?

For a library author writing an adapter (``conformance/adapters/README.md``):
it runs ``COMMAND describe`` and checks what it printed, then plays the
contract's basic cases against it (a client round trip, WORK_DATA updates, a
worker round trip, for the roles it says it has) and checks every line the
adapter printed: JSON, a known event, the fields that event needs.  Each
problem is one line; the exit status is 1 if there was any.  The cases'
verdicts are shown too, but a case the library fails is the library's
business (the catalog judges it), not the adapter's.
"""

from __future__ import annotations

import asyncio
import json
import sys

from conformance.libraries import parse_library
from conformance.library import describe
from conformance.loader import load_catalog
from conformance.runner import RunOptions, run
from conformance.targets import TargetError
from reference_server.usage import Parser, UsageError
from results import CaseResult

#: The contract's events and the fields each must carry.
EVENTS: dict[str, set[str]] = {
    "created": {"job", "handle"}, "data": {"job", "data"}, "warning": {"job", "data"},
    "status": {"job", "numerator", "denominator"}, "complete": {"job", "data"},
    "fail": {"job"}, "exception": {"job", "data"},
    "status-answer": {"query", "known", "running", "numerator", "denominator"},
    "echo": {"data"}, "job": {"function", "handle", "unique", "workload"},
    "error": {"message"}, "unsupported": {"reason"}, "exit": {"status"},
}
FEATURES = {"role.client", "role.worker", "client.created", "client.background", "client.priority",
            "client.epoch", "client.unique", "client.concurrent", "client.data",
            "client.warning", "client.progress", "client.exceptions", "client.status",
            "client.status-unique", "client.echo", "client.client-id", "worker.data",
            "worker.warning", "worker.status", "worker.fail", "worker.exception",
            "worker.timeout", "worker.client-id", "binary"}
BASIC = {"client": ["library/client-basics/foreground-round-trip",
                    "library/client-basics/work-data-many-times"],
         "worker": ["library/worker-basics/grab-and-complete"]}


def line_problems(result: CaseResult) -> list[str]:
    """What is wrong with the lines an adapter printed during one case."""
    problems = []
    for entry in result.transcript:
        if entry.conn != "app" or entry.direction != "recv":
            continue
        if entry.kind == "raw":
            problems.append(f"{result.scenario}: a line that is not a JSON event: "
                            f"{entry.summary}")
            continue
        name = entry.summary.split(" ", 2)[1] if entry.summary.startswith("app ") else ""
        if name not in EVENTS:
            problems.append(f"{result.scenario}: unknown event {name!r} ({entry.summary})")
        elif EVENTS[name] - set(entry.fields):
            missing = ", ".join(sorted(EVENTS[name] - set(entry.fields)))
            problems.append(f"{result.scenario}: {name} without {missing}")
    return problems


def check(adapter: str) -> tuple[list[str], list[str]]:
    """Every problem with the contract, one line each (none: the adapter keeps it), and
    the verdicts of the basic cases.  ``adapter``: a command line, or ``client:NAME``
    for a library gearspec knows."""
    spec = adapter if adapter.startswith("client:") else f"client:exec:{adapter}"
    try:
        target = parse_library(spec)
        missing = target.present()
        if missing is not None:
            return [f"{spec}: {missing}"], []
        found = describe(target.command, target.cwd, env=target.env)
    except TargetError as error:
        return [str(error)], []
    problems = [f"describe: unknown feature {f!r}" for f in sorted(found.features - FEATURES)]
    roles = found.roles & {"client", "worker"}
    if not roles:
        problems.append(f"describe: roles {sorted(found.roles)} has neither client nor worker")
    print(f"{found.library} {found.version}: roles {', '.join(sorted(roles))}; "
          f"{len(found.features)} features", file=sys.stderr)
    wanted = [case for role in sorted(roles) for case in BASIC[role]]
    cases = [s for s in load_catalog() if s.id in wanted]
    result = asyncio.run(run(cases, [(spec, [])], RunOptions(jobs=2), check_baselines=False))
    verdicts = []
    for case in result.results:
        verdicts.append(f"{case.scenario}: {case.verdict.value}"
                        f"{' ' + case.message if case.message else ''}")
        problems += line_problems(case)
    return problems, verdicts


def main(argv: list[str] | None = None, prog: str = "gearspec adapter") -> int:
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    checking = sub.add_parser("check", help="describe the adapter and play the basic cases")
    checking.add_argument("adapter", help="the adapter's command line, quoted, or client:NAME")
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    problems, verdicts = check(args.adapter)
    for line in verdicts:
        print(f"  {line}")
    for problem in problems:
        print(f"problem: {problem}")
    print(json.dumps({"problems": len(problems)}))
    return 1 if problems else 0
