"""What gearmand 1.1.20 does, for the part of the protocol the model fuzzer drives.

Plain records and one class, no I/O: ``Model`` predicts which job each grab
gets, what every client hears and the admin ``status`` counts, as the model
fuzzer's ``GearmanMachine`` (``fuzz/model.py``) plays the same moves against a
live server.  Rules that depend on the gearmand version are tagged
``# VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FUNCTIONS = ("fa", "fb")
WORKERS = ("w0", "w1")


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


@dataclass(eq=False)
class Registration:
    worker: str
    function: str
    jobs: list[Job] = field(default_factory=list)  # newest last


class Model:
    """What gearmand 1.1.20 does, for the subset the machine exercises."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, int], list[Job]] = {
            (f, p): [] for f in FUNCTIONS for p in range(3)}
        self.registrations: dict[str, list[Registration]] = {w: [] for w in WORKERS}
        self.jobs: list[Job] = []

    def existing(self, function: str, unique: bytes) -> Job | None:
        if not unique:
            return None
        return next((j for j in self.jobs if j.function == function and j.unique == unique),
                    None)

    def queue(self, job: Job) -> None:
        self.queues[(job.function, job.priority)].append(job)

    def take(self, worker: str) -> Job | None:
        # VERSION: gearmand 1.1.x walks the worker's registrations, newest CAN_DO
        # first, and takes the highest priority of the first function with a job.
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

    def requeue(self, registrations: list[Registration]) -> None:
        for registration in registrations:
            for job in reversed(registration.jobs):  # gearmand frees newest first
                job.worker = None
                self.queue(job)
            registration.jobs.clear()

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
