"""Plays one scenario against one running target and judges it.

The engine opens the scenario's connections (on first use), performs its
steps in order, and records everything that crosses the wire in a
``Transcript``.  Each expectation reads the next events of its connection
(skipping the scenario's ignored packet types, NOOP by default) until what it
wants arrives or its timeout passes.  The first unmet expectation decides the
verdict by the scenario's level: MUST → FAIL, SHOULD → NON-STRICT, MAY → INFO.
An ``expect-one-of`` takes the verdict of the alternative that matched.

To know that nothing more is coming on a connection without waiting blindly,
the engine sends an ECHO_REQ carrying a fresh marker and reads up to its
ECHO_RES: servers answer each connection in order, so whatever the previous
requests caused has arrived by then.  For targets without ECHO it waits for a
short silence instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from conformance.scenario import (
    ExpectClosed,
    ExpectHTTP,
    ExpectLines,
    ExpectList,
    ExpectNothing,
    ExpectOneOf,
    ExpectPacket,
    ExpectRefused,
    ExpectSilence,
    ExpectStalled,
    Finish,
    Hangup,
    HTTPRequest,
    Matcher,
    Scenario,
    SendPacket,
    SendRaw,
    SendText,
    Sleep,
    Step,
    TargetAction,
    Value,
)
from reference_server.protocol import (
    PACKETS,
    Decoder,
    Magic,
    Packet,
    PacketType,
    ProtocolError,
    TextLine,
    decode_all,
    encode,
    frame,
)
from results import Entry, Verdict

DEFAULT_TIMEOUT = 2.0  # per expectation, times --timeout-factor
TargetControl = Callable[[str], Awaitable[None]]  # "restart" / "kill" the target
SILENCE = 0.3  # how long "nothing more" is, for targets without ECHO
_VARIABLE = re.compile(r"\$(\$|\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


class StepFailed(Exception):
    """An expectation was not met; the message says what arrived instead."""


class HarnessError(Exception):
    """The engine could not do what the scenario asked (not the target's fault)."""


@dataclass
class Closed:
    """The server closed the connection."""


@dataclass
class Garbage:
    """Bytes from the server that are not Gearman."""

    data: bytes
    error: str


Incoming = Packet | TextLine | Closed | Garbage


def to_bytes(text: str) -> bytes:
    """Scenario text as bytes: Latin-1 where it can be (so "\\xff" is the byte 0xff),
    UTF-8 otherwise."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def show(data: bytes, limit: int = 120) -> str:
    text = repr(data)[2:-1]
    return text if len(text) <= limit else text[:limit] + f"…(+{len(data)} bytes)"


def describe(event: Incoming, usual: Magic = Magic.RES) -> str:
    if isinstance(event, Packet):
        args = " ".join(f"{n}={show(a, 60)}" for n, a in zip(PACKETS[event.type].args,
                                                              event.args))
        magic = "" if event.magic is usual else f"[{event.magic.name} magic] "
        return f"{magic}{event.name} {args}".rstrip()
    if isinstance(event, TextLine):
        return f"text {show(event.raw)}"
    if isinstance(event, Closed):
        return "connection closed"
    return f"garbage {show(event.data)} ({event.error})"


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
    def __init__(self, record_raw: bool = False) -> None:
        self.entries: list[Entry] = []
        self.t0 = time.monotonic()
        self.started = time.time()  # wall clock of t0, for capture timestamps
        self.raw: list[Chunk] | None = [] if record_raw else None
        self._streams = itertools.count()

    def new_stream(self) -> int:
        return next(self._streams)

    def record(self, stream: int, conn: str, direction: str, kind: str,
               data: bytes = b"") -> None:
        """Keep a wire chunk, when this transcript records them (``record_raw``)."""
        if self.raw is not None:
            self.raw.append(Chunk(time.monotonic() - self.t0, stream, conn, direction, kind,
                                  data))

    def add(self, conn: str, direction: str, kind: str, summary: str, data: bytes = b"",
            fields: dict[str, bytes] | None = None, sync: bool = False) -> None:
        self.entries.append(Entry(
            round(time.monotonic() - self.t0, 6), conn, direction, kind, summary,
            data.hex(" ") if len(data) <= 4096 else data[:4096].hex(" ") + " …",
            {k: show(v, 200) for k, v in (fields or {}).items()}, sync))

    def sent(self, conn: str, data: bytes, sync: bool = False) -> None:
        try:
            events = decode_all(data, max_payload=1 << 31)
        except (ProtocolError, ValueError):
            events = []
        if len(events) == 1 and isinstance(events[0], Packet):
            packet = events[0]
            fields = dict(zip(PACKETS[packet.type].args, packet.args))
            self.add(conn, "send", "packet", describe(packet, Magic.REQ), data, fields, sync)
        elif events and all(isinstance(e, TextLine) for e in events):
            self.add(conn, "send", "text", show(data), data, sync=sync)
        else:
            self.add(conn, "send", "raw", f"{len(data)} bytes: {show(data, 80)}", data, sync=sync)

    def received(self, conn: str, event: Incoming, sync: bool = False) -> None:
        if isinstance(event, Packet):
            self.add(conn, "recv", "packet", describe(event), event.encode(),
                     dict(zip(PACKETS[event.type].args, event.args)), sync)
        elif isinstance(event, TextLine):
            self.add(conn, "recv", "text", show(event.raw), event.raw)
        elif isinstance(event, Closed):
            self.add(conn, "event", "close", "closed by the server")
        else:
            self.add(conn, "recv", "raw", describe(event), event.data)


class Wire:
    """One connection of a scenario: bytes out, events in (recorded as they arrive)."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 transcript: Transcript) -> None:
        self.name = name
        self.writer = writer
        self.transcript = transcript
        self.stream = transcript.new_stream()
        self.eof_sent = False
        transcript.record(self.stream, name, "send", "open")
        self.events: deque[Incoming] = deque()
        self.arrived = asyncio.Event()
        self.closed_by_server = False
        self.hung_up = False
        self.sync_markers: set[bytes] = set()
        self._task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = Decoder(max_payload=1 << 30, max_line=1 << 20)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self._record("recv", "data", data)
                decoder.feed(data)
                try:
                    while (event := decoder.next_event()) is not None:
                        self._push(event)
                except ProtocolError as error:
                    rest = decoder.pending()  # what could not be decoded
                    self._push(Garbage(rest, str(error)))
                    while data := await reader.read(65536):
                        self._record("recv", "data", data)
                        self._push(Garbage(data, "after garbage"))
                    break
            self._record("recv", "eof")
        except ConnectionResetError:
            self._record("recv", "reset")
        except (ConnectionError, OSError):
            pass
        self.closed_by_server = not self.hung_up
        self._push(Closed())

    def _push(self, event: Incoming) -> None:
        sync = (isinstance(event, Packet) and event.type == PacketType.ECHO_RES
                and event.args[0] in self.sync_markers)
        if not (isinstance(event, Closed) and self.hung_up):
            self.transcript.received(self.name, event, sync)
        self.events.append(event)
        self.arrived.set()

    def _record(self, direction: str, kind: str, data: bytes = b"") -> None:
        self.transcript.record(self.stream, self.name, direction, kind, data)

    def send(self, data: bytes, sync: bool = False) -> None:
        self.transcript.sent(self.name, data, sync)
        if self.writer.is_closing():
            return
        try:
            self.writer.write(data)
        except (ConnectionError, OSError, RuntimeError):
            return  # the server closed: the next expectation will see it
        if data:  # only what really left: a capture must not show bytes never sent
            self._record("send", "data", data)

    async def next(self, deadline: float) -> Incoming | None:
        """The next event, or None at the deadline (the event stays unread)."""
        while not self.events:
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return self.events[0]

    def take(self) -> Incoming:
        event = self.events.popleft()
        return event

    def finish(self) -> None:
        """Half-close: EOF to the server, the read side stays open."""
        if self.writer.can_write_eof() and not self.writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                self.writer.write_eof()
                self._client_eof()

    def _client_eof(self) -> None:
        if not self.eof_sent:
            self.eof_sent = True
            self._record("send", "eof")

    async def close(self) -> None:
        self.hung_up = True
        if not self.writer.is_closing():
            self.writer.close()
            self._client_eof()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass
class Outcome:
    verdict: Verdict
    message: str = ""
    step: int | None = None
    entries: list[Entry] = field(default_factory=list)
    # The wire, byte for byte, when run_scenario was asked to record it (for pcaps);
    # never part of the results.
    raw: list[Chunk] | None = None
    started: float = 0.0  # wall-clock time of the transcript's t=0


def _ca_data(context: ssl.SSLContext) -> str:
    """The CA certificates a context trusts, as PEM."""
    return "".join(ssl.DER_cert_to_PEM_cert(der)
                   for der in context.get_ca_certs(binary_form=True))


class Context:
    """Variables and connections of one case."""

    def __init__(self, scenario: Scenario, address: tuple[str, int], tag: str,
                 timeout_factor: float, has_echo: bool, record_raw: bool = False,
                 tls: ssl.SSLContext | None = None, http_port: int | None = None) -> None:
        self.scenario = scenario
        self.address = address
        self.tls = tls
        self.http_port = http_port
        self.http: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self.tag = tag
        self.factor = timeout_factor
        self.has_echo = has_echo
        self.variables: dict[str, bytes] = {}
        self.wires: dict[str, Wire] = {}
        self.transcript = Transcript(record_raw)
        self.markers = itertools.count(1)

    # -- values ---------------------------------------------------------------

    def resolve(self, value: Value, *, fresh: bool) -> bytes:
        """The bytes of a value; with ``fresh``, unbound variables get new names."""
        if value.raw is not None:
            return value.raw

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "$":
                return "$"
            name = name.strip("{}")
            if name not in self.variables:
                if not fresh:
                    raise HarnessError(f"${name} is used before it has a value")
                self.variables[name] = f"{self.tag}{name}".encode()
            return self.variables[name].decode("latin-1")

        return to_bytes(_VARIABLE.sub(substitute, value.text)) * value.times

    def check(self, matcher: Matcher, actual: bytes, what: str) -> None:
        """Compare, or capture; raise StepFailed with the difference."""
        if matcher.any:
            pass
        elif matcher.pattern is not None:
            pattern = _VARIABLE.sub(lambda m: re.escape(
                self.variables.get(m.group(1).strip("{}"), b"").decode("latin-1"))
                if m.group(1) != "$" else r"\$", matcher.pattern)
            if not re.fullmatch(pattern, actual.decode("latin-1"), re.DOTALL):
                raise StepFailed(f"{what}: {show(actual)} does not match /{matcher.pattern}/")
        else:
            assert matcher.value is not None
            name = matcher.value.capture
            if name is not None and name not in self.variables:
                self.variables[name] = actual
            else:
                wanted = self.resolve(matcher.value, fresh=False)
                if actual != wanted:
                    raise StepFailed(f"{what}: expected {show(wanted)}, got {show(actual)}")
        if matcher.capture is not None:
            self.variables[matcher.capture] = actual

    def timeout(self, within: float | None) -> float:
        base = within if within is not None else (self.scenario.timeout or DEFAULT_TIMEOUT)
        return base * self.factor

    # -- connections ----------------------------------------------------------

    def tls_for(self, name: str) -> ssl.SSLContext | None:
        """How this connection is made: the run's TLS, or what the case says."""
        mode = (self.scenario.tls or {}).get(name)
        if mode == "plaintext":
            return None
        if mode == "untrusted":
            return ssl.create_default_context()  # the system's CAs: not the test CA
        if mode == "anonymous" and self.tls is not None:
            # The same trust, no certificate of our own: a context cannot unload one.
            return ssl.create_default_context(cadata=_ca_data(self.tls))
        return self.tls

    async def connect(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = self.tls_for(name)
        return await asyncio.wait_for(
            asyncio.open_connection(*self.address, ssl=tls,
                                    server_hostname=self.address[0] if tls else None),
            5 * self.factor)

    async def wire(self, name: str) -> Wire:
        wire = self.wires.get(name)
        if wire is None:
            try:
                reader, writer = await self.connect(name)
            except ssl.SSLError as error:  # the server's answer, not the harness's trouble
                raise StepFailed(f"the TLS handshake of {name} failed: "
                                 f"{error.reason or error}") from None
            except (OSError, TimeoutError) as error:
                raise HarnessError(f"cannot connect {name} to {self.address[0]}:"
                                   f"{self.address[1]}: {error}") from None
            how = "" if self.tls_for(name) is None else " over TLS"
            self.transcript.add(name, "event", "open", f"connected{how}")
            wire = self.wires[name] = Wire(name, reader, writer, self.transcript)
        return wire

    async def close_all(self) -> None:
        for wire in self.wires.values():
            await wire.close()
        for _, writer in self.http.values():
            writer.close()


async def _http_step(ctx: Context, step: HTTPRequest | ExpectHTTP) -> None:
    """The HTTP protocol module's side: a request on its port, or its response."""
    if isinstance(step, HTTPRequest):
        if ctx.http_port is None:
            raise HarnessError("this server has no HTTP port (the case needs server-options "
                               "[-r, http, --http-port, '{http_port}'])")
        try:
            ctx.http[step.conn] = await asyncio.wait_for(
                asyncio.open_connection(ctx.address[0], ctx.http_port), 5 * ctx.factor)
        except (OSError, TimeoutError) as error:
            raise HarnessError(f"cannot connect {step.conn} to the HTTP port: {error}") from None
        body = ctx.resolve(step.body, fresh=True)
        lines = [step.method.encode() + b" " + ctx.resolve(step.path, fresh=True) + b" " +
                 step.version.encode(), *(ctx.resolve(h, fresh=True) for h in step.headers)]
        if step.method in ("POST", "PUT") and not any(
                line.lower().startswith(b"content-length:") for line in lines[1:]):
            lines.append(b"Content-Length: %d" % len(body))
        request = b"\r\n".join(lines) + b"\r\n\r\n" + body
        ctx.transcript.add(step.conn, "send", "text", f"HTTP {show(request)}", request)
        ctx.http[step.conn][1].write(request)
        return
    if step.conn not in ctx.http:
        raise HarnessError(f"{step.conn} sent no HTTP request")
    reader = ctx.http[step.conn][0]
    wait = ctx.timeout(step.within)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
    except TimeoutError:
        raise StepFailed(f"no HTTP response within {wait:.1f} s") from None
    except (asyncio.IncompleteReadError, OSError) as error:
        partial = getattr(error, "partial", b"")
        raise StepFailed(f"the connection closed without an HTTP response"
                         f"{': ' + show(partial) if partial else ''}") from None
    lines = head[:-4].split(b"\r\n")
    status = lines[0].split(b" ")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in lines[1:])}
    declared = headers.get(b"content-length", b"0") or b"0"
    if not declared.isdigit():
        raise StepFailed(f"HTTP Content-Length is not a number: {show(declared)}")
    length = int(declared)
    try:
        body = await asyncio.wait_for(reader.readexactly(length), wait)
    except (TimeoutError, asyncio.IncompleteReadError, OSError):
        raise StepFailed(f"the body was shorter than its Content-Length {length}") from None
    ctx.transcript.add(step.conn, "recv", "text", f"HTTP {show(head + body)}", head + body)
    if len(status) < 2 or status[1] != str(step.status).encode():
        raise StepFailed(f"HTTP status: expected {step.status}, got {show(lines[0])}")
    for name, matcher in step.headers.items():
        value = headers.get(name.lower().encode())
        if value is None:
            raise StepFailed(f"HTTP header {name}: missing")
        ctx.check(matcher, value, f"HTTP header {name}")
    if step.body is not None:
        ctx.check(step.body, body, "HTTP body")
    try:
        more = await asyncio.wait_for(reader.read(1), wait)
    except TimeoutError:
        raise StepFailed("the connection stayed open after the response") from None
    except OSError:
        more = b""
    if more:
        raise StepFailed(f"more bytes after the response: {show(more)}")
    ctx.transcript.add(step.conn, "event", "close", "closed by the server")


async def _drain_until_sync(ctx: Context, wire: Wire) -> tuple[list[Incoming], str]:
    """Events waiting on a connection, found by an ECHO round trip (or a silence).
    Returns the events and how it ended: "sync", "closed" or "stalled"."""
    events: list[Incoming] = []
    if ctx.has_echo and not wire.closed_by_server:
        marker = b"gearspec-sync-%d" % next(ctx.markers)
        wire.sync_markers.add(marker)
        wire.send(encode(PacketType.ECHO_REQ, marker), sync=True)
        deadline = time.monotonic() + ctx.timeout(None)
        while True:
            event = await wire.next(deadline)
            if event is None:
                return events, "stalled"
            wire.take()
            if isinstance(event, Packet) and event.type == PacketType.ECHO_RES and \
                    event.args[0] == marker:
                return events, "sync"
            events.append(event)
            if isinstance(event, Closed):
                return events, "closed"
    deadline = time.monotonic() + SILENCE * ctx.factor
    while (event := await wire.next(deadline)) is not None:
        wire.take()
        events.append(event)
        if isinstance(event, Closed):
            return events, "closed"
        deadline = time.monotonic() + SILENCE * ctx.factor
    return events, "sync"


def _match_packet(ctx: Context, step: ExpectPacket, event: Incoming) -> None:
    if not isinstance(event, Packet) or event.type != step.type:
        raise StepFailed(f"expected {step.type.name}, got {describe(event)}")
    if event.magic is not Magic.RES:
        raise StepFailed(f"{step.type.name} came with magic \\0REQ (a response needs \\0RES)")
    names = PACKETS[step.type].args
    for name, matcher in step.fields.items():
        ctx.check(matcher, event.args[names.index(name)], f"{step.type.name}.{name}")


def _match_line(ctx: Context, matcher: Matcher, event: Incoming, what: str) -> None:
    if not isinstance(event, TextLine):
        raise StepFailed(f"expected a text line for {what}, got {describe(event)}")
    ctx.check(matcher, event.raw, what)


def _ignorable(ctx: Context, event: Incoming, wanted: PacketType | None = None) -> bool:
    return (isinstance(event, Packet) and event.type in ctx.scenario.ignore
            and event.type != wanted)


async def _next_relevant(ctx: Context, wire: Wire, deadline: float, what: str,
                         wanted: PacketType | None = None) -> Incoming:
    waited = max(deadline - time.monotonic(), 0.0)
    while True:
        event = await wire.next(deadline)
        if event is None:
            raise StepFailed(f"nothing arrived within {waited:.1f} s while waiting for {what}")
        if _ignorable(ctx, event, wanted):
            wire.take()
            continue
        if isinstance(event, Closed):
            raise StepFailed(f"the connection was closed while waiting for {what}")
        return wire.take()


async def _read_list(ctx: Context, wire: Wire, deadline: float) -> list[bytes]:
    rows: list[bytes] = []
    while True:
        event = await _next_relevant(ctx, wire, deadline, "an admin list ending in '.'")
        if not isinstance(event, TextLine):
            raise StepFailed(f"expected a row of an admin list, got {describe(event)}")
        if event.raw == b".\n":
            return rows
        if not rows and event.line.startswith(b"ERR"):
            raise StepFailed(f"expected an admin list, got {describe(event)}")
        rows.append(event.raw)


async def _perform(ctx: Context, step: Step, target_control: TargetControl | None) -> None:
    """Do one step; raise StepFailed or HarnessError."""
    if isinstance(step, Sleep):
        await asyncio.sleep(step.seconds * ctx.factor)
        return
    if isinstance(step, TargetAction):
        if target_control is None:
            raise HarnessError("this target cannot be restarted or killed")
        ctx.transcript.add("target", "event", "note", f"target {step.action}")
        await target_control(step.action)
        return
    if isinstance(step, HTTPRequest | ExpectHTTP):
        await _http_step(ctx, step)
        return
    if isinstance(step, ExpectRefused):  # before a connection is made for it
        try:
            reader, writer = await ctx.connect(step.conn)
        except (OSError, TimeoutError, ssl.SSLError) as error:
            ctx.transcript.add(step.conn, "event", "note", f"refused: {error}")
            return
        # A TLS 1.3 server may only refuse after the handshake: a refused peer is then
        # closed at once, before any request.
        writer.write(encode(PacketType.ECHO_REQ, b"refused?"))
        try:
            data = await asyncio.wait_for(reader.read(1), ctx.timeout(None))
        except (OSError, TimeoutError, ssl.SSLError) as error:
            data = b""
            ctx.transcript.add(step.conn, "event", "note", f"refused: {error}")
        writer.close()
        if data:
            raise StepFailed("the connection was accepted and answered")
        return
    wire = await ctx.wire(step.conn)
    if isinstance(step, SendPacket):
        args = [ctx.resolve(step.fields.get(n, Value("")), fresh=True)
                for n in PACKETS[step.type].args]
        try:
            data = encode(step.type, *args, magic=Magic(step.magic))
        except ValueError as error:
            raise HarnessError(str(error)) from None
        wire.send(data)
    elif isinstance(step, SendRaw):
        if step.data is not None:
            wire.send(ctx.resolve(step.data, fresh=True))
        else:
            assert step.magic is not None and step.packet_type is not None
            payload = ctx.resolve(step.payload or Value(""), fresh=True)
            data = frame(step.magic, step.packet_type, payload)
            if step.length is not None:
                data = data[:8] + step.length.to_bytes(4, "big") + data[12:]
            wire.send(data)
    elif isinstance(step, SendText):
        wire.send(ctx.resolve(step.text, fresh=True) + (b"\n" if step.newline else b""))
    elif isinstance(step, Hangup):
        ctx.transcript.add(step.conn, "event", "close", "closed by the client")
        await wire.close()
        del ctx.wires[step.conn]
    elif isinstance(step, Finish):
        ctx.transcript.add(step.conn, "event", "close", "half-closed by the client (EOF sent)")
        wire.finish()
        deadline = time.monotonic() + ctx.timeout(step.within)
        while not isinstance(event := await wire.next(deadline), Closed):
            if event is None:
                raise StepFailed("the server kept the connection open after the client's EOF")
            wire.take()
        wire.take()
    elif isinstance(step, ExpectPacket):
        deadline = time.monotonic() + ctx.timeout(step.within)
        event = await _next_relevant(ctx, wire, deadline, step.type.name, step.type)
        _match_packet(ctx, step, event)
    elif isinstance(step, ExpectLines):
        deadline = time.monotonic() + ctx.timeout(step.within)
        for index, matcher in enumerate(step.lines):
            event = await _next_relevant(ctx, wire, deadline, f"text line {index + 1}")
            _match_line(ctx, matcher, event, f"line {index + 1}")
    elif isinstance(step, ExpectList):
        deadline = time.monotonic() + ctx.timeout(step.within)
        rows = await _read_list(ctx, wire, deadline)
        # A filter may name a function the case has not used yet: it gets its fresh
        # name, which no row holds.
        keys = [ctx.resolve(v, fresh=True) for v in step.filter]
        mine = [row for row in rows if any(key in row for key in keys)]
        _match_rows(ctx, step, mine)
    elif isinstance(step, ExpectClosed):
        deadline = time.monotonic() + ctx.timeout(step.within)
        while True:
            event = await wire.next(deadline)
            if event is None:
                raise StepFailed("the connection stayed open")
            wire.take()
            if isinstance(event, Closed):
                return
            if not _ignorable(ctx, event):
                raise StepFailed(f"expected the connection to close, got {describe(event)}")
    elif isinstance(step, ExpectNothing | ExpectStalled):
        events, how = await _drain_until_sync(ctx, wire)
        if not _alternative_matches(ctx, [step], events, how):
            seen = "; ".join(describe(e) for e in events) or "nothing"
            wanted = "nothing" if isinstance(step, ExpectNothing) else \
                "a connection that stopped answering"
            after = " (then no answer to the ECHO_REQ sent to check)" if how == "stalled" else ""
            raise StepFailed(f"expected {wanted}, got {seen}{after}")
    elif isinstance(step, ExpectSilence):
        deadline = time.monotonic() + step.seconds * ctx.factor
        while (event := await wire.next(deadline)) is not None:
            wire.take()
            if not _ignorable(ctx, event):
                raise StepFailed(f"expected silence, got {describe(event)}")
    else:
        raise HarnessError(f"cannot perform {type(step).__name__} here")


def _match_rows(ctx: Context, step: ExpectList, rows: list[bytes]) -> None:
    if len(rows) != len(step.rows):
        raise StepFailed(f"expected {len(step.rows)} rows of ours, got {len(rows)}: "
                         + "; ".join(show(r) for r in rows))
    if step.ordered:
        for index, (matcher, row) in enumerate(zip(step.rows, rows)):
            ctx.check(matcher, row, f"row {index + 1}")
        return
    remaining = list(rows)
    for index, matcher in enumerate(step.rows):
        for row in remaining:
            saved = dict(ctx.variables)
            try:
                ctx.check(matcher, row, f"row {index + 1}")
            except StepFailed:
                ctx.variables = saved
                continue
            remaining.remove(row)
            break
        else:
            raise StepFailed(f"no row matches row {index + 1} of the expectation; rows: "
                             + "; ".join(show(r) for r in rows))


def _alternative_matches(ctx: Context, steps: list[Step], events: list[Incoming], how: str
                         ) -> bool:
    """Do these expectations describe exactly what arrived up to the sync point
    (``how``: "sync", "closed" or "stalled")?  Variables they capture are kept
    only if they match."""
    saved = dict(ctx.variables)
    queue = deque(e for e in events if not _ignorable(ctx, e))
    try:
        for step in steps:
            if isinstance(step, ExpectPacket):
                if not queue:
                    raise StepFailed("missing")
                _match_packet(ctx, step, queue.popleft())
            elif isinstance(step, ExpectLines):
                for index, matcher in enumerate(step.lines):
                    if not queue:
                        raise StepFailed("missing")
                    _match_line(ctx, matcher, queue.popleft(), f"line {index + 1}")
            elif isinstance(step, ExpectClosed):
                if not (queue and isinstance(queue[0], Closed)):
                    raise StepFailed("not closed")
                queue.popleft()
            elif isinstance(step, ExpectNothing):
                if queue or how != "sync":
                    raise StepFailed("something")
            elif isinstance(step, ExpectStalled) and (queue or how != "stalled"):
                raise StepFailed("not stalled")
        if queue or (how == "stalled" and not isinstance(steps[-1], ExpectStalled)):
            raise StepFailed("more arrived")
        return True
    except StepFailed:
        ctx.variables = saved
        return False


async def run_scenario(scenario: Scenario, address: tuple[str, int], *, tag: str,
                       timeout_factor: float = 1.0, has_echo: bool = True,
                       target_control: TargetControl | None = None,
                       record_raw: bool = False, tls: ssl.SSLContext | None = None,
                       http_port: int | None = None) -> Outcome:
    """Play a scenario; the outcome holds the verdict and the transcript (and with
    ``record_raw`` every byte on the wire, in ``Outcome.raw``).  With ``tls`` every
    connection is made over TLS (the transcript is of what goes inside)."""
    ctx = Context(scenario, address, tag, timeout_factor, has_echo, record_raw, tls, http_port)
    failing = {"MUST": Verdict.FAIL, "SHOULD": Verdict.NON_STRICT, "MAY": Verdict.INFO}
    worst = Verdict.PASS
    notes: list[str] = []
    index = 0
    try:
        for index, step in enumerate(scenario.steps):
            if isinstance(step, ExpectOneOf):
                wire = await ctx.wire(step.conn)
                events, how = await _drain_until_sync(ctx, wire)
                for alternative in step.alternatives:
                    if _alternative_matches(ctx, alternative.steps, events, how):
                        verdict = {"PASS": Verdict.PASS, "NON-STRICT": Verdict.NON_STRICT,
                                   "INFO": Verdict.INFO, "FAIL": Verdict.FAIL}[alternative.verdict]
                        ctx.transcript.add(step.conn, "event", "note",
                                           f"one of: {alternative.verdict} {alternative.note}")
                        if verdict is Verdict.FAIL:
                            return _outcome(ctx, Verdict.FAIL, f"step {index} (line {step.line}):"
                                            f" {alternative.note or 'an alternative that fails'}",
                                            index)
                        if verdict is not Verdict.PASS:
                            notes.append(alternative.note)
                            worst = max(worst, verdict, key=_rank)
                        break
                else:
                    seen = "; ".join(describe(e) for e in events) or "nothing"
                    raise StepFailed(f"none of the alternatives matches what arrived: {seen}"
                                     + (" (then the connection stalled)" if how == "stalled"
                                        else ""))
                continue
            await _perform(ctx, step, target_control)
    except StepFailed as failure:
        step = scenario.steps[index]
        verdict = failing[scenario.level]
        return _outcome(ctx, verdict, f"step {index} (line {step.line}): {failure}", index)
    except HarnessError as error:
        return _outcome(ctx, Verdict.ERROR, f"step {index}: {error}", index)
    finally:
        await ctx.close_all()
    return _outcome(ctx, worst, "; ".join(n for n in notes if n), None)


_SEVERITY = {Verdict.PASS: 0, Verdict.INFO: 1, Verdict.NON_STRICT: 2, Verdict.UNSUPPORTED: 3,
             Verdict.FAIL: 4, Verdict.ERROR: 5}


def _rank(verdict: Verdict) -> int:
    return _SEVERITY[verdict]


def _outcome(ctx: Context, verdict: Verdict, message: str, step: int | None) -> Outcome:
    # ``raw`` is the live list: the connections closed after the verdict still add
    # their FINs to it.
    return Outcome(verdict, message, step, ctx.transcript.entries, ctx.transcript.raw,
                   ctx.transcript.started)
