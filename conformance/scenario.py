"""Scenarios are data: the model, and the loader that reads them from YAML.

A scenario file ``scenarios/<area>/<topic>.yaml`` holds the cases of one
topic; a case's id is ``<area>/<topic>/<case>`` and never changes once
published.  A case reads like this::

    - case: coalesce-foreground
      title: Two foreground submits with the same unique share one job
      level: MUST
      source: PROTOCOL "SUBMIT_JOB"; gearmand job.cc
      requirement: >
        A submit whose function and unique match a job in the queue gets that
        job's handle, and its client hears the job's results.
      sections: ["3.3"]
      steps:
        - alice send SUBMIT_JOB: {function: $fn, unique: $u, data: x}
        - alice expect JOB_CREATED: {handle: $h}
        - bob send SUBMIT_JOB: {function: $fn, unique: $u, data: y}
        - bob expect JOB_CREATED: {handle: $h}        # the same handle

A step is ``CONNECTION VERB [PACKET]``, alone or as the key of its arguments;
connections open on first use.  ``$name`` is a variable: used in a send
before it has a value it gets a fresh name unique to this run (so cases can
share a server), used in an expect before it has a value it captures what
arrived.  Verbs and their arguments are listed in ``VERBS``; everything is
checked when the file loads, and an error names the file, line and field.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conformance import services
from conformance.sections import SECTIONS
from reference_server.protocol import PACKETS, Direction, PacketType

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
LEVELS = ("MUST", "SHOULD", "MAY")
VERDICT_NAMES = ("PASS", "NON-STRICT", "INFO", "FAIL")
NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
VARIABLE = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message is ``file:line: field: what``."""


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Value:
    """Bytes to send, or to compare with: a string with ``$variables``, or the
    repetition of one (``{repeat: x, times: 65}``), or hex (``{hex: "00 52"}``)."""

    text: str = ""
    times: int = 1
    raw: bytes | None = None

    @property
    def variables(self) -> list[str]:
        return [m.strip("{}") for m in VARIABLE.findall(self.text) if m != "$"]

    @property
    def capture(self) -> str | None:
        """The variable name when the whole value is one variable."""
        match = VARIABLE.fullmatch(self.text)
        if match and match.group(1) != "$" and self.times == 1 and self.raw is None:
            return match.group(1).strip("{}")
        return None


@dataclass(frozen=True)
class Matcher:
    """How an expected field (or text line) is compared with what arrived."""

    value: Value | None = None  # exact (after variables), or a capture
    pattern: str | None = None  # a regular expression the whole thing must match
    capture: str | None = None  # bind what matched to this variable
    any: bool = False

    @classmethod
    def distinct(cls, name: str, others: list[str]) -> Matcher:
        """Capture into ``name`` a value that none of the variables ``others`` holds
        (a new job must get a new handle)."""
        if not others:
            return cls(value=Value(f"${name}"))
        taken = "|".join(f"${{{other}}}" for other in sorted(others))
        return cls(pattern=rf"(?!(?:{taken})\Z).*", capture=name)


# ---------------------------------------------------------------------------- steps


@dataclass
class Step:
    line: int
    conn: str = ""
    note: str = ""
    source: str = field(default="", compare=False, kw_only=True)  # as written, for reports


@dataclass
class SendPacket(Step):
    type: PacketType = PacketType.ECHO_REQ
    fields: dict[str, Value] = field(default_factory=dict)
    magic: bytes = b"\0REQ"


@dataclass
class SendRaw(Step):
    data: Value | None = None
    # A header with any magic, type and length, followed by ``payload``.
    magic: bytes | None = None
    packet_type: int | None = None
    length: int | None = None
    payload: Value | None = None


@dataclass
class SendText(Step):
    text: Value = field(default_factory=Value)
    newline: bool = True  # send-line adds "\n"; send-text sends the text as it is


@dataclass
class ExpectPacket(Step):
    type: PacketType = PacketType.NOOP
    fields: dict[str, Matcher] = field(default_factory=dict)
    within: float | None = None


@dataclass
class ExpectLines(Step):
    lines: list[Matcher] = field(default_factory=list)  # each with its line ending
    within: float | None = None


@dataclass
class ExpectList(Step):
    """An admin list ending in ".\\n": the rows that contain one of ``filter`` must be
    exactly ``rows`` (in any order unless ``ordered``)."""

    rows: list[Matcher] = field(default_factory=list)
    filter: list[Value] = field(default_factory=list)
    ordered: bool = False
    within: float | None = None


@dataclass
class ExpectClosed(Step):
    within: float | None = None


@dataclass
class ExpectNothing(Step):
    """Nothing is waiting on this connection (checked with an ECHO round trip, or a
    short silence for servers without ECHO)."""


@dataclass
class ExpectStalled(Step):
    """The connection has stopped answering: an ECHO_REQ sent to check gets no reply
    within the timeout (gearmand's reaction to some malformed packets)."""


@dataclass
class ExpectSilence(Step):
    seconds: float = 0.3


@dataclass
class Alternative:
    line: int
    verdict: str
    note: str
    steps: list[Step]


@dataclass
class ExpectOneOf(Step):
    """What arrived on one connection (up to a sync point) decides between
    alternatives, each with its verdict, as Autobahn's "one of" outcomes."""

    alternatives: list[Alternative] = field(default_factory=list)


@dataclass
class Hangup(Step):
    pass


@dataclass
class HTTPRequest(Step):
    """An HTTP request on a connection to the server's HTTP port (``-r http``)."""

    method: str = "POST"
    path: Value = field(default_factory=lambda: Value("/"))
    headers: list[Value] = field(default_factory=list)  # whole lines, as sent
    body: Value = field(default_factory=lambda: Value(""))
    version: str = "HTTP/1.0"


@dataclass
class ExpectHTTP(Step):
    """The HTTP response on that connection: status code, the headers named (others
    ignored), the body; then the server closes the connection (as gearmand's does)."""

    status: int = 200
    headers: dict[str, Matcher] = field(default_factory=dict)
    body: Matcher | None = None
    within: float | None = None


@dataclass
class ExpectRefused(Step):
    """Opening this connection fails: refused, or its TLS handshake fails."""


@dataclass
class Finish(Step):
    """The client half-closes (sends EOF) and reads until the server closes.

    A barrier: once the server has closed, it has read everything sent before
    the EOF, so what that did to the server (a crash, say) has happened.  What
    arrives meanwhile is logged, not judged."""

    within: float | None = None


@dataclass
class Sleep(Step):
    seconds: float = 0.0


@dataclass
class TargetAction(Step):
    action: str = "restart"  # "restart" or "kill" (kill: the next step should notice)


# ---------------------------------------------------------------------------- scenario


@dataclass
class Scenario:
    id: str
    title: str
    level: str
    source: str
    requirement: str
    sections: list[str]
    steps: list[Step]
    file: str
    line: int
    server_options: list[str] = field(default_factory=list)
    ignore: frozenset[PacketType] = frozenset({PacketType.NOOP})
    exclusive: bool = False  # needs the target alone (restarts, timing)
    fresh: bool = False  # needs a server of its own, started for it (shared names)
    timeout: float | None = None  # default per-step timeout override
    # A case about TLS: it needs a TLS target; connections named here do not use the
    # run's TLS settings: "plaintext" (no TLS at all), "untrusted" (TLS that trusts
    # only the system's CAs, not the one that signed the server's certificate) or
    # "anonymous" (the run's CA, but no client certificate).
    tls: dict[str, str] | None = None

    @property
    def needs(self) -> set[str]:
        """Capabilities a target must have for this case to run."""
        needs = set()
        if self.server_options:
            needs.add("server_options")
        if "-q" in self.server_options or "--queue-type" in self.server_options:
            needs.add("persistence")
        if self.fresh or any(isinstance(s, TargetAction) for s in self.steps):
            needs.add("restart")
        if self.tls is not None:
            needs.add("tls")
        return needs | services.needed(self.server_options)

    def all_steps(self) -> list[Step]:
        steps: list[Step] = []
        for step in self.steps:
            steps.append(step)
            if isinstance(step, ExpectOneOf):
                for alternative in step.alternatives:
                    steps.extend(alternative.steps)
        return steps


# ---------------------------------------------------------------------------- loader


class _Reader:
    """Reads a YAML node tree, remembering where each value came from."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, node: yaml.Node | None, where: str, message: str) -> ScenarioError:
        line = node.start_mark.line + 1 if node is not None else 0
        return ScenarioError(f"{self.path}:{line}: {where}: {message}")

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
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return Value("")
        return Value(self.scalar(node, where))

    def matcher(self, node: yaml.Node, where: str) -> Matcher:
        if isinstance(node, yaml.MappingNode):
            spec = self.mapping(node, where)
            unknown = set(spec) - {"match", "capture", "any", "hex", "repeat", "times"}
            if unknown:
                raise self.error(node, where, f"unknown key {sorted(unknown)[0]!r} (a matcher "
                                 "has match, capture or any; or is a value)")
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
        return Matcher(value=self.value(node, where))

    def _capture(self, spec: dict[str, yaml.Node], where: str) -> str | None:
        if "capture" not in spec:
            return None
        name = self.scalar(spec["capture"], f"{where}.capture").lstrip("$")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise self.error(spec["capture"], f"{where}.capture", f"{name!r} is not a name")
        return name


STEP_KEY = re.compile(r"(?P<conn>[a-z][a-z0-9_]*) (?P<verb>[a-z-]+)(?: (?P<arg>\S+))?\Z")
MODIFIERS = ("within", "note", "magic")

#: verb → (takes a packet name?, what its argument is)
VERBS: dict[str, str] = {
    "send": "send PACKET [{fields}]: a packet; fields default to empty; magic: RES possible",
    "send-raw": "send-raw: {hex: ...} | text | {magic, type, length, payload}: bytes as given",
    "send-line": "send-line: TEXT: an admin line, \\n added",
    "send-text": "send-text: TEXT: bytes as written (say \\r\\n yourself)",
    "expect": "expect PACKET [{fields}]: the next packet (ignored types skipped)",
    "expect-line": "expect-line: TEXT | {match: RE}: one text line, line ending included",
    "expect-lines": "expect-lines: [TEXT ...]: several text lines",
    "expect-list": "expect-list: {rows: [...], filter: [...], ordered: false}: an admin list",
    "expect-closed": "expect-closed: the server closes the connection",
    "expect-nothing": "expect-nothing: nothing is waiting on this connection",
    "expect-stalled": "expect-stalled: the connection no longer answers anything",
    "expect-silence": "expect-silence: SECONDS: nothing arrives for that long",
    "expect-one-of": "expect-one-of: [{verdict, note, expect: [steps]}]: alternatives",
    "hangup": "hangup: the client closes the connection",
    "finish": "finish: the client sends EOF, reads until the server closes (replies not judged)",
    "expect-refused": "expect-refused: opening this connection fails (refused, or TLS refused)",
    "http-request": "http-request: {method, path, headers: [LINE ...], body, version}: an HTTP "
                    "request to the HTTP port",
    "expect-http": "expect-http: {status, headers: {NAME: VALUE}, body}: the HTTP response, "
                   "then the close",
}


TLS_MODES = ("plaintext", "untrusted", "anonymous")


class Loader:
    def __init__(self, path: Path, root: Path = SCENARIO_DIR) -> None:
        self.path = path
        self.root = root
        self.read = _Reader(path)

    def load(self) -> list[Scenario]:
        try:
            self.text = self.path.read_text()
            document = yaml.compose(self.text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
            problem = getattr(error, "problem", None) or str(error)
            raise ScenarioError(f"{self.path}:{line}: yaml: {problem}") from None
        except OSError as error:
            raise ScenarioError(f"{self.path}:0: file: {error.strerror}") from None
        if document is None:
            raise ScenarioError(f"{self.path}:0: file: empty")
        top = self.read.mapping(document, "file")
        unknown = set(top) - {"topic", "defaults", "scenarios"}
        if unknown:
            name = sorted(unknown)[0]
            raise self.read.error(top[name], name, "unknown key (a file has topic, defaults "
                                  "and scenarios)")
        if "scenarios" not in top:
            raise self.read.error(document, "scenarios", "missing")
        defaults = self.read.mapping(top["defaults"], "defaults") if "defaults" in top else {}
        try:
            prefix = str(self.path.resolve().relative_to(self.root.resolve()).with_suffix(""))
        except ValueError:
            prefix = self.path.stem
        return [self.scenario(node, prefix, defaults)
                for node in self.read.sequence(top["scenarios"], "scenarios")]

    def scenario(self, node: yaml.Node, prefix: str, defaults: dict[str, yaml.Node]
                 ) -> Scenario:
        read = self.read
        spec = {**defaults, **read.mapping(node, "scenario")}
        known = {"case", "title", "level", "source", "requirement", "sections", "steps",
                 "server-options", "ignore", "exclusive", "fresh", "timeout", "tls"}
        for name, value in spec.items():
            if name not in known:
                raise read.error(value, name, f"unknown key (known: {', '.join(sorted(known))})")
        for name in ("case", "title", "level", "source", "requirement", "steps"):
            if name not in spec:
                raise read.error(node, name, "missing")
        case = read.scalar(spec["case"], "case")
        if not NAME.match(case):
            raise read.error(spec["case"], "case", f"{case!r}: use lowercase words and dashes")
        level = read.scalar(spec["level"], "level").upper()
        if level not in LEVELS:
            raise read.error(spec["level"], "level", f"{level!r} is not one of {LEVELS}")
        ignore = frozenset({PacketType.NOOP})
        if "ignore" in spec:
            ignore = frozenset(self.packet_type(n, "ignore")
                               for n in read.sequence(spec["ignore"], "ignore"))
        sections = []
        if "sections" in spec:
            for i, item in enumerate(read.sequence(spec["sections"], "sections")):
                section = read.scalar(item, f"sections[{i}]")
                if section not in SECTIONS:
                    raise read.error(item, f"sections[{i}]", f"{section!r} is not a protocol "
                                     f"section (known: {', '.join(SECTIONS)})")
                sections.append(section)
        steps = []
        for i, node_ in enumerate(read.sequence(spec["steps"], "steps")):
            step = self.step(node_, f"steps[{i}]")
            step.source = self.source(node_)
            steps.append(step)
        if not steps:
            raise read.error(spec["steps"], "steps", "a case needs at least one step")
        return Scenario(
            id=f"{prefix}/{case}", title=read.scalar(spec["title"], "title"), level=level,
            source=read.scalar(spec["source"], "source"),
            requirement=" ".join(read.scalar(spec["requirement"], "requirement").split()),
            sections=sections,
            steps=steps, file=str(self.path), line=node.start_mark.line + 1,
            server_options=read.strings(spec["server-options"], "server-options")
            if "server-options" in spec else [],
            ignore=ignore,
            exclusive=read.boolean(spec["exclusive"], "exclusive") if "exclusive" in spec
            else False,
            fresh=read.boolean(spec["fresh"], "fresh") if "fresh" in spec else False,
            timeout=read.number(spec["timeout"], "timeout") if "timeout" in spec else None,
            tls=self.tls(spec["tls"]) if "tls" in spec else None)

    def tls(self, node: yaml.Node) -> dict[str, str]:
        """``tls: {}`` (every connection over the run's TLS) or ``tls: {p: plaintext,
        x: untrusted}``."""
        modes = {}
        for key, value in self.read.mapping(node, "tls").items():
            mode = self.read.scalar(value, f"tls.{key}")
            if mode not in TLS_MODES:
                raise self.read.error(value, f"tls.{key}", f"{mode!r} is not one of "
                                      f"{', '.join(TLS_MODES)}")
            modes[key] = mode
        return modes

    def source(self, node: yaml.Node) -> str:
        """A node's text as written (indentation of its first line removed)."""
        text = self.text[node.start_mark.index:node.end_mark.index].rstrip()
        return textwrap.dedent(" " * node.start_mark.column + text).strip("\n")

    def packet_type(self, node: yaml.Node, where: str) -> PacketType:
        name = self.read.scalar(node, where)
        try:
            return PacketType[name]
        except KeyError:
            raise self.read.error(node, where, f"{name!r} is not a packet type") from None

    def step(self, node: yaml.Node, where: str) -> Step:
        read = self.read
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            key, args, mods = read.scalar(node, where), None, {}
            key_node = node
        else:
            spec = read.mapping(node, where)
            main = [k for k in spec if k not in MODIFIERS]
            if len(main) != 1:
                raise read.error(node, where, "a step is one 'CONN VERB ...' key (plus within, "
                                 f"note, magic), found {main or 'none'}")
            key = main[0]
            key_node = node
            args = spec[key]
            if isinstance(args, yaml.ScalarNode) and args.tag == "tag:yaml.org,2002:null":
                args = None  # "c expect NOOP:" with modifiers below it
            mods = {k: v for k, v in spec.items() if k in MODIFIERS}
        if key.startswith("sleep"):
            return self._sleep(key, args, node, where, line)
        if key.startswith("target "):
            action = key.split(" ", 1)[1]
            if action not in ("restart", "kill"):
                raise read.error(key_node, where, f"target {action!r}: use restart or kill")
            return TargetAction(line, conn="target", action=action)
        match = STEP_KEY.match(key)
        if not match:
            raise read.error(key_node, where, f"{key!r} is not 'CONN VERB [PACKET]' (verbs: "
                             f"{', '.join(VERBS)}, sleep, target restart, target kill)")
        conn, verb, arg = match["conn"], match["verb"], match["arg"]
        if verb not in VERBS:
            raise read.error(key_node, where, f"unknown verb {verb!r} (verbs: {', '.join(VERBS)})")
        note = " ".join(read.scalar(mods["note"], f"{where}.note").split()) if "note" in mods \
            else ""
        within = read.number(mods["within"], f"{where}.within") if "within" in mods else None
        if "magic" in mods and verb != "send":
            raise read.error(mods["magic"], f"{where}.magic", "only a send has a magic")
        if verb in ("send", "expect"):
            if arg is None:
                raise read.error(key_node, where, f"{verb} needs a packet type, e.g. "
                                 f"'{conn} {verb} ECHO_REQ'")
            try:
                packet_type = PacketType[arg]
            except KeyError:
                raise read.error(key_node, where, f"{arg!r} is not a packet type") from None
            fields = read.mapping(args, f"{where}.{arg}") if args is not None else {}
            names = PACKETS[packet_type].args
            for name, value in fields.items():
                if name not in names:
                    raise read.error(value, f"{where}.{arg}.{name}",
                                     f"{arg} has no field {name!r} (fields: "
                                     f"{', '.join(names) or 'none'})")
            if verb == "send":
                magic = b"\0REQ"
                if "magic" in mods:
                    text = read.scalar(mods["magic"], f"{where}.magic")
                    if text not in ("REQ", "RES"):
                        raise read.error(mods["magic"], f"{where}.magic", "REQ or RES")
                    magic = b"\0" + text.encode()
                return SendPacket(line, conn, note, packet_type,
                                  {n: read.value(v, f"{where}.{arg}.{n}")
                                   for n, v in fields.items()}, magic)
            if PACKETS[packet_type].direction is Direction.REQUEST:
                raise read.error(key_node, where, f"{arg} is a request: a server never sends it")
            return ExpectPacket(line, conn, note, packet_type,
                                {n: read.matcher(v, f"{where}.{arg}.{n}")
                                 for n, v in fields.items()}, within)
        if arg is not None:
            raise read.error(key_node, where, f"{verb} takes no packet type")
        if verb == "send-raw":
            return self._send_raw(args, conn, note, where, line)
        if verb in ("send-line", "send-text"):
            if args is None:
                raise read.error(key_node, where, f"{verb} needs the text")
            return SendText(line, conn, note, read.value(args, where), verb == "send-line")
        if verb == "expect-line":
            if args is None:
                raise read.error(key_node, where, "expect-line needs the line")
            return ExpectLines(line, conn, note, [read.matcher(args, where)], within)
        if verb == "expect-lines":
            return ExpectLines(line, conn, note, [read.matcher(v, f"{where}[{i}]") for i, v in
                                                  enumerate(read.sequence(args, where))], within)
        if verb == "expect-list":
            spec = read.mapping(args, where)
            unknown = set(spec) - {"rows", "filter", "ordered"}
            if unknown or "rows" not in spec or "filter" not in spec:
                raise read.error(args, where, "expect-list has rows, filter and maybe ordered")
            return ExpectList(line, conn, note,
                              [read.matcher(v, f"{where}.rows[{i}]") for i, v in
                               enumerate(read.sequence(spec["rows"], f"{where}.rows"))],
                              [read.value(v, f"{where}.filter") for v in
                               read.sequence(spec["filter"], f"{where}.filter")],
                              read.boolean(spec["ordered"], f"{where}.ordered")
                              if "ordered" in spec else False, within)
        if verb == "expect-closed":
            return ExpectClosed(line, conn, note, within)
        if verb == "expect-nothing":
            return ExpectNothing(line, conn, note)
        if verb == "expect-stalled":
            return ExpectStalled(line, conn, note)
        if verb == "expect-silence":
            seconds = read.number(args, where) if args is not None else 0.3
            return ExpectSilence(line, conn, note, seconds)
        if verb == "hangup":
            return Hangup(line, conn, note)
        if verb == "finish":
            return Finish(line, conn, note, within)
        if verb == "expect-refused":
            return ExpectRefused(line, conn, note)
        if verb == "http-request":
            spec = read.mapping(args, where)
            unknown = set(spec) - {"method", "path", "headers", "body", "version"}
            if unknown:
                raise read.error(args, where, f"unknown key {sorted(unknown)[0]!r} (known: "
                                 "method, path, headers, body, version)")
            return HTTPRequest(
                line, conn, note,
                method=read.scalar(spec["method"], f"{where}.method") if "method" in spec
                else "POST",
                path=read.value(spec["path"], f"{where}.path") if "path" in spec
                else Value("/"),
                headers=[read.value(h, f"{where}.headers[{i}]") for i, h in
                         enumerate(read.sequence(spec["headers"], f"{where}.headers"))]
                if "headers" in spec else [],
                body=read.value(spec["body"], f"{where}.body") if "body" in spec
                else Value(""),
                version=read.scalar(spec["version"], f"{where}.version") if "version" in spec
                else "HTTP/1.0")
        if verb == "expect-http":
            spec = read.mapping(args, where)
            unknown = set(spec) - {"status", "headers", "body"}
            if unknown:
                raise read.error(args, where, f"unknown key {sorted(unknown)[0]!r} (known: "
                                 "status, headers, body)")
            headers = {name: read.matcher(value, f"{where}.headers.{name}") for name, value in
                       read.mapping(spec["headers"], f"{where}.headers").items()} \
                if "headers" in spec else {}
            return ExpectHTTP(line, conn, note,
                              status=int(read.number(spec["status"], f"{where}.status"))
                              if "status" in spec else 200,
                              headers=headers,
                              body=read.matcher(spec["body"], f"{where}.body")
                              if "body" in spec else None, within=within)
        assert verb == "expect-one-of"
        alternatives = []
        for i, alt in enumerate(read.sequence(args, where)):
            spec = read.mapping(alt, f"{where}[{i}]")
            if set(spec) - {"verdict", "note", "expect"} or not {"verdict", "expect"} <= set(spec):
                raise read.error(alt, f"{where}[{i}]", "an alternative has verdict, note and "
                                 "expect")
            verdict = read.scalar(spec["verdict"], f"{where}[{i}].verdict").upper()
            if verdict not in VERDICT_NAMES:
                raise read.error(spec["verdict"], f"{where}[{i}].verdict",
                                 f"{verdict!r} is not one of {VERDICT_NAMES}")
            steps = [self.step(s, f"{where}[{i}].expect[{j}]")
                     for j, s in enumerate(read.sequence(spec["expect"], f"{where}[{i}].expect"))]
            for step, s in zip(steps, read.sequence(spec["expect"], f"{where}[{i}].expect")):
                if step.conn != conn or not isinstance(
                        step, ExpectPacket | ExpectLines | ExpectClosed | ExpectNothing
                        | ExpectStalled):
                    raise read.error(s, f"{where}[{i}]", "alternatives hold expect, expect-line"
                                     "(s), expect-closed, expect-nothing or expect-stalled "
                                     f"steps on {conn}")
            alternatives.append(Alternative(
                alt.start_mark.line + 1, verdict,
                " ".join(read.scalar(spec["note"], f"{where}[{i}].note").split())
                if "note" in spec else "",
                steps))
        if not alternatives:
            raise read.error(args, where, "expect-one-of needs alternatives")
        return ExpectOneOf(line, conn, note, alternatives)

    def _sleep(self, key: str, args: yaml.Node | None, node: yaml.Node, where: str,
               line: int) -> Sleep:
        if key != "sleep" or args is None:
            raise self.read.error(node, where, "write 'sleep: SECONDS'")
        return Sleep(line, seconds=self.read.number(args, where))

    def _send_raw(self, args: yaml.Node | None, conn: str, note: str, where: str,
                  line: int) -> SendRaw:
        read = self.read
        if args is None:
            raise read.error(None, where, "send-raw needs bytes")
        if isinstance(args, yaml.MappingNode):
            spec = read.mapping(args, where)
            if set(spec) <= {"hex", "repeat", "times"}:
                return SendRaw(line, conn, note, data=read.value(args, where))
            unknown = set(spec) - {"magic", "type", "length", "payload"}
            if unknown:
                raise read.error(args, where, f"unknown key {sorted(unknown)[0]!r} (send-raw "
                                 "takes hex, text, or magic/type/length/payload)")
            magic = read.value(spec["magic"], f"{where}.magic") if "magic" in spec else \
                Value("\0REQ")
            packet_type = int(read.number(spec["type"], f"{where}.type")) if "type" in spec \
                else None
            if packet_type is None:
                raise read.error(args, where, "a raw packet needs a type")
            length = int(read.number(spec["length"], f"{where}.length")) if "length" in spec \
                else None
            payload = read.value(spec["payload"], f"{where}.payload") if "payload" in spec \
                else Value("")
            magic_bytes = magic.raw if magic.raw is not None else \
                magic.text.encode("latin-1", "replace") * magic.times
            if len(magic_bytes) != 4:
                raise read.error(spec["magic"], f"{where}.magic", "a magic is 4 bytes")
            return SendRaw(line, conn, note, magic=magic_bytes,
                           packet_type=packet_type, length=length, payload=payload)
        return SendRaw(line, conn, note, data=read.value(args, where))


def load_file(path: Path, root: Path = SCENARIO_DIR) -> list[Scenario]:
    return Loader(path, root).load()


def load_catalog(root: Path = SCENARIO_DIR) -> list[Scenario]:
    """Every scenario under ``root``, in id order; ids must be unique."""
    scenarios: list[Scenario] = []
    seen: dict[str, Scenario] = {}
    for path in sorted(root.rglob("*.yaml")):
        for scenario in load_file(path, root):
            if scenario.id in seen:
                first = seen[scenario.id]
                raise ScenarioError(f"{path}:{scenario.line}: case: id {scenario.id!r} is "
                                    f"already used at {first.file}:{first.line}")
            seen[scenario.id] = scenario
            scenarios.append(scenario)
    return sorted(scenarios, key=lambda s: s.id)
