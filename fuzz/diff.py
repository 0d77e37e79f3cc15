"""Differential fuzzing: the same generated conversation with two servers.

A generated case is a list of sends over a few named connections (clients,
workers, an admin connection): up to two job lives first (a worker that can do
the function, asleep or not, a submit, the grab, progress and a result: what
random sends alone seldom reach), then random sends: packets, admin lines well
formed and not, packets a server closes the connection for, and, where both
servers run the HTTP module, HTTP requests (``fuzz/diff_http.py``). It is written with
variables: ``$fa`` and ``$fb`` are function names made unique to the case,
``$h1``, ``$h2``, ... the job handles in the order the server first mentions
them. ``Recorder`` plays it against one server: after every send it collects
what each connection received, up to an ECHO marker (servers answer each
connection in order, so that is exact and needs no sleeps), and writes it with
the same variables, admin lists reduced to the case's own rows. Two recordings
that differ are a divergence; hypothesis shrinks it to a minimal case, and
``reproducer`` turns the oracle's recording into a scenario that ``gearspec run
--scenario`` replays.

Inputs where the reference server deliberately differs from gearmand
(reference_server/DEVIATIONS.md) are not generated (no hang-ups, no background
submit joining a foreground job: ``joins_a_foreground_job``, no cancel of a job
a worker may hold: ``cancels_a_grabbed_job``; the rest next to each input), and
the one difference of form it allows for is normalised: the stray NUL in the
WORK_FAIL gearmand substitutes for a WORK_EXCEPTION.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from conformance.loader import load_case
from conformance.nodes import matcher_data
from conformance.scenario import Matcher, Scenario
from fuzz import diff_http
from fuzz.tidy import tidy
from reference_server.client import ConnectionClosed, Link, SyncMarkers
from reference_server.protocol import Packet, PacketType, TextLine, frame

T = PacketType
CONNECTIONS = ("c1", "c2", "w1", "w2", "admin")
_cases = itertools.count()


@dataclass(frozen=True)
class Send:
    """One generated send: a packet with template fields, an admin line, or a
    malformed packet (``raw``: magic, type number, payload), sent as it is."""

    conn: str
    packet_type: PacketType | None  # None: an admin line or a raw packet
    fields: tuple[tuple[str, str], ...] = ()
    line: str = ""
    raw: tuple[bytes, int, bytes] | None = None
    http: str = ""  # a request to the HTTP port (fuzz/diff_http.py)

    def step(self) -> Any:
        """The send as a scenario step (as a file writes it)."""
        if self.http:
            return {f"{self.conn} http-send": self.http}
        if self.raw is not None:
            magic, number, payload = self.raw
            return {f"{self.conn} send-raw": {"magic": magic.decode("latin-1"),
                                              "type": number,
                                              "payload": payload.decode("latin-1")}}
        if self.packet_type is None:
            return {f"{self.conn} send-line": self.line}
        key = f"{self.conn} send {self.packet_type.name}"
        return {key: dict(self.fields)} if self.fields else key


functions = st.sampled_from(["$fa", "$fb"])
uniques = st.sampled_from(["", "$u1", "$u2", "-"])
data = st.sampled_from(["", "x", "y", "a\0b"])
handles = st.sampled_from(["$h1", "$h2", "$h3", "H:nosuch:1"])
#: WORK_STATUS numbers as C's atoi reads them: a sign, leading blanks, trailing junk.
numerators = st.sampled_from(["0", "1", "3", "7x", "-1", "+3", " 7", "4294967297"])


def _packet(conn: str, packet_type: PacketType, **fields: str) -> Send:
    return Send(conn, packet_type, tuple(fields.items()))


client_sends = st.one_of(
    st.builds(lambda c, t, f, u, d: _packet(c, t, function=f, unique=u, data=d),
              st.sampled_from(["c1", "c2"]),
              st.sampled_from([T.SUBMIT_JOB, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_LOW,
                               T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW_BG]),
              functions, uniques, data),
    # Epochs now or past only: a future one is DEVIATION "Future epoch jobs block lower
    # priorities", an overflowing one "Internal errors close the connection".
    st.builds(lambda c, f, u, e, d: _packet(c, T.SUBMIT_JOB_EPOCH, function=f, unique=u,
                                            epoch=e, data=d),
              st.sampled_from(["c1", "c2"]), functions, uniques,
              st.sampled_from(["0", "1", "x", "-5", "+7", " 9"]), data),
    st.builds(lambda c, h: _packet(c, T.GET_STATUS, handle=h), st.sampled_from(["c1", "c2"]),
              handles),
    # Short uniques only: one of 64 bytes or more is DEVIATION "Internal errors close
    # the connection".
    st.builds(lambda c, u: _packet(c, T.GET_STATUS_UNIQUE, unique=u),
              st.sampled_from(["c1", "c2"]), uniques),
    st.builds(lambda c, o: _packet(c, T.OPTION_REQ, option=o), st.sampled_from(["c1", "c2"]),
              st.sampled_from(["exceptions", "bogus"])),
    st.builds(lambda c, d: _packet(c, T.ECHO_REQ, data=d), st.sampled_from(["c1", "c2"]), data),
)
worker_sends = st.one_of(
    st.builds(lambda w, t, f: _packet(w, t, function=f), st.sampled_from(["w1", "w2"]),
              st.sampled_from([T.CAN_DO, T.CANT_DO]), functions),
    st.builds(lambda w, t: _packet(w, t), st.sampled_from(["w1", "w2"]),
              st.sampled_from([T.GRAB_JOB, T.GRAB_JOB_UNIQ, T.GRAB_JOB_ALL,
                               T.RESET_ABILITIES, T.PRE_SLEEP])),
    st.builds(lambda w, t, h, d: _packet(w, t, handle=h, data=d), st.sampled_from(["w1", "w2"]),
              st.sampled_from([T.WORK_COMPLETE, T.WORK_DATA, T.WORK_WARNING,
                               T.WORK_EXCEPTION]), handles, data),
    st.builds(lambda w, h: _packet(w, T.WORK_FAIL, handle=h), st.sampled_from(["w1", "w2"]),
              handles),
    st.builds(lambda w, h, n, d: _packet(w, T.WORK_STATUS, handle=h, numerator=n,
                                         denominator=d),
              st.sampled_from(["w1", "w2"]), handles, numerators, st.sampled_from(["2", "10"])),
)
#: Admin lines, well formed and not.  ``$fc`` is a function no worker or client
#: names: created and dropped here only (dropping one with queued jobs is a
#: DEVIATION, "Dropping a function with queued jobs").  "create function" ends in
#: \r\n (DEVIATION "create function with a bare \n").
ADMIN_LINES = [
    "status", "prioritystatus", "show jobs", "show unique jobs", "workers",
    "maxqueue $fa 1", "maxqueue $fa", "maxqueue $fa 1 2 3", "maxqueue $fb 0", "maxqueue $fa -1",
    "maxqueue", "create function $fc\r", "drop function $fc", "drop function $fc extra",
    "drop function", "create function", "drop functions $fc", "cancel job H:nosuch:1",
    "cancel job $h1", "cancel job", "show", "show jobs extra", "status extra", "frobnicate",
    # Either side of the longest line a server reads (gearmand closes past it).
    *("status" + " " * (length - 6) for length in (8190, 8191, 8192))]
admin_sends = st.builds(lambda line: Send("admin", None, line=line), st.sampled_from(ADMIN_LINES))

#: Packets a server closes the connection for: bad magic, type 0, a number past the
#: table (gearmand protocol.cc, io.cc).
raw_sends = st.builds(lambda c, raw: Send(c, None, raw=raw), st.sampled_from(CONNECTIONS[:4]),
                      st.sampled_from([(b"\0BAD", 16, b"x"), (b"\0REQ", 0, b""),
                                       (b"\0REQ", 43, b""), (b"\0REQ", 1000, b"x")]))

BACKGROUND = {T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW_BG, T.SUBMIT_JOB_EPOCH}


def cancels_a_grabbed_job(sends: list[Send]) -> bool:
    """Whether ``cancel job`` may hit a job a worker holds: DEVIATION "Cancelled
    jobs stay silent" (gearmand leaves its clients attached).  Over-approximate:
    any grab before the cancel."""
    grabbed = False
    for send in sends:
        grabbed = grabbed or send.packet_type in (T.GRAB_JOB, T.GRAB_JOB_UNIQ, T.GRAB_JOB_ALL)
        if grabbed and send.line.startswith("cancel job $"):
            return True
    return False


def joins_a_foreground_job(sends: list[Send]) -> bool:
    """Whether a background submit may coalesce with an earlier foreground one:
    DEVIATIONS.md "A background submit joining a foreground job" (we store the
    job; 'show jobs' says so in its last column, gearmand's does not).  Over-
    approximate: the same function and unique, whatever happened in between."""
    foreground: set[tuple[str, str]] = set()
    for send in sends:
        fields = dict(send.fields)
        if not fields.get("unique") or "function" not in fields:  # not a submit
            continue
        key = (fields["function"], fields["unique"])
        if send.packet_type in BACKGROUND:
            if key in foreground:
                return True
        else:
            foreground.add(key)
    return False


SUBMITS = [T.SUBMIT_JOB, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_LOW, T.SUBMIT_JOB_BG,
           T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW_BG]


def _progress(worker: str, handle: str) -> st.SearchStrategy[Send]:
    """What a worker sends about the job it holds, before its result."""
    return st.one_of(
        st.builds(lambda t, d: _packet(worker, t, handle=handle, data=d),
                  st.sampled_from([T.WORK_DATA, T.WORK_WARNING]), data),
        st.builds(lambda n, d: _packet(worker, T.WORK_STATUS, handle=handle, numerator=n,
                                       denominator=d),
                  numerators, st.sampled_from(["2", "10"])),
        st.builds(lambda c: _packet(c, T.GET_STATUS, handle=handle), st.sampled_from(["c1", "c2"])),
        st.just(Send("admin", None, line="status")))


def _ending(worker: str, handle: str) -> st.SearchStrategy[list[Send]]:
    return st.one_of(
        st.builds(lambda t, d: [_packet(worker, t, handle=handle, data=d)],
                  st.sampled_from([T.WORK_COMPLETE, T.WORK_EXCEPTION]), data),
        st.just([_packet(worker, T.WORK_FAIL, handle=handle)]),
        st.just([]))  # still running when the rest of the case begins


def life(number: int) -> st.SearchStrategy[list[Send]]:
    """A job's life, so that cases reach what random sends seldom do: a worker that
    can do the function (asleep or not), a submit, the grab, progress and a result.
    Lives come first in a case, each making one new job, so the job of life N is the
    case's handle $hN (unless a unique made it join an earlier one)."""
    handle = f"$h{number}"

    def one(worker: str, client: str, submit: PacketType, function: str, unique: str,
            payload: str, sleeps: bool, option: bool, grab: PacketType,
            steps: list[Send], end: list[Send]) -> list[Send]:
        return [*([_packet(client, T.OPTION_REQ, option="exceptions")] if option else []),
                _packet(worker, T.CAN_DO, function=function),
                *([_packet(worker, T.PRE_SLEEP)] if sleeps else []),
                _packet(client, submit, function=function, unique=unique, data=payload),
                _packet(worker, grab), *steps, *end]

    worker = st.sampled_from(["w1", "w2"])
    return worker.flatmap(lambda w: st.builds(
        one, st.just(w), st.sampled_from(["c1", "c2"]), st.sampled_from(SUBMITS), functions,
        uniques, data, st.booleans(), st.booleans(),
        st.sampled_from([T.GRAB_JOB, T.GRAB_JOB_UNIQ, T.GRAB_JOB_ALL]),
        st.lists(_progress(w, handle), max_size=4), _ending(w, handle)))


http_sends = diff_http.requests.map(lambda request: Send(request[0], None, http=request[1]))


def conversations(http: bool = False) -> st.SearchStrategy[list[Send]]:
    """Up to two lives, then up to 14 sends of any kind (HTTP requests too, where
    both servers run the HTTP module)."""
    kinds = [client_sends, worker_sends, worker_sends, admin_sends, admin_sends, raw_sends,
             *([http_sends, http_sends] if http else [])]
    return st.builds(
        lambda lives, rest: [send for sends in lives for send in sends] + rest,
        st.integers(0, 2).flatmap(lambda n: st.tuples(*(life(i + 1) for i in range(n)))),
        st.lists(st.one_of(*kinds), max_size=14),
    ).filter(lambda sends: bool(sends) and not joins_a_foreground_job(sends)
             and not cancels_a_grabbed_job(sends))


cases = conversations()


@dataclass
class Seen:
    """What one connection received after one send, written with the case's variables."""

    conn: str
    events: tuple[tuple[str, ...], ...]  # ("packet", TYPE, field=value...) / ("text", line)
    ending: str  # "sync", "closed" or "stalled"


class Recorder:
    """Plays a case against one server and writes down what came back."""

    def __init__(self, address: tuple[str, int], tag: str, timeout: float = 2.0,
                 http: tuple[str, int] | None = None) -> None:
        self.address = address
        self.http = http
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
                link = await self.link(send.conn)
                if self.state[send.conn] == "sync":
                    if send.raw is not None:
                        link.send_raw(frame(*send.raw))
                    elif send.packet_type is None:
                        link.send_raw(self.resolve(send.line) + b"\n")
                    else:
                        link.send(send.packet_type, *(self.resolve(v) for _, v in send.fields))
                step = [await self.collect(send.conn)]
                for other in CONNECTIONS:
                    if other != send.conn and other in self.links:
                        step.append(await self.collect(other))
                record.append([s for s in step if s.events or s.ending != "sync"])
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
        step = [Seen(send.conn, (answer,), "sync")]
        for other in CONNECTIONS:
            if other in self.links:
                step.append(await self.collect(other))
        return [s for s in step if s.events or s.ending != "sync"]


def record(address: tuple[str, int], sends: list[Send], tag: str,
           http: tuple[str, int] | None = None) -> list[list[Seen]]:
    return asyncio.run(Recorder(address, tag, http=http).play(sends))


def reproducer(sends: list[Send], oracle: list[list[Seen]], subject: str, oracle_name: str,
               difference: str) -> Scenario:
    """The case as a scenario: its sends, and after each what the oracle answered."""
    steps: list[Any] = []
    bound: set[str] = set()
    for send, seen in zip(sends, oracle):
        steps.append(send.step())
        answered = {s.conn for s in seen}
        for s in seen:
            steps.extend(_expectations(s, bound))
        if send.conn not in answered and not send.http:
            steps.append(f"{send.conn} expect-nothing")
    return load_case({
        "case": f"case-{next(_cases)}", "title": f"{subject} differs from {oracle_name}",
        "level": "MUST", "source": f"gearspec fuzz diff (expectations recorded from "
                                   f"{oracle_name})",
        "requirement": f"The server answers as {oracle_name} does. First difference: "
                       f"{difference}",
        "sections": ["2"], "steps": steps,
        **({"server-options": diff_http.SERVER_OPTIONS} if any(s.http for s in sends) else {})},
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
