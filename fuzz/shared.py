"""Where a campaign keeps its examples, and how campaigns on many machines share them.

``--db FOLDER`` is hypothesis's folder database, for one machine.  ``--db
redis://HOST:PORT/N`` is hypothesis's Redis database (``hypothesis.extra.redis``):
every campaign pointed at it adds the examples it found failing and replays
everyone else's first, so a bug one worker found is tried by all.  Beside the
examples, the Redis database keeps the findings: the first campaign to find one
writes its scenario file, and a campaign that finds the same one again is told
where it is instead of writing a second (``claim``).
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from reference_server.usage import UsageError

FINDINGS_KEY = "gearspec-fuzz:findings"  # hash: digest of a finding → who saved it, and it


@dataclass(frozen=True)
class Store:
    """A campaign's example database: a folder, or a Redis URL."""

    where: str

    @property
    def shared(self) -> bool:
        return self.where.startswith("redis://")

    def __str__(self) -> str:
        return self.where


def parse_store(text: str) -> Store:
    """``--db``: a folder, or ``redis://HOST:PORT/N`` (checked to answer, else one line)."""
    if not text.startswith("redis://"):
        return Store(str(Path(text)))
    parts = urlsplit(text)
    number = parts.path.strip("/")
    if not parts.hostname or (number and not number.isdigit()):
        raise UsageError(f"--db wants a folder or redis://HOST:PORT/N, got {text!r}")
    try:
        _redis(Store(text)).ping()
    except Exception as error:  # redis raises its own ConnectionError, and OSErrors
        raise UsageError(f"--db {text}: Redis does not answer ({error})") from None
    return Store(text)


def _redis(store: Store):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(store.where, socket_connect_timeout=5)


def example_database(store: Store | None) -> ExampleDatabase | None:
    if store is None:
        return None
    if store.shared:
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(_redis(store))
    return DirectoryBasedExampleDatabase(store.where)


def digest(finding: str) -> str:
    """What makes two findings one: the scenario's text (not its file's header)."""
    return hashlib.sha256(finding.encode()).hexdigest()[:20]


def claim(store: Store, finding: str, path: Path) -> str | None:
    """Record that this campaign saves ``finding`` at ``path``; or, when another
    campaign saved it first, where that one did (``HOST:PATH``), and save nothing."""
    record = json.dumps({"saved": f"{socket.gethostname()}:{path}", "finding": finding})
    client = _redis(store)
    if client.hsetnx(FINDINGS_KEY, digest(finding), record):
        return None
    earlier = client.hget(FINDINGS_KEY, digest(finding))
    return str(json.loads(earlier)["saved"]) if earlier else "another campaign"
