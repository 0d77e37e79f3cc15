"""Leaving a shared server as a fuzz case found it.

Every case names its own functions, so cases never see each other's jobs; but a
server lists a function in ``status`` until it is dropped, and a long campaign
would make every ``status`` slower than the last.  After a case has hung up its
connections, a worker of our own takes and completes whatever the case left
queued, and once ``status`` shows the functions empty and unserved, they are
dropped.  (Dropping a function that still has jobs is unsafe on gearmand 1.1.20,
which frees the function under them, so it is never tried.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from reference_server.client import Admin, ConnectionClosed, Link
from reference_server.protocol import Packet, PacketType

T = PacketType


async def tidy(address: tuple[str, int], functions: Iterable[bytes], *,
               attempts: int = 200) -> bool:
    """Best effort; True once none of ``functions`` is listed any more."""
    names = list(functions)
    drain: Link | None = None
    offered: set[bytes] = set()
    fruitless = 0
    try:
        async with await Admin.connect(address) as admin:
            for _ in range(attempts):
                status = await admin.status()
                names = [n for n in names if n in status]
                if not names:
                    return True
                queued = [n for n in names if status[n][0] > status[n][1]]
                for name in names:
                    total, _running, workers = status[name]
                    if total == 0 and workers == 0:
                        await admin.command(f"drop function {name.decode('latin-1')}")
                if queued:
                    drain = drain or await Link.open(address)
                    for name in set(queued) - offered:
                        drain.send(T.CAN_DO, name)
                        offered.add(name)
                    fruitless = 0 if await _complete_all(drain) else fruitless + 1
                    if fruitless == 3:
                        # Listed as queued, yet a worker offering the function is
                        # given nothing: the jobs cannot be reached (a name listed
                        # as ours, cut at a NUL).  Leave them.
                        return False
                    continue
                if drain is not None and all(status[n][0] == 0 for n in names):
                    await drain.close()  # its registrations go with it
                    drain = None
                # Hang-ups not handled yet: their workers are still listed.
                await asyncio.sleep(0.002)
    except (OSError, TimeoutError, ConnectionClosed):
        pass  # a server the case left dead or wedged is the case's finding, not ours
    finally:
        if drain is not None:
            await drain.close()
    return False


async def _complete_all(worker: Link) -> int:
    """Take and complete jobs until NO_JOB; how many were taken."""
    taken = 0
    while True:
        worker.send(T.GRAB_JOB)
        event = await worker.next_event(5.0)
        while isinstance(event, Packet) and event.type == T.NOOP:
            event = await worker.next_event(5.0)
        if not isinstance(event, Packet) or event.type != T.JOB_ASSIGN:
            return taken
        worker.send(T.WORK_COMPLETE, event.args[0], b"")
        taken += 1
