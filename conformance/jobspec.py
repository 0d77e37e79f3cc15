"""What the application does, in a client-mode case: the job an adapter is given.

A case that tests a client or worker library (``library:`` in its file) says
what the application using that library does: submit these jobs, ask for this
status, echo this; or register these functions and do this with each job.
The harness writes it as JSON for the library's adapter
(``conformance/adapters/README.md`` is the contract), after putting the
case's variables in, and works out from it (and from what the case expects the
application to see) which features of the library the case needs, so that a
library without, say, a WORK_WARNING callback gets the case as UNSUPPORTED
with that reason rather than as a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from conformance.nodes import Reader

ROLES = ("client", "worker")
PRIORITIES = ("high", "normal", "low")
CLIENT_KEYS = {"role", "client_id", "exceptions", "submit", "status", "echo", "wait"}
WORKER_KEYS = {"role", "client_id", "functions", "jobs"}
SUBMIT_KEYS = {"function", "workload", "unique", "priority", "background", "epoch"}
STATUS_KEYS = {"handle_of", "handle", "unique"}
ACTIONS = {"data", "warning", "status", "sleep", "complete", "complete-workload", "fail",
           "exception"}
ENDINGS = {"complete", "complete-workload", "fail", "exception"}

#: What the application seeing an event asks of the library (``app reports EVENT``).
EVENT_NEEDS = {"created": "client.created", "data": "client.data", "warning": "client.warning",
               "status": "client.progress", "exception": "client.exceptions",
               "status-answer": "client.status", "echo": "client.echo"}


@dataclass(frozen=True)
class JobSpec:
    """The application's part of a case, as plain data (what the adapter is given)."""

    data: dict[str, Any]

    @property
    def role(self) -> str:
        return str(self.data["role"])

    @property
    def needs(self) -> set[str]:
        """The library features this job uses (``describe`` lists what a library has)."""
        job, role = self.data, self.role
        needs = {f"role.{role}"}
        if "client_id" in job:
            needs.add(f"{role}.client-id")
        if role == "client":
            submits = job.get("submit", [])
            needs |= {"client.concurrent"} if len(submits) > 1 else set()
            for submit in submits:
                needs |= {feature for key, feature in (
                    ("background", "client.background"), ("epoch", "client.epoch"),
                    ("unique", "client.unique")) if submit.get(key)}
                if submit.get("priority", "normal") != "normal":
                    needs.add("client.priority")
            if job.get("exceptions"):
                needs.add("client.exceptions")
            for query in job.get("status", []):
                needs.add("client.status-unique" if "unique" in query else "client.status")
            if job.get("echo"):
                needs.add("client.echo")
        else:
            for function in job.get("functions", {}).values():
                if function.get("timeout") is not None:
                    needs.add("worker.timeout")
                for action in function.get("actions", []):
                    needs |= {f"worker.{key}" for key in action
                              if key in ("data", "warning", "status", "fail", "exception")}
        if any(binary_text(text) for text in _strings(job)):
            needs.add("binary")
        return needs

    def resolved(self, resolve: Callable[[str], str]) -> dict[str, Any]:
        """The job with every string passed through ``resolve`` (the case's variables),
        and ``{repeat: TEXT, times: N}`` written out (a workload of several MiB)."""
        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return resolve(value)
            if isinstance(value, dict) and set(value) == {"repeat", "times"}:
                return resolve(str(value["repeat"])) * int(value["times"])
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, dict):
                return {resolve(k) if isinstance(k, str) else k: walk(v)
                        for k, v in value.items()}
            return value
        return walk(self.data)  # type: ignore[no-any-return]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and set(value) == {"repeat", "times"}:
        return [str(value["repeat"])]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    return []


def binary_text(text: str) -> bool:
    """Not plain printable ASCII: a NUL, a control byte, a byte over 0x7e."""
    return any(not (" " <= c <= "~") for c in text)


def read_job(reader: Reader, node: yaml.Node) -> JobSpec:
    """The ``library:`` key of a case, checked with file:line errors."""
    spec = reader.mapping(node, "library")
    role = reader.scalar(spec["role"], "library.role") if "role" in spec else ""
    if role not in ROLES:
        raise reader.error(spec.get("role", node), "library.role",
                           f"{role!r}: a library case's role is client or worker")
    known = CLIENT_KEYS if role == "client" else WORKER_KEYS
    reader.keys(spec, node, "library", known, f"a {role} job has {', '.join(sorted(known))}")
    data = yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    check = _check_client if role == "client" else _check_worker
    problem = check(data)
    if problem is not None:
        where, message = problem
        raise reader.error(node, f"library.{where}", message)
    return JobSpec(data)


def _check_client(job: dict[str, Any]) -> tuple[str, str] | None:
    submits = job.get("submit", [])
    if not isinstance(submits, list) or not all(isinstance(s, dict) for s in submits):
        return "submit", "a list of jobs, each {function, workload, ...}"
    for i, submit in enumerate(submits):
        unknown = set(submit) - SUBMIT_KEYS
        if unknown:
            return f"submit[{i}]", f"unknown key {sorted(unknown)[0]!r} (known: " \
                f"{', '.join(sorted(SUBMIT_KEYS))})"
        if "function" not in submit:
            return f"submit[{i}]", "a job needs its function"
        if submit.get("priority", "normal") not in PRIORITIES:
            return f"submit[{i}].priority", f"one of {', '.join(PRIORITIES)}"
    for i, query in enumerate(job.get("status", [])):
        if not isinstance(query, dict) or len(set(query) & STATUS_KEYS) != 1:
            return f"status[{i}]", "one of {handle_of: N}, {handle: H} or {unique: U}"
    if not isinstance(job.get("echo", []), list):
        return "echo", "a list of texts"
    return None


def _check_worker(job: dict[str, Any]) -> tuple[str, str] | None:
    functions = job.get("functions")
    if not isinstance(functions, dict) or not functions:
        return "functions", "a mapping: function name → {actions: [...], timeout: MS}"
    for name, function in functions.items():
        if not isinstance(function, dict) or set(function) - {"actions", "timeout"}:
            return f"functions.{name}", "{actions: [...], timeout: MS}"
        for i, action in enumerate(function.get("actions", [])):
            if not isinstance(action, dict) or len(action) != 1 or set(action) - ACTIONS:
                return f"functions.{name}.actions[{i}]", \
                    f"one of {', '.join(sorted(ACTIONS))}, e.g. {{data: part}}"
    return None
