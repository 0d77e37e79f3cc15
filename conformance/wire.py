"""The engine's I/O: byte streams to a server, and Gearman events read from them.

Three small interfaces keep the engine apart from how a target is reached
(after h2spec, whose ``connection.go`` does the I/O and ``verifier.go`` the
judging):

* a ``Clock``: what time it is, and how to let time pass;
* a ``Network``: opens a ``Stream`` per scenario connection (binary port, or
  the HTTP module's port);
* a ``Stream``: bytes out, bytes in by a deadline, EOF, close.

Sockets implement them here (``SocketNetwork``, real time); the in-process
target implements them over the sans-IO server with a clock the engine moves
(``conformance.inproc``).  ``Wire`` turns one stream into decoded events and
writes everything into the case's transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from conformance.events import Closed, Garbage, Incoming
from conformance.transcript import Transcript
from reference_server.client import SyncMarker
from reference_server.protocol import Decoder, Packet, ProtocolError


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Stream(Protocol):
    """One connection's bytes, both ways."""

    def write(self, data: bytes) -> bool: ...  # False: the connection is gone

    async def read(self, deadline: float) -> bytes | None: ...  # b"": EOF; None: deadline

    def write_eof(self) -> bool: ...  # half-close; False if it could not

    async def close(self) -> bool: ...  # True if it was still open

    @property
    def reset(self) -> bool: ...  # the EOF read was a reset


class Network(Protocol):
    clock: Clock

    async def start_case(self, ctx: Any) -> None: ...  # before a case's first step

    async def finish_case(self) -> CaseEnd: ...  # after a case's last step

    async def open(self, name: str, tls_mode: str | None) -> Stream: ...

    async def open_http(self, name: str) -> Stream: ...

    def describe(self, name: str, tls_mode: str | None) -> str: ...  # "" or " over TLS"


@dataclass(frozen=True)
class CaseEnd:
    """What a network says when a case is over: lines for the report (a library's
    adapter's stderr), how the peer died if it died on its own, and why the peer
    could not play the case if it said so (a library without the API for it)."""

    log: list[str] = field(default_factory=list)
    died: str | None = None
    unsupported: str | None = None


class NoConnection(TimeoutError):
    """The peer opened no connection a step was waiting for (client mode: the library
    never connected)."""


class NoCaseHooks:
    """For networks with nothing to set up per case (a server someone started)."""

    async def start_case(self, ctx: Any) -> None:
        return None

    async def finish_case(self) -> CaseEnd:
        return CaseEnd()


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SocketStream:
    """A TCP (or TLS) connection, read by a task of its own so that the server is
    never blocked by a harness that reads later."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.chunks: deque[bytes] = deque()
        self.arrived = asyncio.Event()
        self.reset = False
        self._task = asyncio.get_running_loop().create_task(self._pump(reader))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                self._push(data)
        except ConnectionResetError:
            self.reset = True
        except (ConnectionError, OSError):
            pass
        self._push(b"")

    def _push(self, data: bytes) -> None:
        self.chunks.append(data)
        self.arrived.set()

    async def read(self, deadline: float) -> bytes | None:
        while not self.chunks:
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        data = self.chunks.popleft()
        if not data:
            self.chunks.appendleft(data)  # EOF stays readable
        return data

    def write(self, data: bytes) -> bool:
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
        except (ConnectionError, OSError, RuntimeError):
            return False  # the server closed: the next expectation will see it
        return True

    def write_eof(self) -> bool:
        if self.writer.can_write_eof() and not self.writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                self.writer.write_eof()
                return True
        return False

    async def close(self) -> bool:
        was_open = not self.writer.is_closing()
        if was_open:
            self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return was_open


def _ca_data(context: ssl.SSLContext) -> str:
    """The CA certificates a context trusts, as PEM."""
    return "".join(ssl.DER_cert_to_PEM_cert(der)
                   for der in context.get_ca_certs(binary_form=True))


class SocketNetwork(NoCaseHooks):
    """Connections to a server at ``address`` (and its HTTP port), over TLS when
    ``tls`` is given.  A connection's TLS mode can differ (scenarios' ``tls:``):
    "plaintext", "untrusted" (the system's CAs only) or "anonymous" (the run's
    CA, no client certificate)."""

    def __init__(self, address: tuple[str, int], *, tls: ssl.SSLContext | None = None,
                 http_port: int | None = None, connect_timeout: float = 5.0) -> None:
        self.address = address
        self.tls = tls
        self.http_port = http_port
        self.connect_timeout = connect_timeout
        self.clock = RealClock()

    def context(self, mode: str | None) -> ssl.SSLContext | None:
        if mode == "plaintext":
            return None
        if mode == "untrusted":
            return ssl.create_default_context()  # the system's CAs: not the test CA
        if mode == "anonymous" and self.tls is not None:
            # The same trust, no certificate of our own: a context cannot unload one.
            return ssl.create_default_context(cadata=_ca_data(self.tls))
        return self.tls

    def describe(self, name: str, tls_mode: str | None) -> str:
        return "" if self.context(tls_mode) is None else " over TLS"

    async def open(self, name: str, tls_mode: str | None) -> SocketStream:
        tls = self.context(tls_mode)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*self.address, ssl=tls,
                                    server_hostname=self.address[0] if tls else None),
            self.connect_timeout)
        return SocketStream(reader, writer)

    async def open_http(self, name: str) -> SocketStream:
        if self.http_port is None:
            raise ConnectionError("this server has no HTTP port")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.address[0], self.http_port), self.connect_timeout)
        return SocketStream(reader, writer)


class Wire:
    """One scenario connection: bytes out, decoded events in, all in the transcript."""

    def __init__(self, name: str, stream: Stream, transcript: Transcript) -> None:
        self.name = name
        self.stream = stream
        self.transcript = transcript
        self.number = transcript.new_stream()
        transcript.record(self.number, name, "send", "open")
        self.events: deque[Incoming] = deque()
        self.decoder: Decoder | None = Decoder(max_payload=1 << 30, max_line=1 << 20)
        self.eof = False  # the server's EOF has been read
        self.eof_sent = False
        self.hung_up = False
        self.sync_markers: list[SyncMarker] = []

    @property
    def closed_by_server(self) -> bool:
        return self.eof and not self.hung_up

    def send(self, data: bytes, sync: bool = False) -> None:
        self.transcript.sent(self.name, data, sync)
        if self.stream.write(data) and data:
            # Only what really left: a capture must not show bytes never sent.
            self._record("send", "data", data)

    async def next(self, deadline: float) -> Incoming | None:
        """The next event (left unread), or None at the deadline."""
        while not self.events:
            if self.eof:
                return None
            data = await self.stream.read(deadline)
            if data is None:
                return None
            self._arrived(data)
        return self.events[0]

    def take(self) -> Incoming:
        return self.events.popleft()

    def _arrived(self, data: bytes) -> None:
        if not data:
            self.eof = True
            self._record("recv", "reset" if self.stream.reset else "eof")
            self._push(Closed())
            return
        self._record("recv", "data", data)
        if self.decoder is None:  # after garbage, everything is garbage
            self._push(Garbage(data, "after garbage"))
            return
        self.decoder.feed(data)
        try:
            while (event := self.decoder.next_event()) is not None:
                self._push(event)
        except ProtocolError as error:
            self._push(Garbage(self.decoder.pending(), str(error)))
            self.decoder = None

    def _push(self, event: Incoming) -> None:
        sync = isinstance(event, Packet) and any(m.answered_by(event) for m in self.sync_markers)
        if not (isinstance(event, Closed) and self.hung_up):
            self.transcript.received(self.name, event, sync)
        self.events.append(event)

    def _record(self, direction: str, kind: str, data: bytes = b"") -> None:
        self.transcript.record(self.number, self.name, direction, kind, data)

    def finish(self) -> None:
        """Half-close: EOF to the server, the read side stays open."""
        if self.stream.write_eof():
            self._client_eof()

    def _client_eof(self) -> None:
        if not self.eof_sent:
            self.eof_sent = True
            self._record("send", "eof")

    async def close(self) -> None:
        self.hung_up = True
        if await self.stream.close():
            self._client_eof()
