"""The ``docker:IMAGE[:TAG]`` target: a Gearman server in a container.

What the container runs comes from the image's labels, written by ``gearspec
docker build`` (``conformance/images.py``) or by hand for any other image:

* ``org.gearspec.command``: the server's command line as a JSON list, with
  ``{host}``, ``{port}`` and ``{workdir}`` filled in (``["/usr/sbin/gearmand",
  "-L", "{host}", "-p", "{port}", "-l", "{workdir}/server.log"]``); server
  options follow it;
* ``org.gearspec.capabilities``: what the server can do, comma-separated
  (``echo,grab-job-uniq,gearmand-options,persistence,http``, the words of
  ``conformance.capabilities``); ``restart`` is added,
  since a container can always be started again;
* ``org.gearspec.baseline``: which baseline its verdicts are judged by
  (``gearmand`` for the gearmand image).

An image without them is run with its own entrypoint and ``-L {host} -p
{port}`` (gearmand's options).  The container shares the host's network by
default (``docker:``), bound to 127.0.0.1 on a free port: no bridge, no
iptables, traffic stays on loopback.  ``docker-published:IMAGE`` publishes the
port on 127.0.0.1 instead, for engines with a bridge network.  A host
temporary directory is mounted at the same path, so ``{workdir}`` (queue
files, the server's log) means the same inside and out.

Readiness is a full ECHO round trip, retried: a published port accepts TCP
before the server listens, so resets and closes mean "not ready yet".  Every
container is labelled ``org.gearspec.owner`` with this process's id and
removed on stop, on restart and at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import capabilities
from conformance.targets import (
    READY_TIMEOUT,
    Target,
    TargetError,
    fill_in,
    free_port,
    release_port,
    wait_ready,
)

OWNER_LABEL = "org.gearspec.owner"
DEFAULT_COMMAND = ["-L", "{host}", "-p", "{port}"]
_live: set[Any] = set()  # containers to remove at exit, whatever happens


def client() -> Any:
    """A Docker client, or TargetError saying how to get an engine."""
    try:
        import docker
    except ImportError:
        raise TargetError("the docker Python SDK is missing (pip install docker)") from None
    try:
        engine = docker.from_env()
        engine.ping()
    except Exception as error:  # the SDK raises DockerException, requests errors...
        raise TargetError(
            "no Docker engine answers (apt-get install docker.io; then start it: "
            f"dockerd --iptables=false --bridge=none &): {error}") from None
    return engine


def ensure_engine(wait: float = 30.0) -> Any:
    """A Docker client; if no engine answers and ``dockerd`` is installed, start one
    as CI does (``dockerd --iptables=false --bridge=none``, in the background: no
    bridge or firewall rules on a shared machine; containers use the host's
    network) and wait for its socket.  Several test processes may ask at once: a
    lock file lets one of them start it."""
    try:
        return client()
    except TargetError as error:
        failure = error
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise failure
    import fcntl

    with open(Path(tempfile.gettempdir()) / "gearspec-dockerd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return client()
        except TargetError:
            pass
        log = open(Path(tempfile.gettempdir()) / "gearspec-dockerd.log", "ab")  # noqa: SIM115
        subprocess.Popen([dockerd, "--iptables=false", "--bridge=none"], stdout=log,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
        deadline = time.monotonic() + wait
        while True:
            try:
                return client()
            except TargetError as error:
                if time.monotonic() > deadline:
                    raise TargetError(f"dockerd did not come up within {wait:.0f} s "
                                      f"(see {log.name}): {error}") from None
                time.sleep(0.5)


def image_labels(engine: Any, image: str) -> dict[str, str]:
    try:
        return dict(engine.images.get(image).labels or {})
    except Exception as error:
        raise TargetError(f"no image {image!r} here (gearspec docker build ... makes "
                          f"gearspec/gearmand, gearspec/perl and gearspec/ref): {error}"
                          ) from None


def baseline_of(spec: str) -> str:
    """The baseline a docker target is judged by: its image's label, else "docker"."""
    image = spec.split(":", 1)[1]
    try:
        return image_labels(client(), image).get("org.gearspec.baseline", "docker")
    except TargetError:
        return "docker"


@atexit.register
def _remove_leftovers() -> None:
    for container in list(_live):
        with contextlib.suppress(Exception):
            container.remove(force=True)


@dataclass
class DockerTarget(Target):
    image: str = ""
    network_mode: str = "host"  # or "bridge": the port published on 127.0.0.1
    container: Any = None
    workdir: Path | None = None
    engine: Any = None
    template: list[str] = field(default_factory=list)
    _logs: list[str] = field(default_factory=list)  # of containers already removed
    mounts: set[Path] = field(default_factory=set)  # more host folders, same paths

    def tls_options(self, ca: Path, certificate: Path, key: Path) -> list[str] | None:
        # gearmand's names (the gearmand and ref images); the files' folder is mounted.
        self.mounts |= {ca.parent, certificate.parent, key.parent}
        return ["--ssl", "--ssl-ca-file", str(ca), "--ssl-certificate", str(certificate),
                "--ssl-key", str(key)]

    def start(self) -> None:
        self.engine = client()
        labels = image_labels(self.engine, self.image)
        try:
            self.template = json.loads(labels.get("org.gearspec.command", "null")) \
                or DEFAULT_COMMAND
        except ValueError:
            raise TargetError(f"{self.image}: org.gearspec.command is not a JSON list"
                              ) from None
        declared = labels.get("org.gearspec.capabilities")
        if declared is not None:
            try:
                self.capabilities = capabilities.parse(declared)
            except capabilities.CapabilityError as error:
                raise TargetError(f"{self.image}: org.gearspec.capabilities: {error}") from None
        self.capabilities |= {"restart"} | ({"tls"} if self.tls is not None else set())
        self.workdir = Path(tempfile.mkdtemp(prefix="gearspec-docker-"))
        try:
            self._launch(free_port(self.host))
        except TargetError:
            self.stop()  # the services it started, and the workdir
            raise

    def _command(self, port: int) -> list[str]:
        assert self.workdir is not None
        inside_host = self.host if self.network_mode == "host" else "0.0.0.0"
        fill = {"{host}": inside_host, "{port}": str(port), "{workdir}": str(self.workdir)}
        return [*fill_in(self.template, fill), *self.filled_options(fill)]

    def _spawn(self) -> None:
        assert self.workdir is not None
        run: dict[str, Any] = {
            "command": self._command(self.port), "detach": True,
            "labels": {OWNER_LABEL: str(os.getpid())},
            "volumes": {str(path): {"bind": str(path), "mode": "rw"}
                        for path in {self.workdir, *self.mounts}},
        }
        if self.network_mode == "host":
            run["network_mode"] = "host"
        else:
            run["ports"] = {f"{port}/tcp": (self.host, port) for port in
                            (self.port, self.http_port) if port is not None}
        try:
            self.container = self.engine.containers.run(self.image, **run)
        except Exception as error:
            raise TargetError(f"{self.name}: cannot start a container: {error}") from None
        _live.add(self.container)

    def _wait_ready(self) -> None:
        wait_ready(self.host, self.port, time.monotonic() + READY_TIMEOUT,
                   probe=self._probe_alive)

    def _discard(self) -> None:
        self._remove()

    def _probe_alive(self, host: str, port: int) -> bool:
        if not self.alive():
            raise TargetError(f"the container stopped (exit status {self.exit_status()})")
        return self.probe(host, port)

    def _state(self) -> dict[str, Any]:
        if self.container is None:
            return {}
        try:
            self.container.reload()
        except Exception:
            return {}  # removed from outside
        return dict(self.container.attrs.get("State", {}))

    def alive(self, settle: float = 0.0) -> bool:
        deadline = time.monotonic() + settle
        while True:
            running = bool(self._state().get("Running"))
            if not running or time.monotonic() >= deadline:
                return running
            time.sleep(0.05)

    def exit_status(self) -> int | None:
        state = self._state()
        if not state:
            return None if self.container is None else -9
        return None if state.get("Running") else int(state.get("ExitCode", 0))

    def kill(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.kill()

    def restart(self) -> None:
        """A new container on the same port (clients reconnect where they were)."""
        self._remove()
        self._launch(self.port, moving=False)

    def stop(self) -> None:
        self._remove()
        self.services.stop()
        release_port(self.port)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _remove(self) -> None:
        if self.container is None:
            return
        self._logs.append(self._container_logs())
        with contextlib.suppress(Exception):
            self.container.remove(force=True)
        _live.discard(self.container)
        self.container = None

    def _container_logs(self) -> str:
        if self.container is None:
            return ""
        try:
            return self.container.logs().decode(errors="replace")
        except Exception:
            return ""

    def log_text(self) -> str:
        parts = [*self._logs, self._container_logs()]
        if self.workdir is not None:
            with contextlib.suppress(OSError):
                parts.append((self.workdir / "server.log").read_text(errors="replace"))
        return "".join(parts)


def parse_docker(spec: str, options: list[str]) -> DockerTarget:
    kind, _, image = spec.partition(":")
    if not image:
        raise TargetError(f"{spec!r}: say which image, e.g. docker:gearspec/gearmand:1.1.20")
    return DockerTarget(name=spec, options=options, image=image,
                        network_mode="host" if kind == "docker" else "bridge",
                        capabilities=frozenset({"echo", "grab-job-uniq"}))
