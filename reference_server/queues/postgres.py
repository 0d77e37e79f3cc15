"""``-q postgres``: gearmand's PostgreSQL queue layout, with psycopg 3.

gearmand (plugins/queue/postgres/queue.cc) creates::

    CREATE TABLE queue (unique_key VARCHAR(64), function_name VARCHAR(255),
                        priority INTEGER, data BYTEA, when_to_run INTEGER,
                        UNIQUE (unique_key, function_name))

We create the same table but with ``when_to_run BIGINT``: gearmand's INTEGER
refuses epoch times after 2038 (its SUBMIT_JOB_EPOCH for 4102444800 gets
QUEUE_ERROR).  Either server reads a table the other wrote.  Unlike gearmand
we delete with bound parameters (gearmand 1.1.x builds that statement by
string concatenation, unescaped).

A lost connection makes the write fail (QUEUE_ERROR for that tick's submits);
the next write reconnects.
"""

from __future__ import annotations

import re

from reference_server.queues import BatchingQueue, Op, QueueError, StoredJob

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PostgresQueue(BatchingQueue):
    name = "postgres"

    def __init__(self, conninfo: str = "", table: str = "queue") -> None:
        super().__init__()
        if not _NAME.match(table):
            raise QueueError(f"--libpq-table {table!r} is not a plain table name")
        self.conninfo = conninfo
        self.table = table
        self.db = None
        self._connect()
        self._run(lambda cur: cur.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (unique_key VARCHAR(64), "
            "function_name VARCHAR(255), priority INTEGER, data BYTEA, when_to_run BIGINT, "
            "UNIQUE (unique_key, function_name))"))

    def _connect(self) -> None:
        import psycopg

        try:
            self.db = psycopg.connect(self.conninfo, connect_timeout=5)
        except psycopg.Error as error:
            self.db = None
            raise QueueError("postgres: " + " ".join(str(error).split())) from None

    def _run(self, work):  # type: ignore[no-untyped-def]
        import psycopg

        if self.db is None or self.db.closed:
            self._connect()
        assert self.db is not None
        try:
            with self.db.transaction(), self.db.cursor() as cur:
                return work(cur)
        except psycopg.Error as error:
            if self.db.broken or self.db.closed:
                self.db = None
            raise QueueError("postgres: " + " ".join(str(error).split())) from None

    def _write(self, ops: list[Op]) -> None:
        insert = (f"INSERT INTO {self.table} (unique_key, function_name, priority, data, "
                  "when_to_run) VALUES (%s, %s, %s, %s, %s)")
        delete = f"DELETE FROM {self.table} WHERE unique_key = %s AND function_name = %s"

        def work(cur) -> None:  # type: ignore[no-untyped-def]
            for kind, arg in ops:
                if kind == "add":
                    cur.execute(insert, (arg.unique.decode(), arg.function.decode(),
                                         arg.priority, arg.data, arg.when))
                else:
                    cur.execute(delete, (arg[0].decode(), arg[1].decode()))

        try:
            self._run(work)
        except UnicodeDecodeError as error:
            raise QueueError(f"postgres: names must be UTF-8 ({error})") from None

    def _read(self) -> list[StoredJob]:
        rows = self._run(lambda cur: cur.execute(
            f"SELECT unique_key, function_name, priority, data, when_to_run "
            f"FROM {self.table}").fetchall())
        return [StoredJob((u or "").encode(), (f or "").encode(), bytes(d or b""), int(p or 0),
                          int(w or 0)) for u, f, p, d, w in rows]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
