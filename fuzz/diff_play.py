"""The diff fuzzer's cases played: ``Recorder`` plays one against a server and writes
down what came back, ``record_pair`` plays it against two servers at once, and
``reproducer`` turns the oracle's recording into a scenario that ``gearspec run
--scenario`` replays (``fuzz/diff.py`` generates the cases).

After every send the recorder collects what each connection received, up to an ECHO
marker (servers answer each connection in order, so that is exact and needs no
sleeps), and writes it with the case's variables: ``$fa``.. for its functions,
``$h1``.. for the job handles in the order the server first mentions them; admin
lists are reduced to the case's own rows.  A pause (until a worker's CAN_DO_TIMEOUT
has run out, seen in ``status``) is the one wait; after it every connection is
collected.  A
restart (a persistent queue's round) closes every connection, kills the server and
starts it again on its port; the next send to a connection opens it afresh.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance.loader import load_case
from conformance.nodes import matcher_data
from conformance.scenario import Matcher, Scenario
from fuzz import diff_http
from fuzz.diff import CONNECTIONS, Send
from fuzz.tidy import tidy
from reference_server.client import Admin, ConnectionClosed, Link, SyncMarkers
from reference_server.protocol import Packet, PacketType, TextLine, frame

T = PacketType
_cases = itertools.count()


@dataclass
class Seen:
    """What one connection received after one send, written with the case's variables."""

    conn: str
    events: tuple[tuple[str, ...], ...]  # ("packet", TYPE, field=value...) / ("text", line)
    ending: str  # "sync", "closed" or "stalled"


class Recorder:
    """Plays a case against one server and writes down what came back."""

    def __init__(self, address: tuple[str, int], tag: str, timeout: float = 2.0,
                 http: tuple[str, int] | None = None,
                 restart: Callable[[], None] | None = None) -> None:
        self.address = address
        self.http = http
        self.restart = restart  # kills the server and starts it again, on the same port
        self.tag = tag
        self.timeout = timeout
        self.links: dict[str, Link] = {}
        self.state: dict[str, str] = {}
        self.handles: dict[bytes, str] = {}
        self.markers = SyncMarkers(b"diff-sync-")

    def resolve(self, text: str) -> bytes:
        def name(match: re.Match[str]) -> str:
            var = match.group(1)
            if var.startswith("h"):
                found = next((h for h, v in self.handles.items() if v == var), None)
                return found.decode("latin-1") if found else "H:unknown:0"
            return f"{self.tag}{var}"

        return re.sub(r"\$([a-z][a-z0-9]*)", name, text).encode("latin-1")

    def show(self, value: bytes) -> str:
        text = value.decode("latin-1")
        text = re.sub(re.escape(self.tag) + r"([a-z][a-z0-9]*)", r"$\1", text)
        for handle in re.findall(r"H:[^\s\0\t:]+:\d+", text):
            if handle.encode() not in self.handles:
                self.handles[handle.encode()] = f"h{len(self.handles) + 1}"
            text = text.replace(handle, "$" + self.handles[handle.encode()])
        return text

    async def link(self, conn: str) -> Link:
        if conn not in self.links:
            self.links[conn] = await Link.open(self.address)
            self.state[conn] = "sync"
        return self.links[conn]

    async def collect(self, conn: str) -> Seen:
        if self.state[conn] != "sync":
            return Seen(conn, (), self.state[conn])
        try:
            arrived = await self.links[conn].sync(self.markers.next(), self.timeout)
        except TimeoutError as error:  # SyncTimeout: the marker got no answer
            self.state[conn], arrived = "stalled", getattr(error, "events", [])
        except ConnectionClosed as error:
            self.state[conn], arrived = "closed", error.events
        events: list[tuple[str, ...]] = []
        lines: list[bytes] = []
        for event in arrived:
            if isinstance(event, Packet):
                fields = event.fields()
                if event.type == T.WORK_FAIL and fields.get("handle", b"").endswith(b"\0"):
                    fields["handle"] = fields["handle"][:-1]  # DEVIATIONS.md: the stray NUL
                events.append(("packet", event.type.name,
                               *(f"{n}={self.show(a)}" for n, a in fields.items())))
                continue
            assert isinstance(event, TextLine)
            lines.append(event.raw)
            # A reply is one OK/ERR line, or a list closed by a line ".".
            if event.raw == b".\n" or (len(lines) == 1
                                       and event.raw.startswith((b"OK", b"ERR"))):
                events.append(("text", *self._mine(lines)))
                lines = []
        return Seen(conn, tuple(events), self.state[conn])

    def _mine(self, lines: list[bytes]) -> list[str]:
        """An admin reply reduced to this case's rows (other cases share the server),
        sorted (gearmand lists in hash order)."""
        if lines[-1] != b".\n":
            return [self.show(line) for line in lines]
        rows = [self.show(line) for line in lines[:-1] if self.tag.encode() in line
                or any(h in line for h in self.handles)]
        rows = [re.sub(r"^\d+ ", "<fd> ", row) for row in rows]
        return [*sorted(rows), ".\n"]

    async def play(self, sends: list[Send]) -> list[list[Seen]]:
        record = []
        try:
            for send in sends:
                if send.http:
                    record.append(await self._request(send))
                    continue
                if send.restart:
                    await self._restart()
                    record.append([])
                    continue
                if send.pause:
                    await self._pause(send)
                    record.append(await self._others(""))
                    continue
                link = await self.link(send.conn)
                if self.state[send.conn] == "sync":
                    if send.raw is not None:
                        link.send_raw(frame(*send.raw))
                    elif send.packet_type is None:
                        link.send_raw(self.resolve(send.line) + b"\n")
                    else:
                        link.send(send.packet_type, *(self.resolve(v) for _, v in send.fields))
                record.append([await self.collect(send.conn), *await self._others(send.conn)])
                record[-1] = [s for s in record[-1] if s.events or s.ending != "sync"]
        finally:
            for link in self.links.values():
                await link.close()
            await tidy(self.address, [f"{self.tag}{f}".encode() for f in ("fa", "fb", "fc")])
        return record


    async def _request(self, send: Send) -> list[Seen]:
        """An HTTP request's answer, then what its job made the others receive."""
        if self.http is None:
            raise ValueError("an HTTP request in a case for servers without -r http")
        answer = await diff_http.exchange(self.http, self.resolve(send.http), self.show,
                                          self.timeout)
        return [Seen(send.conn, (answer,), "sync"), *await self._others("")]

    async def _pause(self, send: Send) -> None:
        """Wait ``send.pause`` seconds, or, with ``send.until``, only until that
        function's running count has dropped (its job taken back on a timeout),
        read on an admin connection of our own, which the case never sees."""
        if not send.until:
            await asyncio.sleep(send.pause)
            return
        name = self.resolve(send.until)
        deadline = asyncio.get_running_loop().time() + send.pause
        async with await Admin.connect(self.address) as admin:
            running = (await admin.status()).get(name, (0, 0, 0))[1]
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
                if (await admin.status()).get(name, (0, 0, 0))[1] < running:
                    return

    async def _restart(self) -> None:
        """Every connection closed, the server killed and started again (in a thread:
        the other server's recorder goes on meanwhile); the next send to a
        connection opens it afresh."""
        if self.restart is None:
            raise ValueError("a restart in a case for servers that cannot restart")
        for link in self.links.values():
            await link.close()
        self.links.clear()
        await asyncio.to_thread(self.restart)

    async def _others(self, conn: str) -> list[Seen]:
        """What every open connection but ``conn`` received meanwhile (quiet ones left out)."""
        seen = [await self.collect(other) for other in CONNECTIONS
                if other != conn and other in self.links]
        return [s for s in seen if s.events or s.ending != "sync"]


def record(address: tuple[str, int], sends: list[Send], tag: str,
           http: tuple[str, int] | None = None) -> list[list[Seen]]:
    return asyncio.run(Recorder(address, tag, http=http).play(sends))


@dataclass(frozen=True)
class Server:
    """Where a recorder finds a server, and how it restarts it."""

    address: tuple[str, int]
    http: tuple[str, int] | None = None  # the HTTP module's port, where it runs
    restart: Callable[[], None] | None = None


def record_pair(subject: Server, oracle: Server, sends: list[Send], tag: str
                ) -> tuple[list[list[Seen]], list[list[Seen]]]:
    """The case played against both servers at once (each on its own connections, so
    neither sees the other; a pause waits once).  The first error either met is raised."""
    async def both() -> list[Any]:
        return await asyncio.gather(
            *(Recorder(server.address, tag, http=server.http, restart=server.restart)
              .play(sends) for server in (subject, oracle)), return_exceptions=True)

    mine, theirs = asyncio.run(both())
    for outcome in (mine, theirs):
        if isinstance(outcome, BaseException):
            raise outcome
    return mine, theirs


def reproducer(sends: list[Send], oracle: list[list[Seen]], subject: str, oracle_name: str,
               difference: str, options: list[str] | None = None) -> Scenario:
    """The case as a scenario (run with the round's server ``options``): its sends, and
    after each what the oracle answered."""
    steps: list[Any] = []
    bound: set[str] = set()
    for send, seen in zip(sends, oracle):
        steps.extend(send.steps())
        answered = {s.conn for s in seen}
        for s in seen:
            steps.extend(_expectations(s, bound))
        on_a_connection = send.packet_type is not None or send.line or send.raw is not None
        if send.conn not in answered and on_a_connection:
            steps.append(f"{send.conn} expect-nothing")
    server_options = [*(diff_http.SERVER_OPTIONS if any(s.http for s in sends) else []),
                      *(options or [])]
    return load_case({
        "case": f"case-{next(_cases)}", "title": f"{subject} differs from {oracle_name}",
        "level": "MUST", "source": f"gearspec fuzz diff (expectations recorded from "
                                   f"{oracle_name})",
        "requirement": f"The server answers as {oracle_name} does. First difference: "
                       f"{difference}",
        "sections": ["2"], "steps": steps,
        **({"server-options": server_options} if server_options else {})},
        "fuzz/diff", origin="gearspec fuzz diff")


def _value(text: str, bound: set[str]) -> Any:
    """A recorded field.  A handle seen for the first time is captured on replay, and
    must differ from the handles captured before it (the oracle gave a new one)."""
    new = re.fullmatch(r"\$(h\d+)", text)
    if new and new.group(1) not in bound:
        matcher = Matcher.distinct(new.group(1), sorted(bound))
        bound.add(new.group(1))
        return matcher_data(matcher)
    bound.update(re.findall(r"\$(h\d+)", text))
    return text


def _row(row: str) -> Any:
    if row.startswith("<fd> "):  # 'workers': file descriptors differ from run to run
        return {"match": r"\d+ " + re.escape(row[5:]).replace(r"\$", "$")}
    return row


def _expectations(seen: Seen, bound: set[str]) -> list[Any]:
    steps: list[Any] = []
    conn = seen.conn
    for event in seen.events:
        if event[0] == "http":
            steps.extend(diff_http.expectations(conn, event, lambda v: _value(v, bound)))
        elif event[0] == "packet":
            fields = dict(f.split("=", 1) for f in event[2:])
            key = f"{conn} expect {event[1]}"
            steps.append({key: {k: _value(v, bound) for k, v in fields.items()}}
                         if fields else key)
        elif event[-1] == ".\n":
            keys = ["$fa\t", "$fb\t", "$fc\t", " $fa", " $fb", " $fc",
                    *(f"${h}\t" for h in sorted(bound))]
            steps.append({f"{conn} expect-list": {"rows": [_row(r) for r in event[1:-1]],
                                                  "filter": keys}})
        else:
            steps.append({f"{conn} expect-lines": list(event[1:])})
    if seen.ending in ("closed", "stalled"):
        steps.append(f"{conn} expect-{seen.ending}")
    return steps
