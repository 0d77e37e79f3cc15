"""Reading scenario files: the case keys here, each step through its verb's record.

Everything is checked when a file loads, and an error names the file, the
line and the field (``scenarios/submit/basic.yaml:14: steps[2].SUBMIT_JOB.dat:
SUBMIT_JOB has no field 'dat'``).  Cases built in code (fuzz findings,
captures) are read by the same functions from plain data (``load_case``), so
there is one reader of the format.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from conformance.jobspec import read_job
from conformance.nodes import Reader, as_node, is_null, line_of
from conformance.scenario import LEVELS, SCENARIO_DIR, TLS_MODES, Scenario, ScenarioError, Step
from conformance.sections import SECTIONS
from conformance.verbs import PSEUDO, VERBS, Written, verb_of
from reference_server.protocol import PacketType

NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
STEP_KEY = re.compile(r"(?P<conn>[a-z][a-z0-9_]*) (?P<verb>[a-z-]+)(?: (?P<arg>\S+))?\Z")
MODIFIERS = ("within", "note", "magic", "split")
CASE_KEYS = {"case", "title", "level", "source", "requirement", "sections", "steps",
             "server-options", "ignore", "exclusive", "fresh", "timeout", "tls", "library",
             "budget"}
# libyaml's composer when PyYAML has it (16 times faster; the same marks, which index
# characters: scenario files are read as text).
COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONNECTED = ", ".join(name for name, verb in VERBS.items() if verb.connection is None)
OTHERS = ", ".join(name for name, verb in VERBS.items() if verb.connection is not None)
#: Verbs of any connection that also judge what a library's application saw.
APP_TOO = frozenset({"expect-one-of", "expect-nothing", "expect-silence"})


class Loader:
    """Reads one file (or one case given as data, ``path`` naming where it came from)."""

    def __init__(self, path: Path | str, root: Path = SCENARIO_DIR) -> None:
        self.path = path
        self.root = root
        self.read = Reader(path)
        self.text = ""
        self.mode = "server"  # of the case being read: "library" when it has ``library:``

    def load(self) -> list[Scenario]:
        path = Path(self.path)
        try:
            self.text = path.read_text()
            document = yaml.compose(self.text, Loader=COMPOSER)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
            problem = getattr(error, "problem", None) or str(error)
            raise ScenarioError(f"{path}:{line}: yaml: {problem}") from None
        except OSError as error:
            raise ScenarioError(f"{path}:0: file: {error.strerror}") from None
        if document is None:
            raise ScenarioError(f"{path}:0: file: empty")
        top = self.read.mapping(document, "file")
        for name, node in top.items():
            if name not in {"topic", "defaults", "scenarios"}:
                raise self.read.error(node, name, "unknown key (a file has topic, defaults "
                                      "and scenarios)")
        if "scenarios" not in top:
            raise self.read.error(document, "scenarios", "missing")
        defaults = self.read.mapping(top["defaults"], "defaults") if "defaults" in top else {}
        try:
            prefix = str(path.resolve().relative_to(self.root.resolve()).with_suffix(""))
        except ValueError:
            prefix = path.stem
        return [self.scenario(node, prefix, defaults)
                for node in self.read.sequence(top["scenarios"], "scenarios")]

    def scenario(self, node: yaml.Node, prefix: str,
                 defaults: dict[str, yaml.Node] | None = None) -> Scenario:
        read = self.read
        spec = {**(defaults or {}), **read.mapping(node, "scenario")}
        for name, value in spec.items():
            if name not in CASE_KEYS:
                raise read.error(value, name,
                                 f"unknown key (known: {', '.join(sorted(CASE_KEYS))})")
        for name in ("case", "title", "level", "source", "requirement", "steps"):
            if name not in spec:
                raise read.error(node, name, "missing")
        case = read.scalar(spec["case"], "case")
        if not NAME.match(case):
            raise read.error(spec["case"], "case", f"{case!r}: use lowercase words and dashes")
        level = read.scalar(spec["level"], "level").upper()
        if level not in LEVELS:
            raise read.error(spec["level"], "level", f"{level!r} is not one of {LEVELS}")
        self.mode = "library" if "library" in spec else "server"
        steps = [self.step(item, f"steps[{i}]", source=True)
                 for i, item in enumerate(read.sequence(spec["steps"], "steps"))]
        if not steps:
            raise read.error(spec["steps"], "steps", "a case needs at least one step")
        optional = self._optional(spec)
        return Scenario(
            id=f"{prefix}/{case}", title=read.scalar(spec["title"], "title"), level=level,
            source=read.scalar(spec["source"], "source"),
            requirement=" ".join(read.scalar(spec["requirement"], "requirement").split()),
            sections=self._sections(spec), steps=steps, file=str(self.path),
            line=line_of(node), **optional)

    def _optional(self, spec: dict[str, yaml.Node]) -> dict[str, Any]:
        read = self.read
        optional: dict[str, Any] = {}
        if "server-options" in spec:
            optional["server_options"] = read.strings(spec["server-options"], "server-options")
        if "ignore" in spec:
            optional["ignore"] = frozenset(self._packet_type(n, "ignore")
                                           for n in read.sequence(spec["ignore"], "ignore"))
        for key in ("exclusive", "fresh"):
            if key in spec:
                optional[key] = read.boolean(spec[key], key)
        if "timeout" in spec:
            optional["timeout"] = read.number(spec["timeout"], "timeout")
        if "tls" in spec:
            optional["tls"] = self._tls(spec["tls"])
        if "library" in spec:
            optional["library"] = read_job(read, spec["library"])
            optional["ignore"] = optional.get("ignore", frozenset())
        if "budget" in spec:
            optional["budget"] = read.number(spec["budget"], "budget")
        return optional

    def _sections(self, spec: dict[str, yaml.Node]) -> list[str]:
        sections = []
        for i, item in enumerate(self.read.sequence(spec["sections"], "sections")
                                 if "sections" in spec else []):
            section = self.read.scalar(item, f"sections[{i}]")
            if section not in SECTIONS:
                raise self.read.error(item, f"sections[{i}]", f"{section!r} is not a protocol "
                                      f"section (known: {', '.join(SECTIONS)})")
            sections.append(section)
        return sections

    def _tls(self, node: yaml.Node) -> dict[str, str]:
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

    def _packet_type(self, node: yaml.Node, where: str) -> PacketType:
        name = self.read.scalar(node, where)
        try:
            return PacketType[name]
        except KeyError:
            raise self.read.error(node, where, f"{name!r} is not a packet type") from None

    def _source(self, node: yaml.Node) -> str:
        """A node's text as written (indentation of its first line removed)."""
        if not self.text or node.start_mark is None:
            return ""
        text = self.text[node.start_mark.index:node.end_mark.index].rstrip()
        return textwrap.dedent(" " * node.start_mark.column + text).strip("\n")

    def step(self, node: yaml.Node, where: str, source: bool = False) -> Step:
        """One step: its key split, its verb's record reads the rest."""
        word, written = self._split(node, where)
        verb = VERBS[_key(written.conn, word)]
        for name, modifier in written.modifiers.items():
            if name not in verb.modifiers:
                raise self.read.error(modifier, f"{where}.{name}",
                                      "only a send has a magic" if name == "magic" else
                                      f"{verb.name} takes no {name}")
        if written.args is not None and not verb.args:
            raise self.read.error(written.args, where, f"{verb.name} takes no argument")
        step = verb.read(written)
        if source:
            step.source = self._source(node)
        return step

    def _split(self, node: yaml.Node, where: str) -> tuple[str, Written]:
        """The step's verb word, and the rest as its record reads it."""
        read = self.read
        if isinstance(node, yaml.ScalarNode):
            key, args, modifiers = read.scalar(node, where), None, {}
        else:
            spec = read.mapping(node, where)
            main = [k for k in spec if k not in MODIFIERS]
            if len(main) != 1:
                raise read.error(node, where, "a step is one 'CONN VERB ...' key (plus within, "
                                 f"note, magic, split), found {main or 'none'}")
            key = main[0]
            args = None if is_null(spec[key]) else spec[key]  # "c expect NOOP:" + modifiers
            modifiers = {k: v for k, v in spec.items() if k in MODIFIERS}
        if key in VERBS and VERBS[key].connection == "":
            conn, word, packet = "", key, None
        else:
            match = STEP_KEY.match(key)
            if not match:
                raise read.error(node, where, f"{key!r} is not 'CONN VERB [PACKET]' (verbs: "
                                 f"{CONNECTED}; and {OTHERS})")
            conn, word, packet = match["conn"], match["verb"], match["arg"]
            self._check_verb(node, where, conn, word, packet)
        return word, Written(read, node, where, line_of(node), conn, packet, args, modifiers,
                             read_step=self.step, verb_of=verb_of, mode=self.mode)

    def _check_verb(self, node: yaml.Node, where: str, conn: str, word: str,
                    packet: str | None) -> None:
        if conn == "app" and word in APP_TOO:
            verb = VERBS[word]
        elif conn in PSEUDO:
            verb = VERBS.get(f"{conn} {word}")
            if verb is None:
                words = [v.name for v in VERBS.values() if v.connection == conn]
                raise self.read.error(node, where, f"{conn} {word!r}: {conn} takes "
                                      f"{' or '.join(words)}")
        else:
            verb = VERBS.get(word)
            if verb is None or verb.connection is not None:
                raise self.read.error(node, where, f"unknown verb {word!r} (verbs: {CONNECTED})")
        if packet is not None and not verb.packet:
            raise self.read.error(node, where, f"{word} takes no packet type")
        if packet is None and verb.packet:
            raise self.read.error(node, where, f"{word} needs a packet type, e.g. "
                                  f"'{conn} {word} ECHO_REQ'")


def _key(conn: str, word: str) -> str:
    """The verb table's key for a step's connection and verb word."""
    if not conn or conn not in PSEUDO or (conn == "app" and word in APP_TOO):
        return word
    return f"{conn} {word}"


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


def load_case(data: dict[str, Any], prefix: str, origin: str = "<generated>") -> Scenario:
    """A case given as plain data (what a file would hold, as Python values) read by
    the same reader: how fuzz findings and captures become scenarios."""
    return Loader(origin).scenario(as_node(data), prefix)


def load_step(data: Any, origin: str = "<generated>", mode: str = "server") -> Step:
    """One step given as plain data (``"c expect-closed"``, ``{"c send ECHO_REQ":
    {"data": "x"}}``), of a server case or (``mode="library"``) of a library case."""
    loader = Loader(origin)
    loader.mode = mode
    return loader.step(as_node(data), "step")
