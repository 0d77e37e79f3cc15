"""``-q libmemcached``: gearmand's memcached layout.

gearmand 1.1.x (plugins/queue/libmemcached/queue.cc) stores each background job
as one item: key ``<prefix><function>-<unique>`` (prefix ``gear_``), value the
workload, the item's flags the priority (0 high, 1 normal, 2 low), no expiry.
On replay it lists every key (``memcached_dump``) and splits the key at the
first ``-``.  We write the same items, so either server replays the other's.

What memcached cannot promise, we say rather than hide:
* memcached keeps items in memory only and evicts under memory pressure:
  this queue survives a restart of the job server, not of memcached, and not
  a full memcached (start it with ``-M`` to get errors instead of evictions);
* a function name with ``-`` would come back split wrongly (gearmand's bug):
  we refuse to store such a job, so its client hears ERROR QUEUE_ERROR at
  once instead of the job vanishing at the next start;
* epoch jobs are refused, as gearmand refuses them;
* keys are at most 250 bytes: a longer function and unique are refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from reference_server.queues import BatchingQueue, Op, QueueError, StoredJob

MAX_KEY = 250


class _RawSerde:
    """Bytes in and out, and the flags with them (they hold the priority)."""

    def serialize(self, key: bytes, value: Any) -> tuple[bytes, int]:
        data, flags = value
        return data, flags

    def deserialize(self, key: bytes, value: bytes, flags: int) -> tuple[bytes, int]:
        return value, flags


class MemcachedQueue(BatchingQueue):
    name = "libmemcached"

    def __init__(self, servers: str = "127.0.0.1:11211", prefix: str = "gear_") -> None:
        super().__init__()
        from pymemcache.client.base import Client

        first = servers.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        try:
            address = (host or first, int(port) if port else 11211)
        except ValueError:
            raise QueueError(f"--libmemcached-servers: {servers!r} is not HOST:PORT") from None
        self.prefix = prefix.encode()
        self.client = Client(address, serde=_RawSerde(), connect_timeout=5, timeout=5)
        try:
            self.client.version()
        except (OSError, Exception) as error:  # pymemcache raises its own and socket errors
            raise QueueError(f"memcached {address[0]}:{address[1]}: {error}") from None

    def key(self, function: bytes, unique: bytes) -> bytes:
        return self.prefix + function + b"-" + unique

    def add(self, job: StoredJob) -> None:
        if job.when:
            raise QueueError("the libmemcached queue does not store epoch jobs (nor does "
                             "gearmand's)")
        if b"-" in job.function:
            raise QueueError("a function name with '-' cannot be stored in memcached: it "
                             "would come back under another name")
        if len(self.key(job.function, job.unique)) > MAX_KEY or any(
                c <= 32 or c == 127 for c in self.key(job.function, job.unique)):
            raise QueueError("function and unique do not make a valid memcached key")
        super().add(job)

    def _write(self, ops: list[Op]) -> None:
        try:
            for kind, arg in ops:
                if kind == "add":
                    if not self.client.set(self.key(arg.function, arg.unique),
                                           (arg.data, arg.priority), noreply=False):
                        raise QueueError("memcached refused the item (is it full?)")
                else:
                    self.client.delete(self.key(arg[1], arg[0]), noreply=False)
        except QueueError:
            raise
        except Exception as error:
            raise QueueError(f"memcached: {error}") from None

    def _keys(self) -> list[bytes]:
        dump = self.client.raw_command(b"lru_crawler metadump all", b"END\r\n")
        keys = []
        for line in dump.split(b"\n"):
            if line.startswith(b"key="):
                key = unquote_to_bytes(line.split(b" ", 1)[0][4:])
                if key.startswith(self.prefix):
                    keys.append(key)
        return keys

    def _read(self) -> list[StoredJob]:
        jobs = []
        try:
            for key in self._keys():
                got = self.client.get(key)
                if got is None:  # evicted or done since the listing
                    continue
                data, flags = got
                function, sep, unique = key[len(self.prefix):].partition(b"-")
                if sep:
                    jobs.append(StoredJob(unique, function, data, int(flags)))
        except Exception as error:
            raise QueueError(f"memcached: {error}") from None
        return jobs

    def close(self) -> None:
        self.client.close()
