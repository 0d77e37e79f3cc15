"""The conformance catalog as pytest items (for JUnit through pytest, or IDEs).

    pytest --gearspec-target=gearmand [--gearspec-select='submit/*'] --junitxml=out.xml

Each scenario × target becomes one item, played by the runner ``gearspec run``
uses (``conformance.runner.TargetRun``: servers started per option set and
per fresh case, crash detection and restart, helper services, TLS,
capabilities) and judged by the same baselines: a FAIL or ERROR not in the
baseline fails the item, a baselined deviation is an expected failure
(xfail), UNSUPPORTED is a skip that says which capability was missing.  Every
option of ``gearspec run`` that concerns the runner is here with a
``--gearspec-`` prefix (``--gearspec-tls``, ``--gearspec-jobs``,
``--gearspec-capabilities``...).  With ``--gearspec-jobs`` above 1 (the
default, as for ``gearspec run``) a target's items are played together, as
``gearspec run`` plays them, when its first item runs; each item then
reports its own case.  Under pytest-xdist, or with ``--gearspec-jobs=1``, each
item plays its case when it runs.  ``--gearspec-json FILE`` writes the
results as a run JSON.  Without ``--gearspec-target`` this plugin adds
nothing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import RUNNER_OPTIONS, run_options
from conformance.loader import load_catalog
from conformance.runner import RunOptions, TargetRun, new_run, select, target_run
from conformance.scenario import Scenario
from reference_server.usage import UsageError
from results import CaseResult, RunResult, Verdict


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gearspec", "Gearman conformance scenarios")
    group.addoption("--gearspec-target", action="append", default=[], metavar="SPEC",
                    help="collect the scenario catalog against this target (repeatable)")
    for name, keywords in RUNNER_OPTIONS.items():
        group.addoption(f"--gearspec-{name}", **keywords)
    group.addoption("--gearspec-json", type=Path, default=None, metavar="FILE",
                    help="write the results as a gearspec run JSON")


class Session:
    """The runs of one pytest session: one event loop, one TargetRun per target."""

    def __init__(self, config: pytest.Config, scenarios: list[Scenario], specs: list[str]) -> None:
        self.options: RunOptions = run_options(
            lambda name: config.getoption(f"--gearspec-{name}"), specs)
        self.scenarios = scenarios  # in id order, for the JSON
        self.catalog_ids = {s.id for s in load_catalog()}
        self.result: RunResult = new_run(scenarios, self.options)
        self.loop = asyncio.new_event_loop()
        self.runs: dict[str, TargetRun] = {}
        self.played: dict[tuple[str, str], CaseResult] = {}
        self.batch = self.options.jobs > 1 and "PYTEST_XDIST_WORKER" not in os.environ

    def run_for(self, spec: str, batch: list[Scenario]) -> TargetRun:
        """The target's run, opened on first use; in batch mode, with ``batch`` (the
        cases of this session's items for it) played at once."""
        if spec not in self.runs:
            run = target_run(spec, [], self.result, self.options, self.catalog_ids,
                             total=len(batch))
            self.runs[spec] = run
            self.result.targets.append(self.loop.run_until_complete(run.open()))
            if self.batch:
                for result in self.loop.run_until_complete(run.play_all(batch)):
                    self.played[(spec, result.scenario)] = result
        return self.runs[spec]

    def play(self, spec: str, scenario: Scenario, items: list[pytest.Item]) -> CaseResult:
        batch = [i.scenario for i in items if isinstance(i, ScenarioItem) and i.spec == spec]
        run = self.run_for(spec, batch)
        result = self.played.get((spec, scenario.id))
        if result is None:
            result = self.loop.run_until_complete(run.play(scenario))
            self.played[(spec, scenario.id)] = result
        return result

    def close(self, json_path: Path | None) -> None:
        for run in self.runs.values():
            self.loop.run_until_complete(run.close())
        self.loop.close()
        if json_path is not None:
            order = {s.id: i for i, s in enumerate(self.scenarios)}
            self.result.results = sorted(self.played.values(),
                                         key=lambda r: (r.target, order[r.scenario]))
            self.result.write(json_path)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, spec: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.spec = spec
        self.result: CaseResult | None = None

    def runtest(self) -> None:
        result = self.result = self.config.stash[_SESSION].play(self.spec, self.scenario,
                                                                self.session.items)
        self.user_properties.append(("verdict", result.verdict.value))
        if result.baseline is not None and result.expected and \
                result.verdict is not Verdict.UNSUPPORTED:
            pytest.xfail(f"baseline: {result.baseline}")
        if not result.expected:
            raise ScenarioFailure(result)
        if result.verdict is Verdict.UNSUPPORTED:
            pytest.skip(result.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailure):
            result = excinfo.value.result
            lines = [f"{result.scenario} on {result.target}: {result.verdict.value}",
                     result.message]
            if result.failure is not None:
                lines += [f"  step:     {result.failure.step_text}",
                          f"  expected: {result.failure.expected}",
                          f"  actual:   {result.failure.actual}"]
            lines += ["", "transcript:"]
            lines += [f"  {e.t:8.4f} {e.conn:>8} {e.direction:5} {e.summary}"
                      for e in result.transcript if not e.sync]
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int, str]:
        return self.scenario.file, self.scenario.line - 1, f"{self.scenario.id} [{self.spec}]"


class ScenarioFailure(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.message)
        self.result = result


_SESSION = pytest.StashKey[Session]()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION in config.stash:
        config.stash[_SESSION].close(config.getoption("--gearspec-json"))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    specs = config.getoption("--gearspec-target")
    if not specs:
        return
    scenarios = select(load_catalog(), config.getoption("--gearspec-select"),
                       config.getoption("--gearspec-exclude"))
    try:
        config.stash[_SESSION] = Session(config, scenarios, specs)
    except UsageError as error:  # a bad option, said in one line
        raise pytest.UsageError(str(error)) from None
    for spec in specs:
        for scenario in scenarios:
            items.append(ScenarioItem.from_parent(session, name=f"{scenario.id}[{spec}]",
                                                  scenario=scenario, spec=spec))
