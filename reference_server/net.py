"""The asyncio transport: sockets in and out of the sans-IO ``JobServer``.

All protocol decisions are in ``core``; this module accepts connections,
hands the core whatever bytes arrive, and once per event-loop tick writes what
``drain()`` returns (``drain`` first commits the persistent queue, so the
tick's acknowledgements leave after their rows are stored), closes what the
core asks to close, and calls ``expire_timers`` when the core's next deadline
comes.  A peer that does not read its replies stops being read
from (asyncio's write-buffer watermarks), so one slow peer cannot make the
server buffer without bound.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass

from reference_server.core import JobServer
from reference_server.core.http import HTTPGateway

log = logging.getLogger("reference_server")


@dataclass(slots=True)
class Keepalive:
    """TCP keepalive on accepted sockets.  gearmand 1.1.20 turns SO_KEEPALIVE on
    for every accepted socket; ``--keepalive`` adds its three values (-1: leave
    the system default)."""

    enabled: bool = False
    idle: int = -1
    interval: int = -1
    count: int = -1

    def apply(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if not self.enabled:
            return
        for option, value in ((getattr(socket, "TCP_KEEPIDLE", None), self.idle),
                              (getattr(socket, "TCP_KEEPINTVL", None), self.interval),
                              (getattr(socket, "TCP_KEEPCNT", None), self.count)):
            if option is not None and value > 0:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


class _Peer(asyncio.Protocol):
    __slots__ = ("owner", "conn_id", "transport")

    def __init__(self, owner: Transport) -> None:
        self.owner = owner
        self.conn_id = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername") or ("?", 0)
        label = sock.fileno() if sock is not None else None
        if sock is not None:
            self.owner.keepalive.apply(sock)
        self.conn_id = self.owner.core.connect(str(peer[0]), label)
        self.owner.peers[self.conn_id] = self
        log.debug("accepted %s:%s as connection %d", peer[0], peer[1], self.conn_id)

    def data_received(self, data: bytes) -> None:
        try:
            self.owner.core.receive(self.conn_id, data)
        except Exception:
            # A bug of ours, not the peer's fault: log it, drop this connection
            # (its state is cleaned up by connection_lost) and serve everyone else.
            log.exception("internal error on connection %d; closing it", self.conn_id)
            if self.transport is not None:
                self.transport.close()
        self.owner.schedule_flush()

    def eof_received(self) -> bool:
        return False  # close our side too, as gearmand does on EOF

    def deliver(self, data: bytes, close: bool) -> None:
        """The core's bytes for this peer."""
        assert self.transport is not None
        if data:
            self.transport.write(data)
        if close:
            self.transport.close()  # after the buffered bytes are written

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.peers.pop(self.conn_id, None)
        self.owner.core.disconnect(self.conn_id)
        self.owner.schedule_flush()
        log.debug("connection %d closed%s", self.conn_id, f" ({exc})" if exc else "")

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class _HTTPPeer(_Peer):
    """A connection on the HTTP port: an HTTP request becomes a submit for the core
    (``core/http.py``), the core's answer becomes the HTTP response."""

    __slots__ = ("gateway",)

    def __init__(self, owner: Transport) -> None:
        super().__init__(owner)
        self.gateway = HTTPGateway(owner.core.options.version.encode())

    def data_received(self, data: bytes) -> None:
        reply = self.gateway.receive(data)
        if reply.to_core:
            super().data_received(reply.to_core)
        self._send(reply.to_client, reply.close)

    def deliver(self, data: bytes, close: bool) -> None:
        reply = self.gateway.deliver(data)
        self._send(reply.to_client, reply.close or close)

    def _send(self, data: bytes, close: bool) -> None:
        if self.transport is None:
            return
        if data:
            self.transport.write(data)
        if close:
            self.transport.close()


class Transport:
    """Listens on TCP and drives one ``JobServer``."""

    def __init__(self, core: JobServer, *, keepalive: Keepalive | None = None) -> None:
        self.core = core
        self.keepalive = keepalive or Keepalive()
        self.peers: dict[int, _Peer] = {}
        self.servers: list[asyncio.base_events.Server] = []
        self.stopped = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_pending = False
        core.on_queue_error = lambda message: log.error("persistent queue: %s", message)

    async def listen(self, host: str | None, port: int, *, backlog: int = 32,
                     tls: ssl.SSLContext | None = None) -> list[tuple[str, int]]:
        """Bind and start accepting; returns the bound (address, port) pairs.  With
        ``tls``, every connection starts with a TLS handshake; one that fails (a
        plaintext client, say) is closed by asyncio before a peer exists."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Peer(self), host=host, port=port,
                                          backlog=backlog, reuse_address=True, ssl=tls,
                                          ssl_handshake_timeout=10.0 if tls else None)
        self.servers.append(server)
        return [sock.getsockname()[:2] for sock in server.sockets]

    async def listen_http(self, host: str | None, port: int, *,
                          backlog: int = 32) -> list[tuple[str, int]]:
        """The HTTP protocol module's port (``-r http --http-port``)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _HTTPPeer(self), host=host, port=port,
                                          backlog=backlog, reuse_address=True)
        self.servers.append(server)
        return [sock.getsockname()[:2] for sock in server.sockets]

    def schedule_flush(self) -> None:
        """Flush once per event-loop tick, after every read of that tick: one queue
        commit covers all of them (group commit) and each peer gets one write."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        peers = self.peers
        for conn_id, data, close in self.core.drain():
            peer = peers.get(conn_id)
            if peer is None or peer.transport is None:
                continue
            peer.deliver(data, close)
        if self.core.shutdown_requested:
            self.stop()
            return
        self._schedule_timer()

    def _schedule_timer(self) -> None:
        deadline = self.core.next_deadline()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        # The core's clock is wall time; convert the deadline to the loop's clock.
        delay = max(deadline - self.core.clock(), 0.0)
        self._timer_at = deadline
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.expire_timers()
        self.flush()

    def stop(self) -> None:
        """Stop accepting and close every connection (their pending bytes are sent)."""
        if self.stopped.is_set():
            return
        for server in self.servers:
            server.close()
        for peer in list(self.peers.values()):
            if peer.transport is not None:
                peer.transport.close()
        if self._timer is not None:
            self._timer.cancel()
        self.stopped.set()
