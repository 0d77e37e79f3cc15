"""A lean asyncio load generator: N workers and M pipelining clients.

Built directly on the codec (no per-job futures) so that it costs little CPU
next to the server it measures.  Workers loop CAN_DO → GRAB_JOB_UNIQ →
WORK_COMPLETE (+ the next GRAB in the same write), sleeping with PRE_SLEEP
when there is nothing to do.  Clients keep ``pipeline`` submits in flight.

* ``fg``: SUBMIT_JOB round trips; a job counts when its WORK_COMPLETE reaches
  the client; latency is submit → WORK_COMPLETE.
* ``bg``: SUBMIT_JOB_BG; a job counts when a worker completed it; latency is
  submit → JOB_CREATED.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from reference_server.protocol import Decoder, Packet, PacketType, encode

T = PacketType


@dataclass
class LoadResult:
    mode: str
    jobs: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds
    submit_seconds: float = 0.0  # bg: until the last JOB_CREATED

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Run:
    """Shared counters of one load run."""

    def __init__(self, total: int, mode: str) -> None:
        self.total = total
        self.mode = mode
        self.completed = 0
        self.created = 0
        self.latencies: list[float] = []
        self.done = asyncio.get_running_loop().create_future()
        self.all_created = asyncio.get_running_loop().create_future()
        self.created_at = 0.0

    def complete(self, count: int = 1) -> None:
        self.completed += count
        if self.completed >= self.total and not self.done.done():
            self.done.set_result(time.perf_counter())


class _WorkerProtocol(asyncio.Protocol):
    def __init__(self, run: _Run, function: bytes, grab: int) -> None:
        self.run = run
        self.decoder = Decoder()
        self.grab = encode(grab)
        self.pre_sleep = encode(T.PRE_SLEEP)
        self.can_do = encode(T.CAN_DO, function)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.can_do + self.grab)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        out = []
        completed = 0
        decoder = self.decoder
        decoder.feed(data)
        while (event := decoder.next_event()) is not None:
            kind = event.type  # type: ignore[union-attr]
            if kind == T.JOB_ASSIGN_UNIQ or kind == T.JOB_ASSIGN:
                args = event.args  # type: ignore[union-attr]
                out.append(encode(T.WORK_COMPLETE, args[0], args[-1]))
                out.append(self.grab)
                completed += 1
            elif kind == T.NO_JOB:
                out.append(self.pre_sleep)
            elif kind == T.NOOP:
                out.append(self.grab)
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
        if completed and self.run.mode == "bg":
            self.run.complete(completed)


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, run: _Run, function: bytes, jobs: int, pipeline: int) -> None:
        self.run = run
        self.decoder = Decoder()
        self.remaining = jobs
        self.pipeline = pipeline
        kind = T.SUBMIT_JOB if run.mode == "fg" else T.SUBMIT_JOB_BG
        self.submit = encode(kind, function, b"", b"0123456789abcdef")
        self.sent_at: deque[float] = deque()
        self.started: dict[bytes, float] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self) -> None:
        self._send(min(self.pipeline, self.remaining))

    def _send(self, count: int) -> None:
        if count <= 0:
            return
        self.remaining -= count
        now = time.perf_counter()
        self.sent_at.extend([now] * count)
        assert self.transport is not None
        self.transport.write(self.submit * count)

    def data_received(self, data: bytes) -> None:
        run = self.run
        decoder = self.decoder
        decoder.feed(data)
        refill = 0
        while (event := decoder.next_event()) is not None:
            assert isinstance(event, Packet)
            kind = event.type
            if kind == T.JOB_CREATED:
                started = self.sent_at.popleft()
                if run.mode == "fg":
                    self.started[event.args[0]] = started
                else:
                    run.latencies.append(time.perf_counter() - started)
                    run.created += 1
                    refill += 1
                    if run.created >= run.total and not run.all_created.done():
                        run.all_created.set_result(time.perf_counter())
            elif kind == T.WORK_COMPLETE:
                started = self.started.pop(event.args[0])
                run.latencies.append(time.perf_counter() - started)
                run.complete()
                refill += 1
            elif kind == T.ERROR:
                raise RuntimeError(f"server error: {event.args!r}")
        self._send(min(refill, self.remaining))


async def run_load(host: str, port: int, *, mode: str = "fg", jobs: int = 100_000,
                   workers: int = 4, clients: int = 4, pipeline: int = 32,
                   function: bytes = b"gearspec_bench", grab: int = T.GRAB_JOB_UNIQ,
                   timeout: float = 120.0) -> LoadResult:
    """One run against a server; returns throughput and latencies."""
    if mode not in ("fg", "bg"):
        raise ValueError("mode is 'fg' or 'bg'")
    loop = asyncio.get_running_loop()
    run = _Run(jobs, mode)
    transports = []
    try:
        for _ in range(workers):
            transport, _ = await loop.create_connection(
                lambda: _WorkerProtocol(run, function, grab), host, port)
            transports.append(transport)
        shares = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
        client_protocols = []
        for share in shares:
            transport, protocol = await loop.create_connection(
                lambda share=share: _ClientProtocol(run, function, share, pipeline), host, port)
            transports.append(transport)
            client_protocols.append(protocol)
        await asyncio.sleep(0.05)  # let the workers' CAN_DO land before the first submit
        started = time.perf_counter()
        for protocol in client_protocols:
            protocol.begin()
        finished = await asyncio.wait_for(run.done, timeout)
        submit_seconds = 0.0
        if mode == "bg" and run.all_created.done():
            submit_seconds = run.all_created.result() - started
        return LoadResult(mode, jobs, finished - started, run.latencies, submit_seconds)
    finally:
        for transport in transports:
            transport.close()
