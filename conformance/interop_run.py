"""Playing the interop grid: each client library against each server, test by test.

A *cell* is one client library and one server target.  Each cell has a server
of its own (started fresh for it; a ``tcp://`` server is shared, the cell's
function names keep cells apart) and plays every test of
``conformance/interop.py`` on it in order.  The libraries reach the server
through a relay that forwards every byte and keeps them for ``--pcap-dir``;
the adapters' events, their stderr and the relay's connections make each
test's transcript.  Results are a ``RunResult`` whose targets are the cells
(``CLIENT@SERVER``), judged by per-pair baselines (``baselines/interop-CLIENT@SERVER.yaml``):
the run JSON, JUnit and HTML reports read them as they read any run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance.baselines import BASELINE_DIR, baseline_for, check_ids, judge
from conformance.events import AppEvent, Closed, Garbage
from conformance.interop import TESTS, Interop, InteropTest
from conformance.libraries import parse_library
from conformance.library import AppWire, LibraryTarget, spawn_adapter
from conformance.relay import Relay
from conformance.runner import pcap_path, write_capture
from conformance.specs import parse_target
from conformance.targets import Target
from conformance.transcript import Transcript
from reference_server import __version__
from reference_server.client import Admin
from results import CaseResult, Failure, RunResult, ScenarioInfo, TargetInfo, Verdict

SERVERS = ["gearmand", "perl", "gear", "ref"]
WORKER_FALLBACK = "libgearman"  # plays the worker where the client's library cannot
QUEUE = ["-q", "libsqlite3", "--libsqlite3-db", "{workdir}/queue.db"]  # for the Q test
BUDGET = 8.0  # seconds without progress (no event, no bulk data, no one working): stuck
BUSY_SPAN = 1.0  # a process seen runnable at every look for this long is working
AWAY = 1.0  # looks (0.25 s apart) further apart than this: the harness itself was held up
TEST_LIMIT = 180.0  # a test that keeps talking but never ends: stopped at this


@dataclass
class Options:
    jobs: int = 8  # cells at once (adapters mostly wait on each other)
    budget: float = BUDGET
    pcap_dir: Path | None = None
    baseline_dir: Path = BASELINE_DIR
    select: str = ""  # test letters to play ("" = all)
    # Captures to write once every cell is done (only tests that did not pass).
    captures: list[tuple[Path, Transcript, CaseResult]] = field(default_factory=list)


class AdapterSession:
    """One adapter process of a test, read through the client mode's ``AppWire``."""

    def __init__(self, name: str, library: LibraryTarget, job: dict[str, Any],
                 trial: CellTrial) -> None:
        self.name, self.library, self.job, self.trial = name, library, job, trial
        self.wire: AppWire | None = None
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, address: tuple[str, int], folder: Path) -> None:
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(self.job))
        env = {**os.environ, **self.library.env, "GEARSPEC_SERVER": f"{address[0]}:{address[1]}",
               "GEARSPEC_JOB": str(path), "GEARSPEC_TIMEOUT": str(TEST_LIMIT)}
        self.process = await spawn_adapter([*self.library.command, "run"], env,
                                           self.library.cwd)
        self.wire = AppWire(self.name, self.process, self.trial.transcript)
        self.trial.transcript.note(self.name, f"{self.library.name} adapter started")

    async def event(self, name: str, *, within: float) -> AppEvent:
        """The next event called ``name`` (``*``: any) the application saw; earlier
        others are passed over (they are in the transcript).  ``within``: how long
        nothing may happen (no event, no bulk data through the relay, no process
        working: ``last_activity``) before the libraries are taken to be stuck (a
        16 MiB transfer is slow, not stuck)."""
        assert self.wire is not None
        while True:
            event = await self.wire.next(time.monotonic() + 0.25)
            if event is None:
                if self.wire.eof:
                    raise Interop(-1, f"{self.name}: {name}", "the adapter ended")
                if time.monotonic() - self.trial.last_activity() > within:
                    raise Interop(-1, f"{self.name}: {name}",
                                  f"no progress for {within:.0f} s (no event, no workload "
                                  "moving, no one working)")
                continue
            self.wire.take()
            self.trial.active = time.monotonic()
            if isinstance(event, Closed):
                raise Interop(-1, f"{self.name}: {name}", "the adapter ended")
            if isinstance(event, Garbage):
                raise Interop(-1, f"{self.name}: {name}", f"a line that is not an event: "
                                                          f"{event.data[:100]!r}")
            if isinstance(event, AppEvent):
                if event.name == "unsupported":
                    raise Unplayable(str(event.fields.get("reason", b"").decode("latin-1")))
                if event.name == "error" and name not in ("*", "error"):
                    raise Interop(-1, f"{self.name}: {name}",
                                  f"error: {event.fields.get('message', b'')!r}")
                if name in ("*", event.name):
                    return event

    async def events(self, name: str, count: int, *, within: float) -> list[AppEvent]:
        return [await self.event(name, within=within) for _ in range(count)]

    async def ends(self, *, within: float) -> list[AppEvent]:
        """Every event until the adapter exits by itself."""
        assert self.process is not None and self.wire is not None
        seen = []
        with contextlib.suppress(Interop):
            while True:
                seen.append(await self.event("*", within=within))
        status = self.process.returncode
        if status not in (0, None):
            raise Interop(-1, f"{self.name} to exit 0", f"exit status {status}")
        return seen

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            self.trial.transcript.note(self.name, "killed by the harness")

    async def stderr(self) -> list[str]:
        await self.kill()
        assert self.process is not None and self.process.stderr is not None
        data = b""
        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(self.process.stderr.read(), 5)
        return [f"{self.name}: {line}" for line in
                data.decode("utf-8", "replace").splitlines()[-30:]]


def _runnable(pid: int) -> bool:
    """Whether any thread of a process is running or waiting only for a CPU (or the
    disk): state R or D.  A library waiting for an answer sleeps (S); one parsing
    16 MiB of JSON, a server storing it in a thread of its own (geard), or either
    starved by the machine's load, is runnable.  (CPU time would not do: gear's
    client polls and uses a third of a CPU while it waits, and a starved process
    uses none.)"""
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("R", "D"):
            return True
    return False


class Unplayable(Exception):
    """The adapter printed ``unsupported``: its library has no API for this."""


@dataclass
class CellTrial:
    """One test of one cell: the ``Trial`` the tests play through."""

    test: InteropTest
    client_library: LibraryTarget
    worker_library: LibraryTarget
    server: Target
    pair: str  # CLIENT@SERVER
    budget: float
    transcript: Transcript = field(default_factory=lambda: Transcript(record_raw=True))
    sessions: list[AdapterSession] = field(default_factory=list)
    address: tuple[str, int] = ("127.0.0.1", 0)
    relay: Relay | None = None
    active: float = field(default_factory=time.monotonic)  # the last adapter event
    busy: dict[int, float] = field(default_factory=dict)  # pid: runnable since
    looked: float = field(default_factory=time.monotonic)  # the last look at activity
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gearspec-io-")))

    def last_activity(self) -> float:
        """When anything last happened: an event, a byte through the relay, or an
        adapter or the server working (runnable at every look for ``BUSY_SPAN``):
        Perl's JSON::PP takes seconds over a 16 MiB workload, in silence, and so does
        a server storing it.  Libraries waiting for an answer that never comes do
        none of these.  Time the harness spent away (its own loop held up by another
        cell's 16 MiB, or the machine's load) is not silence: nobody was listening."""
        now = time.monotonic()
        if now - self.looked > AWAY:
            self.active = now
        self.looked = now
        pids = [s.process.pid for s in self.sessions if s.process] + \
            ([self.server.pid] if self.server.pid else [])
        for pid in pids:
            if not _runnable(pid):
                self.busy.pop(pid, None)
            elif now - self.busy.setdefault(pid, now) >= BUSY_SPAN:
                self.active = now
        return max(self.active, self.relay.last if self.relay else 0.0)

    def function(self, name: str) -> str:
        cell = "".join(c if c.isalnum() else "-" for c in self.pair)
        return f"{cell}-{self.test.code}-{name}"

    def can(self, feature: str) -> bool:
        assert self.client_library.description is not None
        return feature in self.client_library.capabilities

    async def _start(self, name: str, library: LibraryTarget, job: dict[str, Any]
                     ) -> AdapterSession:
        session = AdapterSession(name, library, job, self)
        self.sessions.append(session)
        await session.start(self.address, self.folder)
        self.active = time.monotonic()  # a new adapter gets the whole budget to show itself
        return session

    async def client(self, job: dict[str, Any], name: str = "client") -> AdapterSession:
        return await self._start(name, self.client_library, job)

    async def worker(self, job: dict[str, Any], name: str = "worker") -> AdapterSession:
        return await self._start(name, self.worker_library, job)

    async def status(self) -> dict[bytes, tuple[int, int, int]]:
        async with await Admin.connect(self.server.address) as admin:
            return await admin.status()

    async def restart_server(self) -> None:
        self.transcript.note("server", "restarting the server")
        await asyncio.to_thread(self.server.restart)
        self.active = time.monotonic()  # the libraries' reconnecting starts now

    async def finish(self) -> list[str]:
        log = []
        for session in self.sessions:
            log += await session.stderr()
        shutil.rmtree(self.folder, ignore_errors=True)
        return log


def pair_name(client: str, server: str) -> str:
    return f"{client}@{server}"


def _lacking(test: InteropTest, client: LibraryTarget, worker: LibraryTarget,
             server: Target) -> list[str]:
    missing = sorted(test.client - client.capabilities)
    missing += sorted(f"worker {need}" for need in test.worker - worker.capabilities)
    if "binary" in test.client:  # the bytes cross the worker's library too
        missing += [] if "binary" in worker.capabilities else ["worker binary"]
    return missing + sorted(f"server {need}" for need in test.server - server.capabilities)


async def play_test(trial: CellTrial) -> CaseResult:
    """One test in one cell: its verdict from what the libraries reported."""
    test = trial.test
    started = time.monotonic()
    verdict, message, failure = Verdict.PASS, "", None
    try:
        trial.relay = relay = Relay(trial.server, trial.transcript)
        trial.address = await relay.open()
        await asyncio.wait_for(test.play(trial), TEST_LIMIT)
    except Interop as unmet:
        step = unmet.step if unmet.step >= 0 else len(test.steps) - 1
        verdict, message = Verdict.FAIL, f"step {step}: expected {unmet.expected}; " \
                                         f"saw {unmet.actual}"
        failure = Failure(step, 0, test.steps[step], unmet.expected, unmet.actual)
    except Unplayable as why:
        verdict, message = Verdict.UNSUPPORTED, f"the adapter says: {why}"
    except TimeoutError:
        verdict, message = Verdict.FAIL, f"the test did not end within {TEST_LIMIT:.0f} s"
    except Exception as error:  # the harness or the server broke: this test's ERROR only
        verdict, message = Verdict.ERROR, f"{type(error).__name__}: {error}"
    finally:
        log = await trial.finish()
        await relay.close()
    result = CaseResult(test.id, trial.pair, verdict, message, failure.step if failure else None,
                        round(time.monotonic() - started, 3), trial.transcript.entries, log,
                        failure=failure,
                        missing=["library API"] if verdict is Verdict.UNSUPPORTED else [])
    return result


async def _server(spec: str, options: list[str]) -> Target:
    server = parse_target(spec, options)
    await asyncio.to_thread(server.start)
    return server


async def play_cell(client: str, server_spec: str, options: Options) -> list[CaseResult]:
    """Every test of one pair, one after another, on a server of its own (each test
    with its own function names; restarted after a test that failed), judged by the
    pair's baseline."""
    pair = pair_name(client, server_spec)
    baseline = baseline_for(f"interop-{pair}", options.baseline_dir)
    check_ids(baseline, {test.id for test in TESTS.values()})
    library = parse_library(f"client:{client}")
    await asyncio.to_thread(library.start)
    fallback = library
    if client != WORKER_FALLBACK:
        fallback = parse_library(f"client:{WORKER_FALLBACK}")
        await asyncio.to_thread(fallback.start)
    server = await _server(server_spec, [])

    async def one(test: InteropTest) -> CaseResult:
        worker = library if not (test.worker - library.capabilities) and \
            "role.worker" in library.capabilities else fallback
        missing = _lacking(test, library, worker, server)
        if missing:
            return CaseResult(test.id, pair, Verdict.UNSUPPORTED,
                              f"needs {', '.join(missing)}", missing=missing)
        return await _play_on(test, library, worker, server, server_spec, pair, options)

    results = []
    try:
        for test in (t for code, t in TESTS.items() if not options.select or
                     code in options.select):
            results.append(result := await one(test))
            if not server.alive(settle=0.2):  # the test brought the server down
                result.message += f" (the server died: {server.exit_status()}; restarted)"
                await asyncio.to_thread(server.restart)
            elif result.verdict in (Verdict.FAIL, Verdict.ERROR) and \
                    "restart" in server.capabilities:  # (a tcp:// server is as it is)
                # A test that did not end leaves jobs, workers and half-read workloads
                # behind (geard still chewing a 16 MiB job it will never hand out):
                # the next test starts on a server with nothing of it left.
                await asyncio.to_thread(server.restart)
    finally:
        await asyncio.to_thread(server.stop)
    for result in results:
        judge(result, baseline, strict=False)
    return results


async def _play_on(test: InteropTest, library: LibraryTarget, worker: LibraryTarget,
                   server: Target, spec: str, pair: str, options: Options) -> CaseResult:
    """A test on the cell's server, or on one of its own with a persistent queue."""
    own = await _server(spec, QUEUE) if "persistence" in test.server else None
    trial = CellTrial(test, library, worker, own or server, pair, options.budget)
    if worker is not library:
        trial.transcript.note("worker", f"the worker side is {worker.name} (the client's "
                                        f"library cannot do {', '.join(sorted(test.worker))})")
    try:
        result = await play_test(trial)
    finally:
        if own is not None:
            await asyncio.to_thread(own.stop)
    if options.pcap_dir is not None and trial.transcript.raw and result.verdict not in \
            (Verdict.PASS, Verdict.UNSUPPORTED):
        # Written when the grid is done: scapy is slow and holds the GIL, and the
        # cells still playing must not fall silent while it works.
        options.captures.append((pcap_path(options.pcap_dir, pair, test.id),
                                 trial.transcript, result))
    return result


def scenario_infos() -> list[ScenarioInfo]:
    """The tests as the reports show scenarios: id, title, steps."""
    return [ScenarioInfo(t.id, f"{t.code}: {t.title}", "MUST", t.source, t.title,
                         ["interop"], "conformance/interop.py", 0, list(t.steps))
            for t in TESTS.values()]


async def run_grid(clients: list[str], servers: list[str], options: Options) -> RunResult:
    """Every pair, cells ``options.jobs`` at once; one RunResult, a target per cell."""
    run = RunResult(started=datetime.now(UTC).isoformat(timespec="seconds"),
                    gearspec_version=__version__, scenarios=scenario_infos(),
                    options={"mode": "interop", "clients": clients, "servers": servers,
                             "jobs": options.jobs, "budget": options.budget,
                             "pcap_dir": str(options.pcap_dir or ""),
                             "tests": options.select or "".join(TESTS)})
    limit = asyncio.Semaphore(max(1, options.jobs))

    async def cell(client: str, server: str) -> list[CaseResult]:
        async with limit:
            return await play_cell(client, server, options)

    pairs = [(c, s) for c in clients for s in servers]
    cells = await asyncio.gather(*(cell(c, s) for c, s in pairs))
    for path, transcript, result in options.captures:
        assert transcript.raw is not None
        if await write_capture(path, transcript.raw, transcript.started):
            result.capture = str(path)
    for (client, server), results in zip(pairs, cells, strict=True):
        run.targets.append(TargetInfo(pair_name(client, server), "interop"))
        run.results.extend(results)
    run.finished = datetime.now(UTC).isoformat(timespec="seconds")
    return run
