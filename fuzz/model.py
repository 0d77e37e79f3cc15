"""A stateful model of the job server, checked against a live one.

Hypothesis drives two clients and two workers over two functions: submits of
every priority, foreground and background, with or without a unique; CAN_DO,
CANT_DO and RESET_ABILITIES; grabs; WORK_DATA, WORK_COMPLETE and WORK_FAIL;
workers and clients hanging up.  ``Model`` predicts, as gearmand 1.1.20 does,
which job each grab gets, what every client hears, and the admin ``status``
counts, and after every rule the server is asked and compared.

Rules that depend on the gearmand version are tagged ``# VERSION``: priority is
per function and the most recently registered function is drained first (1.1.x;
later releases use one priority order across all functions).  Situations where
the reference server deliberately differs from gearmand (reference_server/
DEVIATIONS.md: submitting onto an abandoned job, a background submit joining a
foreground one, the last foreground client of a background job leaving) are not
generated.

Everything the machine sends and expects is also written down as a scenario,
so a failure is saved as a YAML file ``gearspec run --scenario`` replays.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from conformance.scenario import (
    ExpectList,
    ExpectNothing,
    ExpectPacket,
    Hangup,
    Matcher,
    Scenario,
    SendPacket,
    SendText,
    Step,
    Value,
)
from fuzz.tidy import tidy
from reference_server.client import ConnectionClosed, Link
from reference_server.protocol import Packet, PacketType, TextLine

T = PacketType
PRIORITIES = {"high": (T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_HIGH_BG, 0),
              "normal": (T.SUBMIT_JOB, T.SUBMIT_JOB_BG, 1),
              "low": (T.SUBMIT_JOB_LOW, T.SUBMIT_JOB_LOW_BG, 2)}
CLIENTS, WORKERS, FUNCTIONS = ("c0", "c1"), ("w0", "w1"), ("fa", "fb")
_runs = itertools.count()


@dataclass(eq=False)
class Job:
    handle: bytes
    var: str  # the scenario variable holding its handle ($h1, ...)
    function: str
    unique: bytes
    data: bytes
    priority: int
    background: bool
    clients: list[str] = field(default_factory=list)  # one entry per foreground submit
    worker: Registration | None = None
    ignore: bool = False


@dataclass(eq=False)
class Registration:
    worker: str
    function: str
    jobs: list[Job] = field(default_factory=list)  # newest last


class Model:
    """What gearmand 1.1.20 does, for the subset the machine exercises."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, int], list[Job]] = {
            (f, p): [] for f in FUNCTIONS for p in range(3)}
        self.registrations: dict[str, list[Registration]] = {w: [] for w in WORKERS}
        self.jobs: list[Job] = []

    def existing(self, function: str, unique: bytes) -> Job | None:
        if not unique:
            return None
        return next((j for j in self.jobs if j.function == function and j.unique == unique),
                    None)

    def queue(self, job: Job) -> None:
        self.queues[(job.function, job.priority)].append(job)

    def take(self, worker: str) -> Job | None:
        # VERSION: gearmand 1.1.x walks the worker's registrations, newest CAN_DO
        # first, and takes the highest priority of the first function with a job.
        for registration in self.registrations[worker]:
            for priority in range(3):
                queue = self.queues[(registration.function, priority)]
                if queue:
                    job = queue.pop(0)
                    if job.ignore:  # abandoned by its clients: dropped unseen
                        self.jobs.remove(job)
                        return self.take(worker)
                    job.worker = registration
                    registration.jobs.append(job)
                    return job
        return None

    def requeue(self, registrations: list[Registration]) -> None:
        for registration in registrations:
            for job in reversed(registration.jobs):  # gearmand frees newest first
                job.worker = None
                self.queue(job)
            registration.jobs.clear()

    def end(self, job: Job) -> None:
        assert job.worker is not None
        job.worker.jobs.remove(job)
        self.jobs.remove(job)

    def status(self, function: str) -> tuple[int, int, int]:
        total = sum(1 for j in self.jobs if j.function == function)
        running = sum(1 for j in self.jobs if j.function == function and j.worker)
        workers = sum(1 for rs in self.registrations.values() for r in rs
                      if r.function == function)
        return total, running, workers


def machine_for(address: tuple[str, int], *,
                on_failure: Callable[[Scenario], None] | None = None,
                on_start: Callable[[], None] | None = None) -> type:
    """A state machine class bound to a running server.  ``on_failure`` receives the
    failing run as a scenario; ``on_start`` is called as each run begins."""

    class GearmanMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            if on_start is not None:
                on_start()
            self.run = next(_runs)
            self.loop = asyncio.new_event_loop()
            self.links: dict[str, Link] = {}
            self.model = Model()
            self.names = {f: f"m{self.run}_{f}".encode() for f in FUNCTIONS}
            self.handles: dict[bytes, str] = {}
            self.steps: list[Step] = []
            self.markers = itertools.count()

        # ---- plumbing -------------------------------------------------------

        def _do(self, coro):  # type: ignore[no-untyped-def]
            try:
                return self.loop.run_until_complete(asyncio.wait_for(coro, 10))
            except (OSError, TimeoutError, ConnectionClosed) as error:
                self.fail(f"the server stopped answering: {type(error).__name__} {error}")

        def link(self, name: str) -> Link:
            if name not in self.links:
                self.links[name] = self._do(Link.open(address))
                # Named, so that _wait_until_gone can see it leave 'workers'.
                self.links[name].send(T.SET_CLIENT_ID, self._id(name))
            return self.links[name]

        def _id(self, name: str) -> bytes:
            return f"m{self.run}-{name}-{id(self.links.get(name))}".encode()

        def send(self, conn: str, packet_type: PacketType, *args: bytes,
                 shown: dict[str, str] | None = None) -> None:
            self.link(conn).send(packet_type, *args)
            names = [n for n in _fields(packet_type)]
            fields = shown or {n: a.decode("latin-1") for n, a in zip(names, args)}
            self.steps.append(SendPacket(0, conn, "", packet_type,
                                         {k: Value(v) for k, v in fields.items()}))

        def received(self, conn: str) -> list[Packet | TextLine]:
            """Everything waiting on a connection, up to an ECHO marker."""
            marker = b"model-sync-%d" % next(self.markers)
            link = self.link(conn)
            link.send(T.ECHO_REQ, marker)
            events: list[Packet | TextLine] = []
            while True:
                event = self._do(link.next_event())
                if isinstance(event, Packet) and event.type == T.ECHO_RES and \
                        event.args == (marker,):
                    return events
                if isinstance(event, Packet) and event.type == T.NOOP:
                    continue
                events.append(event)

        def expect(self, conn: str, wanted: list[tuple[PacketType, dict[str, str]]],
                   what: str) -> list[Packet]:
            """The packets on ``conn`` must be exactly these (types and fields)."""
            for packet_type, fields in wanted:
                self.steps.append(ExpectPacket(0, conn, "", packet_type, {
                    k: Matcher(value=Value(v)) for k, v in fields.items()}))
            self.steps.append(ExpectNothing(0, conn))
            got = self.received(conn)
            shape = [(p.type, {n: _shown(self, a) for n, a in zip(_fields(p.type), p.args)})
                     if isinstance(p, Packet) else ("text", p.raw) for p in got]
            wanted_shape = [(t, {**f}) for t, f in wanted]
            matches = len(shape) == len(wanted_shape) and all(
                s[0] == w[0] and all(s[1].get(k) == v for k, v in w[1].items())
                for s, w in zip(shape, wanted_shape))
            if not matches:
                self.fail(f"{what}: {conn} expected {_packets(wanted_shape) or 'nothing'}, "
                          f"got {_packets(shape) or 'nothing'}")
            return got  # type: ignore[return-value]

        def fail(self, message: str) -> None:
            if on_failure is not None:
                on_failure(self.scenario(message))
            raise AssertionError(message)

        def scenario(self, message: str) -> Scenario:
            return Scenario(
                id=f"fuzz/model/run-{self.run}", title="Found by the model fuzzer",
                level="MUST", source="gearspec fuzz model",
                requirement=f"The server answers as gearmand 1.1.20 does. Failure: {message}",
                sections=["3.3", "3.4", "3.6", "3.8"], steps=list(self.steps), file="",
                line=0)

        def teardown(self) -> None:
            try:
                for link in self.links.values():
                    self._do(link.close())
                self.loop.run_until_complete(tidy(address, self.names.values()))
            finally:
                self.loop.close()

        # ---- rules ----------------------------------------------------------

        @rule(client=st.sampled_from(CLIENTS), function=st.sampled_from(FUNCTIONS),
              priority=st.sampled_from(list(PRIORITIES)), background=st.booleans(),
              unique=st.sampled_from([b"", b"u1", b"u2"]), data=st.sampled_from([b"a", b"b"]))
        def submit(self, client: str, function: str, priority: str, background: bool,
                   unique: bytes, data: bytes) -> None:
            existing = self.model.existing(function, unique)
            if existing is not None and (existing.ignore or
                                         (background and not existing.background)):
                # DEVIATIONS.md: not generated (gearmand drops the job; we revive it),
                # nor a background submit joining a foreground job.  A step that does
                # nothing, rather than assume(), which would throw the whole run away.
                return
            fg, bg, level = PRIORITIES[priority]
            packet_type = bg if background else fg
            self.send(client, packet_type, self.names[function], unique, data,
                      shown={"function": f"${function}", "unique": unique.decode(),
                             "data": data.decode()})
            if existing is not None:
                job = existing
                self.expect(client, [(T.JOB_CREATED, {"handle": f"${job.var}"})], "coalesce")
            else:
                var = f"h{len(self.handles) + 1}"
                self.steps.append(ExpectPacket(0, client, "", T.JOB_CREATED, {
                    "handle": Matcher.distinct(var, list(self.handles.values()))}))
                self.steps.append(ExpectNothing(0, client))
                got = self.received(client)
                if len(got) != 1 or not isinstance(got[0], Packet) or \
                        got[0].type != T.JOB_CREATED:
                    self.fail(f"submit: {client} expected JOB_CREATED, got {got}")
                handle = got[0].args[0]
                if handle in self.handles:
                    self.fail(f"submit: a new job got the handle of ${self.handles[handle]}")
                self.handles[handle] = var
                job = Job(handle, var, function, unique, data, level, background)
                self.model.jobs.append(job)
                self.model.queue(job)
            if not background:
                job.clients.append(client)

        @precondition(lambda self: any(j.unique and not j.ignore for j in self.model.jobs))
        @rule(client=st.sampled_from(CLIENTS), index=st.integers(0, 5),
              priority=st.sampled_from(list(PRIORITIES)), background=st.booleans(),
              data=st.sampled_from([b"a", b"b"]))
        def coalesce(self, client: str, index: int, priority: str, background: bool,
                     data: bytes) -> None:
            # Submitting onto a job that is waiting or running: the part of the
            # protocol with the most state, so it gets a rule of its own.
            pending = [j for j in self.model.jobs if j.unique and not j.ignore]
            job = pending[index % len(pending)]
            self.submit(client, job.function, priority, background and job.background,
                        job.unique, data)

        @initialize(plan=st.lists(st.tuples(st.sampled_from(WORKERS),
                                            st.sampled_from(FUNCTIONS)),
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

        @rule(worker=st.sampled_from(WORKERS),
              function=st.sampled_from([*FUNCTIONS, None]))
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
            self.model.registrations[worker] = kept
            self.model.requeue(gone)

        @rule(worker=st.sampled_from(WORKERS))
        def grab(self, worker: str) -> None:
            self.send(worker, T.GRAB_JOB_UNIQ)
            job = self.model.take(worker)
            if job is None:
                self.expect(worker, [(T.NO_JOB, {})], "grab")
            else:
                self.expect(worker, [(T.JOB_ASSIGN_UNIQ, {
                    "handle": f"${job.var}", "function": f"${job.function}",
                    "unique": job.unique.decode(), "data": job.data.decode()})], "grab")

        def _held(self) -> list[Job]:
            return [j for w in WORKERS for r in self.model.registrations[w] for j in r.jobs]

        @precondition(lambda self: bool(self._held()))
        @rule(index=st.integers(0, 5), kind=st.sampled_from(["complete", "fail", "data"]))
        def report(self, index: int, kind: str) -> None:
            held = self._held()
            job = held[index % len(held)]
            assert job.worker is not None
            worker = job.worker.worker
            if kind == "complete":
                self.send(worker, T.WORK_COMPLETE, job.handle, b"r",
                          shown={"handle": f"${job.var}", "data": "r"})
                heard = (T.WORK_COMPLETE, {"handle": f"${job.var}", "data": "r"})
            elif kind == "fail":
                self.send(worker, T.WORK_FAIL, job.handle, shown={"handle": f"${job.var}"})
                heard = (T.WORK_FAIL, {"handle": f"${job.var}"})
            else:
                self.send(worker, T.WORK_DATA, job.handle, b"part",
                          shown={"handle": f"${job.var}", "data": "part"})
                heard = (T.WORK_DATA, {"handle": f"${job.var}", "data": "part"})
            self.expect(worker, [], kind)
            for client in sorted(set(job.clients)):
                self.expect(client, [heard] * job.clients.count(client), kind)
            if kind != "data":
                self.model.end(job)

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
            self.steps.append(Hangup(0, who))
            if who in WORKERS:
                gone, self.model.registrations[who] = self.model.registrations[who], []
                self.model.requeue(gone)
            for job in self.model.jobs:
                if who in job.clients:
                    job.clients = [c for c in job.clients if c != who]
                    if not job.clients and not job.background:
                        job.ignore = True
            self._wait_until_gone(gone_id)

        def _wait_until_gone(self, client_id: bytes) -> None:
            # The server handles a hang-up in its own time: poll 'workers' until the
            # connection's row is gone, so the next rule sees its effects.
            def listed() -> bool:
                link = self.link("admin")
                link.send_raw(b"workers\n")
                found = False
                while True:
                    event = self._do(link.next_event())
                    if isinstance(event, TextLine):
                        if event.line == b".":
                            return found
                        found = found or b" " + client_id + b" :" in event.line

            for _ in range(200):
                if not listed():
                    return
                self.loop.run_until_complete(asyncio.sleep(0.01))

        # ---- invariant ------------------------------------------------------

        @invariant()
        def status_counts(self) -> None:
            link = self.link("admin")
            link.send_raw(b"status\n")
            rows: dict[str, tuple[int, int, int]] = {}
            by_name = {v: k for k, v in self.names.items()}
            while True:
                event = self._do(link.next_event())
                if not isinstance(event, TextLine):
                    continue
                if event.line == b".":
                    break
                name, total, running, workers = event.line.rsplit(b"\t", 3)
                if name in by_name:
                    rows[by_name[name]] = (int(total), int(running), int(workers))
            wanted = {f: self.model.status(f) for f in FUNCTIONS}
            seen = {f: rows.get(f, (0, 0, 0)) for f in FUNCTIONS}
            self.steps.append(SendText(0, "admin", "", Value("status"), True))
            self.steps.append(ExpectList(0, "admin", "", [
                Matcher(value=Value(f"${f}\t{t}\t{r}\t{w}\n")) for f, (t, r, w) in
                wanted.items() if f in rows or (t, r, w) != (0, 0, 0)],
                [Value(f"${f}\t") for f in FUNCTIONS]))
            if seen != wanted:
                self.fail(f"status: expected {wanted}, got {seen}")

    return GearmanMachine


def _fields(packet_type: PacketType) -> tuple[str, ...]:
    from reference_server.protocol import PACKETS

    return PACKETS[packet_type].args


def _shown(machine: object, value: bytes) -> str:
    """A received field as the scenario writes it: handles and names as variables."""
    handles: dict[bytes, str] = machine.handles  # type: ignore[attr-defined]
    if value in handles:
        return f"${handles[value]}"
    names = {v: k for k, v in machine.names.items()}  # type: ignore[attr-defined]
    if value in names:
        return f"${names[value]}"
    return value.decode("latin-1")


def _packets(shape: list[tuple[PacketType | str, Any]]) -> str:
    """Packets as a failure message shows them: ``WORK_COMPLETE(handle=$h1, data=r)``."""
    return ", ".join(
        f"{kind.name}({', '.join(f'{k}={v}' for k, v in fields.items())})"
        if isinstance(kind, PacketType) else repr(fields) for kind, fields in shape)
