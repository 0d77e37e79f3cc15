"""``-q redis``: gearmand's Redis layout, made to round-trip.

gearmand 1.1.x (plugins/queue/redis/queue.cc) keeps one hash per job under
``<prefix>-<function>-<unique>`` with the fields ``data`` and ``priority``, and
on replay lists ``KEYS <prefix>*`` and splits the key on ``-``: so a function
or unique containing ``-`` comes back wrong, and it refuses epoch jobs.  We
write the same keys and fields, plus ``function``, ``unique`` and ``when``,
replay with SCAN, and prefer those fields to the key (gearmand's later
releases do the same); hashes gearmand wrote still replay from their key.
One MULTI/EXEC per tick carries that tick's changes.
"""

from __future__ import annotations

from reference_server.queues import BatchingQueue, Op, QueueError, StoredJob


class RedisQueue(BatchingQueue):
    name = "redis"

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, password: str = "",
                 prefix: str = "_gear_") -> None:
        super().__init__()
        import redis

        self.prefix = prefix.encode()
        self.client = redis.Redis(host=host, port=port, password=password or None,
                                  socket_timeout=5, socket_connect_timeout=5)
        try:
            self.client.ping()
        except redis.RedisError as error:
            raise QueueError(f"redis {host}:{port}: {error}") from None

    def key(self, function: bytes, unique: bytes) -> bytes:
        return b"%s-%s-%s" % (self.prefix, function, unique)

    def _write(self, ops: list[Op]) -> None:
        import redis

        pipe = self.client.pipeline(transaction=True)
        for kind, arg in ops:
            if kind == "add":
                pipe.hset(self.key(arg.function, arg.unique), mapping={
                    b"data": arg.data, b"priority": arg.priority, b"function": arg.function,
                    b"unique": arg.unique, b"when": arg.when})
            else:
                pipe.delete(self.key(arg[1], arg[0]))
        try:
            pipe.execute()
        except redis.RedisError as error:
            raise QueueError(f"redis: {error}") from None

    def _read(self) -> list[StoredJob]:
        import redis

        jobs = []
        try:
            for key in self.client.scan_iter(match=self.prefix + b"*", count=1000):
                fields = self.client.hgetall(key)
                if b"function" in fields:
                    function, unique = fields[b"function"], fields.get(b"unique", b"")
                else:  # written by gearmand: the key is all there is
                    function, _, unique = key[len(self.prefix) + 1:].partition(b"-")
                jobs.append(StoredJob(unique, function, fields.get(b"data", b""),
                                      int(fields.get(b"priority", b"1")),
                                      int(fields.get(b"when", b"0"))))
        except redis.RedisError as error:
            raise QueueError(f"redis: {error}") from None
        return jobs

    def close(self) -> None:
        self.client.close()
