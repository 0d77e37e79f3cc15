"""The interop tests: one client library and one server, the worker a library too.

The QUIC interop runner draws a grid of every client against every server,
each cell a row of letters for the tests that passed; ``gearspec interop``
draws the same grid for Gearman.  Each test below is a sentence, a letter and
a coroutine that plays it through a ``Trial`` (``conformance/interop_run.py``):
it starts adapters (the contract of ``conformance/adapters/README.md``: the
client library's, and a worker's), waits for what their applications report,
and asks the server (admin ``status``).  Verdicts come from those events and
answers, never from timing: a wait has a budget only so that a library that
never answers cannot hang the run.

The worker side is played by the client's own library where it can do what
the test asks of a worker, and by libgearman where it cannot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from conformance.events import AppEvent

BIG = 16 << 20  # the large workload: 16 MiB
MANY = 1000  # jobs at once in the concurrency test
ENDINGS = frozenset({"complete", "fail", "exception", "error"})  # a job's last event


class Interop(Exception):
    """A test's expectation not met: what it expected and what the libraries saw."""

    def __init__(self, step: int, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}; saw {actual}")
        self.step, self.expected, self.actual = step, expected, actual


class Session(Protocol):
    """One adapter process (a client or a worker) during a test."""

    name: str

    async def event(self, name: str, *, within: float) -> AppEvent: ...

    async def events(self, name: str, count: int, *, within: float) -> list[AppEvent]: ...

    async def ends(self, *, within: float) -> list[AppEvent]: ...

    async def kill(self) -> None: ...


class Trial(Protocol):
    """What a test may do: start adapters, ask the server, restart it."""

    budget: float

    def function(self, name: str) -> str: ...  # a function name of this cell's own

    def can(self, feature: str) -> bool: ...  # the client library can do this

    async def client(self, job: dict[str, Any], name: str = "client") -> Session: ...

    async def worker(self, job: dict[str, Any], name: str = "worker") -> Session: ...

    async def status(self) -> dict[bytes, tuple[int, int, int]]: ...  # admin status

    async def restart_server(self) -> None: ...


Play = Callable[[Trial], Awaitable[None]]


@dataclass(frozen=True)
class InteropTest:
    code: str  # the letter in the grid
    id: str
    title: str  # the sentence the legend shows
    steps: tuple[str, ...]  # what it does, step by step, for the report
    client: frozenset[str]  # client features it needs
    worker: frozenset[str]  # worker features (else libgearman works)
    server: frozenset[str]  # server capabilities
    play: Play
    source: str = "PROTOCOL"


def field(event: AppEvent, name: str) -> bytes:
    return event.fields.get(name, b"")


def number(event: AppEvent, name: str) -> int:
    """A numeric or boolean field of an event (adapters print 1, "1" or true)."""
    raw = field(event, name).strip(b'"')
    return {b"true": 1, b"false": 0}.get(raw, int(raw) if raw.lstrip(b"-").isdigit() else -1)


def check(step: int, ok: bool, expected: str, actual: str) -> None:
    if not ok:
        raise Interop(step, expected, actual)


def echo_worker(function: str, jobs: int = 1) -> dict[str, Any]:
    return {"role": "worker", "functions": {function: {"actions": [{"complete-workload": True}]}},
            "jobs": jobs}


def submit(function: str, workload: str, **more: Any) -> dict[str, Any]:
    return {"function": function, "workload": workload, **more}


def _shown(data: bytes, limit: int = 60) -> str:
    text = data[:limit].decode("latin-1")
    return repr(text) + (f" … ({len(data)} bytes)" if len(data) > limit else "")


async def _round_trip(trial: Trial, workload: str) -> None:
    function = trial.function("echo")
    worker = await trial.worker(echo_worker(function))
    client = await trial.client({"role": "client", "submit": [submit(function, workload)]})
    done = await client.event("complete", within=trial.budget)
    want = workload.encode("latin-1")
    check(2, field(done, "data") == want, f"complete with {_shown(want)}",
          f"complete with {_shown(field(done, 'data'))}")
    job = await worker.event("job", within=trial.budget)
    check(1, field(job, "workload") == want, f"the worker given {_shown(want)}",
          f"the worker given {_shown(field(job, 'workload'))}")


async def round_trip(trial: Trial) -> None:
    await _round_trip(trial, "hello, gearman")


async def binary(trial: Trial) -> None:
    await _round_trip(trial, "\x00nul\x00\xff\x80\r\n\x00")


async def large(trial: Trial) -> None:
    await _round_trip(trial, ("0123456789abcdef" * (BIG // 16)))


async def background_status(trial: Trial) -> None:
    function = trial.function("queued")  # no worker: the job waits in the queue
    client = await trial.client({"role": "client", "status": [{"handle_of": 0}],
                                 "submit": [submit(function, "later", background=True)]})
    answer = await client.event("status-answer", within=trial.budget)
    known, running = number(answer, "known"), number(answer, "running")
    check(2, (known, running) == (1, 0), "status known, not running",
          f"known={field(answer, 'known')!r} running={field(answer, 'running')!r}")
    queued = (await trial.status()).get(function.encode(), (0, 0, 0))
    check(3, queued[:2] == (1, 0), "the server's status: 1 job, none running",
          f"{queued[0]} jobs, {queued[1]} running")


async def priorities(trial: Trial) -> None:
    function = trial.function("ranked")
    order = [("low", "low"), ("normal", "normal"), ("high", "high")]
    client = await trial.client({"role": "client", "submit": [
        submit(function, name, priority=priority, background=True) for name, priority in order]})
    await client.ends(within=trial.budget)
    worker = await trial.worker(echo_worker(function, jobs=3))
    taken = [field(e, "workload") for e in await worker.events("job", 3, within=trial.budget)]
    check(3, taken == [b"high", b"normal", b"low"], "the worker given high, normal, low",
          ", ".join(_shown(t) for t in taken))


async def coalesced(trial: Trial) -> None:
    function = trial.function("once")
    job = {"role": "client", "submit": [submit(function, "shared", unique="one-job")]}
    first = await trial.client(job, "client-1")
    await first.event("created", within=trial.budget)
    second = await trial.client(job, "client-2")
    await second.event("created", within=trial.budget)
    queued = (await trial.status()).get(function.encode(), (0, 0, 0))
    check(2, queued[0] == 1, "one job queued for the two submits", f"{queued[0]} jobs")
    await trial.worker(echo_worker(function, jobs=1))
    for step, client in ((4, first), (5, second)):
        done = await client.event("complete", within=trial.budget)
        check(step, field(done, "data") == b"shared", f"{client.name}: complete 'shared'",
              f"complete {_shown(field(done, 'data'))}")


UPDATES = (("data", "data", b"part"), ("warning", "warning", b"careful"),
           ("progress", "status", b""))


async def updates(trial: Trial) -> None:
    function = trial.function("chatty")
    worker_job = {"role": "worker", "functions": {function: {"actions": [
        {"data": "part"}, {"warning": "careful"}, {"status": [1, 2]}, {"complete": "done"}]}}}
    await trial.worker(worker_job)
    client = await trial.client({"role": "client", "submit": [submit(function, "go")]})
    expected = [event for feature, event, _ in UPDATES if trial.can(f"client.{feature}")]
    seen = [await client.event("*", within=trial.budget)]
    while seen[-1].name not in ENDINGS and len(seen) < 20:
        seen.append(await client.event("*", within=trial.budget))
    names = [e.name for e in seen if e.name != "created"]
    check(2, names == [*expected, "complete"], ", ".join([*expected, "complete"]),
          ", ".join(names))
    for event in seen:
        want = dict((name, data) for _, name, data in UPDATES).get(event.name)
        if want:
            check(2, field(event, "data") == want, f"{event.name} {want!r}",
                  f"{event.name} {field(event, 'data')!r}")
        if event.name == "status":
            numbers = (number(event, "numerator"), number(event, "denominator"))
            check(2, numbers == (1, 2), "status 1/2", f"status {numbers[0]}/{numbers[1]}")


async def failures(trial: Trial) -> None:
    failing, raising = trial.function("fails"), trial.function("raises")
    exceptions = trial.can("client.exceptions")
    await trial.worker({"role": "worker", "jobs": 2 if exceptions else 1, "functions": {
        failing: {"actions": [{"fail": True}]}, raising: {"actions": [{"exception": "boom"}]}}})
    jobs = [submit(failing, "f")] + ([submit(raising, "e")] if exceptions else [])
    client = await trial.client({"role": "client", "exceptions": exceptions, "submit": jobs})
    ends = {}
    while len(ends) < len(jobs):
        event = await client.event("*", within=trial.budget)
        if event.name in ENDINGS:
            ends[number(event, "job")] = event
    check(2, ends.get(0) is not None and ends[0].name == "fail", "job 0 fails",
          f"job 0: {ends[0].name if 0 in ends else 'nothing'}")
    if exceptions:
        raised = ends.get(1)
        check(3, raised is not None and raised.name == "exception"
              and field(raised, "data") == b"boom", "job 1 raises 'boom'",
              f"job 1: {raised.name if raised else 'nothing'} "
              f"{_shown(field(raised, 'data')) if raised else ''}")


async def worker_dies(trial: Trial) -> None:
    function = trial.function("survives")
    doomed = await trial.worker({"role": "worker", "functions": {
        function: {"actions": [{"sleep": 3600}, {"complete": "never"}]}}}, "worker-1")
    client = await trial.client({"role": "client", "submit": [submit(function, "again")]})
    await doomed.event("job", within=trial.budget)
    await doomed.kill()
    await trial.worker(echo_worker(function), "worker-2")
    done = await client.event("complete", within=trial.budget)
    check(4, field(done, "data") == b"again", "complete 'again' from the second worker",
          f"complete {_shown(field(done, 'data'))}")


async def concurrent(trial: Trial) -> None:
    function = trial.function("many")
    await trial.worker(echo_worker(function, jobs=MANY))
    client = await trial.client({"role": "client", "submit": [
        submit(function, f"job-{i}") for i in range(MANY)]})
    ends = await client.events("complete", MANY, within=trial.budget)
    wrong = [e for e in ends if field(e, "data") != f"job-{number(e, 'job')}".encode()]
    check(2, not wrong, f"each of {MANY} jobs completed with its own workload",
          f"{len(wrong)} with another's: job {field(wrong[0], 'job')!r} got "
          f"{_shown(field(wrong[0], 'data'))}" if wrong else "")


async def survives_restart(trial: Trial) -> None:
    function = trial.function("kept")
    client = await trial.client({"role": "client", "submit": [
        submit(function, f"kept-{i}", background=True) for i in range(3)]})
    await client.ends(within=trial.budget)
    await trial.restart_server()
    queued = (await trial.status()).get(function.encode(), (0, 0, 0))
    check(2, queued[0] == 3, "3 jobs still queued after the restart", f"{queued[0]} jobs")
    worker = await trial.worker(echo_worker(function, jobs=3))
    taken = sorted(field(e, "workload") for e in await worker.events("job", 3,
                                                                      within=trial.budget))
    check(3, taken == [b"kept-0", b"kept-1", b"kept-2"], "the worker given kept-0..2",
          ", ".join(_shown(t) for t in taken))


def _test(code: str, id: str, title: str, steps: list[str], play: Play, *,
          client: tuple[str, ...] = (), worker: tuple[str, ...] = (),
          server: tuple[str, ...] = (), source: str = "PROTOCOL") -> InteropTest:
    return InteropTest(code, f"interop/{code}-{id}", title, tuple(steps),
                       frozenset({"role.client", *client}), frozenset(worker),
                       frozenset(server), play, source)


TESTS: dict[str, InteropTest] = {test.code: test for test in (
    _test("R", "round-trip", "A foreground job's workload reaches a worker and its result "
          "the client", ["start a worker for echo", "submit 'hello, gearman'",
                         "the client gets the result"], round_trip, source='PROTOCOL "SUBMIT_JOB"'),
    _test("B", "binary", "A workload with NUL and non-UTF-8 bytes crosses both ways intact",
          ["start a worker for echo", "submit bytes with NULs", "the same bytes come back"],
          binary, client=("binary",), worker=("binary",), source="PROTOCOL (data is opaque)"),
    _test("L", "large", "A 16 MiB workload crosses both ways intact",
          ["start a worker for echo", "submit 16 MiB", "the same 16 MiB come back"], large),
    _test("S", "background-status", "A background job waits in the queue and its status "
          "says so", ["submit a background job no worker can do", "ask its status",
                      "known, not running", "the server counts 1 job"], background_status,
          client=("client.background", "client.status"), source='PROTOCOL "GET_STATUS"'),
    _test("P", "priorities", "Jobs are handed out high, then normal, then low",
          ["submit low, normal, high background jobs", "the client is done",
           "start a worker", "it is given high, normal, low"], priorities,
          client=("client.background", "client.priority"), source='PROTOCOL "SUBMIT_JOB_HIGH"'),
    _test("U", "coalesced", "Two clients submitting one unique share one job and both get "
          "its result", ["client 1 submits unique one-job", "client 2 submits the same",
                         "the server holds one job", "start a worker", "client 1 gets the result",
                         "client 2 gets the result"], coalesced,
          client=("client.unique", "client.created"), source='PROTOCOL "unique ID"'),
    _test("D", "updates", "Data, warning and status updates reach the client in order, "
          "before the result", ["start a worker that sends data, warning, status",
                                "submit a job", "each update, then the result"], updates,
          client=("client.data",), worker=("worker.data", "worker.warning", "worker.status"),
          source='PROTOCOL "WORK_DATA", "WORK_WARNING", "WORK_STATUS"'),
    _test("F", "fail-and-exception", "WORK_FAIL and WORK_EXCEPTION reach the client",
          ["start a worker that fails one job and raises on another", "submit both",
           "the first fails", "the second raises"], failures,
          client=("client.concurrent",), worker=("worker.fail", "worker.exception"),
          source='PROTOCOL "WORK_FAIL", "WORK_EXCEPTION"'),
    _test("K", "worker-dies", "A job whose worker dies is done by another worker",
          ["start a worker that never ends its job", "submit a job", "the worker has it",
           "kill that worker, start another", "the client gets the result"], worker_dies,
          source="gearmand: a job is requeued when its worker's connection drops"),
    _test("C", "concurrent", f"{MANY} jobs at once from one client: each result reaches "
          "its own job", ["start a worker for echo", f"submit {MANY} jobs at once",
                          "each completes with its own workload"], concurrent,
          client=("client.concurrent",), source="PROTOCOL (job handles)"),
    _test("Q", "survives-restart", "Background jobs in a persistent queue survive a server "
          "restart and are done after it", ["submit 3 background jobs",
                                            "restart the server", "they are still queued",
                                            "a worker is given all 3"], survives_restart,
          client=("client.background",), server=("persistence", "restart"),
          source="gearmand: -q libsqlite3"),
)}
