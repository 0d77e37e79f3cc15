"""Scenarios back to YAML: how a fuzz finding becomes a file ``gearspec run`` replays.

``dump(scenarios, topic)`` writes the format ``scenario.Loader`` reads (and
``load_file`` of the result gives the same scenarios back).  Bytes are written
as YAML double-quoted text (Latin-1, with escapes) when every byte is printable
or a common escape, else as ``{hex: ...}``.
"""

from __future__ import annotations

from typing import Any

import yaml

from conformance.scenario import (
    ExpectClosed,
    ExpectHTTP,
    ExpectLines,
    ExpectList,
    ExpectNothing,
    ExpectOneOf,
    ExpectPacket,
    ExpectRefused,
    ExpectSilence,
    ExpectStalled,
    Finish,
    Hangup,
    HTTPRequest,
    Matcher,
    Scenario,
    SendPacket,
    SendRaw,
    SendText,
    Sleep,
    Step,
    TargetAction,
    Value,
)
from reference_server.protocol import PacketType


def _value(value: Value) -> Any:
    if value.raw is not None:
        text = value.raw.decode("latin-1")
        if all(c.isprintable() or c in "\0\t\r\n" for c in text):
            return text
        return {"hex": value.raw.hex(" ")}
    if value.times != 1:
        return {"repeat": value.text, "times": value.times}
    return value.text


def _matcher(matcher: Matcher) -> Any:
    if matcher.any:
        return {"any": True}
    if matcher.pattern is not None:
        spec: dict[str, Any] = {"match": matcher.pattern}
        if matcher.capture:
            spec["capture"] = matcher.capture
        return spec
    assert matcher.value is not None
    return _value(matcher.value)


def _step(step: Step) -> Any:
    """A step as the loader reads it, with its ``within`` and ``note`` if any."""
    written = _main(step)
    modifiers: dict[str, Any] = {}
    if getattr(step, "within", None) is not None:
        modifiers["within"] = step.within  # type: ignore[attr-defined]
    if step.note:
        modifiers["note"] = step.note
    if not modifiers:
        return written
    if isinstance(written, str):
        written = {written: None}
    return {**written, **modifiers}


def _main(step: Step) -> Any:
    c = step.conn
    if isinstance(step, SendPacket):
        key = f"{c} send {step.type.name}"
        fields = {n: _value(v) for n, v in step.fields.items()}
        out: dict[str, Any] = {key: fields or None}
        if step.magic != b"\0REQ":
            out["magic"] = "RES"
        return out if len(out) > 1 or fields else key
    if isinstance(step, SendRaw):
        if step.data is not None:
            return {f"{c} send-raw": _value(step.data)}
        spec: dict[str, Any] = {"magic": (step.magic or b"").decode("latin-1"),
                                "type": step.packet_type}
        if step.length is not None:
            spec["length"] = step.length
        if step.payload is not None:
            spec["payload"] = _value(step.payload)
        return {f"{c} send-raw": spec}
    if isinstance(step, SendText):
        return {f"{c} {'send-line' if step.newline else 'send-text'}": _value(step.text)}
    if isinstance(step, ExpectPacket):
        key = f"{c} expect {step.type.name}"
        if not step.fields:
            return key
        return {key: {n: _matcher(m) for n, m in step.fields.items()}}
    if isinstance(step, ExpectLines):
        if len(step.lines) == 1:
            return {f"{c} expect-line": _matcher(step.lines[0])}
        return {f"{c} expect-lines": [_matcher(m) for m in step.lines]}
    if isinstance(step, ExpectList):
        spec = {"rows": [_matcher(m) for m in step.rows],
                "filter": [_value(v) for v in step.filter]}
        if step.ordered:
            spec["ordered"] = True
        return {f"{c} expect-list": spec}
    if isinstance(step, ExpectOneOf):
        alternatives = []
        for alternative in step.alternatives:
            written: dict[str, Any] = {"verdict": alternative.verdict}
            if alternative.note:
                written["note"] = alternative.note
            written["expect"] = [_step(s) for s in alternative.steps]
            alternatives.append(written)
        return {f"{c} expect-one-of": alternatives}
    if isinstance(step, ExpectClosed):
        return f"{c} expect-closed"
    if isinstance(step, ExpectNothing):
        return f"{c} expect-nothing"
    if isinstance(step, ExpectStalled):
        return f"{c} expect-stalled"
    if isinstance(step, ExpectSilence):
        return {f"{c} expect-silence": step.seconds}
    if isinstance(step, Hangup):
        return f"{c} hangup"
    if isinstance(step, Finish):
        return f"{c} finish"
    if isinstance(step, ExpectRefused):
        return f"{c} expect-refused"
    if isinstance(step, HTTPRequest):
        request: dict[str, Any] = {"method": step.method, "path": _value(step.path)}
        if step.headers:
            request["headers"] = [_value(h) for h in step.headers]
        if step.body.text or step.body.raw:
            request["body"] = _value(step.body)
        if step.version != "HTTP/1.0":
            request["version"] = step.version
        return {f"{c} http-request": request}
    if isinstance(step, ExpectHTTP):
        response: dict[str, Any] = {"status": step.status}
        if step.headers:
            response["headers"] = {k: _matcher(m) for k, m in step.headers.items()}
        if step.body is not None:
            response["body"] = _matcher(step.body)
        return {f"{c} expect-http": response}
    if isinstance(step, Sleep):
        return {"sleep": step.seconds}
    if isinstance(step, TargetAction):
        return f"target {step.action}"
    raise ValueError(f"cannot write {type(step).__name__} steps")


def dump(scenarios: list[Scenario], topic: str) -> str:
    cases = []
    for scenario in scenarios:
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
        case["steps"] = [_step(step) for step in scenario.steps]
        cases.append(case)
    return yaml.safe_dump({"topic": topic, "scenarios": cases}, sort_keys=False,
                          default_flow_style=None, width=100, allow_unicode=False)
