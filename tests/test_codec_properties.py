"""Properties of the codec over generated input (hypothesis, fixed seed in CI)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from reference_server.protocol import (
    PACKETS,
    Decoder,
    Magic,
    Packet,
    PacketType,
    ProtocolError,
    TextLine,
    encode,
)

WIRE_TYPES = [t for t in PacketType if t != PacketType.TEXT]
plain = st.binary(max_size=80).map(lambda b: b.replace(b"\0", b""))
opaque = st.one_of(st.binary(max_size=80), st.sampled_from([b"", b"\0", b"\0\0x\0"]))


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    packet_type = draw(st.sampled_from(WIRE_TYPES))
    names = PACKETS[packet_type].args
    args = tuple(draw(plain) for _ in names[:-1])
    if names:
        args += (draw(opaque),)
    return Packet(packet_type, args, draw(st.sampled_from([Magic.REQ, Magic.RES])))


text_lines = st.builds(
    TextLine,
    st.binary(max_size=60).map(
        lambda b: b.replace(b"\n", b"").replace(b"\r", b"").lstrip(b"\0") or b"status"),
    st.sampled_from([b"\n", b"\r\n"]))


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


def wire(event: Packet | TextLine) -> bytes:
    return event.encode() if isinstance(event, Packet) else event.raw


@given(packets())
def test_encode_decode_round_trip(packet: Packet) -> None:
    decoder = Decoder()
    assert list(decoder.events(packet.encode())) == [packet]
    assert decoder.buffered == 0


@given(st.lists(st.one_of(packets(), text_lines), max_size=12), st.lists(st.integers(0, 10**6)))
def test_decoding_does_not_depend_on_chunking(events: list[Packet | TextLine],
                                               cuts: list[int]) -> None:
    stream = b"".join(wire(e) for e in events)
    decoder = Decoder()
    decoded = []
    for piece in chunked(stream, cuts):
        decoded.extend(decoder.events(piece))
    assert decoded == events


@given(st.binary(max_size=300), st.lists(st.integers(0, 10**6), max_size=8))
def test_any_bytes_give_events_or_a_protocol_error(data: bytes, cuts: list[int]) -> None:
    limit = 64
    decoder = Decoder(max_payload=limit, max_line=limit)
    try:
        for piece in chunked(data, cuts):
            decoder.feed(piece)
            while (event := decoder.next_event()) is not None:
                assert isinstance(event, Packet | TextLine)
            # What is held back is at most one unfinished packet or line.
            assert decoder.buffered <= 12 + limit
    except ProtocolError:
        pass


@given(st.sampled_from(WIRE_TYPES), st.lists(plain, min_size=1, max_size=6))
def test_encoder_refuses_wrong_arity(packet_type: PacketType, args: list[bytes]) -> None:
    expected = len(PACKETS[packet_type].args)
    try:
        encode(packet_type, *args)
    except ValueError:
        assert len(args) != expected
    else:
        assert len(args) == expected
