"""What gearmand 1.1.20 does, for the part of the protocol the model fuzzer drives.

Plain records and one class, no I/O: ``Model`` predicts which job each grab
gets, what every client hears and the admin ``status`` counts, as the model
fuzzer's ``GearmanMachine`` (``fuzz/model.py``) plays the same moves against a
live server.  Rules that depend on the gearmand version are tagged
``# VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_server.protocol import PacketType

T = PacketType
FUNCTIONS = ("fa", "fb")
#: Server options a round of the model fuzzer draws (the first round runs with none):
#: those ``Model`` knows.
ROUND_OPTIONS: tuple[tuple[str, ...], ...] = ((), ("-j", "1"), ("-j", "2"), ("--exceptions",))
WORKERS = ("w0", "w1")
#: A submit's priority: its foreground and background packets, and its queue.
PRIORITIES = {"high": (T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_HIGH_BG, 0),
              "normal": (T.SUBMIT_JOB, T.SUBMIT_JOB_BG, 1),
              "low": (T.SUBMIT_JOB_LOW, T.SUBMIT_JOB_LOW_BG, 2)}
#: A worker's report: the packet, what follows the handle, and whether it ends the job.
REPORTS: dict[str, tuple[PacketType, tuple[bytes, ...], bool]] = {
    "complete": (T.WORK_COMPLETE, (b"r",), True),
    "fail": (T.WORK_FAIL, (), True),
    "exception": (T.WORK_EXCEPTION, (b"oops",), True),
    "data": (T.WORK_DATA, (b"part",), False),
    "warning": (T.WORK_WARNING, (b"careful",), False),
    "status": (T.WORK_STATUS, (b"1", b"3"), False),
}


@dataclass(eq=False)
class Job:
    handle: bytes
    var: str  # the scenario variable holding its handle ($h1, ...)
    function: str
    unique: bytes
    data: bytes
    priority: int
    background: bool
    clients: list[str] = field(default_factory=list)  # one entry per foreground submit
    worker: Registration | None = None
    ignore: bool = False
    numerator: bytes = b"0"  # the last WORK_STATUS, as GET_STATUS answers it
    denominator: bytes = b"0"
    losses: int = 0  # workers lost while they held it (-j counts them)


@dataclass(eq=False)
class Registration:
    worker: str
    function: str
    jobs: list[Job] = field(default_factory=list)  # newest last


class Model:
    """What gearmand 1.1.20 does, for the subset the machine exercises."""

    def __init__(self, options: list[str] | tuple[str, ...] = ()) -> None:
        # The server's options that the model knows: --exceptions (WORK_EXCEPTION
        # reaches every client) and -j N (a job is dropped at its Nth lost worker).
        self.all_exceptions = "--exceptions" in options
        self.job_retries = int(options[options.index("-j") + 1]) if "-j" in options else 0
        self.queues: dict[tuple[str, int], list[Job]] = {
            (f, p): [] for f in FUNCTIONS for p in range(3)}
        self.registrations: dict[str, list[Registration]] = {w: [] for w in WORKERS}
        self.jobs: list[Job] = []
        self.exceptions: set[str] = set()  # clients that sent OPTION_REQ "exceptions"
        # PRE_SLEEP and its NOOP: asleep since, woken since, NOOPs due in all.
        self.sleeping: set[str] = set()
        self.woken: set[str] = set()
        self.noops: dict[str, int] = dict.fromkeys(WORKERS, 0)

    def existing(self, function: str, unique: bytes) -> Job | None:
        if not unique:
            return None
        return next((j for j in self.jobs if j.function == function and j.unique == unique),
                    None)

    def queue(self, job: Job) -> None:
        """gearmand job.cc gearman_server_job_queue: a queued job (new, or back from a
        worker) first wakes every sleeping worker of its function with one NOOP
        (-w 0, the default: all of them), once per sleep."""
        for worker, registrations in self.registrations.items():
            if worker in self.sleeping - self.woken and \
                    any(r.function == job.function for r in registrations):
                self.woken.add(worker)
                self.noops[worker] += 1
        self.queues[(job.function, job.priority)].append(job)

    def pre_sleep(self, worker: str) -> None:
        """PROTOCOL "PRE_SLEEP": a job already waiting for the worker brings a NOOP at
        once; otherwise the worker sleeps until one is queued."""
        functions = {r.function for r in self.registrations[worker]}
        if any(self.queues[(f, p)] for f in functions for p in range(3)):
            self.noops[worker] += 1
        else:
            self.sleeping.add(worker)

    def awake(self, worker: str) -> None:
        """A grab (or the worker's hang-up) ends its sleep."""
        self.sleeping.discard(worker)
        self.woken.discard(worker)

    def take(self, worker: str) -> Job | None:
        # VERSION: gearmand 1.1.x walks the worker's registrations, newest CAN_DO
        # first, and takes the highest priority of the first function with a job.
        self.awake(worker)
        for registration in self.registrations[worker]:
            for priority in range(3):
                queue = self.queues[(registration.function, priority)]
                if queue:
                    job = queue.pop(0)
                    if job.ignore:  # abandoned by its clients: dropped unseen
                        self.jobs.remove(job)
                        return self.take(worker)
                    job.worker = registration
                    registration.jobs.append(job)
                    return job
        return None

    def requeue(self, registrations: list[Registration]) -> list[Job]:
        """A lost worker's jobs back to the queue; returns those dropped instead: with
        -j N, gearmand job.cc fails a job (WORK_FAIL to its clients) when its worker
        is lost for the Nth time."""
        dropped = []
        for registration in registrations:
            for job in reversed(registration.jobs):  # gearmand frees newest first
                job.worker = None
                job.numerator = job.denominator = b"0"  # the last WORK_STATUS is forgotten
                job.losses += 1
                if self.job_retries and job.losses >= self.job_retries:
                    self.jobs.remove(job)
                    dropped.append(job)
                else:
                    self.queue(job)
            registration.jobs.clear()
        return dropped

    def hears_exceptions(self, client: str) -> bool:
        """gearmand (since 1.1.9): WORK_EXCEPTION reaches the clients that asked for
        "exceptions", or all with --exceptions; the others hear WORK_FAIL."""
        return self.all_exceptions or client in self.exceptions

    def end(self, job: Job) -> None:
        assert job.worker is not None
        job.worker.jobs.remove(job)
        self.jobs.remove(job)

    def status(self, function: str) -> tuple[int, int, int]:
        total = sum(1 for j in self.jobs if j.function == function)
        running = sum(1 for j in self.jobs if j.function == function and j.worker)
        workers = sum(1 for rs in self.registrations.values() for r in rs
                      if r.function == function)
        return total, running, workers
