"""The packet table and the codec, without sockets."""

from __future__ import annotations

import pytest

from reference_server.protocol import (
    PACKETS,
    BadMagic,
    Decoder,
    Direction,
    LineTooLong,
    Magic,
    Packet,
    PacketTooLarge,
    PacketType,
    TextLine,
    UnknownPacketType,
    WrongArgumentCount,
    decode_all,
    encode,
    frame,
)

T = PacketType

# PROTOCOL "Binary Protocol Example": every byte of a CAN_DO / GRAB_JOB / NO_JOB /
# PRE_SLEEP / SUBMIT_JOB / JOB_CREATED / NOOP / JOB_ASSIGN / WORK_COMPLETE exchange.
WORKED_EXAMPLE = [
    ("00524551 00000001 00000007 72657665727365", Packet(T.CAN_DO, (b"reverse",))),
    ("00524551 00000009 00000000", Packet(T.GRAB_JOB)),
    ("00524553 0000000a 00000000", Packet(T.NO_JOB, magic=Magic.RES)),
    ("00524551 00000004 00000000", Packet(T.PRE_SLEEP)),
    ("00524551 00000007 0000000d 7265766572736500 00 74657374",
     Packet(T.SUBMIT_JOB, (b"reverse", b"", b"test"))),
    ("00524553 00000008 00000007 483a6c61703a31",
     Packet(T.JOB_CREATED, (b"H:lap:1",), Magic.RES)),
    ("00524553 00000006 00000000", Packet(T.NOOP, magic=Magic.RES)),
    ("00524553 0000000b 00000014 483a6c61703a3100 7265766572736500 74657374",
     Packet(T.JOB_ASSIGN, (b"H:lap:1", b"reverse", b"test"), Magic.RES)),
    ("00524551 0000000d 0000000c 483a6c61703a3100 74736574",
     Packet(T.WORK_COMPLETE, (b"H:lap:1", b"tset"))),
    ("00524553 0000000d 0000000c 483a6c61703a3100 74736574",
     Packet(T.WORK_COMPLETE, (b"H:lap:1", b"tset"), Magic.RES)),
]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


class TestPacketTable:
    def test_every_number_from_0_to_42_has_one_row(self) -> None:
        assert sorted(int(t) for t in PACKETS) == list(range(43))

    @pytest.mark.parametrize(("packet_type", "args", "has_data"), [
        (T.SUBMIT_JOB, ("function", "unique", "data"), True),
        (T.SUBMIT_JOB_EPOCH, ("function", "unique", "epoch", "data"), True),
        (T.SUBMIT_REDUCE_JOB, ("function", "unique", "reducer", "aggregator", "data"), True),
        (T.JOB_ASSIGN_ALL, ("handle", "function", "unique", "reducer", "data"), True),
        (T.WORK_STATUS, ("handle", "numerator", "denominator"), False),
        (T.STATUS_RES, ("handle", "known", "running", "numerator", "denominator"), False),
        (T.STATUS_RES_UNIQUE,
         ("unique", "known", "running", "numerator", "denominator", "waiting_clients"), False),
        (T.ERROR, ("code", "text"), False),
        (T.ECHO_REQ, ("data",), True),
        (T.GRAB_JOB_ALL, (), False),
    ])
    def test_arguments_follow_gearmand_command_table(
            self, packet_type: PacketType, args: tuple[str, ...], has_data: bool) -> None:
        row = PACKETS[packet_type]
        assert row.args == args
        assert row.has_data is has_data

    def test_directions(self) -> None:
        assert PACKETS[T.SUBMIT_JOB].direction is Direction.REQUEST
        assert PACKETS[T.JOB_CREATED].direction is Direction.RESPONSE
        assert PACKETS[T.WORK_COMPLETE].direction is Direction.BOTH
        assert PACKETS[T.TEXT].direction is Direction.NONE


class TestWorkedExample:
    @pytest.mark.parametrize(("wire", "packet"), WORKED_EXAMPLE,
                             ids=[p.name for _, p in WORKED_EXAMPLE])
    def test_encode_is_byte_exact(self, wire: str, packet: Packet) -> None:
        assert packet.encode() == _hex(wire)

    def test_decode_whole_conversation(self) -> None:
        stream = b"".join(_hex(w) for w, _ in WORKED_EXAMPLE)
        assert decode_all(stream) == [p for _, p in WORKED_EXAMPLE]

    def test_decode_one_byte_at_a_time(self) -> None:
        stream = b"".join(_hex(w) for w, _ in WORKED_EXAMPLE)
        decoder = Decoder()
        events = []
        for i in range(len(stream)):
            events.extend(decoder.events(stream[i:i + 1]))
        assert events == [p for _, p in WORKED_EXAMPLE]
        assert decoder.buffered == 0


class TestDecoder:
    def test_last_argument_keeps_nul_bytes(self) -> None:
        wire = encode(T.SUBMIT_JOB, b"f", b"u", b"a\0b\0c")
        assert decode_all(wire) == [Packet(T.SUBMIT_JOB, (b"f", b"u", b"a\0b\0c"))]

    def test_text_lines_with_and_without_cr(self) -> None:
        assert decode_all(b"status\r\nworkers\n\n") == [
            TextLine(b"status", b"\r\n"), TextLine(b"workers"), TextLine(b"")]

    def test_text_and_binary_mixed_on_one_stream(self) -> None:
        stream = b"version\n" + encode(T.ECHO_REQ, b"x") + b"status\r\n"
        assert decode_all(stream) == [TextLine(b"version"), Packet(T.ECHO_REQ, (b"x",)),
                                      TextLine(b"status", b"\r\n")]

    def test_text_line_waits_for_newline(self) -> None:
        decoder = Decoder()
        assert list(decoder.events(b"stat")) == []
        assert list(decoder.events(b"us\n")) == [TextLine(b"status")]

    def test_tokens_split_like_gearmand(self) -> None:
        assert TextLine(b"maxqueue  f   3").tokens() == [b"maxqueue", b"f", b"3"]
        assert TextLine(b" status").tokens() == [b"", b"status"]
        assert TextLine(b"status ").tokens() == [b"status", b""]
        assert TextLine(b"").tokens() == [b""]

    def test_payload_of_argumentless_packet_is_ignored(self) -> None:
        assert decode_all(frame(b"\0REQ", T.PRE_SLEEP, b"junk")) == [Packet(T.PRE_SLEEP)]

    def test_res_magic_is_decoded(self) -> None:
        [packet] = decode_all(frame(b"\0RES", T.ECHO_REQ, b"x"))
        assert packet.magic is Magic.RES

    @pytest.mark.parametrize("magic", [b"\0XYZ", b"\0REP", b"\0req"])
    def test_bad_magic(self, magic: bytes) -> None:
        with pytest.raises(BadMagic):
            decode_all(frame(magic, T.ECHO_REQ, b"x"))

    @pytest.mark.parametrize("number", [0, 43, 999, 2**32 - 1])
    def test_unknown_type(self, number: int) -> None:
        with pytest.raises(UnknownPacketType) as caught:
            decode_all(frame(b"\0REQ", number, b""))
        assert caught.value.number == number

    def test_too_large_is_refused_at_the_header(self) -> None:
        decoder = Decoder(max_payload=1024)
        decoder.feed(frame(b"\0REQ", T.ECHO_REQ, b"", length=1025))
        with pytest.raises(PacketTooLarge) as caught:
            decoder.next_event()
        assert (caught.value.length, caught.value.limit) == (1025, 1024)

    def test_4gib_length_is_refused_before_any_body(self) -> None:
        decoder = Decoder()
        decoder.feed(frame(b"\0REQ", T.ECHO_REQ, b"", length=2**32 - 1))
        with pytest.raises(PacketTooLarge):
            decoder.next_event()

    def test_limit_itself_is_accepted(self) -> None:
        decoder = Decoder(max_payload=4)
        assert list(decoder.events(encode(T.ECHO_REQ, b"1234"))) == [
            Packet(T.ECHO_REQ, (b"1234",))]

    def test_line_too_long(self) -> None:
        decoder = Decoder(max_line=16)
        decoder.feed(b"x" * 15)
        assert decoder.next_event() is None
        decoder.feed(b"x")
        with pytest.raises(LineTooLong):
            decoder.next_event()

    def test_line_limit_counts_the_newline(self) -> None:
        # gearmand's 8 KiB buffer: 8191 characters and the newline pass, one more closes.
        assert list(Decoder().events(b"x" * 8191 + b"\n")) == [TextLine(b"x" * 8191)]
        with pytest.raises(LineTooLong):
            list(Decoder().events(b"x" * 8192 + b"\n"))

    def test_wrong_argument_count_consumes_exactly_the_packet(self) -> None:
        decoder = Decoder()
        decoder.feed(frame(b"\0REQ", T.SUBMIT_JOB, b"reverse") + encode(T.ECHO_REQ, b"next"))
        with pytest.raises(WrongArgumentCount) as caught:
            decoder.next_event()
        assert caught.value.resynchronised
        assert (caught.value.expected, caught.value.found) == (3, 1)
        assert decoder.next_event() == Packet(T.ECHO_REQ, (b"next",))


class TestEncoder:
    def test_wrong_number_of_arguments(self) -> None:
        with pytest.raises(ValueError, match="SUBMIT_JOB takes 3 arguments"):
            encode(T.SUBMIT_JOB, b"f", b"data")

    def test_nul_only_allowed_in_last_argument(self) -> None:
        with pytest.raises(ValueError, match="'function' may not contain NUL"):
            encode(T.SUBMIT_JOB, b"f\0", b"", b"")
        assert encode(T.WORK_FAIL, b"H:1\0") == frame(b"\0REQ", T.WORK_FAIL, b"H:1\0")

    def test_packet_fields_by_name(self) -> None:
        packet = Packet(T.JOB_ASSIGN_UNIQ, (b"H:x:1", b"f", b"u", b"d"), Magic.RES)
        assert packet["unique"] == b"u"
        assert packet.fields() == {"handle": b"H:x:1", "function": b"f", "unique": b"u",
                                   "data": b"d"}
        assert repr(packet) == ("<RES JOB_ASSIGN_UNIQ(handle=b'H:x:1', function=b'f', "
                                "unique=b'u', data=b'd')>")
