"""The memory transport: the whole reference server, driven without sockets or sleeps.

A sibling of ``net.py`` (the asyncio transport): the same core opened from the
same options (``config.parse``, ``config.open_core``: the ``-q`` queue is
opened and replayed as ``gearspec serve`` does), the same HTTP gateway, but
peers are objects the caller holds and time is a number the caller moves.

Rules this module keeps, so that what a test sees here is what it would see
over TCP:

* One ``send`` is one transport tick: the bytes go to the core, then its
  output is taken once (``drain``, which commits the persistent queue first,
  as ``net.py`` flushes once per event-loop tick) and delivered to every
  peer it is for.  A connection the core closes is then dropped, as
  ``net.py``'s ``connection_lost`` drops it, and what that causes is
  delivered in a further tick.
* EOF from a peer closes the connection (gearmand closes on EOF); so does
  the peer hanging up.
* The clock only moves in ``advance``; CAN_DO_TIMEOUT timers that fall due
  fire one deadline at a time, each at its own time, as ``net.py``'s timer
  calls ``expire_timers`` when the core's next deadline comes.
* ``kill`` is SIGKILL: no shutdown hook, nothing after the last tick.
  ``stop`` is SIGTERM: the queue's shutdown hook, then the queue closes.

Options that configure sockets, logging or the process (``-L -p -b
--keepalive* -l --verbose --syslog -t -f -P --coredump --http-port``) are
accepted and have no effect here (``--verbose`` is still what admin
``verbose`` reports); those that would act on the caller's process or
promise what memory cannot give (``-d``, ``-u``, ``--ssl``) are refused with
``UsageError``.
"""

from __future__ import annotations

import logging
import time

from reference_server.config import ServeConfig, open_core, parse
from reference_server.core import JobServer
from reference_server.core.http import HTTPGateway
from reference_server.usage import UsageError

log = logging.getLogger("reference_server")

#: Options a memory server refuses, with why.
_REFUSED = {
    "daemon": "-d: a memory server runs in its caller's process",
    "user": "-u: a memory server runs in its caller's process",
    "tls": "--ssl: the memory transport carries no TLS",
}


class MemoryServer:
    """The reference server on a memory transport, with a clock the caller moves: the
    whole server (gearmand's options, persistent queues, the HTTP module) driven
    without sockets or sleeps."""

    def __init__(self, argv: list[str], *, now: float | None = None) -> None:
        config = parse(argv, prog="MemoryServer")
        if config is None:
            raise UsageError("-V and --check-args leave nothing to serve")
        for name, why in _REFUSED.items():
            if getattr(config, name):
                raise UsageError(why)
        self._config: ServeConfig = config
        self._now = time.time() if now is None else now
        self._core: JobServer | None = None
        self._peers: dict[int, MemoryPeer] = {}  # by connection id, of the current core
        self._start()

    # ------------------------------------------------------------------
    # The server's life

    def _start(self) -> None:
        core, replayed = open_core(self._config, clock=lambda: self._now)
        core.on_queue_error = lambda message: log.error("persistent queue: %s", message)
        log.info("replayed %d jobs from the %s queue", replayed, core.queue.name)
        self._core = core

    @property
    def alive(self) -> bool:
        return self._core is not None

    def kill(self) -> None:
        """As SIGKILL: every connection dropped at once, the queue closed without its
        shutdown hook, the core gone."""
        core = self._stop_core(disconnect=False)
        if core is not None:
            core.queue.close()

    def stop(self) -> None:
        """A graceful stop (as SIGTERM): connections closed, then the queue's shutdown
        hook (``--store-queue-on-shutdown`` writes its jobs there) and its close."""
        core = self._stop_core(disconnect=True)
        if core is not None:
            core.queue.shutdown(core.stored_jobs())
            core.queue.close()

    def restart(self) -> None:
        """A graceful stop if alive, then a new core with the same options that replays
        the queue.  The clock keeps its time."""
        self.stop()
        self._start()

    def _stop_core(self, *, disconnect: bool) -> JobServer | None:
        core, self._core = self._core, None
        if core is None:
            return None
        peers, self._peers = self._peers, {}
        for conn_id, peer in peers.items():
            peer._closed = True
            if disconnect:
                core.disconnect(conn_id)  # what net.py's connection_lost does at a stop
        return core

    # ------------------------------------------------------------------
    # Time

    @property
    def now(self) -> float:
        return self._now

    def next_deadline(self) -> float | None:
        """When a CAN_DO_TIMEOUT next falls due, or None."""
        return None if self._core is None else self._core.next_deadline()

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds``; timers that fall due on the way fire in
        deadline order, each at its own time, and what they cause is delivered."""
        if seconds < 0:
            raise ValueError("the clock does not go back")
        target = self._now + seconds
        while self._core is not None:
            deadline = self._core.next_deadline()
            if deadline is None or deadline > target:
                break
            self._now = max(self._now, deadline)
            self._core.expire_timers()
            self._tick()
        self._now = target

    # ------------------------------------------------------------------
    # Peers

    def connect(self, *, http: bool = False) -> MemoryPeer:
        """A new connection: to the binary port, or with ``http`` to the HTTP module
        (which needs ``-r http``)."""
        if http and self._config.http_port is None:
            raise ValueError("no HTTP module: start the server with -r http")
        core = self._core
        if core is None:
            raise ConnectionRefusedError("the memory server is not running")
        gateway = HTTPGateway(core.options.version.encode()) if http else None
        peer = MemoryPeer(self, core.connect("127.0.0.1"), gateway)
        self._peers[peer._conn_id] = peer
        return peer

    def _receive(self, peer: MemoryPeer, to_core: bytes, to_client: bytes = b"",
                 close: bool = False) -> None:
        """A peer's bytes for the core; for an HTTP peer, also what its gateway answers
        at once (written before the tick, as net.py's _HTTPPeer writes it)."""
        core = self._core
        if core is None or self._peers.get(peer._conn_id) is not peer:
            return  # the connection is gone: bytes sent into it are lost
        if to_core:
            try:
                core.receive(peer._conn_id, to_core)
            except Exception:
                # As net.py: a bug of ours, not the peer's fault: log it, drop this
                # connection and serve everyone else.
                log.exception("internal error on connection %d; closing it", peer._conn_id)
                close = True
        if peer._answer(to_client, close):
            self._drop(peer)
        self._tick()

    def _hang_up(self, peer: MemoryPeer) -> None:
        """The peer closed its side (or sent EOF, which the server answers by closing)."""
        if self._peers.get(peer._conn_id) is peer:
            self._drop(peer)
            self._tick()

    def _drop(self, peer: MemoryPeer) -> None:
        peer._closed = True
        del self._peers[peer._conn_id]
        assert self._core is not None
        self._core.disconnect(peer._conn_id)

    def _tick(self) -> None:
        """One transport tick: the core's output taken once and delivered.  Connections
        it closed are then dropped, and their consequences delivered in a further tick."""
        while self._core is not None:
            closed = []
            for conn_id, data, close in self._core.drain():
                peer = self._peers.get(conn_id)
                if peer is not None and peer._deliver(data, close):
                    closed.append(peer)
            if self._core.shutdown_requested:
                self.stop()  # an allowed admin 'shutdown' (--admin-shutdown)
                return
            if not closed:
                return
            for peer in closed:
                if self._peers.get(peer._conn_id) is peer:
                    self._drop(peer)


class MemoryPeer:
    """One connection to a ``MemoryServer``: bytes in, and an inbox of what the server
    sent.  With an HTTP gateway (``connect(http=True)``) it speaks HTTP, as
    ``net.py``'s ``_HTTPPeer`` does."""

    def __init__(self, server: MemoryServer, conn_id: int, gateway: HTTPGateway | None) -> None:
        self._server = server
        self._conn_id = conn_id
        self._gateway = gateway
        self._inbox = bytearray()
        self._closed = False  # by the server
        self._hung_up = False  # by us: close() or shutdown_write()

    def send(self, data: bytes) -> None:
        """Bytes to the server; then, as one transport tick, everything the server
        sends to any peer is delivered to that peer's inbox.  Bytes sent after the
        server closed the connection are lost, as a socket's would be."""
        if self._hung_up:
            raise BrokenPipeError("this peer has hung up")
        if self._closed or not data:
            return
        if self._gateway is None:
            self._server._receive(self, data)
        else:
            reply = self._gateway.receive(data)
            self._server._receive(self, reply.to_core, reply.to_client, reply.close)

    def receive(self) -> bytes:
        """What the server sent this peer since the last call."""
        data = bytes(self._inbox)
        self._inbox.clear()
        return data

    @property
    def closed(self) -> bool:
        """The connection is closed: the server closed it (or this peer hung up).
        ``receive`` still returns the last bytes first."""
        return self._closed

    def close(self) -> None:
        """The peer hangs up; what that causes is delivered to the others."""
        if not self._hung_up:
            self._hung_up = True
            self._server._hang_up(self)

    def shutdown_write(self) -> None:
        """EOF from the peer.  As net.py does (gearmand closes on EOF), the server
        closes the connection: here that is the same as hanging up."""
        self.close()

    def _deliver(self, data: bytes, close: bool) -> bool:
        """The core's bytes for this peer; True if the connection is to be closed."""
        if self._gateway is not None:
            reply = self._gateway.deliver(data)
            return self._answer(reply.to_client, reply.close or close)
        return self._answer(data, close)

    def _answer(self, data: bytes, close: bool) -> bool:
        if self._closed:
            return False
        self._inbox += data
        return close
