"""Plays one scenario on one network and judges it.

The engine opens the scenario's connections on first use (``Context``) and
has each step's verb perform it (``conformance.verbs``), recording what
crosses the wire in a ``Transcript``.  The first unmet expectation decides
the verdict by the scenario's level: MUST → FAIL, SHOULD → NON-STRICT, MAY →
INFO; its ``Failure`` carries what was expected and what arrived, side by
side.  An ``expect-one-of`` gives the verdict of the alternative that
matched.  A step the harness cannot do is an ERROR.

To know that nothing more is coming on a connection without waiting blindly,
the engine sends an ECHO_REQ carrying a fresh marker and reads up to its
ECHO_RES: servers answer each connection in order, so whatever the previous
requests caused has arrived by then.  For targets without ECHO it waits for a
short silence instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from conformance.context import Context, HarnessError, StepFailed, TargetControl
from conformance.match import Unbound
from conformance.scenario import Scenario
from conformance.transcript import Chunk
from conformance.verbs import describe_step, verb_of
from conformance.wire import Network
from results import Entry, Failure, Verdict

_BY_LEVEL = {"MUST": Verdict.FAIL, "SHOULD": Verdict.NON_STRICT, "MAY": Verdict.INFO}
_SEVERITY = {Verdict.PASS: 0, Verdict.INFO: 1, Verdict.NON_STRICT: 2, Verdict.UNSUPPORTED: 3,
             Verdict.FAIL: 4, Verdict.ERROR: 5}


@dataclass
class Outcome:
    verdict: Verdict
    message: str = ""
    step: int | None = None
    entries: list[Entry] = field(default_factory=list)
    failure: Failure | None = None
    # The wire, byte for byte, when run_scenario was asked to record it (for pcaps);
    # never part of the results.
    raw: list[Chunk] | None = None
    started: float = 0.0  # wall-clock time of the transcript's t=0
    log: list[str] = field(default_factory=list)  # what the network kept (an adapter's stderr)
    missing: list[str] = field(default_factory=list)  # UNSUPPORTED: what the target lacks


async def run_scenario(scenario: Scenario, network: Network, *, tag: str,
                       timeout_factor: float = 1.0, has_echo: bool = True,
                       control: TargetControl | None = None,
                       record_raw: bool = False) -> Outcome:
    """Play a scenario; the outcome holds the verdict and the transcript (and with
    ``record_raw`` every byte on the wire, in ``Outcome.raw``)."""
    ctx = Context(scenario, network, tag=tag, timeout_factor=timeout_factor,
                  has_echo=has_echo, control=control, record_raw=record_raw)
    try:
        await network.start_case(ctx)
        outcome = await _play(ctx)
    finally:
        await ctx.close_all()
        end = await network.finish_case()
    outcome.log, died = end.log, end.died
    if end.unsupported is not None:  # the library has no API for what the job asks
        return Outcome(Verdict.UNSUPPORTED, f"the adapter says: {end.unsupported}",
                       entries=outcome.entries, log=end.log, missing=["library API"])
    if died is not None:  # a library's process that died on its own: said, and a failure
        outcome.message = f"{died}; {outcome.message}" if outcome.message else died
        if outcome.verdict in (Verdict.PASS, Verdict.NON_STRICT, Verdict.INFO):
            outcome.verdict = Verdict.FAIL
            outcome.failure = Failure(len(scenario.steps), scenario.line, "(the whole case)",
                                      "the library's process to live through the case", died)
    return outcome


async def _play(ctx: Context) -> Outcome:
    """The steps in order; the first unmet one decides.  A case with a budget (a
    library may hang) fails when it runs past it."""
    scenario, index = ctx.scenario, 0
    try:
        async with asyncio.timeout(ctx.budget):
            for step in scenario.steps:
                await verb_of(step).perform(ctx, step)
                index += 1
    except StepFailed as failure:
        step = scenario.steps[index]
        verdict = Verdict(failure.verdict) if failure.verdict else _BY_LEVEL[scenario.level]
        unmet = failure.unmet
        return _outcome(ctx, verdict, f"step {index} (line {step.line}): {unmet.message}",
                        index, Failure(index, step.line, describe_step(step), unmet.expected,
                                       unmet.actual, unmet.where))
    except (HarnessError, Unbound) as error:  # Unbound: a variable used before its value
        return _outcome(ctx, Verdict.ERROR, f"step {index}: {error}", index)
    except TimeoutError:  # the budget: a step that could not finish (a hung library)
        step = scenario.steps[index]
        text = f"the case ran past its budget of {ctx.budget:.0f} s at step {index}"
        return _outcome(ctx, _BY_LEVEL[scenario.level], f"step {index} (line {step.line}): "
                        f"{text}", index, Failure(index, step.line, describe_step(step),
                                                  f"done within {ctx.budget:.0f} s",
                                                  "still waiting (the library hung?)"))
    worst = max((Verdict(verdict) for verdict, _ in ctx.grades), key=_SEVERITY.__getitem__,
                default=Verdict.PASS)
    return _outcome(ctx, worst, "; ".join(note for _, note in ctx.grades if note), None)


def _outcome(ctx: Context, verdict: Verdict, message: str, step: int | None,
             failure: Failure | None = None) -> Outcome:
    # ``raw`` is the live list: the connections closed after the verdict still add
    # their FINs to it.
    return Outcome(verdict, message, step, ctx.transcript.entries, failure, ctx.transcript.raw,
                   ctx.transcript.started)
