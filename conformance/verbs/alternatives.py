"""``expect-one-of``: what arrived decides between alternatives, each with its verdict.

As Autobahn's "one of" outcomes: what one connection received up to a sync
point (an ECHO marker, the connection closing or stalling) is compared with
each alternative in turn, by the same pure expectations the other verbs use;
the first whose steps describe it exactly gives the case its verdict (PASS,
NON-STRICT, INFO or FAIL) and its note goes to the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from conformance.context import Context, StepFailed
from conformance.events import AppEvent, Closed, Event, Stalled, Synced
from conformance.match import Met, Result, Scope, Unmet, seen
from conformance.scenario import VERDICT_NAMES, Step
from conformance.verbs.record import Expectation, Form, Verb, Written


@dataclass
class Alternative:
    line: int
    verdict: str
    note: str
    steps: list[Step]
    # Each step's expectation, found in the verb table when the file was read.
    expectations: list[Expectation] = field(default_factory=list, compare=False, repr=False)


@dataclass
class ExpectOneOf(Step):
    alternatives: list[Alternative] = field(default_factory=list)

    def substeps(self) -> list[Step]:
        return [step for alternative in self.alternatives for step in alternative.steps]


def describes(alternative: Alternative, events: Sequence[Event], scope: Scope) -> Result:
    """Do the alternative's expectations, one after the other, use up exactly what
    arrived (up to the sync point)?"""
    index = 0
    for step, expect in zip(alternative.steps, alternative.expectations):
        result = expect(step, events[index:], scope)
        if not isinstance(result, Met):
            return result if isinstance(result, Unmet) else Unmet("more", "nothing more")
        index += result.consumed
        scope = scope.with_variables(result.variables)
    # What is left must be nothing but the sync point (and, for a library's application,
    # the adapter's end: judged by ``app finishes`` and the crash check, not here).
    rest = [e for e in events[index:] if not scope.ignored(e) and not isinstance(e, Synced)
            and not (isinstance(e, AppEvent) and e.name == "exit")
            and not (isinstance(e, Closed) and alternative.steps[0].conn == "app")]
    if rest:
        return Unmet("nothing more", seen(rest))
    return Met(len(events), scope.variables)


def _read(written: Written) -> ExpectOneOf:
    read, where = written.reader, written.where
    assert written.read_step is not None and written.verb_of is not None
    alternatives = []
    items = read.sequence(written.needs_args("expect-one-of needs alternatives"), where)
    for i, node in enumerate(items):
        at = f"{where}[{i}]"
        spec = read.mapping(node, at)
        if set(spec) - {"verdict", "note", "expect"} or not {"verdict", "expect"} <= set(spec):
            raise read.error(node, at, "an alternative has verdict, note and expect")
        verdict = read.scalar(spec["verdict"], f"{at}.verdict").upper()
        if verdict not in VERDICT_NAMES:
            raise read.error(spec["verdict"], f"{at}.verdict",
                             f"{verdict!r} is not one of {VERDICT_NAMES}")
        nodes = read.sequence(spec["expect"], f"{at}.expect")
        steps = [written.read_step(s, f"{at}.expect[{j}]") for j, s in enumerate(nodes)]
        verbs = [written.verb_of(step) for step in steps]
        for step, verb, s in zip(steps, verbs, nodes):
            if step.conn != written.conn or not verb.alternative:
                raise read.error(s, at, "alternatives hold expect, expect-line(s), "
                                 f"expect-closed, expect-nothing or expect-stalled steps on "
                                 f"{written.conn}")
        alternatives.append(Alternative(
            node.start_mark.line + 1 if node.start_mark else 0, verdict,
            " ".join(read.scalar(spec["note"], f"{at}.note").split()) if "note" in spec else "",
            steps, [verb.expect for verb in verbs]))  # type: ignore[misc]
    if not alternatives:
        raise read.error(written.args, where, "expect-one-of needs alternatives")
    return ExpectOneOf(written.line, written.conn, written.note, alternatives)


def _write(step: ExpectOneOf) -> Form:
    # The nested steps stay steps: the writer writes them with their own records.
    written = []
    for alternative in step.alternatives:
        item: dict[str, object] = {"verdict": alternative.verdict}
        if alternative.note:
            item["note"] = alternative.note
        item["expect"] = list(alternative.steps)
        written.append(item)
    return Form(written)


async def _perform(ctx: Context, step: ExpectOneOf) -> None:
    wire = await ctx.wire(step.conn)
    events = await ctx.sync(wire)
    for alternative in step.alternatives:
        result = describes(alternative, events, ctx.scope)
        if not isinstance(result, Met):
            continue
        ctx.bind(result)
        ctx.transcript.note(step.conn, f"one of: {alternative.verdict} {alternative.note}")
        if alternative.verdict == "FAIL":
            raise StepFailed(Unmet("another alternative", alternative.note or "this one",
                                   text=alternative.note or "an alternative that fails"),
                             verdict="FAIL")
        if alternative.verdict != "PASS":
            ctx.grades.append((alternative.verdict, alternative.note))
        return
    arrived = seen([e for e in events if not isinstance(e, Synced | Stalled)])
    stalled = " (then the connection stalled)" if any(isinstance(e, Stalled) for e in events) \
        else ""
    raise StepFailed(Unmet("one of the alternatives", arrived + stalled,
                           text=f"none of the alternatives matches what arrived: {arrived}"
                                f"{stalled}"))


EXPECT_ONE_OF = Verb(name="expect-one-of", step=ExpectOneOf,
                     usage="expect-one-of: [{verdict, note, expect: [steps]}]: alternatives",
                     read=_read, write=_write, perform=_perform)

VERBS = (EXPECT_ONE_OF,)
