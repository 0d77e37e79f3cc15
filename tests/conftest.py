"""Shared fixtures: servers to talk to, and hypothesis profiles.

Servers are real processes on free 127.0.0.1 ports: ``ref`` (ours) and
``gearmand`` (Debian's /usr/sbin/gearmand, 1.1.20).  Tests that need gearmand
skip with the command that installs it when it is missing; ``make test``
installs it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from conformance.mutant_exec import VARIABLE
from conformance.mutants import Mutant
from conformance.specs import parse_target
from conformance.targets import GearmandTarget, RefTarget, Target, gearmand_available

# Tests are derandomised (a fixed seed) and bounded; the long campaigns are
# `gearspec fuzz` (`make fuzz`), with their own settings (fuzz/campaign.py).
settings.register_profile("ci", derandomize=True, max_examples=300, deadline=None,
                          print_blob=True)
settings.load_profile("ci")

NO_GEARMAND = ("/usr/sbin/gearmand is not installed: apt-get install gearman-job-server "
               "(`make test` installs it)")


def require_gearmand() -> None:
    if not gearmand_available():
        pytest.skip(NO_GEARMAND)


def require_program(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: apt-get install {package} (`make test` installs it)")
    return path


@pytest.fixture
def start_target() -> Iterator[Callable[..., Target]]:
    """Factory: start_target("ref" | "gearmand" | any target spec, *options,
    mutant=None) -> a running Target; with a mutant, the server process runs it
    (``conformance/mutant_exec.py`` reads it from the environment)."""
    started: list[Target] = []

    def start(kind: str, *options: str, mutant: Mutant | None = None) -> Target:
        if kind == "gearmand":
            require_gearmand()
            target: Target = GearmandTarget(options=list(options))
        elif kind == "ref":
            target = RefTarget(options=list(options))
        else:
            target = parse_target(kind, list(options))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(VARIABLE, json.dumps(mutant.to_json()) if mutant else "")
            target.start()
        started.append(target)
        return target

    yield start
    for target in started:
        target.stop()


@pytest.fixture
def ref(start_target: Callable[..., Target]) -> Target:
    return start_target("ref")


@pytest.fixture
def gearmand(start_target: Callable[..., Target]) -> Target:
    return start_target("gearmand")


@pytest.fixture(params=["ref", "gearmand"])
def server(request: pytest.FixtureRequest, start_target: Callable[..., Target]) -> Target:
    """The same test against our server and against real gearmand."""
    return start_target(request.param)
