"""The verb table: every step verb of the scenario format, one record each.

=================  =======================================================
family             verbs
=================  =======================================================
``send``           send, send-raw, send-line, send-text, hangup, finish
``expect``         expect, expect-line, expect-lines, expect-list,
                   expect-closed, expect-nothing, expect-stalled,
                   expect-silence
``alternatives``   expect-one-of
``http``           http-request, expect-http
``control``        sleep, target restart, target kill, expect-refused
``app``            app reports, app finishes (library cases)
``serve``          assign, send-together, keeps-idle, listener restart
                   (the server the harness plays in a library case)
=================  =======================================================

``VERBS`` finds a record by the word written in a file (the loader), and
``verb_of`` by a step's class (the engine, the writer, coverage).  To add a
verb, write its step class and record in a family module and list it below.
"""

from __future__ import annotations

from typing import Any

import yaml

from conformance.scenario import Step
from conformance.verbs import alternatives, app, control, expect, http, send, serve
from conformance.verbs.record import NO_ARGS, Form, Verb, Written

_ALL: tuple[Verb, ...] = (*send.VERBS, *expect.VERBS, *alternatives.VERBS, *http.VERBS,
                          *control.VERBS, *app.VERBS, *serve.VERBS)

#: The word in a file → its record ("send", "expect-line"; for the verbs of a
#: pseudo-connection, with it: "target restart", "app reports", "listener restart").
VERBS: dict[str, Verb] = {verb.key: verb for verb in _ALL}
#: The pseudo-connections: names that are not connections but the target, the
#: application of a library case, the listener of a library case.
PSEUDO = frozenset(verb.connection for verb in _ALL if verb.connection)

#: A step class → the record that writes and plays it (the first listed, where two verbs
#: read into one class: send-line/send-text, expect-line/expect-lines, restart/kill).
BY_STEP: dict[type[Step], Verb] = {}
for _verb in _ALL:
    BY_STEP.setdefault(_verb.step, _verb)


def verb_of(step: Step) -> Verb:
    return BY_STEP[type(step)]


def step_data(step: Step) -> Any:
    """A step as plain data, exactly as a file would say it (the loader reads it back
    as the same step): ``"c expect-closed"`` or ``{"c send ECHO_REQ": {...}, "note": ...}``."""
    verb = verb_of(step)
    form = verb.write(step)
    word = form.verb or verb.name
    key = word if verb.connection == "" else f"{step.conn} {word}"  # "app expect-one-of" too
    if form.packet:
        key += f" {form.packet}"
    modifiers = dict(form.modifiers)
    if getattr(step, "within", None) is not None:
        modifiers["within"] = step.within  # type: ignore[attr-defined]
    if step.note:
        modifiers["note"] = step.note
    args = _nested(form.args)
    if args is NO_ARGS and not modifiers:
        return key
    return {key: None if args is NO_ARGS else args, **modifiers}


def _nested(args: Any) -> Any:
    """Steps held in an argument (expect-one-of's alternatives) written as data too."""
    if isinstance(args, Step):
        return step_data(args)
    if isinstance(args, list):
        return [_nested(item) for item in args]
    if isinstance(args, dict):
        return {key: _nested(value) for key, value in args.items()}
    return args


def describe_step(step: Step) -> str:
    """One line for a step, as it would be written: for reports and failures."""
    if step.source:
        return " ".join(step.source.split())
    data = step_data(step)
    if isinstance(data, str):
        return data
    return " ".join(yaml.safe_dump(data, default_flow_style=True, width=1 << 16,
                                   allow_unicode=True).split()).strip("{}")


__all__ = ["BY_STEP", "NO_ARGS", "PSEUDO", "VERBS", "Form", "Verb", "Written", "describe_step",
           "step_data", "verb_of"]
