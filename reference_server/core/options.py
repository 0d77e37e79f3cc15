"""Settings of the sans-IO core (the subset of gearmand's options it obeys)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from reference_server.protocol import DEFAULT_MAX_LINE, DEFAULT_MAX_PAYLOAD

#: The gearmand release whose behaviour this server follows.
GEARMAND_VERSION = "1.1.20"

VERBOSE_LEVELS = ("FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")


def _default_prefix() -> bytes:
    # gearmand: "H:" + uname nodename (gearmand.cc)
    return b"H:" + socket.gethostname().encode()


@dataclass(slots=True)
class ServerOptions:
    job_handle_prefix: bytes = field(default_factory=_default_prefix)  # --job-handle-prefix
    worker_wakeup: int = 0  # -w: NOOPs per queued job, 0 = every sleeping worker
    job_retries: int = 0  # -j: drop a job after this many requeues, 0 = never
    round_robin: bool = False  # -R
    exceptions: bool = False  # --exceptions: new connections start with "exceptions" on
    admin_shutdown: bool = False  # admin 'shutdown' allowed? (gearmand 1.1.20 has none)
    max_payload: int = DEFAULT_MAX_PAYLOAD  # --max-packet-size
    max_line: int = DEFAULT_MAX_LINE
    verbose: str = "ERROR"  # --verbose, reported by admin 'verbose'
    version: str = ""  # reported by admin 'version'; default below
    pid: int = field(default_factory=os.getpid)  # reported by admin 'getpid'

    def __post_init__(self) -> None:
        if not self.version:
            from reference_server import __version__

            self.version = f"{GEARMAND_VERSION}+gearspec.{__version__}"
