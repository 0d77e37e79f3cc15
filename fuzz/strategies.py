"""Hypothesis strategies derived from the one packet table.

Wire level: ``packets()`` (any valid packet of any type, fields from realistic
values and edge cases: empty, NUL-containing, around 64 bytes, around 8 KiB,
64 KiB workloads), ``mutated()`` (bad magic, wrong type, wrong length, missing
or extra NUL separators, truncated), ``text_lines()`` (admin lines, valid and
not), ``garbage()`` (any of those or random bytes) and ``chunked(data)`` (one
byte string cut into arbitrary pieces).
"""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import strategies as st

from reference_server.protocol import PACKETS, TYPE_LIMIT, Magic, Packet, PacketType, frame

WIRE_TYPES = [t for t in PacketType if t != PacketType.TEXT]
REQUEST_TYPES = [t for t in WIRE_TYPES if PACKETS[t].direction.value in ("REQ", "REQ/RES")]

EDGE_SIZES = (0, 1, 63, 64, 65, 255, 8191, 8192, 8193)


def _sized(size: int, fill: bytes = b"x") -> bytes:
    return (fill * size)[:size]


def _noise(count: int, longest: int, nul: bool) -> list[bytes]:
    """Fixed pseudo-random byte strings (seeded: the same on every run)."""
    rng = random.Random(4730)
    made = [rng.randbytes(rng.randint(1, longest)) for _ in range(count)]
    return made if nul else [b.replace(b"\0", b"\1") for b in made]


#: A NUL-free argument (all but the last): realistic names, edge sizes and noise.
#: One draw from a precomputed pool: every draw costs, and the parser properties
#: should run well over a thousand examples a second.
names = st.sampled_from([
    b"", b"reverse", b"f", b"-", b"u1", b"H:host:1", b"0", b"4294967296", b"exceptions",
    "fünf".encode(), b"a b", b"\r\n", b"\n", *(_sized(n) for n in EDGE_SIZES),
    *_noise(40, 40, nul=False)])

#: The last argument (workload, result, echo): may hold NULs; up to 64 KiB.
payloads = st.one_of(
    st.sampled_from([b"", b"\0", b"a\0b", b"\0\0\0", b"\xff\xfe", b"hello",
                     *(_sized(n, b"w\0") for n in (*EDGE_SIZES, 65536))]),
    st.binary(max_size=200),
)


@st.composite
def packets(draw: st.DrawFn, types: list[PacketType] | None = None,
            magic: Magic | None = None) -> Packet:
    """A well-formed packet (right number of arguments, NULs only in the last)."""
    packet_type = draw(st.sampled_from(types or WIRE_TYPES))
    spec = PACKETS[packet_type]
    args = tuple(draw(names) for _ in spec.args[:-1])
    if spec.args:
        args += (draw(payloads if spec.has_data else names),)
    return Packet(packet_type, args, magic or draw(st.sampled_from([Magic.REQ, Magic.RES])))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A packet broken in one of the ways real peers and attackers break them."""
    packet = draw(packets())
    wire = packet.encode()
    payload = wire[12:]
    how = draw(st.sampled_from(["magic", "type", "length", "separators", "extra-nul",
                                "truncated", "res"]))
    if how == "magic":
        return draw(st.sampled_from([b"\0REP", b"\0XYZ", b"\0req", b"\0\0\0\0"])) + wire[4:]
    if how == "type":
        number = draw(st.sampled_from([0, TYPE_LIMIT, 999, 2**31, 2**32 - 1]))
        return frame(wire[:4], number, payload)
    if how == "length":
        length = draw(st.sampled_from([0, len(payload) + 1, len(payload) + 100, 2**31,
                                       2**32 - 1]))
        return wire[:8] + length.to_bytes(4, "big") + payload
    if how == "separators":
        return frame(wire[:4], int(packet.type), payload.replace(b"\0", b"", 1))
    if how == "extra-nul":
        cut = draw(st.integers(0, len(payload)))
        return frame(wire[:4], int(packet.type), payload[:cut] + b"\0" + payload[cut:])
    if how == "truncated":
        return wire[:draw(st.integers(1, max(len(wire) - 1, 1)))]
    return frame(Magic.RES.value, int(packet.type), payload)


ADMIN_WORDS = ["status", "workers", "prioritystatus", "version", "getpid", "verbose",
               "show jobs", "show unique jobs", "show", "maxqueue", "maxqueue f 1",
               "maxqueue f 1 2 3", "cancel job H:x:1", "cancel", "create function f",
               "drop function f", "STATUS", "jobs", "", "a b c d e", "a b c d e f"]


@st.composite
def text_lines(draw: st.DrawFn) -> bytes:
    """An admin line with its ending (valid commands, odd ones, and no newline at all)."""
    line = draw(st.one_of(st.sampled_from(ADMIN_WORDS).map(str.encode),
                          st.binary(max_size=60).map(
                              lambda b: b.replace(b"\n", b"").lstrip(b"\0") or b"x")))
    return line + draw(st.sampled_from([b"\n", b"\r\n", b""]))


def garbage() -> st.SearchStrategy[bytes]:
    """Anything a peer may send: valid packets, broken ones, text, noise."""
    return st.one_of(packets().map(lambda p: p.encode()), mutated(), text_lines(),
                     st.binary(min_size=1, max_size=100),
                     st.binary(min_size=1, max_size=50).map(lambda b: b"\0" + b))


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut into pieces at arbitrary points (each piece non-empty)."""
    if len(data) < 2:
        return [data] if data else []
    # One seed instead of a list of cut points: far cheaper to draw, and a failure
    # still shrinks to fewer pieces through the count.
    # (An integer seed, not st.randoms(), which costs as much as the rest together.)
    count = draw(st.integers(0, min(12, len(data) - 1)))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    points = [0, *sorted(rng.sample(range(1, len(data)), count)), len(data)]
    return [data[a:b] for a, b in pairwise(points)]
