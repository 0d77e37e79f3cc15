"""The admin (text) protocol: one function per command, gearmand's exact bytes.

PROTOCOL "Administrative Protocol"; gearmand 1.1.20 libgearman-server/text.cc.
A line is split into tokens on spaces (see ``TextLine.tokens``); the command
is the first token, compared case-insensitively.  Line endings are part of
the contract: ``OK`` and every ``ERR`` line end in ``\\r\\n``; list rows, the
closing ``.`` and the ``OK <value>`` answers of getpid/verbose/version end in
``\\n`` only.  Unknown commands get the token glued to the text, without a
separator, exactly as gearmand prints it (``...commandfoo``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from reference_server.core.compat import CloseConnection, c_atoi, c_string
from reference_server.core.model import Connection, Function, Job
from reference_server.core.options import ServerOptions
from reference_server.protocol import Priority, TextLine


class JobServer(Protocol):
    """What the admin commands see of the job server: its public state and the
    three operations that change it (the server passes itself)."""

    options: ServerOptions
    connections: dict[int, Connection]
    functions: dict[bytes, Function]
    jobs: dict[bytes, Job]
    shutdown_requested: str | None

    def create_function(self, name: bytes) -> Function: ...

    def drop_function(self, function: Function) -> bool: ...

    def cancel(self, handle: bytes) -> bool: ...

MAX_TOKENS = 5  # gearmand's TEXT packet holds at most 5 arguments

OK = b"OK\r\n"
UNKNOWN_JOB = b"ERR UNKNOWN_JOB\r\n"
UNKNOWN_ERROR = b"ERR UNKNOWN_ERROR\r\n"
UNKNOWN_SHOW_ARGUMENTS = b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
FUNCTION_NOT_FOUND = b"ERR function not found\r\n"
FUNCTION_BUSY = b"ERR there are still connected workers or executing clients\r\n"


def unknown_command(token: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + token + b"\r\n"


def invalid_arguments(token: bytes) -> bytes:
    return (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
            + token + b"\r\n")


def run(server: JobServer, conn: Connection, line: TextLine) -> bytes:
    """The reply to one admin line (``CloseConnection`` when gearmand would close)."""
    tokens = line.tokens()
    if len(tokens) > MAX_TOKENS:
        # gearmand cannot store a sixth argument and closes the connection.
        raise CloseConnection
    command = COMMANDS.get(tokens[0].lower())
    reply = command(server, conn, tokens) if command else unknown_command(tokens[0])
    return reply or UNKNOWN_ERROR


def _workers(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "FD IP CLIENT_ID : FUNCTION ..." for every connection, admin ones included.
    # Names are printed as C strings, as gearmand does: a CAN_DO name with a NUL in
    # it shows up to the NUL.
    rows = []
    for peer in server.connections.values():
        functions = b"".join(b" " + c_string(r.function.name) for r in peer.registrations)
        rows.append(b"%d %s %s :%s\n" % (peer.label, peer.host.encode(), peer.client_id, functions))
    rows.append(b".\n")
    return b"".join(rows)


def _status(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "FUNCTION\tTOTAL\tRUNNING\tAVAILABLE_WORKERS"; functions stay listed until dropped.
    rows = [b"%s\t%d\t%d\t%d\n" % (c_string(f.name), f.total, f.running, len(f.workers))
            for f in server.functions.values()]
    rows.append(b".\n")
    return b"".join(rows)


def _prioritystatus(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "FUNCTION\tHIGH\tNORMAL\tLOW\tWORKERS": queued jobs per priority (gearmand >= 1.1.15).
    rows = [b"%s\t%d\t%d\t%d\t%d\n" % (c_string(f.name), len(f.queues[Priority.HIGH]),
                                        len(f.queues[Priority.NORMAL]),
                                        len(f.queues[Priority.LOW]), len(f.workers))
            for f in server.functions.values()]
    rows.append(b".\n")
    return b"".join(rows)


def _cancel(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "cancel job HANDLE".  Fewer than 3 tokens is an unknown command; 3 tokens of
    # another shape, or more, leave gearmand's reply empty -> ERR UNKNOWN_ERROR.
    if len(tokens) < 3:
        return unknown_command(tokens[0])
    if len(tokens) != 3 or tokens[1].lower() != b"job":
        return b""
    return OK if server.cancel(tokens[2]) else UNKNOWN_JOB


def _show(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "show jobs": HANDLE\tRETRIES\tIGNORE\tPERSISTED; "show unique jobs": UNIQUE.
    if len(tokens) < 2:
        return unknown_command(tokens[0])
    words = [t.lower() for t in tokens[1:]]
    if words == [b"jobs"]:
        rows = [b"%s\t%d\t%d\t%d\n" % (j.handle, j.retries, j.ignore, j.persisted)
                for j in server.jobs.values()]
    elif words == [b"unique", b"jobs"]:
        rows = [j.unique + b"\n" for j in server.jobs.values()]
    else:
        return UNKNOWN_SHOW_ARGUMENTS
    rows.append(b".\n")
    return b"".join(rows)


def _create(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "create function NAME".  DEVIATION "create function with a bare \n": gearmand
    # drops the name's last character when the line ends in \n alone.
    if len(tokens) != 3 or tokens[1].lower() != b"function":
        return invalid_arguments(tokens[0])
    server.create_function(tokens[2])
    return OK


def _drop(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "drop function NAME": the name is matched case-insensitively (strcasecmp).
    if len(tokens) != 3 or tokens[1].lower() != b"function":
        return invalid_arguments(tokens[0])
    wanted = tokens[2].lower()
    for function in server.functions.values():
        if function.name.lower() == wanted:
            return OK if server.drop_function(function) else FUNCTION_BUSY
    return FUNCTION_NOT_FOUND


def _maxqueue(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # "maxqueue F [N | H N | H N L]": limits for new jobs per priority, 0 = none;
    # numbers read with atoi, negatives become 0; an unknown F changes nothing.
    if len(tokens) == 1:
        return invalid_arguments(tokens[0])
    limits = [max(c_atoi(tokens[p + 2]), 0) if len(tokens) > p + 2 else 0 for p in range(3)]
    if len(tokens) <= 3:
        limits = [limits[0]] * 3  # the one-number form applies to every priority
    function = server.functions.get(tokens[1])
    if function is not None:
        function.max_queue[:] = limits
    return OK


def _getpid(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    return b"OK %d\n" % server.options.pid


def _verbose(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    return b"OK %s\n" % server.options.verbose.encode()


def _version(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    return b"OK %s\n" % server.options.version.encode()


def _shutdown(server: JobServer, conn: Connection, tokens: list[bytes]) -> bytes:
    # gearmand removed 'shutdown' in 1.1.15: any peer could stop the server.  We
    # keep it behind --admin-shutdown; without it, it is an unknown command.
    if not server.options.admin_shutdown:
        return unknown_command(tokens[0])
    if len(tokens) == 1:
        server.shutdown_requested = "now"
    elif len(tokens) == 2 and tokens[1].lower() == b"graceful":
        server.shutdown_requested = "graceful"
    else:
        return invalid_arguments(tokens[0])
    return OK


Command = Callable[[JobServer, Connection, list[bytes]], bytes]

COMMANDS: dict[bytes, Command] = {
    b"workers": _workers,
    b"status": _status,
    b"prioritystatus": _prioritystatus,
    b"cancel": _cancel,
    b"show": _show,
    b"create": _create,
    b"drop": _drop,
    b"maxqueue": _maxqueue,
    b"getpid": _getpid,
    b"verbose": _verbose,
    b"version": _version,
    b"shutdown": _shutdown,
}
