"""The job store: functions, jobs, uniques, the per-priority FIFOs, registrations.

Rules this module keeps (gearmand 1.1.20 libgearman-server/job.cc, worker.cc):

* A job's coalescing key is its unique, or its data for the unique ``-``;
  jobs without a key never coalesce.  One job per (function, key).
* A queued job waits at the tail of its function's FIFO for its priority;
  a worker takes the head of the highest non-empty FIFO of the first of its
  registrations (newest CAN_DO first) whose function has a runnable job.
* Queueing a job wakes sleeping workers of its function with one NOOP each
  (at most ``-w`` of them), walking the wake-up ring from where the last walk
  stopped, so wake-ups rotate fairly.
* A job lost by its worker goes back to the tail of its FIFO (``requeue``),
  and is dropped after ``-j`` attempts.
* Abandoned and cancelled jobs are flagged ``ignore`` and dropped, unseen by
  workers, when they reach the head of a FIFO.
* A job's row in the persistent queue goes when the job ends (``finish``) or
  is cancelled; rows are *written* by ``persistence.py``.

Theory of operation.  ``model.py`` has the records and how they point at each
other.  The store changes them and sends the packets those changes imply
(NOOP wake-ups, WORK_FAIL to clients of a dropped job); the handlers decide
when, and answer the requests.
"""

from __future__ import annotations

from collections.abc import Callable

from reference_server.core.compat import c_string
from reference_server.core.model import Connection, Function, Job, Registration
from reference_server.core.options import ServerOptions
from reference_server.core.outbox import Outbox
from reference_server.core.timers import Timers
from reference_server.protocol import TYPES, Priority, response
from reference_server.queues import JobQueue

T = TYPES  # packet type numbers as plain ints (see protocol.packets.TYPES: speed)
_NOOP = response(T.NOOP)


def _status_by_unique(unique: bytes) -> bool:
    """Can GET_STATUS_UNIQUE find a job by this unique?  Not an empty one, and not
    "-" (such a job is keyed by its data)."""
    return unique not in (b"", b"-")


class JobStore:
    """Every function and job, and the rules that move jobs between FIFOs and workers."""

    __slots__ = ("options", "clock", "queue", "timers", "send", "functions", "jobs", "uniques",
                 "by_unique", "handle_counter")

    def __init__(self, options: ServerOptions, clock: Callable[[], float], queue: JobQueue,
                 timers: Timers, outbox: Outbox) -> None:
        self.options = options
        self.clock = clock
        self.queue = queue
        self.timers = timers
        self.send = outbox.send
        self.functions: dict[bytes, Function] = {}
        self.jobs: dict[bytes, Job] = {}  # by handle, in creation order
        self.uniques: dict[tuple[bytes, bytes], Job] = {}  # (function, key) -> job
        self.by_unique: dict[bytes, Job] = {}  # GET_STATUS_UNIQUE: unique -> job
        self.handle_counter = 1  # the number in the next job handle

    # ------------------------------------------------------------------
    # Functions and jobs

    def function(self, name: bytes) -> Function:
        """The function of that name, made if it does not exist yet."""
        function = self.functions.get(name)
        if function is None:
            function = self.functions[name] = Function(name)
        return function

    @staticmethod
    def key(unique: bytes, data: bytes) -> bytes | None:
        # gearmand job.cc: no unique -> never coalesced; unique "-" -> the data is the
        # key (and empty data means no coalescing); else the unique itself.
        if not unique:
            return None
        if unique == b"-":
            return data or None
        return unique

    def existing(self, function: Function, unique: bytes, data: bytes) -> Job | None:
        """The job a submit with this unique and data coalesces with, if any."""
        key = self.key(unique, data)
        return None if key is None else self.uniques.get((function.name, key))

    def create(self, function: Function, unique: bytes, data: bytes, priority: Priority,
               background: bool, when: int = 0, reducer: bytes = b"") -> Job:
        """A new job with the next handle, indexed but not yet queued."""
        handle = b"%s:%d" % (self.options.job_handle_prefix, self.handle_counter)
        self.handle_counter = (self.handle_counter + 1) & 0xFFFFFFFF  # gearmand: uint32_t
        key = self.key(unique, data)
        job = Job(handle, function, unique, data, priority, key, background, when, reducer)
        function.total += 1
        self.jobs[handle] = job
        if key is not None:
            self.uniques[(function.name, key)] = job
            if _status_by_unique(unique):
                self.by_unique[unique] = job
        return job

    def enqueue(self, job: Job) -> None:
        """Put a job at the tail of its FIFO and wake sleeping workers (gearmand
        job.cc gearman_server_job_queue: NOOPs first, then the queue)."""
        function = job.function
        workers = function.workers
        if workers:
            count = len(workers)
            limit = self.options.worker_wakeup
            start = index = function.wake_cursor % count
            sent = 0
            while True:
                conn = workers[index].conn
                if conn.sleeping and not conn.noop_sent:
                    conn.noop_sent = True
                    self.send(conn, _NOOP)
                    sent += 1
                index = (index + 1) % count
                if index == start or (limit and sent >= limit):
                    break
            function.wake_cursor = index
        function.queues[job.priority].append(job)
        function.queued += 1

    # ------------------------------------------------------------------
    # Workers taking jobs

    def take(self, conn: Connection) -> Job | None:
        """The next job for a worker (gearmand 1.1.20 gearman_server_job_take).

        Registrations are tried in the connection's order (newest CAN_DO first);
        the first whose function has a runnable job gives the head of its highest
        non-empty priority FIFO.  So priority is per function, not global.  With
        -R the registration used moves to the end of the list."""
        now = self.clock()
        registrations = conn.registrations
        for position, registration in enumerate(registrations):
            function = registration.function
            if not function.queued:
                continue
            job = self._pop_runnable(function, now)
            if job is None:
                continue
            if self.options.round_robin:
                registrations.append(registrations.pop(position))
            if job.ignore:
                # Abandoned by its clients or cancelled: dropped here, unseen by workers.
                self.free(job)
                return self.take(conn)
            job.worker = registration
            registration.jobs.append(job)
            function.running += 1
            return job
        return None

    @staticmethod
    def _pop_runnable(function: Function, now: float) -> Job | None:
        for queue in function.queues:
            if not queue:
                continue
            head = queue[0]
            if head.when == 0 or head.when <= now:
                function.queued -= 1
                return queue.popleft()
            for index, job in enumerate(queue):
                if job.when == 0 or job.when <= now:
                    del queue[index]
                    function.queued -= 1
                    return job
            # DEVIATION "Future epoch jobs block lower priorities": gearmand stops
            # at the first non-empty level; we go on to the next one.
        return None

    def peek(self, conn: Connection) -> bool:
        """Is a job waiting for this worker?  (PRE_SLEEP; abandoned jobs at the head
        of a FIFO are dropped on the way, as gearmand's peek does.)"""
        now = self.clock()
        for registration in conn.registrations:
            function = registration.function
            if not function.queued:
                continue
            for queue in function.queues:
                while queue and queue[0].ignore:
                    function.queued -= 1
                    self.free(queue.popleft())
                for job in queue:
                    if job.when == 0 or job.when <= now:
                        return True
        return False

    def owned_job(self, conn: Connection, handle: bytes) -> Job | None:
        # gearmand gearman_server_job_get: the worker must be the one running it.
        job = self.jobs.get(c_string(handle))
        if job is None or job.worker is None or job.worker.conn is not conn:
            return None
        return job

    # ------------------------------------------------------------------
    # Clients, and the end of a job

    def forward(self, job: Job, packet: bytes) -> None:
        for client in reversed(job.clients):  # gearmand: newest-attached client first
            self.send(client, packet)

    def attach_client(self, job: Job, conn: Connection) -> None:
        job.clients.append(conn)
        conn.listening[job] = conn.listening.get(job, 0) + 1

    def detach_client(self, job: Job, conn: Connection) -> None:
        conn.listening.pop(job, None)
        job.clients[:] = [c for c in job.clients if c is not conn]
        if not job.clients and not job.background:
            # gearmand client.cc: an abandoned foreground job is not run; a queued one
            # is dropped when next taken, a running one finishes unheard.
            # DEVIATION "A foreground client leaving a background job it joined":
            # gearmand abandons background jobs this way too.
            job.ignore = True

    def finish(self, job: Job) -> None:
        """A job ended (complete, fail, exception): its row goes, then the job."""
        if job.persisted:
            self.queue.done(job.stored_key, job.function.name)
            job.persisted = False
        self.free(job)

    def free(self, job: Job) -> None:
        """Forget a job: off its worker (and that worker's timer), out of the indexes,
        away from its clients."""
        function = job.function
        function.total -= 1
        worker = job.worker
        if worker is not None:
            function.running -= 1
            worker.jobs.remove(job)
            timer = worker.conn.timer
            if timer is not None and timer.job is job:
                self.timers.cancel(worker.conn)
            job.worker = None
        del self.jobs[job.handle]
        if job.key is not None:
            if self.uniques.get((function.name, job.key)) is job:
                del self.uniques[(function.name, job.key)]
            if self.by_unique.get(job.unique) is job:
                del self.by_unique[job.unique]
                self._reindex_unique(job.unique)
        for client in job.clients:
            client.listening.pop(job, None)
        job.clients.clear()

    def _reindex_unique(self, unique: bytes) -> None:
        # Another function may hold a job with the same unique.
        for name in self.functions:
            other = self.uniques.get((name, unique))
            if other is not None and _status_by_unique(other.unique):
                self.by_unique[unique] = other
                return

    def requeue(self, job: Job) -> None:
        """A worker lost a job without finishing it (gearmand job.cc, §3.8)."""
        job.retries += 1
        limit = self.options.job_retries
        if limit and job.retries >= limit:
            # -j N: dropped after N attempts; clients hear WORK_FAIL.
            self.forward(job, response(T.WORK_FAIL, job.handle))
            self.finish(job)
            return
        worker = job.worker
        assert worker is not None
        worker.jobs.remove(job)
        timer = worker.conn.timer
        if timer is not None and timer.job is job:
            self.timers.cancel(worker.conn)
        job.worker = None
        job.function.running -= 1
        job.numerator = job.denominator = 0
        self.enqueue(job)

    # ------------------------------------------------------------------
    # Registrations and the wake-up ring

    def register(self, conn: Connection, name: bytes, timeout_ms: int) -> None:
        function = self.function(name)
        registration = Registration(conn, function, timeout_ms)
        conn.registrations.insert(0, registration)  # gearmand GEARMAND_LIST_ADD: at the front
        ring = function.workers
        # New workers join the wake-up ring just before its current start.
        cursor = function.wake_cursor % len(ring) if ring else 0
        ring.insert(cursor, registration)
        function.wake_cursor = cursor + 1 if len(ring) > 1 else 0

    def remove_registrations(self, conn: Connection, registrations: list[Registration]) -> None:
        for registration in registrations:
            # gearmand worker.cc gearman_server_worker_free puts the jobs back first
            # (newest first) and only then takes the registration out of the ring: a
            # worker that sleeps holding a job and sends CANT_DO is woken by its own
            # job (a closing connection is no sleeper any more: Server.disconnect).
            for job in reversed(registration.jobs[:]):
                self.requeue(job)
            conn.registrations.remove(registration)
            ring = registration.function.workers
            index = ring.index(registration)
            ring.pop(index)
            if index < registration.function.wake_cursor:
                registration.function.wake_cursor -= 1

    # ------------------------------------------------------------------
    # Admin

    def cancel(self, handle: bytes) -> bool:
        """Admin 'cancel job': clients hear WORK_FAIL, the row goes, the job is dropped
        when next taken (gearmand job.cc gearman_server_job_cancel)."""
        job = self.jobs.get(handle)
        if job is None:
            return False
        self.forward(job, response(T.WORK_FAIL, job.handle))
        # DEVIATION "Cancelled jobs stay silent": gearmand keeps the clients attached,
        # so a running cancelled job's results still reach them after the WORK_FAIL.
        for client in job.clients:
            client.listening.pop(job, None)
        job.clients.clear()
        if job.persisted:
            self.queue.done(job.stored_key, job.function.name)
            job.persisted = False
        job.ignore = True
        return True

    def drop_function(self, function: Function) -> bool:
        """Admin 'drop function': only a function nobody serves or waits for."""
        # DEVIATION "Dropping a function with queued jobs": gearmand drops it and
        # leaves its jobs pointing at freed memory; we refuse.
        if function.workers or function.running or function.queued:
            return False
        del self.functions[function.name]
        return True
