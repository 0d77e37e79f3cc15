"""Client mode: the harness is the job server, the target a client or worker library.

Autobahn's ``fuzzingserver`` and h2spec's ``h2specd`` test clients this way:
for each case gearspec listens on a free 127.0.0.1 port, starts the library's
adapter (``conformance/adapters/README.md`` is the contract) with the case's
job, and plays the case's steps as the server: ``lib expect SUBMIT_JOB``
reads what the library sent on the first connection it opened, ``lib send
JOB_CREATED`` answers it, ``app reports complete`` reads what the adapter
printed the application saw.  The steps, the matching, the transcript and
the verdicts are the server mode's: only the side of the socket changes.

A library under test may hang or crash; neither may hang the run.  Every
case has a budget (``budget:``, 10 s by default, times ``--timeout-factor``);
past it the adapter is killed and the case FAILs saying so.  An adapter that
dies on its own (an exit status other than 0, a signal) fails the case with
its status and the end of its stderr, which the report shows beside the wire.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.events import AppEvent, Closed, Garbage, Incoming
from conformance.services import free_port, release_port
from conformance.targets import Target, TargetError
from conformance.transcript import Transcript
from conformance.wire import CaseEnd, NoConnection, RealClock, SocketStream

ACCEPT_TIMEOUT = 5.0  # how long the library has to open a connection a step needs
ADAPTER_NICENESS = 10  # adapters run below the harness (spawn_adapter says why)


@dataclass(frozen=True)
class Description:
    """What ``ADAPTER describe`` says of its library."""

    library: str
    version: str
    roles: frozenset[str]
    features: frozenset[str]

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"library", *(f"role.{r}" for r in self.roles), *self.features})


def describe(command: list[str], cwd: Path | None = None, timeout: float = 30.0,
             env: dict[str, str] | None = None) -> Description:
    """Run ``COMMAND describe`` (blocking); a TargetError says what went wrong."""
    import subprocess

    try:
        done = subprocess.run([*command, "describe"], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL, check=False,
                              env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TargetError(f"{command[0]}: cannot describe the library: {error}") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        raise TargetError(f"{' '.join(command)} describe: exit status {done.returncode}: "
                          f"{tail}")
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return Description(str(data["library"]), str(data.get("version", "?")),
                           frozenset(data["roles"]), frozenset(data.get("features", [])))
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise TargetError(f"{' '.join(command)} describe: not a description "
                          f"({error}): {done.stdout[:200]!r}") from None


def to_bytes(value: Any) -> bytes:
    """An event field as the matchers compare it: text as Latin-1 bytes, numbers and
    booleans as their JSON text."""
    if isinstance(value, str):
        return value.encode("latin-1", "replace")
    return json.dumps(value).encode()


class AppWire:
    """The adapter's stdout: one JSON event a line, read as ``AppEvent`` s (a Wire's
    interface, so expectations judge them as they judge packets)."""

    def __init__(self, name: str, process: asyncio.subprocess.Process,
                 transcript: Transcript) -> None:
        self.name = name
        self.process = process
        self.transcript = transcript
        self.events: deque[Incoming] = deque()
        self.eof = False
        self.hung_up = False
        self.sync_markers: list[Any] = []
        self.lines: list[str] = []  # as printed, for the report
        self.unsupported: str | None = None  # the reason, if the adapter said it cannot

    @property
    def closed_by_server(self) -> bool:
        return self.eof

    def send(self, data: bytes, sync: bool = False) -> None:
        """Nothing is sent to an application."""

    async def next(self, deadline: float) -> Incoming | None:
        while not self.events:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            assert self.process.stdout is not None
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            except TimeoutError:
                return None
            if line:
                self._arrived(line)
            else:
                await self._ended()
        return self.events[0]

    async def _ended(self) -> None:
        """Output ended: the process's exit status (an ``exit`` event), then the close."""
        self.eof = True
        try:
            status = await asyncio.wait_for(self.process.wait(), 2.0)
        except TimeoutError:
            status = None  # closed its output but runs on
        if status is not None:
            event = AppEvent("exit", {"status": str(status).encode()})
            self.events.append(event)
            self.transcript.received(self.name, event)
        self.events.append(Closed())
        self.transcript.add(self.name, "event", "close", "the adapter's output ended")

    def _arrived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\n")
        self.lines.append(text)
        try:
            data = json.loads(text)
            name = str(data.pop("event"))
            event: Incoming = AppEvent(name, {k: to_bytes(v) for k, v in data.items()})
            if name == "unsupported":
                self.unsupported = str(data.get("reason", "the adapter cannot do this job"))
        except (ValueError, KeyError, AttributeError, TypeError):
            event = Garbage(line, "not a JSON event of the adapter contract")
        self.events.append(event)
        self.transcript.received(self.name, event)

    def take(self) -> Incoming:
        return self.events.popleft()

    def finish(self) -> None:
        """Nothing to half-close."""

    async def close(self) -> None:
        self.hung_up = True


@dataclass
class Listener:
    """The harness's server socket for one case: accepted connections in arrival order."""

    host: str = "127.0.0.1"
    port: int = 0
    server: asyncio.base_events.Server | None = None
    accepted: asyncio.Queue[SocketStream] = field(default_factory=asyncio.Queue)
    streams: list[SocketStream] = field(default_factory=list)

    async def open(self) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = SocketStream(reader, writer)
            self.streams.append(stream)
            await self.accepted.put(stream)

        # A port below the ephemeral range: restart_listener listens on it again.
        self.port = self.port or free_port(self.host)
        self.server = await asyncio.start_server(accept, self.host, self.port,
                                                 reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every connection (the library sees them close)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for stream in self.streams:
            await stream.close()
        self.streams.clear()
        while not self.accepted.empty():
            self.accepted.get_nowait()


class LibraryNetwork:
    """One case's side of the socket: the listener, the adapter, its output."""

    def __init__(self, target: LibraryTarget, factor: float) -> None:
        self.target = target
        self.factor = factor
        self.clock = RealClock()
        self.listener = Listener()
        self.process: asyncio.subprocess.Process | None = None
        self.app: AppWire | None = None
        self.folder: Path | None = None
        self.killed = False  # by the harness, at the end or past the budget

    def describe(self, name: str, tls_mode: str | None) -> str:
        return " (accepted from the library)"

    async def start_case(self, ctx: Any) -> None:
        """Listen, write the job, start the adapter."""
        await self.listener.open()
        job = ctx.scenario.library.resolved(ctx.resolve_text)
        self.folder = Path(tempfile.mkdtemp(prefix="gearspec-lib-"))
        (self.folder / "job.json").write_text(json.dumps(job))
        env = {**os.environ, **self.target.env,
               "GEARSPEC_SERVER": f"{self.listener.host}:{self.listener.port}",
               "GEARSPEC_JOB": str(self.folder / "job.json"),
               "GEARSPEC_TIMEOUT": str(ctx.budget)}
        ctx.transcript.note("app", f"adapter started: {json.dumps(job)}")
        self.process = await spawn_adapter([*self.target.command, "run"], env, self.target.cwd)
        self.app = ctx.wires["app"] = AppWire("app", self.process, ctx.transcript)

    async def open(self, name: str, tls_mode: str | None) -> SocketStream:
        """The next connection the library opens (a step names it on first use); if the
        adapter ends first (it could not do the job, say), there will be none."""
        accepting = asyncio.ensure_future(self.listener.accepted.get())
        ended = asyncio.ensure_future(self.process.wait()) if self.process else None
        waited = ACCEPT_TIMEOUT * self.factor
        done, _ = await asyncio.wait([f for f in (accepting, ended) if f is not None],
                                     timeout=waited, return_when=asyncio.FIRST_COMPLETED)
        if ended is not None:
            ended.cancel()
        if accepting in done:
            return accepting.result()
        accepting.cancel()
        why = "before the adapter ended" if ended in done else f"within {waited:.0f} s"
        raise NoConnection(f"the library opened no connection for {name} {why}")

    async def open_http(self, name: str) -> SocketStream:
        raise ConnectionError("a library case has no HTTP port")

    async def restart_listener(self, down: float) -> None:
        """Close every connection and the port; listen again on it after ``down``."""
        await self.listener.close()
        await asyncio.sleep(down)
        await self.listener.open()

    async def finish_case(self) -> CaseEnd:
        """Stop the adapter if it still runs; its stderr, how it died if it died on its
        own (an exit status other than 0, a signal), and the reason it gave if it
        printed ``unsupported`` (the library has no API for what the job asks)."""
        process, died = self.process, None
        stderr = b""
        if process is not None:
            if process.returncode is None:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            stdout = b""
            with contextlib.suppress(TimeoutError):
                stdout, stderr = await asyncio.wait_for(process.communicate(), 5)
            if self.app is not None:  # what no step read: an "unsupported" may be there
                for line in stdout.splitlines():
                    self.app._arrived(line + b"\n")
            status = process.returncode
            if not self.killed and status not in (0, None):
                died = f"the adapter died ({_how(status)})"
        await self.listener.close()
        release_port(self.listener.port)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        lines = stderr.decode("utf-8", "replace").splitlines()[-50:]
        if died is not None:
            tail = next((line for line in reversed(lines) if line.strip()), "")
            died += f": {tail}" if tail else ""
        unsupported = self.app.unsupported if self.app is not None else None
        return CaseEnd(lines, died, unsupported)


async def spawn_adapter(command: list[str], env: dict[str, str],
                        cwd: Path | None) -> asyncio.subprocess.Process:
    """Start an adapter: its own session (killed with its children), stdout and stderr
    read by the harness, and a lower priority than the harness.  The harness plays
    a job server that answers at once; libraries time that (Gearman::Worker drops
    its connection when a grab goes unanswered for 0.5 s), so a machine busy with
    libraries under test must not make the harness the slow one."""
    return await asyncio.create_subprocess_exec(
        "nice", "-n", str(ADAPTER_NICENESS), *command, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd,
        start_new_session=True, limit=1 << 26)  # a 16 MiB workload, JSON-escaped


def _how(status: int) -> str:
    if status < 0 and -status in signal.valid_signals():
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


@dataclass
class LibraryTarget(Target):
    """A client or worker library, through its adapter command (``client:NAME``)."""

    command: list[str] = field(default_factory=list)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Whether it can run here: None, or why not and what installs it (asked at start:
    # libgearman's adapter is compiled then).
    present: Callable[[], str | None] = lambda: None
    description: Description | None = None
    capabilities: frozenset[str] = frozenset({"library"})

    def start(self) -> None:
        missing = self.present()
        if missing is not None:
            raise TargetError(f"{self.name}: {missing}")
        self.description = describe(self.command, self.cwd, env=self.env)
        self.capabilities = self.description.capabilities

    def network(self, timeout_factor: float = 1.0) -> LibraryNetwork:  # type: ignore[override]
        return LibraryNetwork(self, timeout_factor)

    def version(self) -> str | None:
        return self.description.version if self.description else None

    def require_socket(self, what: str) -> None:
        raise TargetError(f"{self.name} is a library, not a server: {what} needs a server")
