"""One run from many: shards of a run (``gearspec run --shard K/N``) and runs of
other targets, made on other machines, merged into one run JSON and report.

Runs merge only when they played the same catalog (``options["catalog"]``, the
catalog's fingerprint) with the same gearspec version; a run sharded K/N merges
only with its N-1 sister shards, all of them, so that a merged report never
hides cases nobody played.  A case played twice on one target is refused too.
"""

from __future__ import annotations

from collections.abc import Sequence

from results import RunResult


class MergeError(ValueError):
    """Runs that cannot be merged; the message is one line."""


def _same(runs: Sequence[tuple[str, RunResult]], what: str, value: str) -> None:
    first_name, first = runs[0]
    for name, run in runs[1:]:
        mine, theirs = _get(first, what), _get(run, what)
        if mine != theirs:
            raise MergeError(f"{name} and {first_name} are runs of different {value} "
                             f"({theirs or 'unknown'} vs {mine or 'unknown'}): not merged")


def _get(run: RunResult, what: str) -> str:
    return run.gearspec_version if what == "version" else str(run.options.get(what, ""))


def _check_shards(runs: Sequence[tuple[str, RunResult]]) -> None:
    """Every shard of every sharded target run present, once."""
    shards: dict[tuple[str, int], list[int]] = {}  # (targets, N) → the K seen
    for name, run in runs:
        shard = str(run.options.get("shard") or "")
        if not shard:
            continue
        index, count = (int(part) for part in shard.split("/"))
        targets = ",".join(t.name for t in run.targets)
        seen = shards.setdefault((targets, count), [])
        if index in seen:
            raise MergeError(f"{name}: shard {shard} of {targets} is given twice")
        seen.append(index)
    for (targets, count), seen in shards.items():
        missing = sorted(set(range(1, count + 1)) - set(seen))
        if missing:
            raise MergeError(f"shard{'s' * (len(missing) > 1)} "
                             f"{', '.join(f'{k}/{count}' for k in missing)} of {targets} "
                             f"missing: a merged report would hide the cases they play")


def merge(runs: Sequence[tuple[str, RunResult]]) -> RunResult:
    """The runs (each with the name to blame it by, e.g. its path) as one."""
    if not runs:
        raise MergeError("nothing to merge")
    _same(runs, "version", "gearspec versions")
    _same(runs, "catalog", "catalogs")
    _check_shards(runs)
    first = runs[0][1]
    options = {k: v for k, v in first.options.items() if k not in ("shard", "run_id")}
    options["merged"] = [name for name, _ in runs]
    merged = RunResult(started=min(run.started for _, run in runs),
                       finished=max(run.finished for _, run in runs),
                       gearspec_version=first.gearspec_version, options=options,
                       coverage=first.coverage,
                       mutation=next((run.mutation for _, run in runs if run.mutation), {}))
    scenarios, played = {}, {}
    for name, run in runs:
        for target in run.targets:
            if all(t.name != target.name for t in merged.targets):
                merged.targets.append(target)
        for info in run.scenarios:
            scenarios.setdefault(info.id, info)
        for result in run.results:
            key = (result.scenario, result.target)
            if key in played:
                raise MergeError(f"{result.scenario} on {result.target} is in both "
                                 f"{played[key]} and {name}: not merged")
            played[key] = name
            merged.results.append(result)
    merged.scenarios = sorted(scenarios.values(), key=lambda s: (s.file, s.line, s.id))
    order = {info.id: i for i, info in enumerate(merged.scenarios)}
    targets = {t.name: i for i, t in enumerate(merged.targets)}
    merged.results.sort(key=lambda r: (targets.get(r.target, 0), order.get(r.scenario, 0)))
    return merged
