"""Bad input on one connection never disturbs another connection's job, and the
server process survives every bad input of protocol section 1.

Run against our server and, for comparison, against gearmand.
"""

from __future__ import annotations

import asyncio
import random
import select
import socket
import time

import pytest

from conformance.bench import rss_bytes
from conformance.targets import ProcessTarget, Target, echo_round_trip
from reference_server.client import Client, ConnectionClosed, Link, SyncMarkers, Worker
from reference_server.protocol import Magic, Packet, PacketType, TextLine, encode, frame

T = PacketType
REQ = b"\0REQ"


_rng = random.Random(20261127)  # fixed: the same "random" garbage every run

BAD_INPUTS: dict[str, bytes] = {
    "bad-magic": frame(b"\0XYZ", T.ECHO_REQ, b"x"),
    "res-magic": frame(b"\0RES", T.SUBMIT_JOB, b"f\0\0x"),
    "type-0": frame(REQ, 0, b""),
    "type-43": frame(REQ, 43, b""),
    "type-999-with-data": frame(REQ, 999, b"abc"),
    "unused-type-5": frame(REQ, 5, b""),
    "response-types": b"".join(frame(REQ, n, b"\0" * 6) for n in (6, 8, 10, 11, 17, 19, 20)),
    "truncated-header": REQ + b"\0\0",
    "truncated-body": frame(REQ, T.ECHO_REQ, b"abc", length=10),
    "length-4gib": frame(REQ, T.ECHO_REQ, b"", length=0xFFFFFFFF),
    "length-64mib-plus-1": frame(REQ, T.ECHO_REQ, b"", length=64 * 1024 * 1024 + 1),
    "submit-no-nul": frame(REQ, T.SUBMIT_JOB, b"f"),
    "submit-one-nul": frame(REQ, T.SUBMIT_JOB, b"f\0"),
    "text-without-newline": b"status",
    "text-line-9000": b"x" * 9000 + b"\n",
    "six-tokens": b"a b c d e f\n",
    "argument-9000": encode(T.CAN_DO, b"f" * 9000),
    "unique-300": encode(T.SUBMIT_JOB_BG, b"f", b"u" * 300, b""),
    "get-status-64": encode(T.GET_STATUS, b"H" * 64),
    "can-do-timeout-overflow": encode(T.CAN_DO_TIMEOUT, b"f", b"9" * 25),
    "epoch-overflow": encode(T.SUBMIT_JOB_EPOCH, b"f", b"", b"9" * 30, b""),
    "foreign-work-complete": encode(T.WORK_COMPLETE, b"H:x:1", b"r"),
    "random-binary": b"\0" + bytes(_rng.randrange(256) for _ in range(4000)),
    "random-text": bytes(_rng.randrange(32, 127) for _ in range(4000)) + b"\n",
    "nul-flood": b"\0" * 100_000,
}


async def _send_garbage(target: Target, data: bytes, *, half_close: bool) -> socket.socket:
    sock = socket.create_connection(target.address, timeout=5)
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the server may close while we write: that is an allowed answer
    return sock


@pytest.mark.parametrize("half_close", [False, True], ids=["left-open", "half-closed"])
async def test_garbage_does_not_disturb_a_running_job(server: Target, half_close: bool) -> None:
    async with await Client.connect(server.address) as client, \
            await Worker.connect(server.address) as worker:
        grabbed = asyncio.Event()

        async def slow_reverse(job):  # type: ignore[no-untyped-def]
            grabbed.set()
            await garbage_sent.wait()
            job.send_data(b"halfway")
            return job.data[::-1]

        garbage_sent = asyncio.Event()
        worker.register("reverse", slow_reverse)
        working = asyncio.create_task(worker.work(max_jobs=1))
        job = await client.submit("reverse", b"hello")
        await asyncio.wait_for(grabbed.wait(), 10)
        sockets = [await _send_garbage(server, data, half_close=half_close)
                   for data in BAD_INPUTS.values()]
        try:
            garbage_sent.set()
            assert await job.result(timeout=10) == b"olleh"
            assert job.data == [b"halfway"]
            await asyncio.wait_for(working, 10)
            # A fresh connection is served, and so is a fresh job.
            assert echo_round_trip(*server.address)
            async with await Worker.connect(server.address) as second:
                second.register("reverse", lambda j: j.data[::-1])
                again = asyncio.create_task(second.work(max_jobs=1))
                assert await client.run("reverse", b"abc", timeout=10) == b"cba"
                await asyncio.wait_for(again, 10)
        finally:
            for sock in sockets:
                sock.close()
    assert isinstance(server, ProcessTarget) and server.process is not None
    assert server.process.poll() is None, server.log_text()[-2000:]


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
async def test_each_bad_input_alone(ref: Target, name: str) -> None:
    """Our server answers each bad input with an ERROR or a close, or waits for more
    bytes (incomplete input); never with a crash, and the next connection works."""
    link = await Link.open(ref.address)
    try:
        link.send_raw(BAD_INPUTS[name])
        await link.drain()
    except ConnectionError:
        pass
    link.writer.close()
    assert echo_round_trip(*ref.address)
    assert isinstance(ref, ProcessTarget) and ref.process is not None
    assert ref.process.poll() is None
    assert "Traceback" not in ref.log_text()


async def test_slow_reader_does_not_make_the_server_buffer_forever(ref: Target) -> None:
    """A client that never reads its replies stops being read from (backpressure), so
    the server's memory does not grow with what it sends; other clients go on."""
    assert isinstance(ref, ProcessTarget) and ref.pid is not None
    before = rss_bytes(ref.pid)
    sock = socket.create_connection(ref.address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    echo = encode(T.ECHO_REQ, b"x" * 60_000)
    sent, blocked = 0, False
    deadline = time.monotonic() + 30  # only against hanging: the verdict is `blocked`
    while sent < 120_000_000 and not blocked and time.monotonic() < deadline:
        try:
            sent += sock.send(echo[sent % len(echo):])  # resume a partly sent packet
        except BlockingIOError:
            # Still not writable after a while: the server has stopped reading us.
            blocked = not select.select([], [sock], [], 1.0)[1]
    assert blocked, f"the server kept reading: {sent:,} bytes accepted"
    # What the kernels hold at most (our send buffer, the server's receive and send
    # buffers) and one packet: more accepted means the server itself kept reading.
    assert sent < _socket_buffers_max() + len(echo), f"{sent:,} bytes accepted"
    assert echo_round_trip(*ref.address)
    assert rss_bytes(ref.pid) - before < 40_000_000
    sock.close()


def _socket_buffers_max() -> int:
    """The most a TCP connection's kernel buffers take in on this machine (Linux
    autotuning may grow a receive buffer to tcp_rmem's maximum), one sender's send
    buffer and one receiver's receive and send buffers."""
    def most(name: str) -> int:
        with open(f"/proc/sys/net/ipv4/{name}") as values:
            return int(values.read().split()[2])
    return most("tcp_rmem") + 2 * most("tcp_wmem")


# ------------------------------------------------------------------ Link.sync


def test_sync_markers_are_fresh_echo_requests() -> None:
    markers = SyncMarkers(b"t-")
    first, second = markers.next(), markers.next()
    assert (first.value, second.value) == (b"t-1", b"t-2")
    assert first.request == encode(T.ECHO_REQ, b"t-1")
    assert first.answered_by(Packet(T.ECHO_RES, (b"t-1",), Magic.RES))
    assert not first.answered_by(Packet(T.ECHO_RES, (b"t-2",), Magic.RES))
    assert not first.answered_by(Packet(T.ECHO_REQ, (b"t-1",)))
    assert not first.answered_by(TextLine(b"t-1"))


async def test_sync_returns_what_the_requests_before_it_caused(ref: Target) -> None:
    async with await Link.open(ref.address) as link:
        link.send(T.ECHO_REQ, b"first")
        link.send(T.SUBMIT_JOB_BG, b"nobody-serves-this", b"", b"x")
        link.send_raw(b"status\n")
        events = await link.sync(SyncMarkers().next(), timeout=10)
        assert [e.type for e in events[:2]] == [T.ECHO_RES, T.JOB_CREATED]  # type: ignore[union-attr]
        assert all(isinstance(e, TextLine) for e in events[2:])
        assert events[-1] == TextLine(b".")
        assert await link.sync(SyncMarkers().next(), timeout=10) == []


async def test_sync_keeps_the_last_words_of_a_closed_connection(ref: Target) -> None:
    async with await Link.open(ref.address) as link:
        link.send(T.ECHO_REQ, b"before")
        link.send_raw(BAD_INPUTS["length-64mib-plus-1"])  # ERROR, then closed
        with pytest.raises(ConnectionClosed) as closed:
            await link.sync(SyncMarkers().next(), timeout=10)
        assert [e.type for e in closed.value.events] == [T.ECHO_RES, T.ERROR]  # type: ignore[union-attr]


async def test_sync_times_out_on_a_stalled_connection(ref: Target) -> None:
    async with await Link.open(ref.address) as link:
        link.send(T.ECHO_REQ, b"before")
        link.send_raw(frame(REQ, T.ECHO_REQ, b"", length=1000))  # the marker: part of its body
        with pytest.raises(TimeoutError) as stalled:
            await link.sync(SyncMarkers().next(), timeout=0.5)
        assert [e.type for e in stalled.value.events] == [T.ECHO_RES]  # type: ignore[attr-defined]
