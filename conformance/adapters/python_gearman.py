"""The adapter of the Python 3 forks of python-gearman 2.0.2, to README.md's contract.

``python_gearman.py FORK describe|run``, FORK one of ``FORKS``; it runs under that
fork's virtualenv, which holds nothing else (it imports nothing from gearspec).  The
three forks keep python-gearman's API (``GearmanClient``, ``GearmanWorker``) but not
its module name or its types; ``Fork`` says, per fork, what differs, read from each
one's source:

* pygearman 0.2.6 installs ``gearman``; bytes on the wire are bytes at the API (its
  NoopEncoder also takes str and encodes it as UTF-8).  A worker's functions must be
  registered with bytes names: JOB_ASSIGN's function arrives as bytes and the worker
  asserts it is one of the registered names.  Binary-safe.
* python3-gearman 0.1.0 installs ``python3_gearman`` and py3gearman 0.2.0 installs
  ``py3gearman``: text only.  Every argument must be a str (NoopEncoder and the packer
  reject bytes); the packer encodes it as UTF-8 and every received payload is decoded
  as UTF-8.  So the adapter hands them the job's bytes decoded as UTF-8 and reports
  what they return encoded as UTF-8; they cannot carry other bytes (no ``binary``).
* py3gearman's ``submit_job`` defaults to ``background=True`` (the others to False), and
  it takes the unique ``"-"`` to mean "the workload".  The adapter always passes
  ``background`` explicitly.

A client is driven the way python-gearman's docs show: ``submit_job(...,
wait_until_complete=False)`` for each job (it blocks until JOB_CREATED), then
``wait_until_jobs_completed`` with a short ``poll_timeout`` over and over, reading
each request's ``data_updates`` and ``warning_updates`` queues, its ``status`` dict,
``exception``, ``state`` and ``result`` after each poll (python-gearman has no
callbacks: the queues are how an application sees updates).  Within one poll the
order across kinds (data, warning, status) and across requests is lost, and
``status`` holds only the latest WORK_STATUS.  A worker is ``GearmanWorker.work()``,
stopped after the job's ``jobs`` with the ``after_poll`` hook; a raised exception is
the library's WORK_FAIL, and an ``exception`` action uses ``send_job_exception`` from
``on_job_exception`` (which sends WORK_EXCEPTION and then WORK_FAIL).

Not in ``describe``: ``client.epoch`` (no SUBMIT_JOB_EPOCH), ``client.exceptions``
(the client never sends OPTION_REQ), ``client.status-unique`` (no GET_STATUS_UNIQUE),
``client.echo`` (a client has none; ``GearmanAdminClient.ping_server`` sends only its
own fixed text), ``client.client-id`` (only the worker has ``set_client_id``),
``worker.timeout`` (``register_task`` takes no timeout: CAN_DO only).  A status query
needs the request object the library returned (``get_job_status(request)``), so a
query by a bare handle is unsupported.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Fork:
    module: str          # what it installs
    distribution: str    # its name on PyPI (for the version)
    text: bool           # takes and returns str (UTF-8 on the wire), not bytes
    background_default: bool  # submit_job's default for background=


FORKS = {
    "pygearman": Fork("gearman", "pygearman", text=False, background_default=False),
    "python3-gearman": Fork("python3_gearman", "python3-gearman", text=True,
                            background_default=False),
    "py3gearman": Fork("py3gearman", "py3gearman", text=True, background_default=True),
}
BASE = ["client.created", "client.background", "client.priority", "client.unique",
        "client.concurrent", "client.data", "client.warning", "client.progress",
        "client.status", "worker.data", "worker.warning", "worker.status", "worker.fail",
        "worker.exception", "worker.client-id"]
POLL = 0.05  # seconds: one wait_until_jobs_completed between looks at the requests


def emit(event: str, **fields: Any) -> None:
    """One event, bytes as Latin-1 text (the contract's encoding)."""
    shown = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in fields.items()}
    print(json.dumps({"event": event, **shown}), flush=True)


def b(text: str) -> bytes:
    return text.encode("latin-1")


class Unsupported(Exception):
    pass


class Codec:
    """The job's bytes to what the fork takes, and what it returns back to bytes."""

    def __init__(self, fork: Fork) -> None:
        self.fork = fork

    def put(self, text: str) -> Any:
        raw = b(text)
        if not self.fork.text:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Unsupported(f"{self.fork.distribution} takes text only (str, sent as UTF-8): "
                              f"{text!r} is not UTF-8") from None

    def get(self, value: Any) -> bytes:
        if value is None:
            return b""
        if isinstance(value, str):
            return value.encode("utf-8")
        return bytes(value)


def _gearman_error(fork: Fork) -> type[BaseException]:
    """The fork's own error class (what it raises on purpose)."""
    return importlib.import_module(f"{fork.module}.errors").GearmanError  # type: ignore[no-any-return]


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@dataclass
class Followed:
    """What the adapter has already told the application about one request."""

    index: int
    request: Any
    status_seen: Any = None
    exception_seen: bool = False
    ended: bool = False


class ClientRun:
    def __init__(self, gearman: Any, fork: Fork, codec: Codec, timeout: float) -> None:
        self.constants = importlib.import_module(f"{fork.module}.constants")  # not all export them
        self.error = _gearman_error(fork)
        self.gearman = gearman.GearmanClient([os.environ["GEARSPEC_SERVER"]])
        self.fork, self.codec, self.timeout = fork, codec, timeout
        self.followed: list[Followed | None] = []

    def submit(self, index: int, submit: dict[str, Any]) -> None:
        priority = {"high": self.constants.PRIORITY_HIGH, "normal": self.constants.PRIORITY_NONE,
                    "low": self.constants.PRIORITY_LOW}[submit.get("priority", "normal")]
        try:
            request = self.gearman.submit_job(
                self.codec.put(submit["function"]), self.codec.put(submit.get("workload", "")),
                unique=self.codec.put(submit["unique"]) if "unique" in submit else None,
                # always explicit: py3gearman's default is background=True
                priority=priority, background=bool(submit.get("background")),
                wait_until_complete=False, poll_timeout=self.timeout)
        except self.error as error:
            emit("error", job=index, message=_failure(error))
            self.followed.append(None)
            return
        if request.job.handle is None:
            emit("error", job=index, message=f"not accepted (state {request.state}, "
                                             f"timed_out {request.timed_out})")
            self.followed.append(None)
            return
        emit("created", job=index, handle=self.codec.get(request.job.handle))
        self.followed.append(Followed(index, request))

    def look(self) -> None:
        """Tell the application what each foreground request has gained since the last look."""
        for followed in self.followed:
            if followed is None or followed.ended or followed.request.background:
                continue
            request, index = followed.request, followed.index
            while request.data_updates:
                emit("data", job=index, data=self.codec.get(request.data_updates.popleft()))
            while request.warning_updates:
                emit("warning", job=index,
                     data=self.codec.get(request.warning_updates.popleft()))
            status = request.status or {}
            if status.get("time_received") != followed.status_seen:
                followed.status_seen = status.get("time_received")
                emit("status", job=index, numerator=status.get("numerator"),
                     denominator=status.get("denominator"))
            if request.exception is not None and not followed.exception_seen:
                followed.exception_seen = True
                emit("exception", job=index, data=self.codec.get(request.exception))
            if request.state == self.constants.JOB_COMPLETE:
                emit("complete", job=index, data=self.codec.get(request.result))
                followed.ended = True
            elif request.state == self.constants.JOB_FAILED:
                emit("fail", job=index)
                followed.ended = True

    def status(self, index: int, query: dict[str, Any]) -> None:
        if "handle_of" not in query:
            raise Unsupported("python-gearman asks a status only of a request it submitted "
                              "(get_job_status(request)): not of a bare handle or a unique")
        followed = self.followed[query["handle_of"]]
        if followed is None:
            emit("error", message=f"status query {index}: job {query['handle_of']} was "
                                  "never created")
            return
        self.look()
        try:
            request = self.gearman.get_job_status(followed.request, poll_timeout=self.timeout)
        except self.error as error:
            emit("error", message=_failure(error))
            return
        if request.timed_out:
            emit("error", message=f"status query {index} timed out")
            return
        answer = request.status or {}
        followed.status_seen = answer.get("time_received")  # the answer, not a WORK_STATUS
        emit("status-answer", query=index, known=answer.get("known"),
             running=answer.get("running"), numerator=answer.get("numerator"),
             denominator=answer.get("denominator"))

    def wait(self) -> None:
        """Until every foreground request ends; one error each for those that cannot."""
        why = None
        while True:
            self.look()
            waiting = [f.request for f in self.followed
                       if f is not None and not f.ended and not f.request.background
                       and f.request.state != self.constants.JOB_UNKNOWN]
            if not waiting:
                break
            try:
                self.gearman.wait_until_jobs_completed(waiting, poll_timeout=POLL)
            except self.error as error:  # e.g. ServerUnavailable: the connection is gone
                why = _failure(error)
                self.look()
                break
        for followed in self.followed:
            if followed is not None and not followed.ended and not followed.request.background:
                emit("error", job=followed.index,
                     message=why or f"the request is in state {followed.request.state}")


def _unsupported_client(job: dict[str, Any]) -> str | None:
    if "client_id" in job:
        return "python-gearman's GearmanClient has no SET_CLIENT_ID (only GearmanWorker does)"
    if job.get("exceptions"):
        return "python-gearman's client never asks for the exceptions option (no OPTION_REQ)"
    if job.get("echo"):
        return "python-gearman's client has no echo (GearmanAdminClient.ping_server sends " \
               "only its own fixed text)"
    if any("epoch" in submit for submit in job.get("submit", [])):
        return "python-gearman cannot submit an epoch job (no SUBMIT_JOB_EPOCH)"
    for query in job.get("status", []):
        if "handle_of" not in query:
            return "python-gearman asks a status only of a request it submitted " \
                   "(get_job_status(request)): not of a bare handle or a unique"
    return None


def client(gearman: Any, fork: Fork, job: dict[str, Any], timeout: float) -> None:
    why = _unsupported_client(job)
    if why:
        emit("unsupported", reason=why)
        return
    codec = Codec(fork)
    run = ClientRun(gearman, fork, codec, timeout)
    try:
        for index, submit in enumerate(job.get("submit", [])):
            run.submit(index, submit)
            run.look()
        for index, query in enumerate(job.get("status", [])):
            run.status(index, query)
        if job.get("wait", True):
            run.wait()
        else:
            run.look()
    finally:
        run.gearman.shutdown()


class JobFailed(Exception):
    """Raised by a job that fails: python-gearman answers a raise with WORK_FAIL."""


class JobRaised(Exception):
    """Raised by a job that ends in an exception (``on_job_exception`` sends it)."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.data = data


def worker(gearman: Any, fork: Fork, job: dict[str, Any], timeout: float) -> None:
    codec = Codec(fork)
    jobs = int(job.get("jobs", 1))
    started = [0]

    class AppWorker(gearman.GearmanWorker):  # type: ignore[misc, name-defined]
        def after_poll(self, any_activity: bool) -> bool:
            return started[0] < jobs  # False ends work()

        def on_job_exception(self, current_job: Any, exc_info: Any) -> bool:
            if isinstance(exc_info[1], JobRaised):
                self.send_job_exception(current_job, exc_info[1].data)
                return False
            return bool(super().on_job_exception(current_job, exc_info))

    def task(actions: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
        def run(worker: Any, current_job: Any) -> Any:
            started[0] += 1
            emit("job", function=codec.get(current_job.task),
                 handle=codec.get(current_job.handle), unique=codec.get(current_job.unique),
                 workload=codec.get(current_job.data))
            for action in actions:
                [(kind, value)] = action.items()
                if kind == "data":
                    worker.send_job_data(current_job, codec.put(value), poll_timeout=timeout)
                elif kind == "warning":
                    worker.send_job_warning(current_job, codec.put(value), poll_timeout=timeout)
                elif kind == "status":
                    worker.send_job_status(current_job, int(value[0]), int(value[1]),
                                           poll_timeout=timeout)
                elif kind == "sleep":
                    time.sleep(float(value))
                elif kind == "fail":
                    raise JobFailed()
                elif kind == "exception":
                    raise JobRaised(codec.put(value))
                elif kind == "complete":
                    return codec.put(value)
                elif kind == "complete-workload":  # as the fork gave it (str or bytes)
                    return codec.put("") if current_job.data is None else current_job.data
            return codec.put("")
        return run

    functions = {codec.put(name): spec for name, spec in job["functions"].items()}
    app = AppWorker([os.environ["GEARSPEC_SERVER"]])
    try:
        if "client_id" in job:
            app.set_client_id(codec.put(job["client_id"]))
        for name, spec in functions.items():
            app.register_task(name, task(spec.get("actions", [])))
        try:
            app.work(poll_timeout=timeout)
        except _gearman_error(fork) as error:
            emit("error", message=_failure(error))
    finally:
        app.shutdown()


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in FORKS or sys.argv[2] not in ("describe", "run"):
        print(f"usage: {sys.argv[0]} {'|'.join(FORKS)} describe|run", file=sys.stderr)
        return 2
    fork = FORKS[sys.argv[1]]
    if sys.argv[2] == "describe":
        features = BASE + ([] if fork.text else ["binary"])
        print(json.dumps({"library": f"python-gearman ({fork.distribution})",
                          "version": version(fork.distribution), "roles": ["client", "worker"],
                          "features": features}))
        return 0
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s: %(message)s")
    gearman = importlib.import_module(fork.module)
    job = json.loads(Path(os.environ["GEARSPEC_JOB"]).read_text())
    timeout = float(os.environ.get("GEARSPEC_TIMEOUT", "30"))
    try:
        (client if job["role"] == "client" else worker)(gearman, fork, job, timeout)
    except Unsupported as why:
        emit("unsupported", reason=str(why))
    return 0


if __name__ == "__main__":
    sys.exit(main())
