"""Services a target's server options can ask for, started next to the target.

``{memcached}`` in a case's server options (``--libmemcached-servers {memcached}``)
makes the target start a throwaway ``memcached`` on a free 127.0.0.1 port and put
its ``HOST:PORT`` there.  It belongs to the target, not to the server process: it
lives across the target's kills and restarts (that is what a persistence case
checks) and stops with the target.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Placeholder → the capability a case using it needs.
PLACEHOLDERS = {"{memcached}": "memcached"}

#: Why a capability from PLACEHOLDERS is missing, and what installs it.
MISSING = {"memcached": "memcached is not installed here (apt install memcached)"}

READY_TIMEOUT = 10.0


class ServiceError(Exception):
    """A service could not be started; the message says why."""


#: Where the kernel picks the local ports of outgoing connections (Linux's default
#: when /proc does not say).
EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000


#: One lock file per port a gearspec process has claimed, held (flock) until it lets
#: the port go or exits.  Runs side by side on one machine (shards, a test next to a
#: run) then never pick a port another one's target stopped listening on only for
#: the moment of a restart.
CLAIMS = Path(tempfile.gettempdir()) / "gearspec-ports"
_claims: dict[int, int] = {}  # port → the open lock file


def _claim(port: int) -> bool:
    if port in _claims:
        return False
    CLAIMS.mkdir(exist_ok=True)
    lock = os.open(CLAIMS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return False
    _claims[port] = lock
    return True


def release_port(port: int | None) -> None:
    """Let another run pick ``port`` again (a target that stopped for good)."""
    lock = _claims.pop(port, None) if port is not None else None
    if lock is not None:
        os.close(lock)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to and no other gearspec process has claimed, chosen
    below the range the kernel hands out to outgoing connections.  A server
    restarted on its port (a restart case, a library case's listener coming back)
    then cannot find it taken in between by some other process's client socket,
    which an ephemeral port can be, nor by a concurrent run's server.  The port
    stays claimed until ``release_port`` or the end of this process."""
    try:
        below = int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        below = 32768
    for _ in range(50):
        port = random.randrange(LOWEST, below) if below > LOWEST + 1000 else 0
        if port and not _claim(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                release_port(port)
                continue
            return int(sock.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))  # the low range is full: any free port
        return int(sock.getsockname()[1])


def available() -> set[str]:
    """The services this machine can start."""
    return {"memcached"} if shutil.which("memcached") else set()


def needed(options: list[str]) -> set[str]:
    return {need for holder, need in PLACEHOLDERS.items()
            if any(holder in option for option in options)}


#: How the harness runs memcached.  ``no_lru_maintainer`` keeps one flat LRU per slab
#: class: with the default segmented LRU, ``stats cachedump`` (which gearmand's replay
#: uses, through libmemcached's memcached_dump) leaves out items still in the HOT LRU,
#: so gearmand would or would not replay a job written just before its restart
#: depending on milliseconds.  That gearmand behaviour is recorded and tested on its
#: own (tests/test_memcached.py); the cases compare queue semantics, not LRU timing.
FLAT_LRU = ["-o", "no_lru_maintainer"]


@dataclass
class Memcached:
    """A memcached of our own: memory only, 64 MB, no UDP."""

    host: str = "127.0.0.1"
    options: list[str] = field(default_factory=lambda: list(FLAT_LRU))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            raise ServiceError(MISSING["memcached"])
        for _ in range(3):  # a free port can be taken between probe and bind
            release_port(self.port)
            self.port = free_port(self.host)
            # memcached refuses to run as root unless told which user to be.
            user = ["-u", "root"] if os.geteuid() == 0 else []
            self.process = subprocess.Popen(
                [binary, "-l", self.host, "-p", str(self.port), "-U", "0", "-m", "64", *user,
                 *self.options],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready():
                return
            self.stop()
        raise ServiceError(f"memcached did not start on {self.host}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.sendall(b"version\r\n")
                    if sock.recv(100).startswith(b"VERSION "):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@dataclass
class Services:
    """What a target started for its options; one of each, made when first asked."""

    host: str = "127.0.0.1"
    http_port: int | None = None  # -r http --http-port {http_port}: a port, no process
    memcached: Memcached | None = None

    def fill(self, options: list[str]) -> dict[str, str]:
        """Placeholder → value for every service ``options`` mention (started now)."""
        if any("{http_port}" in option for option in options) and self.http_port is None:
            self.http_port = free_port(self.host)
        if "memcached" in needed(options) and self.memcached is None:
            self.memcached = Memcached(self.host)
            self.memcached.start()
        values = {}
        if self.http_port is not None:
            values["{http_port}"] = str(self.http_port)
        if self.memcached is not None:
            values["{memcached}"] = self.memcached.address
        return values

    def stop(self) -> None:
        if self.memcached is not None:
            self.memcached.stop()
            release_port(self.memcached.port)
            self.memcached = None
        release_port(self.http_port)
        self.http_port = None
