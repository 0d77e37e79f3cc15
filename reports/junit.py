"""JUnit XML: one testsuite per target, one testcase per scenario.

A FAIL or ERROR that the target's baseline expects is reported as skipped
(with the baseline's reason), so CI dashboards show only what needs work;
an unexpected result is a failure (FAIL, NON-STRICT under --strict, a
baselined case that now passes, UNSUPPORTED under --require-all) or an error
(ERROR); a failure's text starts with what the step expected and what
arrived.  Each testsuite's properties count the cases not played per
missing capability (``unsupported.gearmand-options``...).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from results import CaseResult, RunResult, Verdict


def _case(suite: ET.Element, result: CaseResult) -> None:
    area = result.scenario.rsplit("/", 1)[0].replace("/", ".")
    case = ET.SubElement(suite, "testcase", name=result.scenario, classname=f"{result.target}."
                         f"{area}", time=f"{result.duration:.4f}")
    transcript = "\n".join(f"{e.t:9.4f} {e.conn:>8} {e.direction:5} {e.summary}"
                           for e in result.transcript if not e.sync)
    if not result.expected:
        tag = "error" if result.verdict is Verdict.ERROR else "failure"
        element = ET.SubElement(case, tag, message=result.message or result.verdict.value,
                                type=result.verdict.value)
        failure = result.failure
        side_by_side = f"step: {failure.step_text}\nexpected: {failure.expected}\n" \
            f"actual:   {failure.actual}\n\n" if failure is not None else ""
        element.text = side_by_side + transcript
    elif result.baseline is not None:
        ET.SubElement(case, "skipped", message=f"baseline: {result.baseline}")
    elif result.verdict is Verdict.UNSUPPORTED:
        ET.SubElement(case, "skipped", message=result.message or "unsupported")
    if result.log:
        ET.SubElement(case, "system-out").text = "\n".join(result.log)


def to_junit(run: RunResult) -> str:
    root = ET.Element("testsuites", name="gearspec")
    for target in run.targets:
        mine = [r for r in run.results if r.target == target.name]
        suite = ET.SubElement(
            root, "testsuite", name=target.name, tests=str(len(mine)),
            failures=str(sum(not r.expected and r.verdict is not Verdict.ERROR for r in mine)),
            errors=str(sum(not r.expected and r.verdict is Verdict.ERROR for r in mine)),
            skipped=str(sum(r.expected and (r.baseline is not None
                                            or r.verdict is Verdict.UNSUPPORTED) for r in mine)),
            time=f"{sum(r.duration for r in mine):.3f}", timestamp=run.started)
        properties = ET.SubElement(suite, "properties")
        for name, value in (("version", target.version or ""), ("kind", target.kind),
                            ("options", " ".join(target.options)),
                            ("capabilities", ",".join(target.capabilities))):
            ET.SubElement(properties, "property", name=name, value=value)
        # How many cases were not played, and for lack of what.
        for need, count in sorted(run.unsupported().get(target.name, {}).items()):
            ET.SubElement(properties, "property", name=f"unsupported.{need}", value=str(count))
        for result in mine:
            _case(suite, result)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def write_junit(run: RunResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_junit(run))
