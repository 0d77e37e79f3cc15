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

import socket
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from reference_server.queues import BatchingQueue, Op, QueueError, StoredJob

MAX_KEY = 250
BUSY_WAIT = 30.0  # seconds to wait for another crawler request to finish
GET_BATCH = 100  # keys per get at replay
TIMEOUT = 5.0


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
        self.address = address
        self.client = Client(address, serde=_RawSerde(), connect_timeout=TIMEOUT,
                             timeout=TIMEOUT)
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
        """Every key with our prefix, from ``lru_crawler metadump all``.

        memcached runs one crawler request at a time and answers BUSY meanwhile (a
        server killed during its replay leaves one running for a moment): we wait
        for it, within limits.  The listing that follows a crawl cut short has been
        seen to leave out a few items (memcached 1.6.18: 7 of 100,000 once), while
        the next listing had them all; so after a wait we take two and keep both."""
        dump, waited = self._listing()
        dumps = [dump, self._listing()[0]] if waited else [dump]
        keys: dict[bytes, None] = {}  # in listing order, once each
        for line in b"\n".join(dumps).split(b"\n"):
            if line.startswith(b"key="):
                key = unquote_to_bytes(line.split(b" ", 1)[0][4:])
                if key.startswith(self.prefix):
                    keys[key] = None
        return list(keys)

    def _listing(self) -> tuple[bytes, bool]:
        """One whole listing, and whether memcached was busy before it."""
        waited = False
        deadline = time.monotonic() + BUSY_WAIT
        while (dump := self._metadump()).startswith(b"BUSY"):
            waited = True
            if time.monotonic() > deadline:
                raise QueueError(f"memcached stayed busy with another crawler request "
                                 f"for {BUSY_WAIT:.0f} s: cannot list the queue")
            time.sleep(0.05)
        if not dump.endswith(b"END"):
            raise QueueError(f"memcached cannot list its keys (lru_crawler metadump): "
                             f"{dump[:80]!r}")
        return dump, waited

    def _metadump(self) -> bytes:
        """One ``lru_crawler metadump all`` answer, without its final \r\n.  On a
        connection of its own: pymemcache's raw_command drops all but the last
        4 KiB of an answer longer than that."""
        with socket.create_connection(self.address, timeout=TIMEOUT) as sock:
            sock.sendall(b"lru_crawler metadump all\r\n")
            answer = b""
            # Listed lines end in \n, the listing in END\r\n: the first \r\n ends it.
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    raise QueueError("memcached closed the connection during a listing")
                answer += data
            return answer.split(b"\r\n", 1)[0]

    def _read(self) -> list[StoredJob]:
        jobs = []
        try:
            keys = self._keys()
            for start in range(0, len(keys), GET_BATCH):
                found = self.client.get_many(keys[start:start + GET_BATCH])
                for key, (data, flags) in found.items():  # evicted or done: not found
                    function, sep, unique = key[len(self.prefix):].partition(b"-")
                    if sep:
                        jobs.append(StoredJob(unique, function, data, int(flags)))
        except QueueError:
            raise
        except Exception as error:
            raise QueueError(f"memcached: {error}") from None
        return jobs

    def close(self) -> None:
        self.client.close()
