"""Interoperability: real Gearman peers against our server, our library against real gearmand.

Four groups:

1. The libgearman command-line tools (``gearman``, ``gearadmin``) through our server.
2. ``gearadmin`` against our server and against ``/usr/sbin/gearmand`` after the same
   setup: the outputs must have the same shape once the numbers that legitimately
   differ (fds, pid, version) are normalised.  Row order is compared as a multiset:
   gearmand walks hash tables and per-thread connection lists, ours keeps creation
   order (see ``_rows``).
3. Our ``Client`` / ``Worker`` / ``Admin`` library against both servers (``server``).
4. PHP (php-gearman) and Perl (Gearman::Client / Gearman::Worker) clients and workers,
   against both servers (gearmand shows the scripts are right).

Every subprocess is started through the ``spawn`` fixture or ``run`` (which has a
timeout), so none outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from conformance.targets import Target
from reference_server.client import (
    Admin,
    Client,
    GearmanError,
    Handler,
    JobException,
    JobFailed,
    Link,
    Priority,
    SyncMarkers,
    Worker,
    WorkerJob,
    WorkFailed,
)
from reference_server.protocol import Packet, PacketType
from tests.conftest import require_program

pytestmark = pytest.mark.interop

T = PacketType
MARKERS = SyncMarkers(b"interop-sync-")
TIMEOUT = 20.0  # subprocess calls: only against hangs, never asserted on
WAIT = 10.0  # polling a condition / awaiting a reply: only against hangs

GEARMAN_TOOLS = "gearman-tools"


# ----------------------------------------------------------------------------
# Helpers


def gearman_cli() -> str:
    return require_program("gearman", GEARMAN_TOOLS)


def gearadmin_cli() -> str:
    return require_program("gearadmin", GEARMAN_TOOLS)


def hp(target: Target) -> list[str]:
    """``-h HOST -p PORT`` for the libgearman tools."""
    return ["-h", target.host, "-p", str(target.port)]


def run(*argv: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Run a program to completion (killed by ``subprocess.run`` if it hangs)."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def run_ok(*argv: str, timeout: float = TIMEOUT) -> bytes:
    result = run(*argv, timeout=timeout)
    assert result.returncode == 0, (argv, result.returncode, result.stdout, result.stderr)
    return result.stdout


def gearadmin(target: Target, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run(gearadmin_cli(), *hp(target), *args)


def poll(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait until ``condition()`` holds (a bound against hangs, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


async def apoll(condition: Callable[[], Awaitable[bool]], what: str,
                timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory for background processes; each is killed (with its process group,
    so a ``gearman -w`` worker's command goes too) when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:  # not reaped, so the pid cannot have been reused
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=5)


def finish(process: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    """Wait for a spawned process to exit by itself; its status and output."""
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    return process.returncode, stdout, stderr


async def echo_sync(link: Link) -> None:
    """ECHO round trip: everything sent before it on this link has been processed."""
    await link.sync(MARKERS.next(), WAIT)


async def next_packet(link: Link) -> Packet:
    while True:
        event = await link.next_event(WAIT)
        if isinstance(event, Packet):
            return event


@contextlib.asynccontextmanager
async def serving(target: Target, handlers: dict[str, Handler], *,
                  timeout_ms: int | None = None,
                  client_id: str | None = None) -> AsyncIterator[Worker]:
    """A library ``Worker`` running ``handlers`` in a task; registered (and known to
    the server) before the body runs, stopped and closed after it."""
    worker = await Worker.connect(target.address, client_id=client_id)
    for name, handler in handlers.items():
        worker.register(name, handler, timeout_ms=timeout_ms)
    await echo_sync(worker.link)
    task = asyncio.create_task(worker.work())
    try:
        yield worker
    finally:
        ended_by_itself = task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, GearmanError, OSError):
            await task
        await worker.close()
        if ended_by_itself and not task.cancelled() and task.exception() is not None:
            raise AssertionError("the worker loop died") from task.exception()


@contextlib.asynccontextmanager
async def connected(target: Target) -> AsyncIterator[Client]:
    client = await Client.connect(target.address)
    try:
        yield client
    finally:
        await client.close()


async def admin_status(target: Target) -> dict[bytes, tuple[int, int, int]]:
    async with await Admin.connect(target.address) as admin:
        return await admin.status()


# ----------------------------------------------------------------------------
# 1. libgearman CLI through our server


@pytest.mark.parametrize("options", [[], ["-I"], ["-L"], ["-u", "cli-unique-1"]],
                         ids=["normal", "high", "low", "unique"])
def test_cli_foreground_reverse_through_ref(
        ref: Target, spawn: Callable[..., subprocess.Popen[bytes]], options: list[str]) -> None:
    gearman = gearman_cli()
    worker = spawn(gearman, *hp(ref), "-w", "-f", "reverse", "-c", "1", "--", "rev")
    # The worker is registered: gearadmin --status shows one available worker.
    poll(lambda: b"reverse\t0\t0\t1\n" in gearadmin(ref, "--status").stdout,
         "the gearman -w worker to register 'reverse'")
    out = run_ok(gearman, *hp(ref), *options, "-f", "reverse", "hello")
    assert out.strip() == b"olleh"
    status, _, stderr = finish(worker)
    assert status == 0, stderr
    poll(lambda: gearadmin(ref, "--status").stdout == b"reverse\t0\t0\t0\n.\n",
         "the finished worker to leave 'status'")


def test_cli_background_jobs_run_by_a_later_worker(
        ref: Target, spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path) -> None:
    gearman = gearman_cli()
    submits = [("n1", []), ("h1", ["-I"]), ("l1", ["-L"]), ("u1", ["-u", "bg-unique"]),
               ("u1", ["-u", "bg-unique"])]  # the same unique again: coalesces, no 5th job
    for data, options in submits:
        assert run_ok(gearman, *hp(ref), "-b", *options, "-f", "bgjob", data) == b""
    assert gearadmin(ref, "--status").stdout == b"bgjob\t4\t0\t0\n.\n"
    assert gearadmin(ref, "--priority-status").stdout == b"bgjob\t1\t2\t1\t0\n.\n"
    uniques = gearadmin(ref, "--show-unique-jobs").stdout.splitlines()
    assert b"bg-unique" in uniques and len(uniques) == 5  # 4 jobs and "."

    out = tmp_path / "ran.txt"
    worker = spawn(gearman, *hp(ref), "-w", "-f", "bgjob", "-c", "4", "--",
                   "sh", "-c", f'cat >> "{out}"; echo >> "{out}"')
    status, _, stderr = finish(worker)
    assert status == 0, stderr
    # High first, then normal in submission order, then low.
    assert out.read_text().splitlines() == ["h1", "n1", "u1", "l1"]
    poll(lambda: gearadmin(ref, "--status").stdout == b"bgjob\t0\t0\t0\n.\n",
         "the finished worker to leave 'status'")


# ----------------------------------------------------------------------------
# 2. gearadmin: our server against gearmand, same setup


async def build_admin_state(target: Target, stack: contextlib.AsyncExitStack) -> bytes:
    """Background jobs of three priorities, one foreground job waiting, a worker with
    two functions and a client id running one job, a CAN_DO_TIMEOUT worker.
    Returns the handle of the first job (queued, background)."""
    client = await stack.enter_async_context(connected(target))
    first = await client.submit("alpha", b"one", background=True)
    await client.submit("alpha", b"two", unique="u-low", background=True, priority=Priority.LOW)
    await client.submit("beta", b"three", unique="u-high", background=True,
                        priority=Priority.HIGH)
    await client.submit("beta", b"four", unique="u-fg")

    worker = await Link.open(target.address)
    stack.push_async_callback(worker.close)
    worker.send(T.SET_CLIENT_ID, b"admin-worker")
    worker.send(T.CAN_DO, b"alpha")
    worker.send(T.CAN_DO, b"beta")
    worker.send(T.GRAB_JOB_UNIQ)
    await worker.drain()
    assigned = await next_packet(worker)
    assert assigned.type == T.JOB_ASSIGN_UNIQ and assigned["unique"] == b"u-high"

    timed = await Link.open(target.address)
    stack.push_async_callback(timed.close)
    timed.send(T.CAN_DO_TIMEOUT, b"gamma", b"5000")
    await echo_sync(timed)
    return first.handle


def _rows(output: bytes) -> list[bytes]:
    """A list reply's rows in a canonical order, its "." terminator last.

    gearmand prints 'status'/'prioritystatus' in function-hash-bucket order, 'show
    jobs' and 'show unique jobs' in job-hash order and 'workers' per I/O thread;
    ours prints creation order.  That difference is reported, not asserted here."""
    lines = output.split(b"\n")
    assert lines[-2:] == [b".", b""], output
    return [*sorted(lines[:-2]), b"."]


def _normalise(option: str, target: Target, output: bytes) -> object:
    if option == "--workers":
        rows = _rows(output)
        for row in rows[:-1]:
            assert re.fullmatch(rb"\d+ 127\.0\.0\.1 \S+ :( \S+)*", row), row
        return [*sorted(re.sub(rb"^\d+ ", b"FD ", row) for row in rows[:-1]), b"."]
    if option == "--getpid":
        assert output == b"%d\n" % target.pid
        return b"PID\n"
    if option == "--server-version":
        match = re.fullmatch(rb"(\d+\.\d+\.\d+)\S*\n", output)
        assert match, output
        return match.group(1)  # ours must claim the release it follows
    if option in ("--status", "--show-jobs", "--show-unique-jobs", "--priority-status"):
        return _rows(output)
    return output


ADMIN_OPTIONS = ["--status", "--workers", "--server-version", "--server-verbose", "--getpid",
                 "--show-jobs", "--show-unique-jobs", "--priority-status"]

#: What ``build_admin_state`` must show, normalised (handles as H:*:N), so that equal
#: but wrong answers from both servers do not pass.
EXPECTED: dict[str, object] = {
    "--status": [b"alpha\t2\t0\t1", b"beta\t2\t1\t1", b"gamma\t0\t0\t1", b"."],
    "--priority-status": [b"alpha\t0\t1\t1\t1", b"beta\t0\t1\t0\t1", b"gamma\t0\t0\t0\t1",
                          b"."],
    "--show-jobs": [b"H:*:1\t0\t0\t1", b"H:*:2\t0\t0\t1", b"H:*:3\t0\t0\t1",
                    b"H:*:4\t0\t0\t0", b"."],
    "--show-unique-jobs": [b"", b"u-fg", b"u-high", b"u-low", b"."],
    "--workers": [b"FD 127.0.0.1 - :", b"FD 127.0.0.1 - :",  # the client, gearadmin itself
                  b"FD 127.0.0.1 - : gamma", b"FD 127.0.0.1 admin-worker : beta alpha", b"."],
    "--server-verbose": b"ERROR\n",
    "--getpid": b"PID\n",
}


def _hostless(value: object) -> object:
    if isinstance(value, list):
        return [re.sub(rb"^H:[^\t]*:(\d+)", rb"H:*:\1", row) for row in value]
    return value


@pytest.mark.parametrize("option", ADMIN_OPTIONS)
async def test_gearadmin_output_matches_gearmand(ref: Target, gearmand: Target,
                                                 option: str) -> None:
    gearadmin_cli()
    outputs = {}
    async with contextlib.AsyncExitStack() as stack:
        for target in (ref, gearmand):
            await build_admin_state(target, stack)
        for target in (ref, gearmand):
            result = await asyncio.to_thread(gearadmin, target, option)
            assert result.returncode == 0 and result.stderr == b"", result
            outputs[target.name] = (result.stdout, _normalise(option, target, result.stdout))
    assert outputs["ref"][1] == outputs["gearmand"][1], (
        f"gearadmin {option}:\n ref:      {outputs['ref'][0]!r}\n"
        f" gearmand: {outputs['gearmand'][0]!r}")
    if option in EXPECTED:
        assert _hostless(outputs["ref"][1]) == EXPECTED[option]


async def test_gearadmin_create_drop_cancel_match_gearmand(ref: Target,
                                                           gearmand: Target) -> None:
    gearadmin_cli()
    steps = [("--create-function", "fresh"), ("--status",), ("--drop-function", "fresh"),
             ("--status",), ("--drop-function", "fresh"),  # gone: "function not found"
             ("--drop-function", "alpha"),  # a worker serves it: refused
             ("--cancel-job", "H:no-such-host:999"),
             ("--cancel-job", "FIRST"),  # the first background job, queued
             ("--show-jobs",), ("--status",)]
    transcripts: dict[str, list[tuple[object, ...]]] = {}
    async with contextlib.AsyncExitStack() as stack:
        for target in (ref, gearmand):
            first = (await build_admin_state(target, stack)).decode()
            transcript = transcripts[target.name] = []
            for step in steps:
                args = [first if arg == "FIRST" else arg for arg in step]
                result = await asyncio.to_thread(gearadmin, target, *args)
                stdout = (_rows(result.stdout) if step[0] in ("--status", "--show-jobs")
                          else result.stdout)
                transcript.append((step, result.returncode, stdout, result.stderr))
    for ours, theirs in zip(transcripts["ref"], transcripts["gearmand"], strict=True):
        assert ours == theirs
    # And the answers are the expected ones, not merely equal.
    answers = {step[0] + (step[1] if len(step) > 1 else ""): (out, err)
               for step, _, out, err in transcripts["ref"]}
    assert answers["--create-functionfresh"] == (b"OK\n", b"")
    assert answers["--drop-functionalpha"] == (
        b"", b"Error: there are still connected workers or executing clients\r\n")
    assert answers["--cancel-jobH:no-such-host:999"] == (b"", b"Error: UNKNOWN_JOB\r\n")
    assert answers["--cancel-jobFIRST"] == (b"OK\n", b"")


# ----------------------------------------------------------------------------
# 3. Our library against both servers


async def test_lib_priorities_background_and_foreground(server: Target) -> None:
    ran: list[bytes] = []
    all_ran = asyncio.Event()

    def record(job: WorkerJob) -> bytes:
        ran.append(job.data)
        if len(ran) == 6:
            all_ran.set()
        return b"done:" + job.data

    async with connected(server) as client:
        background = [await client.submit("prio", b"bg-normal", background=True),
                      await client.submit("prio", b"bg-high", background=True,
                                          priority=Priority.HIGH),
                      await client.submit("prio", b"bg-low", background=True,
                                          priority=Priority.LOW)]
        foreground = [await client.submit("prio", b"fg-normal"),
                      await client.submit("prio", b"fg-high", priority=Priority.HIGH),
                      await client.submit("prio", b"fg-low", priority=Priority.LOW)]
        assert all(job.background and job.handle for job in background)
        assert len({job.handle for job in background + foreground}) == 6
        assert (await admin_status(server))[b"prio"] == (6, 0, 0)
        async with serving(server, {"prio": record}):
            results = [await job.result(WAIT) for job in foreground]
            await asyncio.wait_for(all_ran.wait(), WAIT)
        assert results == [b"done:fg-normal", b"done:fg-high", b"done:fg-low"]
        # Per function: every high job, then normal, then low; FIFO within a level.
        assert ran == [b"bg-high", b"fg-high", b"bg-normal", b"fg-normal", b"bg-low", b"fg-low"]
        with pytest.raises(GearmanError):
            await background[0].result(1)


async def test_lib_unique_coalesces_across_clients(server: Target) -> None:
    calls: list[bytes] = []

    def handler(job: WorkerJob) -> bytes:
        calls.append(job.data)
        return b"R:" + job.data

    async with connected(server) as first, connected(server) as second:
        one = await first.submit("coalesce", b"payload", unique="same-unique")
        two = await second.submit("coalesce", b"payload", unique="same-unique")
        assert one.handle == two.handle
        assert (await admin_status(server))[b"coalesce"] == (1, 0, 0)
        waiting = await first.get_status_unique("same-unique")
        assert (waiting.known, waiting.running, waiting.waiting_clients) == (True, False, 2)
        async with serving(server, {"coalesce": handler}):
            assert await one.result(WAIT) == b"R:payload"
            assert await two.result(WAIT) == b"R:payload"
        assert calls == [b"payload"]


async def test_lib_same_unique_twice_on_one_connection(server: Target) -> None:
    """Two submits of one unique on one connection: both jobs complete, and each job
    sees the worker's WORK_DATA once (the server forwards one copy per submit)."""
    async def handler(job: WorkerJob) -> bytes:
        job.send_data(b"partial")
        return b"whole"

    async with connected(server) as client:
        one = await client.submit("twice", b"x", unique="u-twice")
        two = await client.submit("twice", b"x", unique="u-twice")
        assert one.handle == two.handle
        async with serving(server, {"twice": handler}):
            assert await one.result(WAIT) == b"whole"
            assert await two.result(WAIT) == b"whole"
            assert await client.echo(b"flush") == b"flush"  # every copy has arrived
        assert one.data == [b"partial"]
        assert two.data == [b"partial"]


async def test_lib_epoch_job_in_the_past_runs(server: Target) -> None:
    ran: asyncio.Queue[bytes] = asyncio.Queue()

    def handler(job: WorkerJob) -> bytes:
        ran.put_nowait(job.data)
        return b""

    async with connected(server) as client:
        job = await client.submit("epochal", b"from-the-past", epoch=int(time.time()) - 3600)
        assert job.background and job.handle
        async with serving(server, {"epochal": handler}):
            assert await asyncio.wait_for(ran.get(), WAIT) == b"from-the-past"


async def test_lib_data_warning_status_arrive_in_order_before_result(server: Target) -> None:
    def handler(job: WorkerJob) -> bytes:
        job.send_data(b"d1")
        job.send_warning(b"w1")
        job.send_status(1, 3)
        job.send_data(b"d2")
        job.send_status(2, 3)
        job.send_warning(b"w2")
        return b"result"

    events: list[tuple[object, ...]] = []
    async with connected(server) as client, serving(server, {"progress": handler}):
        job = await client.submit(
            "progress", b"x",
            on_data=lambda data: events.append(("data", data)),
            on_warning=lambda data: events.append(("warning", data)),
            on_status=lambda num, den: events.append(("status", num, den)))
        events.append(("result", await job.result(WAIT)))
    assert events == [("data", b"d1"), ("warning", b"w1"), ("status", 1, 3), ("data", b"d2"),
                      ("status", 2, 3), ("warning", b"w2"), ("result", b"result")]
    assert job.data == [b"d1", b"d2"] and job.warnings == [b"w1", b"w2"]
    assert job.status == (2, 3)


async def test_lib_get_status_queued_running_unknown(server: Target) -> None:
    release = asyncio.Event()
    reported = asyncio.Event()

    async def handler(job: WorkerJob) -> bytes:
        job.send_status(3, 7)
        await release.wait()
        return b"ok"

    async with connected(server) as client:
        unknown = await client.get_status(b"H:no-such-host:12345")
        assert (unknown.known, unknown.running, unknown.numerator, unknown.denominator) == (
            False, False, 0, 0)
        unknown_unique = await client.get_status_unique("no-such-unique")
        assert (unknown_unique.known, unknown_unique.running) == (False, False)

        job = await client.submit("slow", b"x", unique="status-unique",
                                  on_status=lambda num, den: reported.set())
        queued = await client.get_status(job.handle)
        assert (queued.known, queued.running, queued.numerator, queued.denominator) == (
            True, False, 0, 0)
        queued_unique = await client.get_status_unique("status-unique")
        assert (queued_unique.known, queued_unique.running, queued_unique.waiting_clients) == (
            True, False, 1)

        async with serving(server, {"slow": handler}):
            await asyncio.wait_for(reported.wait(), WAIT)  # the server has stored 3/7
            running = await client.get_status(job.handle)
            assert (running.known, running.running, running.numerator,
                    running.denominator) == (True, True, 3, 7)
            running_unique = await client.get_status_unique("status-unique")
            assert (running_unique.known, running_unique.running, running_unique.numerator,
                    running_unique.denominator) == (True, True, 3, 7)
            release.set()
            assert await job.result(WAIT) == b"ok"
        done = await client.get_status(job.handle)
        assert (done.known, done.running) == (False, False)


async def test_lib_echo(server: Target) -> None:
    async with connected(server) as client:
        for payload in (b"", b"ping", b"nul\x00inside\x00", bytes(range(256)) * 4):
            assert await client.echo(payload) == payload


def _raise_value_error(job: WorkerJob) -> bytes:
    raise ValueError("boom:" + job.data.decode())


def _raise_work_failed(job: WorkerJob) -> bytes:
    raise WorkFailed("no")


async def test_lib_exception_with_option_is_job_exception(server: Target) -> None:
    async with connected(server) as client, serving(server, {"boom": _raise_value_error}):
        await client.set_option("exceptions")
        with pytest.raises(JobException) as raised:
            await client.run("boom", b"a", timeout=WAIT)
        assert raised.value.data == b"boom:a"


async def test_lib_exception_without_option_is_job_failed(server: Target) -> None:
    """gearmand substitutes WORK_FAIL for WORK_EXCEPTION here, and its copy carries the
    handle's NUL terminator (payload ``H:host:1\\0``); the client must still match it."""
    async with connected(server) as client, serving(server, {"boom": _raise_value_error}):
        job = await client.submit("boom", b"b")
        try:
            with pytest.raises(JobFailed) as raised:
                await job.result(WAIT / 2)
        except TimeoutError:
            pytest.fail(f"no failure reached job {job.handle!r}: the server's WORK_FAIL "
                        "was not matched to it (trailing NUL after the handle?)")
        assert not isinstance(raised.value, JobException)


@pytest.mark.parametrize("exceptions", [False, True], ids=["plain", "exceptions-option"])
async def test_lib_work_failed_is_job_failed(server: Target, exceptions: bool) -> None:
    async with connected(server) as client, serving(server, {"fails": _raise_work_failed}):
        if exceptions:
            await client.set_option("exceptions")
        with pytest.raises(JobFailed) as raised:
            await client.run("fails", b"c", timeout=WAIT)
        assert not isinstance(raised.value, JobException)


async def test_lib_can_do_timeout_registration_accepted(server: Target) -> None:
    async with connected(server) as client, serving(
            server, {"timed": lambda job: job.data.upper()}, timeout_ms=30_000):
        assert (await admin_status(server))[b"timed"] == (0, 0, 1)
        assert await client.run("timed", b"abc", timeout=WAIT) == b"ABC"


async def test_lib_admin_status_numbers(server: Target) -> None:
    async with connected(server) as client:
        await client.submit("counted", b"1", background=True)
        await client.submit("counted", b"2", background=True, priority=Priority.LOW)
        assert await admin_status(server) == {b"counted": (2, 0, 0)}
        async with await Link.open(server.address) as worker:
            worker.send(T.CAN_DO, b"counted")
            await echo_sync(worker)
            assert await admin_status(server) == {b"counted": (2, 0, 1)}
            worker.send(T.GRAB_JOB)
            await worker.drain()
            assigned = await next_packet(worker)
            assert assigned.type == T.JOB_ASSIGN and assigned["data"] == b"1"
            assert await admin_status(server) == {b"counted": (2, 1, 1)}
            worker.send(T.WORK_COMPLETE, assigned["handle"], b"")
            await echo_sync(worker)
            assert await admin_status(server) == {b"counted": (1, 0, 1)}
        # The worker is gone; the function stays listed.
        await apoll(lambda: _status_is(server, {b"counted": (1, 0, 0)}),
                    "the worker's disconnect to be seen")


async def _status_is(target: Target, expected: dict[bytes, tuple[int, int, int]]) -> bool:
    return await admin_status(target) == expected


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
async def test_lib_submit_reduce_grab_job_all(server: Target, background: bool) -> None:
    async with connected(server) as client, await Link.open(server.address) as worker:
        job = await client.submit_reduce("mapper", b"map-me", reducer="reducer-fn",
                                         unique="reduce-unique", background=background)
        assert job.handle
        worker.send(T.CAN_DO, b"mapper")
        worker.send(T.GRAB_JOB_ALL)
        await worker.drain()
        assigned = await next_packet(worker)
        assert assigned.type == T.JOB_ASSIGN_ALL, assigned
        assert assigned.fields() == {"handle": job.handle, "function": b"mapper",
                                     "unique": b"reduce-unique", "reducer": b"reducer-fn",
                                     "data": b"map-me"}
        worker.send(T.WORK_COMPLETE, job.handle, b"reduced")
        await worker.drain()
        if not background:
            assert await job.result(WAIT) == b"reduced"
        # A plain job asked for with GRAB_JOB_ALL comes as JOB_ASSIGN_UNIQ.
        await client.submit("mapper", b"plain", unique="plain-unique", background=True)
        worker.send(T.GRAB_JOB_ALL)
        await worker.drain()
        plain = await next_packet(worker)
        assert plain.type == T.JOB_ASSIGN_UNIQ
        assert (plain["unique"], plain["data"]) == (b"plain-unique", b"plain")


# ----------------------------------------------------------------------------
# 4. PHP and Perl


@functools.cache
def _php_problem() -> str | None:
    if shutil.which("php") is None:
        return "php is not installed: apt-get install php-cli php-gearman"
    probe = run("php", "-r", 'exit(class_exists("GearmanClient") ? 0 : 1);')
    if probe.returncode != 0:
        return "the PHP gearman extension is missing: apt-get install php-gearman"
    return None


@functools.cache
def _perl_problem() -> str | None:
    if shutil.which("perl") is None:
        return "perl is not installed: apt-get install perl libgearman-client-perl"
    probe = run("perl", "-MGearman::Client", "-MGearman::Worker", "-e", "1")
    if probe.returncode != 0:
        return ("the Perl modules Gearman::Client / Gearman::Worker are missing: "
                "apt-get install libgearman-client-perl")
    return None


def require_php() -> None:
    problem = _php_problem()
    if problem:
        pytest.skip(problem)


def require_perl() -> None:
    problem = _perl_problem()
    if problem:
        pytest.skip(problem)


PHP_WORKER = """<?php
[$_, $port, $count] = $argv;
$worker = new GearmanWorker();
$worker->addServer("127.0.0.1", (int)$port);
$worker->setTimeout(15000);
$worker->addFunction("reverse", function (GearmanJob $job) { return strrev($job->workload()); });
for ($i = 0; $i < (int)$count; $i++) {
    if (!$worker->work()) {
        fwrite(STDERR, "work() failed: " . $worker->returnCode() . " " . $worker->error() . "\\n");
        exit(1);
    }
}
"""

PHP_CLIENT = """<?php
[$_, $port, $mode, $function, $data] = $argv;
$client = new GearmanClient();
$client->addServer("127.0.0.1", (int)$port);
$client->setTimeout(15000);
$result = $mode === "normal" ? $client->doNormal($function, $data)
                             : $client->doBackground($function, $data);
if ($client->returnCode() != GEARMAN_SUCCESS) {
    fwrite(STDERR, "failed: " . $client->returnCode() . " " . $client->error() . "\\n");
    exit(1);
}
echo $result;
"""

PERL_WORKER = """use strict; use warnings;
use Gearman::Worker;
my ($port, $count) = @ARGV;
my $worker = Gearman::Worker->new(job_servers => ["127.0.0.1:$port"]);
my $done = 0;
$worker->register_function(reverse => sub { $done++; return scalar reverse $_[0]->arg; });
$worker->work(stop_if => sub { $done >= $count });
"""

PERL_CLIENT = """use strict; use warnings;
use Gearman::Client;
my ($port, $function, $data) = @ARGV;
my $client = Gearman::Client->new(job_servers => ["127.0.0.1:$port"]);
my $result = $client->do_task($function => $data, {timeout => 15});
defined $result or die "do_task failed\\n";
print $$result;
"""


def _script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_php_worker_and_client_round_trip(
        server: Target, spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path) -> None:
    require_php()
    worker = spawn("php", _script(tmp_path, "worker.php", PHP_WORKER), str(server.port), "1")
    client = _script(tmp_path, "client.php", PHP_CLIENT)
    assert run_ok("php", client, str(server.port), "normal", "reverse", "hello php") == (
        b"php olleh")
    status, _, stderr = finish(worker)
    assert status == 0, stderr


async def test_php_background_job_is_picked_up(server: Target, tmp_path: Path) -> None:
    require_php()
    client = _script(tmp_path, "client.php", PHP_CLIENT)
    handle = await asyncio.to_thread(run_ok, "php", client, str(server.port), "background",
                                     "php-bg", "queued by php")
    assert re.fullmatch(rb"H:\S+:\d+", handle), handle
    assert (await admin_status(server))[b"php-bg"] == (1, 0, 0)
    async with await Link.open(server.address) as worker:
        worker.send(T.CAN_DO, b"php-bg")
        worker.send(T.GRAB_JOB_UNIQ)
        await worker.drain()
        assigned = await next_packet(worker)
        assert assigned.type == T.JOB_ASSIGN_UNIQ
        assert (assigned["handle"], assigned["function"], assigned["data"]) == (
            handle, b"php-bg", b"queued by php")
        worker.send(T.WORK_COMPLETE, handle, b"")
        await echo_sync(worker)
        assert (await admin_status(server))[b"php-bg"] == (0, 0, 1)


def test_perl_worker_and_client_round_trip(
        server: Target, spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path) -> None:
    require_perl()
    worker = spawn("perl", _script(tmp_path, "worker.pl", PERL_WORKER), str(server.port), "1")
    client = _script(tmp_path, "client.pl", PERL_CLIENT)
    assert run_ok("perl", client, str(server.port), "reverse", "hello perl") == b"lrep olleh"
    status, _, stderr = finish(worker)
    assert status == 0, stderr
