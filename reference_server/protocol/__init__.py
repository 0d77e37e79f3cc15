"""Gearman wire format: the packet table, the codec and the error codes.

Everything in gearspec that reads or writes Gearman bytes goes through here.
"""

from reference_server.protocol.admin import ADMIN_COMMANDS, LIST_COMMANDS
from reference_server.protocol.codec import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_PAYLOAD,
    Decoder,
    Event,
    Packet,
    TextLine,
    decode_all,
    encode,
    frame,
    response,
    split_arguments,
)
from reference_server.protocol.errors import (
    BadMagic,
    ErrorCode,
    LineTooLong,
    PacketTooLarge,
    ProtocolError,
    UnknownPacketType,
    WrongArgumentCount,
)
from reference_server.protocol.packets import (
    HEADER_SIZE,
    PACKETS,
    TYPE_LIMIT,
    TYPES,
    Direction,
    Magic,
    PacketSpec,
    PacketType,
    spec,
)
from reference_server.protocol.priority import SUBMIT_TYPES, SUBMITS, Priority

__all__ = [
    "ADMIN_COMMANDS", "LIST_COMMANDS", "Priority", "SUBMITS", "SUBMIT_TYPES", "BadMagic",
    "DEFAULT_MAX_LINE", "DEFAULT_MAX_PAYLOAD", "Decoder", "Direction", "ErrorCode", "Event",
    "HEADER_SIZE", "LineTooLong", "Magic", "PACKETS", "Packet", "PacketSpec", "PacketTooLarge",
    "PacketType", "ProtocolError", "TYPE_LIMIT", "TYPES", "TextLine", "UnknownPacketType",
    "WrongArgumentCount", "decode_all", "encode", "frame", "response", "split_arguments",
    "spec",
]
