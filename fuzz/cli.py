"""``gearspec fuzz {parser,server,model,diff}``: fuzz campaigns with a budget and a seed.

    gearspec fuzz parser --budget 60s
    gearspec fuzz server --target gearmand --budget 2m --seed 7
    gearspec fuzz model --target ref
    gearspec fuzz diff --target ref --target gearmand     # subject, then oracle

The model and diff fuzzers start the server(s) again with options drawn for each
round after the first (``fuzz/diff.py`` ROUND_OPTIONS, ``fuzz/oracle.py``'s for the
model), where the targets take gearmand's options (an ``exec:`` one when
``--capabilities gearmand-options`` says so).  A failure is shrunk to a minimal
example and saved as a scenario file under
``--save`` (default ``fuzz-findings/``); ``gearspec run --scenario FILE --target
...`` replays it.  The exit status is 1 when something was found.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from conformance import capabilities
from conformance.cli import per_target
from conformance.specs import parse_target
from conformance.targets import Target, TargetError
from fuzz.campaign import (
    Campaign,
    client_test,
    diff_test,
    model_test,
    parser_test,
    save,
    server_test,
)
from fuzz.diff_http import SERVER_OPTIONS as HTTP_OPTIONS
from fuzz.known import known_for
from fuzz.parser import PROPERTIES
from fuzz.shared import parse_store
from reference_server.usage import Parser, UsageError


def budget(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 5m or 1h")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, None: 1}[match[2]]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("fuzzer", choices=["parser", "server", "model", "diff", "client"])
    parser.add_argument("--target", action="append", default=[],
                        help="server to fuzz (diff: subject then oracle; default ref, and "
                             "gearmand as the oracle)")
    parser.add_argument("--capabilities", action="append", default=[], metavar="[TARGET=]LIST",
                        help="what an exec: or tcp:// target takes beyond its kind, as for "
                             "gearspec run (diff: gearmand-options lets its rounds draw "
                             "server options)")
    parser.add_argument("--client", default=None, metavar="LIBRARY",
                        help="client: the library to fuzz (gearspec run --client's names, or "
                             "exec:ADAPTER)")
    parser.add_argument("--budget", type=budget, default=None,
                        help="time to spend (60s), shrinking included")
    parser.add_argument("--examples", type=int, default=None, metavar="N",
                        help="run N examples instead, however long they take: with --seed, "
                             "the same examples on any machine (their digest is printed)")
    parser.add_argument("--examples-log", type=Path, default=None, metavar="FILE",
                        help="write every example run, one per line")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the first round (0); rounds use seed, seed+1, ...")
    parser.add_argument("--batch", type=int, default=100, help="examples per round")
    parser.add_argument("--derandomize", action="store_true",
                        help="one fixed round, as CI runs it")
    parser.add_argument("--db", type=parse_store, default=None, metavar="FOLDER|redis://H:P/N",
                        help="hypothesis example database, kept between campaigns: its "
                             "examples run first, and findings are added to it; a Redis URL "
                             "shares them (and the findings) among campaigns on many machines")
    parser.add_argument("--replay", action="store_true",
                        help="with --db: only replay the database's examples, try none new")
    parser.add_argument("--http", action="store_true",
                        help="diff: start both servers with gearmand's HTTP module (-r http) "
                             "and put HTTP requests in the conversations")
    parser.add_argument("--include-known", action="store_true",
                        help="server: also generate inputs that trigger findings already "
                             "recorded in the target's baseline (left out by default)")
    parser.add_argument("--save", type=Path, default=Path("fuzz-findings"),
                        help="where findings are written as scenario files")
    return parser


def _start(specs: list[str], fuzzer: str, options: list[str],
           told: dict[str, list[str]]) -> list[Target]:
    started = []
    try:
        for spec in specs:
            target = parse_target(spec, options)
            try:
                target.capabilities |= capabilities.parse(",".join(told.get(spec, [])))
            except capabilities.CapabilityError as error:
                raise UsageError(str(error)) from None
            if fuzzer in ("model", "diff"):  # they talk to the server with our client library
                target.require_socket(f"gearspec fuzz {fuzzer}")
            target.start()
            started.append(target)
    except TargetError:
        for target in started:
            target.stop()
        raise
    return started


def main(argv: list[str] | None = None, prog: str = "gearspec fuzz") -> int:
    try:
        args = _checked(build_parser(prog).parse_args(argv))
        specs = _specs(args)
        targets = _start(specs, args.fuzzer, HTTP_OPTIONS if args.http else [],
                         per_target(args.capabilities, specs, "--capabilities"))
    except (UsageError, TargetError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    campaigns = []
    try:
        names = list(PROPERTIES) if args.fuzzer == "parser" else [args.fuzzer]
        for name in names:
            campaign = Campaign(name if args.fuzzer != "parser" else f"parser-{name}",
                                [t.name for t in targets], budget=args.budget / len(names),
                                base_seed=args.seed or 0, batch=args.batch,
                                derandomize=args.derandomize, database=args.db,
                                replay_only=args.replay, limit=args.examples or 0,
                                shown=[] if args.examples_log else None,
                                show_progress=sys.stderr.isatty())
            if args.fuzzer == "parser":
                test = parser_test(campaign, name)
            elif args.fuzzer == "server":
                avoid = () if args.include_known else known_for(targets[0].name)
                for finding in avoid:
                    print(f"leaving out a known finding ({finding.case}): {finding.summary}; "
                          "--include-known puts it back", file=sys.stderr)
                test = server_test(campaign, targets[0], avoid)
            elif args.fuzzer == "model":
                test = model_test(campaign, targets[0])
            elif args.fuzzer == "client":
                test = client_test(campaign, targets[0])
            else:
                test = diff_test(campaign, targets[0], targets[1])
            campaigns.append(campaign.run(test))
            save(campaign, args.save)
            if campaign.failure:
                break
    finally:
        for target in targets:
            target.stop()
    if args.examples_log is not None:
        args.examples_log.write_text("".join(f"{c.fuzzer}: {line}\n" for c in campaigns
                                             for line in c.shown or []))
    _print_campaigns(campaigns, args.fuzzer)
    return 1 if any(c.failure for c in campaigns) else 0


def _checked(args: argparse.Namespace) -> argparse.Namespace:
    """The options that cannot go together refused (UsageError), the budget's default."""
    if args.db is not None and (args.derandomize or args.seed is not None):
        raise UsageError("--db cannot go with --seed or --derandomize (hypothesis ignores "
                         "its example database in seeded runs)")
    if args.replay and args.db is None:
        raise UsageError("--replay replays an example database: give --db too")
    if args.examples is not None and args.budget is not None:
        raise UsageError("--examples N runs N examples whatever the time: it cannot go "
                         "with --budget")
    if args.examples is not None and (args.derandomize or args.replay):
        raise UsageError("--examples cannot go with --derandomize or --replay (they run "
                         "one fixed round)")
    args.budget = 60.0 if args.budget is None else args.budget
    if args.batch < 1 or args.budget <= 0 or (args.examples or 1) < 1:
        raise UsageError("--batch, --budget and --examples must be positive")
    if args.http and args.fuzzer != "diff":
        raise UsageError("--http is for the diff fuzzer")
    return args


def _specs(args: argparse.Namespace) -> list[str]:
    """The targets a fuzzer needs: none for the codec, the library for ``client``,
    two servers for ``diff`` (the second the oracle), one server otherwise."""
    if args.fuzzer == "parser":
        return []
    if args.fuzzer == "client":
        if args.client is None:
            raise UsageError("fuzz client needs --client LIBRARY")
        return [f"client:{args.client}"]
    if args.fuzzer == "diff":
        subject = args.target[0] if args.target else "ref"
        return [subject, args.target[1] if len(args.target) > 1 else "gearmand"]
    return args.target[:1] or ["ref"]


def _print_campaigns(campaigns: list[Any], fuzzer: str) -> None:
    for c in campaigns:
        state = f"FOUND: {c.failure}" if c.failure else "nothing found"
        print(f"{c.fuzzer} against {', '.join(c.targets) or 'the codec'}: {c.examples} examples "
              f"(digest {c.digest}) in {c.seconds:.1f} s ({c.rate:.0f}/s), {c.rounds} rounds, "
              f"{state}")
        if c.saved:
            print(f"  reproducer: {c.saved}  (gearspec run --scenario {c.saved} --target ...)")
        elif c.saved_before:
            print(f"  found before, saved by another campaign: {c.saved_before}")
    if len(campaigns) > 1:
        examples, seconds = sum(c.examples for c in campaigns), sum(c.seconds for c in campaigns)
        print(f"{fuzzer}: {examples} examples in {seconds:.1f} s "
              f"({examples / seconds if seconds else 0:.0f}/s)")
