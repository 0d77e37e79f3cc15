"""Scenarios written back to YAML load as the same scenarios."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from conformance.loader import load_catalog, load_file
from conformance.match import to_bytes
from conformance.scenario import Matcher, Step, Value
from conformance.verbs.alternatives import Alternative
from conformance.writer import dump


def _plain(step: Step) -> Step:
    """A step with its values resolved to bytes: text and hex that mean the same bytes
    compare equal."""
    def norm(value: object) -> object:
        if isinstance(value, Value) and value.raw is not None:
            return Value(text=value.raw.decode("latin-1"))
        if isinstance(value, Value):
            return Value(text=to_bytes(value.text).decode("latin-1"), times=value.times)
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, Matcher):
            return dataclasses.replace(value, value=norm(value.value))
        if isinstance(value, Alternative):
            return dataclasses.replace(value, line=0, steps=[_plain(s) for s in value.steps])
        if isinstance(value, Step):
            return _plain(value)
        return value

    changes = {f.name: norm(getattr(step, f.name)) for f in dataclasses.fields(step)
               if f.name not in ("line", "source")}
    return dataclasses.replace(step, line=0, **changes)


def test_catalog_round_trips_through_the_writer(tmp_path: Path) -> None:
    cases = load_catalog()
    kinds = {type(s).__name__ for c in cases for s in c.all_steps()}
    assert {"ExpectList", "ExpectOneOf", "SendRaw", "TargetAction"} <= kinds
    for scenario in cases:
        path = tmp_path / f"{scenario.id.replace('/', '_')}.yaml"
        path.write_text(dump([scenario], "round trip"))
        [back] = load_file(path, tmp_path)
        assert [_plain(s) for s in back.steps] == [_plain(s) for s in scenario.steps], \
            scenario.id
        assert (back.level, back.ignore, back.server_options, back.sections, back.exclusive,
                back.fresh, back.timeout) == (
            scenario.level, scenario.ignore, scenario.server_options, scenario.sections,
            scenario.exclusive, scenario.fresh, scenario.timeout)
