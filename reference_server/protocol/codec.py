"""The Gearman codec: bytes in, events out; events in, bytes out.  No sockets.

``Decoder`` is incremental, like h11's connection object: ``feed()`` it bytes
in any chunking and call ``next_event()`` until it returns ``None`` (more
bytes needed).  Events are ``Packet`` (binary) and ``TextLine`` (admin
protocol).  Whether the next unit is binary or text is decided per unit by
its first byte, as gearmand does (plugins/protocol/gear/protocol.cc): ``\\0``
opens a 12-byte binary header, anything else is a text line ending in
``\\n`` (a ``\\r`` before it is dropped).  So one connection may mix both.

Limits, and why:

* ``max_payload`` (default ``DEFAULT_MAX_PAYLOAD``, 64 MiB).  gearmand accepts
  any 32-bit length and waits for the body forever, so a header announcing
  4 GiB pins a connection, and a server that allocates up front can be made
  to allocate it.  We refuse the header instead: ``PacketTooLarge`` is raised
  as soon as the 12 header bytes are in, before any of the body is buffered.
  Jobs above 64 MiB are unusual; raise the limit if yours are not.
* ``max_line`` (default 8192, gearmand's receive buffer): a text line that is
  not finished within that many bytes raises ``LineTooLong``.

So the bytes a decoder holds never exceed one maximal packet plus the
chunk being fed.

Arguments other than the opaque data are only bounded by ``max_payload``;
gearmand closes the connection when one exceeds its 8 KiB buffer (see
DEVIATIONS.md, "Arguments longer than 8 KiB").

Argument splitting follows the packet table: a payload for a packet with N
arguments must hold at least N-1 NUL separators; the last argument takes the
rest (NULs included).  gearmand instead searches past the declared length for
missing separators and then stalls (see DEVIATIONS.md); we raise
``WrongArgumentCount`` after consuming exactly the bad packet, so the caller
may answer it and go on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from reference_server.protocol.errors import (
    BadMagic,
    LineTooLong,
    PacketTooLarge,
    UnknownPacketType,
    WrongArgumentCount,
)
from reference_server.protocol.packets import (
    HEADER_SIZE,
    PACKETS,
    TYPE_LIMIT,
    Magic,
    PacketType,
)

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
DEFAULT_MAX_LINE = 8192

_HEADER = struct.Struct(">4sII")
_pack_header = _HEADER.pack  # frame()'s, bound once: response() is the server's hot path
_REQ = Magic.REQ.value
_RES = Magic.RES.value
_MAGICS = {_REQ: Magic.REQ, _RES: Magic.RES}
_TYPES: list[PacketType] = list(PacketType)
# Number of NUL separators per packet type, and 0 for the argument-less ones.
_SPLITS: list[int] = [PACKETS[t].separators for t in _TYPES]
_ARGC: list[int] = [len(PACKETS[t].args) for t in _TYPES]


class Packet:
    """One binary packet: its type, its arguments (bytes) and its magic."""

    __slots__ = ("type", "args", "magic")

    def __init__(self, type: int, args: tuple[bytes, ...] = (), magic: Magic = Magic.REQ) -> None:
        self.type = _TYPES[type] if 0 <= type < TYPE_LIMIT else type
        self.args = args
        self.magic = magic

    @property
    def name(self) -> str:
        return self.type.name if isinstance(self.type, PacketType) else f"TYPE_{self.type}"

    def fields(self) -> dict[str, bytes]:
        """Arguments by their names in the packet table."""
        return dict(zip(PACKETS[PacketType(self.type)].args, self.args))

    def __getitem__(self, name: str) -> bytes:
        return self.fields()[name]

    def encode(self) -> bytes:
        return encode(self.type, *self.args, magic=self.magic)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Packet) and self.type == other.type
                and self.args == other.args and self.magic == other.magic)

    def __hash__(self) -> int:
        return hash((self.type, self.args, self.magic))

    def __repr__(self) -> str:
        names = PACKETS[self.type].args if isinstance(self.type, PacketType) else ()
        shown = ", ".join(f"{n}={a!r}" for n, a in zip(names, self.args))
        prefix = "" if self.magic is Magic.REQ else "RES "
        return f"<{prefix}{self.name}({shown})>"


class TextLine:
    """One admin text line, and the line ending it came with (``\n`` or ``\r\n``)."""

    __slots__ = ("line", "ending")

    def __init__(self, line: bytes, ending: bytes = b"\n") -> None:
        self.line = line
        self.ending = ending

    @property
    def raw(self) -> bytes:
        return self.line + self.ending

    def tokens(self) -> list[bytes]:
        """Split as gearmand does: on single spaces, runs of spaces after a
        separator skipped, so a leading space gives an empty first token and a
        trailing space an empty last one."""
        tokens: list[bytes] = []
        rest = self.line
        while True:
            cut = rest.find(b" ")
            if cut < 0:
                tokens.append(rest)
                return tokens
            tokens.append(rest[:cut])
            rest = rest[cut + 1:].lstrip(b" ")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextLine) and (self.line, self.ending) == (other.line,
                                                                            other.ending)

    def __hash__(self) -> int:
        return hash((self.line, self.ending))

    def __repr__(self) -> str:
        return f"<TEXT {self.raw!r}>"


Event = Packet | TextLine


class Decoder:
    """Incremental decoder for one direction of one connection."""

    __slots__ = ("_buf", "_pos", "max_payload", "max_line")

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 max_line: int = DEFAULT_MAX_LINE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_payload = max_payload
        self.max_line = max_line

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos

    def pending(self) -> bytes:
        """The bytes fed and not yet decoded (a copy)."""
        return bytes(self._buf[self._pos:])

    def discard(self, count: int) -> None:
        """Drop ``count`` undecoded bytes: a capture reader that missed the start
        of a stream skips to where a packet or line can begin."""
        self._pos += min(count, self.buffered)

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | None:
        """The next complete event, or ``None`` until more bytes arrive.

        Raises a ``ProtocolError`` subclass for bytes that are not Gearman.
        """
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if not available:
            return None
        if buf[pos]:
            end = buf.find(b"\n", pos, pos + self.max_line)
            if end < 0:
                if available >= self.max_line:
                    raise LineTooLong(available, self.max_line)
                return None
            self._pos = end + 1
            if end > pos and buf[end - 1] == 13:  # b"\r"
                return TextLine(bytes(buf[pos:end - 1]), b"\r\n")
            return TextLine(bytes(buf[pos:end]))
        if available < HEADER_SIZE:
            return None
        magic, number, length = _HEADER.unpack_from(buf, pos)
        if magic != _REQ and magic != _RES:
            raise BadMagic(bytes(magic))
        # The number is unsigned.  DEVIATION "Type numbers of 2^31 and up": gearmand
        # crashes on them; here they are as unknown as any other.
        if not 0 < number < TYPE_LIMIT:
            raise UnknownPacketType(number)
        if length > self.max_payload:
            raise PacketTooLarge(length, self.max_payload)
        start = pos + HEADER_SIZE
        end = start + length
        if len(buf) < end:
            return None
        self._pos = end
        separators = _SPLITS[number]
        if separators:
            args = tuple(bytes(buf[start:end]).split(b"\0", separators))
            if len(args) <= separators:
                raise WrongArgumentCount(number, separators + 1, len(args))
        elif _ARGC[number]:
            args = (bytes(buf[start:end]),)
        else:
            args = ()  # gearmand reads and ignores a payload on argument-less packets
        return Packet(number, args, _MAGICS[magic])

    def events(self, data: bytes = b"") -> Iterator[Event]:
        """Feed ``data`` and yield every complete event."""
        if data:
            self.feed(data)
        while (event := self.next_event()) is not None:
            yield event


def encode(packet_type: int, *args: bytes, magic: Magic = Magic.REQ) -> bytes:
    """One packet, checked against the table: the right number of arguments,
    and no NUL inside any argument but the last."""
    spec = PACKETS[PacketType(packet_type)]
    if len(args) != len(spec.args):
        raise ValueError(f"{spec.name} takes {len(spec.args)} arguments "
                         f"({', '.join(spec.args) or 'none'}), got {len(args)}")
    for name, arg in zip(spec.args[:-1], args[:-1]):
        if b"\0" in arg:
            raise ValueError(f"{spec.name}: argument {name!r} may not contain NUL bytes")
    return frame(magic.value, packet_type, b"\0".join(args))


def split_arguments(packet_type: PacketType, payload: bytes) -> tuple[bytes, ...]:
    """A payload's arguments split as the decoder splits them (N-1 separators, NULs
    kept in the last), for tools that hold a payload without a stream: the scapy
    layer.  (The decoder inlines this on its hot path.)"""
    count = len(PACKETS[packet_type].args)
    return tuple(payload.split(b"\0", count - 1)) if count else ()


def frame(magic: bytes, packet_type: int, payload: bytes, *, length: int | None = None) -> bytes:
    """Header plus payload, unchecked: the one place a 12-byte header is packed.

    ``encode`` and ``response`` build on it; tests and fuzzers use it directly for
    deliberately malformed packets: any magic, any type number (up to 2^32 - 1),
    and with ``length`` a length field that disagrees with the payload."""
    return _pack_header(magic, packet_type, len(payload) if length is None else length) + payload


def response(packet_type: int, *args: bytes) -> bytes:
    """A server packet (``\\0RES``), unchecked: the server's hot path, whose
    arguments are already known to be well formed."""
    return frame(_RES, packet_type, b"\0".join(args))


def decode_all(data: bytes, **limits: int) -> list[Event]:
    """Every event in a complete byte string (raises on trailing garbage)."""
    decoder = Decoder(**limits)
    events = list(decoder.events(data))
    if decoder.buffered:
        raise ValueError(f"{decoder.buffered} bytes left over after the last complete event")
    return events
