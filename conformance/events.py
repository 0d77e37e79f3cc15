"""What a connection yields to the engine, and how it is shown.

A wire decodes what the server sends into ``Packet`` and ``TextLine`` events
(the codec's), plus ``Closed`` and ``Garbage``.  The engine adds marks of its
own where it stopped reading, so that an expectation is a pure function of a
list of events (``conformance.match``): ``Synced`` (the harness's ECHO marker
came back, so nothing else was pending), ``Stalled`` (the marker got no answer)
and ``TimedOut`` (the expectation's time ran out).
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_server.protocol import Magic, Packet, TextLine


@dataclass(frozen=True)
class Closed:
    """The server closed the connection."""


@dataclass(frozen=True)
class Garbage:
    """Bytes from the server that are not Gearman."""

    data: bytes
    error: str


@dataclass(frozen=True)
class Data:
    """Bytes of a connection that is not Gearman (the HTTP module's port)."""

    data: bytes


@dataclass(frozen=True)
class AppEvent:
    """What the application saw through a library under test, as its adapter printed it
    (``{"event": "complete", "job": 0, "data": "olleh"}``): fields as bytes (texts as
    Latin-1, numbers and booleans as their JSON text)."""

    name: str
    fields: dict[str, bytes]


@dataclass(frozen=True)
class Synced:
    """The harness's ECHO marker came back (or, for servers without ECHO, a short
    silence passed): whatever the requests before it caused has arrived."""


@dataclass(frozen=True)
class Stalled:
    """The harness's ECHO marker got no answer within the timeout."""


@dataclass(frozen=True)
class TimedOut:
    """The expectation's time ran out after ``waited`` seconds."""

    waited: float


Incoming = Packet | TextLine | Closed | Garbage | Data | AppEvent
Mark = Synced | Stalled | TimedOut
Event = Incoming | Mark


def show(data: bytes, limit: int = 120) -> str:
    """Bytes as a reader sees them: Python escapes, cut at ``limit`` characters."""
    text = repr(data)[2:-1]
    return text if len(text) <= limit else text[:limit] + f"…(+{len(data)} bytes)"


def describe(event: Event, usual: Magic = Magic.RES) -> str:
    """One line for an event: ``ECHO_RES data=x``, ``text 'OK\\r\\n'``, ..."""
    if isinstance(event, Packet):
        args = " ".join(f"{n}={show(a, 60)}" for n, a in event.fields().items())
        magic = "" if event.magic is usual else f"[{event.magic.name} magic] "
        return f"{magic}{event.name} {args}".rstrip()
    if isinstance(event, TextLine):
        return f"text {show(event.raw)}"
    return _DESCRIPTIONS[type(event)](event)


_DESCRIPTIONS = {
    AppEvent: lambda event: " ".join([f"app {event.name}",
                                      *(f"{k}={show(v, 60)}" for k, v in event.fields.items())]),
    Closed: lambda event: "connection closed",
    Garbage: lambda event: f"garbage {show(event.data)} ({event.error})",
    Data: lambda event: f"{len(event.data)} bytes: {show(event.data, 80)}",
    Synced: lambda event: "nothing more (the ECHO marker came back)",
    Stalled: lambda event: "no answer to the ECHO marker (the connection stalled)",
    TimedOut: lambda event: f"nothing within {event.waited:.1f} s",
}
