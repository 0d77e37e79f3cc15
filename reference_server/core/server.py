"""The job server, sans-IO: bytes in per connection, bytes out per connection.

Rules this module keeps (after h11's ``_state.py``):

* Everything that changes jobs, functions, workers and connections happens
  here or in ``admin.py``; ``model.py`` holds the records, the transport
  (``net.py``) only moves bytes and calls ``expire_timers`` when told to.
* Each binary packet type has exactly one handler, ``_on_<name>``, listed in
  ``_HANDLERS`` beside its number.  A handler's first comment line cites the
  PROTOCOL section it implements and where gearmand 1.1.20 differs from it.
* Where gearmand has an outright bug we do something else, and the handler
  says ``DEVIATION`` and names the entry in ``DEVIATIONS.md``.
* No I/O and no clock reads of our own: time comes from the ``clock`` given
  to the constructor, so tests can run the core without sockets or sleeps.

Theory of operation.  The transport calls ``connect`` for a new peer,
``receive`` with whatever bytes arrived, ``disconnect`` when the peer went
away; after each call it takes ``drain()``: (connection id, bytes, close?)
for every connection that has something to send or must be closed.  A job
is born by a SUBMIT (or ``replay``), waits in its function's FIFO for its
priority, is taken by a GRAB through one of the worker's registrations, and
ends with WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION (or is dropped after
``-j`` requeues, or abandoned by its clients, or cancelled by an admin).
A worker that loses a job without finishing it (disconnect, CANT_DO,
RESET_ABILITIES, CAN_DO_TIMEOUT) puts it back at the tail of its FIFO.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable

from reference_server.core import admin
from reference_server.core.compat import CloseConnection, c_string, c_strtol, c_uint32
from reference_server.core.model import (
    Connection,
    Function,
    Job,
    Registration,
    Staged,
    Timer,
)
from reference_server.core.options import ServerOptions
from reference_server.protocol import (
    SUBMITS,
    Decoder,
    ErrorCode,
    Magic,
    Packet,
    PacketTooLarge,
    PacketType,
    Priority,
    ProtocolError,
    WrongArgumentCount,
    response,
)
from reference_server.queues import (
    BuiltinQueue,
    JobQueue,
    QueueError,
    StoredJob,
    storage_key,
    stored_unique,
)

T = PacketType

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



def _status_by_unique(unique: bytes) -> bool:
    """Can GET_STATUS_UNIQUE find a job by this unique?  Not an empty one, and not
    "-" (such a job is keyed by its data)."""
    return unique not in (b"", b"-")


class JobServer:
    """A Gearman job server without I/O.  See the module docstring."""

    def __init__(self, options: ServerOptions | None = None, *,
                 queue: JobQueue | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.options = options or ServerOptions()
        self.queue: JobQueue = queue or BuiltinQueue()
        self.clock = clock
        self.connections: dict[int, Connection] = {}
        self.functions: dict[bytes, Function] = {}
        self.jobs: dict[bytes, Job] = {}  # by handle, in creation order
        self.uniques: dict[tuple[bytes, bytes], Job] = {}  # (function, key) -> job
        self.by_unique: dict[bytes, Job] = {}  # GET_STATUS_UNIQUE: unique -> job
        self.shutdown_requested: str | None = None  # "now" / "graceful" from admin 'shutdown'
        self.on_queue_error: Callable[[str], None] | None = None  # for the transport's log
        self._staged: dict[Job, Staged] = {}
        self._batching = hasattr(self.queue, "pending")
        self._ids = itertools.count(1)
        self._handle_counter = 1
        self._dirty: dict[int, Connection] = {}
        self._timers: list[tuple[float, int, Timer]] = []  # a heap; cancelled ones linger
        self._live_timers = 0
        self._timer_seq = itertools.count()
        self._handlers: list[Callable[[Connection, tuple[bytes, ...]], None]] = [
            self._on_not_expected] * len(T)
        for packet_type, name in _HANDLERS.items():
            self._handlers[packet_type] = getattr(self, name)

    # ------------------------------------------------------------------
    # The transport's side

    def connect(self, host: str = "127.0.0.1", label: int | None = None) -> int:
        """A new peer; returns the id the transport uses from now on."""
        conn_id = next(self._ids)
        self.connections[conn_id] = Connection(
            id=conn_id, host=host, label=conn_id if label is None else label,
            decoder=Decoder(max_payload=self.options.max_payload, max_line=self.options.max_line),
            exceptions=self.options.exceptions)
        return conn_id

    def receive(self, conn_id: int, data: bytes) -> None:
        """Bytes from a peer: decode them and act on every complete packet or line."""
        conn = self.connections.get(conn_id)
        if conn is None or conn.closing:
            return
        decoder = conn.decoder
        decoder.feed(data)
        handlers = self._handlers
        while not conn.closing:
            try:
                event = decoder.next_event()
                if event is None:
                    return
                if event.__class__ is Packet:
                    if event.magic is Magic.REQ:  # type: ignore[union-attr]
                        handlers[event.type](conn, event.args)  # type: ignore[union-attr]
                    else:
                        # PROTOCOL "Binary Packet": requests carry \0REQ; gearmand parses
                        # the packet, answers ERROR and carries on (server.cc).
                        self._error(conn, ErrorCode.INVALID_MAGIC)
                else:
                    self._send(conn, admin.run(self, conn, event))  # type: ignore[arg-type]
            except CloseConnection:
                self._close(conn)
            except WrongArgumentCount:
                # DEVIATION "Too few arguments": gearmand stalls the connection.
                self._error(conn, ErrorCode.INVALID_PACKET)
            except PacketTooLarge:
                # DEVIATION "Maximum packet size": gearmand waits for the body forever.
                self._error(conn, ErrorCode.PACKET_TOO_LARGE)
                self._close(conn)
            except ProtocolError:
                # Bad magic, type 0 or > 42, overlong text line: gearmand closes
                # without a word (protocol.cc, io.cc).
                self._close(conn)

    def disconnect(self, conn_id: int) -> None:
        """The peer is gone: its registrations go, its running jobs go back to the queue,
        the jobs it waits for lose a listener."""
        conn = self.connections.pop(conn_id, None)
        if conn is None:
            return
        conn.closed = True
        self._dirty.pop(conn_id, None)
        self._cancel_timer(conn)
        self._remove_registrations(conn, conn.registrations[:])
        for job in list(conn.listening):
            self._detach_client(job, conn)

    def drain(self) -> list[tuple[int, bytes, bool]]:
        """(connection id, bytes to send, close after sending?) for every connection
        that has something for the transport, in the order they became pending.
        Commits the persistent queue first."""
        if self._staged or self._batching:
            self.commit()
        ready = []
        for conn in self._dirty.values():
            data = b"".join(conn.out) if len(conn.out) != 1 else conn.out[0]
            conn.out.clear()
            ready.append((conn.id, data, conn.closing))
        self._dirty.clear()
        return ready

    def data_to_send(self, conn_id: int) -> bytes:
        """Bytes pending for one connection (for tests that drive one connection);
        commits the persistent queue first, as ``drain`` does."""
        self.commit()
        conn = self.connections[conn_id]
        data = b"".join(conn.out)
        conn.out.clear()
        if not conn.closing:
            self._dirty.pop(conn_id, None)
        return data

    def is_closing(self, conn_id: int) -> bool:
        conn = self.connections.get(conn_id)
        return conn is None or conn.closing

    def next_deadline(self) -> float | None:
        """When ``expire_timers`` next has work (a CAN_DO_TIMEOUT), or ``None``."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def expire_timers(self) -> None:
        """CAN_DO_TIMEOUT: a job held past its timeout goes back to the queue.

        PROTOCOL "CAN_DO_TIMEOUT" says the job fails; gearmand 1.1.20 requeues it
        (connection.cc), so retries and -j apply as for a lost worker."""
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            timer.conn.timer = None
            self._live_timers -= 1
            if timer.job.worker is not None and timer.job.worker.conn is timer.conn:
                self._requeue(timer.job)

    def replay(self, stored: Iterable[StoredJob]) -> int:
        """Jobs from the persistent queue at start-up: added through the normal path
        (so equal keys coalesce), with new handles and no client.  Returns the count."""
        count = 0
        for row in stored:
            function = self._function(row.function)
            unique = stored_unique(row.unique)
            job = self._existing(function, unique, row.data)
            if job is None:
                job = self._create(function, unique, row.data, Priority(row.priority),
                                   background=True, when=row.when)
                job.persisted = True
                job.stored_key = row.unique
                self._enqueue(job)
                count += 1
            elif job.stored_key != row.unique:
                # A duplicate row (same function and unique): the job runs once,
                # and its end must remove this row too.
                self.queue.done(row.unique, row.function)
        return count

    # ------------------------------------------------------------------
    # Output

    def _send(self, conn: Connection, data: bytes) -> None:
        conn.out.append(data)
        if conn.id not in self._dirty and not conn.closed:
            self._dirty[conn.id] = conn

    def _error(self, conn: Connection, error: ErrorCode) -> None:
        self._send(conn, response(T.ERROR, error.code, error.text))

    def _close(self, conn: Connection) -> None:
        conn.closing = True
        if not conn.closed:
            self._dirty[conn.id] = conn

    # ------------------------------------------------------------------
    # Handlers, one per packet type

    def _on_not_expected(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL lists these as responses (or reserved); gearmand 1.1.20 also
        # has no code for ALL_YOURS and SUBMIT_JOB_SCHED (server.cc default case).
        self._error(conn, ErrorCode.INVALID_COMMAND)

    def _on_echo_req(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "ECHO_REQ": the server sends the data back as ECHO_RES.
        self._send(conn, response(T.ECHO_RES, args[0]))

    def _on_submit(self, conn: Connection, args: tuple[bytes, ...], packet_type: int) -> None:
        # PROTOCOL "SUBMIT_JOB, SUBMIT_JOB_BG, ..."; gearmand server.cc.
        priority, background = SUBMITS[packet_type]
        self._submit(conn, args[0], args[1], args[2], priority, background)

    def _on_submit_job(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_submit(conn, args, T.SUBMIT_JOB)

    def _on_submit_job_bg(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_submit(conn, args, T.SUBMIT_JOB_BG)

    def _on_submit_job_high(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_submit(conn, args, T.SUBMIT_JOB_HIGH)

    def _on_submit_job_high_bg(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_submit(conn, args, T.SUBMIT_JOB_HIGH_BG)

    def _on_submit_job_low(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_submit(conn, args, T.SUBMIT_JOB_LOW)

    def _on_submit_job_low_bg(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_submit(conn, args, T.SUBMIT_JOB_LOW_BG)

    def _on_submit_job_epoch(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "SUBMIT_JOB_EPOCH": background, normal priority, not run before
        # the given Unix time.  gearmand parses it with strtoll: text that is not a
        # number means 0 (run now); overflow closes the connection.
        when, overflow = c_strtol(args[2])
        if overflow:
            raise CloseConnection
        self._submit(conn, args[0], args[1], args[3], Priority.NORMAL, True, when=when)

    def _on_submit_reduce_job(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "SUBMIT_REDUCE_JOB" lists three arguments before the data;
        # libgearman sends, and gearmand parses, four (the fourth, "aggregator",
        # is ignored).  Foreground, normal priority.
        self._submit_reduce(conn, args, background=False)

    def _on_submit_reduce_job_background(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._submit_reduce(conn, args, background=True)

    def _submit_reduce(self, conn: Connection, args: tuple[bytes, ...], background: bool) -> None:
        # DEVIATION "Reduce jobs check the reducer, not the unique": gearmand applies
        # the 64-byte limit to the reducer only; we check both.
        if len(args[2]) > UNIQUE_MAX:
            self._error(conn, ErrorCode.UNIQUE_TOO_LARGE)
            return
        self._submit(conn, args[0], args[1], args[4], Priority.NORMAL, background,
                     reducer=args[2])

    def _on_get_status(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "GET_STATUS" -> STATUS_RES.  gearmand copies the handle into a
        # 64-byte buffer and closes the connection when it does not fit.
        handle = c_string(args[0])
        if len(handle) >= HANDLE_BUFFER:
            raise CloseConnection
        job = self.jobs.get(handle)
        if job is None:
            self._send(conn, response(T.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
        else:
            self._send(conn, response(T.STATUS_RES, handle, b"1",
                                      b"0" if job.worker is None else b"1",
                                      b"%d" % job.numerator, b"%d" % job.denominator))

    def _on_get_status_unique(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "GET_STATUS_UNIQUE" -> STATUS_RES_UNIQUE.  PROTOCOL says the first
        # field is the job handle; gearmand sends the unique, and so do we.
        unique = c_string(args[0])
        if len(unique) >= UNIQUE_MAX:
            raise CloseConnection  # gearmand: the unique does not fit its buffer
        job = self.by_unique.get(unique) if unique else None
        if job is None:
            self._send(conn, response(T.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0"))
        else:
            # The last field counts the clients waiting for the job (gearmand 1.1.20
            # does count them, although its source reads as if the counter stays 0).
            self._send(conn, response(T.STATUS_RES_UNIQUE, unique, b"1",
                                      b"0" if job.worker is None else b"1",
                                      b"%d" % job.numerator, b"%d" % job.denominator,
                                      b"%d" % len(job.clients)))

    def _on_option_req(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "OPTION_REQ": "exceptions" is the only option (gearmand compares
        # case-insensitively and echoes the bytes sent in OPTION_RES).
        option = c_string(args[0])
        if len(option) >= OPTION_BUFFER or option.lower() != b"exceptions":
            self._error(conn, ErrorCode.UNKNOWN_OPTION)
            return
        conn.exceptions = True
        self._send(conn, response(T.OPTION_RES, args[0]))

    def _on_set_client_id(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "SET_CLIENT_ID": no reply; gearmand keeps at most 127 bytes.
        conn.client_id = c_string(args[0])[:CLIENT_ID_MAX]

    def _on_can_do(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "CAN_DO": no reply.  Not idempotent in gearmand: a second CAN_DO
        # adds a second registration (counted twice in 'status').
        self._register(conn, args[0], 0)

    def _on_can_do_timeout(self, conn: Connection, args: tuple[bytes, ...]) -> None:
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
        self._register(conn, args[0], max(timeout, 0))

    def _on_cant_do(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "CANT_DO": every registration of that function on this connection
        # goes; jobs it is running through them are put back (gearmand connection.cc).
        self._remove_registrations(
            conn, [r for r in conn.registrations if r.function.name == args[0]])

    def _on_reset_abilities(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "RESET_ABILITIES": all registrations go; running jobs are put back.
        self._remove_registrations(conn, conn.registrations[:])

    def _on_pre_sleep(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "PRE_SLEEP": if a job is waiting the worker gets a NOOP at once
        # (a race with a submit); otherwise it sleeps until a job is queued.
        if self._peek(conn):
            self._send(conn, _NOOP)
        else:
            conn.sleeping = True
            self._cancel_timer(conn)  # gearmand: "Remove any timeouts while sleeping"

    def _on_grab(self, conn: Connection, packet_type: int) -> None:
        # PROTOCOL "GRAB_JOB", "GRAB_JOB_UNIQ", "GRAB_JOB_ALL".  GRAB_JOB_ALL answers
        # JOB_ASSIGN_ALL only for reduce jobs, JOB_ASSIGN_UNIQ otherwise (server.cc).
        conn.sleeping = False
        conn.noop_sent = False
        job = self._take(conn)
        if job is None:
            self._send(conn, _NO_JOB)
            return
        name = job.function.name
        if packet_type == T.GRAB_JOB:
            self._send(conn, response(T.JOB_ASSIGN, job.handle, name, job.data))
        elif packet_type == T.GRAB_JOB_ALL and job.reducer:
            self._send(conn, response(T.JOB_ASSIGN_ALL, job.handle, name, job.unique,
                                      job.reducer, job.data))
        else:
            self._send(conn, response(T.JOB_ASSIGN_UNIQ, job.handle, name, job.unique, job.data))
        self._arm_timer(conn, job)

    def _on_grab_job(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_grab(conn, T.GRAB_JOB)

    def _on_grab_job_uniq(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_grab(conn, T.GRAB_JOB_UNIQ)

    def _on_grab_job_all(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        self._on_grab(conn, T.GRAB_JOB_ALL)

    def _on_work_data(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "WORK_DATA": forwarded to every client of the job; the job goes on.
        job = self._owned_job(conn, args[0])
        if job is None:
            self._error(conn, ErrorCode.JOB_NOT_FOUND_DATA)
            return
        self._forward(job, response(T.WORK_DATA, *args))

    def _on_work_warning(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "WORK_WARNING": as WORK_DATA.
        job = self._owned_job(conn, args[0])
        if job is None:
            self._error(conn, ErrorCode.JOB_NOT_FOUND_DATA)
            return
        self._forward(job, response(T.WORK_WARNING, *args))

    def _on_work_status(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "WORK_STATUS": stored for GET_STATUS (read as C atoi into 32 bits)
        # and forwarded unchanged.  gearmand closes the connection when the
        # denominator text does not fit its 11-byte buffer.
        job = self._owned_job(conn, args[0])
        if job is None:
            self._error(conn, ErrorCode.JOB_NOT_FOUND_RESULT)
            return
        denominator = c_string(args[2])
        if len(denominator) > DENOMINATOR_TEXT_MAX:
            raise CloseConnection
        job.numerator = c_uint32(args[1])
        # gearmand copies it into that buffer first (snprintf keeps 10 characters and
        # the NUL), so an 11-character denominator is read from its first 10.
        job.denominator = c_uint32(denominator[:DENOMINATOR_TEXT_MAX - 1])
        self._forward(job, response(T.WORK_STATUS, *args))

    def _on_work_complete(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "WORK_COMPLETE": forwarded to every client; the job ends.
        job = self._owned_job(conn, args[0])
        if job is None:
            self._error(conn, ErrorCode.JOB_NOT_FOUND_RESULT)
            return
        self._forward(job, response(T.WORK_COMPLETE, *args))
        self._finish(job)

    def _on_work_fail(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "WORK_FAIL": forwarded byte for byte; the job ends.  gearmand
        # refuses handles that do not fit its 64-byte buffer with ARGUMENT_TOO_LARGE.
        if len(c_string(args[0])) >= HANDLE_BUFFER:
            self._error(conn, ErrorCode.HANDLE_TOO_LARGE)
            return
        job = self._owned_job(conn, args[0])
        if job is None:
            self._error(conn, ErrorCode.JOB_NOT_FOUND_RESULT)
            return
        self._forward(job, response(T.WORK_FAIL, args[0]))
        self._finish(job)

    def _on_work_exception(self, conn: Connection, args: tuple[bytes, ...]) -> None:
        # PROTOCOL "WORK_EXCEPTION" calls it a failure notice; gearmand (since 1.1.9)
        # ends the job, sends WORK_EXCEPTION to clients that asked for "exceptions"
        # and WORK_FAIL to the others.
        job = self._owned_job(conn, args[0])
        if job is None:
            self._error(conn, ErrorCode.JOB_NOT_FOUND_EXCEPTION)
            return
        exception = response(T.WORK_EXCEPTION, *args)
        # DEVIATION "WORK_FAIL substituted for WORK_EXCEPTION": gearmand's copy
        # carries the handle's NUL terminator in its payload; ours does not.
        fail = response(T.WORK_FAIL, job.handle)
        for client in reversed(job.clients):
            self._send(client, exception if client.exceptions else fail)
        self._finish(job)

    # ------------------------------------------------------------------
    # Jobs

    def _function(self, name: bytes) -> Function:
        function = self.functions.get(name)
        if function is None:
            function = self.functions[name] = Function(name)
        return function

    def _key(self, unique: bytes, data: bytes) -> bytes | None:
        # gearmand job.cc: no unique -> never coalesced; unique "-" -> the data is the
        # key (and empty data means no coalescing); else the unique itself.
        if not unique:
            return None
        if unique == b"-":
            return data or None
        return unique

    def _existing(self, function: Function, unique: bytes, data: bytes) -> Job | None:
        key = self._key(unique, data)
        return None if key is None else self.uniques.get((function.name, key))

    def _submit(self, conn: Connection, name: bytes, unique: bytes, data: bytes,
                priority: Priority, background: bool, *, when: int = 0,
                reducer: bytes = b"") -> None:
        # PROTOCOL "SUBMIT_JOB": JOB_CREATED with the handle.  gearmand refuses a
        # unique over 64 bytes (server.cc) before anything else.  DEVIATION
        # "64-byte uniques": gearmand keeps only 63 of them; we keep all 64.
        if len(unique) > UNIQUE_MAX:
            self._error(conn, ErrorCode.UNIQUE_TOO_LARGE)
            return
        function = self._function(name)
        job = self._existing(function, unique, data)
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
                if not self._persist(conn, job, new=False):
                    return
                job.background = True
        else:
            # maxqueue: counted over queued and running jobs of all priorities (job.cc).
            limit = function.max_queue[priority]
            if limit and function.total >= limit:
                self._error(conn, ErrorCode.QUEUE_FULL)
                return
            job = self._create(function, unique, data, priority, background, when, reducer)
            if background and not self._persist(conn, job, new=True):
                self._free(job)
                return
            if job not in self._staged:
                self._enqueue(job)
        if not background:
            self._attach_client(job, conn)
        staged = self._staged.get(job)
        if staged is not None:  # acknowledged only once its row is committed
            staged.replies.append((conn, len(conn.out)))
        self._send(conn, response(T.JOB_CREATED, job.handle))

    def _create(self, function: Function, unique: bytes, data: bytes, priority: Priority,
                background: bool, when: int = 0, reducer: bytes = b"") -> Job:
        handle = b"%s:%d" % (self.options.job_handle_prefix, self._handle_counter)
        self._handle_counter = (self._handle_counter + 1) & 0xFFFFFFFF  # gearmand: uint32_t
        key = self._key(unique, data)
        job = Job(handle, function, unique, data, priority, key, background, when, reducer)
        function.total += 1
        self.jobs[handle] = job
        if key is not None:
            self.uniques[(function.name, key)] = job
            if _status_by_unique(unique):
                self.by_unique[unique] = job
        return job

    def _persist(self, conn: Connection, job: Job, *, new: bool) -> bool:
        # Background jobs are stored before JOB_CREATED; if the store refuses, the
        # client gets ERROR QUEUE_ERROR and no job exists (gearmand job.cc).  With a
        # durable queue the row is staged and written at the next commit().
        job.stored_key = storage_key(job.unique)
        try:
            self.queue.add(StoredJob(job.stored_key, job.function.name, job.data,
                                     int(job.priority), job.when))
        except QueueError as error:
            self._queue_failed(str(error))
            self._error(conn, ErrorCode.QUEUE_ERROR)
            return False
        job.persisted = True
        if self.queue.durable:
            self._staged[job] = Staged(job, new)
        return True

    def commit(self) -> None:
        """Write the tick's staged queue changes; then release (or, if the write
        failed, replace with ERROR QUEUE_ERROR) the JOB_CREATED replies waiting on
        them.  ``drain`` calls it, so no acknowledgement leaves before its row."""
        if not self._staged and not (self._batching and self.queue.pending):
            return
        staged, self._staged = self._staged, {}
        try:
            self.queue.flush()
        except QueueError as error:
            self._queue_failed(str(error))
            refusal = response(T.ERROR, *ErrorCode.QUEUE_ERROR.value)
            for entry in staged.values():
                for conn, index in entry.replies:
                    conn.out[index] = refusal
                job = entry.job
                job.persisted = False
                if entry.new:
                    self._free(job)  # never queued, never seen by a worker
                else:
                    job.background = False
            return
        for entry in staged.values():
            if entry.new and self.jobs.get(entry.job.handle) is entry.job:
                self._enqueue(entry.job)

    def _queue_failed(self, message: str) -> None:
        if self.on_queue_error is not None:
            self.on_queue_error(message)

    def stored_jobs(self) -> list[StoredJob]:
        """Every job with a row in the persistent queue (for --store-queue-on-shutdown)."""
        return [StoredJob(j.stored_key, j.function.name, j.data, int(j.priority), j.when)
                for j in self.jobs.values() if j.persisted]

    def _enqueue(self, job: Job) -> None:
        """Put a job at the tail of its FIFO and wake sleeping workers (gearmand
        job.cc gearman_server_job_queue: NOOPs first, then the queue)."""
        function = job.function
        workers = function.workers
        if workers:
            count = len(workers)
            limit = self.options.worker_wakeup
            start = index = function.wake_cursor % count
            sent = 0
            while True:
                conn = workers[index].conn
                if conn.sleeping and not conn.noop_sent:
                    conn.noop_sent = True
                    self._send(conn, _NOOP)
                    sent += 1
                index = (index + 1) % count
                if index == start or (limit and sent >= limit):
                    break
            function.wake_cursor = index
        function.queues[job.priority].append(job)
        function.queued += 1

    def _runnable(self, job: Job, now: float) -> bool:
        return job.when == 0 or job.when <= now

    def _take(self, conn: Connection) -> Job | None:
        """The next job for a worker (gearmand 1.1.20 gearman_server_job_take).

        Registrations are tried in the connection's order (newest CAN_DO first);
        the first whose function has a runnable job gives the head of its highest
        non-empty priority FIFO.  So priority is per function, not global.  With
        -R the registration used moves to the end of the list."""
        now = self.clock()
        registrations = conn.registrations
        for position, registration in enumerate(registrations):
            function = registration.function
            if not function.queued:
                continue
            job = self._pop_runnable(function, now)
            if job is None:
                continue
            if self.options.round_robin:
                registrations.append(registrations.pop(position))
            if job.ignore:
                # Abandoned by its clients or cancelled: dropped here, unseen by workers.
                self._free(job)
                return self._take(conn)
            job.worker = registration
            registration.jobs.append(job)
            function.running += 1
            return job
        return None

    def _pop_runnable(self, function: Function, now: float) -> Job | None:
        for queue in function.queues:
            if not queue:
                continue
            head = queue[0]
            if head.when == 0 or head.when <= now:
                function.queued -= 1
                return queue.popleft()
            for index, job in enumerate(queue):
                if job.when == 0 or job.when <= now:
                    del queue[index]
                    function.queued -= 1
                    return job
            # DEVIATION "Future epoch jobs block lower priorities": gearmand stops
            # at the first non-empty level; we go on to the next one.
        return None

    def _peek(self, conn: Connection) -> bool:
        """Is a job waiting for this worker?  (PRE_SLEEP; abandoned jobs at the head
        of a FIFO are dropped on the way, as gearmand's peek does.)"""
        now = self.clock()
        for registration in conn.registrations:
            function = registration.function
            if not function.queued:
                continue
            for queue in function.queues:
                while queue and queue[0].ignore:
                    function.queued -= 1
                    self._free(queue.popleft())
                for job in queue:
                    if job.when == 0 or job.when <= now:
                        return True
        return False

    def _owned_job(self, conn: Connection, handle: bytes) -> Job | None:
        # gearmand gearman_server_job_get: the worker must be the one running it.
        job = self.jobs.get(c_string(handle))
        if job is None or job.worker is None or job.worker.conn is not conn:
            return None
        return job

    def _forward(self, job: Job, packet: bytes) -> None:
        for client in reversed(job.clients):  # gearmand: newest-attached client first
            self._send(client, packet)

    def _finish(self, job: Job) -> None:
        """A job ended (complete, fail, exception): its row goes, then the job."""
        if job.persisted:
            self.queue.done(job.stored_key, job.function.name)
            job.persisted = False
        self._free(job)

    def _free(self, job: Job) -> None:
        function = job.function
        function.total -= 1
        worker = job.worker
        if worker is not None:
            function.running -= 1
            worker.jobs.remove(job)
            timer = worker.conn.timer
            if timer is not None and timer.job is job:
                self._cancel_timer(worker.conn)
            job.worker = None
        del self.jobs[job.handle]
        if job.key is not None:
            if self.uniques.get((function.name, job.key)) is job:
                del self.uniques[(function.name, job.key)]
            if self.by_unique.get(job.unique) is job:
                del self.by_unique[job.unique]
                self._reindex_unique(job.unique)
        for client in job.clients:
            client.listening.pop(job, None)
        job.clients.clear()

    def _reindex_unique(self, unique: bytes) -> None:
        # Another function may hold a job with the same unique.
        for name in self.functions:
            other = self.uniques.get((name, unique))
            if other is not None and _status_by_unique(other.unique):
                self.by_unique[unique] = other
                return

    def _requeue(self, job: Job) -> None:
        """A worker lost a job without finishing it (gearmand job.cc, §3.8)."""
        job.retries += 1
        limit = self.options.job_retries
        if limit and job.retries >= limit:
            # -j N: dropped after N attempts; clients hear WORK_FAIL.
            self._forward(job, response(T.WORK_FAIL, job.handle))
            self._finish(job)
            return
        worker = job.worker
        assert worker is not None
        worker.jobs.remove(job)
        timer = worker.conn.timer
        if timer is not None and timer.job is job:
            self._cancel_timer(worker.conn)
        job.worker = None
        job.function.running -= 1
        job.numerator = job.denominator = 0
        self._enqueue(job)

    def _attach_client(self, job: Job, conn: Connection) -> None:
        job.clients.append(conn)
        conn.listening[job] = conn.listening.get(job, 0) + 1

    def _detach_client(self, job: Job, conn: Connection) -> None:
        conn.listening.pop(job, None)
        job.clients[:] = [c for c in job.clients if c is not conn]
        if not job.clients and not job.background:
            # gearmand client.cc: an abandoned foreground job is not run; a queued one
            # is dropped when next taken, a running one finishes unheard.
            # DEVIATION "A foreground client leaving a background job it joined":
            # gearmand abandons background jobs this way too.
            job.ignore = True

    # ------------------------------------------------------------------
    # Workers

    def _register(self, conn: Connection, name: bytes, timeout_ms: int) -> None:
        function = self._function(name)
        registration = Registration(conn, function, timeout_ms)
        conn.registrations.insert(0, registration)  # gearmand GEARMAND_LIST_ADD: at the front
        ring = function.workers
        # New workers join the wake-up ring just before its current start.
        cursor = function.wake_cursor % len(ring) if ring else 0
        ring.insert(cursor, registration)
        function.wake_cursor = cursor + 1 if len(ring) > 1 else 0

    def _remove_registrations(self, conn: Connection, registrations: list[Registration]) -> None:
        for registration in registrations:
            conn.registrations.remove(registration)
            ring = registration.function.workers
            index = ring.index(registration)
            ring.pop(index)
            if index < registration.function.wake_cursor:
                registration.function.wake_cursor -= 1
            for job in reversed(registration.jobs[:]):  # newest first, as gearmand frees them
                self._requeue(job)

    def _arm_timer(self, conn: Connection, job: Job) -> None:
        # gearmand connection.cc: one timer per connection, re-armed at every
        # assignment; an assignment through a registration without timeout drops it.
        # DEVIATION "CAN_DO_TIMEOUT follows the latest job": gearmand 1.1.20 can
        # leave the timer pointing at an earlier job.
        self._cancel_timer(conn)
        assert job.worker is not None
        timeout_ms = job.worker.timeout_ms
        if timeout_ms:
            timer = Timer(self.clock() + timeout_ms / 1000, conn, job)
            conn.timer = timer
            heapq.heappush(self._timers, (timer.deadline, next(self._timer_seq), timer))
            self._live_timers += 1

    def _cancel_timer(self, conn: Connection) -> None:
        if conn.timer is not None:
            conn.timer.cancelled = True
            conn.timer = None
            self._live_timers -= 1
            if len(self._timers) > 2 * self._live_timers + 1024:
                # Workers re-arm their timer at every job: drop the dead entries
                # now and then rather than keep them until their deadline.
                self._timers = [entry for entry in self._timers if not entry[2].cancelled]
                heapq.heapify(self._timers)

    # ------------------------------------------------------------------
    # Used by the admin protocol

    def cancel(self, handle: bytes) -> bool:
        """Admin 'cancel job': clients hear WORK_FAIL, the row goes, the job is dropped
        when next taken (gearmand job.cc gearman_server_job_cancel)."""
        job = self.jobs.get(handle)
        if job is None:
            return False
        self._forward(job, response(T.WORK_FAIL, job.handle))
        # DEVIATION "Cancelled jobs stay silent": gearmand keeps the clients attached,
        # so a running cancelled job's results still reach them after the WORK_FAIL.
        for client in job.clients:
            client.listening.pop(job, None)
        job.clients.clear()
        if job.persisted:
            self.queue.done(job.stored_key, job.function.name)
            job.persisted = False
        job.ignore = True
        return True

    def create_function(self, name: bytes) -> Function:
        """Admin 'create function': the function, made if it does not exist yet."""
        return self._function(name)

    def drop_function(self, function: Function) -> bool:
        """Admin 'drop function': only a function nobody serves or waits for."""
        # DEVIATION "Dropping a function with queued jobs": gearmand drops it and
        # leaves its jobs pointing at freed memory; we refuse.
        if function.workers or function.running or function.queued:
            return False
        del self.functions[function.name]
        return True

    def next_handle_number(self) -> int:
        return self._handle_counter


_HANDLERS: dict[int, str] = {
    T.CAN_DO: "_on_can_do",
    T.CANT_DO: "_on_cant_do",
    T.RESET_ABILITIES: "_on_reset_abilities",
    T.PRE_SLEEP: "_on_pre_sleep",
    T.SUBMIT_JOB: "_on_submit_job",
    T.GRAB_JOB: "_on_grab_job",
    T.WORK_STATUS: "_on_work_status",
    T.WORK_COMPLETE: "_on_work_complete",
    T.WORK_FAIL: "_on_work_fail",
    T.GET_STATUS: "_on_get_status",
    T.ECHO_REQ: "_on_echo_req",
    T.SUBMIT_JOB_BG: "_on_submit_job_bg",
    T.SUBMIT_JOB_HIGH: "_on_submit_job_high",
    T.SET_CLIENT_ID: "_on_set_client_id",
    T.CAN_DO_TIMEOUT: "_on_can_do_timeout",
    T.WORK_EXCEPTION: "_on_work_exception",
    T.OPTION_REQ: "_on_option_req",
    T.WORK_DATA: "_on_work_data",
    T.WORK_WARNING: "_on_work_warning",
    T.GRAB_JOB_UNIQ: "_on_grab_job_uniq",
    T.SUBMIT_JOB_HIGH_BG: "_on_submit_job_high_bg",
    T.SUBMIT_JOB_LOW: "_on_submit_job_low",
    T.SUBMIT_JOB_LOW_BG: "_on_submit_job_low_bg",
    T.SUBMIT_JOB_EPOCH: "_on_submit_job_epoch",
    T.SUBMIT_REDUCE_JOB: "_on_submit_reduce_job",
    T.SUBMIT_REDUCE_JOB_BACKGROUND: "_on_submit_reduce_job_background",
    T.GRAB_JOB_ALL: "_on_grab_job_all",
    T.GET_STATUS_UNIQUE: "_on_get_status_unique",
    # Every other type (responses, 5 UNUSED, 24 ALL_YOURS, 35 SUBMIT_JOB_SCHED)
    # gets ERROR INVALID_COMMAND "Command not expected".
}
