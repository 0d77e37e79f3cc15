"""Verbs of the job server the harness plays in a library case.

``send``, ``send-raw`` and ``hangup`` work as in server mode (a send is then a
response, ``\\0RES``).  These are the server's moves that need more:

* ``lib assign: {handle: H:x:1, function: $fn, data: x}``: the job assignment a
  worker's last grab asks for, as gearmand answers it (JOB_ASSIGN for GRAB_JOB,
  JOB_ASSIGN_UNIQ for GRAB_JOB_UNIQ, and for GRAB_JOB_ALL JOB_ASSIGN_UNIQ, or
  JOB_ASSIGN_ALL when the job has a reducer), so that a case about a worker holds
  whatever grab its library uses;
* ``lib expect-grab``: the worker asks for work, as workers do: a grab, or first a
  PRE_SLEEP, which the server answers with a NOOP as it does when work comes;
* ``lib send-together: [{WORK_DATA: {...}}, {WORK_COMPLETE: {...}}]``: several
  packets in one write, as a server's buffered output arrives;
* ``lib keeps-idle: {seconds: 2, at-most: 20}``: for that long, answer every grab
  with NO_JOB (and with ``noop: true`` every PRE_SLEEP with a NOOP: a server that
  wakes its workers with nothing to give them), and count the grabs: a worker
  SHOULD NOT spin;
* ``listener restart: {down: 0.5}``: the server goes away (every connection
  closed, the port too) and comes back on the same port after ``down``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conformance.context import Context, HarnessError, failed
from conformance.events import Closed, Event, TimedOut, describe
from conformance.jobspec import binary_text
from conformance.match import PENDING, Met, Result, Scope, Unmet, skip_ignored
from conformance.nodes import is_null, value_data
from conformance.scenario import Step, Value
from conformance.verbs.record import Form, Verb, Written
from conformance.verbs.send import packet_fields
from reference_server.protocol import PACKETS, Magic, Packet, PacketType, encode

T = PacketType
GRABS = {T.GRAB_JOB: T.JOB_ASSIGN, T.GRAB_JOB_UNIQ: T.JOB_ASSIGN_UNIQ,
         T.GRAB_JOB_ALL: T.JOB_ASSIGN_ALL}
LIBRARY_ONLY = "is a move of the server the harness plays: only in a library case"


def _library(written: Written) -> None:
    if written.mode != "library":
        raise written.error(f"{written.where}: this verb {LIBRARY_ONLY}")


@dataclass
class Assign(Step):
    fields: dict[str, Value] = field(default_factory=dict)
    split: int | None = None  # written in pieces of this many bytes, one write each

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        """A job whose bytes are not plain text needs a library that carries any bytes."""
        return frozenset({"binary"}) if any(_binary(v) for v in self.fields.values()) \
            else frozenset()


def _binary(value: Value) -> bool:
    return binary_text(value.raw.decode("latin-1") if value.raw is not None else value.text)


def _read_assign(written: Written) -> Assign:
    _library(written)
    read = written.reader
    spec = read.mapping(written.needs_args("assign needs {handle, function, data}"),
                        written.where)
    read.keys(spec, written.args, written.where,  # type: ignore[arg-type]
              {"handle", "function", "unique", "reducer", "data"},
              "handle, function, unique, reducer, data")
    split = int(read.number(written.modifiers["split"], f"{written.where}.split")) \
        if "split" in written.modifiers else None
    return Assign(written.line, written.conn, written.note,
                  {k: read.value(v, f"{written.where}.{k}") for k, v in spec.items()}, split)


async def _assign(ctx: Context, step: Assign) -> None:
    grab = ctx.last_packet.get(step.conn)
    if grab is None or grab.type not in GRABS:
        raise HarnessError(f"assign: the last packet taken on {step.conn} is not a grab "
                           "(expect GRAB_JOB|GRAB_JOB_UNIQ|GRAB_JOB_ALL first)")
    kind = GRABS[grab.type]  # type: ignore[index]
    if kind == T.JOB_ASSIGN_ALL and "reducer" not in step.fields:
        kind = T.JOB_ASSIGN_UNIQ  # gearmand: JOB_ASSIGN_ALL is for reduce jobs (server.cc)
    args = [ctx.resolve(step.fields.get(name, Value(""))) for name in PACKETS[kind].args]
    data = encode(kind, *args, magic=Magic.RES)
    wire = await ctx.wire(step.conn)
    for start in range(0, len(data), step.split or len(data) or 1):
        wire.send(data[start:start + (step.split or len(data))])
        if step.split:
            await ctx.clock.sleep(0.001)


ASSIGN = Verb(name="assign", step=Assign, modifiers=frozenset({"note", "split"}),
              usage="assign: {handle, function, unique, data}: the JOB_ASSIGN* the worker's "
                    "last grab asks for (split: N writes it N bytes at a time)",
              read=_read_assign,
              write=lambda step: Form({k: value_data(v) for k, v in step.fields.items()},
                                      modifiers={"split": step.split} if step.split else {}),
              perform=_assign)


@dataclass
class ExpectGrab(Step):
    """The worker asks for a job: GRAB_JOB, GRAB_JOB_UNIQ or GRAB_JOB_ALL, after at most
    a few PRE_SLEEPs, each answered with a NOOP (the protocol leaves it to the worker
    whether it sleeps before its first grab)."""

    within: float | None = None


def expect_grab(step: ExpectGrab, events: Sequence[Event], scope: Scope) -> Result:
    index = skip_ignored(events, scope, wanted=(T.PRE_SLEEP, *GRABS))
    if index == len(events):
        return PENDING
    event = events[index]
    if isinstance(event, Packet) and event.magic is Magic.REQ and \
            event.type in (T.PRE_SLEEP, *GRABS):
        return Met(index + 1, scope.variables)
    what = "a grab (GRAB_JOB, GRAB_JOB_UNIQ or GRAB_JOB_ALL) or a PRE_SLEEP"
    if isinstance(event, TimedOut):
        return Unmet(what, describe(event), text=f"the worker asked for no job within "
                                                 f"{event.waited:.1f} s")
    return Unmet(what, describe(event, Magic.REQ))


async def _expect_grab(ctx: Context, step: ExpectGrab) -> None:
    wire = await ctx.wire(step.conn)
    for _ in range(4):  # a worker that sleeps again and again without grabbing: see below
        await ctx.expect(wire, lambda events: expect_grab(step, events, ctx.scope),
                         ctx.timeout(step.within))
        if ctx.last_packet[step.conn].type in GRABS:
            return
        wire.send(encode(T.NOOP, magic=Magic.RES))  # "there may be work": as a server wakes it
    raise failed("a grab after a NOOP", "PRE_SLEEP again and again",
                 "the worker answered four NOOPs with PRE_SLEEP and never grabbed")


EXPECT_GRAB = Verb(name="expect-grab", step=ExpectGrab, args=False,
                   modifiers=frozenset({"note", "within"}),
                   usage="expect-grab: the worker's grab (any of the three), PRE_SLEEPs before "
                         "it answered with NOOP",
                   read=lambda w: _library(w) or ExpectGrab(w.line, w.conn, w.note, w.within),
                   write=lambda step: Form(), perform=_expect_grab, expect=expect_grab,
                   gather="stream")


@dataclass
class SendTogether(Step):
    packets: list[tuple[PacketType, dict[str, Value]]] = field(default_factory=list)


def _read_together(written: Written) -> SendTogether:
    _library(written)
    read = written.reader
    items = read.sequence(written.needs_args("send-together needs [{TYPE: {fields}}, ...]"),
                          written.where)
    packets = []
    for i, item in enumerate(items):
        at = f"{written.where}[{i}]"
        [(name, node)] = read.mapping(item, at).items() or [("", None)]
        try:
            kind = PacketType[name]
        except KeyError:
            raise read.error(item, at, f"{name!r} is not a packet type") from None
        one = Written(read, item, at, written.line, written.conn, name,
                      None if is_null(node) else node, mode=written.mode)
        fields = packet_fields(one, kind)
        packets.append((kind, {k: read.value(v, f"{at}.{k}") for k, v in fields.items()}))
    return SendTogether(written.line, written.conn, written.note, packets)


async def _together(ctx: Context, step: SendTogether) -> None:
    data = b"".join(encode(kind, *(ctx.resolve(fields.get(n, Value("")))
                                   for n in PACKETS[kind].args), magic=Magic.RES)
                    for kind, fields in step.packets)
    (await ctx.wire(step.conn)).send(data)


SEND_TOGETHER = Verb(
    name="send-together", step=SendTogether,
    usage="send-together: [{TYPE: {fields}}, ...]: several packets in one write",
    read=_read_together,
    write=lambda step: Form([{kind.name: {k: value_data(v) for k, v in fields.items()}
                              or None} for kind, fields in step.packets]),
    perform=_together)


@dataclass
class KeepsIdle(Step):
    seconds: float = 2.0
    at_most: float | None = None  # grabs a second; None: only counted
    noop: bool = False  # answer PRE_SLEEP with NOOP (a server that wakes its workers anyway)


def _read_idle(written: Written) -> KeepsIdle:
    _library(written)
    read = written.reader
    spec = read.mapping(written.needs_args("keeps-idle needs {seconds, at-most}"),
                        written.where)
    read.keys(spec, written.args, written.where,  # type: ignore[arg-type]
              {"seconds", "at-most", "noop"}, "seconds, at-most, noop")
    return KeepsIdle(written.line, written.conn, written.note,
                     read.number(spec["seconds"], f"{written.where}.seconds")
                     if "seconds" in spec else 2.0,
                     read.number(spec["at-most"], f"{written.where}.at-most")
                     if "at-most" in spec else None,
                     read.boolean(spec["noop"], f"{written.where}.noop")
                     if "noop" in spec else False)


def _write_idle(step: KeepsIdle) -> Form:
    spec: dict[str, Any] = {"seconds": step.seconds}
    if step.at_most is not None:
        spec["at-most"] = step.at_most
    if step.noop:
        spec["noop"] = True
    return Form(spec)


async def _keep_idle(ctx: Context, step: KeepsIdle) -> None:
    wire = await ctx.wire(step.conn)
    seconds = step.seconds * ctx.factor
    deadline = ctx.clock.now() + seconds
    grabs = 0
    while (event := await wire.next(deadline)) is not None:
        wire.take()
        if isinstance(event, Closed):
            break
        if isinstance(event, Packet) and event.type in GRABS:
            grabs += 1
            wire.send(encode(T.NO_JOB, magic=Magic.RES))
        elif isinstance(event, Packet) and event.type == T.PRE_SLEEP and step.noop:
            wire.send(encode(T.NOOP, magic=Magic.RES))
    rate = grabs / seconds
    ctx.transcript.note(step.conn, f"{grabs} grabs in {seconds:.1f} s ({rate:.1f}/s)")
    if step.at_most is not None and rate > step.at_most:
        raise failed(f"at most {step.at_most:g} grabs a second", f"{rate:.0f} a second",
                     f"the worker grabbed {grabs} times in {seconds:.1f} s ({rate:.0f}/s, "
                     f"more than {step.at_most:g}/s): it spins")


KEEPS_IDLE = Verb(name="keeps-idle", step=KeepsIdle,
                  usage="keeps-idle: {seconds, at-most}: answer grabs with NO_JOB and "
                        "PRE_SLEEP with NOOP for that long; at most that many grabs a second",
                  read=_read_idle, write=_write_idle, perform=_keep_idle)


@dataclass
class ListenerRestart(Step):
    down: float = 0.5


def _read_restart(written: Written) -> ListenerRestart:
    _library(written)
    read = written.reader
    spec = read.mapping(written.args, written.where) if written.args is not None else {}
    read.keys(spec, written.args, written.where, {"down"}, "down: SECONDS")  # type: ignore[arg-type]
    return ListenerRestart(written.line, "listener", written.note,
                           read.number(spec["down"], f"{written.where}.down")
                           if "down" in spec else 0.5)


async def _restart(ctx: Context, step: ListenerRestart) -> None:
    restart = getattr(ctx.network, "restart_listener", None)
    if restart is None:
        raise HarnessError(f"listener restart {LIBRARY_ONLY}")
    ctx.transcript.note("listener", f"the server goes away for {step.down:g} s")
    await restart(step.down * ctx.factor)
    for name in [n for n in ctx.wires if n != "app"]:
        await ctx.wires.pop(name).close()


LISTENER_RESTART = Verb(name="restart", step=ListenerRestart, connection="listener",
                        usage="listener restart: {down: SECONDS}: every connection and the "
                              "port closed, the port open again after down",
                        read=_read_restart, write=lambda step: Form({"down": step.down}),
                        perform=_restart)

VERBS = (EXPECT_GRAB, ASSIGN, SEND_TOGETHER, KEEPS_IDLE, LISTENER_RESTART)
