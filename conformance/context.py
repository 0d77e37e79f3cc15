"""One case being played: its variables, its connections, its clock and transcript.

Verbs perform their steps on a ``Context``; the engine makes one per case.  A
step that is not met raises ``StepFailed`` carrying what was expected and what
arrived (``conformance.match.Unmet``); a step the harness cannot do raises
``HarnessError`` (not the target's fault: the verdict is ERROR).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from conformance.events import Closed, Data, Event, Stalled, Synced, TimedOut
from conformance.match import PENDING, Met, Scope, Unbound, Unmet
from conformance.scenario import Scenario, Value
from conformance.transcript import Transcript
from conformance.wire import Network, NoConnection, Stream, Wire
from reference_server.client import SyncMarkers
from reference_server.protocol import Magic, Packet, PacketType, encode

DEFAULT_TIMEOUT = 2.0  # per expectation, times --timeout-factor
SILENCE = 0.3  # how long "nothing more" is, for targets without ECHO
LIBRARY_BUDGET = 10.0  # seconds a library case may take, unless it says (budget:)
TargetControl = Callable[[str], Awaitable[None]]  # "restart" / "kill" the target
#: What the server of a library case answers by itself, when the case ignores the
#: request: gearmand's answers (OPTION_RES echoes the option, ECHO_RES the data).
REFLEXES = {PacketType.OPTION_REQ: PacketType.OPTION_RES,
            PacketType.ECHO_REQ: PacketType.ECHO_RES}


class StepFailed(Exception):
    """An expectation was not met.  The verdict follows the case's level (MUST:
    FAIL, SHOULD: NON-STRICT, MAY: INFO) unless ``verdict`` names one (an
    ``expect-one-of`` alternative that says FAIL)."""

    def __init__(self, unmet: Unmet, verdict: str | None = None) -> None:
        super().__init__(unmet.message)
        self.unmet = unmet
        self.verdict = verdict


class HarnessError(Exception):
    """The engine could not do what the scenario asked (not the target's fault)."""


def failed(expected: str, actual: str, text: str = "") -> StepFailed:
    return StepFailed(Unmet(expected, actual, text=text))


@dataclass
class HTTPConnection:
    """A connection to the HTTP module's port: its stream and what it has received."""

    stream: Stream
    received: list[Event] = field(default_factory=list)


class Context:
    """Variables and connections of one case."""

    def __init__(self, scenario: Scenario, network: Network, *, tag: str,
                 timeout_factor: float = 1.0, has_echo: bool = True,
                 control: TargetControl | None = None, record_raw: bool = False) -> None:
        self.scenario = scenario
        self.network = network
        self.clock = network.clock
        self.tag = tag
        self.factor = timeout_factor
        self.has_echo = has_echo
        self.control = control
        self.variables: dict[str, bytes] = {}
        self.wires: dict[str, Wire] = {}
        self.http: dict[str, HTTPConnection] = {}
        self.transcript = Transcript(record_raw, self.clock.now)
        self.markers = SyncMarkers()
        # Verdicts other than PASS given by expect-one-of alternatives, with their notes.
        self.grades: list[tuple[str, str]] = []
        # The last packet an expectation took on each connection (a library case answers
        # a worker's grab with the assignment that grab asks for).
        self.last_packet: dict[str, Packet] = {}

    # -- values ---------------------------------------------------------------

    @property
    def scope(self) -> Scope:
        return Scope(self.variables, self.tag, self.scenario.ignore)

    def resolve(self, value: Value, *, fresh: bool = True) -> bytes:
        """The bytes of a value; with ``fresh``, unbound variables get new names."""
        try:
            data, self.variables = self.scope.resolve(value, fresh=fresh)
        except Unbound as error:
            raise HarnessError(str(error)) from None
        return data

    def resolve_text(self, text: str) -> str:
        """Text with the case's variables in (fresh names for new ones), as text."""
        return self.resolve(Value(text)).decode("latin-1")

    @property
    def budget(self) -> float | None:
        """Seconds the whole case may take: a library case's budget (a library may hang;
        the run must not)."""
        if self.scenario.budget is not None:
            return self.scenario.budget * self.factor
        return LIBRARY_BUDGET * self.factor if self.scenario.mode == "library" else None

    def bind(self, met: Met) -> None:
        self.variables = dict(met.variables)

    def conclude(self, result: object) -> Met:
        """Act on an expectation's answer: bind its captures, or fail the step."""
        if isinstance(result, Unmet):
            raise StepFailed(result)
        if not isinstance(result, Met):
            raise HarnessError("an expectation could not decide on a complete list of events")
        self.bind(result)
        return result

    def timeout(self, within: float | None) -> float:
        base = within if within is not None else (self.scenario.timeout or DEFAULT_TIMEOUT)
        return base * self.factor

    # -- connections ----------------------------------------------------------

    async def wire(self, name: str) -> Wire:
        """The connection ``name``, opened on first use."""
        wire = self.wires.get(name)
        if wire is None:
            mode = (self.scenario.tls or {}).get(name)
            try:
                stream = await self.network.open(name, mode)
            except NoConnection as error:  # client mode: the library's doing
                raise failed("a connection from the library", "none", str(error)) from None
            except ssl.SSLError as error:  # the server's answer, not the harness's trouble
                raise failed("a TLS handshake", f"{error.reason or error}",
                             f"the TLS handshake of {name} failed: {error.reason or error}") \
                    from None
            except (OSError, TimeoutError) as error:
                raise HarnessError(f"cannot connect {name}: {error}") from None
            self.transcript.add(name, "event", "open",
                                f"connected{self.network.describe(name, mode)}")
            wire = self.wires[name] = Wire(name, stream, self.transcript)
        return wire

    async def expect(self, wire: Wire, expectation: Callable[[list[Event]], object],
                     waited: float) -> Met:
        """Read events from ``wire`` until ``expectation`` (a pure function of the
        events so far, ``conformance.match``) decides; after ``waited`` seconds a
        ``TimedOut`` mark is added for it to judge.  The events it used are taken
        from the wire; the others stay for the next step."""
        events: list[Event] = []
        deadline = self.clock.now() + waited
        while True:
            result = expectation(events)
            if result is PENDING:
                event = await wire.next(deadline)
                if event is not None:
                    # Everything already here, at once: an admin list of a shared server
                    # is judged once per read, not once per row.
                    self._reflexes(wire, wire.events)
                    events.extend(wire.events)
                    wire.events.clear()
                    continue
                if events and isinstance(events[-1], TimedOut):
                    raise HarnessError("an expectation did not decide at its deadline")
                events.append(TimedOut(waited))
                continue
            met = self.conclude(result)
            used = [e for e in events[:met.consumed] if isinstance(e, Packet)]
            if used:
                self.last_packet[wire.name] = used[-1]
            unused = [e for e in events[met.consumed:] if not isinstance(e, TimedOut)]
            wire.events.extendleft(reversed(unused))
            return met

    def _reflexes(self, wire: Wire, events: Iterable[Event]) -> None:
        """In a library case, the server answers at once what a case ignores but a
        library may wait for (OPTION_REQ, ECHO_REQ), as gearmand would answer it."""
        if self.scenario.mode != "library":
            return
        for event in events:
            if isinstance(event, Packet) and event.type in self.scenario.ignore and \
                    event.type in REFLEXES and event.magic is Magic.REQ:
                answer = REFLEXES[event.type]
                wire.send(encode(answer, event.args[0], magic=Magic.RES))

    async def http_read(self, name: str, expectation: Callable[[list[Event]], object],
                        waited: float) -> Met:
        """As ``expect``, over an HTTP connection's bytes."""
        connection = self.http[name]
        deadline = self.clock.now() + waited
        events = connection.received
        while (result := expectation(events)) is PENDING:
            if events and isinstance(events[-1], TimedOut):
                raise HarnessError("an expectation did not decide at its deadline")
            data = await connection.stream.read(deadline)
            events.append(TimedOut(waited) if data is None else Data(data) if data else Closed())
        return self.conclude(result)

    async def sync(self, wire: Wire) -> list[Event]:
        """Everything waiting on a connection, found with an ECHO marker: the events
        end with ``Synced`` (the marker came back), ``Stalled`` (it did not, within
        the timeout) or ``Closed``.  For servers without ECHO, a short silence counts
        as the marker."""
        events: list[Event] = []
        if self.has_echo and not wire.closed_by_server:
            marker = self.markers.next()
            wire.sync_markers.append(marker)
            wire.send(marker.request, sync=True)
            deadline = self.clock.now() + self.timeout(None)
            while (event := await wire.next(deadline)) is not None:
                wire.take()
                if marker.answered_by(event):
                    return [*events, Synced()]
                events.append(event)
                if isinstance(event, Closed):
                    return events
            return [*events, Stalled()]
        silence = SILENCE * self.factor
        while (event := await wire.next(self.clock.now() + silence)) is not None:
            events.append(wire.take())
            self._reflexes(wire, events[-1:])
            if isinstance(event, Closed):
                return events
        return [*events, Synced()]

    async def close_all(self) -> None:
        for wire in self.wires.values():
            await wire.close()
        for connection in self.http.values():
            await connection.stream.close()
