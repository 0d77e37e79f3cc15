"""``gearspec durability``: background jobs against a server killed at random.

Clients submit N background jobs, each with its own unique (as libgearman
does); workers run them and record which uniques they ran, how often.
Meanwhile the server is killed with SIGKILL at random moments and restarted
on the same port with the same queue.  A submit whose connection broke
before its JOB_CREATED is sent again (the client cannot know whether it was
stored).  At the end:

* acknowledged: uniques whose JOB_CREATED arrived;
* lost: acknowledged but never run (must be 0 for a durable server);
* duplicated: run more than once (allowed: delivery is at least once; a job
  that was running when the server died runs again), counted and reported.

Works with any target that can be restarted (``ref``, ``gearmand``, ...), given
the queue options (``--queue sqlite`` adds ``-q libsqlite3 --libsqlite3-db
{workdir}/queue.db``, for both).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from conformance.specs import parse_target
from conformance.targets import ProcessTarget, Target, TargetError
from reference_server.protocol import Decoder, Packet, PacketType, ProtocolError, encode

T = PacketType
FUNCTION = b"gearspec_durable"

QUEUES: dict[str, list[str]] = {
    "builtin": [],
    "sqlite": ["-q", "libsqlite3", "--libsqlite3-db", "{workdir}/queue.db"],
    "postgres": ["-q", "postgres", "--libpq-conninfo", "host=127.0.0.1 user=postgres dbname=test",
                 "--libpq-table", "{table}"],
    "mysql": ["-q", "mysql", "--mysql-host", "127.0.0.1", "--mysql-user", "root",
              "--mysql-db", "test", "--mysql-table", "{table}"],
    "redis": ["-q", "redis", "--redis-server", "127.0.0.1", "--redis-port", "6379",
              "--redis-prefix", "{table}"],
    # A memcached of the target's own (conformance/services.py), kept across the kills.
    "memcached": ["-q", "libmemcached", "--libmemcached-servers", "{memcached}"],
}


@dataclass
class DurabilityResult:
    target: str
    queue: str
    submitted: int
    acknowledged: int
    completed: int
    lost: int
    duplicated: int
    kills: int
    seconds: float
    lost_uniques: list[str] = field(default_factory=list)


class _Run:
    def __init__(self, target: Target, jobs: int, seed: str) -> None:
        self.target = target
        self.uniques = [f"{seed}-{i}".encode() for i in range(jobs)]
        self.acked: set[bytes] = set()
        self.ran: Counter[bytes] = Counter()
        self.stop = False

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while not self.stop:
            try:
                return await asyncio.wait_for(asyncio.open_connection(*self.target.address), 2)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
        raise asyncio.CancelledError

    async def client(self, share: list[bytes], pipeline: int) -> None:
        pending = list(share)
        while pending and not self.stop:
            reader, writer = await self._connect()
            decoder = Decoder()
            in_flight: list[bytes] = []
            try:
                while pending or in_flight:
                    if writer.is_closing():
                        raise ConnectionError("closed")
                    while pending and len(in_flight) < pipeline:
                        unique = pending.pop()
                        in_flight.append(unique)
                        writer.write(encode(T.SUBMIT_JOB_BG, FUNCTION, unique, unique))
                    data = await asyncio.wait_for(reader.read(65536), 10)
                    if not data:
                        raise ConnectionError("closed")
                    for event in decoder.events(data):
                        if isinstance(event, Packet) and event.type == T.JOB_CREATED:
                            self.acked.add(in_flight.pop(0))
                        elif isinstance(event, Packet) and event.type == T.ERROR:
                            pending.append(in_flight.pop(0))  # refused: send it again
            except (OSError, TimeoutError, ConnectionError, ProtocolError):
                pending.extend(in_flight)  # not known to be stored: send again
            finally:
                writer.close()

    async def worker(self) -> None:
        while not self.stop:
            reader, writer = await self._connect()
            decoder = Decoder()
            try:
                writer.write(encode(T.CAN_DO, FUNCTION) + encode(T.GRAB_JOB_UNIQ))
                while not self.stop:
                    data = await asyncio.wait_for(reader.read(65536), 5)
                    if not data:
                        raise ConnectionError("closed")
                    out = []
                    for event in decoder.events(data):
                        if not isinstance(event, Packet):
                            continue
                        if event.type == T.JOB_ASSIGN_UNIQ:
                            handle, _, unique, _ = event.args
                            self.ran[unique] += 1
                            out += [encode(T.WORK_COMPLETE, handle, b""),
                                    encode(T.GRAB_JOB_UNIQ)]
                        elif event.type == T.NO_JOB:
                            out.append(encode(T.PRE_SLEEP))
                        elif event.type == T.NOOP:
                            out.append(encode(T.GRAB_JOB_UNIQ))
                    if writer.is_closing():
                        raise ConnectionError("closed")
                    writer.write(b"".join(out))
            except (OSError, TimeoutError, ConnectionError, ProtocolError):
                await asyncio.sleep(0.02)
            finally:
                writer.close()

    async def killer(self, kills: int, rng: random.Random) -> int:
        """Kill the server each time the acknowledged count passes one of ``kills``
        random points, so every kill falls while jobs are being submitted and run."""
        points = sorted(rng.sample(range(1, len(self.uniques)), min(kills, len(self.uniques) - 1)))
        done = 0
        for point in points:
            while len(self.acked) < point and not self.stop:
                await asyncio.sleep(0.001)
            if self.stop:
                break
            await asyncio.to_thread(self.target.kill)
            await asyncio.to_thread(self.target.restart)
            done += 1
        return done


async def run_durability(target: Target, *, queue: str = "sqlite", jobs: int = 2000,
                         kills: int = 5, clients: int = 4, workers: int = 4,
                         pipeline: int = 32, seed: int | None = None,
                         timeout: float = 300.0) -> DurabilityResult:
    """Play the load against a started, restartable target."""
    rng = random.Random(seed)
    state = _Run(target, jobs, secrets.token_hex(4))
    started = time.monotonic()
    shares = [state.uniques[i::clients] for i in range(clients)]
    worker_tasks = [asyncio.create_task(state.worker()) for _ in range(workers)]
    killer = asyncio.create_task(state.killer(kills, rng))
    try:
        await asyncio.wait_for(asyncio.gather(*(state.client(s, pipeline) for s in shares)),
                               timeout)
        done_kills = await killer
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not state.acked <= set(state.ran):
            await asyncio.sleep(0.1)
    finally:
        state.stop = True
        killer.cancel()
        for task in worker_tasks:
            task.cancel()
        await asyncio.gather(*worker_tasks, killer, return_exceptions=True)
    lost = sorted(state.acked - set(state.ran))
    return DurabilityResult(
        target.name, queue, jobs, len(state.acked), len(set(state.ran)), len(lost),
        sum(count - 1 for count in state.ran.values() if count > 1), done_kills,
        round(time.monotonic() - started, 2), [u.decode() for u in lost[:20]])


def queue_options(queue: str) -> list[str]:
    table = "gearspec_" + secrets.token_hex(4)
    return [option.replace("{table}", table) for option in QUEUES[queue]]


def main(argv: list[str] | None = None, prog: str = "gearspec durability") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", default=[], help="ref, gearmand, ...")
    parser.add_argument("--queue", choices=sorted(set(QUEUES) - {"builtin"}), default="sqlite")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    results = []
    for spec in args.target or ["ref"]:
        try:
            target = parse_target(spec, queue_options(args.queue))
            target.require_socket("gearspec durability")
            if not isinstance(target, ProcessTarget):
                raise TargetError(f"{spec} cannot be restarted")
            target.start()
        except TargetError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        try:
            results.append(asyncio.run(run_durability(target, queue=args.queue, jobs=args.jobs,
                                                      kills=args.kills, seed=args.seed)))
        finally:
            target.stop()
    from tabulate import tabulate

    print(tabulate([[r.target, r.queue, r.submitted, r.acknowledged, r.completed, r.lost,
                     r.duplicated, r.kills, r.seconds] for r in results],
                   ["target", "queue", "jobs", "acknowledged", "run", "lost", "duplicated",
                    "SIGKILLs", "seconds"]))
    for r in results:
        if r.lost_uniques:
            print(f"{r.target}: lost {', '.join(r.lost_uniques)}")
    return 1 if any(r.lost for r in results) else 0
