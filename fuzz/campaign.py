"""Running the fuzzers: a time budget, a seed, progress, and findings saved as scenarios.

Every fuzzer is a hypothesis test.  A campaign runs it in rounds (seed, seed+1,
...; or, with an example database, the database's examples first and seeds of
hypothesis's choosing) until it fails, or until the budget is spent (checked at
every example, shrinking included), or, with ``--examples N``, until N examples
have run whatever the time: with a seed, the same N examples on any machine, and
their digest says so.  Hypothesis shrinks a failure to a minimal example and runs
that example last, so the reproducer the last run recorded is the minimal one (a
shrink the budget cuts short keeps the least so far); it is written as a scenario
file that ``gearspec run --scenario FILE --target ...`` replays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import SkipTest

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from conformance.runner import how_it_ended
from conformance.scenario import Scenario
from conformance.targets import CRASH_SETTLE, Target
from conformance.writer import dump
from fuzz import client, diff, diff_play, model, server
from fuzz.known import KnownFinding
from fuzz.oracle import ROUND_OPTIONS as MODEL_OPTIONS
from fuzz.parser import PROPERTIES
from fuzz.shared import Store, claim, example_database


class StopCampaign(KeyboardInterrupt):
    """Raised at an example to end the campaign there: the budget is spent, or the
    examples asked for have run.  A kind of KeyboardInterrupt, the one exception
    hypothesis lets through untouched: anything else it takes for a failure to
    shrink, or records as a half-drawn example that later rounds call flaky."""


@dataclass
class Campaign:
    """One fuzzer's run: what it did and what it found."""

    fuzzer: str
    targets: list[str]
    budget: float = 30.0  # seconds
    base_seed: int = 0
    batch: int = 100  # examples per round
    derandomize: bool = False  # one fixed round, as CI runs it
    database: Store | None = None  # a folder, or a Redis shared by many campaigns
    replay_only: bool = False  # only the database's examples, none new
    show_progress: bool = False
    limit: int = 0  # --examples N: stop after N examples, whatever the budget
    shown: list[str] | None = None  # every example's repr, when asked for (--examples-log)
    examples: int = 0
    seconds: float = 0.0
    rounds: int = 0
    failure: str | None = None
    finding: Scenario | None = None
    saved: Path | None = None
    saved_before: str | None = None  # another campaign saved this finding first: where
    failing: int = 0  # failing examples seen while shrinking
    last_failure: str = ""  # the message of the last (least) failing example
    _digest: Any = dataclasses.field(default_factory=hashlib.sha256)
    _last_shown: float = 0.0
    _began: float = 0.0

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0

    def settings(self) -> settings:
        # No "explain" phase: it traces every line the test runs, which for a test
        # that talks to a server over sockets costs minutes and says little.
        phases = [Phase.reuse, Phase.shrink] if self.replay_only else \
            [p for p in Phase if p != Phase.explain]
        return settings(max_examples=self.batch, deadline=None, derandomize=self.derandomize,
                        database=example_database(self.database),
                        suppress_health_check=list(HealthCheck),
                        stateful_step_count=25, print_blob=True, phases=phases)

    @property
    def digest(self) -> str:
        """What the examples were, in 12 hex digits: two campaigns that ran the same
        examples in the same order have the same digest."""
        return self._digest.hexdigest()[:12]

    def note(self, example: Any) -> None:
        """Add an example (what hypothesis drew, not what the server answered) to the
        digest and, when asked, to the list of examples shown."""
        text = repr(example)
        self._digest.update(text.encode() + b"\n")
        if self.shown is not None:
            self.shown.append(text)

    def tick(self, example: Any = None) -> None:
        """Count one example (and note it, when given); end the campaign here when
        its examples have run or its budget is spent; now and then show progress."""
        now = time.monotonic()
        if self.limit and self.examples >= self.limit:
            raise StopCampaign("examples")
        if not (self.limit or self.derandomize or self.replay_only) and \
                now - self._began >= self.budget:
            raise StopCampaign("budget")
        self.examples += 1
        if example is not None:
            self.note(example)
        if self.show_progress and now - self._last_shown > 0.3:
            self._last_shown = now
            elapsed = now - self._began
            rate = self.examples / elapsed if elapsed else 0.0
            state = f", {self.failing} failing (shrinking)" if self.failing else ""
            print(f"\r{self.fuzzer}: {self.examples} examples, {rate:.0f}/s, "
                  f"round {self.rounds}{state}   ", end="", file=sys.stderr, flush=True)

    def found(self, scenario: Scenario | None = None, message: str = "") -> None:
        """Note a failing example (hypothesis then shrinks it; the last is the least)."""
        self.failing += 1
        self.last_failure = message or self.last_failure
        if scenario is not None:
            self.finding = scenario

    def round_seed(self) -> int | None:
        """This round's seed: seed, seed+1, ...; none with a database, because
        hypothesis ignores the database in a seeded run (the database's examples run
        first, then hypothesis draws its own seeds)."""
        return None if self.database else self.base_seed + self.rounds - 1

    def run(self, test: Callable[[], None]) -> Campaign:
        """Rounds of ``test`` until the budget is spent or one round fails."""
        started = self._began = time.monotonic()
        while True:
            self.rounds += 1
            number = self.round_seed()
            round_test = test if number is None else seed(number)(test)
            try:
                round_test()
            except StopCampaign:
                if self.failing:  # cut short while shrinking: the least example so far
                    self.failure = f"{_one_line(self.last_failure)} (shrinking cut short " \
                                   "by the budget)"
                break
            except SkipTest as skipped:  # --replay of an empty database: nothing to find
                if not self.replay_only:
                    self.failure = _describe(skipped)[:2000]
            except Exception as error:  # any way the test fails is a finding
                self.failure = _describe(error)[:2000]
            finally:
                self.seconds = time.monotonic() - started
            if self.failure or self.derandomize or self.replay_only or \
                    (self.examples >= self.limit if self.limit else
                     self.seconds >= self.budget):
                break
        if self.show_progress:
            print(file=sys.stderr)
        return self


def _one_line(text: str) -> str:
    """A message of several lines (an admin answer, say) on one, none of it lost."""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _describe(error: BaseException) -> str:
    """One line: the assertion's message, or the exception's type and message; for
    hypothesis's FlakyFailure (the example passed when replayed), what it first did."""
    text = _one_line(str(error))
    if not isinstance(error, AssertionError):
        text = f"{type(error).__name__}: {text}".rstrip(": ")
    if isinstance(error, BaseExceptionGroup) and error.exceptions:
        text += f" (first: {_describe(error.exceptions[0])})"
    return text or "failed"


def revive(target: Target) -> str | None:
    """If the target's process has died: how, after starting it again on the same
    port when it can be, so that the next example (and hypothesis's shrinking,
    which replays examples) meets a live server."""
    if target.alive():
        return None
    how = how_it_ended(target.exit_status())
    if "restart" in target.capabilities:
        target.restart()
    return f"{target.name} died ({how})"


def _log_tail(target: Target, lines: int = 5) -> str:
    return " | ".join(target.log_text().splitlines()[-lines:]) or "(no log)"


def parser_test(campaign: Campaign, name: str) -> Callable[[], None]:
    strategy, check = PROPERTIES[name]

    def body(value: Any) -> None:
        campaign.tick(value)
        try:
            check(value)
        except AssertionError as error:
            campaign.found(message=str(error))
            raise

    return campaign.settings()(given(strategy)(body))


def server_test(campaign: Campaign, target: Target, avoid: tuple[KnownFinding, ...] = ()
                ) -> Callable[[], None]:
    def robustness(noise: list[tuple[int, bytes]]) -> None:
        campaign.tick(noise)
        scenario, failure = server.play(target, noise)
        failure = revive(target) or failure
        if failure is not None:
            campaign.found(scenario, failure)
            raise AssertionError(failure)

    return campaign.settings()(given(server.noise_strategy(avoid))(robustness))


def client_test(campaign: Campaign, target: Target) -> Callable[[], None]:
    """A library's parser: generated server streams through its adapter (fuzz/client.py)."""
    concurrent = "client.concurrent" in target.capabilities

    def stream_test(stream: client.Stream) -> None:
        campaign.tick(stream)
        scenario, failure = client.play(target, stream)
        if failure is not None:
            campaign.found(scenario, failure)
            raise AssertionError(failure)

    return campaign.settings()(given(client.streams(concurrent))(stream_test))


def model_test(campaign: Campaign, target: Target) -> Callable[[], None]:
    def start() -> None:
        revive(target)  # a run that killed the server failed already; start afresh
        campaign.tick()

    def found(scenario: Scenario) -> None:
        died = revive(target)
        if died:
            scenario.requirement += f" ({died})"
        campaign.found(scenario, scenario.requirement)

    def end(steps: list[Any]) -> None:  # what was sent; the answers are the server's
        campaign.note([step for step in steps if " send" in str(step) or "hangup" in str(step)])

    rounds = OptionRounds((target,), MODEL_OPTIONS)

    def run_machine() -> None:
        number = campaign.round_seed()
        options = rounds.start(campaign)
        machine = model.GearmanMachine.bound(target.address, on_failure=found, on_start=start,
                                             on_end=end, options=tuple(options))
        # A stateful test takes its seed from the machine, not from this function.
        run_state_machine_as_test(machine if number is None else seed(number)(machine),
                                  settings=campaign.settings())

    return run_machine


def _http(target: Target) -> tuple[str, int] | None:
    return (target.host, target.http_port) if target.http_port is not None else None


def diff_test(campaign: Campaign, subject: Target, oracle: Target) -> Callable[[], None]:
    """Each case played on both servers, HTTP requests in it where both run the HTTP
    module (``gearspec fuzz diff --http``).  Each round after the first starts both
    servers with options it draws (``diff.round_options``), where both can restart."""
    http = _http(subject) is not None and _http(oracle) is not None
    pair = (subject, oracle)
    rounds = OptionRounds(pair, diff.ROUND_OPTIONS)

    def server(target: Target) -> diff_play.Server:
        def crash_and_restart() -> None:  # as persistence/ cases do: kill, then start
            target.kill()
            target.restart()

        return diff_play.Server(target.address, _http(target), crash_and_restart)

    def differential(sends: list[diff.Send]) -> None:
        campaign.tick(sends)
        tag = f"d{campaign.rounds}x{campaign.examples}y"
        try:
            mine, theirs = diff_play.record_pair(server(subject), server(oracle), sends, tag)
        except OSError as error:  # refused or reset: did one of them die?
            deaths = []
            for target in pair:
                if not target.alive(CRASH_SETTLE):
                    tail = _log_tail(target)  # before the restart starts a new log
                    deaths.append(f"{revive(target)}; its log ends: {tail}")
            raise AssertionError("; ".join(deaths) or str(error)) from None
        for target, other, survivor in ((subject, oracle, theirs), (oracle, subject, mine)):
            died = revive(target)
            if died:  # the survivor's answers are what the dead one owed
                campaign.found(diff_play.reproducer(sends, survivor, target.name, other.name,
                                                    died, rounds.current), died)
                raise AssertionError(died)
        if mine != theirs:
            difference = _difference(sends, (subject.name, mine), (oracle.name, theirs),
                                     rounds.current)
            campaign.found(diff_play.reproducer(sends, theirs, subject.name, oracle.name,
                                                difference, rounds.current), difference)
            raise AssertionError(difference)

    def run_round() -> None:
        number = campaign.round_seed()
        persistent = "-q" in rounds.start(campaign)
        # A round with restarts is slower: fewer examples in it.
        test = settings(campaign.settings(), max_examples=max(1, campaign.batch // 4)) \
            if persistent else campaign.settings()
        round_test = test(given(diff.conversations(http, persistent))(differential))
        (round_test if number is None else seed(number)(round_test))()

    return run_round


class OptionRounds:
    """The server options of a campaign's rounds, drawn from ``table`` for each round
    after the first (``diff.round_options``), where every target restarts and takes
    gearmand's options; the servers are started again only when they change."""

    def __init__(self, targets: tuple[Target, ...],
                 table: tuple[tuple[str, ...], ...]) -> None:
        self.targets = targets
        self.table = table
        self.base = [list(target.options) for target in targets]  # as the command gave them
        self.varies = all({"restart", "gearmand-options"} <= target.capabilities
                          for target in targets)
        self.current: list[str] = []

    def start(self, campaign: Campaign) -> list[str]:
        """This round's options, the servers running with them."""
        number = campaign.round_seed()
        options = diff.round_options(campaign.rounds, campaign.rounds if number is None
                                     else number, self.table) if self.varies else []
        if options != self.current:
            for target, base in zip(self.targets, self.base):
                target.options = [*base, *options]
            with ThreadPoolExecutor(len(self.targets)) as pool:  # at once
                list(pool.map(lambda target: target.restart(), self.targets))
            self.current = options
        return options


Recording = tuple[str, list[list[diff_play.Seen]]]  # a server's name, what it answered


def _difference(sends: list[diff.Send], mine: Recording, theirs: Recording,
                options: list[str]) -> str:
    """The first send the two servers answered differently, and both answers."""
    first = next((i for i, (a, b) in enumerate(zip(mine[1], theirs[1])) if a != b),
                 len(sends) - 1)
    send = sends[first]
    what = send.packet_type.name if send.packet_type else \
        send.line or send.http or ("restart" if send.restart else "") or \
        (f"pause {send.pause} s" if send.pause else f"raw packet {send.raw}")
    return (f"after send {first} ({send.conn} {what}): {mine[0]} {_short(mine[1], first)} "
            f"but {theirs[0]} {_short(theirs[1], first)}"
            + (f" (server options: {' '.join(options)})" if options else ""))


def _short(record: list[list[diff_play.Seen]], index: int) -> str:
    if index >= len(record) or not record[index]:
        return "answered nothing"
    return "; ".join(f"{s.conn}: {' '.join(' '.join(e) for e in s.events) or s.ending}"
                     for s in record[index])[:300]


def save(campaign: Campaign, directory: Path) -> Path | None:
    """Write the finding (if any) as a scenario file; returns its path.  With a
    shared database, only the first campaign to find it writes it; the others
    learn where it is (``saved_before``)."""
    if campaign.finding is None:
        return None
    path = directory / f"{campaign.fuzzer}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.yaml"
    if campaign.database is not None and campaign.database.shared:
        # The same finding whatever its id (a count of the campaign's examples).
        same = dump([dataclasses.replace(campaign.finding, id="finding")], "")
        campaign.saved_before = claim(campaign.database, same, path.resolve())
        if campaign.saved_before is not None:
            return None
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(dump([campaign.finding], f"Found by gearspec fuzz {campaign.fuzzer} "
                                             f"against {', '.join(campaign.targets)}"))
    campaign.saved = path
    return path
