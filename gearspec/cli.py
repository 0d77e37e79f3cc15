"""``gearspec COMMAND ...``: one entry point for everything gearspec does.

Each command belongs to a package; this module only routes to it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reference_server import __version__

if TYPE_CHECKING:
    from results import RunResult


def _serve(argv: list[str]) -> int:
    from reference_server.cli import main

    return main(argv, prog="gearspec serve")


def _played(execute: Callable[[list[str], str], tuple[RunResult, Any]],
            errors: tuple[type[Exception], ...], argv: list[str], prog: str
            ) -> tuple[RunResult, Any] | int:
    """A command's run and its arguments, or the exit status when it could not run
    (a bad argument or target: one line, status 2; an interrupt: 130)."""
    try:
        return execute(argv, prog)
    except errors as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(argv: list[str]) -> int:
    from conformance.cli import ERRORS, execute

    prog = "gearspec run"
    played = _played(execute, ERRORS, argv, prog)
    if isinstance(played, int):
        return played
    result, args = played
    if args.list:
        print("\n".join(s.id for s in args.chosen))
        return 0
    return _render(result, args, prog)


def _render(result: RunResult, args: Any, prog: str) -> int:
    """Write and show a run: its JSON, the summary, and what ``args`` asks for
    (``junit``, ``report``, ``bench``, ``pcap_dir``).  Exit status 1 when anything
    was unexpected."""
    from reports.terminal import summary

    bench = getattr(args, "bench", None)  # read (and checked) with the command line
    if getattr(args, "mutation", None):
        result.mutation = args.mutation
    result.write(args.json)
    print(summary(result, args.format))
    print(f"\nresults: {args.json}")
    if getattr(args, "pcap_dir", None):
        print(f"pcaps: {args.pcap_dir}")
    if getattr(args, "junit", None):
        from reports.junit import write_junit

        write_junit(result, args.junit)
        print(f"junit: {args.junit}")
    if args.report:
        from reports.html import render

        print(f"report: {render(result, args.report, bench)}")
    return 1 if result.unexpected else 0


def _report(argv: list[str]) -> int:
    from reports.command import main

    return main(argv, prog="gearspec report")


def _fuzz(argv: list[str]) -> int:
    from fuzz.cli import main

    return main(argv, prog="gearspec fuzz")


def _durability(argv: list[str]) -> int:
    from conformance.durability import main

    return main(argv, prog="gearspec durability")


def _bench(argv: list[str]) -> int:
    from conformance.bench import main

    return main(argv, prog="gearspec bench")


def _pcap(argv: list[str]) -> int:
    from conformance.capture.cli import main

    return main(argv, prog="gearspec pcap")


def _replay(argv: list[str]) -> int:
    from conformance.replay import ERRORS, execute

    prog = "gearspec replay"
    played = _played(execute, ERRORS, argv, prog)
    if isinstance(played, int):
        return played
    result, args = played
    return _render(result, args, prog)


def _docker(argv: list[str]) -> int:
    from conformance.images import main

    return main(argv, prog="gearspec docker")


def _adapter(argv: list[str]) -> int:
    from conformance.adapter_check import main

    return main(argv, prog="gearspec adapter")


def _interop(argv: list[str]) -> int:
    from conformance.interop_cli import ERRORS, execute
    from reports.interop import grid_text, render_grid
    from reports.terminal import FORMATS

    prog = "gearspec interop"
    played = _played(execute, ERRORS, argv, prog)
    if isinstance(played, int):
        return played
    result, args = played
    result.write(args.json)
    print(grid_text(result, FORMATS[args.format]))
    print(f"\nresults: {args.json}\npcaps: {args.pcap_dir}")
    if args.junit:
        from reports.junit import write_junit

        write_junit(result, args.junit)
        print(f"junit: {args.junit}")
    print(f"report: {render_grid(result, args.report)}")
    unexpected = result.unexpected
    for case in unexpected:
        print(f"unexpected: {case.target} {case.scenario}: {case.verdict.value} {case.message}")
    return 1 if unexpected else 0


def _mutate(argv: list[str]) -> int:
    if "--fuzz" in argv:  # the fuzzers' strength, on the mutants the catalog kills
        from fuzz.power import main as fuzz_power

        return fuzz_power(argv, prog="gearspec mutate --fuzz")
    from conformance.mutation import main

    return main(argv, prog="gearspec mutate")


def _matrix(argv: list[str]) -> int:
    # One run over many targets with its report: `run` with the matrix as the point.
    if "--report" not in argv:
        argv = [*argv, "--report", "reports/latest/matrix"]
    return _run(argv)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "serve": (_serve, "run the reference job server (gearmand's options)"),
    "run": (_run, "play the conformance scenarios against servers"),
    "report": (_report, "render a saved run as HTML, JUnit or tables; compare two runs"),
    "fuzz": (_fuzz, "fuzz the codec, a server, a model of it, or two servers against each other"),
    "bench": (_bench, "load-test servers and compare them with gearmand"),
    "durability": (_durability, "kill servers during background jobs; count lost jobs"),
    "matrix": (_matrix, "one run over many targets, one report with their matrix"),
    "interop": (_interop, "every client library against every server: the interop grid"),
    "docker": (_docker, "build images (gearmand, perl, ref, gearspec) without a registry"),
    "pcap": (_pcap, "decode a capture's Gearman traffic, or turn it into a scenario"),
    "replay": (_replay, "replay a capture against a server and compare the answers"),
    "adapter": (_adapter, "check a client library's adapter against the contract"),
    "mutate": (_mutate, "mutation testing: how many one-mistake servers the catalog catches"),
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
    return (f"usage: gearspec COMMAND [options]   (gearspec COMMAND --help for more)\n\n"
            f"commands:\n{rows}\n")


def main(argv: list[str] | None = None) -> int:
    from conformance.children import follow_parent
    follow_parent()  # a run of gearspec mutate's: it ends when the mutate run does
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(), end="")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"gearspec {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"gearspec: error: unknown command {argv[0]!r} "
              f"(commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    return command[0](argv[1:])
