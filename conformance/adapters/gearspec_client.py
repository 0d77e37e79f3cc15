"""The adapter of gearspec's own client library (``reference_server.client``).

One of the libraries the client catalog measures, written to the contract in
README.md like every other adapter: ``describe`` or ``run`` (the job in
``$GEARSPEC_JOB``, the server in ``$GEARSPEC_SERVER``), events as JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script

from reference_server import __version__
from reference_server.client import (
    Client,
    GearmanError,
    JobException,
    JobFailed,
    Priority,
    Worker,
    WorkerJob,
    WorkFailed,
)

FEATURES = ["client.created", "client.background", "client.priority", "client.epoch",
            "client.unique",
            "client.concurrent", "client.data", "client.warning", "client.progress",
            "client.exceptions", "client.status", "client.status-unique", "client.echo",
            "client.client-id", "worker.data", "worker.warning", "worker.status",
            "worker.fail", "worker.exception", "worker.timeout", "worker.client-id", "binary"]
PRIORITY = {"high": Priority.HIGH, "normal": Priority.NORMAL, "low": Priority.LOW}


def emit(event: str, **fields: Any) -> None:
    """One event, bytes as Latin-1 text (the contract's encoding)."""
    shown = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in fields.items()}
    print(json.dumps({"event": event, **shown}), flush=True)


def b(text: str) -> bytes:
    return text.encode("latin-1")


async def client(job: dict[str, Any], server: str) -> None:
    async with await Client.connect(server) as gearman:
        if "client_id" in job:
            await gearman.set_client_id(b(job["client_id"]))
        if job.get("exceptions"):
            try:
                await gearman.set_option("exceptions")
            except GearmanError as error:
                emit("error", message=str(error))
        jobs = []
        for index, submit in enumerate(job.get("submit", [])):
            jobs.append(await _submit(gearman, index, submit))
        for index, query in enumerate(job.get("status", [])):
            await _status(gearman, index, query, jobs)
        for text in job.get("echo", []):
            try:
                emit("echo", data=await gearman.echo(b(text)))
            except GearmanError as error:
                emit("error", message=str(error))
        if job.get("wait", True):  # each result as it comes, whatever the jobs' order
            await asyncio.gather(*(_result(index, submitted)
                                   for index, submitted in enumerate(jobs)
                                   if submitted is not None and not submitted.background))


async def _submit(gearman: Client, index: int, submit: dict[str, Any]) -> Any:
    def on(event: str):  # type: ignore[no-untyped-def]
        return lambda data: emit(event, job=index, data=data)

    try:
        submitted = await gearman.submit(
            b(submit["function"]), b(submit.get("workload", "")),
            unique=b(submit.get("unique", "")), priority=PRIORITY[submit.get("priority",
                                                                             "normal")],
            background=bool(submit.get("background")), epoch=submit.get("epoch"),
            on_data=on("data"), on_warning=on("warning"),
            on_status=lambda n, d: emit("status", job=index, numerator=n, denominator=d))
    except GearmanError as error:
        emit("error", job=index, message=str(error))
        return None
    emit("created", job=index, handle=submitted.handle)
    return submitted


async def _status(gearman: Client, index: int, query: dict[str, Any], jobs: list[Any]) -> None:
    try:
        if "unique" in query:
            answer = await gearman.get_status_unique(b(query["unique"]))
        else:
            handle = jobs[query["handle_of"]].handle if "handle_of" in query \
                else b(query["handle"])
            answer = await gearman.get_status(handle)
    except GearmanError as error:
        emit("error", message=str(error))
        return
    fields: dict[str, Any] = {"known": answer.known, "running": answer.running,
                              "numerator": answer.numerator,
                              "denominator": answer.denominator}
    if answer.waiting_clients is not None:
        fields["waiting"] = answer.waiting_clients
    emit("status-answer", query=index, **fields)


async def _result(index: int, submitted: Any) -> None:
    try:
        emit("complete", job=index, data=await submitted.result())
    except JobException as error:
        emit("exception", job=index, data=error.data)
    except JobFailed:
        emit("fail", job=index)
    except GearmanError as error:
        emit("error", job=index, message=str(error))


async def worker(job: dict[str, Any], server: str) -> None:
    client_id = b(job["client_id"]) if "client_id" in job else None
    async with await Worker.connect(server, client_id=client_id) as gearman:
        for name, function in job["functions"].items():
            gearman.register(b(name), _handler(function.get("actions", [])),
                             timeout_ms=function.get("timeout"))
        try:
            await gearman.work(max_jobs=job.get("jobs", 1))
        except GearmanError as error:
            emit("error", message=str(error))


def _handler(actions: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    async def run(work: WorkerJob) -> bytes:
        emit("job", function=work.function, handle=work.handle, unique=work.unique,
             workload=work.data)
        for action in actions:
            [(kind, value)] = action.items()
            if kind == "data":
                work.send_data(b(value))
            elif kind == "warning":
                work.send_warning(b(value))
            elif kind == "status":
                work.send_status(int(value[0]), int(value[1]))
            elif kind == "sleep":
                await asyncio.sleep(float(value))
            elif kind == "fail":
                raise WorkFailed()
            elif kind == "exception":
                raise RuntimeError(value)
            elif kind == "complete":
                return b(value)
            elif kind == "complete-workload":
                return work.data
        return b""
    return run


def main() -> int:
    if sys.argv[1:] == ["describe"]:
        print(json.dumps({"library": "gearspec client (reference_server.client)",
                          "version": __version__, "roles": ["client", "worker"],
                          "features": FEATURES}))
        return 0
    job = json.loads(Path(os.environ["GEARSPEC_JOB"]).read_text())
    server = os.environ["GEARSPEC_SERVER"]
    asyncio.run((client if job["role"] == "client" else worker)(job, server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
