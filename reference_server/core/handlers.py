"""The binary protocol's rules: one handler per packet type a peer may send.

Rules this module keeps (after h11's ``_state.py``):

* Each binary packet type has exactly one handler, listed in ``HANDLERS``
  beside its number.  A handler's first comment line cites the PROTOCOL
  section it implements and where gearmand 1.1.20 differs from it.
* Where gearmand has an outright bug we do something else, and the handler
  says ``DEVIATION`` and names the entry in ``DEVIATIONS.md``.
* A handler only decides and answers: the job store (``jobs.py``) moves jobs,
  the staging (``persistence.py``) writes rows, ``timers.py`` keeps
  CAN_DO_TIMEOUT deadlines, and every byte goes out through the outbox.
* Input that gearmand answers by closing the connection raises
  ``CloseConnection``; the server's receive loop closes it.

Theory of operation.  ``server.JobServer.receive`` decodes a packet and
calls ``HANDLERS[type](server, conn, args)`` with the arguments already
split as the packet table says; every type not listed gets ERROR
INVALID_COMMAND.  The submit and grab families share one function each,
bound to their packet type with ``functools.partial``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

from reference_server.core.compat import CloseConnection, c_string, c_strtol, c_uint32
from reference_server.core.jobs import JobStore
from reference_server.core.model import Connection
from reference_server.core.options import ServerOptions
from reference_server.core.outbox import Outbox
from reference_server.core.persistence import Staging
from reference_server.core.timers import Timers
from reference_server.protocol import SUBMITS, TYPES, ErrorCode, Priority, response

T = TYPES  # packet type numbers as plain ints (see protocol.packets.TYPES: speed)

# Sizes from gearmand's constants.h / limits.h.
UNIQUE_MAX = 64  # GEARMAN_UNIQUE_SIZE: longer uniques are refused
HANDLE_BUFFER = 64  # GEARMAND_JOB_HANDLE_SIZE, NUL included
OPTION_BUFFER = 64  # GEARMAND_OPTION_SIZE, NUL included
CLIENT_ID_MAX = 127  # GEARMAN_SERVER_CON_ID_SIZE - 1
INTEGER_TEXT_MAX = 20  # GEARMAN_MAXIMUM_INTEGER_DISPLAY_LENGTH
DENOMINATOR_TEXT_MAX = 11  # gearmand's denominator buffer in WORK_STATUS
MIN_TIMEOUT_MS = 1000  # CAN_DO_TIMEOUT values 1..999 are raised to this

_NOOP = response(T.NOOP)
_NO_JOB = response(T.NO_JOB)

Args = tuple[bytes, ...]


class Server(Protocol):
    """What the handlers use of the job server (``server.JobServer``): its parts."""

    options: ServerOptions
    store: JobStore
    staging: Staging
    timers: Timers
    outbox: Outbox


Handler = Callable[[Server, Connection, Args], None]


def not_expected(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL lists these as responses (or reserved); gearmand 1.1.20 also
    # has no code for ALL_YOURS and SUBMIT_JOB_SCHED (server.cc default case).
    server.outbox.error(conn, ErrorCode.INVALID_COMMAND)


def _on_echo_req(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "ECHO_REQ": the server sends the data back as ECHO_RES.
    server.outbox.send(conn, response(T.ECHO_RES, args[0]))


# ----------------------------------------------------------------------
# Clients

def _on_submit(packet_type: int, server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "SUBMIT_JOB, SUBMIT_JOB_BG, ..."; gearmand server.cc.
    priority, background = SUBMITS[packet_type]
    _submit(server, conn, args[0], args[1], args[2], priority, background)


def _on_submit_job_epoch(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "SUBMIT_JOB_EPOCH": background, normal priority, not run before
    # the given Unix time.  gearmand parses it with strtoll: text that is not a
    # number means 0 (run now); overflow closes the connection.
    when, overflow = c_strtol(args[2])
    if overflow:
        raise CloseConnection
    _submit(server, conn, args[0], args[1], args[3], Priority.NORMAL, True, when=when)


def _on_submit_reduce(background: bool, server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "SUBMIT_REDUCE_JOB" (and _BACKGROUND) lists three arguments before
    # the data; libgearman sends, and gearmand parses, four (the fourth,
    # "aggregator", is ignored).  Normal priority.
    # DEVIATION "Reduce jobs check the reducer, not the unique": gearmand applies
    # the 64-byte limit to the reducer only; we check both.
    if len(args[2]) > UNIQUE_MAX:
        server.outbox.error(conn, ErrorCode.UNIQUE_TOO_LARGE)
        return
    _submit(server, conn, args[0], args[1], args[4], Priority.NORMAL, background,
            reducer=args[2])


def _submit(server: Server, conn: Connection, name: bytes, unique: bytes, data: bytes,
            priority: Priority, background: bool, *, when: int = 0,
            reducer: bytes = b"") -> None:
    # PROTOCOL "SUBMIT_JOB": JOB_CREATED with the handle.  gearmand refuses a
    # unique over 64 bytes (server.cc) before anything else.  DEVIATION
    # "64-byte uniques": gearmand keeps only 63 of them; we keep all 64.
    if len(unique) > UNIQUE_MAX:
        server.outbox.error(conn, ErrorCode.UNIQUE_TOO_LARGE)
        return
    store, staging = server.store, server.staging
    function = store.function(name)
    job = store.existing(function, unique, data)
    if job is not None:
        # Coalesced: same handle; nothing about the job changes except that a
        # foreground submitter now hears its results (job.cc).
        if job.ignore:
            # DEVIATION "Submitting onto an abandoned or cancelled job": gearmand
            # attaches the client to a job it will drop unseen.
            job.ignore = False
        if background and not job.persisted:
            # DEVIATION "A background submit joining a foreground job": gearmand
            # neither stores it nor keeps it when the foreground client leaves.
            if not staging.persist(conn, job, new=False):
                return
            job.background = True
    else:
        # maxqueue: counted over queued and running jobs of all priorities (job.cc).
        limit = function.max_queue[priority]
        if limit and function.total >= limit:
            server.outbox.error(conn, ErrorCode.QUEUE_FULL)
            return
        job = store.create(function, unique, data, priority, background, when, reducer)
        if background and not staging.persist(conn, job, new=True):
            store.free(job)
            return
        if job not in staging.staged:  # a staged job is queued once its row is stored
            store.enqueue(job)
    if not background:
        store.attach_client(job, conn)
    staging.acknowledge(conn, job, response(T.JOB_CREATED, job.handle))


def _on_get_status(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "GET_STATUS" -> STATUS_RES.  gearmand copies the handle into a
    # 64-byte buffer and closes the connection when it does not fit.
    handle = c_string(args[0])
    if len(handle) >= HANDLE_BUFFER:
        raise CloseConnection
    job = server.store.jobs.get(handle)
    if job is None:
        server.outbox.send(conn, response(T.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
    else:
        server.outbox.send(conn, response(T.STATUS_RES, handle, b"1",
                                          b"0" if job.worker is None else b"1",
                                          b"%d" % job.numerator, b"%d" % job.denominator))


def _on_get_status_unique(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "GET_STATUS_UNIQUE" -> STATUS_RES_UNIQUE.  PROTOCOL says the first
    # field is the job handle; gearmand sends the unique, and so do we.
    unique = c_string(args[0])
    if len(unique) >= UNIQUE_MAX:
        raise CloseConnection  # gearmand: the unique does not fit its buffer
    job = server.store.by_unique.get(unique) if unique else None
    if job is None:
        server.outbox.send(conn, response(T.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0",
                                          b"0"))
    else:
        # The last field counts the clients waiting for the job (gearmand 1.1.20
        # does count them, although its source reads as if the counter stays 0).
        server.outbox.send(conn, response(T.STATUS_RES_UNIQUE, unique, b"1",
                                          b"0" if job.worker is None else b"1",
                                          b"%d" % job.numerator, b"%d" % job.denominator,
                                          b"%d" % len(job.clients)))


def _on_option_req(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "OPTION_REQ": "exceptions" is the only option (gearmand compares
    # case-insensitively and echoes the bytes sent in OPTION_RES).
    option = c_string(args[0])
    if len(option) >= OPTION_BUFFER or option.lower() != b"exceptions":
        server.outbox.error(conn, ErrorCode.UNKNOWN_OPTION)
        return
    conn.exceptions = True
    server.outbox.send(conn, response(T.OPTION_RES, args[0]))


def _on_set_client_id(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "SET_CLIENT_ID": no reply; gearmand keeps at most 127 bytes.
    conn.client_id = c_string(args[0])[:CLIENT_ID_MAX]


# ----------------------------------------------------------------------
# Workers

def _on_can_do(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "CAN_DO": no reply.  Not idempotent in gearmand: a second CAN_DO
    # adds a second registration (counted twice in 'status').
    server.store.register(conn, args[0], 0)


def _on_can_do_timeout(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "CAN_DO_TIMEOUT".  The timeout is in milliseconds since gearmand
    # 1.1.19; a number text over 20 characters or out of range closes the
    # connection; 0 or negative means no timeout; 1..999 become 1000.
    if len(args[1]) > INTEGER_TEXT_MAX:
        raise CloseConnection
    timeout, overflow = c_strtol(args[1])
    if overflow:
        raise CloseConnection
    if timeout > 0:
        timeout = max(timeout, MIN_TIMEOUT_MS)
    server.store.register(conn, args[0], max(timeout, 0))


def _on_cant_do(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "CANT_DO": every registration of that function on this connection
    # goes; jobs it is running through them are put back (gearmand connection.cc).
    server.store.remove_registrations(
        conn, [r for r in conn.registrations if r.function.name == args[0]])


def _on_reset_abilities(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "RESET_ABILITIES": all registrations go; running jobs are put back.
    server.store.remove_registrations(conn, conn.registrations[:])


def _on_pre_sleep(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "PRE_SLEEP": if a job is waiting the worker gets a NOOP at once
    # (a race with a submit); otherwise it sleeps until a job is queued.
    if server.store.peek(conn):
        server.outbox.send(conn, _NOOP)
    else:
        conn.sleeping = True
        server.timers.cancel(conn)  # gearmand: "Remove any timeouts while sleeping"


def _on_grab(packet_type: int, server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "GRAB_JOB", "GRAB_JOB_UNIQ", "GRAB_JOB_ALL".  GRAB_JOB_ALL answers
    # JOB_ASSIGN_ALL only for reduce jobs, JOB_ASSIGN_UNIQ otherwise (server.cc).
    conn.sleeping = False
    conn.noop_sent = False
    job = server.store.take(conn)
    if job is None:
        server.outbox.send(conn, _NO_JOB)
        return
    name = job.function.name
    if packet_type == T.GRAB_JOB:
        server.outbox.send(conn, response(T.JOB_ASSIGN, job.handle, name, job.data))
    elif packet_type == T.GRAB_JOB_ALL and job.reducer:
        server.outbox.send(conn, response(T.JOB_ASSIGN_ALL, job.handle, name, job.unique,
                                          job.reducer, job.data))
    else:
        server.outbox.send(conn, response(T.JOB_ASSIGN_UNIQ, job.handle, name, job.unique,
                                          job.data))
    server.timers.arm(conn, job)


def _on_work_update(packet_type: int, server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "WORK_DATA", "WORK_WARNING": forwarded to every client of the job; the
    # job goes on.  A handle the worker does not hold: ERROR JOB_NOT_FOUND.
    job = server.store.owned_job(conn, args[0])
    if job is None:
        server.outbox.error(conn, ErrorCode.JOB_NOT_FOUND_DATA)
        return
    server.store.forward(job, response(packet_type, *args))


def _on_work_status(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "WORK_STATUS": stored for GET_STATUS (read as C atoi into 32 bits)
    # and forwarded unchanged.  gearmand closes the connection when the
    # denominator text does not fit its 11-byte buffer.
    job = server.store.owned_job(conn, args[0])
    if job is None:
        server.outbox.error(conn, ErrorCode.JOB_NOT_FOUND_RESULT)
        return
    denominator = c_string(args[2])
    if len(denominator) > DENOMINATOR_TEXT_MAX:
        raise CloseConnection
    job.numerator = c_uint32(args[1])
    # gearmand copies it into that buffer first (snprintf keeps 10 characters and
    # the NUL), so an 11-character denominator is read from its first 10.
    job.denominator = c_uint32(denominator[:DENOMINATOR_TEXT_MAX - 1])
    server.store.forward(job, response(T.WORK_STATUS, *args))


def _on_work_complete(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "WORK_COMPLETE": forwarded to every client; the job ends.
    store = server.store
    job = store.owned_job(conn, args[0])
    if job is None:
        server.outbox.error(conn, ErrorCode.JOB_NOT_FOUND_RESULT)
        return
    store.forward(job, response(T.WORK_COMPLETE, *args))
    store.finish(job)


def _on_work_fail(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "WORK_FAIL": forwarded byte for byte; the job ends.  gearmand
    # refuses handles that do not fit its 64-byte buffer with ARGUMENT_TOO_LARGE.
    if len(c_string(args[0])) >= HANDLE_BUFFER:
        server.outbox.error(conn, ErrorCode.HANDLE_TOO_LARGE)
        return
    job = server.store.owned_job(conn, args[0])
    if job is None:
        server.outbox.error(conn, ErrorCode.JOB_NOT_FOUND_RESULT)
        return
    server.store.forward(job, response(T.WORK_FAIL, args[0]))
    server.store.finish(job)


def _on_work_exception(server: Server, conn: Connection, args: Args) -> None:
    # PROTOCOL "WORK_EXCEPTION" calls it a failure notice; gearmand (since 1.1.9)
    # ends the job, sends WORK_EXCEPTION to clients that asked for "exceptions"
    # and WORK_FAIL to the others.
    job = server.store.owned_job(conn, args[0])
    if job is None:
        server.outbox.error(conn, ErrorCode.JOB_NOT_FOUND_EXCEPTION)
        return
    exception = response(T.WORK_EXCEPTION, *args)
    # DEVIATION "WORK_FAIL substituted for WORK_EXCEPTION": gearmand's copy
    # carries the handle's NUL terminator in its payload; ours does not.
    fail = response(T.WORK_FAIL, job.handle)
    for client in reversed(job.clients):
        server.outbox.send(client, exception if client.exceptions else fail)
    server.store.finish(job)


HANDLERS: dict[int, Handler] = {
    T.CAN_DO: _on_can_do,
    T.CANT_DO: _on_cant_do,
    T.RESET_ABILITIES: _on_reset_abilities,
    T.PRE_SLEEP: _on_pre_sleep,
    T.SUBMIT_JOB: partial(_on_submit, T.SUBMIT_JOB),
    T.GRAB_JOB: partial(_on_grab, T.GRAB_JOB),
    T.WORK_STATUS: _on_work_status,
    T.WORK_COMPLETE: _on_work_complete,
    T.WORK_FAIL: _on_work_fail,
    T.GET_STATUS: _on_get_status,
    T.ECHO_REQ: _on_echo_req,
    T.SUBMIT_JOB_BG: partial(_on_submit, T.SUBMIT_JOB_BG),
    T.SUBMIT_JOB_HIGH: partial(_on_submit, T.SUBMIT_JOB_HIGH),
    T.SET_CLIENT_ID: _on_set_client_id,
    T.CAN_DO_TIMEOUT: _on_can_do_timeout,
    T.WORK_EXCEPTION: _on_work_exception,
    T.OPTION_REQ: _on_option_req,
    T.WORK_DATA: partial(_on_work_update, T.WORK_DATA),
    T.WORK_WARNING: partial(_on_work_update, T.WORK_WARNING),
    T.GRAB_JOB_UNIQ: partial(_on_grab, T.GRAB_JOB_UNIQ),
    T.SUBMIT_JOB_HIGH_BG: partial(_on_submit, T.SUBMIT_JOB_HIGH_BG),
    T.SUBMIT_JOB_LOW: partial(_on_submit, T.SUBMIT_JOB_LOW),
    T.SUBMIT_JOB_LOW_BG: partial(_on_submit, T.SUBMIT_JOB_LOW_BG),
    T.SUBMIT_JOB_EPOCH: _on_submit_job_epoch,
    T.SUBMIT_REDUCE_JOB: partial(_on_submit_reduce, False),
    T.SUBMIT_REDUCE_JOB_BACKGROUND: partial(_on_submit_reduce, True),
    T.GRAB_JOB_ALL: partial(_on_grab, T.GRAB_JOB_ALL),
    T.GET_STATUS_UNIQUE: _on_get_status_unique,
    # Every other type (responses, 5 UNUSED, 24 ALL_YOURS, 35 SUBMIT_JOB_SCHED)
    # gets ERROR INVALID_COMMAND "Command not expected" (``not_expected``).
}
