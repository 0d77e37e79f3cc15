"""Verbs of the job server the harness plays in a library case.

``send``, ``send-raw`` and ``hangup`` work as in server mode (a send is then a
response, ``\\0RES``).  These are the server's moves that need more:

* ``lib assign: {handle: H:x:1, function: $fn, data: x}``: the job assignment a
  worker's last grab asks for (JOB_ASSIGN for GRAB_JOB, JOB_ASSIGN_UNIQ for
  GRAB_JOB_UNIQ, JOB_ASSIGN_ALL for GRAB_JOB_ALL), so that a case about a worker
  holds whatever grab its library uses;
* ``lib send-together: [{WORK_DATA: {...}}, {WORK_COMPLETE: {...}}]``: several
  packets in one write, as a server's buffered output arrives;
* ``lib keeps-idle: {seconds: 2, at-most: 20}``: for that long, answer every grab
  with NO_JOB and every PRE_SLEEP with a NOOP (a server that has nothing, and
  wakes its workers anyway), and count the grabs: a worker SHOULD NOT spin;
* ``listener restart: {down: 0.5}``: the server goes away (every connection
  closed, the port too) and comes back on the same port after ``down``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.context import Context, HarnessError, failed
from conformance.events import Closed
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


def _read_assign(written: Written) -> Assign:
    _library(written)
    read = written.reader
    spec = read.mapping(written.needs_args("assign needs {handle, function, data}"),
                        written.where)
    read.keys(spec, written.args, written.where,  # type: ignore[arg-type]
              {"handle", "function", "unique", "reducer", "data"},
              "handle, function, unique, reducer, data")
    return Assign(written.line, written.conn, written.note,
                  {k: read.value(v, f"{written.where}.{k}") for k, v in spec.items()})


async def _assign(ctx: Context, step: Assign) -> None:
    grab = ctx.last_packet.get(step.conn)
    if grab is None or grab.type not in GRABS:
        raise HarnessError(f"assign: the last packet taken on {step.conn} is not a grab "
                           "(expect GRAB_JOB|GRAB_JOB_UNIQ|GRAB_JOB_ALL first)")
    kind = GRABS[grab.type]  # type: ignore[index]
    args = [ctx.resolve(step.fields.get(name, Value(""))) for name in PACKETS[kind].args]
    (await ctx.wire(step.conn)).send(encode(kind, *args, magic=Magic.RES))


ASSIGN = Verb(name="assign", step=Assign,
              usage="assign: {handle, function, unique, data}: the JOB_ASSIGN* the worker's "
                    "last grab asks for",
              read=_read_assign,
              write=lambda step: Form({k: value_data(v) for k, v in step.fields.items()}),
              perform=_assign)


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
    noop: bool = True  # answer PRE_SLEEP with NOOP (a server that wakes its workers anyway)


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
                     if "noop" in spec else True)


def _write_idle(step: KeepsIdle) -> Form:
    spec: dict[str, Any] = {"seconds": step.seconds}
    if step.at_most is not None:
        spec["at-most"] = step.at_most
    if not step.noop:
        spec["noop"] = False
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

VERBS = (ASSIGN, SEND_TOGETHER, KEEPS_IDLE, LISTENER_RESTART)
