"""The conformance catalog as pytest items (for JUnit through pytest, or IDEs).

    pytest --gearspec-target=gearmand [--gearspec-select='submit/*'] --junitxml=out.xml

Each scenario × target becomes one item, played by the same engine as
``gearspec run`` and judged with the same baselines: a FAIL or ERROR not in
the baseline fails the item, a baselined deviation is an expected failure
(xfail), UNSUPPORTED is a skip.  Without ``--gearspec-target`` this plugin
adds nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conformance.baselines import BASELINE_DIR, baseline_for, judge
from conformance.engine import run_scenario
from conformance.runner import select
from conformance.scenario import Scenario, load_catalog
from conformance.specs import baseline_name, parse_target
from conformance.targets import Target
from results import CaseResult, Verdict


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gearspec", "Gearman conformance scenarios")
    group.addoption("--gearspec-target", action="append", default=[], metavar="SPEC",
                    help="collect the scenario catalog against this target (repeatable)")
    group.addoption("--gearspec-select", action="append", default=[], metavar="GLOB",
                    help="only scenario ids matching this glob (repeatable)")
    group.addoption("--gearspec-timeout-factor", type=float, default=1.0)


class _Targets:
    """Targets started on first use and stopped at the end of the session."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, tuple[str, ...]], Target] = {}

    def get(self, spec: str, options: tuple[str, ...]) -> Target:
        key = (spec, options)
        if key not in self.started:
            target = parse_target(spec, list(options))
            target.start()
            self.started[key] = target
        return self.started[key]

    def stop_all(self) -> None:
        for target in self.started.values():
            target.stop()


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, spec: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.spec = spec
        self.result: CaseResult | None = None

    def runtest(self) -> None:
        config = self.config
        targets: _Targets = config.stash[_TARGETS]
        probe = parse_target(self.spec)
        missing = self.scenario.needs - probe.capabilities
        if missing:
            pytest.skip(f"{self.spec} lacks {', '.join(sorted(missing))}")
        target = targets.get(self.spec, tuple(self.scenario.server_options))
        outcome = asyncio.run(run_scenario(
            self.scenario, target.address, tag=f"p{abs(hash(self.nodeid)) % 0xFFFF:x}_",
            timeout_factor=config.getoption("--gearspec-timeout-factor"),
            has_echo="echo" in target.capabilities))
        result = CaseResult(self.scenario.id, self.spec, outcome.verdict, outcome.message,
                            outcome.step, transcript=outcome.entries)
        judge(result, baseline_for(baseline_name(self.spec), BASELINE_DIR), strict=False)
        self.result = result
        if result.baseline is not None and result.expected:
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
                     result.message, "", "transcript:"]
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


_TARGETS = pytest.StashKey[_Targets]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TARGETS] = _Targets()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _TARGETS in config.stash:
        config.stash[_TARGETS].stop_all()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    specs = config.getoption("--gearspec-target")
    if not specs:
        return
    scenarios = select(load_catalog(), config.getoption("--gearspec-select"), [])
    for spec in specs:
        for scenario in scenarios:
            items.append(ScenarioItem.from_parent(session, name=f"{scenario.id}[{spec}]",
                                                  scenario=scenario, spec=spec))
