"""Verbs that write to a connection: packets, raw bytes, admin text, hang-ups.

Values are resolved when sent: a ``$variable`` without a value becomes a
fresh name unique to the case and run, so cases sharing a server never see
each other's functions or uniques.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from conformance.context import Context, HarnessError, failed
from conformance.events import Closed
from conformance.nodes import value_data
from conformance.scenario import Step, Value
from conformance.verbs.record import NO_ARGS, Form, Verb, Written
from reference_server.protocol import PACKETS, Magic, PacketType, encode, frame


def packet_types(written: Written) -> tuple[PacketType, ...]:
    """The packet word after the verb: one type, or several as ``A|B`` (an
    expectation that either will do)."""
    if written.packet is None:
        raise written.error("needs a packet type, e.g. 'c send ECHO_REQ'")
    kinds = []
    for name in written.packet.split("|"):
        try:
            kinds.append(PacketType[name])
        except KeyError:
            raise written.error(f"{name!r} is not a packet type") from None
    return tuple(kinds)


def packet_type(written: Written) -> PacketType:
    kinds = packet_types(written)
    if len(kinds) > 1:
        raise written.error("sends one packet type, not a choice")
    return kinds[0]


def packet_fields(written: Written, *kinds: PacketType) -> dict[str, object]:
    """The ``{field: ...}`` argument, every name checked against the packet table (a
    field of a choice of types must be a field of each)."""
    read = written.reader
    where = f"{written.where}.{written.packet}"
    fields = read.mapping(written.args, where) if written.args is not None else {}
    for kind in kinds:
        names = PACKETS[kind].args
        for name, node in fields.items():
            if name not in names:
                raise read.error(node, f"{where}.{name}", f"{kind.name} has no field {name!r} "
                                 f"(fields: {', '.join(names) or 'none'})")
    return fields


def default_magic(mode: str) -> bytes:
    """What the harness sends: requests to a server, responses to a library."""
    return b"\0RES" if mode == "library" else b"\0REQ"


# ---------------------------------------------------------------------------- send


@dataclass
class SendPacket(Step):
    type: PacketType = PacketType.ECHO_REQ
    fields: dict[str, Value] = field(default_factory=dict)
    magic: bytes = b"\0REQ"
    mode: str = "server"  # whose side the harness plays: what magic goes without saying
    split: int | None = None  # written in pieces of this many bytes, one write each


def _read_send(written: Written) -> SendPacket:
    kind = packet_type(written)
    where = f"{written.where}.{kind.name}"
    magic = default_magic(written.mode)
    if "magic" in written.modifiers:
        node = written.modifiers["magic"]
        text = written.reader.scalar(node, f"{written.where}.magic")
        if text not in ("REQ", "RES"):
            raise written.error("REQ or RES", node, f"{written.where}.magic")
        magic = b"\0" + text.encode()
    split = None
    if "split" in written.modifiers:
        split = int(written.reader.number(written.modifiers["split"], f"{written.where}.split"))
        if split < 1:
            raise written.error("at least 1 byte a write", written.modifiers["split"],
                                f"{written.where}.split")
    return SendPacket(written.line, written.conn, written.note, kind,
                      {n: written.reader.value(v, f"{where}.{n}")
                       for n, v in packet_fields(written, kind).items()}, magic, written.mode,
                      split)


def _write_send(step: SendPacket) -> Form:
    fields = {n: value_data(v) for n, v in step.fields.items()}
    modifiers: dict[str, object] = {}
    if step.magic != default_magic(step.mode):
        modifiers["magic"] = step.magic[1:].decode()
    if step.split is not None:
        modifiers["split"] = step.split
    return Form(fields or NO_ARGS, step.type.name, modifiers=modifiers)


async def _send(ctx: Context, step: SendPacket) -> None:
    wire = await ctx.wire(step.conn)
    args = [ctx.resolve(step.fields.get(n, Value(""))) for n in PACKETS[step.type].args]
    try:
        data = encode(step.type, *args, magic=Magic(step.magic))
    except ValueError as error:
        raise HarnessError(str(error)) from None
    if step.split is None:
        wire.send(data)
        return
    # Packets cut at any byte, as a stream may deliver them: each piece its own write,
    # given a moment to leave before the next.
    for start in range(0, len(data), step.split):
        wire.send(data[start:start + step.split])
        await ctx.clock.sleep(0.001)


SEND = Verb(name="send", step=SendPacket, packet=True,
            modifiers=frozenset({"note", "magic", "split"}),
            usage="send PACKET [{fields}]: a packet; fields default to empty; magic: RES (REQ "
                  "to a library) possible; split: N writes it N bytes at a time",
            read=_read_send, write=_write_send, perform=_send,
            covers=lambda step: {f"type:{int(step.type)}"})


# ---------------------------------------------------------------------------- send-raw


@dataclass
class SendRaw(Step):
    data: Value | None = None
    # A header with any magic, type and length, followed by ``payload``.
    magic: bytes | None = None
    packet_type: int | None = None
    length: int | None = None
    payload: Value | None = None


def _read_raw(written: Written) -> SendRaw:
    read, where, args = written.reader, written.where, written.needs_args("send-raw needs bytes")
    line, conn, note = written.line, written.conn, written.note
    if not isinstance(args, yaml.MappingNode):
        return SendRaw(line, conn, note, data=read.value(args, where))
    spec = read.mapping(args, where)
    if set(spec) <= {"hex", "repeat", "times"}:
        return SendRaw(line, conn, note, data=read.value(args, where))
    read.keys(spec, args, where, {"magic", "type", "length", "payload"},
              "send-raw takes hex, text, or magic/type/length/payload")
    if "type" not in spec:
        raise read.error(args, where, "a raw packet needs a type")
    magic = read.value(spec["magic"], f"{where}.magic") if "magic" in spec else \
        Value(raw=default_magic(written.mode))
    magic_bytes = magic.raw if magic.raw is not None else \
        magic.text.encode("latin-1", "replace") * magic.times
    if len(magic_bytes) != 4:
        raise read.error(spec["magic"], f"{where}.magic", "a magic is 4 bytes")
    return SendRaw(line, conn, note, magic=magic_bytes,
                   packet_type=int(read.number(spec["type"], f"{where}.type")),
                   length=int(read.number(spec["length"], f"{where}.length"))
                   if "length" in spec else None,
                   payload=read.value(spec["payload"], f"{where}.payload")
                   if "payload" in spec else Value(""))


def _write_raw(step: SendRaw) -> Form:
    if step.data is not None:
        return Form(value_data(step.data))
    spec: dict[str, object] = {"magic": (step.magic or b"").decode("latin-1"),
                               "type": step.packet_type}
    if step.length is not None:
        spec["length"] = step.length
    if step.payload is not None:
        spec["payload"] = value_data(step.payload)
    return Form(spec)


async def _send_raw(ctx: Context, step: SendRaw) -> None:
    wire = await ctx.wire(step.conn)
    if step.data is not None:
        wire.send(ctx.resolve(step.data))
        return
    assert step.magic is not None and step.packet_type is not None
    wire.send(frame(step.magic, step.packet_type, ctx.resolve(step.payload or Value("")),
                    length=step.length))


SEND_RAW = Verb(name="send-raw", step=SendRaw,
                usage="send-raw: {hex: ...} | text | {magic, type, length, payload}: bytes as "
                      "given",
                read=_read_raw, write=_write_raw, perform=_send_raw,
                covers=lambda step: {f"type:{step.packet_type}"}
                if step.packet_type is not None else set())


# ---------------------------------------------------------------------------- text


@dataclass
class SendText(Step):
    text: Value = field(default_factory=Value)
    newline: bool = True  # send-line adds "\n"; send-text sends the text as it is


def _text_reader(newline: bool):  # type: ignore[no-untyped-def]
    def read(written: Written) -> SendText:
        args = written.needs_args(f"{'send-line' if newline else 'send-text'} needs the text")
        return SendText(written.line, written.conn, written.note,
                        written.reader.value(args, written.where), newline)
    return read


def _write_text(step: SendText) -> Form:
    return Form(value_data(step.text), verb="send-line" if step.newline else "send-text")


async def _send_text(ctx: Context, step: SendText) -> None:
    wire = await ctx.wire(step.conn)
    wire.send(ctx.resolve(step.text) + (b"\n" if step.newline else b""))


def _admin_words(step: SendText) -> set[str]:
    if step.text.raw is not None:
        return set()
    return {"admin:" + line.split(" ", 1)[0].strip().lower()
            for line in step.text.text.splitlines() or [""]}


SEND_LINE = Verb(name="send-line", step=SendText, usage="send-line: TEXT: an admin line, \\n "
                 "added", read=_text_reader(True), write=_write_text, perform=_send_text,
                 covers=_admin_words)
SEND_TEXT = Verb(name="send-text", step=SendText, usage="send-text: TEXT: bytes as written "
                 "(say \\r\\n yourself)", read=_text_reader(False), write=_write_text,
                 perform=_send_text, covers=_admin_words)


# ---------------------------------------------------------------------------- closing


@dataclass
class Hangup(Step):
    pass


async def _hangup(ctx: Context, step: Hangup) -> None:
    wire = await ctx.wire(step.conn)
    ctx.transcript.add(step.conn, "event", "close", "closed by the client")
    await wire.close()
    del ctx.wires[step.conn]


HANGUP = Verb(name="hangup", step=Hangup, usage="hangup: the client closes the connection",
              args=False, read=lambda w: Hangup(w.line, w.conn, w.note),
              write=lambda step: Form(), perform=_hangup)


@dataclass
class Finish(Step):
    """The client half-closes (sends EOF) and reads until the server closes.

    A barrier: once the server has closed, it has read everything sent before
    the EOF, so what that did to the server (a crash, say) has happened.  What
    arrives meanwhile is logged, not judged."""

    within: float | None = None


async def _finish(ctx: Context, step: Finish) -> None:
    wire = await ctx.wire(step.conn)
    ctx.transcript.add(step.conn, "event", "close", "half-closed by the client (EOF sent)")
    wire.finish()
    deadline = ctx.clock.now() + ctx.timeout(step.within)
    while not isinstance(event := await wire.next(deadline), Closed):
        if event is None:
            raise failed("the server to close", "the connection still open",
                         "the server kept the connection open after the client's EOF")
        wire.take()
    wire.take()


FINISH = Verb(name="finish", step=Finish, modifiers=frozenset({"note", "within"}),
              usage="finish: the client sends EOF, reads until the server closes (replies not "
                    "judged)",
              args=False, read=lambda w: Finish(w.line, w.conn, w.note, w.within),
              write=lambda step: Form(), perform=_finish)

VERBS = (SEND, SEND_RAW, SEND_LINE, SEND_TEXT, HANGUP, FINISH)
