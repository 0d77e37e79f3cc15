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

from fuzz.strategies import (
    EVENT_POOL,
    EVENT_STREAMS,
    GARBAGE_POOL,
    GARBAGE_STREAMS,
    cuts,
    packets,
)
from reference_server.protocol import (
    HEADER_SIZE,
    Decoder,
    Packet,
    ProtocolError,
    TextLine,
    WrongArgumentCount,
)

LIMIT = 70_000  # max payload and line for the bounded-memory property


def _wire(event: Packet | TextLine) -> bytes:
    return event.encode() if isinstance(event, Packet) else event.raw


def round_trip(packet: Packet) -> None:
    decoder = Decoder()
    assert list(decoder.events(packet.encode())) == [packet], packet
    assert decoder.buffered == 0


_event_streams = st.sampled_from(EVENT_STREAMS)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Packet | TextLine], list[bytes]]:
    """A stream from the corpus (one draw: see fuzz/strategies.py), cut anywhere."""
    events = [EVENT_POOL[i] for i in draw(_event_streams)]
    return events, cuts(draw, b"".join(_wire(e) for e in events))


_garbage_streams = st.one_of(
    st.sampled_from(GARBAGE_STREAMS).map(lambda s: b"".join(GARBAGE_POOL[i] for i in s)),
    st.binary(min_size=1, max_size=300))


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


@st.composite
def _cut_garbage(draw: st.DrawFn) -> list[bytes]:
    return cuts(draw, draw(_garbage_streams))


PROPERTIES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "round-trip": (packets(), round_trip),
    "chunking": (streams(), chunking_independent),
    "any-bytes": (_cut_garbage(),
                  any_bytes_are_events_or_a_protocol_error),
}
