"""The Gearman packet table: every binary packet type, in one place.

A binary packet is a 12-byte header (4-byte magic, 32-bit big-endian type,
32-bit big-endian payload length) followed by the payload.  The payload is
the packet's arguments separated by single NUL bytes; every argument but the
last is NUL-terminated and the last one runs to the end of the payload, so
only the last argument may contain NUL bytes.  For the packets whose last
argument is opaque data (workloads, results, echo) that is by design; for the
others gearmand treats the tail as a C string.

Sources: gearmand PROTOCOL ("Binary Protocol", "Client/Worker Requests",
"Client/Worker Responses") and libgearman/command.cc, which holds the argument
counts gearmand actually parses with.  Where the two disagree the table
follows command.cc and says so in ``note``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import SimpleNamespace

HEADER_SIZE = 12


class Magic(bytes, enum.Enum):
    """The four bytes that open a binary packet."""

    REQ = b"\0REQ"  # sent to the server
    RES = b"\0RES"  # sent by the server


class PacketType(enum.IntEnum):
    """Packet numbers as in PROTOCOL and libgearman-1.0/protocol.h."""

    TEXT = 0  # internal marker for admin text lines; never valid on the wire
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    UNUSED = 5
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


#: One past the highest packet number gearmand knows; a header naming this or
#: more (or 0) makes gearmand close the connection.
TYPE_LIMIT = 43

#: The packet type numbers as plain ints, by name (``TYPES.ECHO_REQ == 16``), for the
#: server's hot paths: reading a member off an Enum class costs several times a plain
#: attribute in CPython 3.11, and the core reads one for nearly every reply it builds.
TYPES = SimpleNamespace(**{t.name: int(t) for t in PacketType})


class Direction(enum.Enum):
    """Who sends a packet type, and therefore with which magic."""

    REQUEST = "REQ"  # client or worker → server
    RESPONSE = "RES"  # server → client or worker
    BOTH = "REQ/RES"  # worker → server, forwarded server → client (WORK_*)
    NONE = "-"  # not a wire packet (TEXT, UNUSED)


@dataclass(frozen=True, slots=True)
class PacketSpec:
    """One row of the packet table."""

    type: PacketType
    direction: Direction
    sent_by: str  # "client", "worker", "client/worker", "server", "-"
    args: tuple[str, ...]  # argument names in wire order
    has_data: bool  # the last argument is opaque data (may hold NULs)
    summary: str
    note: str = ""

    @property
    def name(self) -> str:
        return self.type.name

    @property
    def number(self) -> int:
        return int(self.type)

    @property
    def separators(self) -> int:
        """NUL separators a well-formed payload holds (0 for no-argument packets)."""
        return max(len(self.args) - 1, 0)


_T = PacketType
_REQ, _RES, _BOTH, _NONE = Direction.REQUEST, Direction.RESPONSE, Direction.BOTH, Direction.NONE
_SUBMIT = ("function", "unique", "data")


def _row(t: PacketType, d: Direction, by: str, args: tuple[str, ...], data: bool,
         summary: str, note: str = "") -> PacketSpec:
    return PacketSpec(t, d, by, args, data, summary, note)


PACKETS: dict[PacketType, PacketSpec] = {spec.type: spec for spec in (
    _row(_T.TEXT, _NONE, "-", (), False,
         "internal marker for admin text lines",
         "a binary header with type 0 makes gearmand close the connection"),
    _row(_T.CAN_DO, _REQ, "worker", ("function",), False,
         "worker can run FUNCTION; no reply"),
    _row(_T.CANT_DO, _REQ, "worker", ("function",), False,
         "worker no longer runs FUNCTION; no reply"),
    _row(_T.RESET_ABILITIES, _REQ, "worker", (), False,
         "forget every function of this worker; no reply"),
    _row(_T.PRE_SLEEP, _REQ, "worker", (), False,
         "worker is about to sleep; wake it with NOOP when a job arrives"),
    _row(_T.UNUSED, _NONE, "-", (), False,
         "reserved", "gearmand answers ERROR INVALID_COMMAND"),
    _row(_T.NOOP, _RES, "server", (), False,
         "wake-up call for a sleeping worker"),
    _row(_T.SUBMIT_JOB, _REQ, "client", _SUBMIT, True,
         "submit a foreground job at normal priority"),
    _row(_T.JOB_CREATED, _RES, "server", ("handle",), False,
         "the job handle of a submitted job"),
    _row(_T.GRAB_JOB, _REQ, "worker", (), False,
         "ask for a job; answered by JOB_ASSIGN or NO_JOB"),
    _row(_T.NO_JOB, _RES, "server", (), False,
         "no job for this worker right now"),
    _row(_T.JOB_ASSIGN, _RES, "server", ("handle", "function", "data"), True,
         "a job for the worker (answer to GRAB_JOB)"),
    _row(_T.WORK_STATUS, _BOTH, "worker", ("handle", "numerator", "denominator"), False,
         "progress of a job, forwarded to its clients"),
    _row(_T.WORK_COMPLETE, _BOTH, "worker", ("handle", "data"), True,
         "the job finished with a result, forwarded to its clients"),
    _row(_T.WORK_FAIL, _BOTH, "worker", ("handle",), False,
         "the job failed, forwarded to its clients"),
    _row(_T.GET_STATUS, _REQ, "client", ("handle",), False,
         "ask for the status of a job by handle; answered by STATUS_RES"),
    _row(_T.ECHO_REQ, _REQ, "client/worker", ("data",), True,
         "ask the server to echo DATA back in ECHO_RES"),
    _row(_T.ECHO_RES, _RES, "server", ("data",), True,
         "the echoed data"),
    _row(_T.SUBMIT_JOB_BG, _REQ, "client", _SUBMIT, True,
         "submit a background job at normal priority"),
    _row(_T.ERROR, _RES, "server", ("code", "text"), False,
         "the server rejects a request; the connection stays open"),
    _row(_T.STATUS_RES, _RES, "server",
         ("handle", "known", "running", "numerator", "denominator"), False,
         "status of a job (answer to GET_STATUS)"),
    _row(_T.SUBMIT_JOB_HIGH, _REQ, "client", _SUBMIT, True,
         "submit a foreground job at high priority"),
    _row(_T.SET_CLIENT_ID, _REQ, "client/worker", ("client_id",), False,
         "name this connection (shown by admin 'workers'); no reply"),
    _row(_T.CAN_DO_TIMEOUT, _REQ, "worker", ("function", "timeout"), False,
         "like CAN_DO, with a per-job timeout in milliseconds",
         "PROTOCOL says the job fails on timeout; gearmand 1.1.x requeues it"),
    _row(_T.ALL_YOURS, _REQ, "worker", (), False,
         "reserved in PROTOCOL", "not implemented: gearmand answers ERROR INVALID_COMMAND"),
    _row(_T.WORK_EXCEPTION, _BOTH, "worker", ("handle", "data"), True,
         "the job failed with an exception; ends the job",
         "terminal in gearmand since 1.1.9; clients without the 'exceptions' option get WORK_FAIL"),
    _row(_T.OPTION_REQ, _REQ, "client/worker", ("option",), False,
         "set a connection option ('exceptions' is the only one)"),
    _row(_T.OPTION_RES, _RES, "server", ("option",), False,
         "the option was accepted"),
    _row(_T.WORK_DATA, _BOTH, "worker", ("handle", "data"), True,
         "partial result, forwarded to the job's clients"),
    _row(_T.WORK_WARNING, _BOTH, "worker", ("handle", "data"), True,
         "warning, forwarded to the job's clients"),
    _row(_T.GRAB_JOB_UNIQ, _REQ, "worker", (), False,
         "ask for a job with its unique id; answered by JOB_ASSIGN_UNIQ or NO_JOB"),
    _row(_T.JOB_ASSIGN_UNIQ, _RES, "server", ("handle", "function", "unique", "data"), True,
         "a job for the worker, with its unique id"),
    _row(_T.SUBMIT_JOB_HIGH_BG, _REQ, "client", _SUBMIT, True,
         "submit a background job at high priority"),
    _row(_T.SUBMIT_JOB_LOW, _REQ, "client", _SUBMIT, True,
         "submit a foreground job at low priority"),
    _row(_T.SUBMIT_JOB_LOW_BG, _REQ, "client", _SUBMIT, True,
         "submit a background job at low priority"),
    _row(_T.SUBMIT_JOB_SCHED, _REQ, "client",
         ("function", "unique", "minute", "hour", "day_of_month", "month", "day_of_week", "data"),
         True, "submit a cron-scheduled background job",
         "not implemented: gearmand answers ERROR INVALID_COMMAND"),
    _row(_T.SUBMIT_JOB_EPOCH, _REQ, "client", ("function", "unique", "epoch", "data"), True,
         "submit a background job that runs at or after a Unix time"),
    _row(_T.SUBMIT_REDUCE_JOB, _REQ, "client",
         ("function", "unique", "reducer", "aggregator", "data"), True,
         "submit a foreground map/reduce job",
         "PROTOCOL lists 3 arguments before the data; libgearman sends and gearmand parses 4"),
    _row(_T.SUBMIT_REDUCE_JOB_BACKGROUND, _REQ, "client",
         ("function", "unique", "reducer", "aggregator", "data"), True,
         "submit a background map/reduce job", "4 arguments before the data, as SUBMIT_REDUCE_JOB"),
    _row(_T.GRAB_JOB_ALL, _REQ, "worker", (), False,
         "ask for a job with unique id and reducer; answered by JOB_ASSIGN_ALL, "
         "JOB_ASSIGN_UNIQ (job without reducer) or NO_JOB"),
    _row(_T.JOB_ASSIGN_ALL, _RES, "server",
         ("handle", "function", "unique", "reducer", "data"), True,
         "a reduce job for the worker"),
    _row(_T.GET_STATUS_UNIQUE, _REQ, "client", ("unique",), False,
         "ask for the status of a job by unique id; answered by STATUS_RES_UNIQUE"),
    _row(_T.STATUS_RES_UNIQUE, _RES, "server",
         ("unique", "known", "running", "numerator", "denominator", "waiting_clients"), False,
         "status of a job by unique id",
         "PROTOCOL says the first field is the handle; gearmand sends the unique"),
)}

assert len(PACKETS) == TYPE_LIMIT and all(PACKETS[t].type is t for t in PacketType)


def spec(packet_type: int) -> PacketSpec:
    """The table row for a packet number (``KeyError`` for numbers outside 0–42)."""
    return PACKETS[PacketType(packet_type)]
