"""The adapter of OpenStack gear (``gear.Client``, ``gear.Worker``), to README.md's contract.

Runs under the interpreter gear is installed in (the project's .venv) and imports
nothing from gearspec.  gear is threaded: ``addServer`` connects in a thread of its
own and a poll thread reads every packet and calls the object's ``handle*`` methods;
the documented way for an application to follow a job is to subclass ``gear.Client``
and override those handlers (calling the superclass first), which is what
``AppClient`` does.  Each handler reports what the application sees on the job
object: gear keeps a job's WORK_DATA, WORK_WARNING and WORK_COMPLETE payloads in one
list, ``job.data`` (an empty payload is not appended), so an update's data is what
that packet added to the list.

Not in ``describe``, because gear's API cannot do it: ``client.epoch`` (no
SUBMIT_JOB_EPOCH), ``client.status`` and ``client.status-unique`` (the client handles
STATUS_RES but has no method that sends GET_STATUS), ``client.client-id``
(``gear.Client(client_id)`` only names the logger: a client never sends SET_CLIENT_ID).
A gear worker always sends SET_CLIENT_ID (``gear.Worker`` requires a client id); with
none in the job the adapter gives it ``DEFAULT_WORKER_ID``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gear

FEATURES = ["client.created", "client.background", "client.priority", "client.unique",
            "client.concurrent", "client.data", "client.warning", "client.progress",
            "client.exceptions", "client.echo", "worker.data", "worker.warning",
            "worker.status", "worker.fail", "worker.exception", "worker.timeout",
            "worker.client-id", "binary"]
PRECEDENCE = {"high": gear.PRECEDENCE_HIGH, "normal": gear.PRECEDENCE_NORMAL,
              "low": gear.PRECEDENCE_LOW}
DEFAULT_WORKER_ID = "gearspec-worker"

_print_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """One event, bytes as Latin-1 text (the contract's encoding); any thread may call it."""
    shown = {k: bytes(v).decode("latin-1") if isinstance(v, (bytes, bytearray)) else v
             for k, v in fields.items()}
    with _print_lock:
        print(json.dumps({"event": event, **shown}), flush=True)


def b(text: str) -> bytes:
    return text.encode("latin-1")


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class AppClient(gear.Client):
    """A gear client that tells the application of each update, as its docs suggest."""

    def __init__(self) -> None:
        super().__init__()
        self.index: dict[int, int] = {}            # id(job) -> its place in the job's submit
        self.ended: dict[int, threading.Event] = {}

    def follow(self, job: gear.Job, index: int) -> None:
        self.index[id(job)] = index
        self.ended[id(job)] = threading.Event()

    def _index(self, job: gear.Job) -> int | None:
        return self.index.get(id(job))

    def _added(self, packet: gear.Packet, handler: Any) -> tuple[gear.Job, bytes]:
        """Run gear's handler; what it added to ``job.data`` (b'' when it added nothing)."""
        before = len(packet.getJob().data)
        job = handler(packet)
        return job, b"".join(job.data[before:])

    def _end(self, job: gear.Job) -> None:
        event = self.ended.get(id(job))
        if event is not None:
            event.set()

    def handleJobCreated(self, packet: gear.Packet) -> gear.Job:
        job = super().handleJobCreated(packet)
        emit("created", job=self._index(job), handle=job.handle)
        return job

    def handleWorkData(self, packet: gear.Packet) -> gear.Job:
        job, data = self._added(packet, super().handleWorkData)
        emit("data", job=self._index(job), data=data)
        return job

    def handleWorkWarning(self, packet: gear.Packet) -> gear.Job:
        job, data = self._added(packet, super().handleWorkWarning)
        emit("warning", job=self._index(job), data=data)
        return job

    def handleWorkStatus(self, packet: gear.Packet) -> gear.Job:
        job = super().handleWorkStatus(packet)
        emit("status", job=self._index(job), numerator=job.numerator,
             denominator=job.denominator)
        return job

    def handleWorkComplete(self, packet: gear.Packet) -> gear.Job:
        job, data = self._added(packet, super().handleWorkComplete)
        emit("complete", job=self._index(job), data=data)
        self._end(job)
        return job

    def handleWorkFail(self, packet: gear.Packet) -> gear.Job:
        job = super().handleWorkFail(packet)
        emit("fail", job=self._index(job))
        self._end(job)
        return job

    def handleWorkException(self, packet: gear.Packet) -> gear.Job:
        job = super().handleWorkException(packet)
        emit("exception", job=self._index(job), data=job.exception or b"")
        self._end(job)
        return job

    def handleDisconnect(self, job: gear.Job) -> gear.Job:
        job = super().handleDisconnect(job)
        event = self.ended.get(id(job))
        if event is not None and not event.is_set():
            emit("error", job=self._index(job), message="gear: the server connection was lost")
            event.set()
        return job


def _unsupported_client(job: dict[str, Any]) -> str | None:
    if "client_id" in job:
        return "gear.Client never sends SET_CLIENT_ID (its client_id only names the logger)"
    if job.get("status"):
        return "gear.Client has no status query (it never sends GET_STATUS or GET_STATUS_UNIQUE)"
    if any("epoch" in submit for submit in job.get("submit", [])):
        return "gear.Client cannot submit an epoch job (no SUBMIT_JOB_EPOCH)"
    return None


def client(job: dict[str, Any], host: str, port: int, timeout: float) -> None:
    why = _unsupported_client(job)
    if why:
        emit("unsupported", reason=why)
        return
    gearman = AppClient()
    try:
        gearman.addServer(host, port)
        gearman.waitForServer(timeout)
        if job.get("exceptions") and not gearman.setOption("exceptions", timeout):
            emit("error", message="gear: setOption('exceptions') returned False")
        foreground: list[gear.Job] = []
        for index, submit in enumerate(job.get("submit", [])):
            submitted = gear.Job(b(submit["function"]), b(submit.get("workload", "")),
                                 unique=b(submit["unique"]) if "unique" in submit else None)
            gearman.follow(submitted, index)
            background = bool(submit.get("background"))
            try:
                gearman.submitJob(submitted, background=background,
                                  precedence=PRECEDENCE[submit.get("priority", "normal")],
                                  timeout=timeout)
            except gear.GearmanError as error:  # no connection took it
                emit("error", job=index, message=_failure(error))
                continue
            if not background:
                foreground.append(submitted)
        for text in job.get("echo", []):
            try:
                emit("echo", data=gearman.getConnection().echo(b(text), timeout=timeout))
            except (gear.TimeoutError, gear.InvalidDataError,
                    gear.NoConnectedServersError) as error:
                emit("error", message=_failure(error))
        if job.get("wait", True):
            for submitted in foreground:
                gearman.ended[id(submitted)].wait()
    finally:
        gearman.shutdown()


def worker(job: dict[str, Any], host: str, port: int, timeout: float) -> None:
    functions = {b(name): spec for name, spec in job["functions"].items()}
    gearman = gear.Worker(job.get("client_id", DEFAULT_WORKER_ID))
    try:
        gearman.addServer(host, port)
        gearman.waitForServer(timeout)
        for name, spec in functions.items():
            gearman.registerFunction(name, spec.get("timeout"))  # gear: "numeric timeout"
        for _ in range(int(job.get("jobs", 1))):
            assigned = gearman.getJob()
            emit("job", function=assigned.binary_name, handle=assigned.handle,
                 unique=assigned.unique or b"", workload=assigned.arguments)
            spec = functions.get(assigned.binary_name)
            if spec is None:
                emit("error", message=f"assigned {assigned.binary_name!r}, never registered")
                assigned.sendWorkFail()
                continue
            _work(assigned, spec.get("actions", []))
    finally:
        gearman.shutdown()


def _work(assigned: gear.WorkerJob, actions: list[dict[str, Any]]) -> None:
    for action in actions:
        [(kind, value)] = action.items()
        if kind == "data":
            assigned.sendWorkData(b(value))
        elif kind == "warning":
            assigned.sendWorkWarning(b(value))
        elif kind == "status":
            assigned.sendWorkStatus(int(value[0]), int(value[1]))
        elif kind == "sleep":
            time.sleep(float(value))
        elif kind == "fail":
            assigned.sendWorkFail()
            return
        elif kind == "exception":
            assigned.sendWorkException(b(value))
            return
        elif kind == "complete":
            assigned.sendWorkComplete(b(value))
            return
        elif kind == "complete-workload":
            assigned.sendWorkComplete(assigned.arguments)
            return
    assigned.sendWorkComplete(b"")


def main() -> int:
    if sys.argv[1:] == ["describe"]:
        print(json.dumps({"library": "gear (OpenStack)", "version": version("gear"),
                          "roles": ["client", "worker"], "features": FEATURES}))
        return 0
    if sys.argv[1:] != ["run"]:
        print(f"usage: {sys.argv[0]} describe|run", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s: %(message)s")
    job = json.loads(Path(os.environ["GEARSPEC_JOB"]).read_text())
    host, _, port = os.environ["GEARSPEC_SERVER"].rpartition(":")
    timeout = float(os.environ.get("GEARSPEC_TIMEOUT", "30"))
    (client if job["role"] == "client" else worker)(job, host, int(port), timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
