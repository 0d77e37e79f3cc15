"""The adapter of aiogear (asyncio ``Client``, ``CallbackClient``, ``Worker``), to README.md.

Runs under aiogear's own virtualenv and imports nothing from gearspec.  aiogear's
protocols are asyncio ``Protocol`` classes made with ``loop.create_connection``.

A client job goes to one of aiogear's two client classes:

* ``CallbackClient`` is the only one that tells the application of WORK_DATA,
  WORK_WARNING and WORK_STATUS (``set_update_callback``); it submits one group of
  foreground jobs of one function (``submit_jobs(function, [(uuid, data, priority)])``),
  and has no status query, no option request and no background submit.  The adapter
  uses it when the job fits: every submit foreground and of one function, no
  ``status`` and no ``exceptions``.  It takes a uuid for every job (None breaks its
  packer), so a submit without a unique gets one made here.  Its ``complete`` update
  carries only how the job ended (``WORK_COMPLETE``, ``WORK_FAIL``, ``WORK_EXCEPTION``);
  the payload is in ``completed_results``, in the order the jobs ended.
* ``Client`` for anything else: ``submit_job[_high|_low][_bg]`` (it waits for
  JOB_CREATED), ``wait_job(handle)`` for the end, ``get_status``,
  ``get_status_unique`` and ``option_req``.  A ``Client`` drops WORK_DATA,
  WORK_WARNING and WORK_STATUS (it logs them as unexpected).  The end it reports is
  printed with the handle the library's answer carries.

aiogear decodes every payload it receives as UTF-8 (and encodes str as ASCII): the
adapter sends the job's bytes as bytes, and prints what it received encoded back as
UTF-8; it is not binary-safe.  A worker is ``Worker(*functions, grab_type=
GRAB_JOB_UNIQ, timeout=...)``: a function's return value is WORK_COMPLETE and an
exception it raises is WORK_EXCEPTION; the adapter stops it after ``jobs`` jobs.

Not in ``describe``: ``client.epoch`` (no SUBMIT_JOB_EPOCH method), ``client.echo``
and ``client.client-id`` (the clients have neither), ``worker.data``,
``worker.warning``, ``worker.status`` (a worker job cannot send them),
``worker.fail`` (a job ends in WORK_COMPLETE or WORK_EXCEPTION: nothing sends a
WORK_FAIL but an unknown function), ``binary``.  One ``timeout`` goes with all of a
worker's functions (CAN_DO_TIMEOUT for each, or CAN_DO for all).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

from aiogear import CallbackClient, Client, PacketType, Worker
from aiogear.response import WorkComplete, WorkException, WorkFail

FEATURES = ["client.created", "client.background", "client.priority", "client.unique",
            "client.concurrent", "client.data", "client.warning", "client.progress",
            "client.exceptions", "client.status", "client.status-unique",
            "worker.exception", "worker.timeout", "worker.client-id"]


def emit(event: str, **fields: Any) -> None:
    """One event, bytes as Latin-1 text (the contract's encoding)."""
    shown = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in fields.items()}
    print(json.dumps({"event": event, **shown}), flush=True)


def b(text: str) -> bytes:
    return text.encode("latin-1")


def got(value: Any) -> bytes:
    """What aiogear handed over (str: it decoded the bytes as UTF-8) as bytes again."""
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _unsupported_client(job: dict[str, Any]) -> str | None:
    if "client_id" in job:
        return "aiogear's clients have no SET_CLIENT_ID (only Worker.set_client_id)"
    if job.get("echo"):
        return "aiogear's clients have no echo (no ECHO_REQ)"
    if any("epoch" in submit for submit in job.get("submit", [])):
        return "aiogear cannot submit an epoch job (only submit_job_sched: SUBMIT_JOB_SCHED)"
    return None


def _fits_callback_client(job: dict[str, Any]) -> bool:
    submits = job.get("submit", [])
    return bool(submits) and not job.get("status") and not job.get("exceptions") \
        and len({s["function"] for s in submits}) == 1 \
        and not any(s.get("background") for s in submits)


async def client(job: dict[str, Any], host: str, port: int) -> None:
    why = _unsupported_client(job)
    if why:
        emit("unsupported", reason=why)
        return
    loop = asyncio.get_running_loop()
    if _fits_callback_client(job):
        _, gearman = await loop.create_connection(CallbackClient, host, port)
        try:
            await _callback_client(gearman, job)
        finally:
            if gearman.transport is not None:
                await gearman.close()
    else:
        _, gearman = await loop.create_connection(Client, host, port)
        try:
            await _plain_client(gearman, job)
        finally:
            if gearman.transport is not None:
                await gearman.close()


async def _callback_client(gearman: CallbackClient, job: dict[str, Any]) -> None:
    submits = job["submit"]
    priority = {"high": PacketType.SUBMIT_JOB_HIGH, "normal": PacketType.SUBMIT_JOB,
                "low": PacketType.SUBMIT_JOB_LOW}
    uuids = [b(s["unique"]) if "unique" in s else uuid.uuid4().hex.encode() for s in submits]
    index = {}
    for i, key in enumerate(uuids):
        index.setdefault(key, i)
    created: set[int] = set()
    ended = [0]

    def announce(i: int) -> None:
        if i not in created:
            created.add(i)
            handle = next((h for h, u in gearman.handles_to_job.items() if u == uuids[i]), None)
            emit("created", job=i, handle=got(handle))

    async def update(kind: str, key: Any, data: Any) -> None:
        if key is None:  # a 'progress' count of the whole group
            return
        i = index.get(key)
        if i is None:
            emit("error", message=f"an update for a job not submitted: {kind} {key!r}")
            return
        announce(i)
        if kind == "data":
            emit("data", job=i, data=got(data))
        elif kind == "warning":
            emit("warning", job=i, data=got(data))
        elif kind == "status":
            emit("status", job=i, numerator=data["complete"], denominator=data["total"])
        elif kind == "complete":
            state, result = gearman.completed_results[ended[0]]
            ended[0] += 1
            if state == "COMPLETE":
                emit("complete", job=i, data=got(result))
            elif state == "EXCEPTION":
                emit("exception", job=i, data=got(result))
            else:
                emit("fail", job=i)

    gearman.set_update_callback(update)
    _, completed = await gearman.submit_jobs(
        b(submits[0]["function"]),
        [(key, b(s.get("workload", "")), priority[s.get("priority", "normal")])
         for key, s in zip(uuids, submits)])
    for i in range(len(submits)):
        announce(i)
    if job.get("wait", True):
        await completed
        for _ in range(3):  # the update callbacks run as tasks of their own
            await asyncio.sleep(0)


async def _plain_client(gearman: Client, job: dict[str, Any]) -> None:
    if job.get("exceptions"):
        answer = await gearman.option_req("exceptions")
        if isinstance(answer, list):  # an ERROR: [code, text]
            emit("error", message=f"option_req('exceptions'): ERROR {answer!r}")
    submit_with = {
        ("normal", False): gearman.submit_job, ("high", False): gearman.submit_job_high,
        ("low", False): gearman.submit_job_low, ("normal", True): gearman.submit_job_bg,
        ("high", True): gearman.submit_job_high_bg, ("low", True): gearman.submit_job_low_bg}
    handles: list[Any] = []
    ends: list[tuple[int, Any]] = []
    for i, submit in enumerate(job.get("submit", [])):
        background = bool(submit.get("background"))
        method = submit_with[(submit.get("priority", "normal"), background)]
        kwargs = {"uuid": b(submit["unique"])} if "unique" in submit else {}
        created = await method(b(submit["function"]), b(submit.get("workload", "")), **kwargs)
        emit("created", job=i, handle=got(created.handle))
        handles.append(created.handle)
        if not background:
            try:
                ends.append((i, gearman.wait_job(created.handle)))
            except RuntimeError as error:  # it ended before wait_job could find it
                emit("error", job=i, message=_failure(error))
    for q, query in enumerate(job.get("status", [])):
        if "unique" in query:
            answer = await gearman.get_status_unique(b(query["unique"]))
        else:
            handle = handles[query["handle_of"]] if "handle_of" in query \
                else b(query["handle"])
            answer = await gearman.get_status(handle)
        fields = {"known": answer.known, "running": answer.running,
                  "numerator": answer.numerator, "denominator": answer.denominator}
        if hasattr(answer, "waiting"):
            fields["waiting"] = answer.waiting
        emit("status-answer", query=q, **fields)
    if not job.get("wait", True):
        return
    which = {id(end): i for i, end in ends}
    pending = {end for _, end in ends}
    while pending:  # each end as it comes
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for end in sorted(done, key=lambda f: which[id(f)]):
            i, answer = which[id(end)], end.result()
            if isinstance(answer, WorkComplete):
                emit("complete", job=i, data=got(answer.result), handle=got(answer.handle))
            elif isinstance(answer, WorkException):
                emit("exception", job=i, data=got(answer.exception), handle=got(answer.handle))
            elif isinstance(answer, WorkFail):
                emit("fail", job=i, handle=got(answer.handle))
            else:
                emit("error", job=i, message=f"wait_job gave {answer!r}")


def _unsupported_worker(job: dict[str, Any]) -> str | None:
    for name, spec in job["functions"].items():
        for action in spec.get("actions", []):
            for kind in ("data", "warning", "status"):
                if kind in action:
                    return f"an aiogear worker job cannot send WORK_{kind.upper()} " \
                           f"({name}): Worker has no method for it"
            if "fail" in action:
                return f"an aiogear worker job cannot fail ({name}): it ends in " \
                       "WORK_COMPLETE, or WORK_EXCEPTION when it raises"
    if len({spec.get("timeout") for spec in job["functions"].values()}) > 1:
        return "aiogear's Worker takes one timeout for all its functions"
    return None


class JobRaised(Exception):
    pass


async def worker(job: dict[str, Any], host: str, port: int) -> None:
    why = _unsupported_worker(job)
    if why:
        emit("unsupported", reason=why)
        return
    jobs = int(job.get("jobs", 1))
    started = [0]
    enough = asyncio.Event()

    def function(actions: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
        async def run(info: Any) -> bytes:
            started[0] += 1
            try:
                emit("job", function=got(info.function), handle=got(info.handle),
                     unique=got(info.uuid), workload=got(info.workload))
                for action in actions:
                    [(kind, value)] = action.items()
                    if kind == "sleep":
                        await asyncio.sleep(float(value))
                    elif kind == "exception":
                        raise JobRaised(value)  # aiogear sends str(exception)
                    elif kind == "complete":
                        return b(value)
                    elif kind == "complete-workload":
                        return got(info.workload)
                return b""
            finally:
                if started[0] >= jobs:
                    enough.set()
        return run

    specs = job["functions"]
    timeout = next(iter({spec.get("timeout") for spec in specs.values()}), None)
    gearman = Worker(*[(function(spec.get("actions", [])), name) for name, spec in specs.items()],
                     grab_type=PacketType.GRAB_JOB_UNIQ, timeout=timeout)
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: gearman, host, port)
    if "client_id" in job:
        gearman.set_client_id(job["client_id"])
    await enough.wait()
    while gearman.running:  # the last job's WORK_COMPLETE/EXCEPTION is sent, then it is gone
        await asyncio.sleep(0.01)
    await gearman.shutdown()
    for _ in range(100):  # close() flushes what is buffered, then the connection goes
        if gearman.transport is None:
            break
        await asyncio.sleep(0.01)


def main() -> int:
    if sys.argv[1:] == ["describe"]:
        print(json.dumps({"library": "aiogear", "version": version("aiogear"),
                          "roles": ["client", "worker"], "features": FEATURES}))
        return 0
    if sys.argv[1:] != ["run"]:
        print(f"usage: {sys.argv[0]} describe|run", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s: %(message)s")
    job = json.loads(Path(os.environ["GEARSPEC_JOB"]).read_text())
    host, _, port = os.environ["GEARSPEC_SERVER"].rpartition(":")
    asyncio.run((client if job["role"] == "client" else worker)(job, host, int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
