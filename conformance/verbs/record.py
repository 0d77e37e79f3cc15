"""The shape of one verb: everything gearspec knows about a step kind, in one record.

After h11's ``READERS`` table and h2's frame dispatch: the loader, the engine,
the writer, coverage and the report look a step up by its verb (or its step
class) and call the record's functions; none of them holds a chain of
``isinstance`` tests over step kinds.  Adding a verb is adding a record (and
listing it in ``conformance.verbs``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from conformance.context import Context
from conformance.events import Event
from conformance.match import Result, Scope
from conformance.nodes import Reader
from conformance.scenario import Step

NO_ARGS = object()  # a step without argument ("c expect-closed")


@dataclass(frozen=True)
class Form:
    """A step as ``write`` gives it back: the verb word if not the record's own
    (one step class may be written by two verbs: ``send-line``/``send-text``), the
    packet word, the argument as plain data, and modifiers of its own (``magic``;
    the writer adds ``note`` and ``within``)."""

    args: Any = NO_ARGS
    packet: str | None = None
    verb: str | None = None
    modifiers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Written:
    """A step as written in a file, split by the loader: ``CONN VERB [PACKET]: ARGS``
    plus its modifiers (``within``, ``note``, ``magic``)."""

    reader: Reader
    node: yaml.Node  # the whole step, for errors
    where: str  # "steps[3]", for errors
    line: int
    conn: str
    packet: str | None
    args: yaml.Node | None
    modifiers: dict[str, yaml.Node] = field(default_factory=dict)
    # Reads a step nested in this one (expect-one-of's alternatives), and finds the
    # record of a step: given by the loader, which holds the table.
    read_step: Callable[[yaml.Node, str], Step] | None = None
    verb_of: Callable[[Step], Verb] | None = None
    # "server": the target is a job server, the harness its clients and workers;
    # "library": the target is a library, the harness its job server (so a send is a
    # response, \0RES, and an expect a request, \0REQ).
    mode: str = "server"

    def error(self, message: str, node: yaml.Node | None = None, where: str = "") -> Exception:
        return self.reader.error(node if node is not None else self.node, where or self.where,
                                 message)

    @property
    def note(self) -> str:
        node = self.modifiers.get("note")
        return " ".join(self.reader.scalar(node, f"{self.where}.note").split()) if node else ""

    @property
    def within(self) -> float | None:
        node = self.modifiers.get("within")
        return self.reader.number(node, f"{self.where}.within") if node else None

    def needs_args(self, what: str) -> yaml.Node:
        if self.args is None:
            raise self.error(what)
        return self.args


Perform = Callable[[Context, Any], Awaitable[None]]
Expectation = Callable[[Any, Sequence[Event], Scope], Result]


@dataclass(frozen=True, kw_only=True)
class Verb:
    """One step verb.

    ``read`` makes the step from what the loader split (raising the reader's
    file:line errors); ``write`` gives it back as plain data (a ``Form``), so
    that writing then reading gives the same step; ``perform`` plays it
    (raising ``StepFailed`` with what was expected and what arrived, or
    ``HarnessError``).  An expectation also has
    ``expect``: a pure function from the events received so far to met, unmet
    or pending (``conformance.match``), and ``gather``: how the engine collects
    those events ("stream": as they arrive; "sync": up to an ECHO marker).
    """

    name: str  # as written: "send", "expect-line", "sleep", "restart" ...
    step: type[Step]
    usage: str  # one line for error messages and the scenarios README
    read: Callable[[Written], Step]
    write: Callable[[Any], Form]
    perform: Perform
    packet: bool = False  # takes a packet type after the verb: "c send SUBMIT_JOB"
    args: bool = True  # False: the step takes no argument ("c hangup")
    connection: str | None = None  # None: any name; "": no connection ("sleep: 1");
    # a word: only that one ("target restart")
    modifiers: frozenset[str] = frozenset({"note"})
    expect: Expectation | None = None
    gather: str | None = None  # "stream" or "sync", with ``expect``
    alternative: bool = False  # may stand in an expect-one-of alternative
    covers: Callable[[Any], set[str]] = lambda step: set()  # coverage keys (conformance.coverage)

    @property
    def key(self) -> str:
        """How the table finds it: the word, or for a pseudo-connection's verb the
        connection and the word ("target restart", "listener restart", "app reports")."""
        return f"{self.connection} {self.name}" if self.connection else self.name
