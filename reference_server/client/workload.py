"""JSON workloads: what ``to_json`` writes, ``from_json`` (and ``WorkerJob.json``) reads."""

from __future__ import annotations

import json
from typing import Any


def to_json(value: Any) -> bytes:
    """A JSON workload (UTF-8, compact)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def from_json(data: bytes) -> Any:
    return json.loads(data.decode())
