"""The JSON files of figures a run can carry into its report: ``gearspec bench
--json`` and ``gearspec mutate --json``.  Each reader is an ``argparse`` type, so
a wrong file is refused in one line when the command line is read, before
anything is played."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _figures(text: str, what: str, keys: frozenset[str]) -> dict[str, Any]:
    path = Path(text)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"cannot read {what} {path}: {error}") from None
    if not isinstance(data, dict) or not keys <= data.keys():
        raise argparse.ArgumentTypeError(
            f"{path} is not a {what} file (it lacks {', '.join(sorted(keys))})")
    return data


def bench_file(text: str) -> dict[str, Any]:
    """A ``gearspec bench --json`` file, to chart in the report (``--bench``)."""
    return _figures(text, "gearspec bench --json", frozenset())


def mutation_file(text: str) -> dict[str, Any]:
    """A ``gearspec mutate --json`` file, to attach to a run (``--mutation``)."""
    return _figures(text, "gearspec mutate --json", frozenset({"modules", "survivors"}))
