"""Runs that cannot outlive their parent (``conformance/children.py``): a run past its
timeout ends with every process below it, servers in sessions of their own too; a
child run follows its parent when the parent is killed outright."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from conformance.children import run_bounded

# A run that starts a "server" in a session of its own (as targets do), writes its pid
# and waits: the server is out of reach of a process-group kill.
SPAWNS_A_SERVER = """
import subprocess, sys, time
server = subprocess.Popen(["sleep", "300"], start_new_session=True)
open(sys.argv[1], "w").write(str(server.pid))
time.sleep(300)
"""


def _pid_in(path: Path) -> int:
    deadline = time.monotonic() + 60  # only against hanging
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, "the run never started its server"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_run_past_its_timeout_ends_with_the_servers_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    # 10 s: time enough for the run to start its server even on a loaded machine.
    done = run_bounded([sys.executable, "-c", SPAWNS_A_SERVER, str(pid_file)], timeout=10)
    assert done is None
    server = _pid_in(pid_file)
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == "zombie"


def test_a_finished_run_answers_as_subprocess_run_does() -> None:
    done = run_bounded([sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1]); "
                        "sys.exit(3)"], input="abc", timeout=60)
    assert done is not None and (done.returncode, done.stdout) == (3, "cba\n")


def test_a_child_run_follows_its_parent_killed_outright(tmp_path: Path) -> None:
    """The parent (a gearspec run, say) dies by SIGKILL: its child run, started by
    run_bounded and calling follow_parent, ends its own tree too."""
    pid_file = tmp_path / "server.pid"
    child = ("from conformance.children import follow_parent; follow_parent()\n"
             + SPAWNS_A_SERVER)
    parent = ("import sys; from conformance.children import run_bounded; "
              f"run_bounded([sys.executable, '-c', {child!r}, sys.argv[1]], timeout=300)")
    process = subprocess.Popen([sys.executable, "-c", parent, str(pid_file)],
                               cwd=Path(__file__).resolve().parents[1])
    server = _pid_in(pid_file)
    process.kill()
    process.wait()
    _, alive = psutil.wait_procs([psutil.Process(server)], timeout=30)
    assert not alive, "the server outlived the run whose parent was killed"
