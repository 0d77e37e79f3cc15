"""The ``inproc`` target: the catalog played against the reference server without sockets.

Like h11's tests, which drive the state machine with no network at all: the
server (``reference_server.memory.MemoryServer``: the sans-IO core with its
options, queues and HTTP module, on a memory transport) runs inside the
harness, and time is a number the engine moves.  A step that waits (an
expectation, a silence, a ``sleep``) does not sleep: it moves the server's
clock to the next moment something can happen (a CAN_DO_TIMEOUT falling due)
or to the step's deadline, whichever comes first.  So the whole catalog runs
in seconds, and a case's verdict never depends on how loaded the machine is.

The engine's ``Network``, ``Stream`` and ``Clock`` (``conformance.wire``) are
implemented here over the memory server; everything else (verbs, matching,
runner, baselines, reports) is what every other target uses.  Cases run one
at a time (they share the server's clock).  There is no TLS: the transport
has no bytes to encrypt.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conformance.services import ServiceError
from conformance.targets import Target, TargetError, fill_in
from conformance.wire import NoCaseHooks
from reference_server.memory import MemoryPeer, MemoryServer
from reference_server.usage import UsageError


class _Lines(logging.Handler):
    """The server's log lines, kept for the report (a process target's log file)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class MemoryClock:
    """The server's clock: ``sleep`` moves it, firing what falls due."""

    def __init__(self, target: InprocTarget) -> None:
        self.target = target

    def now(self) -> float:
        return self.target.server.now

    async def sleep(self, seconds: float) -> None:
        self.target.server.advance(seconds)
        await asyncio.sleep(0)  # let other tasks see what it caused


class MemoryStream:
    """One connection to the memory server."""

    reset = False

    def __init__(self, network: MemoryNetwork, peer: MemoryPeer) -> None:
        self.network = network
        self.peer = peer
        self.open = True

    def write(self, data: bytes) -> bool:
        if not self.open or self.peer.closed:
            return False
        self.peer.send(data)
        return True

    async def read(self, deadline: float) -> bytes | None:
        while True:
            data = self.peer.receive()
            if data:
                return data
            if self.peer.closed:
                return b""
            if not self.network.pass_time(deadline):
                return None
            await asyncio.sleep(0)

    def write_eof(self) -> bool:
        if not self.open or self.peer.closed:
            return False
        self.peer.shutdown_write()
        return True

    async def close(self) -> bool:
        was_open, self.open = self.open and not self.peer.closed, False
        self.peer.close()
        return was_open


class MemoryNetwork(NoCaseHooks):
    """Connections to an in-process server; time passes only when a step waits."""

    def __init__(self, target: InprocTarget) -> None:
        self.target = target
        self.clock = MemoryClock(target)

    def describe(self, name: str, tls_mode: str | None) -> str:
        return " (in process)"

    def _server(self) -> MemoryServer:
        server = self.target.server
        if not server.alive:
            raise ConnectionRefusedError("the in-process server is not running")
        return server

    async def open(self, name: str, tls_mode: str | None) -> MemoryStream:
        return MemoryStream(self, self._server().connect())

    async def open_http(self, name: str) -> MemoryStream:
        if self.target.http_port is None:
            raise ConnectionError("this server has no HTTP port")
        return MemoryStream(self, self._server().connect(http=True))

    def pass_time(self, deadline: float) -> bool:
        """Move the clock to the server's next timer or to ``deadline``, whichever is
        first; False once the deadline has come (nothing more can happen by then)."""
        server = self.target.server
        now = server.now
        if now >= deadline:
            return False
        due = server.next_deadline() if server.alive else None
        until = deadline if due is None or due > deadline else max(due, now)
        server.advance(until - now)
        return True


@dataclass
class InprocTarget(Target):
    """The reference server inside the harness (see the module docstring)."""

    name: str = "inproc"
    capabilities: frozenset[str] = frozenset({"echo", "grab-job-uniq", "restart",
                                              "gearmand-options", "persistence", "http"})
    server: MemoryServer = None  # type: ignore[assignment]  # made by start()
    workdir: Path | None = None
    log: _Lines | None = None

    @property
    def concurrent(self) -> bool:
        return False  # the cases would share (and move) one clock

    def require_socket(self, what: str) -> None:
        raise TargetError(f"{self.name}: the in-process server has no socket, and {what} "
                          "needs a server on a port (use ref)")

    def network(self, timeout_factor: float = 1.0) -> MemoryNetwork:  # type: ignore[override]
        return MemoryNetwork(self)

    def start(self) -> None:
        self.log = _Lines()
        logging.getLogger("reference_server").addHandler(self.log)
        self.workdir = Path(tempfile.mkdtemp(prefix="gearspec-inproc-"))
        try:
            fill = {"{workdir}": str(self.workdir), **self.services.fill(self.options)}
        except ServiceError as error:
            self.stop()
            raise TargetError(f"{self.name}: {error}") from None
        # {http_port} is a free port's number: nothing listens on it, the HTTP module
        # is reached through connect(http=True).
        argv = fill_in(self.options, fill)
        try:
            self.server = MemoryServer(argv)
        except UsageError as error:
            self.stop()
            raise TargetError(f"{self.name}: {error}") from None

    def stop(self) -> None:
        if self.server is not None and self.server.alive:
            self.server.stop()
        if self.log is not None:
            logging.getLogger("reference_server").removeHandler(self.log)
        self.services.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def alive(self, settle: float = 0.0) -> bool:
        return self.server is not None and self.server.alive

    def restart(self) -> None:
        self.server.restart()

    def kill(self) -> None:
        self.server.kill()

    def log_text(self) -> str:
        return "".join(f"{line}\n" for line in self.log.lines) if self.log else ""

    def version(self) -> str | None:
        peer = self.server.connect()
        peer.send(b"version\n")
        reply = peer.receive()
        peer.close()
        return reply[3:].strip().decode() if reply.startswith(b"OK ") else None
