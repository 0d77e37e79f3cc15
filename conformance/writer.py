"""Scenarios back to YAML: how a fuzz finding becomes a file ``gearspec run`` replays.

``dump(scenarios, topic)`` writes the format the loader reads (and loading the
result gives the same scenarios back).  Each step is written by its verb's
record (``conformance.verbs.step_data``); bytes are written as YAML
double-quoted text (Latin-1, with escapes) when every byte is printable or a
common escape, else as ``{hex: ...}``.
"""

from __future__ import annotations

from typing import Any

import yaml

from conformance.scenario import Scenario
from conformance.verbs import step_data
from reference_server.protocol import PacketType


def case_data(scenario: Scenario) -> dict[str, Any]:
    """A case as plain data, as a file holds it (``loader.load_case`` reads it back)."""
    case: dict[str, Any] = {
        "case": scenario.id.rsplit("/", 1)[-1], "title": scenario.title,
        "level": scenario.level, "source": scenario.source,
        "requirement": scenario.requirement}
    if scenario.sections:
        case["sections"] = scenario.sections
    if scenario.server_options:
        case["server-options"] = scenario.server_options
    if scenario.ignore != frozenset({PacketType.NOOP}):
        case["ignore"] = sorted(t.name for t in scenario.ignore)
    if scenario.exclusive:
        case["exclusive"] = True
    if scenario.fresh:
        case["fresh"] = True
    if scenario.tls is not None:
        case["tls"] = dict(scenario.tls)
    if scenario.timeout is not None:
        case["timeout"] = scenario.timeout
    if scenario.library is not None:
        case["library"] = scenario.library.data
    if scenario.budget is not None:
        case["budget"] = scenario.budget
    case["steps"] = [step_data(step) for step in scenario.steps]
    return case


def dump(scenarios: list[Scenario], topic: str) -> str:
    return yaml.safe_dump({"topic": topic, "scenarios": [case_data(s) for s in scenarios]},
                          sort_keys=False, default_flow_style=None, width=100,
                          allow_unicode=False)
