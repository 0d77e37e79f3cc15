"""The job server's state: connections, functions, registrations and jobs.

Plain records with no behaviour of their own; every rule that changes them
lives in ``handlers.py`` (binary protocol) and ``admin.py`` (text protocol),
with the job store (``jobs.py``), the persistence staging (``persistence.py``)
and the CAN_DO_TIMEOUT timers (``timers.py``) beside them.

How they point at each other (gearmand's structures, minus the free lists):

* A ``Function`` exists once named by CAN_DO, a submit or ``create
  function``, and lives until ``drop function``.  It owns one FIFO per
  priority and the ring of ``Registration`` s that wakes sleeping workers.
* A ``Registration`` is one CAN_DO of one connection.  A connection that says
  CAN_DO twice holds two registrations (gearmand counts both in ``status``).
  Jobs a worker runs hang off the registration they were taken through, so
  CANT_DO of that function puts exactly those back.
* A ``Job`` hangs off its function's FIFO while queued, off a registration
  while running, and lists the client connections waiting for its result
  (one entry per foreground submit, so a connection that submitted the same
  unique twice hears every result twice, as with gearmand).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from reference_server.protocol import Decoder, Priority


@dataclass(eq=False, slots=True)
class Connection:
    """One TCP peer, whatever roles it plays (client, worker, admin)."""

    id: int
    host: str  # peer address, shown by admin 'workers'
    label: int  # what 'workers' prints first: the socket's fd for a real transport
    decoder: Decoder
    exceptions: bool  # OPTION_REQ "exceptions" (or gearmand --exceptions)
    client_id: bytes = b"-"
    registrations: list[Registration] = field(default_factory=list)  # newest first
    sleeping: bool = False  # sent PRE_SLEEP and no GRAB since
    noop_sent: bool = False  # woken since its last GRAB: at most one NOOP per sleep
    listening: dict[Job, int] = field(default_factory=dict)  # jobs it submitted in foreground
    timer: Timer | None = None  # CAN_DO_TIMEOUT: one per connection, as in gearmand
    out: list[bytes] = field(default_factory=list)  # bytes for the transport to send
    closing: bool = False  # close once ``out`` is sent
    closed: bool = False


@dataclass(eq=False, slots=True)
class Registration:
    """One CAN_DO / CAN_DO_TIMEOUT of one connection."""

    conn: Connection
    function: Function
    timeout_ms: int  # 0: no timeout
    jobs: list[Job] = field(default_factory=list)  # running jobs taken through it


@dataclass(eq=False, slots=True)
class Function:
    name: bytes
    queues: tuple[deque[Job], deque[Job], deque[Job]] = field(
        default_factory=lambda: (deque(), deque(), deque()))  # indexed by Priority
    queued: int = 0  # jobs in the three FIFOs
    total: int = 0  # queued + running (+ abandoned ones not yet dropped): 'status' TOTAL
    running: int = 0
    workers: list[Registration] = field(default_factory=list)  # the wake-up ring
    wake_cursor: int = 0  # where the next wake-up walk starts (fair rotation)
    max_queue: list[int] = field(default_factory=lambda: [0, 0, 0])  # per priority; 0 = no limit


@dataclass(eq=False, slots=True)
class Job:
    handle: bytes
    function: Function
    unique: bytes
    data: bytes
    priority: Priority
    key: bytes | None  # coalescing key: the unique, the data for unique '-', or None
    background: bool  # some submit of it was a background one: never abandoned
    when: int = 0  # SUBMIT_JOB_EPOCH: not runnable before this Unix time
    reducer: bytes = b""
    clients: list[Connection] = field(default_factory=list)  # newest last
    worker: Registration | None = None
    numerator: int = 0
    denominator: int = 0
    retries: int = 0
    ignore: bool = False  # abandoned or cancelled: dropped when next taken
    persisted: bool = False  # a row exists (or is being written) in the persistent queue
    stored_key: bytes = b""  # the unique its row is stored under (queues.storage_key)


@dataclass(eq=False, slots=True)
class Staged:
    """A background submit whose row is written at the next commit: its JOB_CREATED
    replies wait in the connections' output until then (and become ERROR
    QUEUE_ERROR if the write fails); a new job is queued only once stored."""

    job: Job
    new: bool  # created by this submit (else: a background submit joined a job)
    replies: list[tuple[Connection, int]] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class Timer:
    """A CAN_DO_TIMEOUT deadline: the job goes back to the queue at ``deadline``."""

    deadline: float
    conn: Connection
    job: Job
    cancelled: bool = False
