"""What the core has to send: bytes per connection, and who has some.

Rules this module keeps:

* A rule that answers appends the reply's bytes to ``conn.out``, in the order
  the rules run; nothing is written anywhere else, so a connection's replies
  leave in the order its requests came in (what ``SyncMarker`` relies on).
* A connection with something to send (or to close) is listed once, in the
  order it first had something, until the transport takes its bytes.
* A disconnected connection (``conn.closed``) is never listed: bytes for a
  peer that has gone are dropped with it.
* Closing is a flag, acted on after the pending bytes are sent.
"""

from __future__ import annotations

from reference_server.core.model import Connection
from reference_server.protocol import ErrorCode, PacketType, response


class Outbox:
    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty: dict[int, Connection] = {}  # by id, in the order they became pending

    def send(self, conn: Connection, data: bytes) -> None:
        conn.out.append(data)
        if conn.id not in self.dirty and not conn.closed:
            self.dirty[conn.id] = conn

    def error(self, conn: Connection, error: ErrorCode) -> None:
        self.send(conn, response(PacketType.ERROR, error.code, error.text))

    def close(self, conn: Connection) -> None:
        conn.closing = True
        if not conn.closed:
            self.dirty[conn.id] = conn

    def forget(self, conn: Connection) -> None:
        """The peer is gone: nothing more for it."""
        self.dirty.pop(conn.id, None)

    def drain(self) -> list[tuple[int, bytes, bool]]:
        """(connection id, bytes, close after sending?) for every listed connection."""
        ready = []
        for conn in self.dirty.values():
            data = b"".join(conn.out) if len(conn.out) != 1 else conn.out[0]
            conn.out.clear()
            ready.append((conn.id, data, conn.closing))
        self.dirty.clear()
        return ready

    def take(self, conn: Connection) -> bytes:
        """One connection's bytes (it stays listed if it is to be closed)."""
        data = b"".join(conn.out)
        conn.out.clear()
        if not conn.closing:
            self.dirty.pop(conn.id, None)
        return data
