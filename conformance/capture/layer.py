"""A scapy layer for Gearman binary packets, derived from the one packet table.

The payload is kept as a single bytes field (``args_raw``) rather than one
scapy field per argument: argument positions differ per type and the last
argument may hold NULs, so splitting is done the same way the codec does it,
by the table in ``reference_server.protocol.PACKETS``.  ``arguments`` gives
the named view, ``Gearman.of`` builds from names.

Several packets in one TCP segment dissect as a chain of ``Gearman`` layers.
Anything that does not start with a binary magic (admin text lines, the
middle of a packet split across segments) stays ``Raw``: guessing where a
packet starts inside arbitrary bytes belongs to stream reassembly, not to a
per-segment layer.
"""

from __future__ import annotations

from typing import Any

from scapy.config import conf
from scapy.fields import FieldLenField, IntEnumField, StrFixedLenField, StrLenField
from scapy.layers.inet import TCP
from scapy.packet import Packet, bind_layers, split_layers

from conformance.events import show
from reference_server.protocol import (
    HEADER_SIZE,
    PACKETS,
    Direction,
    Magic,
    PacketType,
    encode,
    split_arguments,
)

GEARMAN_PORT = 4730
_MAGICS = (Magic.REQ.value, Magic.RES.value)
_TYPE_NAMES = {int(t): t.name for t in PacketType}


def _split(packet_type: int, payload: bytes) -> dict[str, bytes]:
    """Named arguments of a payload, split as the codec splits it.  Unknown types,
    and payloads with too few separators, give what is there (malformed
    captures must still display)."""
    try:
        kind = PacketType(packet_type)
    except ValueError:
        return {}
    return dict(zip(PACKETS[kind].args, split_arguments(kind, payload)))



class _ArgumentsField(StrLenField):
    """The payload; displayed as the named arguments of the packet's type."""

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if pkt is None or not isinstance(x, bytes):
            return super().i2repr(pkt, x)
        named = _split(pkt.type, x)
        if not named:
            return super().i2repr(pkt, x)
        return " ".join(f"{name}={show(value, 60)}" for name, value in named.items())


class Gearman(Packet):
    """One Gearman binary packet: magic, type, length, then the NUL-separated arguments."""

    name = "Gearman"
    fields_desc = [  # noqa: RUF012 (scapy's declaration style)
        StrFixedLenField("magic", Magic.REQ.value, 4),
        IntEnumField("type", int(PacketType.ECHO_REQ), _TYPE_NAMES),
        FieldLenField("length", None, length_of="args_raw", fmt="!I"),
        _ArgumentsField("args_raw", b"", length_from=lambda pkt: pkt.length),
    ]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        # Bound to a port, every TCP payload lands here: only a binary header is ours.
        if _pkt is not None and _pkt[:4] not in _MAGICS:
            return conf.raw_layer
        return cls

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        # The bytes after this packet's payload are the next packet of the segment.
        if payload[:4] in _MAGICS:
            return Gearman
        return conf.raw_layer

    @classmethod
    def of(cls, packet_type: PacketType | int, *, magic: Magic | bytes | None = None,
           **arguments: bytes | str) -> Gearman:
        """A packet from its type and named arguments (missing ones are empty).
        The magic defaults to the type's direction: RES for server packets."""
        spec = PACKETS[PacketType(packet_type)]
        unknown = set(arguments) - set(spec.args)
        if unknown:
            raise TypeError(f"{spec.name} has no argument {', '.join(sorted(unknown))} "
                            f"(it takes: {', '.join(spec.args) or 'none'})")
        if magic is None:
            magic = Magic.RES if spec.direction is Direction.RESPONSE else Magic.REQ
        values = [_as_bytes(arguments.get(name, b"")) for name in spec.args]
        payload = encode(packet_type, *values)[HEADER_SIZE:]  # the codec checks the NULs
        return cls(magic=bytes(magic.value if isinstance(magic, Magic) else magic),
                   type=int(packet_type), args_raw=payload)

    @property
    def packet_type(self) -> PacketType | int:
        """The type as a ``PacketType`` (the bare number for unknown types)."""
        return PacketType(self.type) if self.type in _TYPE_NAMES else self.type

    @property
    def arguments(self) -> dict[str, bytes]:
        """Arguments by their names in the packet table."""
        return _split(self.type, self.args_raw or b"")

    @arguments.setter
    def arguments(self, values: dict[str, bytes | str]) -> None:
        rebuilt = Gearman.of(self.type, magic=self.magic, **values)
        self.args_raw = rebuilt.args_raw
        self.length = None  # recomputed on build

    def mysummary(self) -> str:
        name = _TYPE_NAMES.get(self.type, f"TYPE_{self.type}")
        magic = "" if self.magic in _MAGICS else f"[magic {show(self.magic, 60)}] "
        shown = " ".join(f"{k}={show(v, 60)}" for k, v in self.arguments.items())
        return f"{magic}{name} {shown}".rstrip()


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def bind(port: int) -> None:
    """Dissect TCP traffic to or from ``port`` as Gearman."""
    bind_layers(TCP, Gearman, dport=port)
    bind_layers(TCP, Gearman, sport=port)


def unbind(port: int) -> None:
    """Undo ``bind(port)`` (the standard port 4730 included)."""
    split_layers(TCP, Gearman, dport=port)
    split_layers(TCP, Gearman, sport=port)


assert HEADER_SIZE == 12  # magic(4) + type(4) + length(4), as fields_desc says
bind(GEARMAN_PORT)
