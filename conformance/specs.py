"""Target specs: the words of ``--target`` and what they make.

``ref``, ``inproc``, ``gearmand``, ``perl``, ``gear``, ``exec:COMMAND``, ``tcp://HOST:PORT``,
``tls://HOST:PORT``, ``docker:IMAGE`` and ``docker-published:IMAGE``; server options
follow the kind: ``parse_target("gearmand", ["-w", "1"])``.
"""

from __future__ import annotations

import ssl

from conformance.containers import baseline_of, parse_docker
from conformance.inproc import InprocTarget
from conformance.libraries import parse_library
from conformance.targets import (
    ExecTarget,
    GearmandTarget,
    GearTarget,
    PerlTarget,
    RefTarget,
    Target,
    TargetError,
)
from reference_server.client import parse_address


def parse_target(spec: str, options: list[str] | None = None) -> Target:
    """``ref``, ``gearmand``, ``perl``, ``gear``, ``exec:...``, ``tcp://HOST:PORT`` or
    ``docker:IMAGE`` (``docker-published:IMAGE``)."""
    options = list(options or [])
    if spec == "ref":
        return RefTarget(options=options)
    if spec == "inproc":
        return InprocTarget(options=options)
    if spec == "gearmand":
        return GearmandTarget(options=options)
    if spec == "perl":
        return PerlTarget(options=options)
    if spec == "gear":
        return GearTarget(options=options)
    if spec.startswith("exec:"):
        template = spec[len("exec:"):].strip()
        if "{port}" not in template:
            raise TargetError(f"{spec!r}: the command must say where to listen with {{port}}")
        return ExecTarget(name=spec, options=options, template=template)
    if spec.startswith(("tcp://", "tls://")):
        try:
            host, port = parse_address(spec[len("tcp://"):])
        except ValueError as error:
            raise TargetError(str(error)) from None
        # tls://: the system's CAs unless the runner is told another (--tls-ca).
        return Target(name=spec, host=host, port=port,
                      capabilities=frozenset({"grab-job-uniq", "echo"}), ready_timeout=3.0,
                      tls=ssl.create_default_context() if spec.startswith("tls") else None)
    if spec.startswith(("docker:", "docker-published:")):
        return parse_docker(spec, options)
    if spec.startswith("client:"):
        return parse_library(spec)
    raise TargetError(f"unknown target {spec!r} (known: ref, inproc, gearmand, perl, gear, "
                      "exec:'COMMAND with {port}', tcp://HOST:PORT, tls://HOST:PORT, docker:IMAGE; "
                      "a library: client:NAME)")


def mode_of(spec: str) -> str:
    """Which catalog a target plays: "library" cases for a library, "server" ones
    for a server."""
    return "library" if spec.startswith("client:") else "server"


def baseline_name(spec: str) -> str:
    """The baseline file a target spec uses: its kind (``tcp://…`` → ``tcp``); for a
    ``docker:`` image, the one its label names (the gearmand image: ``gearmand``)."""
    if spec.startswith(("docker:", "docker-published:")):
        return baseline_of(spec)
    if spec.startswith("client:"):  # client:libgearman → baselines/client-libgearman.yaml
        return "client-" + spec[len("client:"):].split(":", 1)[0]
    return spec.split("://", 1)[0] if "://" in spec else spec.split(":", 1)[0]
    # (so exec:... uses baselines/exec.yaml, tcp://... uses baselines/tcp.yaml)
