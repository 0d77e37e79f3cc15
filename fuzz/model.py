"""A stateful model of the job server, checked against a live one.

``GearmanMachine`` is a hypothesis ``RuleBasedStateMachine`` that drives two
clients and two workers over two functions: submits of every priority,
foreground and background, with or without a unique; CAN_DO, CANT_DO and
RESET_ABILITIES; grabs; PRE_SLEEP; WORK_DATA, WORK_WARNING, WORK_STATUS,
WORK_COMPLETE, WORK_FAIL and WORK_EXCEPTION; GET_STATUS; OPTION_REQ; ECHO;
workers and clients hanging up.  ``Model`` (``fuzz/oracle.py``) predicts, as
gearmand 1.1.20 does, which job each grab gets, what every client hears, the
admin ``status`` counts and the NOOPs that wake sleeping workers, and after
every rule the server is asked and compared (what a connection received is read
up to a sync marker, ``Link.sync``).  ``GearmanMachine.bound(address)`` is the
machine for one server: a subclass with its address, callbacks and the server's
options (those the model knows: ``fuzz.oracle.ROUND_OPTIONS``, drawn per round).

Jobs live in two bundles: ``jobs``, every job a submit created with a unique
(a coalescing submit draws one and submits onto its unique: onto the job itself
while it lives, making a new one once it has ended), and ``held``, every job a
grab handed out (a report consumes one; one that has gone back to the queue or
ended since then leaves the bundle, a step that does nothing).

Rules that depend on the gearmand version are tagged ``# VERSION``: priority is
per function and the most recently registered function is drained first (1.1.x;
later releases use one priority order across all functions).  Situations where
the reference server deliberately differs from gearmand (reference_server/
DEVIATIONS.md: submitting onto an abandoned job, a background submit joining a
foreground one, the last foreground client of a background job leaving) are not
generated.

Everything the machine sends and expects is also written down, as the plain
data a scenario file holds, and read by the scenario format's one reader
(``conformance.loader.load_case``), so a failure is saved as a YAML file
``gearspec run --scenario`` replays.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from conformance.loader import load_case
from conformance.nodes import matcher_data
from conformance.scenario import Matcher, Scenario
from fuzz.oracle import FUNCTIONS, PRIORITIES, REPORTS, WORKERS, Job, Model, Registration
from fuzz.tidy import tidy
from reference_server.client import Admin, ConnectionClosed, Link, SyncMarkers
from reference_server.client.errors import SyncTimeout
from reference_server.protocol import PACKETS, Event, Packet, PacketType

T = PacketType
R = TypeVar("R")
CLIENTS = ("c0", "c1")
TIMEOUT = 10.0  # seconds for any one exchange with the server
_runs = itertools.count()


@dataclass(frozen=True)
class Binding:
    """The server a machine talks to.  ``on_failure`` receives the failing run as a
    scenario; ``on_start`` is called as each run begins, ``on_end`` with its steps
    as each run ends."""

    address: tuple[str, int]
    on_failure: Callable[[Scenario], None] | None = None
    on_start: Callable[[], None] | None = None
    on_end: Callable[[list[Any]], None] | None = None
    options: tuple[str, ...] = ()  # the server's, as the model is told them


class GearmanMachine(RuleBasedStateMachine):
    """The model against a live server; use ``GearmanMachine.bound(address)``."""

    binding: ClassVar[Binding | None] = None
    jobs = Bundle("jobs")  # every job a submit created with a unique
    held = Bundle("held")  # every job a grab handed out

    @classmethod
    def bound(cls, address: tuple[str, int], *,
              on_failure: Callable[[Scenario], None] | None = None,
              on_start: Callable[[], None] | None = None,
              on_end: Callable[[list[Any]], None] | None = None,
              options: tuple[str, ...] = ()) -> type[GearmanMachine]:
        """This machine, bound to the server at ``address`` started with ``options``."""
        binding = Binding(address, on_failure, on_start, on_end, options)
        return type(cls.__name__, (cls,), {"binding": binding, "__qualname__": cls.__qualname__})

    def __init__(self) -> None:
        super().__init__()
        if self.binding is None:
            raise TypeError("an unbound GearmanMachine: use GearmanMachine.bound(address)")
        self.server: Binding = self.binding
        if self.server.on_start is not None:
            self.server.on_start()
        self.run = next(_runs)
        self.loop = asyncio.new_event_loop()
        self.links: dict[str, Link] = {}
        self.model = Model(self.server.options)
        self.names = {f: f"m{self.run}_{f}".encode() for f in FUNCTIONS}
        self.handles: dict[bytes, str] = {}
        self.steps: list[Any] = []  # the scenario's steps, as a file writes them
        self.markers = SyncMarkers(b"model-%d-sync-" % self.run)
        self.noops: dict[str, int] = {}  # NOOPs each connection received

    # ---- plumbing -----------------------------------------------------------

    def _do(self, coro: Awaitable[R]) -> R:
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))
        except (OSError, TimeoutError, ConnectionClosed) as error:
            self.fail(f"the server stopped answering: {type(error).__name__} {error}")

    def link(self, name: str) -> Link:
        if name not in self.links:
            self.links[name] = self._do(Link.open(self.server.address))
            # Named, so that _wait_until_gone can see it leave 'workers'.
            self.links[name].send(T.SET_CLIENT_ID, self._id(name))
        return self.links[name]

    def _id(self, name: str) -> bytes:
        return f"m{self.run}-{name}-{id(self.links.get(name))}".encode()

    def send(self, conn: str, packet_type: PacketType, *args: bytes,
             shown: dict[str, str] | None = None) -> None:
        self.link(conn).send(packet_type, *args)
        fields = shown or {n: a.decode("latin-1") for n, a in zip(PACKETS[packet_type].args, args)}
        self.steps.append(_step(f"{conn} send {packet_type.name}", fields))

    def received(self, conn: str) -> list[Event]:
        """Everything waiting on a connection, up to a sync marker (NOOPs left out)."""
        link = self.link(conn)
        try:
            events = self.loop.run_until_complete(link.sync(self.markers.next(), TIMEOUT))
        except (ConnectionClosed, SyncTimeout) as error:
            got = f" after {_packets(self._shapes(error.events))}" if error.events else ""
            self.fail(f"the server stopped answering: {type(error).__name__} {error}{got}")
        noops = [e for e in events if isinstance(e, Packet) and e.type == T.NOOP]
        self.noops[conn] = self.noops.get(conn, 0) + len(noops)  # checked by wake_ups
        return [e for e in events if not (isinstance(e, Packet) and e.type == T.NOOP)]

    def expect(self, conn: str, wanted: list[tuple[PacketType, dict[str, str]]],
               what: str) -> list[Event]:
        """The packets on ``conn`` must be exactly these (types and fields)."""
        self.steps.extend(_step(f"{conn} expect {t.name}", f) for t, f in wanted)
        self.steps.append(f"{conn} expect-nothing")
        got = self.received(conn)
        shape = self._shapes(got)
        matches = len(shape) == len(wanted) and all(
            s[0] == w[0] and all(s[1].get(k) == v for k, v in w[1].items())
            for s, w in zip(shape, wanted))
        if not matches:
            self.fail(f"{what}: {conn} expected {_packets(wanted) or 'nothing'}, "
                      f"got {_packets(shape) or 'nothing'}")
        return got

    def _shapes(self, events: list[Event]) -> list[tuple[PacketType | str, Any]]:
        return [(e.type, {n: self._shown(a) for n, a in zip(PACKETS[e.type].args, e.args)})
                if isinstance(e, Packet) else ("text", e.raw) for e in events]

    def _shown(self, value: bytes) -> str:
        """A received field as the scenario writes it: handles and names as variables."""
        if value in self.handles:
            return f"${self.handles[value]}"
        if value[-1:] == b"\0" and value[:-1] in self.handles:
            # DEVIATIONS.md: the WORK_FAIL gearmand sends for a WORK_EXCEPTION
            # carries the handle's NUL terminator.
            return f"${self.handles[value[:-1]]}"
        names = {v: k for k, v in self.names.items()}
        if value in names:
            return f"${names[value]}"
        return value.decode("latin-1")

    def fail(self, message: str) -> NoReturn:
        if self.server.on_failure is not None:
            self.server.on_failure(self.scenario(message))
        raise AssertionError(message)

    def scenario(self, message: str) -> Scenario:
        return load_case({
            "case": f"run-{self.run}", "title": "Found by the model fuzzer", "level": "MUST",
            "source": "gearspec fuzz model",
            "requirement": f"The server answers as gearmand 1.1.20 does. Failure: {message}",
            "sections": ["3.3", "3.4", "3.6", "3.8"], "steps": list(self.steps),
            **({"server-options": list(self.server.options)} if self.server.options else {})},
            "fuzz/model", origin="gearspec fuzz model")

    def teardown(self) -> None:
        if self.server.on_end is not None:
            self.server.on_end(self.steps)
        try:
            for link in self.links.values():
                self._do(link.close())
            self.loop.run_until_complete(tidy(self.server.address, self.names.values()))
        finally:
            self.loop.close()

    # ---- rules --------------------------------------------------------------

    @rule(target=jobs, client=st.sampled_from(CLIENTS), function=st.sampled_from(FUNCTIONS),
          priority=st.sampled_from(list(PRIORITIES)), background=st.booleans(),
          unique=st.sampled_from([b"", b"u1", b"u2"]), data=st.sampled_from([b"a", b"b"]))
    def submit(self, client: str, function: str, priority: str, background: bool,
               unique: bytes, data: bytes) -> Any:
        return self._submit(client, function, priority, background, unique, data)

    @rule(target=jobs, client=st.sampled_from(CLIENTS), job=jobs,
          priority=st.sampled_from(list(PRIORITIES)), background=st.booleans(),
          data=st.sampled_from([b"a", b"b"]))
    def coalesce(self, client: str, job: Job, priority: str, background: bool,
                 data: bytes) -> Any:
        # Submitting onto a job's unique while it waits or runs: the part of the
        # protocol with the most state, so it gets a rule of its own.  (Once the
        # job has ended, the same submit makes a new one.)
        return self._submit(client, job.function, priority, background and job.background,
                            job.unique, data)

    def _submit(self, client: str, function: str, priority: str, background: bool,
                unique: bytes, data: bytes) -> Any:
        """The job submitted, for the ``jobs`` bundle if it is new and has a unique."""
        existing = self.model.existing(function, unique)
        if existing is not None and (existing.ignore or
                                     (background and not existing.background)):
            # DEVIATIONS.md: not generated (gearmand drops the job; we revive it),
            # nor a background submit joining a foreground job.  A step that does
            # nothing, rather than assume(), which would throw the whole run away.
            return multiple()
        fg, bg, level = PRIORITIES[priority]
        self.send(client, bg if background else fg, self.names[function], unique, data,
                  shown={"function": f"${function}", "unique": unique.decode(),
                         "data": data.decode()})
        if existing is not None:
            job = existing
            self.expect(client, [(T.JOB_CREATED, {"handle": f"${job.var}"})], "coalesce")
        else:
            job = self._created(client, function, unique, data, level, background)
        if not background:
            job.clients.append(client)
        return job if existing is None and unique else multiple()

    def _created(self, client: str, function: str, unique: bytes, data: bytes, level: int,
                 background: bool) -> Job:
        """A new job: its JOB_CREATED must bring a handle no other job has."""
        var = f"h{len(self.handles) + 1}"
        distinct = Matcher.distinct(var, list(self.handles.values()))
        self.steps.append({f"{client} expect JOB_CREATED": {"handle": matcher_data(distinct)}})
        self.steps.append(f"{client} expect-nothing")
        got = self.received(client)
        if len(got) != 1 or not isinstance(got[0], Packet) or got[0].type != T.JOB_CREATED:
            self.fail(f"submit: {client} expected JOB_CREATED, got {got}")
        handle = got[0].args[0]
        if handle in self.handles:
            self.fail(f"submit: a new job got the handle of ${self.handles[handle]}")
        self.handles[handle] = var
        job = Job(handle, var, function, unique, data, level, background)
        self.model.jobs.append(job)
        self.model.queue(job)
        return job

    @initialize(plan=st.lists(st.tuples(st.sampled_from(WORKERS), st.sampled_from(FUNCTIONS)),
                              min_size=1, max_size=4))
    def register(self, plan: list[tuple[str, str]]) -> None:
        # Most runs start with workers able to take something: otherwise the short
        # runs hypothesis favours would mostly grab nothing.
        for worker, function in plan:
            self.can_do(worker, function)

    @rule(worker=st.sampled_from(WORKERS), function=st.sampled_from(FUNCTIONS))
    def can_do(self, worker: str, function: str) -> None:
        self.send(worker, T.CAN_DO, self.names[function], shown={"function": f"${function}"})
        self.expect(worker, [], "can_do")  # no reply; and the server has seen it
        self.model.registrations[worker].insert(0, Registration(worker, function))

    @rule(worker=st.sampled_from(WORKERS), function=st.sampled_from([*FUNCTIONS, None]))
    def withdraw(self, worker: str, function: str | None) -> None:
        """CANT_DO one function, or (None) RESET_ABILITIES; the worker's jobs for
        what it no longer offers go back to the queue."""
        regs = self.model.registrations[worker]
        if function is None:
            self.send(worker, T.RESET_ABILITIES)
            gone, kept = regs, []
        else:
            self.send(worker, T.CANT_DO, self.names[function],
                      shown={"function": f"${function}"})
            gone = [r for r in regs if r.function == function]
            kept = [r for r in regs if r.function != function]
        self.expect(worker, [], "withdraw")
        # gearmand puts the jobs back while the worker still offers the function, so
        # a worker asleep with one of them is woken by it (worker.cc worker_free).
        dropped = self.model.requeue(gone)
        self.model.registrations[worker] = kept
        self._told_dropped(dropped)

    @rule(target=held, worker=st.sampled_from(WORKERS))
    def grab(self, worker: str) -> Any:
        self.send(worker, T.GRAB_JOB_UNIQ)
        job = self.model.take(worker)
        if job is None:
            self.expect(worker, [(T.NO_JOB, {})], "grab")
            return multiple()
        self.expect(worker, [(T.JOB_ASSIGN_UNIQ, {
            "handle": f"${job.var}", "function": f"${job.function}",
            "unique": job.unique.decode(), "data": job.data.decode()})], "grab")
        return job

    @rule(target=held, job=consumes(held), kind=st.sampled_from(list(REPORTS)))
    def report(self, job: Job, kind: str) -> Any:
        """The worker holding the job reports on it; its clients hear it.  A job
        that has gone back to the queue or ended since its grab leaves the bundle."""
        if job.worker is None or job not in self.model.jobs:
            return multiple()
        worker, handle = job.worker.worker, f"${job.var}"
        packet_type, extra, ends = REPORTS[kind]
        names = PACKETS[packet_type].args[1:]
        self.send(worker, packet_type, job.handle, *extra,
                  shown={"handle": handle, **{n: v.decode() for n, v in zip(names, extra)}})
        heard = (packet_type, {"handle": handle,
                               **{n: v.decode() for n, v in zip(names, extra)}})
        self.expect(worker, [], kind)
        if kind == "status":
            job.numerator, job.denominator = extra
        for client in sorted(set(job.clients)):
            told = (T.WORK_FAIL, {"handle": handle}) if kind == "exception" and \
                not self.model.hears_exceptions(client) else heard
            self.expect(client, [told] * job.clients.count(client), kind)
        if not ends:
            return job  # still held
        self.model.end(job)
        return multiple()

    @rule(client=st.sampled_from(CLIENTS), job=st.one_of(jobs, held))
    def get_status(self, client: str, job: Job) -> None:
        """PROTOCOL "GET_STATUS": known, running and the last WORK_STATUS's numbers;
        a job that has ended is unknown (0, 0, 0, 0)."""
        self.send(client, T.GET_STATUS, job.handle, shown={"handle": f"${job.var}"})
        known = job in self.model.jobs
        numbers = (job.numerator, job.denominator) if known else (b"0", b"0")
        self.expect(client, [(T.STATUS_RES, {
            "handle": f"${job.var}", "known": "1" if known else "0",
            "running": "1" if known and job.worker else "0",
            "numerator": numbers[0].decode(), "denominator": numbers[1].decode()})],
            "get_status")

    @rule(client=st.sampled_from(CLIENTS))
    def ask_for_exceptions(self, client: str) -> None:
        self.send(client, T.OPTION_REQ, b"exceptions")
        self.expect(client, [(T.OPTION_RES, {"option": "exceptions"})], "option")
        self.model.exceptions.add(client)

    @rule(who=st.sampled_from([*CLIENTS, *WORKERS]), data=st.sampled_from([b"", b"e\0x"]))
    def echo(self, who: str, data: bytes) -> None:
        self.send(who, T.ECHO_REQ, data)
        self.expect(who, [(T.ECHO_RES, {"data": data.decode("latin-1")})], "echo")

    @rule(worker=st.sampled_from(WORKERS))
    def pre_sleep(self, worker: str) -> None:
        if any(job.ignore for job in self.model.jobs):
            # An abandoned job at the head of a queue is dropped by PRE_SLEEP's look
            # at the queues (gearmand's peek): not modelled, so not generated.
            return
        self.send(worker, T.PRE_SLEEP)
        self.expect(worker, [], "pre_sleep")
        self.model.pre_sleep(worker)

    @rule(who=st.sampled_from([*WORKERS, *CLIENTS]))
    def hang_up(self, who: str) -> None:
        """A worker's jobs go back to the queue; a client's foreground jobs that
        nobody else waits for are abandoned."""
        if who not in self.links:
            return
        if any(j.background and set(j.clients) == {who} for j in self.model.jobs):
            # DEVIATIONS.md: not generated (gearmand abandons a background job when
            # the last foreground client that joined it leaves; we keep it).
            return
        gone_id = self._id(who)
        self._do(self.links.pop(who).close())
        self.steps.append(f"{who} hangup")
        self.model.exceptions.discard(who)
        self.noops.pop(who, None)
        dropped: list[Job] = []
        if who in WORKERS:
            self.model.awake(who)
            self.model.noops[who] = 0
            gone, self.model.registrations[who] = self.model.registrations[who], []
            dropped = self.model.requeue(gone)
        for job in self.model.jobs:
            if who in job.clients:
                job.clients = [c for c in job.clients if c != who]
                if not job.clients and not job.background:
                    job.ignore = True
        self._wait_until_gone(gone_id)
        self._told_dropped(dropped)

    def _told_dropped(self, dropped: list[Job]) -> None:
        """-j: the clients of each job dropped at its last retry hear WORK_FAIL."""
        for job in dropped:
            for client in sorted(set(job.clients)):
                self.expect(client, [(T.WORK_FAIL, {"handle": f"${job.var}"})]
                            * job.clients.count(client), "job retries")

    def _wait_until_gone(self, client_id: bytes) -> None:
        # The server handles a hang-up in its own time: poll 'workers' until the
        # connection's row is gone, so the next rule sees its effects.
        admin = Admin(self.link("admin"))
        for _ in range(200):
            if b" " + client_id + b" :" not in self._do(admin.command("workers")):
                return
            self.loop.run_until_complete(asyncio.sleep(0.01))

    # ---- invariant ----------------------------------------------------------

    @invariant()
    def status_counts(self) -> None:
        status = self._do(Admin(self.link("admin")).status())
        rows = {f: status[name] for f, name in self.names.items() if name in status}
        wanted = {f: self.model.status(f) for f in FUNCTIONS}
        seen = {f: rows.get(f, (0, 0, 0)) for f in FUNCTIONS}
        self.steps.append({"admin send-line": "status"})
        self.steps.append({"admin expect-list": {
            "rows": [f"${f}\t{t}\t{r}\t{w}\n" for f, (t, r, w) in wanted.items()
                     if f in rows or (t, r, w) != (0, 0, 0)],
            "filter": [f"${f}\t" for f in FUNCTIONS]}})
        if seen != wanted:
            self.fail(f"status: expected {wanted}, got {seen}")


    @invariant()
    def wake_ups(self) -> None:
        """Every NOOP due has arrived, and no other: each sleeping worker is woken
        once by the first job queued for it."""
        for worker in WORKERS:
            if worker in self.links:
                self.expect(worker, [], "wake-up")  # reads what is waiting, NOOPs too
                due, got = self.model.noops[worker], self.noops.get(worker, 0)
                if got != due:
                    self.fail(f"wake-up: {worker} should have had {due} NOOP(s) since it "
                              f"connected, got {got}")


def _step(key: str, fields: dict[str, Any]) -> Any:
    """A step as a file writes it: ``"c0 expect NO_JOB"``, ``{"c0 send CAN_DO": {...}}``."""
    return {key: fields} if fields else key


def _packets(shape: list[tuple[PacketType | str, Any]]) -> str:
    """Packets as a failure message shows them: ``WORK_COMPLETE(handle=$h1, data=r)``."""
    return ", ".join(
        f"{kind.name}({', '.join(f'{k}={v}' for k, v in fields.items())})"
        if isinstance(kind, PacketType) else repr(fields) for kind, fields in shape)
