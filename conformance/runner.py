"""The runner: scenarios × targets → a ``RunResult``.

For each target it starts the server, then plays the cases that can share it
concurrently (``jobs`` at a time; every case uses its own run-unique names, so
cases never see each other's jobs).  Cases that need server options get their
own instance per option set; cases that restart or kill the server, or say
``exclusive``, run alone; a case that says ``fresh`` gets a server of its own.
After every case the runner checks that the server is still alive: if it
died, the case is an ERROR with the server's last log lines, and the server
is restarted for the next case.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from conformance import services
from conformance.baselines import BASELINE_DIR, Baseline, baseline_for, check_ids, judge
from conformance.coverage import coverage
from conformance.engine import Outcome, run_scenario
from conformance.scenario import Scenario, TargetAction
from conformance.specs import baseline_name, parse_target
from conformance.targets import CRASH_SETTLE, Target, TargetError
from conformance.tlsgen import CertificateSet
from reference_server import __version__
from results import CaseResult, RunResult, ScenarioInfo, TargetInfo, Verdict


@dataclass
class RunOptions:
    jobs: int = (os.cpu_count() or 2) * 4
    timeout_factor: float = 1.0
    strict: bool = False
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


def select(scenarios: list[Scenario], include: list[str], exclude: list[str]) -> list[Scenario]:
    chosen = [s for s in scenarios
              if (not include or any(fnmatch.fnmatchcase(s.id, g) for g in include))
              and not any(fnmatch.fnmatchcase(s.id, g) for g in exclude)]
    return chosen


def unsupported(spec: str, missing: set[str]) -> str:
    """Why a case cannot run here; for a helper service, what installs it."""
    lacks = sorted(missing - services.MISSING.keys())
    reasons = [f"{spec} lacks {', '.join(lacks)}"] if lacks else []
    return "; ".join(reasons + [services.MISSING[need] for need in sorted(
        missing & services.MISSING.keys())])


def pcap_path(directory: str | Path, spec: str, scenario_id: str) -> Path:
    """Where ``--pcap-dir`` puts a case's capture: ``DIR/<target>/<id>.pcap``, with the
    id's ``/`` as ``__`` and anything but letters, digits, ``.``, ``_`` and ``-`` in the
    target spec as ``_`` (``tcp://10.0.0.5:4730`` → ``tcp___10.0.0.5_4730``)."""
    target = re.sub(r"[^A-Za-z0-9._-]", "_", spec) or "_"
    return Path(directory) / target / (scenario_id.replace("/", "__") + ".pcap")


class TLSSetup:
    """TLS for one target's servers: a server we start gets ``--ssl`` with a
    throwaway CA and certificate (made once, in a temporary folder removed at
    the end); clients trust that CA, or the one given (``--tls-ca``)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.folder: Path | None = None
        self.certificates: CertificateSet | None = None

    def apply(self, target: Target) -> None:
        from conformance.tlsgen import client_context, make_certificates

        ca, cert, key = self.options.tls_ca, self.options.tls_cert, self.options.tls_key
        if self.options.tls and not target.name.startswith("tls://"):
            if self.certificates is None:
                self.folder = Path(tempfile.mkdtemp(prefix="gearspec-tls-"))
                self.certificates = make_certificates(self.folder)
            made = self.certificates
            extra = target.tls_options(made.ca, made.certificate, made.key)
            if extra is None:
                raise TargetError(f"{target.name}: this server has no TLS; give a "
                                  "tls://HOST:PORT target for one that already speaks it")
            target.options = [*target.options, *extra]
            # A client certificate from the same CA: gearmand and ours ask for none,
            # geard requires one.
            ca, cert, key = ca or made.ca, cert or made.client, key or made.client_key
        target.tls = client_context(ca, cert, key)
        target.capabilities = target.capabilities | {"tls"}

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _write_pcap(path: Path, outcome: Outcome) -> None:
    from conformance.capture.pcapwrite import write_pcap  # scapy only loads when asked

    assert outcome.raw is not None
    write_pcap(path, outcome.raw, started=outcome.started)


Progress = Callable[[str, int, int, int], None]  # target, done, total, unexpected


def terminal_progress(target: str, done: int, total: int, unexpected: int) -> None:
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\r{target}: {done}/{total} cases, {unexpected} unexpected", end=end,
              file=sys.stderr, flush=True)


class _TargetRun:
    """All cases against one target spec."""

    def __init__(self, spec: str, options: list[str], scenarios: list[Scenario],
                 run_options: RunOptions, baseline: Baseline, run_id: str,
                 progress: Progress | None) -> None:
        self.spec = spec
        self.options = options
        self.scenarios = scenarios
        self.run_options = run_options
        self.baseline = baseline
        self.run_id = run_id
        self.progress = progress
        self.results: list[CaseResult] = []
        self.index = {s.id: i for i, s in enumerate(scenarios)}

    def _record(self, result: CaseResult) -> None:
        judge(result, self.baseline, strict=self.run_options.strict)
        self.results.append(result)
        if self.progress is not None:
            self.progress(self.spec, len(self.results), len(self.scenarios),
                          sum(not r.expected for r in self.results))

    async def run(self) -> TargetInfo:
        tls = TLSSetup(self.run_options) \
            if self.run_options.tls or self.spec.startswith("tls://") else None
        try:
            return await self._run(tls)
        finally:
            if tls is not None:
                tls.close()

    def _target(self, tls: TLSSetup | None, extra: list[str] | None = None) -> Target:
        target = parse_target(self.spec, [*self.options, *(extra or [])])
        if tls is not None:
            tls.apply(target)
        return target

    async def _run(self, tls: TLSSetup | None) -> TargetInfo:
        main = self._target(tls)
        await asyncio.to_thread(main.start)
        info = TargetInfo(self.spec, main.name, await asyncio.to_thread(main.version),
                          list(self.options))
        # Cases grouped by the server they need: the main one, one per set of server
        # options, one per ``fresh`` case.
        groups: dict[tuple[str, ...], list[Scenario]] = defaultdict(list)
        can = main.capabilities | services.available()
        for scenario in self.scenarios:
            missing = scenario.needs - can
            if missing:
                self._record(CaseResult(scenario.id, self.spec, Verdict.UNSUPPORTED,
                                        unsupported(self.spec, missing)))
            elif scenario.fresh:
                groups[("--gearspec-fresh", scenario.id, *scenario.server_options)].append(
                    scenario)
            else:
                groups[tuple(scenario.server_options)].append(scenario)
        try:
            await self._play_group(main, groups.pop((), []))
        finally:
            await asyncio.to_thread(main.stop)
        for key, cases in groups.items():
            extra = list(key[2:]) if key[:1] == ("--gearspec-fresh",) else list(key)
            target = self._target(tls, extra)
            try:
                await asyncio.to_thread(target.start)
            except TargetError as error:
                for scenario in cases:
                    self._record(CaseResult(scenario.id, self.spec, Verdict.ERROR,
                                            f"could not start with {extra}: {error}"))
                continue
            try:
                await self._play_group(target, cases)
            finally:
                await asyncio.to_thread(target.stop)
        return info

    async def _play_group(self, target: Target, scenarios: list[Scenario]) -> None:
        """The cases that can share the server at once, then the others one by one."""
        alone = [s for s in scenarios
                 if s.exclusive or any(isinstance(t, TargetAction) for t in s.steps)]
        await self._play_all(target, [s for s in scenarios if s not in alone])
        for scenario in alone:
            await self._play_all(target, [scenario])

    async def _play_all(self, target: Target, scenarios: list[Scenario]) -> None:
        limit = asyncio.Semaphore(max(1, self.run_options.jobs))
        restart_lock = asyncio.Lock()

        async def one(scenario: Scenario) -> None:
            async with limit:
                if not target.alive():  # died after the previous case was judged
                    async with restart_lock:
                        if not target.alive():
                            await asyncio.to_thread(target.restart)
                result, outcome = await self._play(target, scenario)
                # A case that did not pass may have killed the server: give a dying
                # process a moment, so the crash is reported rather than a close.
                settle = 0.0 if result.verdict == Verdict.PASS else CRASH_SETTLE
                if not await asyncio.to_thread(target.alive, settle):
                    async with restart_lock:
                        if not target.alive():
                            result.verdict = Verdict.ERROR
                            result.message = (f"the server died during the case"
                                              f"{'; ' + result.message if result.message else ''}")
                            result.log = target.log_text().splitlines()[-20:]
                            await asyncio.to_thread(target.restart)
                # After the verdict is final: the capture takes no part in it.
                if outcome is not None and self.run_options.pcap_dir is not None:
                    await self._capture(pcap_path(self.run_options.pcap_dir, self.spec,
                                                  scenario.id), outcome)
                self._record(result)

        await asyncio.gather(*(one(s) for s in scenarios))

    async def _play(self, target: Target, scenario: Scenario
                    ) -> tuple[CaseResult, Outcome | None]:
        """The case's result, and the engine's outcome (None after a harness error)."""
        log_before = len(target.log_text().splitlines())
        tag = f"g{self.run_id}{self.index[scenario.id]:x}_"

        async def control(action: str) -> None:
            if action == "kill":
                await asyncio.to_thread(target.kill)
            else:
                await asyncio.to_thread(target.restart)

        started = time.monotonic()
        try:
            outcome = await run_scenario(
                scenario, target.address, tag=tag, timeout_factor=self.run_options.timeout_factor,
                has_echo="echo" in target.capabilities, target_control=control,
                record_raw=self.run_options.pcap_dir is not None, tls=target.tls,
                http_port=target.http_port)
        except Exception as error:  # a harness bug must not stop the run
            return CaseResult(scenario.id, self.spec, Verdict.ERROR,
                              f"harness error: {type(error).__name__}: {error}",
                              duration=time.monotonic() - started), None
        log = target.log_text().splitlines()[log_before:][-50:]
        return CaseResult(scenario.id, self.spec, outcome.verdict, outcome.message, outcome.step,
                          round(time.monotonic() - started, 4), outcome.entries, log), outcome

    async def _capture(self, path: Path, outcome: Outcome) -> None:
        """Write the case's pcap.  In a thread, so the cases still running keep their
        event loop (and their timeouts); a capture that cannot be written is a warning,
        never a verdict."""
        try:
            await asyncio.to_thread(_write_pcap, path, outcome)
        except Exception as error:
            print(f"warning: cannot write {path}: {type(error).__name__}: {error}",
                  file=sys.stderr)


async def run(scenarios: list[Scenario], targets: list[tuple[str, list[str]]],
              options: RunOptions, progress: Progress | None = None,
              catalog_ids: set[str] | None = None, check_baselines: bool = True
              ) -> RunResult:
    """Play ``scenarios`` against every target; targets one after another.
    ``catalog_ids`` (all ids, when ``scenarios`` is a selection) lets baselines be
    checked for entries that name no scenario at all; scenario files from elsewhere
    (``check_baselines=False``) are judged by the baselines without checking them."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    run_id = secrets.token_hex(2)
    result = RunResult(started=started, gearspec_version=__version__,
                       options={"jobs": options.jobs, "timeout_factor": options.timeout_factor,
                                "strict": options.strict, "select": options.select,
                                "exclude": options.exclude, "run_id": run_id})
    result.scenarios = [ScenarioInfo(s.id, s.title, s.level, s.source, s.requirement,
                                     s.sections, s.file, s.line, [t.source for t in s.steps])
                        for s in scenarios]
    result.coverage = coverage(scenarios)
    known = catalog_ids or {s.id for s in scenarios}
    directory = Path(options.baseline_dir) if options.baseline_dir else BASELINE_DIR
    for spec, target_options in targets:
        baseline = baseline_for(baseline_name(spec), directory)
        if check_baselines:
            check_ids(baseline, known)
        target_run = _TargetRun(spec, target_options, scenarios, options, baseline, run_id,
                                progress)
        result.targets.append(await target_run.run())
        order = {s.id: i for i, s in enumerate(scenarios)}
        result.results.extend(sorted(target_run.results, key=lambda r: order[r.scenario]))
    result.finished = datetime.now(UTC).isoformat(timespec="seconds")
    return result
