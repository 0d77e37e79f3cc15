"""Persistent queues against real stores: SQLite always; PostgreSQL, MariaDB and Redis
on 127.0.0.1 when they run (each test skips with the command that starts one).

Each backend: rows round-trip through add/done/flush/replay; the reference
server started with it keeps background jobs across a SIGKILL; the store going
away makes submits fail with ERROR QUEUE_ERROR (nothing acknowledged that was
not stored) and the server recovers when it comes back.  Tables written by
gearmand's modules are replayed by our server and the other way round.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance.targets import GEARMAND, GearmandTarget, RefTarget, Target
from reference_server.client import Client, Link, ServerError, SyncMarkers, Worker
from reference_server.protocol import PacketType, encode
from reference_server.queues import EMPTY_UNIQUE_MARKER, BatchingQueue, QueueError, StoredJob
from results import RunResult, Verdict
from tests.conftest import require_gearmand

T = PacketType
PG_CONNINFO = "host=127.0.0.1 port={port} user=postgres dbname=test"


def service_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


SERVICES = {
    "postgres": (5432, "PostgreSQL is not running on 127.0.0.1:5432 (start it: pg_ctlcluster "
                       "--skip-systemctl-redirect $(ls /etc/postgresql) main start)"),
    "mysql": (3306, "MariaDB is not running on 127.0.0.1:3306 (start it: start-stop-daemon "
                    "--start --oknodo --background --exec /usr/sbin/mariadbd)"),
    "redis": (6379, "Redis is not running on 127.0.0.1:6379 (start it: redis-server "
                    "--daemonize yes --bind 127.0.0.1 --port 6379)"),
}


def store_of(kind: str) -> str:
    """The service a queue kind talks to (libdrizzle: MariaDB, as mysql does)."""
    return "mysql" if kind == "libdrizzle" else kind


def require_service(kind: str) -> None:
    port, message = SERVICES[store_of(kind)]
    if not service_up(port):
        pytest.skip(message)


class Proxy:
    """A TCP proxy in front of a store, that a test can cut and restore."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[socket.socket] = []
        self.open = True
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if not self.open:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(("127.0.0.1", self.upstream))
                except OSError:
                    client.close()
                    continue
                self.pairs += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every connection and refuse new ones (the store 'goes away')."""
        with self.lock:
            self.open = False
            for s in self.pairs:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.pairs.clear()

    def restore(self) -> None:
        with self.lock:
            self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def proxy() -> Iterator[Callable[[int], Proxy]]:
    made: list[Proxy] = []

    def make(port: int) -> Proxy:
        made.append(Proxy(port))
        return made[-1]

    yield make
    for p in made:
        p.close()


def table_name() -> str:
    return "gs_" + secrets.token_hex(4)


def backend(kind: str, tmp_path: Path, port: int | None = None, table: str | None = None
            ) -> BatchingQueue:
    from reference_server.queues.mysql import DrizzleQueue, MySQLQueue
    from reference_server.queues.postgres import PostgresQueue
    from reference_server.queues.redis import RedisQueue
    from reference_server.queues.sqlite import SQLiteQueue

    table = table or table_name()
    if kind == "sqlite":
        return SQLiteQueue(str(tmp_path / "q.db"), table)
    require_service(kind)
    if kind == "postgres":
        return PostgresQueue(PG_CONNINFO.format(port=port or 5432), table)
    if kind == "mysql":
        return MySQLQueue("127.0.0.1", port or 3306, "root", "", "test", table)
    if kind == "libdrizzle":
        return DrizzleQueue("127.0.0.1", port or 3306, db="test", table=table, mysql=True)
    return RedisQueue("127.0.0.1", port or 6379, "", table)


def server_options(kind: str, tmp_path: Path, port: int | None = None,
                   table: str | None = None) -> list[str]:
    table = table or table_name()
    if kind == "sqlite":
        return ["-q", "libsqlite3", "--libsqlite3-db", str(tmp_path / "q.db"),
                "--libsqlite3-table", table]
    require_service(kind)
    if kind == "postgres":
        return ["-q", "postgres", "--libpq-conninfo", PG_CONNINFO.format(port=port or 5432),
                "--libpq-table", table]
    if kind == "mysql":
        return ["-q", "mysql", "--mysql-host", "127.0.0.1", "--mysql-port", str(port or 3306),
                "--mysql-user", "root", "--mysql-db", "test", "--mysql-table", table]
    if kind == "libdrizzle":  # gearmand's spelling, its defaults for user (root)
        return ["-q", "libdrizzle", "--libdrizzle-host", "127.0.0.1", "--libdrizzle-port",
                str(port or 3306), "--libdrizzle-db", "test", "--libdrizzle-table", table,
                "--libdrizzle-mysql"]
    return ["-q", "redis", "--redis-server", "127.0.0.1", "--redis-port", str(port or 6379),
            "--redis-prefix", table]


KINDS = ["sqlite", "postgres", "mysql", "redis", "libdrizzle"]
ROWS = [StoredJob(b"u1", b"f", b"data\0with nul", 1), StoredJob(b"u2", b"f", b"", 0, 4102444800),
        StoredJob(b"u-3", b"fn-with-dash", b"x", 2)]


@pytest.mark.parametrize("kind", KINDS)
def test_rows_round_trip(kind: str, tmp_path: Path) -> None:
    queue = backend(kind, tmp_path)
    for row in ROWS:
        queue.add(row)
    queue.flush()
    assert sorted(queue.replay(), key=lambda r: r.unique) == sorted(ROWS, key=lambda r: r.unique)
    queue.done(b"u1", b"f")
    queue.add(StoredJob(b"u1", b"f", b"again", 1))  # the same key, after its delete
    queue.flush()
    assert {(r.unique, r.data) for r in queue.replay()} == {
        (b"u1", b"again"), (b"u2", b""), (b"u-3", b"x")}
    queue.close()


async def submit_background(target: Target, jobs: list[tuple[bytes, bytes]],
                            function: bytes = b"durable") -> list[bytes]:
    async with await Client.connect(target.address) as client:
        return [(await client.submit(function, data, unique=unique, background=True)).handle
                for unique, data in jobs]


async def run_all(target: Target, count: int, function: bytes = b"durable"
                  ) -> list[tuple[bytes, bytes]]:
    done: list[tuple[bytes, bytes]] = []
    async with await Worker.connect(target.address) as worker:
        worker.register(function, lambda job: done.append((job.unique, job.data)) or b"")
        await asyncio.wait_for(worker.work(max_jobs=count), 20)
        # An ECHO round trip after the last WORK_COMPLETE: once it is answered the
        # server has handled the completion and committed the row's deletion.
        await worker.link.sync(SyncMarkers(b"queues-sync-").next(), 10)
    return done


@pytest.mark.parametrize("kind", KINDS)
async def test_jobs_survive_a_kill(kind: str, tmp_path: Path, start_target: Callable[..., Target]
                                   ) -> None:
    target = start_target("ref", *server_options(kind, tmp_path))
    jobs = [(b"a", b"1"), (b"b", b"2"), (b"", b"three"), (b"", b"four")]
    await submit_background(target, jobs)
    target.kill()
    target.restart()
    assert sorted(await run_all(target, 4)) == sorted(jobs)
    target.kill()
    target.restart()
    async with await Link.open(target.address) as link:
        link.send(T.CAN_DO, b"durable")
        link.send(T.GRAB_JOB)
        await link.drain()
        assert (await link.next_event(5)).type == T.NO_JOB  # done jobs do not come back


@pytest.mark.parametrize("kind", ["postgres", "mysql", "redis", "libdrizzle"])
async def test_store_going_away_acknowledges_nothing(kind: str, tmp_path: Path,
                                                     proxy: Callable[[int], Proxy],
                                                     start_target: Callable[..., Target]
                                                     ) -> None:
    require_service(kind)
    cut = proxy(SERVICES[store_of(kind)][0])
    target = start_target("ref", *server_options(kind, tmp_path, port=cut.port))
    assert len(await submit_background(target, [(b"before", b"x")])) == 1
    cut.cut()
    with pytest.raises(ServerError) as refused:
        await submit_background(target, [(b"during", b"x")])
    assert refused.value.code == b"QUEUE_ERROR"
    cut.restore()
    # Back again: the next submit is stored (the backend reconnects by itself).
    for _ in range(50):
        try:
            await submit_background(target, [(b"after", b"x")])
            break
        except ServerError:
            await asyncio.sleep(0.1)
    target.kill()
    target.restart()
    assert sorted(u for u, _ in await run_all(target, 2)) == [b"after", b"before"]


def test_sqlite_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    queue = backend("sqlite", tmp_path)
    assert queue.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # type: ignore[attr-defined]
    assert queue.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # type: ignore[attr-defined]


def test_empty_uniques_are_stored_under_generated_keys(tmp_path: Path) -> None:
    from reference_server.core import JobServer

    queue = backend("sqlite", tmp_path)
    server = JobServer(queue=queue)
    conn = server.connect()
    server.receive(conn, encode(T.SUBMIT_JOB_BG, b"f", b"", b"1")
                   + encode(T.SUBMIT_JOB_BG, b"f", b"", b"2"))
    server.drain()
    keys = [r.unique for r in queue.replay()]
    assert len(keys) == 2 and all(k.startswith(EMPTY_UNIQUE_MARKER) for k in keys)


async def test_store_queue_on_shutdown(tmp_path: Path,
                                       start_target: Callable[..., Target]) -> None:
    db = tmp_path / "q.db"
    target = start_target("ref", "-q", "libsqlite3", "--libsqlite3-db", str(db),
                          "--store-queue-on-shutdown")
    await submit_background(target, [(b"kept", b"1")])
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM gearman_queue").fetchone()[0]
    assert rows == 0  # nothing written while running
    target.restart()  # SIGTERM: written at shutdown, replayed at start
    assert await run_all(target, 1) == [(b"kept", b"1")]
    target.kill()  # a crash in this mode loses what was not written
    target.restart()
    await submit_background(target, [(b"lost", b"2")])
    target.kill()
    target.restart()
    async with await Link.open(target.address) as link:
        link.send(T.CAN_DO, b"durable")
        link.send(T.GRAB_JOB)
        await link.drain()
        assert (await link.next_event(5)).type == T.NO_JOB


def test_bad_queue_options_are_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    for args, words in ((["-q", "libsqlite3"], "needs --libsqlite3-db"),
                        (["-q", "libsqlite3", "--libsqlite3-db",
                          str(tmp_path / "no" / "q.db")], "-q libsqlite3: sqlite3"),
                        (["-q", "postgres", "--libpq-conninfo", "host=127.0.0.1 port=1"],
                         "-q postgres: postgres:"),
                        (["-q", "redis", "--redis-port", "1"], "-q redis: redis 127.0.0.1:1"),
                        (["-q", "libdrizzle"], "add --libdrizzle-mysql"),
                        (["-q", "libdrizzle", "--libdrizzle-mysql", "--libdrizzle-host",
                          "127.0.0.1"], "-q libdrizzle: mysql 127.0.0.1:4427"),
                        (["-q", "libtokyocabinet", "--libtokyocabinet-file",
                          str(tmp_path / "q.tcb")], "-q libtokyocabinet: not provided"),
                        (["-q", "MongoDB"], "-q MongoDB: not provided")):
        done = subprocess.run([sys.executable, "-m", "reference_server", "-L", "127.0.0.1",
                               "-p", "0", "-l", "none", *args], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert words in line, line


# ---------------------------------------------------------------- gearmand's tables

GEARMAND_QUEUE = {  # how gearmand names each module and its options
    "sqlite": lambda tmp, table, port: ["-q", "libsqlite3", "--libsqlite3-db", str(tmp / "q.db"),
                                        "--libsqlite3-table", table],
    "postgres": lambda tmp, table, port: ["-q", "Postgres", "--libpq-conninfo",
                                          PG_CONNINFO.format(port=5432), "--libpq-table", table],
    "mysql": lambda tmp, table, port: ["-q", "MySQL", "--mysql-host", "127.0.0.1",
                                       "--mysql-user", "root", "--mysql-db", "test",
                                       "--mysql-table", table],
    "redis": lambda tmp, table, port: ["-q", "redis", "--redis-server", "127.0.0.1",
                                       "--redis-port", "6379", "--redis-prefix", table],
}
# Debian's gearmand is built without libdrizzle (test below); the table layout is the
# one its MySQL module writes, so a libdrizzle table is checked against that module.
GEARMAND_QUEUE["libdrizzle"] = GEARMAND_QUEUE["mysql"]
# Jobs both servers store the same way (gearmand cannot round-trip an empty unique,
# a '-' in a Redis key, or epoch times in Redis and PostgreSQL INTEGER columns; and
# its Redis replay cuts the data at a NUL).
SHARED_JOBS = [(b"ua", b"one"), (b"ub", b"two\0three")]
REDIS_SHARED_JOBS = [(b"ua", b"one"), (b"ub", b"two three")]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("writer", ["gearmand", "ref"])
async def test_the_other_server_replays_the_queue(kind: str, writer: str, tmp_path: Path,
                                                  start_target: Callable[..., Target]) -> None:
    require_gearmand()
    if kind != "sqlite":
        require_service(kind)
    table = table_name()
    gearmand = GEARMAND_QUEUE[kind](tmp_path, table, None)
    ours = server_options(kind, tmp_path, table=table)
    first, second = (gearmand, ours) if writer == "gearmand" else (ours, gearmand)
    reader = "ref" if writer == "gearmand" else "gearmand"
    jobs = REDIS_SHARED_JOBS if kind == "redis" else SHARED_JOBS
    target = start_target(writer, *first)
    await submit_background(target, jobs, function=b"crossfn")
    target.kill()
    other = start_target(reader, *second)
    assert sorted(await run_all(other, 2, function=b"crossfn")) == sorted(jobs)


def test_stale_queue_error_is_raised_for_a_dead_store() -> None:
    from reference_server.queues.redis import RedisQueue

    with pytest.raises(QueueError, match=r"redis 127\.0\.0\.1:1"):
        RedisQueue("127.0.0.1", 1)


def test_targets_are_process_targets() -> None:
    assert issubclass(RefTarget, Target) and issubclass(GearmandTarget, Target)


def test_debian_gearmand_has_no_libdrizzle_module() -> None:
    """Why libdrizzle is compared with gearmand's MySQL module and not with itself."""
    import subprocess

    require_gearmand()
    done = subprocess.run([GEARMAND, "-L", "127.0.0.1", "-p", "0", "-q", "libdrizzle",
                           "--libdrizzle-mysql"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "unrecognised option '--libdrizzle-mysql'" in done.stderr, done.stderr
    bare = subprocess.run([GEARMAND, "-L", "127.0.0.1", "-p", "0", "-q", "libdrizzle"],
                          capture_output=True, text=True, timeout=30)
    assert "Error while initializing the queue : libdrizzle" in bare.stderr, bare.stderr


async def test_an_old_libdrizzle_table_without_when_to_run(
        tmp_path: Path, start_target: Callable[..., Target]) -> None:
    """libdrizzle tables made before epoch jobs lack ``when_to_run``: they still take
    jobs, and refuse epoch jobs (QUEUE_ERROR), as gearmand's module did."""
    import pymysql

    require_service("mysql")
    table = table_name()
    with pymysql.connect(host="127.0.0.1", user="root", database="test") as db, \
            db.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (unique_key VARCHAR(64), function_name "
                       "VARCHAR(255), priority INT, data LONGBLOB, "
                       "UNIQUE KEY (unique_key, function_name))")
    target = start_target("ref", *server_options("libdrizzle", tmp_path, table=table))
    await submit_background(target, [(b"plain", b"x")])
    async with await Link.open(target.address) as link:
        link.send(T.SUBMIT_JOB_EPOCH, b"durable", b"later", b"4102444800", b"x")
        await link.drain()
        refused = await link.next_event(5)
        assert refused.type == T.ERROR and refused.args[0] == b"QUEUE_ERROR"
    target.kill()
    target.restart()
    assert await run_all(target, 1) == [(b"plain", b"x")]


async def test_libdrizzle_over_a_unix_socket(tmp_path: Path,
                                             start_target: Callable[..., Target]) -> None:
    """--libdrizzle-uds: the server's Unix socket instead of host and port."""
    import pymysql

    require_service("mysql")
    with pymysql.connect(host="127.0.0.1", user="root", database="test") as db, \
            db.cursor() as cursor:
        cursor.execute("SELECT @@socket")
        [(path,)] = cursor.fetchall()
    if not path or not Path(path).exists():
        pytest.skip(f"MariaDB's Unix socket {path!r} is not there: start mariadbd with "
                    "socket=/run/mysqld/mysqld.sock (Debian's default) to run this test")
    options = ["-q", "libdrizzle", "--libdrizzle-uds", path, "--libdrizzle-host", "nowhere",
               "--libdrizzle-db", "test", "--libdrizzle-table", table_name(),
               "--libdrizzle-mysql"]
    target = start_target("ref", *options)
    await submit_background(target, [(b"by-socket", b"x")])
    target.kill()
    target.restart()
    assert await run_all(target, 1) == [(b"by-socket", b"x")]


def test_a_server_that_cannot_start_again_is_a_verdict_and_the_run_goes_on(tmp_path: Path
                                                                           ) -> None:
    """gearmand 1.1.20 stores an empty workload as NULL and then refuses to replay it
    (DEVIATIONS.md "A background job without data in the SQLite queue"): its restart
    fails, the case is an ERROR that says so (baselined), and the next case runs."""
    require_gearmand()
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "gearspec", "run", "--target", "gearmand",
         "--select", "persistence/sqlite/job-without-data-survives-kill",
         "--select", "persistence/sqlite/background-job-survives-kill", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r.scenario: r for r in RunResult.from_json(out.read_text()).results}
    broken = results["persistence/sqlite/job-without-data-survives-kill"]
    assert broken.verdict == Verdict.ERROR and "did not start again" in broken.message
    assert "not type TEXT" in broken.message and broken.expected
    assert results["persistence/sqlite/background-job-survives-kill"].verdict == Verdict.PASS
