"""The examples, run the way `make report` runs them: ``examples/run_examples.py``
against our server and against /usr/sbin/gearmand, each in a subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_gearmand

ROOT = Path(__file__).resolve().parents[1]
RUN_EXAMPLES = ROOT / "examples" / "run_examples.py"
TIMEOUT = 60.0  # only a guard against hangs


def process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[2])  # state, ppid, pgrp, ...


def kill_leftovers(leader: int, mark: Path) -> None:
    """Kill what a run left behind: members of its process group (the example
    scripts), and the server it started in a session of its own, found by
    ``mark`` (the server's work directory is made under it) on its command line."""
    needle = str(mark).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline or process_group(pid) == leader:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run_examples(target: str, tmp_path: Path) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``run_examples.py --target TARGET``."""
    env = {key: value for key, value in os.environ.items() if key != "GEARMAND_PORT"}
    env["TMPDIR"] = str(tmp_path)  # the target's work directory (tempfile.mkdtemp) goes here
    process = subprocess.Popen([sys.executable, str(RUN_EXAMPLES), "--target", target],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        stdout, stderr = "", f"run_examples.py --target {target} did not end within {TIMEOUT} s"
    finally:
        kill_leftovers(process.pid, tmp_path)
        if process.poll() is None:
            process.kill()
        process.communicate()
    return process.returncode, stdout, stderr


@pytest.mark.parametrize("target", ["ref", "gearmand"])
def test_run_examples(tmp_path: Path, target: str) -> None:
    if target == "gearmand":
        require_gearmand()
    status, stdout, stderr = run_examples(target, tmp_path)
    assert status == 0, f"exit {status}\n{stdout}{stderr}"
    lines = stdout.splitlines()
    assert len(lines) >= 2, stdout
    *results, summary = lines
    failed = [line for line in results if not line.startswith("PASS")]
    assert not failed, stdout
    match = re.fullmatch(rf"(\d+)/(\d+) examples passed against {re.escape(target)}", summary)
    assert match is not None, summary
    assert int(match.group(1)) == int(match.group(2)) == len(results), stdout
