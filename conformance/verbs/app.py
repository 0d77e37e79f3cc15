"""Verbs about the application in a library case: what it saw through the library.

The adapter prints, one JSON line each, what the library told the application
(``{"event": "data", "job": 0, "data": "part"}``); ``app reports data: {data:
part}`` expects the next such event, fields compared as packet fields are.
Events are judged in the order they came, none skipped: a data callback
called twice, or not at all, is seen.  ``app finishes`` expects the adapter
to end by itself with exit status 0 and nothing more to say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from conformance.context import Context
from conformance.events import AppEvent, Closed, Event, Garbage, TimedOut, describe
from conformance.jobspec import EVENT_NEEDS
from conformance.jobspec import binary_text as _binary
from conformance.match import PENDING, Met, Mismatch, Result, Scope, Unmet, seen
from conformance.nodes import is_null, matcher_data
from conformance.scenario import Matcher, Step
from conformance.verbs.record import NO_ARGS, Form, Verb, Written

WITHIN = frozenset({"note", "within"})


@dataclass
class AppReports(Step):
    event: str = "complete"
    fields: dict[str, Matcher] = field(default_factory=dict)
    within: float | None = None

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        """The feature that tells the application of this event; and ``binary`` when the
        bytes the case expects it to see are not plain text."""
        feature = EVENT_NEEDS.get(self.event)
        binary = any(m.value is not None and _binary(m.value.raw.decode("latin-1")
                                                     if m.value.raw is not None
                                                     else m.value.text)
                     for m in self.fields.values())
        return frozenset({feature} if feature else ()) | ({"binary"} if binary else set())


def _read_reports(written: Written) -> AppReports:
    event = written.packet or ""
    if not event or not event.replace("-", "").isalpha() or event != event.lower():
        raise written.error("say which event: 'app reports complete: {data: ...}'")
    read = written.reader
    fields = read.mapping(written.args, written.where) if written.args is not None else {}
    return AppReports(written.line, written.conn, written.note, event,
                      {k: read.matcher(v, f"{written.where}.{k}") for k, v in fields.items()},
                      written.within)


def expect_report(step: AppReports, events: Sequence[Event], scope: Scope) -> Result:
    """The next event the application saw is this one, with these fields."""
    if not events:
        return PENDING
    event = events[0]
    what = f"the application to see {step.event}"
    if isinstance(event, TimedOut):
        return Unmet(what, describe(event),
                     text=f"the application saw nothing within {event.waited:.1f} s while "
                          f"waiting for {step.event}")
    if isinstance(event, Closed):
        return Unmet(what, "the adapter ended", text=f"the adapter ended before reporting "
                                                     f"{step.event}")
    if isinstance(event, Garbage):
        return Unmet(what, describe(event),
                     text=f"the adapter printed a line that is not an event: "
                          f"{event.data[:200]!r}")
    if not isinstance(event, AppEvent) or event.name != step.event:
        return Unmet(step.event, describe(event))
    try:
        for name, matcher in step.fields.items():
            if name not in event.fields:
                return Unmet(f"{step.event} with {name}", describe(event),
                             text=f"{step.event} came without {name}: {describe(event)}")
            scope = scope.with_variables(scope.check(matcher, event.fields[name],
                                                     f"{step.event}.{name}"))
    except Mismatch as mismatch:
        return mismatch.unmet
    return Met(1, scope.variables)


REPORTS = Verb(name="reports", step=AppReports, packet=True, connection="app",
               modifiers=WITHIN,
               usage="app reports EVENT [{fields}]: the next thing the application saw "
                     "(created, data, warning, status, complete, fail, exception, error, "
                     "status-answer, echo, job, exit)",
               read=_read_reports,
               write=lambda step: Form({k: matcher_data(m) for k, m in step.fields.items()}
                                       or NO_ARGS, step.event),
               perform=lambda ctx, step: _streamed(ctx, step, expect_report),
               expect=expect_report, gather="stream", alternative=True)


@dataclass
class AppReportsAll(Step):
    """These events, in this order for each job, the jobs' events interleaved in any
    way (a library follows concurrent jobs; their answers may come in any order).
    Events expected without a ``job`` field form one more such sequence."""

    events: list[AppReports] = field(default_factory=list)
    within: float | None = None

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset().union(*(e.needs for e in self.events)) if self.events \
            else frozenset()


def _read_all(written: Written) -> AppReportsAll:
    read = written.reader
    items = read.sequence(written.needs_args("reports-all needs [{EVENT: {fields}}, ...]"),
                          written.where)
    events = []
    for i, item in enumerate(items):
        at = f"{written.where}[{i}]"
        [(name, node)] = read.mapping(item, at).items() or [("", None)]
        one = Written(read, item, at, written.line, written.conn, name,
                      None if is_null(node) else node, mode=written.mode)
        events.append(_read_reports(one))
    return AppReportsAll(written.line, written.conn, written.note, events, written.within)


def expect_all(step: AppReportsAll, events: Sequence[Event], scope: Scope) -> Result:
    """Each event that comes must be the next one expected for its job."""
    queues: dict[bytes, list[AppReports]] = {}
    for expected in step.events:
        job = expected.fields.get("job")
        key = b"" if job is None or job.value is None else scope.resolve(job.value,
                                                                          fresh=False)[0]
        queues.setdefault(key, []).append(expected)
    for index, event in enumerate(events):
        if not any(queues.values()):
            return Met(index, scope.variables)
        if not isinstance(event, AppEvent):
            waiting = "; ".join(f"{q[0].event} of job {k.decode() or '-'}"
                                for k, q in queues.items() if q)
            result = expect_report(next(q[0] for q in queues.values() if q), [event], scope)
            return Unmet(waiting, describe(event),
                         text=f"{result.message if isinstance(result, Unmet) else ''} "
                              f"(still waiting for: {waiting})".strip())
        # Its job's queue; or, for an event the case expects of no job in particular (no
        # ``job`` field), the queue of those.
        queue = queues.get(event.fields.get("job", b""), [])
        anyone = queues.get(b"", [])
        if anyone and (not queue or queue[0].event != event.name) and \
                anyone[0].event == event.name:
            queue = anyone
        if not queue:
            return Unmet("an event of a job still running", describe(event),
                         text=f"the application saw {describe(event)}, which no job "
                              "still waits for")
        result = expect_report(queue[0], [event], scope)
        if not isinstance(result, Met):
            return result
        scope = scope.with_variables(result.variables)
        queue.pop(0)
    return Met(len(events), scope.variables) if not any(queues.values()) else PENDING


REPORTS_ALL = Verb(
    name="reports-all", step=AppReportsAll, connection="app", modifiers=WITHIN,
    usage="app reports-all: [{EVENT: {job, ...}}, ...]: these events, in order for each "
          "job, the jobs interleaved in any way",
    read=_read_all,
    write=lambda step: Form([{e.event: {k: matcher_data(m) for k, m in e.fields.items()}
                              or None} for e in step.events]),
    perform=lambda ctx, step: _streamed(ctx, step, expect_all),
    expect=expect_all, gather="stream", alternative=True)


@dataclass
class AppFinishes(Step):
    """The adapter ends by itself, exit status 0, with nothing more to report."""

    within: float | None = None
    needs: ClassVar[frozenset[str]] = frozenset()


def expect_finish(step: AppFinishes, events: Sequence[Event], scope: Scope) -> Result:
    for index, event in enumerate(events):
        if isinstance(event, TimedOut):
            return Unmet("the adapter to end by itself", "it still ran",
                         text=f"the adapter was still running after {event.waited:.1f} s "
                              "(the application did not finish)")
        if isinstance(event, AppEvent) and event.name == "exit":
            status = event.fields.get("status", b"?")
            if status != b"0":
                return Unmet("exit status 0", f"exit status {status.decode()}",
                             text=f"the adapter ended with exit status {status.decode()}")
            more = list(events[:index])
            if more:
                return Unmet("nothing more", seen(more),
                             text=f"the application saw more before the end: {seen(more)}")
            closed = index + 1 < len(events) and isinstance(events[index + 1], Closed)
            return Met(index + 1 + closed, scope.variables)
        if isinstance(event, Closed):
            return Unmet("exit status 0", "no status",
                         text="the adapter closed its output but did not end")
    return PENDING


async def _streamed(ctx: Context, step: Step, expect) -> None:  # type: ignore[no-untyped-def]
    wire = await ctx.wire(step.conn)
    await ctx.expect(wire, lambda events: expect(step, events, ctx.scope),  # type: ignore[arg-type]
                     ctx.timeout(getattr(step, "within", None)))


FINISHES = Verb(name="finishes", step=AppFinishes, connection="app", args=False,
                modifiers=WITHIN,
                usage="app finishes: the adapter ends by itself, exit status 0, nothing more "
                      "seen",
                read=lambda w: AppFinishes(w.line, w.conn, w.note, w.within),
                write=lambda step: Form(),
                perform=lambda ctx, step: _streamed(ctx, step, expect_finish),
                expect=expect_finish, gather="stream", alternative=True)

VERBS = (REPORTS, REPORTS_ALL, FINISHES)
