"""The job server, sans-IO: bytes in per connection, bytes out per connection.

Rules this module keeps (after h11's ``_connection.py``):

* Everything that changes jobs, functions, workers and connections happens in
  the core: the handlers (``handlers.py``, one per binary packet type) and
  the admin commands (``admin.py``) decide; the job store (``jobs.py``), the
  persistence staging (``persistence.py``) and the CAN_DO_TIMEOUT timers
  (``timers.py``) keep the state; ``model.py`` holds the records.  The
  transport (``net.py``, ``memory.py``) only moves bytes and calls
  ``expire_timers`` when told to.
* No I/O and no clock reads of our own: time comes from the ``clock`` given
  to the constructor, so tests can run the core without sockets or sleeps.
* Nothing leaves before its row: ``drain`` commits the persistent queue
  before it hands out any bytes.

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

import itertools
import time
from collections.abc import Callable, Iterable

from reference_server.core import admin
from reference_server.core.compat import CloseConnection
from reference_server.core.handlers import HANDLERS, Handler, not_expected
from reference_server.core.jobs import JobStore
from reference_server.core.model import Connection, Function
from reference_server.core.options import ServerOptions
from reference_server.core.outbox import Outbox
from reference_server.core.persistence import Staging
from reference_server.core.timers import Timers
from reference_server.protocol import (
    Decoder,
    ErrorCode,
    Magic,
    Packet,
    PacketTooLarge,
    PacketType,
    ProtocolError,
    WrongArgumentCount,
)
from reference_server.queues import BuiltinQueue, JobQueue, StoredJob

_REQ = Magic.REQ  # read once: an Enum class attribute is slow, and receive() needs it per packet


class JobServer:
    """A Gearman job server without I/O.  See the module docstring.

    ``store``, ``staging``, ``timers`` and ``outbox`` are its parts (what the
    handlers work with); ``functions`` and ``jobs`` are the store's."""

    def __init__(self, options: ServerOptions | None = None, *,
                 queue: JobQueue | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.options = options or ServerOptions()
        self.queue: JobQueue = queue or BuiltinQueue()
        self.clock = clock
        self.connections: dict[int, Connection] = {}
        self.shutdown_requested: str | None = None  # "now" / "graceful" from admin 'shutdown'
        self.on_queue_error: Callable[[str], None] | None = None  # for the transport's log
        self.outbox = Outbox()
        self.timers = Timers(clock)
        self.store = JobStore(self.options, clock, self.queue, self.timers, self.outbox)
        self.staging = Staging(self.queue, self.store, self.outbox, self._queue_failed)
        self.functions: dict[bytes, Function] = self.store.functions
        self.jobs = self.store.jobs  # by handle, in creation order
        self._ids = itertools.count(1)
        self._handlers: list[Handler] = [not_expected] * len(PacketType)
        for packet_type, handler in HANDLERS.items():
            self._handlers[packet_type] = handler

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
        outbox = self.outbox
        while not conn.closing:
            try:
                event = decoder.next_event()
                if event is None:
                    return
                if event.__class__ is Packet:
                    if event.magic is _REQ:  # type: ignore[union-attr]
                        handlers[event.type](self, conn, event.args)  # type: ignore[union-attr]
                    else:
                        # PROTOCOL "Binary Packet": requests carry \0REQ; gearmand parses
                        # the packet, answers ERROR and carries on (server.cc).
                        outbox.error(conn, ErrorCode.INVALID_MAGIC)
                else:
                    outbox.send(conn, admin.run(self, conn, event))  # type: ignore[arg-type]
            except CloseConnection:
                outbox.close(conn)
            except WrongArgumentCount:
                # DEVIATION "Too few arguments": gearmand stalls the connection.
                outbox.error(conn, ErrorCode.INVALID_PACKET)
            except PacketTooLarge:
                # DEVIATION "Maximum packet size": gearmand waits for the body forever.
                outbox.error(conn, ErrorCode.PACKET_TOO_LARGE)
                outbox.close(conn)
            except ProtocolError:
                # Bad magic, type 0 or > 42, overlong text line: gearmand closes
                # without a word (protocol.cc, io.cc).
                outbox.close(conn)

    def disconnect(self, conn_id: int) -> None:
        """The peer is gone: its registrations go, its running jobs go back to the queue,
        the jobs it waits for lose a listener."""
        conn = self.connections.pop(conn_id, None)
        if conn is None:
            return
        conn.closed = True
        # Its jobs go back to the queue and wake the function's sleepers, this one
        # not among them: with -w 1 gearmand wakes another (probed on 1.1.20).
        conn.sleeping = False
        self.outbox.forget(conn)
        self.timers.cancel(conn)
        self.store.remove_registrations(conn, conn.registrations[:])
        for job in list(conn.listening):
            self.store.detach_client(job, conn)

    def drain(self) -> list[tuple[int, bytes, bool]]:
        """(connection id, bytes to send, close after sending?) for every connection
        that has something for the transport, in the order they became pending.
        Commits the persistent queue first."""
        staging = self.staging
        if staging.staged or staging.batching:  # commit() has something to look at
            staging.commit()
        return self.outbox.drain()

    def data_to_send(self, conn_id: int) -> bytes:
        """Bytes pending for one connection (for tests that drive one connection);
        commits the persistent queue first, as ``drain`` does."""
        self.staging.commit()
        return self.outbox.take(self.connections[conn_id])

    def is_closing(self, conn_id: int) -> bool:
        conn = self.connections.get(conn_id)
        return conn is None or conn.closing

    def next_deadline(self) -> float | None:
        """When ``expire_timers`` next has work (a CAN_DO_TIMEOUT), or ``None``."""
        return self.timers.next_deadline()

    def expire_timers(self) -> None:
        """CAN_DO_TIMEOUT: a job held past its timeout goes back to the queue.

        PROTOCOL "CAN_DO_TIMEOUT" says the job fails; gearmand 1.1.20 requeues it
        (connection.cc), so retries and -j apply as for a lost worker."""
        now = self.clock()
        while (timer := self.timers.pop_due(now)) is not None:
            if timer.job.worker is not None and timer.job.worker.conn is timer.conn:
                self.store.requeue(timer.job)

    # ------------------------------------------------------------------
    # The persistent queue (see persistence.py)

    def replay(self, stored: Iterable[StoredJob]) -> int:
        """Jobs from the persistent queue at start-up: added through the normal path
        (so equal keys coalesce), with new handles and no client.  Returns the count."""
        return self.staging.replay(stored)

    def commit(self) -> None:
        """Write the tick's staged queue changes, then release the JOB_CREATED
        replies waiting on them (``drain`` calls it)."""
        self.staging.commit()

    def stored_jobs(self) -> list[StoredJob]:
        """Every job with a row in the persistent queue (for --store-queue-on-shutdown)."""
        return self.staging.stored_jobs()

    def _queue_failed(self, message: str) -> None:
        if self.on_queue_error is not None:
            self.on_queue_error(message)

    # ------------------------------------------------------------------
    # Used by the admin protocol

    def cancel(self, handle: bytes) -> bool:
        """Admin 'cancel job': clients hear WORK_FAIL, the row goes, the job is dropped
        when next taken."""
        return self.store.cancel(handle)

    def create_function(self, name: bytes) -> Function:
        """Admin 'create function': the function, made if it does not exist yet."""
        return self.store.function(name)

    def drop_function(self, function: Function) -> bool:
        """Admin 'drop function': only a function nobody serves or waits for."""
        return self.store.drop_function(function)

    def next_handle_number(self) -> int:
        return self.store.handle_counter
