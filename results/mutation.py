"""The figures of a ``gearspec mutate`` run, as the terminal table and the HTML
report both show them: a row per module, then one for all."""

from __future__ import annotations

from typing import Any

COUNTS = ("mutants", "killed", "timeout", "survived", "equivalent")


def score(row: dict[str, int]) -> float:
    """Killed (a hang counts as killed) over the mutants that are not equivalent."""
    counted = row["mutants"] - row["equivalent"]
    return (row["killed"] + row["timeout"]) / counted if counted else 1.0


def score_rows(modules: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``{module, mutants, killed, timeout, survived, equivalent, score}`` per module,
    sorted, and a last row ``all``; score as a percentage with one decimal."""
    rows = [{"module": name, **{k: row[k] for k in COUNTS}} for name, row in
            sorted(modules.items())]
    rows.append({"module": "all", **{k: sum(row[k] for row in rows) for k in COUNTS}})
    return [{**row, "score": f"{100 * score(row):.1f}%"} for row in rows]
