"""The memory transport (``reference_server.memory``): the whole server, gearmand's
options and persistent queues included, driven without sockets or sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_server.core import JobServer
from reference_server.memory import MemoryPeer, MemoryServer
from reference_server.protocol import Decoder, Magic, Packet, PacketType, encode
from reference_server.usage import UsageError

T = PacketType
NOW = 1_800_000_000.0


def packets(peer: MemoryPeer) -> list[Packet]:
    """What the server sent ``peer`` since the last look, decoded."""
    events = list(Decoder().events(peer.receive()))
    assert all(isinstance(e, Packet) and e.magic is Magic.RES for e in events), events
    return events  # type: ignore[return-value]


def types(peer: MemoryPeer) -> list[str]:
    return [p.name for p in packets(peer)]


def submit(client: MemoryPeer, kind: PacketType = T.SUBMIT_JOB, data: bytes = b"hello",
           unique: bytes = b"") -> bytes:
    client.send(encode(kind, b"reverse", unique, data))
    [created] = packets(client)
    assert created.type == T.JOB_CREATED
    return created.args[0]


def grab(worker: MemoryPeer) -> Packet:
    worker.send(encode(T.GRAB_JOB_UNIQ))
    [assigned] = packets(worker)
    return assigned


@pytest.fixture
def sqlite_argv(tmp_path: Path) -> list[str]:
    return ["-q", "libsqlite3", "--libsqlite3-db", str(tmp_path / "queue.db")]


class TestRoundTrip:
    def test_job_between_a_client_and_a_worker(self) -> None:
        server = MemoryServer(["--job-handle-prefix", "H:mem"], now=NOW)
        worker, client = server.connect(), server.connect()
        worker.send(encode(T.CAN_DO, b"reverse") + encode(T.PRE_SLEEP))
        assert worker.receive() == b""
        handle = submit(client)
        assert handle == b"H:mem:1"
        assert types(worker) == ["NOOP"]  # woken in the same tick as the submit
        assigned = grab(worker)
        assert (assigned.type, assigned.args) == (T.JOB_ASSIGN_UNIQ,
                                                  (handle, b"reverse", b"", b"hello"))
        worker.send(encode(T.WORK_COMPLETE, handle, b"olleh"))
        assert packets(client) == [Packet(T.WORK_COMPLETE, (handle, b"olleh"), Magic.RES)]

    def test_admin_lists_small_distinct_labels(self) -> None:
        server = MemoryServer([], now=NOW)
        worker, admin = server.connect(), server.connect()
        worker.send(encode(T.SET_CLIENT_ID, b"w") + encode(T.CAN_DO, b"reverse"))
        admin.send(b"workers\n")
        rows = admin.receive().decode().splitlines()
        assert rows[-1] == "."
        labels = [int(row.split()[0]) for row in rows[:-1]]
        assert sorted(labels) == [1, 2]
        assert "1 127.0.0.1 w : reverse" in rows

    def test_hanging_up_requeues_and_wakes_the_others(self) -> None:
        server = MemoryServer([], now=NOW)
        first, second, client = server.connect(), server.connect(), server.connect()
        for worker in (first, second):
            worker.send(encode(T.CAN_DO, b"reverse"))
        handle = submit(client)
        assert grab(first).args[0] == handle
        second.send(encode(T.PRE_SLEEP))
        first.close()
        assert first.closed
        assert types(second) == ["NOOP"]  # the job is back: delivered by close() itself
        assert grab(second).args[0] == handle

    def test_eof_closes_the_connection(self) -> None:
        server = MemoryServer([], now=NOW)
        peer = server.connect()
        peer.send(encode(T.ECHO_REQ, b"last"))
        peer.shutdown_write()
        assert peer.closed
        assert types(peer) == ["ECHO_RES"]
        with pytest.raises(BrokenPipeError):
            peer.send(encode(T.ECHO_REQ, b"after"))

    def test_server_closing_a_connection(self) -> None:
        server = MemoryServer([], now=NOW)
        peer = server.connect()
        peer.send(encode(T.ECHO_REQ, b"before") + b"\0XYZ" + bytes(8))  # bad magic: closed
        assert peer.closed
        assert types(peer) == ["ECHO_RES"]
        peer.send(encode(T.ECHO_REQ, b"lost"))  # as into a socket the server closed
        assert peer.receive() == b""


class TestClock:
    def test_can_do_timeout_fires_on_advance(self) -> None:
        server = MemoryServer([], now=NOW)
        worker, other, client = server.connect(), server.connect(), server.connect()
        worker.send(encode(T.CAN_DO_TIMEOUT, b"reverse", b"1500"))
        other.send(encode(T.CAN_DO, b"reverse") + encode(T.PRE_SLEEP))
        handle = submit(client)
        assert types(other) == ["NOOP"]
        assert grab(worker).args[0] == handle
        other.send(encode(T.GRAB_JOB_UNIQ) + encode(T.PRE_SLEEP))  # nothing left: asleep
        assert types(other) == ["NO_JOB"]
        assert server.next_deadline() == NOW + 1.5
        server.advance(1.4)
        assert other.receive() == b"" and server.now == NOW + 1.4
        server.advance(0.2)  # the deadline passes: the job is back, ``other`` is woken
        assert types(other) == ["NOOP"]
        assert server.now == pytest.approx(NOW + 1.6)
        assert server.next_deadline() is None
        assert grab(other).args[0] == handle
        worker.send(encode(T.WORK_COMPLETE, handle, b"late"))
        assert types(worker) == ["ERROR"]  # no longer its job

    def test_timers_fire_in_deadline_order_at_their_own_time(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        server = MemoryServer(["-j", "1"], now=NOW)  # dropped at the first timeout
        fired_at: list[float] = []
        expire = JobServer.expire_timers

        def recording(core: JobServer) -> None:
            fired_at.append(server.now)
            expire(core)

        monkeypatch.setattr(JobServer, "expire_timers", recording)
        client = server.connect()
        workers = []
        for timeout in (b"3000", b"1000"):
            worker = server.connect()
            worker.send(encode(T.CAN_DO_TIMEOUT, b"reverse", timeout))
            workers.append(worker)
        handles = [submit(client, data=b"a"), submit(client, data=b"b")]
        for worker in workers:
            grab(worker)
        seen: list[tuple[int, bytes]] = []
        server.advance(10)
        for packet in packets(client):
            seen.append((packet.type, packet.args[0]))
        assert seen == [(T.WORK_FAIL, handles[1]), (T.WORK_FAIL, handles[0])]
        assert fired_at == [NOW + 1, NOW + 3]
        assert server.now == NOW + 10

    def test_the_clock_does_not_go_back(self) -> None:
        server = MemoryServer([], now=NOW)
        with pytest.raises(ValueError):
            server.advance(-1)


class TestPersistence:
    def test_background_job_survives_restart(self, sqlite_argv: list[str]) -> None:
        server = MemoryServer(sqlite_argv, now=NOW)
        client = server.connect()
        submit(client, T.SUBMIT_JOB_BG, b"keep", b"u1")
        server.restart()
        assert server.alive and client.closed
        assert server.now == NOW
        worker = server.connect()
        worker.send(encode(T.CAN_DO, b"reverse"))
        assigned = grab(worker)
        assert assigned.args[1:] == (b"reverse", b"u1", b"keep")
        worker.send(encode(T.WORK_COMPLETE, assigned.args[0], b""))
        server.restart()
        worker = server.connect()
        worker.send(encode(T.CAN_DO, b"reverse"))
        assert grab(worker).type == T.NO_JOB  # done means gone from the queue

    def test_kill_loses_nothing_committed(self, sqlite_argv: list[str]) -> None:
        server = MemoryServer(sqlite_argv, now=NOW)
        client = server.connect()
        submit(client, T.SUBMIT_JOB_BG, b"acknowledged", b"u2")  # JOB_CREATED: committed
        server.kill()
        assert not server.alive and client.closed
        with pytest.raises(ConnectionRefusedError):
            server.connect()
        server.restart()
        worker = server.connect()
        worker.send(encode(T.CAN_DO, b"reverse"))
        assert grab(worker).args[1:] == (b"reverse", b"u2", b"acknowledged")

    def test_store_on_shutdown_needs_a_graceful_stop(self, sqlite_argv: list[str]) -> None:
        argv = [*sqlite_argv, "--store-queue-on-shutdown"]
        server = MemoryServer(argv, now=NOW)
        submit(server.connect(), T.SUBMIT_JOB_BG, b"on-stop", b"u3")
        server.stop()
        assert not server.alive
        server.restart()  # not alive: just a new core, replaying what stop() wrote
        worker = server.connect()
        worker.send(encode(T.CAN_DO, b"reverse"))
        assert grab(worker).args[2] == b"u3"


class TestHTTP:
    def test_request_answered_by_a_binary_worker(self) -> None:
        server = MemoryServer(["-r", "http"], now=NOW)
        worker = server.connect()
        worker.send(encode(T.CAN_DO, b"reverse") + encode(T.PRE_SLEEP))
        http = server.connect(http=True)
        http.send(b"POST /reverse HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        assert http.receive() == b""
        assert types(worker) == ["NOOP"]
        assigned = grab(worker)
        worker.send(encode(T.WORK_COMPLETE, assigned.args[0], b"olleh"))
        reply = http.receive()
        assert reply.startswith(b"HTTP/1.0 200 OK\r\nX-Gearman-Job-Handle: ")
        assert b"X-Gearman-Command: WORK_COMPLETE\r\nContent-Length: 5\r\n" in reply
        assert reply.endswith(b"\r\n\r\nolleh")
        assert http.closed

    def test_no_function_is_404_at_once(self) -> None:
        server = MemoryServer(["-r", "http"], now=NOW)
        http = server.connect(http=True)
        http.send(b"GET / HTTP/1.0\r\n\r\n")
        assert http.receive().startswith(b"HTTP/1.0 404 NOT_FOUND\r\n")
        assert http.closed

    def test_http_needs_the_module(self) -> None:
        with pytest.raises(ValueError):
            MemoryServer([], now=NOW).connect(http=True)


class TestOptions:
    @pytest.mark.parametrize("argv", [["--no-such-option"], ["-w", "300"], ["-q", "nosuch"],
                                      ["-q", "libsqlite3"], ["-d"], ["-u", "nobody"],
                                      ["-r", "spdy"]])
    def test_bad_options_are_usage_errors(self, argv: list[str]) -> None:
        with pytest.raises(UsageError):
            MemoryServer(argv)

    def test_socket_and_process_options_are_ignored(self) -> None:
        server = MemoryServer(["-L", "127.0.0.1", "-p", "0", "-l", "none", "-t", "8",
                               "--verbose", "INFO"], now=NOW)
        admin = server.connect()
        admin.send(b"verbose\n")
        assert admin.receive() == b"OK INFO\n"

    def test_admin_shutdown_stops_it(self) -> None:
        server = MemoryServer(["--admin-shutdown"], now=NOW)
        admin = server.connect()
        admin.send(b"shutdown\n")
        assert admin.receive() == b"OK\r\n"
        assert admin.closed and not server.alive

    def test_clock_defaults_to_now(self) -> None:
        import time

        before = time.time()
        assert before <= MemoryServer([]).now <= time.time()
