"""Persistent queues: where background jobs survive a restart.

The job server core talks to a queue through ``JobQueue`` only: ``add`` a
background job before its JOB_CREATED is sent, mark it ``done`` when it
completes, fails, is dropped after its retries or cancelled, and ``replay``
the stored jobs once at start-up, before the server listens.  Rows are keyed
by (unique, function name), as in every gearmand queue module.

``BuiltinQueue`` is gearmand's ``-q builtin``: jobs live in memory only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


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

    def add(self, job: StoredJob) -> None: ...

    def done(self, unique: bytes, function: bytes) -> None: ...

    def replay(self) -> Iterable[StoredJob]: ...

    def close(self) -> None: ...


class BuiltinQueue:
    """No persistence: background jobs are lost when the server stops."""

    name = "builtin"

    def add(self, job: StoredJob) -> None:
        return None

    def done(self, unique: bytes, function: bytes) -> None:
        return None

    def replay(self) -> Iterable[StoredJob]:
        return ()

    def close(self) -> None:
        return None


QUEUE_TYPES = {"builtin": BuiltinQueue}
