"""CAN_DO_TIMEOUT deadlines: when a worker has held a job too long.

Rules this module keeps (gearmand 1.1.20 connection.cc):

* One timer per connection: arming it for a new job drops the one before.
  An assignment through a registration without a timeout leaves none.
* Time is the core's ``clock``; nothing here fires by itself.  The server asks
  ``pop_due`` for the timers whose deadline has passed, in deadline order
  (ties in arming order), and decides what they mean (``server.expire_timers``).

Theory of operation.  Deadlines live in a heap.  Cancelling only marks the
entry, because taking it out of the middle of a heap costs more than leaving
it; marked entries are skipped when they reach the top, and when they
outnumber the live ones by far (a busy worker re-arms at every job) the heap
is rebuilt without them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from reference_server.core.model import Connection, Job, Timer


class Timers:
    __slots__ = ("clock", "heap", "_live", "_seq")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.heap: list[tuple[float, int, Timer]] = []  # cancelled ones linger
        self._live = 0
        self._seq = itertools.count()

    def arm(self, conn: Connection, job: Job) -> None:
        # gearmand connection.cc: one timer per connection, re-armed at every
        # assignment; an assignment through a registration without timeout drops it.
        # DEVIATION "CAN_DO_TIMEOUT follows the latest job": gearmand 1.1.20 can
        # leave the timer pointing at an earlier job.
        self.cancel(conn)
        assert job.worker is not None
        timeout_ms = job.worker.timeout_ms
        if timeout_ms:
            timer = Timer(self.clock() + timeout_ms / 1000, conn, job)
            conn.timer = timer
            heapq.heappush(self.heap, (timer.deadline, next(self._seq), timer))
            self._live += 1

    def cancel(self, conn: Connection) -> None:
        if conn.timer is not None:
            conn.timer.cancelled = True
            conn.timer = None
            self._live -= 1
            if len(self.heap) > 2 * self._live + 1024:
                # Workers re-arm their timer at every job: drop the dead entries
                # now and then rather than keep them until their deadline.
                self.heap = [entry for entry in self.heap if not entry[2].cancelled]
                heapq.heapify(self.heap)

    def next_deadline(self) -> float | None:
        while self.heap and self.heap[0][2].cancelled:
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap else None

    def pop_due(self, now: float) -> Timer | None:
        """The earliest live timer whose deadline is ``now`` or before, taken off its
        connection; None when there is none."""
        while self.heap and self.heap[0][0] <= now:
            _, _, timer = heapq.heappop(self.heap)
            if timer.cancelled:
                continue
            timer.conn.timer = None
            self._live -= 1
            return timer
        return None
