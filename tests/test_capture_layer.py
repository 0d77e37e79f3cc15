"""The scapy Gearman layer: built from the packet table, byte-exact with the codec,
and dissecting real captures the way the codec decodes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw
from scapy.utils import rdpcap

from conformance.capture.layer import Gearman, bind, unbind
from reference_server.protocol import (
    PACKETS,
    Decoder,
    Direction,
    Magic,
    Packet,
    PacketType,
    TextLine,
    decode_all,
    encode,
)

PCAPS = Path(__file__).parent / "data" / "pcaps"
WIRE_TYPES = [t for t in PacketType if t is not PacketType.TEXT]


def sample_arguments(packet_type: PacketType) -> dict[str, bytes]:
    """Distinct values per argument; the last one of a data type holds NULs."""
    spec = PACKETS[packet_type]
    values = {name: f"{name}-{i}".encode() for i, name in enumerate(spec.args)}
    if spec.has_data:
        values[spec.args[-1]] += b"\0with\0nuls\0"
    return values


def magic_of(packet_type: PacketType) -> Magic:
    return Magic.RES if PACKETS[packet_type].direction is Direction.RESPONSE else Magic.REQ


def gearman_layers(frame: ScapyPacket) -> Iterator[Gearman]:
    layer = frame.getlayer(Gearman)
    while isinstance(layer, Gearman):
        yield layer
        layer = layer.payload


@pytest.mark.parametrize("packet_type", WIRE_TYPES, ids=lambda t: t.name)
def test_builds_the_codec_bytes_and_dissects_back(packet_type: PacketType) -> None:
    arguments = sample_arguments(packet_type)
    expected = encode(packet_type, *arguments.values(), magic=magic_of(packet_type))
    layer = Gearman.of(packet_type, **arguments)
    assert bytes(layer) == expected
    frame = Ether() / IP() / TCP(dport=4730) / Gearman.of(packet_type, **arguments)
    wire = bytes(frame)
    assert wire[len(wire) - len(expected):] == expected
    dissected = Ether(wire)[Gearman]
    assert dissected.packet_type is packet_type
    assert dissected.magic == magic_of(packet_type).value
    assert dissected.length == len(expected) - 12
    assert dissected.arguments == arguments
    assert list(dissected.arguments) == list(PACKETS[packet_type].args)


def test_summary_names_the_arguments() -> None:
    layer = Gearman.of(PacketType.SUBMIT_JOB, function=b"f", unique=b"", data=b"x")
    assert layer.mysummary() == "SUBMIT_JOB function=f unique= data=x"
    assert "function=f unique= data=x" in layer.show(dump=True)


def test_arguments_can_be_set_by_name() -> None:
    layer = Gearman.of(PacketType.WORK_COMPLETE, handle=b"H:1", data=b"old")
    layer.arguments = {"handle": b"H:2", "data": b"new\0er"}
    assert bytes(layer) == encode(PacketType.WORK_COMPLETE, b"H:2", b"new\0er")
    with pytest.raises(TypeError, match="unique"):
        Gearman.of(PacketType.WORK_COMPLETE, unique=b"u")
    with pytest.raises(ValueError, match="NUL"):
        Gearman.of(PacketType.SUBMIT_JOB, function=b"f\0g")


def test_several_packets_in_one_segment_dissect_as_a_chain() -> None:
    packets = [encode(PacketType.NOOP, magic=Magic.RES),
               encode(PacketType.JOB_ASSIGN, b"H:1", b"f", b"a\0b", magic=Magic.RES),
               encode(PacketType.ECHO_RES, b"", magic=Magic.RES)]
    wire = bytes(Ether() / IP() / TCP(sport=4730, dport=50000) / Raw(b"".join(packets)))
    chain = list(gearman_layers(Ether(wire)))
    assert [layer.packet_type for layer in chain] == [
        PacketType.NOOP, PacketType.JOB_ASSIGN, PacketType.ECHO_RES]
    assert chain[1].arguments == {"handle": b"H:1", "function": b"f", "data": b"a\0b"}
    assert [bytes(layer)[:12 + layer.length] for layer in chain] == packets
    built = Gearman.of(PacketType.NOOP) / Gearman.of(PacketType.ECHO_RES, data=b"x")
    assert bytes(built) == packets[0] + encode(PacketType.ECHO_RES, b"x", magic=Magic.RES)


def test_text_lines_stay_raw() -> None:
    wire = bytes(Ether() / IP() / TCP(dport=4730) / Raw(b"status\n"))
    frame = Ether(wire)
    assert Gearman not in frame
    assert frame[Raw].load == b"status\n"


def _streams(frames: list[ScapyPacket], port: int) -> dict[tuple[int, bool], list[ScapyPacket]]:
    """Frames with a payload, by (client port, towards the server)."""
    streams: dict[tuple[int, bool], list[ScapyPacket]] = {}
    for frame in frames:
        tcp = frame[TCP]
        if bytes(tcp.payload):
            client = tcp.sport if tcp.dport == port else tcp.dport
            streams.setdefault((client, tcp.dport == port), []).append(frame)
    return streams


def _as_codec_packet(layer: Gearman) -> Packet:
    spec = PACKETS[PacketType(layer.type)]
    args = tuple(layer.arguments[name] for name in spec.args)
    return Packet(layer.type, args, Magic(layer.magic))


@pytest.mark.parametrize("name", ["gearman-fg.pcap", "php-status.pcap", "gearadmin-status.pcap"])
def test_real_captures_dissect_as_the_codec_decodes(name: str) -> None:
    frames = list(rdpcap(str(PCAPS / name)))
    seen_gearman = 0
    for segments in _streams(frames, 4730).values():
        stream = b"".join(bytes(frame[TCP].payload) for frame in segments)
        decoded = list(Decoder().events(stream))
        dissected: list[Packet | TextLine] = []
        for frame in segments:
            payload = bytes(frame[TCP].payload)
            # These captures need no reassembly: every segment holds whole events.
            per_segment = decode_all(payload)
            layers = list(gearman_layers(frame))
            if layers:
                dissected.extend(_as_codec_packet(layer) for layer in layers)
                assert len(layers) == len(per_segment)
            else:
                assert frame[TCP].payload.__class__ is Raw
                dissected.extend(per_segment)
            seen_gearman += len(layers)
        assert dissected == decoded
    if name != "gearadmin-status.pcap":
        assert seen_gearman > 0


def test_php_status_has_four_packets_in_one_segment() -> None:
    frames = rdpcap(str(PCAPS / "php-status.pcap"))
    longest = max(len(list(gearman_layers(frame))) for frame in frames)
    assert longest == 4


@pytest.fixture
def perl_port() -> Iterator[int]:
    bind(4731)
    yield 4731
    unbind(4731)


def test_bind_makes_a_perl_server_capture_dissect(perl_port: int) -> None:
    frames = list(rdpcap(str(PCAPS / "xsrv-perlserver-perl-fg.pcap")))
    types = [layer.packet_type for frame in frames for layer in gearman_layers(frame)]
    assert len(types) == 18
    assert types[0] is PacketType.SET_CLIENT_ID
    assert types[-1] is PacketType.WORK_COMPLETE
    for segments in _streams(frames, perl_port).values():
        stream = b"".join(bytes(frame[TCP].payload) for frame in segments)
        layers = [_as_codec_packet(g) for frame in segments for g in gearman_layers(frame)]
        assert layers == decode_all(stream)


def test_unbound_port_stays_raw() -> None:
    frames = rdpcap(str(PCAPS / "xsrv-perlserver-perl-fg.pcap"))
    assert not any(Gearman in frame for frame in frames)
