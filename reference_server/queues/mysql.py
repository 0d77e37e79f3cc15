"""``-q mysql``: gearmand's MySQL/MariaDB queue layout, with PyMySQL.

gearmand (plugins/queue/mysql/queue.cc) creates::

    CREATE TABLE gearman_queue (unique_key VARCHAR(64), function_name VARCHAR(255),
                                priority INT, data LONGBLOB, when_to_run INT,
                                unique key (unique_key, function_name))

We create it with ``when_to_run BIGINT`` (gearmand binds the epoch as a 32-bit
value and wraps times after 2038), and read and write it by column name, so a
table with more columns (an ``id`` primary key, as some deployments add) works.
A table either server wrote is read by the other.  A lost connection fails
that tick's write (QUEUE_ERROR); the next write reconnects.

``-q libdrizzle --libdrizzle-mysql`` is served here too: gearmand's libdrizzle
module (plugins/queue/drizzle/queue.cc) spoke the MySQL protocol to the same
layout (``when_to_run BIGINT``), with its own defaults (port 4427, user root,
database ``gearman``, table ``queue``).  Its older tables may lack
``when_to_run``; such a table still takes jobs, but refuses epoch jobs
(QUEUE_ERROR), as the module did.
"""

from __future__ import annotations

import re

from reference_server.queues import BatchingQueue, Op, QueueError, StoredJob

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class MySQLQueue(BatchingQueue):
    name = "mysql"
    option = "--mysql"  # how the options are spelled, for messages

    def __init__(self, host: str = "localhost", port: int = 3306, user: str = "",
                 password: str = "", db: str = "", table: str = "gearman_queue",
                 uds: str = "") -> None:
        super().__init__()
        if not _NAME.match(table):
            raise QueueError(f"{self.option}-table {table!r} is not a plain table name")
        self.params = {"host": host, "port": port, "user": user or None,
                       "password": password, "database": db or None,
                       "unix_socket": uds or None}
        self.where = uds or f"{host}:{port}"
        self.table = table
        self.db = None
        self._run([(f"CREATE TABLE IF NOT EXISTS {table} (unique_key VARCHAR(64), "
                    "function_name VARCHAR(255), priority INT, data LONGBLOB, "
                    "when_to_run BIGINT, UNIQUE KEY (unique_key, function_name))", ())])
        rows = self._run([("SELECT COUNT(*) FROM INFORMATION_SCHEMA.COLUMNS WHERE "
                           "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND "
                           "COLUMN_NAME = 'when_to_run'", (table,))], fetch=True)
        self.epochs = bool(rows and rows[0][0])

    def _connect(self) -> None:
        import pymysql

        try:
            self.db = pymysql.connect(**self.params, connect_timeout=5, autocommit=False,
                                      charset="utf8mb4")
        except pymysql.Error as error:
            self.db = None
            raise QueueError(f"mysql {self.where}: {error}") from None

    def _run(self, statements: list[tuple[str, tuple]], fetch: bool = False):  # type: ignore[no-untyped-def,type-arg]
        import pymysql

        if self.db is None:
            self._connect()
        assert self.db is not None
        try:
            with self.db.cursor() as cur:
                for sql, args in statements:
                    cur.execute(sql, args)
                rows = cur.fetchall() if fetch else None
            self.db.commit()
            return rows
        except pymysql.Error as error:
            try:
                self.db.rollback()
            except pymysql.Error:
                pass
            self.db.close() if self.db.open else None
            self.db = None
            raise QueueError(f"mysql: {error}") from None

    def add(self, job: StoredJob) -> None:
        if job.when and not self.epochs:
            raise QueueError(f"table {self.table} has no when_to_run column: no epoch jobs")
        super().add(job)

    def _write(self, ops: list[Op]) -> None:
        columns = ["unique_key", "function_name", "priority", "data"]
        columns += ["when_to_run"] if self.epochs else []
        insert = (f"INSERT INTO {self.table} ({', '.join(columns)}) "
                  f"VALUES ({', '.join(['%s'] * len(columns))})")
        delete = f"DELETE FROM {self.table} WHERE unique_key = %s AND function_name = %s"

        def row(job: StoredJob) -> tuple[object, ...]:
            return (job.unique, job.function, job.priority, job.data,
                    *((job.when,) if self.epochs else ()))

        self._run([(insert, row(a)) if kind == "add" else (delete, a) for kind, a in ops])

    def _read(self) -> list[StoredJob]:
        when = "when_to_run" if self.epochs else "0"
        rows = self._run([(f"SELECT unique_key, function_name, priority, data, {when} "
                           f"FROM {self.table}", ())], fetch=True)
        return [StoredJob(_bytes(u), _bytes(f), bytes(d or b""), int(p or 0), int(w or 0))
                for u, f, p, d, w in rows]

    def close(self) -> None:
        if self.db is not None and self.db.open:
            self.db.close()


def _bytes(value: object) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()


class DrizzleQueue(MySQLQueue):
    """``-q libdrizzle``: gearmand's libdrizzle module, for a MySQL or MariaDB server."""

    name = "libdrizzle"
    option = "--libdrizzle"

    def __init__(self, host: str = "localhost", port: int = 4427, user: str = "root",
                 password: str = "", db: str = "gearman", table: str = "queue",
                 uds: str = "", mysql: bool = False) -> None:
        if not mysql:
            # Without the switch libdrizzle spoke the Drizzle server's own protocol
            # (port 4427); Drizzle is long gone, and MySQL needs the switch in gearmand too.
            raise QueueError("only MySQL and MariaDB servers are served: add "
                             "--libdrizzle-mysql (the Drizzle protocol is not spoken)")
        super().__init__(host, port, user, password, db, table, uds)
