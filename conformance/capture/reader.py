"""Gearman conversations out of a pcap or pcapng file, streamed.

Frames come from scapy's raw readers one at a time (the file is never loaded
whole); their link, IP and TCP headers are read with ``struct`` rather than
dissected by scapy, which would cost a hundred times more per frame.  Each
TCP direction is reassembled by sequence number: segments split anywhere,
several packets per segment, retransmissions and overlaps (the bytes already
taken are skipped), segments out of order (held until the gap before them is
filled).  A direction whose start was not captured (no SYN), or that loses
bytes for good, is resynchronised on the next binary header or text line.
The reassembled bytes go through the one codec, ``reference_server.protocol``.

``read(path, ports)`` yields ``Captured`` events in capture order; memory is
bounded by the connections open at once, not by the size of the file.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scapy.utils import RawPcapReader

from reference_server.protocol import TYPE_LIMIT, Decoder, Packet, ProtocolError, TextLine

GEARMAN_PORT = 4730
#: Bytes held for segments after a hole; past this the hole is given up as lost.
HOLD_LIMIT = 1 << 22
_TCP_FIN, _TCP_SYN, _TCP_RST = 0x01, 0x02, 0x04
#: A binary header that could start a packet: magic then a known type.
_HEADER = re.compile(rb"\0RE[QS]\0\0\0[\x01-" + bytes([TYPE_LIMIT - 1]) + rb"]", re.DOTALL)


class CaptureError(Exception):
    """A file that is not a capture we can read."""


@dataclass
class Captured:
    """One thing seen on a connection."""

    time: float  # seconds since the first frame of the file
    conn: str  # "A", "B", ... in order of first appearance
    direction: str  # "send": towards the server; "recv": from it
    event: Packet | TextLine | None  # None: a note (open, close, gap, garbage)
    note: str = ""


@dataclass
class _Direction:
    decoder: Decoder = field(default_factory=lambda: Decoder(max_payload=1 << 30,
                                                             max_line=1 << 20))
    next_seq: int | None = None  # the next byte expected (absolute sequence number)
    held: dict[int, bytes] = field(default_factory=dict)  # out-of-order segments
    held_bytes: int = 0
    lost: bool = False  # bytes are missing before what is buffered: resynchronise
    finished: bool = False


@dataclass
class _Connection:
    name: str
    client: tuple[str, int]
    server: tuple[str, int]
    send: _Direction = field(default_factory=_Direction)
    recv: _Direction = field(default_factory=_Direction)


def _frames(path: Path) -> Iterator[tuple[float, int, bytes]]:
    """(timestamp, link type, frame bytes) of every frame, pcap or pcapng."""
    try:
        reader = RawPcapReader(str(path))
    except (OSError, EOFError) as error:
        raise CaptureError(f"{path}: {error}") from None
    except Exception as error:  # scapy raises Scapy_Exception for a foreign file
        raise CaptureError(f"{path}: not a pcap or pcapng file ({error})") from None
    with reader:
        default_link = getattr(reader, "linktype", 1)
        for data, meta in reader:
            if hasattr(meta, "sec"):
                yield meta.sec + meta.usec / 1e6, default_link, data
            else:  # pcapng
                stamp = (meta.tshigh << 32 | meta.tslow) / meta.tsresol
                yield stamp, meta.linktype, data


def _ip_offset(link: int, frame: bytes) -> int | None:
    """Where the IP header starts in a frame of this link type (None: not IP)."""
    if link == 1:  # Ethernet, possibly with VLAN tags
        offset, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
        while ethertype in (0x8100, 0x88A8) and len(frame) >= offset + 4:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
        return offset if ethertype in (0x0800, 0x86DD) else None
    if link == 113:  # Linux cooked capture
        return 16 if struct.unpack_from("!H", frame, 14)[0] in (0x0800, 0x86DD) else None
    if link == 276:  # Linux cooked capture v2
        return 20 if struct.unpack_from("!H", frame, 0)[0] in (0x0800, 0x86DD) else None
    if link in (0, 108):  # BSD loopback: a 4-byte address family
        return 4
    if link in (101, 12, 14, 228, 229):  # raw IP
        return 0
    return None


def _tcp(frame: bytes, offset: int) -> tuple[str, int, str, int, int, int, bytes] | None:
    """(src, sport, dst, dport, seq, flags, payload) of a TCP segment, else None."""
    if len(frame) < offset + 20:
        return None
    version = frame[offset] >> 4
    if version == 4:
        header = (frame[offset] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, offset + 2)[0]
        if frame[offset + 9] != 6:
            return None
        src = ".".join(map(str, frame[offset + 12:offset + 16]))
        dst = ".".join(map(str, frame[offset + 16:offset + 20]))
        end = offset + total if total else len(frame)  # TSO captures may say 0
        offset += header
    elif version == 6:
        if frame[offset + 6] != 6:  # extension headers: not worth it for Gearman
            return None
        length = struct.unpack_from("!H", frame, offset + 4)[0]
        src = _ipv6(frame[offset + 8:offset + 24])
        dst = _ipv6(frame[offset + 24:offset + 40])
        offset += 40
        end = offset + length
    else:
        return None
    if len(frame) < offset + 20:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", frame, offset)
    data_offset = (frame[offset + 12] >> 4) * 4
    flags = frame[offset + 13]
    return src, sport, dst, dport, seq, flags, frame[offset + data_offset:min(end, len(frame))]


def _ipv6(raw: bytes) -> str:
    return ":".join(f"{a:x}" for a in struct.unpack("!8H", raw))


def _name(index: int) -> str:
    """A, B, ..., Z, AA, AB, ... (the capture index's connection letters)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def read(path: Path | str, ports: Iterable[int] = (GEARMAN_PORT,)) -> Iterator[Captured]:
    """Every Gearman packet and text line in the capture, and the connections'
    opening, closing and gaps, in the order they were captured."""
    server_ports = set(ports)
    conns: dict[tuple[str, int, str, int], _Connection] = {}
    count = 0
    first: float | None = None
    for stamp, link, frame in _frames(Path(path)):
        offset = _ip_offset(link, frame)
        segment = _tcp(frame, offset) if offset is not None else None
        if segment is None:
            continue
        src, sport, dst, dport, seq, flags, payload = segment
        if dport in server_ports:
            key, direction = (src, sport, dst, dport), "send"
        elif sport in server_ports:
            key, direction = (dst, dport, src, sport), "recv"
        else:
            continue
        first = stamp if first is None else first
        at = stamp - first
        conn = conns.get(key)
        if conn is None and not (payload or flags & _TCP_SYN):
            continue  # the last ACKs of a connection already closed
        if conn is None:
            conn = conns[key] = _Connection(_name(count), key[:2], key[2:])
            count += 1
            yield Captured(at, conn.name, "event", None,
                           f"open {key[0]}:{key[1]} > {key[2]}:{key[3]}")
        side = conn.send if direction == "send" else conn.recv
        yield from _segment(conn, side, direction, at, seq, flags, payload)
        if conn.send.finished and conn.recv.finished:
            del conns[key]
    for conn in conns.values():  # the capture ended with these still open
        for direction, side in (("send", conn.send), ("recv", conn.recv)):
            if side.held:
                side.lost = True
                yield from _release(conn, side, direction, None)


def _segment(conn: _Connection, side: _Direction, direction: str, at: float, seq: int,
             flags: int, payload: bytes) -> Iterator[Captured]:
    if flags & _TCP_SYN:
        side.next_seq = (seq + 1) & 0xFFFFFFFF
        side.lost = False
        return
    if side.finished:
        return
    if side.next_seq is None:  # no SYN captured: the stream started before the capture
        side.next_seq = seq
        side.lost = True
    if payload:
        ahead = (seq - side.next_seq) & 0xFFFFFFFF
        if ahead >= 1 << 31:  # starts before what we have: a retransmission or overlap
            behind = (1 << 32) - ahead
            if behind < len(payload):
                yield from _take(conn, side, direction, at, payload[behind:])
        elif ahead == 0:
            yield from _take(conn, side, direction, at, payload)
        elif seq not in side.held or len(side.held[seq]) < len(payload):
            side.held_bytes += len(payload) - len(side.held.get(seq, b""))
            side.held[seq] = payload
            if side.held_bytes > HOLD_LIMIT:  # the hole will not be filled
                yield from _release(conn, side, direction, at)
        yield from _drain_held(conn, side, direction, at)
    if flags & (_TCP_FIN | _TCP_RST):
        side.finished = True
        word = "reset" if flags & _TCP_RST else "closed"
        yield Captured(at, conn.name, "event", None,
                       f"{word} by the {'client' if direction == 'send' else 'server'}")
        if flags & _TCP_RST:
            conn.send.finished = conn.recv.finished = True


def _drain_held(conn: _Connection, side: _Direction, direction: str,
                at: float) -> Iterator[Captured]:
    while side.held and side.next_seq is not None:
        progressed = False
        for seq in list(side.held):
            ahead = (seq - side.next_seq) & 0xFFFFFFFF
            if ahead == 0 or ahead >= 1 << 31:
                data = side.held.pop(seq)
                side.held_bytes -= len(data)
                skip = 0 if ahead == 0 else (1 << 32) - ahead
                if skip < len(data):
                    yield from _take(conn, side, direction, at, data[skip:])
                progressed = True
        if not progressed:
            return


def _release(conn: _Connection, side: _Direction, direction: str,
             at: float | None) -> Iterator[Captured]:
    """Give up on the hole before the held segments: skip to the first of them."""
    assert side.next_seq is not None
    nearest = min(side.held, key=lambda s: (s - side.next_seq) & 0xFFFFFFFF)  # type: ignore[operator]
    gap = (nearest - side.next_seq) & 0xFFFFFFFF
    yield Captured(at or 0.0, conn.name, "event", None,
                   f"{gap} bytes {'sent' if direction == 'send' else 'received'} were not "
                   "captured; resynchronising")
    side.next_seq = nearest
    side.lost = True
    side.decoder = Decoder(max_payload=1 << 30, max_line=1 << 20)
    yield from _drain_held(conn, side, direction, at or 0.0)


def _take(conn: _Connection, side: _Direction, direction: str, at: float,
          data: bytes) -> Iterator[Captured]:
    """In-order bytes: into the decoder, events out."""
    assert side.next_seq is not None
    side.next_seq = (side.next_seq + len(data)) & 0xFFFFFFFF
    decoder = side.decoder
    if side.lost:
        decoder.feed(data)
        if not _resynchronise(decoder):
            return
        side.lost = False
        yield Captured(at, conn.name, direction, None, "resynchronised")
    else:
        decoder.feed(data)
    while True:
        try:
            event = decoder.next_event()
        except ProtocolError as error:
            yield Captured(at, conn.name, direction, None, f"undecodable: {error}")
            side.lost = True
            side.decoder = Decoder(max_payload=1 << 30, max_line=1 << 20)
            return
        if event is None:
            return
        yield Captured(at, conn.name, direction, event)


def _resynchronise(decoder: Decoder) -> bool:
    """Drop buffered bytes up to the first place a packet or text line could start:
    a binary header with a known type, else the start of a line after a newline."""
    buffered = decoder.pending()
    header = _HEADER.search(buffered)
    newline = buffered.find(b"\n")
    line = newline + 1 if 0 <= newline < len(buffered) - 1 and \
        buffered[newline + 1:newline + 2].isalpha() else -1
    starts = [p for p in ((header.start() if header else -1), line) if p >= 0]
    if not starts:
        decoder.discard(max(0, len(buffered) - 8))  # a header may straddle two chunks
        return False
    decoder.discard(min(starts))
    return True
