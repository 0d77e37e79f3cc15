"""Verbs that judge what a connection received.

Each expectation is a pure function ``(step, events, scope) -> Met | Unmet |
PENDING`` (``conformance.match``) and the record says how the engine gathers
the events it judges: "stream" (as they arrive, until the function decides
or the step's time runs out) or "sync" (everything up to an ECHO marker,
then one decision).  Packet types the case ignores (NOOP by default) are
skipped on the way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from conformance.context import Context
from conformance.events import Closed, Event, Stalled, Synced, TimedOut, describe, show
from conformance.match import PENDING, Met, Mismatch, Result, Scope, Unmet, seen, skip_ignored
from conformance.nodes import matcher_data, value_data
from conformance.scenario import Matcher, Step, Value
from conformance.verbs.record import NO_ARGS, Form, Verb, Written
from conformance.verbs.send import packet_fields, packet_types
from reference_server.protocol import PACKETS, Direction, Magic, Packet, PacketType, TextLine

WITHIN = frozenset({"note", "within"})


def _streamed(expect):  # type: ignore[no-untyped-def]
    """``perform`` for an expectation judged as events arrive."""
    async def perform(ctx: Context, step: Step) -> None:
        wire = await ctx.wire(step.conn)
        await ctx.expect(wire, lambda events: expect(step, events, ctx.scope),
                         ctx.timeout(getattr(step, "within", None)))
    return perform


def _synced(expect):  # type: ignore[no-untyped-def]
    """``perform`` for an expectation judged on everything up to an ECHO marker."""
    async def perform(ctx: Context, step: Step) -> None:
        wire = await ctx.wire(step.conn)
        events = await ctx.sync(wire)
        ctx.conclude(expect(step, events, ctx.scope))
    return perform


def _waiting(event: Event, what: str) -> Unmet | None:
    """The answer when a mark or a close stands where ``what`` should be."""
    if isinstance(event, TimedOut):
        return Unmet(what, describe(event),
                     text=f"nothing arrived within {event.waited:.1f} s while waiting for {what}")
    if isinstance(event, Closed):
        return Unmet(what, describe(event),
                     text=f"the connection was closed while waiting for {what}")
    return None


def _mismatch(attempt):  # type: ignore[no-untyped-def]
    """Run a matching body; a ``Mismatch`` it raises becomes its ``Unmet``."""
    def expect(step: Step, events: Sequence[Event], scope: Scope) -> Result:
        try:
            return attempt(step, events, scope)  # type: ignore[no-any-return]
        except Mismatch as mismatch:
            return mismatch.unmet
    return expect


# ---------------------------------------------------------------------------- expect


@dataclass
class ExpectPacket(Step):
    type: PacketType = PacketType.NOOP
    fields: dict[str, Matcher] = field(default_factory=dict)
    within: float | None = None
    also: tuple[PacketType, ...] = ()  # "A|B": any of these types will do
    magic: Magic = Magic.RES  # what the sender must use: \0RES from a server, \0REQ to it

    @property
    def types(self) -> tuple[PacketType, ...]:
        return (self.type, *self.also)


def _read_expect(written: Written) -> ExpectPacket:
    kinds = packet_types(written)
    # From a server: its responses; from a library: its requests.  (WORK_* go both ways.)
    never, who = (Direction.RESPONSE, "a library") if written.mode == "library" else \
        (Direction.REQUEST, "a server")
    for kind in kinds:
        if PACKETS[kind].direction is never:
            what = "a response" if never is Direction.RESPONSE else "a request"
            raise written.error(f"{kind.name} is {what}: {who} never sends it")
    where = f"{written.where}.{written.packet}"
    return ExpectPacket(written.line, written.conn, written.note, kinds[0],
                        {n: written.reader.matcher(v, f"{where}.{n}")
                         for n, v in packet_fields(written, *kinds).items()}, written.within,
                        kinds[1:], Magic.REQ if written.mode == "library" else Magic.RES)


@_mismatch
def expect_packet(step: ExpectPacket, events: Sequence[Event], scope: Scope) -> Result:
    """The next packet (ignored types skipped) is of that type, with those fields."""
    index = skip_ignored(events, scope, wanted=step.types)
    if index == len(events):
        return PENDING
    event = events[index]
    name = "|".join(t.name for t in step.types)
    if (unmet := _waiting(event, name)) is not None:
        return unmet
    if not isinstance(event, Packet) or event.type not in step.types:
        return Unmet(name, describe(event, step.magic))
    if event.magic is not step.magic:
        wanted, got = step.magic.value[1:].decode(), event.magic.value[1:].decode()
        return Unmet(f"{name} with magic \\0{wanted}", describe(event, step.magic),
                     text=f"{event.name} came with magic \\0{got} (a "
                          f"{'response' if step.magic is Magic.RES else 'request'} needs "
                          f"\\0{wanted})")
    arrived = event.fields()
    for field_name, matcher in step.fields.items():
        scope = scope.with_variables(scope.check(matcher, arrived[field_name],
                                                 f"{event.name}.{field_name}"))
    return Met(index + 1, scope.variables)


EXPECT = Verb(name="expect", step=ExpectPacket, packet=True, modifiers=WITHIN,
              usage="expect PACKET [{fields}]: the next packet (ignored types skipped)",
              read=_read_expect,
              write=lambda step: Form({n: matcher_data(m) for n, m in step.fields.items()}
                                      or NO_ARGS, "|".join(t.name for t in step.types)),
              perform=_streamed(expect_packet), expect=expect_packet, gather="stream",
              alternative=True)


# ---------------------------------------------------------------------------- text lines


@dataclass
class ExpectLines(Step):
    lines: list[Matcher] = field(default_factory=list)  # each with its line ending
    within: float | None = None


def _read_line(written: Written) -> ExpectLines:
    args = written.needs_args("expect-line needs the line")
    return ExpectLines(written.line, written.conn, written.note,
                       [written.reader.matcher(args, written.where)], written.within)


def _read_lines(written: Written) -> ExpectLines:
    read = written.reader
    items = read.sequence(written.needs_args("expect-lines needs the lines"), written.where)
    return ExpectLines(written.line, written.conn, written.note,
                       [read.matcher(v, f"{written.where}[{i}]") for i, v in enumerate(items)],
                       written.within)


def _write_lines(step: ExpectLines) -> Form:
    if len(step.lines) == 1:
        return Form(matcher_data(step.lines[0]), verb="expect-line")
    return Form([matcher_data(m) for m in step.lines], verb="expect-lines")


@_mismatch
def expect_lines(step: ExpectLines, events: Sequence[Event], scope: Scope) -> Result:
    """The next text lines, each line ending included."""
    index = 0
    for number, matcher in enumerate(step.lines, 1):
        index = skip_ignored(events, scope, index)
        if index == len(events):
            return PENDING
        event = events[index]
        if (unmet := _waiting(event, f"text line {number}")) is not None:
            return unmet
        if not isinstance(event, TextLine):
            return Unmet(f"a text line for line {number}", describe(event),
                         text=f"expected a text line for line {number}, got {describe(event)}")
        scope = scope.with_variables(scope.check(matcher, event.raw, f"line {number}"))
        index += 1
    return Met(index, scope.variables)


EXPECT_LINE = Verb(name="expect-line", step=ExpectLines, modifiers=WITHIN,
                   usage="expect-line: TEXT | {match: RE}: one text line, line ending included",
                   read=_read_line, write=_write_lines, perform=_streamed(expect_lines),
                   expect=expect_lines, gather="stream", alternative=True)
EXPECT_LINES = Verb(name="expect-lines", step=ExpectLines, modifiers=WITHIN,
                    usage="expect-lines: [TEXT ...]: several text lines",
                    read=_read_lines, write=_write_lines, perform=_streamed(expect_lines),
                    expect=expect_lines, gather="stream", alternative=True)


# ---------------------------------------------------------------------------- admin lists


@dataclass
class ExpectList(Step):
    """An admin list ending in ".\\n": the rows that contain one of ``filter`` must be
    exactly ``rows`` (in any order unless ``ordered``)."""

    rows: list[Matcher] = field(default_factory=list)
    filter: list[Value] = field(default_factory=list)
    ordered: bool = False
    within: float | None = None


def _read_list(written: Written) -> ExpectList:
    read, where = written.reader, written.where
    args = written.needs_args("expect-list needs {rows, filter}")
    spec = read.mapping(args, where)
    if set(spec) - {"rows", "filter", "ordered"} or "rows" not in spec or "filter" not in spec:
        raise read.error(args, where, "expect-list has rows, filter and maybe ordered")
    return ExpectList(written.line, written.conn, written.note,
                      [read.matcher(v, f"{where}.rows[{i}]") for i, v in
                       enumerate(read.sequence(spec["rows"], f"{where}.rows"))],
                      [read.value(v, f"{where}.filter") for v in
                       read.sequence(spec["filter"], f"{where}.filter")],
                      read.boolean(spec["ordered"], f"{where}.ordered")
                      if "ordered" in spec else False, written.within)


def _write_list(step: ExpectList) -> Form:
    spec: dict[str, object] = {"rows": [matcher_data(m) for m in step.rows],
                               "filter": [value_data(v) for v in step.filter]}
    if step.ordered:
        spec["ordered"] = True
    return Form(spec)


@_mismatch
def expect_list(step: ExpectList, events: Sequence[Event], scope: Scope) -> Result:
    """An admin list; only the rows holding one of the filter values are judged."""
    rows: list[bytes] = []
    index = 0
    while True:
        index = skip_ignored(events, scope, index)
        if index == len(events):
            return PENDING
        event = events[index]
        if (unmet := _waiting(event, "an admin list ending in '.'")) is not None:
            return unmet
        if not isinstance(event, TextLine):
            return Unmet("a row of an admin list", describe(event),
                         text=f"expected a row of an admin list, got {describe(event)}")
        index += 1
        if event.raw == b".\n":
            break
        if not rows and event.line.startswith(b"ERR"):
            return Unmet("an admin list", describe(event),
                         text=f"expected an admin list, got {describe(event)}")
        rows.append(event.raw)
    # A filter may name a function the case has not used yet: it gets its fresh name,
    # which no row holds.
    keys = []
    for value in step.filter:
        key, variables = scope.resolve(value, fresh=True)
        scope = scope.with_variables(variables)
        keys.append(key)
    mine = [row for row in rows if any(key in row for key in keys)]
    return Met(index, _match_rows(step, mine, scope))


def _match_rows(step: ExpectList, rows: list[bytes], scope: Scope) -> dict[str, bytes]:
    shown = "; ".join(show(r) for r in rows)
    if len(rows) != len(step.rows):
        raise Mismatch(Unmet(f"{len(step.rows)} rows", f"{len(rows)}: {shown}",
                             text=f"expected {len(step.rows)} rows of ours, got {len(rows)}: "
                                  f"{shown}"))
    if step.ordered:
        for number, (matcher, row) in enumerate(zip(step.rows, rows), 1):
            scope = scope.with_variables(scope.check(matcher, row, f"row {number}"))
        return dict(scope.variables)
    remaining = list(rows)
    for number, matcher in enumerate(step.rows, 1):
        for row in remaining:
            try:
                scope = scope.with_variables(scope.check(matcher, row, f"row {number}"))
            except Mismatch:
                continue
            remaining.remove(row)
            break
        else:
            raise Mismatch(Unmet(f"a row matching row {number}", shown,
                                 text=f"no row matches row {number} of the expectation; rows: "
                                      f"{shown}"))
    return dict(scope.variables)


EXPECT_LIST = Verb(name="expect-list", step=ExpectList, modifiers=WITHIN,
                   usage="expect-list: {rows: [...], filter: [...], ordered: false}: an admin "
                         "list",
                   read=_read_list, write=_write_list, perform=_streamed(expect_list),
                   expect=expect_list, gather="stream")


# ---------------------------------------------------------------------------- closes, silences


@dataclass
class ExpectClosed(Step):
    within: float | None = None


def expect_closed(step: ExpectClosed, events: Sequence[Event], scope: Scope) -> Result:
    """The server closes the connection (ignored packets may come first)."""
    index = skip_ignored(events, scope)
    if index == len(events):
        return PENDING
    event = events[index]
    if isinstance(event, Closed):
        return Met(index + 1, scope.variables)
    if isinstance(event, TimedOut):
        return Unmet("the connection to close", "it stayed open",
                     text="the connection stayed open")
    return Unmet("the connection to close", describe(event),
                 text=f"expected the connection to close, got {describe(event)}")


@dataclass
class ExpectSilence(Step):
    seconds: float = 0.3


def expect_silence(step: ExpectSilence, events: Sequence[Event], scope: Scope) -> Result:
    """Nothing (but ignored packets) arrives before the time is up."""
    index = skip_ignored(events, scope)
    if index == len(events):
        return PENDING
    event = events[index]
    if isinstance(event, TimedOut):
        return Met(index + 1, scope.variables)
    return Unmet("silence", describe(event), text=f"expected silence, got {describe(event)}")


async def _silence(ctx: Context, step: ExpectSilence) -> None:
    wire = await ctx.wire(step.conn)
    await ctx.expect(wire, lambda events: expect_silence(step, events, ctx.scope),
                     step.seconds * ctx.factor)


@dataclass
class ExpectNothing(Step):
    """Nothing is waiting on this connection (checked with an ECHO round trip, or a
    short silence for servers without ECHO)."""


@dataclass
class ExpectStalled(Step):
    """The connection has stopped answering: an ECHO_REQ sent to check gets no reply
    within the timeout (gearmand's reaction to some malformed packets)."""


def _unanswered(events: Sequence[Event]) -> str:
    return " (then no answer to the ECHO_REQ sent to check)" \
        if any(isinstance(e, Stalled) for e in events) else ""


def expect_nothing(step: ExpectNothing, events: Sequence[Event], scope: Scope) -> Result:
    index = skip_ignored(events, scope)
    if index < len(events) and isinstance(events[index], Synced):
        return Met(index + 1, scope.variables)
    arrived = seen([e for e in events if not isinstance(e, Synced | Stalled | TimedOut)])
    return Unmet("nothing", arrived, text=f"expected nothing, got {arrived}{_unanswered(events)}")


def expect_stalled(step: ExpectStalled, events: Sequence[Event], scope: Scope) -> Result:
    index = skip_ignored(events, scope)
    if index < len(events) and isinstance(events[index], Stalled):
        return Met(index + 1, scope.variables)
    arrived = seen([e for e in events if not isinstance(e, Synced | Stalled | TimedOut)])
    return Unmet("a connection that stopped answering", arrived,
                 text=f"expected a connection that stopped answering, got {arrived}"
                      f"{_unanswered(events)}")


EXPECT_CLOSED = Verb(name="expect-closed", step=ExpectClosed, modifiers=WITHIN,
                     usage="expect-closed: the server closes the connection",
                     args=False, read=lambda w: ExpectClosed(w.line, w.conn, w.note, w.within),
                     write=lambda step: Form(), perform=_streamed(expect_closed),
                     expect=expect_closed, gather="stream", alternative=True)
EXPECT_NOTHING = Verb(name="expect-nothing", step=ExpectNothing,
                      usage="expect-nothing: nothing is waiting on this connection",
                      args=False, read=lambda w: ExpectNothing(w.line, w.conn, w.note),
                      write=lambda step: Form(), perform=_synced(expect_nothing),
                      expect=expect_nothing, gather="sync", alternative=True)
EXPECT_STALLED = Verb(name="expect-stalled", step=ExpectStalled,
                      usage="expect-stalled: the connection no longer answers anything",
                      args=False, read=lambda w: ExpectStalled(w.line, w.conn, w.note),
                      write=lambda step: Form(), perform=_synced(expect_stalled),
                      expect=expect_stalled, gather="sync", alternative=True)
EXPECT_SILENCE = Verb(name="expect-silence", step=ExpectSilence,
                      usage="expect-silence: SECONDS: nothing arrives for that long",
                      read=lambda w: ExpectSilence(
                          w.line, w.conn, w.note,
                          w.reader.number(w.args, w.where) if w.args is not None else 0.3),
                      write=lambda step: Form(step.seconds), perform=_silence,
                      expect=expect_silence, gather="stream")

VERBS = (EXPECT, EXPECT_LINE, EXPECT_LINES, EXPECT_LIST, EXPECT_CLOSED, EXPECT_NOTHING,
         EXPECT_STALLED, EXPECT_SILENCE)
