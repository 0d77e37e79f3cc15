"""The runner: scenarios × targets → results.  Every front end plays through it.

``gearspec run``, ``matrix`` and ``replay``, the fuzzers' replays and the
pytest plugin all call ``TargetRun.play`` (one case, judged) or ``run`` (a
whole selection).  For each target it starts the servers the cases need: the
main one, one per set of server options, one of its own for a ``fresh`` case.
Cases that can share a server are played concurrently (``jobs`` at a time;
each case uses its own run-unique names, so cases never see each other's
jobs); cases that restart or kill the server, or say ``exclusive``, run
alone.  A case needing what the target lacks is UNSUPPORTED with the missing
capabilities.  After every case the runner checks that the server is still
alive: if it died, the case is an ERROR with the server's last log lines,
and the server is restarted for the next case.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import secrets
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from conformance import services
from conformance.baselines import BASELINE_DIR, Baseline, baseline_for, check_ids, judge
from conformance.capabilities import sorted_names
from conformance.coverage import coverage
from conformance.engine import Outcome, run_scenario
from conformance.scenario import Scenario
from conformance.specs import baseline_name, mode_of, parse_target
from conformance.targets import CRASH_SETTLE, Target, TargetError
from conformance.tlsgen import TLSSettings, TLSSetup
from conformance.transcript import Chunk
from reference_server import __version__
from results import CaseResult, RunResult, ScenarioInfo, TargetInfo, Verdict

#: Servers for option groups a TargetRun keeps at once when cases come one by one
#: (the pytest plugin); ``run`` stops each group's server when the group is done.
KEPT_SERVERS = 4


@dataclass
class RunOptions:
    jobs: int = (os.cpu_count() or 2) * 4
    timeout_factor: float = 1.0
    strict: bool = False
    require_all: bool = False  # an UNSUPPORTED case is a failure
    select: list[str] = field(default_factory=list)  # id globs; empty: all
    exclude: list[str] = field(default_factory=list)
    baseline_dir: str | None = None
    # One pcap per case and target, under pcap_dir (see pcap_path); None: no captures.
    pcap_dir: str | None = None
    # --tls: servers we start get --ssl and throwaway certificates; tls_ca/cert/key: what
    # clients trust and show (for tls:// targets, or a server started with its own).
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # Per target spec: capabilities it was said to have beyond its kind's, and the
    # baseline that judges it instead of its kind's.
    capabilities: dict[str, frozenset[str]] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)
    # Recorded for ``gearspec report --merge``: which shard this is ("K/N", "" for a
    # whole run) and the fingerprint of the catalog it was cut from.
    shard: str = ""
    catalog: str = ""

    @property
    def tls_settings(self) -> TLSSettings:
        return TLSSettings(self.tls, self.tls_ca, self.tls_cert, self.tls_key)


def select(scenarios: list[Scenario], include: list[str], exclude: list[str]) -> list[Scenario]:
    return [s for s in scenarios
            if (not include or any(fnmatch.fnmatchcase(s.id, g) for g in include))
            and not any(fnmatch.fnmatchcase(s.id, g) for g in exclude)]


def unsupported(spec: str, missing: set[str]) -> str:
    """Why a case cannot run here; for a helper service, what installs it."""
    lacks = sorted_names(missing - services.MISSING.keys())
    reasons = [f"{spec} lacks {', '.join(lacks)}"] if lacks else []
    return "; ".join(reasons + [services.MISSING[need] for need in sorted(
        missing & services.MISSING.keys())])


def pcap_path(directory: str | Path, spec: str, scenario_id: str) -> Path:
    """Where ``--pcap-dir`` puts a case's capture: ``DIR/<target>/<id>.pcap``, with the
    id's ``/`` as ``__`` and anything but letters, digits, ``.``, ``_`` and ``-`` in the
    target spec as ``_`` (``tcp://10.0.0.5:4730`` → ``tcp___10.0.0.5_4730``)."""
    target = re.sub(r"[^A-Za-z0-9._-]", "_", spec) or "_"
    return Path(directory) / target / (scenario_id.replace("/", "__") + ".pcap")


async def write_capture(path: Path, chunks: list[Chunk], started: float) -> bool:
    """Write a case's pcap in a thread (the cases still running keep their event loop);
    one that cannot be written is a warning, never a verdict."""
    from conformance.capture.pcapwrite import write_pcap  # scapy only loads when asked

    try:
        await asyncio.to_thread(write_pcap, path, chunks, started=started)
    except Exception as error:
        print(f"warning: cannot write {path}: {type(error).__name__}: {error}",
              file=sys.stderr)
        return False
    return True


Progress = Callable[[str, int, int, int], None]  # target, done, total, unexpected


def terminal_progress(target: str, done: int, total: int, unexpected: int) -> None:
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\r{target}: {done}/{total} cases, {unexpected} unexpected", end=end,
              file=sys.stderr, flush=True)


def how_it_ended(status: int | None) -> str:
    """A dead process's exit status in words: "exit status 1", "killed by SIGSEGV"."""
    if status is not None and status < 0 and -status in signal.valid_signals():
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}" if status is not None else "it stopped answering"


def _group(scenario: Scenario) -> tuple[str, ...]:
    """Which server a case plays on: () the main one, else its options (a fresh case:
    a marker and its id first, so it gets a server of its own)."""
    if scenario.fresh:
        return ("--gearspec-fresh", scenario.id, *scenario.server_options)
    return tuple(scenario.server_options)


class TargetRun:
    """All cases against one target spec: the servers they need, started on demand,
    and every case played, checked for a crash, captured and judged."""

    def __init__(self, spec: str, options: list[str], run_options: RunOptions,
                 baseline: Baseline, run_id: str, progress: Progress | None = None,
                 total: int = 0) -> None:
        self.spec = spec
        self.options = options
        self.run_options = run_options
        self.baseline = baseline
        self.run_id = run_id
        self.progress = progress
        self.total = total
        self.results: list[CaseResult] = []
        self.tls = TLSSetup(run_options.tls_settings) \
            if run_options.tls or spec.startswith("tls://") else None
        self.servers: OrderedDict[tuple[str, ...], Target] = OrderedDict()
        self.broken: dict[tuple[str, ...], str] = {}  # groups whose server would not start
        self.locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self.capabilities: frozenset[str] = frozenset()
        self.cases = 0  # for run-unique tags
        self.adopted: Target | None = None  # a started server its owner stops
        self.last_death: str | None = None  # how the server last died during a case

    @classmethod
    def adopting(cls, target: Target, run_options: RunOptions, run_id: str = "") -> TargetRun:
        """A run on a server someone else started and stops (a fuzz campaign's): no
        baseline, no other servers; a crash is still an ERROR and a restart."""
        run = cls(target.name, [], run_options, Baseline(target.name),
                  run_id or secrets.token_hex(2))
        run.servers[()] = run.adopted = target
        run.capabilities = target.capabilities | services.available()
        return run

    def _target(self, extra: list[str]) -> Target:
        target = parse_target(self.spec, [*self.options, *extra])
        target.capabilities |= self.run_options.capabilities.get(self.spec, frozenset())
        if self.tls is not None:
            self.tls.apply(target)
        return target

    async def open(self) -> TargetInfo:
        """Start the main server (a TargetError says why it cannot be)."""
        main = self._target([])
        await asyncio.to_thread(main.start)
        self.servers[()] = main
        self.capabilities = main.capabilities | services.available()
        return TargetInfo(self.spec, main.name, await asyncio.to_thread(main.version),
                          list(self.options), sorted_names(main.capabilities))

    async def close(self) -> None:
        for key in list(self.servers):
            await self.release(key)
        if self.tls is not None:
            self.tls.close()

    async def release(self, key: tuple[str, ...]) -> None:
        target = self.servers.pop(key, None)
        if target is not None and target is not self.adopted:
            await asyncio.to_thread(target.stop)

    async def _server(self, key: tuple[str, ...]) -> Target:
        """The server for a group, started the first time it is asked for."""
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.servers:
                self.servers.move_to_end(key)
                return self.servers[key]
            if key in self.broken:
                raise TargetError(self.broken[key])
            extra = list(key[2:]) if key[:1] == ("--gearspec-fresh",) else list(key)
            target = self._target(extra)
            try:
                await asyncio.to_thread(target.start)
            except TargetError as error:
                self.broken[key] = f"could not start with {extra}: {error}"
                raise TargetError(self.broken[key]) from None
            self.servers[key] = target
            return target

    async def play(self, scenario: Scenario) -> CaseResult:
        """One case, judged by the baseline (and shown to ``progress``)."""
        result = await self._play(scenario)
        judge(result, self.baseline, strict=self.run_options.strict,
              require_all=self.run_options.require_all)
        self.results.append(result)
        if self.progress is not None:
            self.progress(self.spec, len(self.results), self.total,
                          sum(not r.expected for r in self.results))
        return result

    async def _play(self, scenario: Scenario) -> CaseResult:
        missing = scenario.needs - self.capabilities
        if missing:
            return CaseResult(scenario.id, self.spec, Verdict.UNSUPPORTED,
                              unsupported(self.spec, missing), missing=sorted_names(missing))
        key = _group(scenario)
        try:
            target = await self._server(key)
        except TargetError as error:
            return CaseResult(scenario.id, self.spec, Verdict.ERROR, str(error))
        try:
            return await self._play_on(target, key, scenario)
        finally:
            if key[:1] == ("--gearspec-fresh",):
                await self.release(key)
            elif key and len(self.servers) > KEPT_SERVERS + 1:
                oldest = next(k for k in self.servers if k and k != key)
                await self.release(oldest)

    async def _play_on(self, target: Target, key: tuple[str, ...],
                       scenario: Scenario) -> CaseResult:
        lock = self.locks[key]
        if not target.alive():  # died after the previous case was judged
            async with lock:
                if not target.alive() and not await self._revive(target, key):
                    return CaseResult(scenario.id, self.spec, Verdict.ERROR, self.broken[key])
        result, outcome = await self._engine(target, scenario)
        # A case that did not pass may have killed the server: give a dying process a
        # moment, so the crash is reported rather than a close.
        settle = 0.0 if result.verdict == Verdict.PASS else CRASH_SETTLE
        alive = target.alive() if not settle else await asyncio.to_thread(target.alive, settle)
        if not alive:
            async with lock:
                if not target.alive():
                    self.last_death = how_it_ended(target.exit_status())
                    result.verdict = Verdict.ERROR
                    result.message = (f"the server died during the case ({self.last_death})"
                                      f"{'; ' + result.message if result.message else ''}")
                    result.log = target.log_text().splitlines()[-20:]
                    await self._revive(target, key)
        # After the verdict is final: the capture takes no part in it.
        if outcome is not None and self.run_options.pcap_dir is not None:
            path = pcap_path(self.run_options.pcap_dir, self.spec, scenario.id)
            if await self._capture(path, outcome):
                result.capture = str(path)
        return result

    async def _revive(self, target: Target, key: tuple[str, ...]) -> bool:
        """Start a dead server again.  One that will not start (its persistent queue
        refused at start-up, say) breaks its group: the group's later cases are
        ERRORs that say why, and the run goes on."""
        try:
            await asyncio.to_thread(target.restart)
            return True
        except TargetError as error:
            self.broken[key] = f"the server did not start again: {error}"
            self.servers.pop(key, None)
            if target is not self.adopted:  # an adopted server is its owner's to stop
                await asyncio.to_thread(target.stop)
            return False

    async def _engine(self, target: Target, scenario: Scenario
                      ) -> tuple[CaseResult, Outcome | None]:
        """The case's result, and the engine's outcome (None after a harness error)."""
        log_before = len(target.log_text().splitlines())
        self.cases += 1
        tag = f"g{self.run_id}{self.cases:x}_"

        async def control(action: str) -> None:
            await asyncio.to_thread(target.kill if action == "kill" else target.restart)

        started = time.monotonic()
        factor = self.run_options.timeout_factor
        try:
            outcome = await run_scenario(
                scenario, target.network(factor), tag=tag, timeout_factor=factor,
                has_echo="echo" in target.capabilities, control=control,
                record_raw=self.run_options.pcap_dir is not None)
        except TargetError as error:  # the case's 'target restart' found no server
            return CaseResult(scenario.id, self.spec, Verdict.ERROR,
                              f"the server did not start again: {error}",
                              duration=time.monotonic() - started), None
        except Exception as error:  # a harness bug must not stop the run
            return CaseResult(scenario.id, self.spec, Verdict.ERROR,
                              f"harness error: {type(error).__name__}: {error}",
                              duration=time.monotonic() - started), None
        log = outcome.log or target.log_text().splitlines()[log_before:][-50:]
        return CaseResult(scenario.id, self.spec, outcome.verdict, outcome.message,
                          outcome.step, round(time.monotonic() - started, 4), outcome.entries,
                          log, failure=outcome.failure, missing=outcome.missing), outcome

    async def _capture(self, path: Path, outcome: Outcome) -> bool:
        """Write the case's pcap.  In a thread, so the cases still running keep their
        event loop (and their timeouts); a capture that cannot be written is a warning,
        never a verdict."""
        assert outcome.raw is not None
        return await write_capture(path, outcome.raw, outcome.started)

    async def play_all(self, scenarios: list[Scenario]) -> list[CaseResult]:
        """Every case of this target's kind (library cases for a library, server cases
        for a server), group by group (the main server's first), each group's shared
        cases at once and then the ones that need the server alone; each group's
        server is stopped when its cases are done."""
        scenarios = [s for s in scenarios if s.mode == mode_of(self.spec)]
        groups: dict[tuple[str, ...], list[Scenario]] = {(): []}
        for scenario in scenarios:
            groups.setdefault(_group(scenario), []).append(scenario)
        limit = asyncio.Semaphore(max(1, self.run_options.jobs))
        for key, cases in groups.items():
            alone = [s for s in cases if s.alone]
            shared = [s for s in cases if not s.alone]
            if self.servers.get(()) is not None and not self.servers[()].concurrent:
                alone, shared = cases, []

            async def one(scenario: Scenario) -> None:
                async with limit:
                    await self.play(scenario)

            await asyncio.gather(*(one(s) for s in shared))
            for scenario in alone:
                await self.play(scenario)
            if key:
                await self.release(key)
        order = {s.id: i for i, s in enumerate(scenarios)}
        return sorted(self.results, key=lambda r: order[r.scenario])


def new_run(scenarios: list[Scenario], options: RunOptions) -> RunResult:
    """An empty run of these scenarios: what every results file says before its cases."""
    return RunResult(
        started=datetime.now(UTC).isoformat(timespec="seconds"), gearspec_version=__version__,
        options={"jobs": options.jobs, "timeout_factor": options.timeout_factor,
                 "strict": options.strict, "require_all": options.require_all,
                 "select": options.select, "exclude": options.exclude,
                 "run_id": secrets.token_hex(2), "shard": options.shard,
                 "catalog": options.catalog},
        scenarios=[ScenarioInfo(s.id, s.title, s.level, s.source, s.requirement, s.sections,
                                s.file, s.line, [t.source for t in s.steps]) for s in scenarios],
        coverage=coverage([s for s in scenarios if s.mode == "server"]))


def target_run(spec: str, target_options: list[str], result: RunResult, options: RunOptions,
               known: set[str] | None = None, progress: Progress | None = None,
               total: int = 0) -> TargetRun:
    """A TargetRun for one target of ``result``, judged by its baseline (checked for
    entries naming no scenario of ``known``, when given)."""
    directory = Path(options.baseline_dir) if options.baseline_dir else BASELINE_DIR
    baseline = baseline_for(options.baselines.get(spec) or baseline_name(spec), directory)
    if known is not None:
        check_ids(baseline, known)
    return TargetRun(spec, target_options, options, baseline, result.options["run_id"],
                     progress, total)


async def run(scenarios: list[Scenario], targets: list[tuple[str, list[str]]],
              options: RunOptions, progress: Progress | None = None,
              catalog_ids: set[str] | None = None, check_baselines: bool = True
              ) -> RunResult:
    """Play ``scenarios`` against every target; targets one after another.
    ``catalog_ids`` (all ids, when ``scenarios`` is a selection) lets baselines be
    checked for entries that name no scenario at all; scenario files from elsewhere
    (``check_baselines=False``) are judged by the baselines without checking them."""
    result = new_run(scenarios, options)
    known = (catalog_ids or {s.id for s in scenarios}) if check_baselines else None
    for spec, target_options in targets:
        one = target_run(spec, target_options, result, options, known, progress,
                         sum(s.mode == mode_of(spec) for s in scenarios))
        try:
            result.targets.append(await one.open())
            result.results.extend(await one.play_all(scenarios))
        finally:
            await one.close()
    result.finished = datetime.now(UTC).isoformat(timespec="seconds")
    return result
