"""Play the same byte sequences to two servers and compare what comes back.

A case is a list of steps, each "connection NAME sends BYTES" (or hangs up).
After every step the player collects what each open connection received, in
a way that does not depend on timing: ``Link.sync`` with a fresh marker on the
connection that acted, then on every other one (servers answer each connection
in order, so everything caused by the step arrives before the marker's
ECHO_RES).  A connection the server closed reads EOF; one that never answers
the marker has stalled.  The events are turned back into their bytes (a packet
re-encoded from its decoded arguments is the packet that arrived).

Replies are compared byte for byte after normalising what legitimately
differs: job handle numbers (mapped to their order of first appearance),
file descriptor numbers and connection order in ``workers``, row order in
admin lists, the pid and the version string.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass, field

from conformance.targets import Target
from reference_server.client import ConnectionClosed, Link, SyncMarker, SyncMarkers
from reference_server.client.errors import SyncTimeout
from reference_server.protocol import Decoder, Event, Packet, PacketType, TextLine, encode, frame

HANGUP = b"<hangup>"
STALL_TIMEOUT = 2.0  # generous: under a loaded CI a slow answer must not pass for a stall
HANDLE_PREFIX = b"H:" + socket.gethostname().encode() + b":"


@dataclass(frozen=True)
class Case:
    name: str
    steps: list[tuple[str, bytes]]
    options: list[str] = field(default_factory=list)  # server options for both targets
    # The last step makes gearmand fail inside its processing thread; whether it then
    # closes the connection or just drops the packet is a race (seen both ways), so
    # either is accepted from gearmand, while ours must close.
    racy_close: bool = False

    def __str__(self) -> str:
        return self.name


@dataclass
class Reply:
    conn: str
    data: bytes
    state: str  # "ok", "closed" or "stalled"


def _wire(events: list[Event]) -> bytes:
    return b"".join(e.encode() if isinstance(e, Packet) else e.raw for e in events)


async def _collect(link: Link, marker: SyncMarker, timeout: float) -> tuple[bytes, str]:
    try:
        return _wire(await link.sync(marker, timeout)), "ok"
    except ConnectionClosed as closed:
        return _wire(closed.events), "closed"
    except SyncTimeout as stalled:
        return _wire(stalled.events), "stalled"


class Player:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.links: dict[str, Link] = {}
        self.states: dict[str, str] = {}
        self.markers = SyncMarkers(b"\xffsync-")

    async def _link(self, name: str) -> Link | None:
        """The named connection, opened on first use; None if the server refused it
        (it has died)."""
        if name not in self.links and self.states.get(name) != "refused":
            try:
                link = await Link.open(self.target.address, timeout=2.0)
                # Replies are compared whatever their size (an unknown 8 KiB admin
                # command comes back longer than a text line may be).
                link.decoder = Decoder(max_payload=1 << 30, max_line=1 << 20)
                self.links[name] = link
                self.states[name] = "ok"
            except OSError:
                self.states[name] = "refused"
        return self.links.get(name)

    async def _sync(self, name: str) -> Reply:
        if self.states[name] != "ok":
            return Reply(name, b"", self.states[name])
        data, state = await _collect(self.links[name], self.markers.next(), STALL_TIMEOUT)
        self.states[name] = state
        return Reply(name, data, state)

    async def _connections_listed(self) -> int:
        admin = await self._link("<admin>")
        if admin is None:
            return -1
        admin.send_raw(b"workers\n")
        reply = await self._sync("<admin>")
        return reply.data.count(b"\n") - 1

    async def step(self, name: str, data: bytes) -> list[Reply]:
        if data == HANGUP:
            # Wait until the server has noticed: its 'workers' list has one line less.
            before = await self._connections_listed()
            await self.links.pop(name).close()
            self.states.pop(name)
            for _ in range(200 if before >= 0 else 0):
                if await self._connections_listed() < before:
                    break
                await asyncio.sleep(0.01)
            return []
        link = await self._link(name)
        if link is not None and self.states[name] == "ok":
            try:
                link.send_raw(data)
                await link.drain()
            except ConnectionError:
                self.states[name] = "closed"
        replies = [await self._sync(name)]
        for other in self.links:
            if other not in (name, "<admin>"):
                replies.append(await self._sync(other))
        return [r for r in replies if r.data or r.state != "ok"]

    async def play(self, case: Case) -> list[list[Reply]]:
        try:
            # The target's readiness probe may still be listed under load: wait
            # until 'workers' shows our admin connection alone, as at a quiet start.
            for _ in range(200):
                if await self._connections_listed() <= 1:
                    break
                await asyncio.sleep(0.01)
            return [await self.step(name, data) for name, data in case.steps]
        finally:
            for link in self.links.values():
                await link.close()


def _normalise_text(data: bytes) -> bytes:
    data = re.sub(rb"^OK \d+\n$", b"OK <pid>\n", data)  # getpid
    data = re.sub(rb"(?m)^OK 1\.1\.20\S*$", b"OK 1.1.20<build>", data)  # version
    data = re.sub(rb"(?m)^\d+ (\S+ .* :)", rb"<fd> \1", data)  # workers
    if data.endswith(b".\n"):  # admin lists: rows in hash order in gearmand
        rows = data[:-2].split(b"\n")[:-1]
        data = b"".join(sorted(row + b"\n" for row in rows)) + b".\n"
    return data


def normalise(replies: list[list[Reply]]) -> list[list[tuple[str, str, str]]]:
    """Replies as readable text: handles numbered by first appearance, text rows
    normalised, packets decoded (or shown as raw bytes when they do not decode)."""
    handles: dict[bytes, bytes] = {}

    def handle(match: re.Match[bytes]) -> bytes:
        return handles.setdefault(match.group(0), b"H:<host>:#%d" % (len(handles) + 1))

    pattern = re.compile(re.escape(HANDLE_PREFIX) + rb"\d+")
    shown = []
    for step in replies:
        rows = []
        for reply in step:
            data = pattern.sub(handle, reply.data)
            try:
                events = list(Decoder().events(data))
                text = "; ".join(repr(e) if isinstance(e, Packet) else
                                 repr(_normalise_text(e.line + b"\n")) for e in events)
                if any(isinstance(e, TextLine) for e in events):
                    text = repr(_normalise_text(data))  # keep exact line endings
            except Exception:
                text = repr(data)
            rows.append((reply.conn, text, reply.state))
        shown.append(rows)
    return shown


def req(packet_type: PacketType, *args: bytes) -> bytes:
    return encode(packet_type, *args)


def raw(magic: bytes, packet_type: int, payload: bytes, *, length: int | None = None) -> bytes:
    """A packet exactly as given, however malformed (``length``: the length field,
    if it is to disagree with the payload)."""
    return frame(magic, packet_type, payload, length=length)
