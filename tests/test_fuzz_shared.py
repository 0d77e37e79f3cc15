"""Fuzz campaigns on many machines share one corpus and one set of findings.

Three ``gearspec fuzz model`` processes share hypothesis's Redis example
database (the Redis on 127.0.0.1): the first finds a planted bug; the other two,
told only to replay the database (``--replay``: no example of their own), find
it too, and neither writes the finding again: they say who saved it.  A replay
of an empty database finds nothing, so what the two found came from the first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.test_fuzz import PLANTED, ROOT

REDIS = "redis://127.0.0.1:6379"
DB = 13  # this test's own Redis database, emptied first


def _redis() -> redis.Redis:
    client = redis.Redis(host="127.0.0.1", port=6379, db=DB, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not answering on 127.0.0.1:6379 (apt-get install redis-server; "
                    "CI starts it before every run)")
    return client


def fuzz(db: str, save: Path, *more: str) -> subprocess.Popen[str]:
    target = PLANTED.format(bug="forget-listener", host="{host}", port="{port}")
    return subprocess.Popen(
        [sys.executable, "-m", "gearspec", "fuzz", "model", "--target", target, "--db", db,
         "--save", str(save), *more], cwd=ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out = process.communicate(timeout=400)[0]
    return process.returncode, out


@pytest.mark.timeout(600)
def test_an_example_found_by_one_campaign_is_replayed_by_the_others(tmp_path: Path) -> None:
    client = _redis()
    client.flushdb()
    try:
        status, out = finish(fuzz(f"{REDIS}/{DB}", tmp_path / "one", "--budget", "300s"))
        assert status == 1 and "FOUND:" in out, out
        saved = list((tmp_path / "one").iterdir())
        assert len(saved) == 1, out
        others = [fuzz(f"{REDIS}/{DB}", tmp_path / name, "--replay") for name in ("two", "three")]
        for process, name in zip(others, ("two", "three"), strict=True):
            status, again = finish(process)
            assert status == 1 and "FOUND:" in again, again
            assert "saved by another campaign: " in again and str(saved[0]) in again, again
            assert not (tmp_path / name).exists()  # saved once, by the first
        assert client.hlen("gearspec-fuzz:findings") == 1
        client.flushdb()  # nothing to replay: a replay finds nothing
        status, empty = finish(fuzz(f"{REDIS}/{DB}", tmp_path / "four", "--replay"))
        assert status == 0 and "nothing found" in empty, empty
    finally:
        client.flushdb()


def test_a_redis_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", "fuzz", "parser", "--db",
                           "redis://127.0.0.1:1/0"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Redis does not answer" in done.stderr


def test_replay_wants_a_database() -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", "fuzz", "parser", "--replay"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 2 and "give --db too" in done.stderr
