"""The errors the client library raises, all under ``GearmanError``."""

from __future__ import annotations

from collections.abc import Iterable

from reference_server.protocol import Event


class GearmanError(Exception):
    """Base of the errors this library raises."""


class ConnectionClosed(GearmanError):
    """The server closed the connection.

    ``events``: when raised by ``Link.sync``, what arrived before the close (so a
    caller that wants the server's last words does not lose them)."""

    def __init__(self, message: str = "connection closed by the server",
                 events: Iterable[Event] = ()) -> None:
        super().__init__(message)
        self.events = list(events)


class SyncTimeout(TimeoutError):
    """``Link.sync``'s marker got no answer in time; ``events`` is what arrived
    before the deadline.  A ``TimeoutError``, as ``Link.next_event`` raises."""

    def __init__(self, message: str, events: Iterable[Event] = ()) -> None:
        super().__init__(message)
        self.events = list(events)


class ServerError(GearmanError):
    """The server answered a request with an ERROR packet."""

    def __init__(self, code: bytes, text: bytes) -> None:
        super().__init__(f"{code.decode(errors='replace')}: {text.decode(errors='replace')}")
        self.code = code
        self.text = text


class JobFailed(GearmanError):
    """The job ended with WORK_FAIL."""


class JobException(JobFailed):
    """The job ended with WORK_EXCEPTION (only with the 'exceptions' option)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data.decode(errors="replace"))
        self.data = data
