"""A capture as a conformance scenario: what each connection sent, and, after
it, what the captured server answered, in the order the capture saw them.

Names that depend on the run become variables so that the scenario can be
played against any server, beside other cases: job handles (``$h1``, ... bound
from the replies that first mention them, so hostnames and counters differ
freely), function names (``$f1``, ...) and uniques (``$u1``, ...), which the
engine makes unique to the run.  Admin replies that list things (``status``,
``workers``...) are checked on the rows that name the capture's functions;
``version`` and ``getpid`` answers only by their shape.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.capture.reader import Captured, read
from conformance.loader import load_case
from conformance.nodes import matcher_data
from conformance.scenario import Matcher, Scenario
from conformance.writer import dump
from reference_server.protocol import Magic, Packet, TextLine

#: Admin answers whose content is the server's own (a pid, a version string).
_SHAPE_ONLY = {b"version": r"OK \S.*\n", b"getpid": r"OK \d+\n"}


@dataclass
class _Names:
    """Captured names and the variables that stand for them."""

    handles: dict[bytes, str] = field(default_factory=dict)
    functions: dict[bytes, str] = field(default_factory=dict)
    uniques: dict[bytes, str] = field(default_factory=dict)

    def field(self, name: str, value: bytes) -> str:
        """A packet field as scenario text: a whole handle, function or unique
        becomes its variable; anything else stays as captured."""
        table = {"handle": self.handles, "function": self.functions,
                 "unique": self.uniques}.get(name, {})
        if value in table:
            return f"${table[value]}"
        return _literal(value)

    def line(self, raw: bytes) -> str:
        """An admin line: the words that are captured names become variables."""
        names = {**self.uniques, **self.functions, **self.handles}
        return "".join(f"${names[word]}" if word in names else _literal(word)
                       for word in re.split(rb"([\t \r\n])", raw))

    def function(self, name: bytes) -> None:
        if name and name not in self.functions:
            self.functions[name] = f"f{len(self.functions) + 1}"

    def unique(self, name: bytes) -> None:
        if name and name not in self.uniques and name != b"-":
            self.uniques[name] = f"u{len(self.uniques) + 1}"


def _literal(raw: bytes) -> str:
    return raw.decode("latin-1").replace("$", "$$")


def _conn(name: str) -> str:
    return name.lower()


def _send(c: Captured, names: _Names) -> Any:
    """What a connection sent, as a step written as data."""
    conn = _conn(c.conn)
    if isinstance(c.event, TextLine):
        return {f"{conn} send-text": names.line(c.event.raw)}
    assert isinstance(c.event, Packet)
    fields = c.event.fields()
    names.function(fields.get("function", b""))
    names.unique(fields.get("unique", b""))
    step: dict[str, Any] = {f"{conn} send {c.event.name}":
                            {k: names.field(k, v) for k, v in fields.items()} or None}
    if c.event.magic is not Magic.REQ:
        step["magic"] = "RES"
    return step


def _expect(c: Captured, names: _Names) -> Any:
    assert isinstance(c.event, Packet)
    matchers: dict[str, Any] = {}
    for key, value in c.event.fields().items():
        if key == "handle" and value not in names.handles:
            var = names.handles[value] = f"h{len(names.handles) + 1}"
            matchers[key] = matcher_data(Matcher.distinct(
                var, sorted(set(names.handles.values()) - {var})))
            continue
        if key == "function":
            names.function(value)
        if key == "unique":
            names.unique(value)
        matchers[key] = names.field(key, value)
    key = f"{_conn(c.conn)} expect {c.event.name}"
    return {key: matchers} if matchers else key


def _admin_reply(conn: str, command: bytes, lines: list[bytes], names: _Names) -> Any:
    word = command.split(b" ", 1)[0].strip().lower()
    if lines[-1] == b".\n":
        keys = [f"${v}\t" for v in sorted(names.functions.values())] + \
            [f" ${v}\n" for v in sorted(names.functions.values())] + \
            [f" ${v} " for v in sorted(names.functions.values())]
        mine = [line for line in lines[:-1] if any(f in line for f in names.functions if f)]
        rows = [{"match": r"\d+ \S+ \S* :" + re.escape(names.line(line).split(":", 1)[1])
                 .replace(r"\$", "$")}
                if word == b"workers" else names.line(line) for line in mine]
        return {f"{conn} expect-list": {"rows": rows, "filter": keys}}
    if word in _SHAPE_ONLY and len(lines) == 1:
        return {f"{conn} expect-line": {"match": _SHAPE_ONLY[word]}}
    return {f"{conn} expect-lines": [names.line(line) for line in lines]}


def capture_scenario(path: Path, ports: Iterable[int]) -> Scenario:
    names = _Names()
    steps: list[Any] = []
    commands: dict[str, list[bytes]] = {}  # admin lines sent, waiting for their answer
    replies: dict[str, list[bytes]] = {}
    hung_up: set[str] = set()
    for c in read(path, ports):
        conn = _conn(c.conn)
        if c.event is None:
            if c.note.startswith("closed by the client") and conn not in hung_up:
                hung_up.add(conn)
                steps.append(f"{conn} hangup")
            elif c.note.startswith(("closed by the server", "reset by the server")) \
                    and conn not in hung_up:
                steps.append(f"{conn} expect-closed")
                hung_up.add(conn)
            continue
        if conn in hung_up:
            continue
        if c.direction == "send":
            steps.append(_send(c, names))
            if isinstance(c.event, TextLine):
                commands.setdefault(conn, []).append(c.event.line)
        elif isinstance(c.event, TextLine):
            answer = replies.setdefault(conn, [])
            answer.append(c.event.raw)
            # An answer is one OK/ERR line, or a list closed by ".".
            if c.event.raw == b".\n" or (len(answer) == 1
                                         and c.event.raw.startswith((b"OK", b"ERR"))):
                waiting = commands.get(conn, [])
                steps.append(_admin_reply(conn, waiting.pop(0) if waiting else b"", answer,
                                          names))
                replies[conn] = []
        else:
            steps.append(_expect(c, names))
    return load_case({
        "case": _slug(path.stem), "title": f"Replay of {path.name}", "level": "MUST",
        "source": f"capture {path.name}",
        "requirement": "The server answers the captured clients and workers as the captured "
                       "server did (handles, function names and uniques aside).",
        "sections": ["2"], "ignore": [], "fresh": True, "steps": steps}, "capture",
        origin=str(path))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "capture"


def write_scenario(path: Path, ports: Iterable[int], output: Path | None) -> Scenario:
    scenario = capture_scenario(path, ports)
    text = dump([scenario], topic=f"Captured in {path.name}")
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    return scenario
