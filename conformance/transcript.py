"""What crossed the wire during one case: entries for reading, chunks for pcaps.

``Transcript.entries`` are what the report shows: each packet or text line
sent and received, decoded, with its hex (cut at 4096 bytes), and events
(connections opened and closed, notes).  ``Transcript.raw`` (only when asked
for) is the wire byte for byte, for ``--pcap-dir``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from conformance.events import AppEvent, Closed, Data, Incoming, describe, show
from reference_server.protocol import Magic, Packet, ProtocolError, TextLine, decode_all
from results import Entry


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one TCP connection carried, byte for byte, for writing pcaps.

    The transcript's entries are for reading (and cut at 4096 bytes); chunks
    are the wire: each write of the harness and each read from the server,
    in the order they happened, plus the connection's opening and closes.
    They stay in memory and out of the run JSON.
    """

    t: float  # seconds since the case started (the entries' clock)
    stream: int  # one per TCP connection (a name reopened after a hangup is a new one)
    conn: str  # the scenario's connection name
    direction: str  # "send" (client → server) or "recv"
    kind: str  # "open", "data", "eof" (a FIN) or "reset"
    data: bytes = b""


class Transcript:
    def __init__(self, record_raw: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.entries: list[Entry] = []
        self.clock = clock
        self.t0 = clock()
        self.started = time.time()  # wall clock of t0, for capture timestamps
        self.raw: list[Chunk] | None = [] if record_raw else None
        self._streams = itertools.count()

    def new_stream(self) -> int:
        return next(self._streams)

    def record(self, stream: int, conn: str, direction: str, kind: str,
               data: bytes = b"") -> None:
        """Keep a wire chunk, when this transcript records them (``record_raw``)."""
        if self.raw is not None:
            self.raw.append(Chunk(self.clock() - self.t0, stream, conn, direction, kind, data))

    def add(self, conn: str, direction: str, kind: str, summary: str, data: bytes = b"",
            fields: dict[str, bytes] | None = None, sync: bool = False) -> None:
        self.entries.append(Entry(
            round(self.clock() - self.t0, 6), conn, direction, kind, summary,
            data.hex(" ") if len(data) <= 4096 else data[:4096].hex(" ") + " …",
            {k: show(v, 200) for k, v in (fields or {}).items()}, sync))

    def note(self, conn: str, text: str) -> None:
        self.add(conn, "event", "note", text)

    def sent(self, conn: str, data: bytes, sync: bool = False) -> None:
        """Bytes the harness wrote: one packet, admin text or anything else."""
        try:
            events = decode_all(data, max_payload=1 << 31)
        except (ProtocolError, ValueError):
            events = []
        if len(events) == 1 and isinstance(events[0], Packet):
            packet = events[0]
            self.add(conn, "send", "packet", describe(packet, Magic.REQ), data, packet.fields(),
                     sync)
        elif events and all(isinstance(e, TextLine) for e in events):
            self.add(conn, "send", "text", show(data), data, sync=sync)
        else:
            self.add(conn, "send", "raw", f"{len(data)} bytes: {show(data, 80)}", data, sync=sync)

    def received(self, conn: str, event: Incoming, sync: bool = False) -> None:
        if isinstance(event, Packet):
            self.add(conn, "recv", "packet", describe(event), event.encode(), event.fields(),
                     sync)
        elif isinstance(event, TextLine):
            self.add(conn, "recv", "text", show(event.raw), event.raw)
        elif isinstance(event, Closed):
            self.add(conn, "event", "close", "closed by the server")
        elif isinstance(event, Data):
            self.add(conn, "recv", "text", show(event.data), event.data)
        elif isinstance(event, AppEvent):
            self.add(conn, "recv", "app", describe(event), fields=event.fields)
        else:
            self.add(conn, "recv", "raw", describe(event), event.data)
