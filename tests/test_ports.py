"""Ports the targets listen on: ``conformance.services.free_port``.

* a port one gearspec process holds is never handed out by another, so a run's
  server restarted on its port cannot find it taken by a concurrent run;
* ``release_port`` gives it back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conformance.services import free_port, release_port

ROOT = Path(__file__).resolve().parent.parent

# Another process whose random choice offers the ports given first, then any.
OTHER = """
import random, sys
from conformance import services
offered = [int(p) for p in sys.argv[1:]]
pick = random.randrange
random.randrange = lambda a, b: offered.pop(0) if offered else pick(a, b)
print(services.free_port())
"""


def other_process_picks(*offered: int) -> int:
    done = subprocess.run([sys.executable, "-c", OTHER, *map(str, offered)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout)


def test_a_port_this_process_holds_is_not_picked_by_another() -> None:
    held = free_port()
    try:
        assert other_process_picks(held, held, held) != held
    finally:
        release_port(held)


def test_a_released_port_can_be_picked_again() -> None:
    port = free_port()
    release_port(port)
    assert other_process_picks(port) == port
