"""`-q libmemcached` against a real memcached: restarts, done jobs, refusals, and
queues written by gearmand replayed by ours and the other way round."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.services import FLAT_LRU, Memcached
from conformance.targets import GearmandTarget, RefTarget, Target, free_port
from reference_server.protocol import Decoder, Packet, PacketType, encode
from reference_server.queues import StoredJob
from reference_server.queues.memcached import MemcachedQueue
from tests.conftest import require_gearmand, require_program

T = PacketType


def start_memcached(*options: str) -> Memcached:
    require_program("memcached", "memcached")
    service = Memcached(options=list(options))
    service.start()
    return service


@pytest.fixture
def memcached() -> Iterator[int]:
    """A memcached with one flat LRU (see services.FLAT_LRU), so that gearmand's
    replay sees every item whatever the timing."""
    service = start_memcached(*FLAT_LRU)
    yield service.port
    service.stop()


def options(port: int) -> list[str]:
    return ["-q", "libmemcached", f"--libmemcached-servers=127.0.0.1:{port}"]


def client(port: int) -> Any:
    from pymemcache.client.base import Client

    from reference_server.queues.memcached import _RawSerde

    return Client(("127.0.0.1", port), serde=_RawSerde())


def talk(target: Target, *packets: bytes, text: bytes = b"") -> list[Packet | bytes]:
    """Send, and read one reply per packet (or the admin text up to '.')."""
    with socket.create_connection(target.address, timeout=5) as sock:
        sock.sendall(b"".join(packets) + text)
        decoder = Decoder()
        replies: list[Packet | bytes] = []
        buffer = b""
        while len(replies) < len(packets) or (text and not buffer.endswith(b".\n")):
            data = sock.recv(65536)
            if not data:
                break
            if len(replies) < len(packets):
                decoder.feed(data)
                while (event := decoder.next_event()) is not None:
                    if isinstance(event, Packet):
                        replies.append(event)
                    else:
                        buffer += event.raw
            else:
                buffer += data
        return [*replies, buffer] if text else replies


def submit_three(target: Target) -> list[Packet | bytes]:
    return talk(target, encode(T.SUBMIT_JOB_BG, b"fa", b"u1", b"one"),
                encode(T.SUBMIT_JOB_HIGH_BG, b"fb", b"", b"two"),
                encode(T.SUBMIT_JOB_LOW_BG, b"fc", b"u3", b"three"))


def priorities(target: Target) -> bytes:
    """prioritystatus, rows sorted (gearmand lists them in hash order)."""
    reply = talk(target, text=b"prioritystatus\n")[-1]
    assert isinstance(reply, bytes)
    return b"".join(sorted(line + b"\n" for line in reply.split(b"\n")[:-2])) + b".\n"


EXPECTED = b"fa\t0\t1\t0\t0\nfb\t1\t0\t0\t0\nfc\t0\t0\t1\t0\n.\n"


def test_jobs_survive_a_restart_and_leave_when_done(memcached: int) -> None:
    target = RefTarget(options=options(memcached))
    target.start()
    try:
        assert all(isinstance(r, Packet) and r.type == T.JOB_CREATED for r in submit_three(target))
        assert client(memcached).get(b"gear_fa-u1") == (b"one", 1)
        # An empty unique is stored under a key of its own (DEVIATIONS.md: gearmand's
        # empty uniques collide), still "<prefix><function>-<unique>".
        [key] = [k for k in MemcachedQueue(f"127.0.0.1:{memcached}")._keys()
                 if k.startswith(b"gear_fb-")]
        assert len(key) > len(b"gear_fb-") and client(memcached).get(key) == (b"two", 0)
        target.restart()
        assert priorities(target) == EXPECTED
        grabbed = talk(target, encode(T.CAN_DO, b"fa") + encode(T.GRAB_JOB_UNIQ))
        assert isinstance(grabbed[0], Packet) and grabbed[0].type == T.JOB_ASSIGN_UNIQ
    finally:
        target.stop()
    # The worker left without finishing: the job is still stored for the next start.
    assert client(memcached).get(b"gear_fa-u1") == (b"one", 1)
    target = RefTarget(options=options(memcached))
    target.start()
    try:
        with socket.create_connection(target.address, timeout=5) as sock:
            sock.sendall(encode(T.CAN_DO, b"fa") + encode(T.GRAB_JOB_UNIQ))
            decoder = Decoder()
            while (job := decoder.next_event()) is None:
                decoder.feed(sock.recv(4096))
            assert isinstance(job, Packet)
            sock.sendall(encode(T.WORK_COMPLETE, job.args[0], b"done") + encode(T.ECHO_REQ, b""))
            while (event := decoder.next_event()) is None or event.type != T.ECHO_RES:
                decoder.feed(sock.recv(4096))
        assert client(memcached).get(b"gear_fa-u1") is None
    finally:
        target.stop()


@pytest.mark.parametrize(("packet", "why"), [
    (encode(T.SUBMIT_JOB_BG, b"with-dash", b"u", b"x"), "a '-' would split wrongly"),
    (encode(T.SUBMIT_JOB_EPOCH, b"f", b"u", b"4102444800", b"x"), "no epoch jobs"),
])
def test_refused_jobs_are_errors_not_losses(memcached: int, packet: bytes, why: str) -> None:
    with RefTarget(options=options(memcached)) as target:
        [reply] = talk(target, packet)
        assert isinstance(reply, Packet) and reply.type == T.ERROR, why
        assert reply.args[0] == b"QUEUE_ERROR"


@pytest.mark.parametrize(("writer", "reader"), [(GearmandTarget, RefTarget),
                                                (RefTarget, GearmandTarget)])
def test_a_queue_written_by_one_is_replayed_by_the_other(
        memcached: int, writer: type[Target], reader: type[Target]) -> None:
    require_gearmand()
    first = writer(options=options(memcached))  # type: ignore[call-arg]
    first.start()
    try:
        submit_three(first)
    finally:
        first.stop()
    with reader(options=options(memcached)) as second:  # type: ignore[call-arg]
        assert priorities(second) == EXPECTED


def test_unreachable_memcached_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", "serve",
                           "-L", "127.0.0.1", "-p", "0", *options(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "memcached 127.0.0.1:" in done.stderr, done.stderr


def dump(port: int, command: bytes) -> bytes:
    """A memcached listing, up to its END."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command + b"\r\n")
        answer = b""
        while not answer.endswith(b"END\r\n"):
            answer += sock.recv(65536)
        return answer


@pytest.mark.parametrize("kind", [GearmandTarget, RefTarget])
def test_a_job_still_in_the_hot_lru_is_replayed_by_ref_not_by_gearmand(
        kind: type[Target]) -> None:
    """memcached's segmented LRU: ``stats cachedump``, which gearmand's replay reads
    through libmemcached, does not list items still in the HOT LRU, while
    ``lru_crawler metadump all``, which ours reads, lists every item.  With Debian's
    settings a new item leaves the HOT LRU within about 0.15 s, too short a window
    for a test; a larger HOT LRU (memcached's own tuning options) keeps it there for
    more than 20 s once an older item is in the COLD LRU."""
    if kind is GearmandTarget:
        require_gearmand()
    service = start_memcached("-o", "hot_lru_pct=60,warm_lru_pct=20,hot_max_factor=100")
    target = kind(options=options(service.port))  # type: ignore[call-arg]
    try:
        target.start()
        talk(target, encode(T.SUBMIT_JOB_BG, b"old", b"u", b"x"))
        time.sleep(1.5)  # memcached's clock counts whole seconds: let the old item age
        [created] = talk(target, encode(T.SUBMIT_JOB_BG, b"new", b"u", b"x"))
        assert isinstance(created, Packet) and created.type == T.JOB_CREATED
        assert b"gear_new-u" not in dump(service.port, b"stats cachedump 1 0"), \
            "the new item already left the HOT LRU: the premise of this test does not hold"
        target.kill()
        target.restart()
        [job] = talk(target, encode(T.CAN_DO, b"new") + encode(T.GRAB_JOB_UNIQ))
        assert isinstance(job, Packet)
        if kind is RefTarget:
            assert job.type == T.JOB_ASSIGN_UNIQ and job.args[2] == b"u"
        else:
            # Not replayed, yet still stored: it runs after some later restart.
            assert job.type == T.NO_JOB
            assert b"key=gear_new-u " in dump(service.port, b"lru_crawler metadump all")
    finally:
        target.stop()
        service.stop()


def test_the_harness_memcached_lives_as_long_as_its_target() -> None:
    """``{memcached}`` in a target's options: one memcached, started with the target,
    kept across its restarts, stopped with it."""
    require_program("memcached", "memcached")
    target = RefTarget(options=["-q", "libmemcached", "--libmemcached-servers", "{memcached}"])
    target.start()
    try:
        service = target.services.memcached
        assert service is not None and service.process is not None
        talk(target, encode(T.SUBMIT_JOB_BG, b"kept", b"u", b"x"))
        target.kill()
        target.restart()
        assert target.services.memcached is service and service.process is not None
        assert b"key=gear_kept-u " in dump(service.port, b"lru_crawler metadump all")
        process = service.process
    finally:
        target.stop()
    assert process.poll() is not None and target.services.memcached is None


def test_a_long_listing_is_read_whole(memcached: int) -> None:
    """3,000 jobs make a listing of about 200 KB; every one comes back.  (pymemcache's
    raw_command kept only the last 4 KiB of it: found by `gearspec durability`.)"""
    queue = MemcachedQueue(f"127.0.0.1:{memcached}")
    jobs = [StoredJob(b"u%d" % i, b"many", b"x", i % 3) for i in range(3000)]
    for job in jobs:
        queue.add(job)
    queue.flush()
    assert sorted(queue.replay(), key=lambda j: j.unique) == sorted(jobs, key=lambda j: j.unique)
    queue.close()


def test_a_busy_crawler_is_waited_for(memcached: int) -> None:
    """memcached runs one crawler request at a time and answers BUSY to the next: a
    server killed during its replay leaves one running.  The listing waits for it,
    and has every key (the first listing after a cut crawl sometimes missed a few,
    about one run in four on a loaded machine, before a second one was added)."""
    count = 100_000  # a listing of about 7 MB: more than the socket buffers can hold
    with socket.create_connection(("127.0.0.1", memcached), timeout=30) as writer:
        writer.sendall(b"".join(b"set gear_busy-u%d 1 0 1 noreply\r\nx\r\n" % i
                                for i in range(count)) + b"version\r\n")
        while not writer.recv(100).endswith(b"\r\n"):
            pass  # the VERSION line: every set before it is done
    queue = MemcachedQueue(f"127.0.0.1:{memcached}")
    with socket.socket() as other:
        # A small receive buffer, and the listing left unread: the crawler is held
        # until this connection closes.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        other.settimeout(5)
        other.connect(("127.0.0.1", memcached))
        other.sendall(b"lru_crawler metadump all\r\n")
        other.recv(100)
        with socket.create_connection(("127.0.0.1", memcached), timeout=5) as probe:
            probe.sendall(b"lru_crawler metadump all\r\n")
            assert probe.recv(100).startswith(b"BUSY"), "the premise: memcached is busy"
        threading.Timer(0.3, other.close).start()
        assert len(queue._keys()) == count
    queue.close()
