"""The HTTP protocol module (`-r http`): the same requests to the reference server
and to /usr/sbin/gearmand, with a binary worker behind each, compared."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.targets import GearmandTarget, RefTarget, Target, free_port
from reference_server.client import Worker, WorkerJob, WorkFailed
from reference_server.core.http import HTTPGateway
from reference_server.protocol import Magic, PacketType, encode
from tests.conftest import require_gearmand

DEVIATIONS = (Path(__file__).resolve().parent.parent / "reference_server" /
              "DEVIATIONS.md").read_text()
T = PacketType


def handler(job: WorkerJob, seen: list[bytes]) -> bytes:
    seen.append(job.handle)
    if job.data == b"fail":
        raise WorkFailed()
    if job.data == b"exc":
        raise RuntimeError("boom")
    if job.data == b"data":
        job.send_data(b"part1")
        return b"done"
    return job.data[::-1]


@dataclass
class HTTPServer:
    target: Target
    http_port: int
    handles: list[bytes]  # of the jobs the worker ran, in order

    def request(self, raw: bytes, wait: float = 1.0) -> bytes:
        """What came back, then "<closed>" or "<open>" (still open after ``wait``)."""
        with socket.create_connection(("127.0.0.1", self.http_port), timeout=wait) as sock:
            sock.sendall(raw)
            out = b""
            try:
                while data := sock.recv(65536):
                    out += data
                return out + b"<closed>"
            except TimeoutError:
                return out + b"<open>"


def started(kind: type[Target]) -> Iterator[HTTPServer]:
    http_port = free_port()
    target = kind(options=["-r", "http", "--http-port", str(http_port)])  # type: ignore[call-arg]
    target.start()
    stop = threading.Event()

    async def work() -> None:
        async with await Worker.connect(target.address) as worker:
            worker.register("reverse", lambda job: handler(job, handles))
            task = asyncio.create_task(worker.work())
            while not stop.is_set():
                await asyncio.sleep(0.05)
            task.cancel()

    handles: list[bytes] = []
    thread = threading.Thread(target=lambda: asyncio.run(work()), daemon=True)
    thread.start()
    try:
        yield HTTPServer(target, http_port, handles)
    finally:
        stop.set()
        thread.join(5)
        target.stop()


@pytest.fixture(scope="module")
def ours() -> Iterator[HTTPServer]:
    yield from started(RefTarget)


@pytest.fixture(scope="module")
def theirs() -> Iterator[HTTPServer]:
    require_gearmand()
    yield from started(GearmandTarget)


def post(body: bytes, *headers: bytes, path: bytes = b"/reverse",
         version: bytes = b"HTTP/1.0", method: bytes = b"POST") -> bytes:
    lines = [method + b" " + path + b" " + version, b"Content-Length: %d" % len(body),
             *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


CASES = {
    "foreground": post(b"hello"),
    "http-1.1-still-closes": post(b"hello", version=b"HTTP/1.1"),
    "keep-alive-still-closes": post(b"ab", b"Connection: Keep-Alive"),
    "background": post(b"hello", b"X-Gearman-Background: true"),
    "background-low": post(b"ab", b"X-Gearman-Background: true", b"X-Gearman-Priority: low"),
    "unique": post(b"hello", b"X-Gearman-Unique: u1"),
    "high": post(b"hello", b"X-Gearman-Priority: high"),
    "low": post(b"hello", b"X-Gearman-Priority: low"),
    "headers-case-insensitive": post(b"hello", b"x-gearman-priority: HIGH"),
    "put": post(b"abc", method=b"PUT"),
    "get-has-no-body": b"GET /reverse HTTP/1.0\r\n\r\n",
    "empty-body": post(b""),
    "no-content-length": b"POST /reverse HTTP/1.0\r\n\r\nhello",
    "exception-becomes-fail": post(b"exc"),
    "no-function-404": post(b"x", path=b"/"),
    "bad-method-closed": b"DELETE /reverse HTTP/1.0\r\n\r\n",
    "bad-version-closed": post(b"x", version=b"HTTP/2.0"),
    "not-http-closed": b"hello\r\n\r\n",
    "no-worker-waits": post(b"x", path=b"/nobody"),
    # gearmand reads Content-Length with atoi, of at most 10 characters, as a C string.
    "content-length-atoi": b"POST /reverse HTTP/1.0\r\nContent-Length: +2x\r\n\r\nhello",
    "content-length-ten-characters":
        b"POST /reverse HTTP/1.0\r\nContent-Length: 00000000005\r\n\r\nhello",
    "content-length-nul": b"POST /reverse HTTP/1.0\r\nContent-Length: 3\0 9\r\n\r\nhello",
    "content-length-negative-closed": b"POST /reverse HTTP/1.0\r\nContent-Length: -1\r\n\r\nx",
    "leading-space-closed": b" " + post(b"hello"),
    "trailing-space-closed": post(b"hello", version=b"HTTP/1.0 "),
    "spaces-and-slashes-skipped": post(b"hello", path=b"  ///reverse  "),
    "empty-line-first-waits": b"\r\n" + post(b"hello"),
    "lone-empty-lines-wait": b"\n\n",
    # DEVIATIONS.md, "HTTP": gearmand's answers here are bugs.
    "nul-in-function": post(b"hello", path=b"/rev\0erse"),
    "nul-in-unique": post(b"hello", b"X-Gearman-Unique: a\0b"),
    "fail": post(b"fail"),
    "data": post(b"data"),
    "head-root": b"HEAD / HTTP/1.0\r\n\r\n",
    "trace": b"TRACE / HTTP/1.0\r\n\r\n",
}
LISTED = set(re.findall(r"HTTP cases?: `([^`]+)`(?:, `([^`]+)`)?", DEVIATIONS))
DEVIATING = {name for pair in LISTED for name in pair if name}


def ran(server: HTTPServer, reply: bytes) -> None:
    """Wait until the worker has run the background job a reply names.  Without
    this a low-priority background job still queued lets the next case's normal
    job jump ahead of it, and the last handle the worker saw is not that case's."""
    named = re.search(rb"Handle: (H:[^\r]*)", reply)
    for _ in range(100):
        if named is None or named.group(1) in server.handles:
            return
        time.sleep(0.05)


def answer(server: HTTPServer, name: str) -> bytes:
    """The reply to a case, with the Server header and the job handle written out:
    an answer about a job the worker ran must name exactly that job's handle."""
    reply = re.sub(rb"Server: Gearman/[^\r]*", b"Server: Gearman/<version>",
                   server.request(CASES[name]))
    if b"X-Gearman-Background: true" in CASES[name]:
        ran(server, reply)
    if b"X-Gearman-Command: WORK_" in reply and server.handles:
        reply = reply.replace(b"Handle: " + server.handles[-1] + b"\r\n",
                              b"Handle: <the job's>\r\n")
    return re.sub(rb"Handle: H:[^\r]*", b"Handle: <a handle>", reply)


def test_every_deviation_has_a_case() -> None:
    assert {"fail", "data", "head-root", "trace", "nul-in-function",
            "nul-in-unique"} == DEVIATING
    assert set(CASES) >= DEVIATING


@pytest.mark.parametrize("name", list(CASES))
def test_same_answer_as_gearmand(name: str, ours: HTTPServer, theirs: HTTPServer) -> None:
    mine, real = answer(ours, name), answer(theirs, name)
    if name in DEVIATING:
        assert mine != real, f"{name} now answers like gearmand: drop it from DEVIATIONS.md"
    else:
        assert mine == real


def test_our_answers_spelled_out(ours: HTTPServer) -> None:
    assert answer(ours, "foreground") == (
        b"HTTP/1.0 200 OK\r\nX-Gearman-Job-Handle: <the job's>\r\n"
        b"X-Gearman-Command: WORK_COMPLETE\r\nContent-Length: 5\r\n"
        b"Server: Gearman/<version>\r\n\r\nolleh<closed>")
    assert b"X-Gearman-Command: JOB_CREATED" in ours.request(CASES["background"])
    assert ours.request(CASES["fail"]).count(b"X-Gearman-Command: WORK_FAIL") == 1
    assert ours.request(CASES["data"]).endswith(b"\r\n\r\ndone<closed>")
    assert ours.request(CASES["trace"]).startswith(b"HTTP/1.0 404 NOT_FOUND")


def test_the_binary_port_still_works(ours: HTTPServer) -> None:
    with socket.create_connection(ours.target.address, timeout=5) as sock:
        sock.sendall(encode(T.ECHO_REQ, b"x"))
        assert sock.recv(100) == encode(T.ECHO_RES, b"x", magic=Magic.RES)


def test_gateway_in_pieces() -> None:
    """Sans-IO: the request may arrive a byte at a time."""
    gateway = HTTPGateway(b"test")
    raw = post(b"hello", b"X-Gearman-Unique: u9")
    for byte in raw[:-1]:
        assert gateway.receive(bytes([byte])).to_core == b""
    assert gateway.receive(raw[-1:]).to_core == encode(T.SUBMIT_JOB, b"reverse", b"u9",
                                                       b"hello")


def test_a_second_request_on_the_connection_submits_nothing_deviation() -> None:
    # DEVIATION "A second request on one connection": gearmand queues it as well.
    gateway = HTTPGateway(b"test")
    first = gateway.receive(post(b"one") + post(b"two"))
    assert first.to_core == encode(T.SUBMIT_JOB, b"reverse", b"-", b"one")
    assert gateway.receive(post(b"three")).to_core == b""
