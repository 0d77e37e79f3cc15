"""Reading YAML nodes with their line numbers, so that every error says where.

Scenario files are composed to node trees (``yaml.compose``) rather than
loaded to Python values: each node keeps the line it came from, and a typo
becomes ``file:line: field: what is wrong``.  Steps built in code (fuzz
findings, captures) go through the same reader: their Python data is
represented as nodes first (``as_node``), without line numbers.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from conformance.scenario import Matcher, ScenarioError, Value

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def as_node(data: Any) -> yaml.Node:
    """Python data (str, numbers, lists, dicts, None) as a YAML node tree."""
    return yaml.representer.SafeRepresenter(sort_keys=False).represent_data(data)


def is_null(node: yaml.Node | None) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def line_of(node: yaml.Node | None) -> int:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else 0


class Reader:
    """Reads a node tree of one file, naming the file in its errors."""

    def __init__(self, path: object) -> None:
        self.path = path

    def error(self, node: yaml.Node | None, where: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.path}:{line_of(node)}: {where}: {message}")

    def mapping(self, node: yaml.Node, where: str) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, "expected a mapping")
        result: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = self.scalar(key, where)
            if name in result:
                raise self.error(key, where, f"{name!r} appears twice")
            result[name] = value
        return result

    def keys(self, spec: dict[str, yaml.Node], node: yaml.Node, where: str, known: set[str],
             what: str) -> None:
        """Refuse keys outside ``known``; ``what`` lists them for the reader."""
        unknown = set(spec) - known
        if unknown:
            raise self.error(node, where, f"unknown key {sorted(unknown)[0]!r} ({what})")

    def sequence(self, node: yaml.Node, where: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, where, "expected a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, where: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, where, "expected a single value")
        return str(node.value)

    def number(self, node: yaml.Node, where: str) -> float:
        text = self.scalar(node, where)
        try:
            value = float(text)
        except ValueError:
            raise self.error(node, where, f"{text!r} is not a number") from None
        if value < 0:
            raise self.error(node, where, "must not be negative")
        return value

    def boolean(self, node: yaml.Node, where: str) -> bool:
        text = self.scalar(node, where).lower()
        if text not in ("true", "false"):
            raise self.error(node, where, f"{text!r} is not true or false")
        return text == "true"

    def strings(self, node: yaml.Node, where: str) -> list[str]:
        return [self.scalar(item, where) for item in self.sequence(node, where)]

    def value(self, node: yaml.Node, where: str) -> Value:
        """Text, ``{hex: ...}`` or ``{repeat: ..., times: N}``; null is empty."""
        if isinstance(node, yaml.MappingNode):
            spec = self.mapping(node, where)
            if set(spec) == {"hex"}:
                text = self.scalar(spec["hex"], f"{where}.hex")
                try:
                    return Value(raw=bytes.fromhex(text.replace(" ", "").replace("\n", "")))
                except ValueError:
                    raise self.error(spec["hex"], f"{where}.hex", "not hexadecimal") from None
            if set(spec) == {"repeat", "times"}:
                times = self.number(spec["times"], f"{where}.times")
                return Value(self.scalar(spec["repeat"], f"{where}.repeat"), int(times))
            raise self.error(node, where, "a value is text, {hex: ...} or {repeat: ..., "
                             f"times: N}}, not {sorted(spec)}")
        if is_null(node):
            return Value("")
        return Value(self.scalar(node, where))

    def matcher(self, node: yaml.Node, where: str) -> Matcher:
        """A value (compared exactly, or captured), ``{match: RE}`` or ``{any: true}``,
        each with ``capture: NAME`` possible."""
        if not isinstance(node, yaml.MappingNode):
            return Matcher(value=self.value(node, where))
        spec = self.mapping(node, where)
        self.keys(spec, node, where, {"match", "capture", "any", "hex", "repeat", "times"},
                  "a matcher has match, capture or any; or is a value")
        if "any" in spec:
            return Matcher(any=self.boolean(spec["any"], f"{where}.any"),
                           capture=self._capture(spec, where))
        if "match" in spec:
            pattern = self.scalar(spec["match"], f"{where}.match")
            try:
                re.compile(pattern)
            except re.error as error:
                raise self.error(spec["match"], f"{where}.match", f"bad pattern: {error}") \
                    from None
            return Matcher(pattern=pattern, capture=self._capture(spec, where))
        return Matcher(value=self.value(node, where))

    def _capture(self, spec: dict[str, yaml.Node], where: str) -> str | None:
        if "capture" not in spec:
            return None
        name = self.scalar(spec["capture"], f"{where}.capture").lstrip("$")
        if not NAME.match(name):
            raise self.error(spec["capture"], f"{where}.capture", f"{name!r} is not a name")
        return name


def value_data(value: Value) -> Any:
    """A value as the reader reads it back: text when every byte is printable or a
    common escape, else ``{hex: ...}``; repetitions stay repetitions."""
    if value.raw is not None:
        text = value.raw.decode("latin-1")
        if all(c.isprintable() or c in "\0\t\r\n" for c in text):
            return text.replace("$", "$$")  # bytes, not variables
        return {"hex": value.raw.hex(" ")}
    if value.times != 1:
        return {"repeat": value.text, "times": value.times}
    return value.text


def matcher_data(matcher: Matcher) -> Any:
    """A matcher as the reader reads it back."""
    if matcher.any:
        return {"any": True}
    if matcher.pattern is not None:
        spec: dict[str, Any] = {"match": matcher.pattern}
        if matcher.capture:
            spec["capture"] = matcher.capture
        return spec
    assert matcher.value is not None
    return value_data(matcher.value)
