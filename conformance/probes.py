"""Is a Gearman server there?  Blocking probes the targets use to wait for readiness.

An accepted TCP connection is not enough (a container's published port
accepts before the server listens): a server is ready when it answers an
ECHO with the same bytes, or, for geard, which has no ECHO, the admin
``status`` command.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Callable

from reference_server.client import SyncMarker
from reference_server.protocol import Decoder


class TargetError(Exception):
    """A target could not be started or reached; the message says why."""


def connect(host: str, port: int, timeout: float,
            tls: ssl.SSLContext | None = None) -> socket.socket:
    """A blocking connection, over TLS when ``tls`` is given."""
    sock = socket.create_connection((host, port), timeout=timeout)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except (OSError, ssl.SSLError):
        sock.close()
        raise


def echo_round_trip(host: str, port: int, timeout: float = 1.0,
                    tls: ssl.SSLContext | None = None) -> bool:
    """Is a Gearman server answering on host:port?  (ECHO_REQ → ECHO_RES)"""
    marker = SyncMarker(b"gearspec-ready")
    try:
        with connect(host, port, timeout, tls) as sock:
            sock.sendall(marker.request)
            decoder = Decoder()
            while True:
                data = sock.recv(4096)
                if not data:
                    return False
                decoder.feed(data)
                event = decoder.next_event()
                if event is not None:
                    return marker.answered_by(event)
    except (OSError, ValueError):
        return False


def status_round_trip(host: str, port: int, timeout: float = 1.0,
                      tls: ssl.SSLContext | None = None) -> bool:
    """Is a Gearman server answering the admin 'status' command on host:port?"""
    try:
        with connect(host, port, timeout, tls) as sock:
            sock.sendall(b"status\n")
            reply = b""
            while not (reply == b".\n" or reply.endswith(b"\n.\n")):
                data = sock.recv(4096)
                if not data:
                    return False
                reply += data
            return True
    except OSError:
        return False


def wait_ready(host: str, port: int, deadline: float,
               process: subprocess.Popen[bytes] | None = None,
               probe: Callable[[str, int], bool] = echo_round_trip) -> None:
    started = time.monotonic()
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TargetError(f"server exited with status {process.returncode} before answering")
        if probe(host, port):
            return
        time.sleep(0.02)
    raise TargetError(f"no answer from {host}:{port} within {deadline - started:.0f} s")
