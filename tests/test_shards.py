"""A run split over machines and put back together.

* ``--shard K/N`` splits the selection the same way wherever it runs: the N
  shards are a partition of it, cases sharing a server of their own options
  stay together, durations from an earlier run balance the shards;
* (four shards of the catalog on ``ref`` and ``gearmand``, run at once and merged,
  against one unsharded run: tests/test_workflow.py, through the workflow;)
* runs of different catalogs or versions, a missing shard, a case played twice
  are refused in one line; a bad ``--shard`` is one line.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.loader import load_catalog
from conformance.shards import Shard, fingerprint, split
from results import CaseResult, RunResult, ScenarioInfo, TargetInfo, Verdict

ROOT = Path(__file__).resolve().parent.parent
CATALOG = [s for s in load_catalog() if s.mode == "server"]


def gearspec(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearspec", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def test_shards_partition_the_selection_the_same_way_whatever_the_order() -> None:
    shards = split(CATALOG, 4)
    ids = [s.id for shard in shards for s in shard]
    assert sorted(ids) == sorted(s.id for s in CATALOG)  # each case once
    shuffled = CATALOG[:]
    random.Random(7).shuffle(shuffled)
    assert [{s.id for s in shard} for shard in split(shuffled, 4)] == \
        [{s.id for s in shard} for shard in shards]  # another machine, another load order
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= max(len(u) for u in _groups().values())
    for members in _groups().values():  # one server of its own options: one shard
        assert sum(bool(members & {s.id for s in shard}) for shard in shards) == 1


def _groups() -> dict[tuple[str, ...], set[str]]:
    groups: dict[tuple[str, ...], set[str]] = {}
    for case in CATALOG:
        if case.server_options and not case.fresh:
            groups.setdefault(tuple(case.server_options), set()).add(case.id)
    return groups


def test_durations_balance_the_shards() -> None:
    slow = {s.id: (30.0 if i % 25 == 0 else 0.1) for i, s in enumerate(CATALOG)}
    loads = [sum(slow[s.id] for s in shard) for shard in split(CATALOG, 4, slow)]
    biggest = max(sum(slow[i] for i in members) for members in _groups().values())
    assert max(loads) - min(loads) <= max(30.0, biggest)
    by_count = [sum(slow[s.id] for s in shard) for shard in split(CATALOG, 4)]
    assert max(loads) <= max(by_count)


def test_more_shards_than_cases_leaves_some_empty() -> None:
    shards = split(CATALOG[:3], 5)
    assert sorted(len(s) for s in shards) == [0, 0, 1, 1, 1]


@pytest.mark.timeout(900)
def _run(path: Path, catalog: str, shard: str = "", case: str = "a", version: str = "1"
         ) -> Path:
    run = RunResult(started="2026-12-02T00:00:00+00:00", gearspec_version=version,
                    options={"catalog": catalog, "shard": shard},
                    targets=[TargetInfo("ref", "ref")],
                    scenarios=[ScenarioInfo(case, case, "MUST", "", "", [], "x.yaml", 1)],
                    results=[CaseResult(case, "ref", Verdict.PASS)])
    run.write(path)
    return path


@pytest.mark.parametrize(("runs", "says"), [
    ([("c1", "1/2", "a"), ("c2", "2/2", "b")], "different catalogs"),
    ([("c1", "1/2", "a"), ("c1", "2/2", "b", "2")], "different gearspec versions"),
    ([("c1", "1/3", "a"), ("c1", "3/3", "b")], "shard 2/3 of ref missing"),
    ([("c1", "1/2", "a"), ("c1", "1/2", "b")], "shard 1/2 of ref is given twice"),
    ([("c1", "", "a"), ("c1", "", "a")], "a on ref is in both"),
], ids=["catalogs", "versions", "missing", "twice", "same-case"])
def test_merging_what_does_not_belong_together_is_one_line(
        tmp_path: Path, runs: list[tuple[str, ...]], says: str) -> None:
    paths = [str(_run(tmp_path / f"{i}.json", *run)) for i, run in enumerate(runs)]
    done = gearspec("report", "--merge", *paths, "--out", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shard", ["0/4", "5/4", "2", "a/b", "1/0"])
def test_a_bad_shard_is_one_line(shard: str) -> None:
    done = gearspec("run", "--shard", shard, "--list", timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--shard wants K/N" in done.stderr, done.stderr


def test_the_fingerprint_follows_the_catalog() -> None:
    assert fingerprint(CATALOG) == fingerprint(list(reversed(CATALOG)))
    assert fingerprint(CATALOG) != fingerprint(CATALOG[1:])
    assert str(Shard(2, 4)) == "2/4"
