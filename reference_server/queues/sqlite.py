"""``-q libsqlite3``: gearmand's SQLite queue, table for table.

gearmand's layout (plugins/queue/sqlite/instance.cc)::

    CREATE TABLE gearman_queue (unique_key TEXT, function_name TEXT, priority INTEGER,
                                data BLOB, when_to_run INTEGER,
                                PRIMARY KEY (unique_key, function_name))

with INSERT OR REPLACE to add, DELETE by (unique_key, function_name) when done,
and a plain SELECT to replay.  A table either server wrote is read by the other.

Durability: the database runs in WAL mode with ``synchronous=FULL``.  WAL lets
one transaction per event-loop tick append the tick's rows with a single
fsync of the log; FULL makes that fsync happen at every commit, so a row whose
JOB_CREATED was sent survives not only a killed server (NORMAL would do) but a
power cut as well (NORMAL may lose the last transactions then).  A
transaction holding only deletes (jobs that ended) is committed with NORMAL:
no acknowledgement waits on it, a killed server keeps it, and if a power cut
loses it those jobs simply run again.

``--store-queue-on-shutdown`` is gearmand 1.1.20's mode: nothing is written while
the server runs; the jobs still pending are written when it stops cleanly
(a crash loses them); rows of finished jobs are still deleted, and the table
is not emptied after replay.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

from reference_server.queues import BatchingQueue, Op, QueueError, StoredJob

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class SQLiteQueue(BatchingQueue):
    name = "libsqlite3"

    def __init__(self, path: str, table: str = "gearman_queue",
                 store_on_shutdown: bool = False) -> None:
        super().__init__()
        if not _NAME.match(table):
            raise QueueError(f"--libsqlite3-table {table!r} is not a plain table name")
        self.path = path
        self.table = table
        self.store_on_shutdown = store_on_shutdown
        self.durable = not store_on_shutdown
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (unique_key TEXT, function_name TEXT, "
                "priority INTEGER, data BLOB, when_to_run INTEGER, "
                "PRIMARY KEY (unique_key, function_name))")
            columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if "when_to_run" not in columns:  # tables from gearmand before epoch jobs
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN when_to_run INTEGER")
        except sqlite3.Error as error:
            raise QueueError(f"sqlite3 {path}: {error}") from None

    def add(self, job: StoredJob) -> None:
        if not self.store_on_shutdown:
            super().add(job)

    def _write(self, ops: list[Op]) -> None:
        insert = (f"INSERT OR REPLACE INTO {self.table} (priority, unique_key, function_name, "
                  "data, when_to_run) VALUES (?, ?, ?, ?, ?)")
        delete = f"DELETE FROM {self.table} WHERE unique_key = ? AND function_name = ?"
        # Only an acknowledgement needs the fsync: a batch of deletes alone is
        # committed to the WAL without one (it survives a killed server; after a power
        # cut the next fsync may not have carried it, and those jobs run again).
        acknowledging = any(kind == "add" for kind, _ in ops)
        try:
            if not acknowledging:
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for kind, arg in ops:
                    if kind == "add":
                        self.db.execute(insert, (arg.priority, _text(arg.unique),
                                                 _text(arg.function), arg.data, arg.when))
                    else:
                        self.db.execute(delete, (_text(arg[0]), _text(arg[1])))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            finally:
                if not acknowledging:
                    self.db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as error:
            raise QueueError(f"sqlite3 {self.path}: {error}") from None

    def _read(self) -> list[StoredJob]:
        try:
            rows = self.db.execute(f"SELECT unique_key, function_name, priority, data, "
                                   f"when_to_run FROM {self.table}").fetchall()
        except sqlite3.Error as error:
            raise QueueError(f"sqlite3 {self.path}: {error}") from None
        return [StoredJob(_bytes(u), _bytes(f), _bytes(d), int(p or 0), int(w or 0))
                for u, f, p, d, w in rows]

    def shutdown(self, remaining: Iterable[StoredJob]) -> None:
        if self.store_on_shutdown:
            self._ops.extend(("add", job) for job in remaining)
        super().shutdown(remaining)

    def close(self) -> None:
        self.db.close()


def _text(value: bytes) -> str | bytes:
    """gearmand binds names as TEXT: so do we, unless the bytes are not UTF-8 (Python
    cannot bind those as TEXT); then as a BLOB, consistently, so deletes still match."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


def _bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode()
