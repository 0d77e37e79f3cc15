"""SIGKILLs during a load of background jobs: nothing acknowledged is lost.

CI runs a small load (2,000 jobs, 5 kills) against our server and gearmand with
their SQLite and memcached queues, and ours with PostgreSQL and MySQL;
`gearspec durability --jobs 20000 --kills 20` is the full run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conformance.durability import queue_options, run_durability
from conformance.targets import Target
from tests.conftest import require_program
from tests.test_queues import require_service


@pytest.mark.parametrize(("kind", "queue"), [("ref", "sqlite"), ("gearmand", "sqlite"),
                                             ("ref", "postgres"), ("ref", "mysql"),
                                             ("ref", "memcached"), ("gearmand", "memcached")])
async def test_no_acknowledged_job_is_lost(kind: str, queue: str,
                                           start_target: Callable[..., Target]) -> None:
    if queue == "memcached":  # a memcached of the target's own, kept across the kills
        require_program("memcached", "memcached")
    elif queue != "sqlite":
        require_service(queue)
    target = start_target(kind, *queue_options(queue))
    result = await run_durability(target, queue=queue, jobs=2000, kills=5, seed=11)
    assert result.kills == 5
    assert result.acknowledged == 2000
    assert result.lost == 0, result.lost_uniques
    assert result.completed == 2000
    assert result.duplicated >= 0  # reported, not limited: delivery is at least once


async def test_queue_settings_from_a_config_file(tmp_path: Path,
                                                 start_target: Callable[..., Target]) -> None:
    """gearmand's --config-file: long options, one per line, so queue settings are
    written once."""
    from tests.test_queues import run_all, submit_background

    config = tmp_path / "gearmand.conf"
    config.write_text(f"--queue-type=libsqlite3\n--libsqlite3-db={tmp_path / 'q.db'}\n"
                      "--libsqlite3-table=from_config\n")
    target = start_target("ref", "--config-file", str(config))
    await submit_background(target, [(b"u", b"kept")])
    target.kill()
    target.restart()
    assert await run_all(target, 1) == [(b"u", b"kept")]
