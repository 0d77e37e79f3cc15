"""Baselines: per-target lists of known deviations, each with its reason.

``conformance/baselines/<target>.yaml``::

    target: gearmand
    cases:
      framing/arguments/submit-without-nul: >
        gearmand 1.1.20 stalls the connection (it searches past the packet for
        the missing NUL).

A baselined case is expected to deviate (FAIL, ERROR or NON-STRICT); if it
passes, that is reported as unexpected so the baseline stays honest.

A deviation that only some runs show (a race inside a library, between its own
threads, that no harness can order) is listed with ``intermittent: true``, and
then passing is expected too; the report still shows the entry and its reason::

      library/worker-faults/close-before-registration:
        intermittent: true
        reason: gear 0.16.0 lets a BrokenPipeError out of getJob when ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conformance.scenario import ScenarioError
from results import CaseResult, Verdict

BASELINE_DIR = Path(__file__).resolve().parent / "baselines"


@dataclass
class Baseline:
    target: str
    cases: dict[str, str] = field(default_factory=dict)  # scenario id -> reason
    lines: dict[str, int] = field(default_factory=dict)
    intermittent: set[str] = field(default_factory=set)  # deviates in some runs only
    path: str = ""


def load_baseline(path: Path) -> Baseline:
    try:
        node = yaml.compose(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ScenarioError(f"{path}:{mark.line + 1 if mark else 0}: yaml: "
                            f"{getattr(error, 'problem', error)}") from None
    if not isinstance(node, yaml.MappingNode):
        raise ScenarioError(f"{path}:1: file: expected 'target' and 'cases'")
    top = {k.value: v for k, v in node.value}
    if set(top) != {"target", "cases"} or not isinstance(top["cases"], yaml.MappingNode):
        raise ScenarioError(f"{path}:{node.start_mark.line + 1}: file: expected 'target' and "
                            "a mapping 'cases' (scenario id: reason)")
    baseline = Baseline(str(top["target"].value), path=str(path))
    for key, value in top["cases"].value:
        where = f"{path}:{key.start_mark.line + 1}: {key.value}"
        if isinstance(value, yaml.MappingNode):
            entry = {k.value: v for k, v in value.value}
            if set(entry) != {"intermittent", "reason"} or entry["intermittent"].value != "true":
                raise ScenarioError(f"{where}: an entry is a reason, or "
                                    "{intermittent: true, reason: ...}")
            baseline.intermittent.add(str(key.value))
            value = entry["reason"]
        if not isinstance(value, yaml.ScalarNode) or not str(value.value).strip():
            raise ScenarioError(f"{where}: each entry needs a reason")
        baseline.cases[str(key.value)] = " ".join(str(value.value).split())
        baseline.lines[str(key.value)] = key.start_mark.line + 1
    return baseline


def baseline_for(target: str, directory: Path = BASELINE_DIR) -> Baseline:
    path = directory / f"{target}.yaml"
    return load_baseline(path) if path.exists() else Baseline(target)


def check_ids(baseline: Baseline, known: set[str]) -> None:
    for case, line in baseline.lines.items():
        if case not in known:
            raise ScenarioError(f"{baseline.path}:{line}: {case}: no scenario has this id")


def judge(result: CaseResult, baseline: Baseline, *, strict: bool,
          require_all: bool = False) -> None:
    """Set ``expected`` (and ``baseline``) on a result.  With ``require_all`` a case
    the target could not play (UNSUPPORTED) is unexpected too."""
    deviates = result.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT)
    reason = baseline.cases.get(result.scenario)
    if reason is not None:
        result.baseline = reason
        if result.verdict is Verdict.UNSUPPORTED:  # not run here (a TLS case, say): no news
            result.expected = not require_all
            return
        result.expected = deviates or result.scenario in baseline.intermittent
        if not result.expected:
            result.message = (f"listed in the {baseline.target} baseline but now "
                              f"{result.verdict.value}: remove it from the baseline")
        return
    result.expected = not (result.verdict in (Verdict.FAIL, Verdict.ERROR)
                           or (strict and result.verdict is Verdict.NON_STRICT)
                           or (require_all and result.verdict is Verdict.UNSUPPORTED))
