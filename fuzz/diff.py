"""Differential fuzzing: the same generated conversation with two servers.

A generated case is a list of sends over a few named connections (clients,
workers, an admin connection): up to two job lives first (a worker that can do
the function, asleep or not, a submit, the grab, progress and a result: what
random sends alone seldom reach), now and then a job held past its worker's
CAN_DO_TIMEOUT (``held_past_timeout``) or workers asleep on one function and
woken by submits round the wake-up ring (``asleep``), then random sends:
packets, admin lines well formed and not, packets a server closes the connection
for, and, where both servers run the HTTP module, HTTP requests
(``fuzz/diff_http.py``). It is written
with variables: ``$fa`` and ``$fb`` are function names made unique to the case,
``$h1``, ``$h2``, ... the job handles in the order the server first mentions
them.  ``fuzz/diff_play.py`` plays a case against both servers and writes down
what came back; two recordings that differ are a divergence, which hypothesis
shrinks to a minimal case.

Inputs where the reference server deliberately differs from gearmand
(reference_server/DEVIATIONS.md) are not generated (no hang-ups, no background
submit joining a foreground job: ``joins_a_foreground_job``, no cancel of a job
a worker may hold: ``cancels_a_grabbed_job``, no second grab by a worker with a
timeout; the rest next to each input), and the one difference of form it allows
for is normalised: the stray NUL in the WORK_FAIL gearmand substitutes for a
WORK_EXCEPTION.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import strategies as st

from fuzz import diff_http
from reference_server.protocol import PacketType

T = PacketType
#: w3 is the worker with a timeout: only ``held_past_timeout`` uses it.
CONNECTIONS = ("c1", "c2", "w1", "w2", "w3", "admin")


@dataclass(frozen=True)
class Send:
    """One generated send: a packet with template fields, an admin line, a
    malformed packet (``raw``: magic, type number, payload), sent as it is, a
    pause (seconds) for a timeout to run out, or the server killed and restarted."""

    conn: str
    packet_type: PacketType | None  # None: an admin line or a raw packet
    fields: tuple[tuple[str, str], ...] = ()
    line: str = ""
    raw: tuple[bytes, int, bytes] | None = None
    http: str = ""  # a request to the HTTP port (fuzz/diff_http.py)
    pause: float = 0.0  # at most this long (a scenario sleeps it) ...
    until: str = ""  # ... until this function's running count drops (a timeout ran out)
    restart: bool = False  # the server killed and started again (a persistent queue's round)

    def steps(self) -> list[Any]:
        """The send as scenario steps (as a file writes them)."""
        if self.restart:
            return ["target kill", "target restart"]
        if self.pause:
            return [{"sleep": self.pause}]
        return [self.step()]

    def step(self) -> Any:
        """A send on a connection as the one step a file writes for it."""
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
#: Submits' uniques: now and then one past the 64-byte limit, refused by both
#: (ERROR ARGUMENT_TOO_LARGE; one of exactly 64 is DEVIATION "64-byte uniques").
submit_uniques = st.sampled_from(["", "$u1", "$u2", "-"] * 2 + ["u" * 65])
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
              functions, submit_uniques, data),
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
    # A reducer of 64 bytes is the longest allowed (one of 65 is refused); a unique of
    # 65 is DEVIATION "Reduce jobs check the reducer, not the unique".
    st.builds(lambda c, t, f, u, r, d: _packet(c, t, function=f, unique=u, reducer=r,
                                               aggregator="", data=d),
              st.sampled_from(["c1", "c2"]),
              st.sampled_from([T.SUBMIT_REDUCE_JOB, T.SUBMIT_REDUCE_JOB_BACKGROUND]),
              functions, uniques, st.sampled_from(["", "$fb", "r" * 64, "r" * 65]), data),
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

BACKGROUND = {T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW_BG, T.SUBMIT_JOB_EPOCH,
              T.SUBMIT_REDUCE_JOB_BACKGROUND}


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


def asleep(workers: list[str]) -> st.SearchStrategy[list[Send]]:
    """Workers asleep on one function, then background submits that wake them:
    gearmand wakes the function's sleepers in turn round a ring kept in order of
    registration (-w N: N of them per job), so which worker each NOOP reaches tells
    the ring's order and its cursor (which only a third worker's registration
    moves past the ring's start).  Then, maybe, one worker grabs, sleeps again, and
    one more submit wakes someone."""
    def one(order: list[str], sleeps: list[str], function: str, payloads: list[str],
            again: str) -> list[Send]:
        submit = [_packet("c1", T.SUBMIT_JOB_BG, function=function, unique="", data=d)
                  for d in payloads]
        return [*(_packet(w, T.CAN_DO, function=function) for w in order),
                *(_packet(w, T.PRE_SLEEP) for w in sleeps), *submit,
                *([_packet(again, T.GRAB_JOB), _packet(again, T.PRE_SLEEP), submit[0]]
                  if again else [])]

    return st.builds(one, st.permutations(workers), st.permutations(workers), functions,
                     st.lists(st.sampled_from(["x", "y"]), min_size=1, max_size=3),
                     st.sampled_from(["", *workers]))


#: gearmand 1.1.20 raises a CAN_DO_TIMEOUT under 1000 ms to 1000 ms.  The pause ends
#: when the server has taken the job back (about a second), or after PAUSE seconds
#: (a server whose timers never fire); a reproducer sleeps PAUSE.
TIMEOUT_MS, PAUSE = "1000", 2.0


def held_past_timeout(number: int) -> st.SearchStrategy[list[Send]]:
    """PROTOCOL "CAN_DO_TIMEOUT": a job held by w3 past its timeout; gearmand 1.1.20
    takes it back and queues it again (server.cc), waking the function's sleepers.
    Then what may follow: another worker's grab, the client's GET_STATUS, w3's late
    result.  w3 grabs once only (DEVIATION "CAN_DO_TIMEOUT follows the latest job"),
    and no random send uses it."""
    handle = f"$h{number}"

    def one(client: str, submit: PacketType, function: str, payload: str, sleeper: str,
            steps: list[Send], after: list[list[Send]]) -> list[Send]:
        asleep = [_packet(sleeper, T.CAN_DO, function=function),
                  _packet(sleeper, T.PRE_SLEEP)] if sleeper else []
        return [_packet("w3", T.CAN_DO_TIMEOUT, function=function, timeout=TIMEOUT_MS),
                _packet(client, submit, function=function, unique="", data=payload),
                _packet("w3", T.GRAB_JOB), *asleep, *steps,
                Send("", None, pause=PAUSE, until=function),
                *(send for sends in after for send in sends)]

    def afterwards(function: str, client: str) -> st.SearchStrategy[list[Send]]:
        return st.one_of(
            st.builds(lambda w, g: [_packet(w, T.CAN_DO, function=function), _packet(w, g)],
                      st.sampled_from(["w1", "w2"]),
                      st.sampled_from([T.GRAB_JOB, T.GRAB_JOB_UNIQ])),
            st.builds(lambda t, d: [_packet("w3", t, handle=handle, data=d)],
                      st.sampled_from([T.WORK_COMPLETE, T.WORK_DATA]), data),
            st.just([_packet(client, T.GET_STATUS, handle=handle)]),
            st.sampled_from([[Send("admin", None, line=line)]
                             for line in ("status", "show jobs", "workers")]))

    return st.tuples(st.sampled_from(["c1", "c2"]), functions).flatmap(
        lambda cf: st.builds(
            one, st.just(cf[0]), st.sampled_from(SUBMITS), st.just(cf[1]), data,
            st.sampled_from(["", "w1", "w2"]), st.lists(_progress("w3", handle), max_size=2),
            st.lists(afterwards(cf[1], cf[0]), min_size=1, max_size=3)))


http_sends = diff_http.requests.map(lambda request: Send(request[0], None, http=request[1]))


def storable(sends: list[Send]) -> list[Send]:
    """Background jobs as a persistent queue can keep them on gearmand: each without a
    unique given one of its own ($b1, $b2, ...: DEVIATION "Background jobs without a
    unique in a persistent queue"), each without data given some (DEVIATION "A
    background job without data in the SQLite queue"; HTTP requests whose job has
    none are left out)."""
    def fill(number: int, send: Send) -> Send:
        fields = dict(send.fields)
        if send.packet_type not in BACKGROUND:
            return send
        fields["unique"] = fields.get("unique") or f"$b{number}"
        fields["data"] = fields.get("data") or "z"
        return replace(send, fields=tuple(fields.items()))

    return [fill(number, send) for number, send in enumerate(sends, 1)
            if send.http not in diff_http.NO_DATA]


#: Server options a round of the diff fuzzer draws (``round_options``), both servers
#: started with them; the first round runs with none.  Each changes what a case can
#: meet: wake-ups (-w), retries of a job taken back on a timeout (-j), the order of
#: a worker's functions (-R), exceptions forwarded unasked (--exceptions), and a
#: queue that keeps background jobs over restarts (-q), where a case may restart.
ROUND_OPTIONS: tuple[tuple[str, ...], ...] = (
    (), ("-w", "1"), ("-w", "2"), ("-j", "1"), ("-R",), ("--exceptions",),
    ("-q", "libsqlite3", "--libsqlite3-db", "{workdir}/fuzz-{round}.db"))
RESTART = Send("target", None, restart=True)


def round_options(round_number: int, seed: int,
                  table: tuple[tuple[str, ...], ...] = ROUND_OPTIONS) -> list[str]:
    """A round's options from ``table``: none in the first round, then drawn with the
    round's seed (the same draw on every machine)."""
    if round_number <= 1:
        return []
    options = random.Random(seed).choice(table)
    return [option.replace("{round}", str(round_number)) for option in options]


def conversations(http: bool = False, persistent: bool = False) -> st.SearchStrategy[list[Send]]:
    """Up to two lives, one case in fifty a job held past its timeout (each costs a
    pause of about a second), one in four sleepers woken, then up to 14 sends of any
    kind (HTTP requests too, where both servers run the HTTP module); with a persistent
    queue, three cases in five restart the servers in the middle."""
    kinds = [client_sends, worker_sends, worker_sends, admin_sends, admin_sends, raw_sends,
             *([http_sends, http_sends] if http else [])]

    def opening(lives: int, held: bool, sleepers: bool) -> st.SearchStrategy[list[Send]]:
        parts = [life(i + 1) for i in range(lives)]
        parts += [held_past_timeout(lives + 1)] if held else []
        # Its jobs' handles come after the rest; w3 only where no job is held past
        # its timeout (w3's, which no other send may touch).
        parts += [asleep(["w1", "w2"] if held else ["w1", "w2", "w3"])] if sleepers else []
        return st.tuples(*parts).map(lambda done: [send for sends in done for send in sends])

    def restarted(sends: list[Send], where: int | None) -> list[Send]:
        # Then 'status': which jobs came back (queued, no worker yet).
        look = Send("admin", None, line="status")
        return sends if where is None else [*sends[:where], RESTART, look, *sends[where:]]

    return st.builds(
        lambda first, rest, where: restarted(first + rest, where),
        st.tuples(st.integers(0, 2), st.sampled_from([False] * 49 + [True]),
                  st.sampled_from([False, False, False, True]))
        .flatmap(lambda choice: opening(*choice)),
        st.lists(st.one_of(*kinds), max_size=14),
        st.sampled_from([None, None, 3, 6, 10]) if persistent else st.none(),
    ).map(storable if persistent else list).filter(
        lambda sends: bool(sends) and not joins_a_foreground_job(sends)
        and not cancels_a_grabbed_job(sends))


cases = conversations()


