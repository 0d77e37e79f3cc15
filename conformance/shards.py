"""Splitting a run over machines: ``gearspec run --shard K/N``.

The split depends on nothing but the selected cases and, when given, the
durations an earlier run recorded, so every machine that runs shard K of N
plays the same cases, and the N shards together play each selected case once.
Cases that share a server started with options of their own (``server:`` in
the scenario) stay in one shard, so that server starts once.  With durations
the shards are balanced by time (longest first, each to the shard with least
so far); without, by count.  ``gearspec report --merge`` puts the shards'
run JSONs back together (``results/merge.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from conformance.scenario import Scenario
from reference_server.usage import UsageError
from results import RunResult


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``K/N`` with 1 ≤ K ≤ N, else a one-line ``UsageError``."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard wants K/N with 1 <= K <= N (e.g. 2/4), got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def fingerprint(catalog: list[Scenario]) -> str:
    """What identifies a catalog: every case's id, file, options and steps as
    written.  Runs of different catalogs do not merge."""
    text = json.dumps([[s.id, s.file, list(s.server_options), [t.source for t in s.steps]]
                       for s in sorted(catalog, key=lambda s: s.id)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_durations(path: Path) -> dict[str, float]:
    """Each case's duration in an earlier run JSON (the mean over its targets)."""
    try:
        run = RunResult.read(path)
    except ValueError as error:
        raise UsageError(str(error)) from None
    seen: dict[str, list[float]] = {}
    for result in run.results:
        seen.setdefault(result.scenario, []).append(result.duration)
    return {case: statistics.fmean(times) for case, times in seen.items()}


def _units(cases: list[Scenario]) -> list[list[Scenario]]:
    """Cases that must go to one shard together: those sharing a server of their own
    options; every other case is a unit by itself.  In id order (stable)."""
    grouped: dict[tuple[str, ...], list[Scenario]] = {}
    units = []
    for case in sorted(cases, key=lambda s: s.id):
        if case.server_options and not case.fresh:
            grouped.setdefault(tuple(case.server_options), []).append(case)
        else:
            units.append([case])
    return units + list(grouped.values())


def split(cases: list[Scenario], count: int,
          durations: dict[str, float] | None = None) -> list[list[Scenario]]:
    """``count`` shards of ``cases``, each in the cases' own order."""
    known = [d for d in (durations or {}).values() if d > 0]
    guess = statistics.median(known) if known else 1.0  # a case the earlier run lacked

    def weight(unit: list[Scenario]) -> float:
        if not durations:
            return float(len(unit))
        return sum(durations.get(s.id, guess) for s in unit)

    loads = [0.0] * count
    picked: list[set[str]] = [set() for _ in range(count)]
    for unit in sorted(_units(cases), key=lambda u: (-weight(u), u[0].id)):
        lightest = min(range(count), key=lambda k: (loads[k], k))
        loads[lightest] += weight(unit)
        picked[lightest].update(s.id for s in unit)
    return [[s for s in cases if s.id in ids] for ids in picked]


def shard_of(cases: list[Scenario], shard: Shard,
             durations: dict[str, float] | None = None) -> list[Scenario]:
    return split(cases, shard.count, durations)[shard.index - 1]
