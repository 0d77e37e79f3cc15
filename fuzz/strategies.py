"""Hypothesis strategies derived from the one packet table.

Wire level: ``packets()`` (any valid packet of any type, fields from realistic
values and edge cases: empty, NUL-containing, around 64 bytes, around 8 KiB,
64 KiB workloads), ``mutated()`` (bad magic, wrong type, wrong length, missing
or extra NUL separators, truncated), ``text_lines()`` (admin lines, valid and
not), ``garbage()`` (any of those or random bytes) and ``cuts(draw, data)`` (one
byte string cut into arbitrary pieces).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import pairwise

from hypothesis import strategies as st

from reference_server.protocol import (
    PACKETS,
    TYPE_LIMIT,
    Magic,
    Packet,
    PacketType,
    TextLine,
    frame,
)

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
NAMES = [b"", b"reverse", b"f", b"-", b"u1", b"H:host:1", b"0", b"4294967296", b"exceptions",
         "fünf".encode(), b"a b", b"\r\n", b"\n", *(_sized(n) for n in EDGE_SIZES),
         *_noise(40, 40, nul=False)]
names = st.sampled_from(NAMES)

#: The last argument (workload, result, echo): may hold NULs; up to 64 KiB.
PAYLOADS = [b"", b"\0", b"a\0b", b"\0\0\0", b"\xff\xfe", b"hello",
            *(_sized(n, b"w\0") for n in (*EDGE_SIZES, 65536)), *_noise(20, 200, nul=True)]
payloads = st.one_of(st.sampled_from(PAYLOADS), st.binary(max_size=200))


# Strategies are built once, here: building one per draw (st.sampled_from(...)
# inside a composite) costs hypothesis a validation every time, which showed as
# a third of the parser properties' time.
_wire_types = st.sampled_from(WIRE_TYPES)
_magics = st.sampled_from([Magic.REQ, Magic.RES])


@st.composite
def packets(draw: st.DrawFn, types: list[PacketType] | None = None,
            magic: Magic | None = None) -> Packet:
    """A well-formed packet (right number of arguments, NULs only in the last)."""
    packet_type = draw(st.sampled_from(types) if types else _wire_types)
    spec = PACKETS[packet_type]
    args = tuple(draw(names) for _ in spec.args[:-1])
    if spec.args:
        args += (draw(payloads if spec.has_data else names),)
    return Packet(packet_type, args, magic or draw(_magics))


_any_packet = packets()
_seeds = st.integers(0, 2**32 - 1)
BREAKAGES = ("magic", "type", "length", "separators", "extra-nul", "truncated", "res")


def broken(packet: Packet, rng: random.Random) -> bytes:
    """``packet`` broken in one of the ways real peers and attackers break them."""
    wire = packet.encode()
    payload = wire[12:]
    how = rng.choice(BREAKAGES)
    if how == "magic":
        return frame(rng.choice([b"\0REP", b"\0XYZ", b"\0req", b"\0\0\0\0"]), int(packet.type),
                     payload)
    if how == "type":
        return frame(wire[:4], rng.choice([0, TYPE_LIMIT, 999, 2**31, 2**32 - 1]), payload)
    if how == "length":
        length = rng.choice([0, len(payload) + 1, len(payload) + 100, 2**31, 2**32 - 1])
        return frame(wire[:4], int(packet.type), payload, length=length)
    if how == "separators":
        return frame(wire[:4], int(packet.type), payload.replace(b"\0", b"", 1))
    if how == "extra-nul":
        cut = rng.randint(0, len(payload))
        return frame(wire[:4], int(packet.type), payload[:cut] + b"\0" + payload[cut:])
    if how == "truncated":
        return wire[:rng.randint(1, max(len(wire) - 1, 1))]
    return frame(Magic.RES.value, int(packet.type), payload)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid packet, broken (how: chosen by a drawn seed, one draw instead of three)."""
    return broken(draw(_any_packet), random.Random(draw(_seeds)))


ADMIN_WORDS = ["status", "workers", "prioritystatus", "version", "getpid", "verbose",
               "show jobs", "show unique jobs", "show", "maxqueue", "maxqueue f 1",
               "maxqueue f 1 2 3", "cancel job H:x:1", "cancel", "create function f",
               "drop function f", "STATUS", "jobs", "", "a b c d e", "a b c d e f"]


_lines = st.one_of(st.sampled_from(ADMIN_WORDS).map(str.encode),
                   st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").lstrip(b"\0")
                                              or b"x"))
_line_ends = st.sampled_from([b"\n", b"\r\n", b""])


@st.composite
def text_lines(draw: st.DrawFn) -> bytes:
    """An admin line with its ending (valid commands, odd ones, and no newline at all)."""
    return draw(_lines) + draw(_line_ends)


_garbage = st.one_of(_any_packet.map(lambda p: p.encode()), mutated(), text_lines(),
                    st.binary(min_size=1, max_size=100),
                    st.binary(min_size=1, max_size=50).map(lambda b: b"\0" + b))


def garbage() -> st.SearchStrategy[bytes]:
    """Anything a peer may send: valid packets, broken ones, text, noise."""
    return _garbage


_cut_counts = st.integers(0, 12)


def cut(data: bytes, count: int, seed: int) -> list[bytes]:
    """``data`` cut at up to ``count`` points chosen by ``seed`` (pieces non-empty)."""
    if len(data) < 2:
        return [data] if data else []
    count = min(count, len(data) - 1)
    points = [0, *sorted(random.Random(seed).sample(range(1, len(data)), count)), len(data)]
    return [data[a:b] for a, b in pairwise(points)]


def cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Draw a cutting of ``data``: a count and a seed instead of a list of cut
    points (far cheaper to draw, and a failure still shrinks to fewer pieces
    through the count; an integer seed, not st.randoms(), which costs as much as
    the rest together).  The strategies are built once, not per draw."""
    return cut(data, draw(_cut_counts), draw(_seeds))




# ---------------------------------------------------------------- pools
# The parser properties draw whole packets from fixed pools (one draw each, sorted
# by size so that shrinking goes to the smallest): hypothesis spends ~100 µs a
# draw, and a structured packet costs five or more.  The round-trip property and
# the server fuzzers keep the structured strategies above.

def random_packet(rng: random.Random) -> Packet:
    packet_type = rng.choice(WIRE_TYPES)
    spec = PACKETS[packet_type]
    args = [rng.choice(NAMES) for _ in spec.args[:-1]]
    if spec.args:
        args.append(rng.choice(PAYLOADS if spec.has_data else NAMES))
    return Packet(packet_type, tuple(args), rng.choice([Magic.REQ, Magic.RES]))


def _pool(size: int, make: Callable[[random.Random], bytes]) -> list[bytes]:
    rng = random.Random(4730)
    return sorted({make(rng) for _ in range(size)}, key=lambda b: (len(b), b))


def _any_event(rng: random.Random) -> Packet | TextLine:
    if rng.random() < 0.2:
        return TextLine(rng.choice(ADMIN_WORDS).encode(), rng.choice([b"\n", b"\r\n"]))
    return random_packet(rng)


def _any_garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return random_packet(rng).encode()
    if kind == 1:
        return broken(random_packet(rng), rng)
    if kind == 2:
        line = rng.choice(ADMIN_WORDS).encode() if rng.random() < 0.5 else \
            rng.randbytes(rng.randint(1, 60)).replace(b"\n", b"").lstrip(b"\0") or b"x"
        return line + rng.choice([b"\n", b"\r\n", b""])
    return rng.randbytes(rng.randint(1, 100))


#: Valid packets and admin lines.
EVENT_POOL: list[Packet | TextLine] = sorted(
    (_any_event(rng) for rng in [random.Random(4730)] for _ in range(3000)),
    key=lambda e: len(e.encode() if isinstance(e, Packet) else e.raw))
#: Anything a peer may send: valid packets, broken ones, text, noise.
GARBAGE_POOL = _pool(3000, _any_garbage)


def _streams(pool_sizes: list[int], count: int, longest: int) -> list[tuple[int, ...]]:
    """``count`` sequences of up to ``longest`` indices into a pool, sorted by the
    size of what they make (so that shrinking goes to the shortest stream)."""
    rng = random.Random(4731)
    made = {tuple(rng.randrange(len(pool_sizes)) for _ in range(rng.randint(0, longest)))
            for _ in range(count)}
    return sorted(made, key=lambda s: (sum(pool_sizes[i] for i in s), s))


_event_sizes = [len(e.encode() if isinstance(e, Packet) else e.raw) for e in EVENT_POOL]
#: Streams of valid packets and admin lines, as indices into EVENT_POOL.
EVENT_STREAMS = _streams(_event_sizes, 20_000, 6)
#: Streams of anything, as indices into GARBAGE_POOL.
GARBAGE_STREAMS = _streams([len(g) for g in GARBAGE_POOL], 20_000, 5)
