"""``Link``: one connection to a Gearman server, bytes out and decoded events in.

The bottom layer of the client library: ``Client``, ``Worker`` and ``Admin``
stand on it, and the test harnesses drive it directly (raw bytes, however
malformed, and every event the server sends back).

``SyncMarker`` is how a harness knows it has seen everything a request
caused, without sleeping: servers answer a connection's requests in order
(gearmand keeps one outgoing FIFO per connection), so once the ECHO_RES of an
ECHO_REQ sent after them is back, their replies are all in.  ``Link.sync``
sends one and returns what came before its answer.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from reference_server.client.errors import ConnectionClosed, SyncTimeout
from reference_server.protocol import Decoder, Event, Packet, PacketType, encode

T = PacketType
DEFAULT_PORT = 4730


def parse_address(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"host:port"``, ``"host"`` or ``"[v6]:port"`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:
        host, port = address, str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in address {address!r}")
    return host, int(port)


def to_bytes(value: bytes | str) -> bytes:
    """Arguments may be given as text: UTF-8 on the wire."""
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True)
class SyncMarker:
    """An ECHO_REQ whose data no one else sends.  Servers answer a connection's
    requests in order, so once its ECHO_RES is back, whatever the requests sent
    before it caused has arrived."""

    value: bytes

    @property
    def request(self) -> bytes:
        """The encoded ECHO_REQ."""
        return encode(T.ECHO_REQ, self.value)

    def answered_by(self, event: Event) -> bool:
        """Is this event the marker's ECHO_RES?"""
        return (isinstance(event, Packet) and event.type == T.ECHO_RES
                and event.args == (self.value,))


class SyncMarkers:
    """A source of fresh markers: prefix + a counter."""

    def __init__(self, prefix: bytes = b"gearspec-sync-") -> None:
        self.prefix = prefix
        self._numbers = itertools.count(1)

    def next(self) -> SyncMarker:
        return SyncMarker(self.prefix + b"%d" % next(self._numbers))


class Link:
    """One connection to a Gearman server: bytes out, decoded events in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 decoder: Decoder | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = decoder or Decoder()
        self.closed = False

    @classmethod
    async def open(cls, address: str | tuple[str, int], *, timeout: float = 5.0) -> Link:
        host, port = parse_address(address) if isinstance(address, str) else address
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    def send(self, packet_type: int, *args: bytes | str) -> None:
        self.writer.write(encode(packet_type, *(to_bytes(a) for a in args)))

    def send_packet(self, packet: Packet) -> None:
        self.writer.write(packet.encode())

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next packet or text line; ``ConnectionClosed`` at EOF, ``TimeoutError``
        if nothing complete arrives in time, a ``ProtocolError`` for garbage."""
        while True:
            event = self.decoder.next_event()
            if event is not None:
                return event
            if self.closed:
                raise ConnectionClosed("connection closed by the server")
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                self.closed = True
                if self.decoder.buffered:
                    raise ConnectionClosed(
                        f"connection closed with {self.decoder.buffered} bytes of a partial packet")
                raise ConnectionClosed("connection closed by the server")
            self.decoder.feed(data)

    async def sync(self, marker: SyncMarker, timeout: float | None = None) -> list[Event]:
        """Send ``marker``'s ECHO_REQ; every event that arrives before its answer.

        Raises ``ConnectionClosed`` if the server closes first (a reset counts as a
        close) and ``TimeoutError`` if the answer is not in within ``timeout``
        seconds; either way the exception's ``events`` holds what did arrive."""
        events: list[Event] = []
        try:
            async with asyncio.timeout(timeout):
                self.send_raw(marker.request)
                try:
                    await self.drain()
                except ConnectionError:
                    pass  # the connection is gone: the reads below say how it ended
                while not marker.answered_by(event := await self.next_event()):
                    events.append(event)
        except ConnectionClosed as closed:
            raise ConnectionClosed(str(closed), events) from None
        except ConnectionError as error:
            self.closed = True
            raise ConnectionClosed(f"connection reset: {error}", events) from error
        except TimeoutError:
            raise SyncTimeout(f"no answer to the sync marker within {timeout} s",
                              events) from None
        return events

    async def read_until(self, terminator: bytes, timeout: float | None = None) -> bytes:
        """Raw bytes up to and including ``terminator`` (admin list replies)."""
        try:
            return await asyncio.wait_for(self.reader.readuntil(terminator), timeout)
        except asyncio.IncompleteReadError as error:
            self.closed = True
            raise ConnectionClosed("connection closed by the server") from error

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def __aenter__(self) -> Link:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
