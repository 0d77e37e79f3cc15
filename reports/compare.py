"""What changed between two runs (new failures first)."""

from __future__ import annotations

from typing import Any

from results import RunResult

ORDER = ("new failure", "fixed", "verdict changed", "added", "removed")


def compare(old: RunResult, new: RunResult) -> list[dict[str, Any]]:
    before = {(r.target, r.scenario): r for r in old.results}
    after = {(r.target, r.scenario): r for r in new.results}
    changes = []
    for key in sorted(set(before) | set(after)):
        was, now = before.get(key), after.get(key)
        if was is None:
            kind = "added"
        elif now is None:
            kind = "removed"
        elif was.expected and not now.expected:
            kind = "new failure"
        elif not was.expected and now.expected:
            kind = "fixed"
        elif was.verdict is not now.verdict:
            kind = "verdict changed"
        else:
            continue
        changes.append({"kind": kind, "target": key[0], "scenario": key[1],
                        "old": was.verdict.value if was else None,
                        "new": now.verdict.value if now else None,
                        "message": now.message if now else ""})
    changes.sort(key=lambda c: ORDER.index(c["kind"]))
    return changes
