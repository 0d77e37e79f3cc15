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

from conformance.capture.reader import Captured, read
from conformance.scenario import (
    ExpectClosed,
    ExpectLines,
    ExpectList,
    ExpectPacket,
    Hangup,
    Matcher,
    Scenario,
    SendPacket,
    SendText,
    Step,
    Value,
)
from conformance.writer import dump
from reference_server.protocol import PACKETS, Packet, TextLine

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


def _send(c: Captured, names: _Names) -> Step:
    conn = _conn(c.conn)
    if isinstance(c.event, TextLine):
        return SendText(0, conn, "", Value(names.line(c.event.raw)), False)
    assert isinstance(c.event, Packet)
    fields = dict(zip(PACKETS[c.event.type].args, c.event.args))
    names.function(fields.get("function", b""))
    names.unique(fields.get("unique", b""))
    return SendPacket(0, conn, "", c.event.type,
                      {k: Value(names.field(k, v)) for k, v in fields.items()},
                      magic=c.event.magic.value)


def _expect(c: Captured, names: _Names) -> Step:
    assert isinstance(c.event, Packet)
    matchers = {}
    for key, value in zip(PACKETS[c.event.type].args, c.event.args):
        if key == "handle" and value not in names.handles:
            var = names.handles[value] = f"h{len(names.handles) + 1}"
            matchers[key] = Matcher.distinct(var, sorted(set(names.handles.values()) - {var}))
            continue
        if key == "function":
            names.function(value)
        if key == "unique":
            names.unique(value)
        matchers[key] = Matcher(value=Value(names.field(key, value)))
    return ExpectPacket(0, _conn(c.conn), "", c.event.type, matchers)


def _admin_reply(conn: str, command: bytes, lines: list[bytes], names: _Names) -> Step:
    word = command.split(b" ", 1)[0].strip().lower()
    if lines[-1] == b".\n":
        keys = [f"${v}\t" for v in sorted(names.functions.values())] + \
            [f" ${v}\n" for v in sorted(names.functions.values())] + \
            [f" ${v} " for v in sorted(names.functions.values())]
        mine = [line for line in lines[:-1] if any(f in line for f in names.functions if f)]
        rows = [Matcher(pattern=r"\d+ \S+ \S* :" + re.escape(names.line(line)
                                                            .split(":", 1)[1]).replace(r"\$", "$"))
                if word == b"workers" else Matcher(value=Value(names.line(line)))
                for line in mine]
        return ExpectList(0, conn, "", rows, [Value(k) for k in keys])
    if word in _SHAPE_ONLY and len(lines) == 1:
        return ExpectLines(0, conn, "", [Matcher(pattern=_SHAPE_ONLY[word])])
    return ExpectLines(0, conn, "", [Matcher(value=Value(names.line(line))) for line in lines])


def capture_scenario(path: Path, ports: Iterable[int]) -> Scenario:
    names = _Names()
    steps: list[Step] = []
    commands: dict[str, list[bytes]] = {}  # admin lines sent, waiting for their answer
    replies: dict[str, list[bytes]] = {}
    hung_up: set[str] = set()
    for c in read(path, ports):
        conn = _conn(c.conn)
        if c.event is None:
            if c.note.startswith("closed by the client") and conn not in hung_up:
                hung_up.add(conn)
                steps.append(Hangup(0, conn))
            elif c.note.startswith(("closed by the server", "reset by the server")) \
                    and conn not in hung_up:
                steps.append(ExpectClosed(0, conn))
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
    return Scenario(
        id=f"capture/{_slug(path.stem)}", title=f"Replay of {path.name}",
        level="MUST", source=f"capture {path.name}",
        requirement="The server answers the captured clients and workers as the captured "
                    "server did (handles, function names and uniques aside).",
        sections=["2"], steps=steps, file=str(path), line=0, ignore=frozenset(),
        fresh=True)


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
