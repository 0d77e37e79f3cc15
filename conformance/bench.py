"""``gearspec bench``: the same load against several targets, in one run.

For each target: start it, run foreground round trips and background jobs
with ``reference_server.loadgen`` (``--repeat`` times, median reported),
read the server's CPU time from ``/proc/PID/stat`` before and after, and
optionally measure the memory cost of idle connections.  Prints jobs/s,
latency percentiles, server CPU per job, and each target's ratio to
gearmand when gearmand is one of the targets.

This is a benchmark, not a test: the numbers depend on the machine, and the
load generator shares it with the server.  Server CPU per job is the fairer
comparison on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conformance.durability import queue_options
from conformance.specs import parse_target
from conformance.targets import Target, TargetError
from reference_server.loadgen import LoadResult, run_load
from reference_server.protocol import PacketType

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class ModeFigures:
    jobs_per_second: float
    cpu_us_per_job: float | None
    p50_ms: float
    p99_ms: float
    submits_per_second: float = 0.0


@dataclass
class TargetFigures:
    target: str
    modes: dict[str, ModeFigures] = field(default_factory=dict)
    idle_asked: int = 0
    idle_connections: int = 0
    idle_mb: float | None = None


def _measure(target: Target, mode: str, args: argparse.Namespace) -> ModeFigures:
    runs: list[tuple[LoadResult, float | None]] = []
    host, port = target.address
    grab = PacketType.GRAB_JOB_UNIQ if "grab-job-uniq" in target.capabilities else \
        PacketType.GRAB_JOB
    for _ in range(args.repeat):
        before = cpu_seconds(target.pid) if target.pid else None
        result = _run_async(run_load(host, port, mode=mode, jobs=args.jobs, workers=args.workers,
                                     clients=args.clients, pipeline=args.pipeline, grab=grab))
        cpu = None
        if before is not None and target.pid:
            cpu = (cpu_seconds(target.pid) - before) / result.jobs * 1e6
        runs.append((result, cpu))
    runs.sort(key=lambda r: r[0].jobs_per_second)
    result, cpu = runs[len(runs) // 2]
    return ModeFigures(result.jobs_per_second, cpu, result.percentile(0.5) * 1e3,
                       result.percentile(0.99) * 1e3,
                       result.jobs / result.submit_seconds if result.submit_seconds else 0.0)


def _run_async(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def idle_connection_cost(target: Target, count: int) -> tuple[int, float | None]:
    """How many of ``count`` idle connections a freshly started server took, and the
    MB of server memory they cost (None without a local process to measure)."""
    host, port = target.address
    before = rss_bytes(target.pid) if target.pid else 0
    sockets: list[socket.socket] = []
    # Connect in batches no larger than a listen backlog, and let the server answer
    # a probe (so it has accepted the batch) before the next: otherwise the kernel
    # drops SYNs and every retry costs a second.  A minute at most.
    deadline = time.monotonic() + 60
    try:
        while len(sockets) < count and time.monotonic() < deadline:
            try:
                for _ in range(min(16, count - len(sockets))):
                    sockets.append(socket.create_connection((host, port), timeout=2))
            except OSError:
                break  # the server stopped accepting: report how far it got
            target.probe(host, port)
        time.sleep(0.5)
        if not target.pid:
            return len(sockets), None
        return len(sockets), (rss_bytes(target.pid) - before) / 1e6
    finally:
        for sock in sockets:
            sock.close()


def _format(figures: list[TargetFigures], baseline: str | None) -> str:
    base = next((f for f in figures if f.target == baseline), None)
    header = ("target", "mode", "jobs/s", "vs gearmand", "server CPU µs/job", "p50 ms",
              "p99 ms", "bg submits/s")
    rows = [header]
    for fig in figures:
        for mode, m in fig.modes.items():
            ratio = ""
            if base is not None and mode in base.modes and base.modes[mode].jobs_per_second:
                ratio = f"{m.jobs_per_second / base.modes[mode].jobs_per_second:.2f}"
            rows.append((fig.target, mode, f"{m.jobs_per_second:,.0f}", ratio,
                         "" if m.cpu_us_per_job is None else f"{m.cpu_us_per_job:.1f}",
                         f"{m.p50_ms:.2f}", f"{m.p99_ms:.2f}",
                         f"{m.submits_per_second:,.0f}" if m.submits_per_second else ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for fig in figures:
        if not fig.idle_asked:
            continue
        taken = "" if fig.idle_connections == fig.idle_asked else \
            f" (it took only {fig.idle_connections:,} of {fig.idle_asked:,})"
        cost = "unknown" if fig.idle_mb is None else f"{fig.idle_mb:.1f} MB"
        lines.append(f"{fig.target}: {fig.idle_connections:,} idle connections cost {cost} "
                     f"of server memory{taken}")
    return "\n".join(lines)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", default=[],
                        help="ref, gearmand, perl, gear or tcp://HOST:PORT (repeatable)")
    parser.add_argument("--target-option", action="append", default=[], metavar="TARGET=OPTION",
                        help="extra server option, e.g. gearmand=-t0 (repeatable)")
    parser.add_argument("--mode", choices=["fg", "bg", "both"], default="both")
    parser.add_argument("--queue", choices=["builtin", "sqlite", "postgres", "mysql", "redis"],
                        default="builtin",
                        help="persistent queue for every target (test services on 127.0.0.1)")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pipeline", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the median counts")
    parser.add_argument("--idle-connections", type=int, default=0,
                        help="also measure the memory cost of this many idle connections")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the figures here (gearspec report --bench charts them)")
    return parser


def main(argv: list[str] | None = None, prog: str = "gearspec bench") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    specs = args.target or ["ref"]
    extra: dict[str, list[str]] = {}
    for item in args.target_option:
        name, sep, option = item.partition("=")
        if not sep:
            parser.error(f"--target-option wants TARGET=OPTION, got {item!r}")
        extra.setdefault(name, []).append(option)
    modes = ["fg", "bg"] if args.mode == "both" else [args.mode]
    figures = []
    for spec in specs:
        try:
            target = parse_target(spec, [*queue_options(args.queue), *extra.get(spec, [])])
            target.require_socket("gearspec bench")
            target.start()
        except TargetError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        try:
            fig = TargetFigures(spec)
            for mode in modes:
                fig.modes[mode] = _measure(target, mode, args)
            figures.append(fig)
        finally:
            target.stop()
        if args.idle_connections:  # on a fresh server: memory freed by the load would hide it
            fig.idle_asked = args.idle_connections
            with parse_target(spec, extra.get(spec)) as fresh:
                fig.idle_connections, fig.idle_mb = idle_connection_cost(
                    fresh, args.idle_connections)
    print(f"{args.workers} workers, {args.clients} clients pipelining {args.pipeline}, "
          f"{args.jobs:,} jobs per run, median of {args.repeat}")
    print(_format(figures, "gearmand" if "gearmand" in specs else None))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "jobs": args.jobs, "workers": args.workers, "clients": args.clients,
            "pipeline": args.pipeline, "repeat": args.repeat,
            "targets": [asdict(f) for f in figures]}, indent=1))
        print(f"figures: {args.json}")
    return 0
