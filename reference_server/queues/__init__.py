"""Persistent queues: where background jobs survive a restart.

The job server core talks to a queue through ``JobQueue`` only.  It ``add`` s a
background job when it is submitted and marks it ``done`` when it completes,
fails, is dropped after its retries or is cancelled; ``replay`` gives the
stored jobs back once at start-up, before the server listens.  Rows are keyed
by (unique, function name), as in every gearmand queue module.

Group commit.  ``add`` and ``done`` only stage a change; ``flush`` writes every
staged change in order in one transaction.  The transport calls the core's
``commit()`` once per event-loop tick, before any byte of that tick is sent:
so a client's JOB_CREATED leaves only after its row is committed, yet one
transaction carries every submit of the tick.  If the write fails, the core
replaces those JOB_CREATED replies with ``ERROR QUEUE_ERROR`` and forgets the
jobs: nothing is acknowledged that was not stored.

A queue with ``durable = False`` (``builtin``) skips all of this.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class QueueError(Exception):
    """The store refused a write; the client gets ERROR QUEUE_ERROR."""


@dataclass(frozen=True, slots=True)
class StoredJob:
    unique: bytes
    function: bytes
    data: bytes
    priority: int  # 0 high, 1 normal, 2 low (gearmand's numbering)
    when: int = 0  # epoch jobs: Unix time; 0 otherwise


class JobQueue(Protocol):
    name: str
    durable: bool  # True: the core waits for flush() before acknowledging

    def add(self, job: StoredJob) -> None: ...

    def done(self, unique: bytes, function: bytes) -> None: ...

    def flush(self) -> None: ...

    def replay(self) -> Iterable[StoredJob]: ...

    def shutdown(self, remaining: Iterable[StoredJob]) -> None: ...

    def close(self) -> None: ...


class BuiltinQueue:
    """``-q builtin``: no persistence; background jobs are lost when the server stops."""

    name = "builtin"
    durable = False

    def add(self, job: StoredJob) -> None:
        return None

    def done(self, unique: bytes, function: bytes) -> None:
        return None

    def flush(self) -> None:
        return None

    def replay(self) -> Iterable[StoredJob]:
        return ()

    def shutdown(self, remaining: Iterable[StoredJob]) -> None:
        return None

    def close(self) -> None:
        return None


#: Background jobs without a unique all share the key (unique "", function) in
#: gearmand's tables: SQLite overwrites the older row, MySQL and PostgreSQL refuse
#: the second job.  We store such a job under a generated unique that starts with
#: this marker, and give it back empty on replay (DEVIATIONS.md, "Background jobs
#: without a unique in a persistent queue").
EMPTY_UNIQUE_MARKER = b"gearspec-empty-"


def storage_key(unique: bytes) -> bytes:
    """The unique a job is stored under (see EMPTY_UNIQUE_MARKER)."""
    return unique or EMPTY_UNIQUE_MARKER + uuid.uuid4().hex.encode()


_GENERATED = re.compile(re.escape(EMPTY_UNIQUE_MARKER) + rb"[0-9a-f]{32}")


def stored_unique(key: bytes) -> bytes:
    """The job's own unique, from the key it was stored under: only a key of exactly
    the generated form stands for an empty one (a client's own unique that begins
    with the marker is given back as it was)."""
    return b"" if _GENERATED.fullmatch(key) else key


Op = tuple[str, Any]  # ("add", StoredJob) or ("done", (unique, function))


class BatchingQueue:
    """Staging and group commit for the SQL and Redis backends: subclasses write a
    list of operations in one transaction (``_write``) and read rows (``_read``)."""

    name = "batching"
    durable = True

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._retry: list[Op] = []  # deletes that failed: tried again next time

    def add(self, job: StoredJob) -> None:
        self._ops.append(("add", job))

    def done(self, unique: bytes, function: bytes) -> None:
        self._ops.append(("done", (unique, function)))

    @property
    def pending(self) -> bool:
        return bool(self._ops or self._retry)

    def flush(self) -> None:
        if not self._ops and not self._retry:
            return
        ops, self._ops = self._retry + self._ops, []
        self._retry = []
        try:
            self._write(ops)
        except QueueError:
            # Adds are lost with the transaction (their clients hear QUEUE_ERROR); a
            # delete that failed is tried again, or else the job would run twice.
            self._retry = [op for op in ops if op[0] == "done"]
            raise

    def replay(self) -> Iterable[StoredJob]:
        return self._read()

    def shutdown(self, remaining: Iterable[StoredJob]) -> None:
        try:
            self.flush()
        except QueueError:
            pass

    def close(self) -> None:
        return None

    def _write(self, ops: list[Op]) -> None:
        raise NotImplementedError

    def _read(self) -> list[StoredJob]:
        raise NotImplementedError


def queue_types() -> dict[str, type]:
    """``-q NAME`` (case-insensitive) → queue class.  Backends load their driver lazily."""
    from reference_server.queues.memcached import MemcachedQueue
    from reference_server.queues.mysql import DrizzleQueue, MySQLQueue
    from reference_server.queues.postgres import PostgresQueue
    from reference_server.queues.redis import RedisQueue
    from reference_server.queues.sqlite import SQLiteQueue

    return {"builtin": BuiltinQueue, "libsqlite3": SQLiteQueue, "postgres": PostgresQueue,
            "mysql": MySQLQueue, "redis": RedisQueue, "libmemcached": MemcachedQueue,
            "libdrizzle": DrizzleQueue}
