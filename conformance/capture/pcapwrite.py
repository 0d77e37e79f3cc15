"""A conformance case's wire traffic as a pcap, to open a failing case in Wireshark.

The harness talks through the kernel's sockets, so there are no frames to
keep: this synthesizes them from the engine's raw chunks
(``conformance.engine.Chunk``), which hold every byte written and read, in
order.  Each connection gets a three-way handshake, each chunk one or more
segments (at most ``MAX_SEGMENT`` bytes: an IPv4 packet cannot hold more than
65,535) each acknowledged by the peer at once, and each close a FIN (or an RST
where the server reset the connection).  Sequence numbers run on in both
directions, so Wireshark's TCP analysis finds nothing to flag and its Gearman
dissector reassembles packets split across segments.

Everything is on 127.0.0.1, the server on ``server_port`` (4730 by default, so
Wireshark dissects Gearman without "Decode As"), each connection from its own
client port.  The checksums are real; the times are those of the chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

from conformance.transcript import Chunk

SERVER_PORT = 4730
LOOPBACK = "127.0.0.1"
MAX_SEGMENT = 65000  # payload bytes per TCP segment, below loopback's MSS of 65,495
FIRST_CLIENT_PORT = 49152  # IANA's dynamic range, above any port gearman is known on
_MSS = [("MSS", 65495)]
_WINDOW = 65535
_SEQ = 1 << 32


@dataclass
class _Side:
    port: int
    seq: int  # the next sequence number this side sends
    fin: bool = False


@dataclass
class _Connection:
    client: _Side
    server: _Side
    reset: bool = False


class _Synthesizer:
    """Turns chunks into frames, keeping each connection's sequence numbers."""

    def __init__(self, server_port: int, started: float) -> None:
        self.server_port = server_port
        self.started = started
        self.connections: dict[int, _Connection] = {}
        self.ip_id = 0

    def _frame(self, t: float, sender: _Side, receiver: _Side, flags: str, payload: bytes = b"",
               ack: bool = True, options: list[tuple[str, int]] | None = None) -> Packet:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        tcp = TCP(sport=sender.port, dport=receiver.port, seq=sender.seq % _SEQ,
                  ack=receiver.seq % _SEQ if ack else 0, flags=flags, window=_WINDOW,
                  options=options or [])
        frame = Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") / \
            IP(src=LOOPBACK, dst=LOOPBACK, id=self.ip_id, flags="DF") / tcp
        if payload:
            frame = frame / Raw(payload)
        frame.time = self.started + t
        return frame

    def _client_port(self, stream: int) -> int:
        port = FIRST_CLIENT_PORT + stream % (65536 - FIRST_CLIENT_PORT - 1)
        return port + 1 if port == self.server_port else port

    def open(self, t: float, stream: int) -> Iterator[Packet]:
        # Distinct, fixed initial sequence numbers: the file is the same for the same chunks.
        client = _Side(self._client_port(stream), 1_000_000 * (stream + 1))
        server = _Side(self.server_port, 2_000_000_000 + 1_000_000 * (stream + 1))
        self.connections[stream] = _Connection(client, server)
        yield self._frame(t, client, server, "S", ack=False, options=_MSS)
        client.seq += 1
        yield self._frame(t, server, client, "SA", options=_MSS)
        server.seq += 1
        yield self._frame(t, client, server, "A")

    def _sides(self, conn: _Connection, direction: str) -> tuple[_Side, _Side]:
        return (conn.client, conn.server) if direction == "send" else (conn.server, conn.client)

    def data(self, t: float, conn: _Connection, direction: str, data: bytes) -> Iterator[Packet]:
        sender, receiver = self._sides(conn, direction)
        for start in range(0, len(data), MAX_SEGMENT):
            piece = data[start:start + MAX_SEGMENT]
            yield self._frame(t, sender, receiver, "PA", piece)
            sender.seq += len(piece)
            yield self._frame(t, receiver, sender, "A")

    def fin(self, t: float, conn: _Connection, direction: str) -> Iterator[Packet]:
        sender, receiver = self._sides(conn, direction)
        if sender.fin:
            return
        yield self._frame(t, sender, receiver, "FA")
        sender.seq += 1
        sender.fin = True
        yield self._frame(t, receiver, sender, "A")

    def chunk(self, chunk: Chunk) -> Iterator[Packet]:
        conn = self.connections.get(chunk.stream)
        if conn is None:  # bytes on a connection whose opening was not recorded
            yield from self.open(chunk.t, chunk.stream)
            conn = self.connections[chunk.stream]
            if chunk.kind == "open":
                return
        if conn.reset or chunk.kind == "open":
            return
        if chunk.kind == "data" and chunk.data:
            yield from self.data(chunk.t, conn, chunk.direction, chunk.data)
        elif chunk.kind == "eof":
            yield from self.fin(chunk.t, conn, chunk.direction)
        elif chunk.kind == "reset":
            sender, receiver = self._sides(conn, chunk.direction)
            yield self._frame(chunk.t, sender, receiver, "RA")
            conn.reset = True

    def close_all(self, t: float) -> Iterator[Packet]:
        """The closes the chunks do not show: the harness hangs up every connection at
        the end of a case, and a server answers a client's EOF with its own."""
        for conn in self.connections.values():
            if not conn.reset:
                yield from self.fin(t, conn, "send")
                yield from self.fin(t, conn, "recv")


def frames(chunks: Iterable[Chunk], *, server_port: int = SERVER_PORT,
           started: float = 0.0) -> Iterator[Packet]:
    """The Ethernet frames of these chunks, in order; ``started`` is the wall-clock
    time of the chunks' t=0."""
    synthesizer = _Synthesizer(server_port, started)
    last = 0.0
    for chunk in chunks:
        last = max(last, chunk.t)
        yield from synthesizer.chunk(chunk)
    yield from synthesizer.close_all(last)


def write_pcap(path: str | os.PathLike[str], chunks: Iterable[Chunk], *,
               server_port: int = SERVER_PORT, started: float = 0.0) -> int:
    """Write the chunks as a pcap (Ethernet link type); returns the number of frames.
    Parent directories are created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    # Written to a temporary name first: a reader never sees half a file.
    partial = target.with_name(target.name + ".partial")
    with PcapWriter(str(partial), linktype=1, sync=False) as writer:
        for frame in frames(chunks, server_port=server_port, started=started):
            writer.write(frame)
            count += 1
    partial.replace(target)
    return count
