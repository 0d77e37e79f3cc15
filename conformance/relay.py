"""The interop grid's relay: a port between the libraries and the server.

Every byte is forwarded as it comes, and kept (per connection, both ways, the
first ``CAPTURE_LIMIT`` bytes) for the test's capture; ``last`` says when bulk
data last crossed, one of the signs of progress the grid's stuck-detector reads
(``conformance/interop_run.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from conformance.targets import Target
from conformance.transcript import Transcript

BULK = 8 << 10  # a read this large is a workload moving; small packets may be a retry loop
CAPTURE_LIMIT = 1 << 20  # bytes of each connection and direction kept for the pcap


class Relay:
    """A port between the libraries and the server: every byte forwarded, and kept
    (per connection, both ways) for the test's capture."""

    def __init__(self, upstream: Target, transcript: Transcript) -> None:
        self.upstream, self.transcript = upstream, transcript
        self.server: asyncio.base_events.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.pipes: list[asyncio.Future[Any]] = []
        # When bulk data last crossed: a 16 MiB workload moving slowly is not stuck.
        # Small packets do not count: a library that reconnects and retries for ever
        # (gear's worker, answered ERROR by Perl's server) talks without progress.
        self.last = time.monotonic()

    async def open(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return "127.0.0.1", self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = self.transcript.new_stream()
        conn = f"tcp{stream}"
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream.address)
        except OSError as error:  # the server is down (restarting): the library retries
            self.transcript.note(conn, f"refused: {error}")
            writer.close()
            return
        self.writers += [writer, up_writer]
        self.transcript.record(stream, conn, "send", "open")
        self.transcript.add(conn, "event", "open", "a library connected to the server")
        pipes = asyncio.gather(self._pipe(reader, up_writer, stream, conn, "send"),
                               self._pipe(up_reader, writer, stream, conn, "recv"))
        self.pipes.append(pipes)
        with contextlib.suppress(asyncio.CancelledError):
            await pipes

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    stream: int, conn: str, direction: str) -> None:
        kept = 0
        with contextlib.suppress(ConnectionError, OSError):
            while (data := await source.read(1 << 16)) and not sink.is_closing():
                if kept < CAPTURE_LIMIT:  # a 16 MiB test's capture: its first MiB
                    self.transcript.record(stream, conn, direction, "data",
                                           data[:CAPTURE_LIMIT - kept])
                    kept += len(data)
                    if kept >= CAPTURE_LIMIT:
                        self.transcript.note(conn, f"the capture keeps the first "
                                                   f"{CAPTURE_LIMIT >> 20} MiB {direction}")
                if len(data) >= BULK:
                    self.last = time.monotonic()
                sink.write(data)
                await sink.drain()
        self.transcript.record(stream, conn, direction, "eof")
        sink.close()  # one side gone: the other sees the close, as without the relay

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for pipes in self.pipes:
            pipes.cancel()
        for writer in self.writers:
            writer.close()
