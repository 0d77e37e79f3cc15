"""Parser properties of the codec (in-process, no server).

* every valid packet of every type survives encode → decode unchanged;
* decoding a stream does not depend on how it is cut into reads;
* any bytes give packets, text lines or a typed ``ProtocolError``, never another
  exception, and what the decoder holds back stays within one maximal packet.

``PROPERTIES`` maps a name to (strategy, check): hypothesis draws from the
strategy and the check raises AssertionError when the property does not hold.
``gearspec fuzz parser`` and the tests run them with their own settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from fuzz.strategies import ADMIN_WORDS, chunked, garbage, packets
from reference_server.protocol import (
    HEADER_SIZE,
    Decoder,
    Packet,
    ProtocolError,
    TextLine,
    WrongArgumentCount,
)

LIMIT = 70_000  # max payload and line for the bounded-memory property

admin_lines = st.builds(TextLine, st.sampled_from(ADMIN_WORDS).map(str.encode),
                        st.sampled_from([b"\n", b"\r\n"]))


def _wire(event: Packet | TextLine) -> bytes:
    return event.encode() if isinstance(event, Packet) else event.raw


def round_trip(packet: Packet) -> None:
    decoder = Decoder()
    assert list(decoder.events(packet.encode())) == [packet], packet
    assert decoder.buffered == 0


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Packet | TextLine], list[bytes]]:
    events: list[Packet | TextLine] = draw(st.lists(st.one_of(packets(), admin_lines),
                                                    max_size=6))
    return events, draw(chunked(b"".join(_wire(e) for e in events)))


def chunking_independent(case: tuple[list[Packet | TextLine], list[bytes]]) -> None:
    events, pieces = case
    decoder = Decoder()
    decoded: list[Packet | TextLine] = []
    for piece in pieces:
        decoded.extend(decoder.events(piece))
    assert decoded == events, (events, pieces)


def any_bytes_are_events_or_a_protocol_error(pieces: list[bytes]) -> None:
    decoder = Decoder(max_payload=LIMIT, max_line=LIMIT)
    for piece in pieces:
        decoder.feed(piece)
        while True:
            try:
                event = decoder.next_event()
            except WrongArgumentCount:
                continue  # the bad packet was consumed: the stream goes on
            except ProtocolError:
                return  # the connection would be closed here
            if event is None:
                break
            assert isinstance(event, Packet | TextLine)
        assert decoder.buffered <= HEADER_SIZE + LIMIT, decoder.buffered


PROPERTIES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "round-trip": (packets(), round_trip),
    "chunking": (streams(), chunking_independent),
    "any-bytes": (st.lists(garbage(), max_size=5).map(b"".join).flatmap(chunked),
                  any_bytes_are_events_or_a_protocol_error),
}
