"""The load generator and the bench driver work (what they measure is not tested:
speed is for `make bench`, never for a test)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from conformance.bench import cpu_seconds, rss_bytes
from conformance.specs import parse_target
from conformance.targets import Target, TargetError
from reference_server.client import Admin
from reference_server.loadgen import run_load
from reference_server.protocol import PacketType


@pytest.mark.parametrize("mode", ["fg", "bg"])
async def test_every_job_is_run_once(server: Target, mode: str) -> None:
    host, port = server.address
    result = await run_load(host, port, mode=mode, jobs=500, workers=2, clients=3, pipeline=7,
                            function=b"loadtest")
    assert result.jobs == 500
    assert len(result.latencies) == 500
    assert result.seconds > 0
    assert 0 <= result.percentile(0.5) <= result.percentile(0.99)
    # Nothing left queued or running.  A background job is done for the generator
    # when its worker has sent WORK_COMPLETE; gearmand takes that in on another
    # thread than the admin connection's, so ask until it has (or a deadline).
    async with await Admin.connect(server.address) as admin:
        for _ in range(100):
            total, running, _workers = (await admin.status())[b"loadtest"]
            if (total, running) == (0, 0):
                break
            await asyncio.sleep(0.02)
    assert (total, running) == (0, 0)


async def test_grab_job_for_servers_without_grab_job_uniq(ref: Target) -> None:
    host, port = ref.address
    result = await run_load(host, port, mode="fg", jobs=50, workers=1, clients=1,
                            grab=PacketType.GRAB_JOB)
    assert result.jobs == 50


def test_proc_accounting_reads_this_process() -> None:
    assert cpu_seconds(os.getpid()) > 0
    assert rss_bytes(os.getpid()) > 1_000_000


def test_bench_command_prints_a_row_per_target_and_mode() -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", "bench", "--target", "ref",
                           "--jobs", "300", "--idle-connections", "50"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[3][:2] == ["ref", "fg"] and rows[4][:2] == ["ref", "bg"], done.stdout
    assert "50 idle connections cost" in done.stdout


def test_bench_unknown_target_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", "bench", "--target", "nosuch"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "gearspec bench: error: unknown target 'nosuch' (known: ref, inproc, gearmand, perl, gear, "
        "exec:'COMMAND with {port}', tcp://HOST:PORT, tls://HOST:PORT, docker:IMAGE; "
        "a library: client:NAME)"]


def test_tcp_target_needs_a_port() -> None:
    with pytest.raises(TargetError, match="bad port"):
        parse_target("tcp://127.0.0.1:notaport")
