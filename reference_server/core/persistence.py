"""Persistence staging: background jobs' rows in the persistent queue.

Rules this module keeps (gearmand 1.1.20 job.cc, plus group commit):

* A background job is stored before its JOB_CREATED leaves; if the store
  refuses, the client gets ERROR QUEUE_ERROR and no job exists.
* With a durable queue the row is only *staged* by the submit: the submits of
  one transport tick share one write, ``commit``, which the transport's
  ``drain`` runs before it takes any bytes.  Until then the JOB_CREATED
  replies wait in their connections' output, and a new job is not queued (no
  worker can see a job whose row may yet fail).  If the write fails, those
  replies become ERROR QUEUE_ERROR and new jobs are dropped unseen.
* Rows go when their job ends (``jobs.JobStore.finish``) or is cancelled.
* At start-up, stored rows come back through the normal path (``replay``),
  so equal keys coalesce; the duplicate rows of one job all go when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reference_server.core.jobs import JobStore
from reference_server.core.model import Connection, Job, Staged
from reference_server.core.outbox import Outbox
from reference_server.protocol import ErrorCode, PacketType, Priority, response
from reference_server.queues import JobQueue, QueueError, StoredJob, storage_key, stored_unique


class Staging:
    """The rows written at the next commit, and the replies waiting for them."""

    __slots__ = ("queue", "store", "outbox", "on_error", "staged", "batching")

    def __init__(self, queue: JobQueue, store: JobStore, outbox: Outbox,
                 on_error: Callable[[str], None]) -> None:
        self.queue = queue
        self.store = store
        self.outbox = outbox
        self.on_error = on_error  # a write the queue refused, for the transport's log
        self.staged: dict[Job, Staged] = {}
        # A queue that batches its writes itself has changes pending even with
        # nothing staged here (rows deleted by finished jobs).
        self.batching = hasattr(queue, "pending")

    def persist(self, conn: Connection, job: Job, *, new: bool) -> bool:
        # Background jobs are stored before JOB_CREATED; if the store refuses, the
        # client gets ERROR QUEUE_ERROR and no job exists (gearmand job.cc).  With a
        # durable queue the row is staged and written at the next commit().
        job.stored_key = storage_key(job.unique)
        try:
            self.queue.add(StoredJob(job.stored_key, job.function.name, job.data,
                                     int(job.priority), job.when))
        except QueueError as error:
            self.on_error(str(error))
            self.outbox.error(conn, ErrorCode.QUEUE_ERROR)
            return False
        job.persisted = True
        if self.queue.durable:
            self.staged[job] = Staged(job, new)
        return True

    def acknowledge(self, conn: Connection, job: Job, reply: bytes) -> None:
        """Send a submit's JOB_CREATED; while the job's row is staged the reply waits
        for the commit (which may replace it with ERROR QUEUE_ERROR)."""
        staged = self.staged.get(job)
        if staged is not None:  # acknowledged only once its row is committed
            staged.replies.append((conn, len(conn.out)))
        self.outbox.send(conn, reply)

    def commit(self) -> None:
        """Write the tick's staged queue changes; then release (or, if the write
        failed, replace with ERROR QUEUE_ERROR) the JOB_CREATED replies waiting on
        them.  ``drain`` calls it, so no acknowledgement leaves before its row."""
        if not self.staged and not (self.batching and self.queue.pending):
            return
        staged, self.staged = self.staged, {}
        try:
            self.queue.flush()
        except QueueError as error:
            self.on_error(str(error))
            refusal = response(PacketType.ERROR, *ErrorCode.QUEUE_ERROR.value)
            for entry in staged.values():
                for conn, index in entry.replies:
                    conn.out[index] = refusal
                job = entry.job
                job.persisted = False
                if entry.new:
                    self.store.free(job)  # never queued, never seen by a worker
                else:
                    job.background = False
            return
        for entry in staged.values():
            if entry.new and self.store.jobs.get(entry.job.handle) is entry.job:
                self.store.enqueue(entry.job)

    def stored_jobs(self) -> list[StoredJob]:
        """Every job with a row in the persistent queue (for --store-queue-on-shutdown)."""
        return [StoredJob(j.stored_key, j.function.name, j.data, int(j.priority), j.when)
                for j in self.store.jobs.values() if j.persisted]

    def replay(self, stored: Iterable[StoredJob]) -> int:
        """Jobs from the persistent queue at start-up: added through the normal path
        (so equal keys coalesce), with new handles and no client.  Returns the count."""
        store = self.store
        count = 0
        for row in stored:
            function = store.function(row.function)
            unique = stored_unique(row.unique)
            job = store.existing(function, unique, row.data)
            if job is None:
                job = store.create(function, unique, row.data, Priority(row.priority),
                                   background=True, when=row.when)
                job.persisted = True
                job.stored_key = row.unique
                store.enqueue(job)
                count += 1
            elif job.stored_key != row.unique:
                # A duplicate row (same function and unique): the job runs once,
                # and its end must remove this row too.
                self.queue.done(row.unique, row.function)
        return count
