"""What can go wrong on the wire: decoder errors and the server's ERROR packets.

``ProtocolError`` and its subclasses are raised by the decoder for byte
streams that are not Gearman.  After one of them the stream cannot be trusted
(except where ``resynchronised`` says otherwise) and the server closes the
connection, as gearmand does for bad magic and unknown types.

``ErrorCode`` lists the ``code`` / ``text`` pairs of the ERROR packets gearmand
1.1.20 sends (libgearman-server/server.cc; the code is the libgearman return
code name without its ``GEARMAN_`` prefix).
"""

from __future__ import annotations

import enum


class ProtocolError(Exception):
    """Bytes that do not form a Gearman packet or admin line."""

    #: The decoder skipped exactly the offending packet and can go on.
    resynchronised: bool = False


class BadMagic(ProtocolError):
    """A binary header whose magic is neither ``\\0REQ`` nor ``\\0RES``."""

    def __init__(self, magic: bytes) -> None:
        super().__init__(f"bad magic {magic!r}: expected b'\\x00REQ' or b'\\x00RES'")
        self.magic = magic


class UnknownPacketType(ProtocolError):
    """A binary header naming type 0 or a type above 42."""

    def __init__(self, number: int) -> None:
        super().__init__(f"unknown packet type {number}: valid types are 1-42")
        self.number = number


class PacketTooLarge(ProtocolError):
    """A header announcing a payload above the configured maximum."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"payload of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length
        self.limit = limit


class LineTooLong(ProtocolError):
    """An admin text line without a newline within the configured maximum."""

    def __init__(self, buffered: int, limit: int) -> None:
        super().__init__(f"text line longer than {limit} bytes ({buffered} buffered, no newline)")
        self.buffered = buffered
        self.limit = limit


class WrongArgumentCount(ProtocolError):
    """A complete binary packet whose payload has too few NUL separators.

    The header gave the payload length, so the packet itself was consumed and
    the stream is still in step: the decoder can go on with the next packet.
    """

    resynchronised = True

    def __init__(self, packet_type: int, expected: int, found: int) -> None:
        from reference_server.protocol.packets import PacketType

        name = PacketType(packet_type).name
        super().__init__(f"{name} needs {expected} arguments, the payload holds {found}")
        self.packet_type = packet_type
        self.expected = expected
        self.found = found


class ErrorCode(enum.Enum):
    """ERROR packets: (code, text) exactly as gearmand 1.1.20 sends them."""

    INVALID_MAGIC = (b"INVALID_MAGIC", b"Request magic expected")
    INVALID_COMMAND = (b"INVALID_COMMAND", b"Command not expected")
    UNIQUE_TOO_LARGE = (b"ARGUMENT_TOO_LARGE", b"Unique value too large")
    HANDLE_TOO_LARGE = (
        b"ARGUMENT_TOO_LARGE",
        b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf",
    )
    QUEUE_FULL = (b"QUEUE_ERROR", b"Job queue is full")
    QUEUE_ERROR = (b"QUEUE_ERROR", b"QUEUE_ERROR")
    UNKNOWN_OPTION = (b"UNKNOWN_OPTION", b"Server does not recognize given option")
    JOB_NOT_FOUND_DATA = (b"JOB_NOT_FOUND", b"Job does not exist on server")
    JOB_NOT_FOUND_RESULT = (b"JOB_NOT_FOUND", b"Job given in work result not found")
    JOB_NOT_FOUND_EXCEPTION = (
        b"JOB_NOT_FOUND",
        b"An exception was received for a job that does not exist",
    )
    # Ours, not gearmand's: gearmand stalls on these packets (see DEVIATIONS.md).
    INVALID_PACKET = (b"INVALID_PACKET", b"Packet has too few arguments")
    PACKET_TOO_LARGE = (b"ARGUMENT_TOO_LARGE", b"Packet larger than the server accepts")

    @property
    def code(self) -> bytes:
        return self.value[0]

    @property
    def text(self) -> bytes:
        return self.value[1]
