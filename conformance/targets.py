"""Targets: Gearman servers to test, started on a free 127.0.0.1 port.

A ``Target`` knows how to start a server, when it is ready (a full ECHO round
trip, not just an accepted TCP connection), where it listens, which process
to account CPU to, and how to stop it.  Kinds so far:

* ``ref``: our reference server (``python -m reference_server``);
* ``gearmand``: Debian's C gearmand, ``/usr/sbin/gearmand`` (``/usr/bin/gearmand``
  is the Perl server: the full path matters);
* ``perl``: Debian's Perl Gearman::Server (package ``gearman-server``);
* ``gear``: OpenStack's ``geard`` (PyPI ``gear``);
* ``exec:COMMAND``: any server binary; ``{port}`` (and ``{host}``) in COMMAND are
  replaced by where it must listen, e.g. ``exec:'/opt/bin/myserver -p {port}'``;
* ``tcp://HOST:PORT``: a server someone else runs (no start, no stop).

``capabilities`` says what a kind can do that not every server can, e.g.
``grab_job_uniq`` (the Perl server knows only GRAB_JOB).

Targets are made from a spec by ``conformance.specs.parse_target``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from conformance.probes import TargetError, connect, echo_round_trip, status_round_trip, wait_ready
from conformance.services import ServiceError, Services, free_port, release_port
from conformance.wire import SocketNetwork

GEARMAND = "/usr/sbin/gearmand"
PERL_GEARMAND = "/usr/bin/gearmand"
READY_TIMEOUT = 10.0

#: Seconds a server whose case just failed gets to finish dying, if it is dying.
CRASH_SETTLE = 0.5


PLAINTEXT = "started with TLS options but answers in plaintext (a build without TLS support)"


def fill_in(parts: list[str], values: dict[str, str]) -> list[str]:
    """``parts`` with every placeholder in ``values`` replaced."""
    filled = []
    for part in parts:
        for holder, value in values.items():
            part = part.replace(holder, value)
        filled.append(part)
    return filled


@dataclass
class Target:
    """A Gearman server under test."""

    name: str
    options: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    capabilities: frozenset[str] = frozenset({"grab-job-uniq"})
    ready_timeout: float = READY_TIMEOUT
    tls: ssl.SSLContext | None = None  # how clients connect, when the server speaks TLS
    # Ports and helper servers that ``{http_port}`` or ``{memcached}`` in the options
    # ask for: made at the first start, kept across restarts, stopped with the target.
    services: Services = field(default_factory=Services)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def http_port(self) -> int | None:
        return self.services.http_port

    def filled_options(self, fill: dict[str, str]) -> list[str]:
        """The options with every placeholder replaced: those in ``fill``, then the
        services' (started here if this is the first time they are asked for)."""
        try:
            fill = {**fill, **self.services.fill(self.options)}
        except ServiceError as error:
            raise TargetError(f"{self.name}: {error}") from None
        return fill_in(self.options, fill)

    @property
    def pid(self) -> int | None:
        return None

    def network(self, timeout_factor: float = 1.0) -> SocketNetwork:
        """How the engine reaches this server: TCP (or TLS) to its address and its
        HTTP port."""
        return SocketNetwork(self.address, tls=self.tls, http_port=self.http_port,
                             connect_timeout=5 * timeout_factor)

    @property
    def concurrent(self) -> bool:
        """Whether cases may share this server at once (each with its own names)."""
        return True

    def require_socket(self, what: str) -> None:
        """For commands that need a server on a port (load generators, our own client
        connections): a target without one says so in one line."""
        return None

    def probe(self, host: str, port: int) -> bool:
        """Readiness: a full ECHO round trip (an accepted connection is not enough)."""
        return echo_round_trip(host, port, tls=self.tls)

    def tls_options(self, ca: Path, certificate: Path, key: Path) -> list[str] | None:
        """Server options that turn TLS on with these files (None: this kind cannot)."""
        return None

    def answers_plaintext(self) -> bool:
        """Started for TLS, does it answer in the clear?  (Debian's gearmand does.)"""
        return self.tls is not None and echo_round_trip(self.host, self.port)

    def start(self) -> None:
        try:
            wait_ready(self.host, self.port, time.monotonic() + self.ready_timeout,
                       probe=self.probe)
        except TargetError as error:
            raise TargetError(f"{self.name}: {error}") from None

    def stop(self) -> None:
        return None

    def alive(self, settle: float = 0.0) -> bool:
        """Whether the server is still running.  ``settle``: seconds to give a
        process that is on its way out (a crash handler still printing, say)
        to finish dying, so that a crash is not taken for a close."""
        return True

    def restart(self) -> None:
        raise TargetError(f"{self.name} cannot be restarted")

    def exit_status(self) -> int | None:
        """A process that has ended: its status (negative: the signal that ended it)."""
        return None

    def kill(self) -> None:
        raise TargetError(f"{self.name} cannot be killed")

    # A server this harness starts (a process, a container) gives the three steps of
    # a start; ``_launch`` tries them up to three times.
    def _spawn(self) -> None:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def _launch(self, port: int, *, moving: bool = True) -> None:
        """Start the server on ``port``; a start that fails tries again, on another
        free port unless the server must come back where it was (a restart)."""
        failure: TargetError | None = None
        for attempt in range(3):
            if attempt and moving:  # a free port can be taken between probe and bind
                release_port(port)
                port = free_port(self.host)
            self.port = port
            self._spawn()
            try:
                self._wait_ready()
                return
            except TargetError as error:
                failure = error
                plaintext = self.alive() and self.answers_plaintext()
                self._discard()
                if plaintext:
                    raise TargetError(f"{self.name}: {PLAINTEXT}") from None
        raise TargetError(f"{self.name}: {failure}; log: {self.log_text()[-500:]!r}")

    def log_text(self) -> str:
        return ""

    def version(self) -> str | None:
        """What the server says of its version (admin 'version'), if anything."""
        try:
            with connect(self.host, self.port, 1, self.tls) as sock:
                sock.sendall(b"version\n")
                reply = sock.recv(200).split(b"\n", 1)[0].strip()
        except OSError:
            return None
        if reply.startswith(b"OK "):
            return reply[3:].decode(errors="replace")
        if reply.startswith(b"v") and reply[1:2].isdigit():
            return reply[1:].decode(errors="replace")  # the Perl server: "v1.130.1"
        return None

    def __enter__(self) -> Target:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ProcessTarget(Target):
    """A server process we start on a free port and stop with SIGTERM."""

    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    capabilities: frozenset[str] = frozenset({"grab-job-uniq", "echo", "restart",
                                              "gearmand-options", "persistence", "http"})

    def command(self, port: int, workdir: Path) -> list[str]:
        raise NotImplementedError

    def tls_options(self, ca: Path, certificate: Path, key: Path) -> list[str] | None:
        return ["--ssl", "--ssl-ca-file", str(ca), "--ssl-certificate", str(certificate),
                "--ssl-key", str(key)]

    def expanded_options(self, workdir: Path) -> list[str]:
        """The options with ``{workdir}`` replaced by this target's own temporary
        directory (for files such as a queue database: ``--libsqlite3-db
        {workdir}/queue.db``); it lives as long as the target, across restarts."""
        return self.filled_options({"{workdir}": str(workdir)})

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.log"

    def start(self) -> None:
        safe = re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-")[:40]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"gearspec-{safe}-"))
        try:
            self._launch(free_port(self.host))
        except TargetError:
            self.stop()  # the services it started, and the workdir
            raise

    def _spawn(self) -> None:
        assert self.workdir is not None
        with open(self.workdir / "stdio.log", "ab") as stdio:
            try:
                self.process = subprocess.Popen(
                    self.command(self.port, self.workdir), stdin=subprocess.DEVNULL,
                    stdout=stdio, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as error:
                raise TargetError(f"{self.name}: cannot start: {error}") from None

    def _wait_ready(self) -> None:
        wait_ready(self.host, self.port, time.monotonic() + READY_TIMEOUT, self.process,
                   self.probe)

    def _discard(self) -> None:
        self._kill()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def alive(self, settle: float = 0.0) -> bool:
        if self.process is None:
            return False
        if settle > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(settle)
        return self.process.poll() is None

    def exit_status(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._kill()

    def restart(self) -> None:
        """Start again on the same port (so clients can reconnect where they were)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self._kill()
        self._launch(self.port, moving=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self._kill()
        self.services.stop()
        release_port(self.port)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self) -> str:
        if self.workdir is None:
            return ""
        parts = []
        for name in ("server.log", "stdio.log"):
            with contextlib.suppress(OSError):
                parts.append((self.workdir / name).read_text(errors="replace"))
        return "".join(parts)


@dataclass
class RefTarget(ProcessTarget):
    name: str = "ref"

    def command(self, port: int, workdir: Path) -> list[str]:
        return [sys.executable, "-m", "reference_server", "-L", self.host, "-p", str(port),
                "-l", str(workdir / "server.log"), *self.expanded_options(workdir)]


@dataclass
class GearmandTarget(ProcessTarget):
    name: str = "gearmand"
    binary: str = GEARMAND

    def command(self, port: int, workdir: Path) -> list[str]:
        if not os.access(self.binary, os.X_OK):
            raise TargetError(f"{self.binary} is not installed "
                              "(apt-get install gearman-job-server)")
        return [self.binary, "-L", self.host, "-p", str(port), "-l", str(workdir / "server.log"),
                "-P", str(workdir / "gearmand.pid"), *self.expanded_options(workdir)]


@dataclass
class PerlTarget(ProcessTarget):
    name: str = "perl"
    capabilities: frozenset[str] = frozenset({"echo", "restart"})

    def tls_options(self, ca: Path, certificate: Path, key: Path) -> list[str] | None:
        return None  # Gearman::Server has no TLS

    def command(self, port: int, workdir: Path) -> list[str]:
        if not os.path.exists(PERL_GEARMAND):
            raise TargetError(f"{PERL_GEARMAND} is not installed (apt-get install gearman-server)")
        # A fixed hash seed: the Perl server lists a worker's functions in hash order,
        # and a random one would make such a case pass now and then.
        return ["/usr/bin/env", "PERL_HASH_SEED=0", "PERL_PERTURB_KEYS=0", "/usr/bin/perl",
                PERL_GEARMAND, "--port", str(port), "--listen", self.host,
                *self.expanded_options(workdir)]


_GEARD_LOGGING = """\
[loggers]
keys=root
[handlers]
keys=stderr
[formatters]
keys=plain
[logger_root]
level=WARNING
handlers=stderr
[handler_stderr]
class=StreamHandler
level=WARNING
formatter=plain
args=(sys.stderr,)
[formatter_plain]
format=%(asctime)s %(levelname)s %(name)s: %(message)s
"""


@dataclass
class GearTarget(ProcessTarget):
    name: str = "gear"
    capabilities: frozenset[str] = frozenset({"grab-job-uniq", "restart"})

    def tls_options(self, ca: Path, certificate: Path, key: Path) -> list[str] | None:
        # geard's own names; it then requires a client certificate signed by the CA.
        return ["--ssl-ca", str(ca), "--ssl-cert", str(certificate), "--ssl-key", str(key)]

    def command(self, port: int, workdir: Path) -> list[str]:
        geard = shutil.which("geard", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        if geard is None:
            raise TargetError("geard is not installed (pip install gear)")
        # geard's -d means "do not daemonize"; it then logs at DEBUG unless given a
        # logging config, which costs it more CPU than the protocol work itself.
        config = workdir / "logging.ini"
        config.write_text(_GEARD_LOGGING)
        return [geard, "-d", "-p", str(port), "--listen-address", self.host,
                "--log-config", str(config), *self.expanded_options(workdir)]

    def probe(self, host: str, port: int) -> bool:
        return status_round_trip(host, port, tls=self.tls)  # geard never answers ECHO_REQ


@dataclass
class ExecTarget(ProcessTarget):
    """Any server command; it must listen where ``{host}``/``{port}`` say."""

    name: str = "exec"
    template: str = ""
    capabilities: frozenset[str] = frozenset({"grab-job-uniq", "echo", "restart"})

    def command(self, port: int, workdir: Path) -> list[str]:
        words = shlex.split(self.template.replace("{port}", str(port))
                            .replace("{host}", self.host))
        if not words or shutil.which(words[0]) is None:
            raise TargetError(f"exec: {words[0] if words else 'empty command'!r} "
                              "is not a program")
        return [*words, *self.expanded_options(workdir)]


def gearmand_available() -> bool:
    return os.access(GEARMAND, os.X_OK)
