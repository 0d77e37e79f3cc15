"""``Worker``: register functions and run jobs (the GRAB / PRE_SLEEP / NOOP loop)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from reference_server.client.errors import ConnectionClosed, ServerError
from reference_server.client.link import Link, to_bytes
from reference_server.client.workload import from_json
from reference_server.protocol import Packet, PacketType, ProtocolError

T = PacketType


_ASSIGNMENTS = frozenset({T.JOB_ASSIGN, T.JOB_ASSIGN_UNIQ, T.JOB_ASSIGN_ALL})


class WorkerJob:
    """A job handed to a worker function: its fields, and ways to report progress."""

    def __init__(self, worker: Worker, packet: Packet) -> None:
        fields = packet.fields()
        self.handle: bytes = fields["handle"]
        self.function: bytes = fields["function"]
        self.unique: bytes = fields.get("unique", b"")
        self.reducer: bytes = fields.get("reducer", b"")
        self.data: bytes = fields["data"]
        self._link = worker.link

    def send_data(self, data: bytes | str) -> None:
        self._link.send(T.WORK_DATA, self.handle, to_bytes(data))

    def send_warning(self, data: bytes | str) -> None:
        self._link.send(T.WORK_WARNING, self.handle, to_bytes(data))

    def send_status(self, numerator: int, denominator: int) -> None:
        self._link.send(T.WORK_STATUS, self.handle, b"%d" % numerator, b"%d" % denominator)

    def json(self) -> Any:
        return from_json(self.data)


Handler = Callable[[WorkerJob], "bytes | str | Awaitable[bytes | str | None] | None"]


class WorkFailed(Exception):
    """Raise from a worker function to end the job with WORK_FAIL."""


class Worker:
    """Registers functions and runs jobs: GRAB_JOB_UNIQ; NO_JOB → PRE_SLEEP until NOOP.

    A handler returns the result (bytes or str); raising ``WorkFailed`` sends
    WORK_FAIL, any other exception sends WORK_EXCEPTION with its text."""

    def __init__(self, link: Link, *, client_id: bytes | str | None = None) -> None:
        self.link = link
        self.handlers: dict[bytes, Handler] = {}
        self.jobs_done = 0
        if client_id is not None:
            link.send(T.SET_CLIENT_ID, to_bytes(client_id))

    @classmethod
    async def connect(cls, address: str | tuple[str, int], *, timeout: float = 5.0,
                      client_id: bytes | str | None = None) -> Worker:
        return cls(await Link.open(address, timeout=timeout), client_id=client_id)

    async def __aenter__(self) -> Worker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.link.close()

    def register(self, function: bytes | str, handler: Handler, *,
                 timeout_ms: int | None = None) -> None:
        """CAN_DO (or CAN_DO_TIMEOUT with a timeout in milliseconds)."""
        name = to_bytes(function)
        self.handlers[name] = handler
        if timeout_ms is None:
            self.link.send(T.CAN_DO, name)
        else:
            self.link.send(T.CAN_DO_TIMEOUT, name, b"%d" % timeout_ms)

    def unregister(self, function: bytes | str) -> None:
        name = to_bytes(function)
        self.handlers.pop(name, None)
        self.link.send(T.CANT_DO, name)

    async def work(self, max_jobs: int | None = None) -> None:
        """Run jobs until ``max_jobs`` are done (forever if None) or the server goes
        (``ConnectionClosed``; a stream that is not Gearman is one too).

        One grab at a time: a NOOP that crosses a grab is dropped (the next grab comes
        anyway); after NO_JOB the worker says PRE_SLEEP and waits to be woken, and an
        assignment that comes instead of the NOOP is run, not thrown away."""
        while max_jobs is None or self.jobs_done < max_jobs:
            await self._tell(T.GRAB_JOB_UNIQ)
            answer = await self._next_packet(skip=T.NOOP)
            if answer.type == T.NO_JOB:
                await self._tell(T.PRE_SLEEP)
                answer = await self._next_packet()
            if answer.type in _ASSIGNMENTS:
                await self._run(WorkerJob(self, answer))
            elif answer.type == T.ERROR:
                raise ServerError(answer.args[0], answer.args[1])

    async def _tell(self, packet_type: int) -> None:
        try:
            self.link.send(packet_type)
            await self.link.drain()
        except OSError as error:
            raise ConnectionClosed(f"the connection failed: {error}") from None

    async def _next_packet(self, skip: int | None = None) -> Packet:
        try:
            while True:
                event = await self.link.next_event()
                if isinstance(event, Packet) and event.type != skip:
                    return event
                if not isinstance(event, Packet):
                    raise ProtocolError(f"the server sent a text line: {event.raw[:60]!r}")
        except ProtocolError as error:
            raise ConnectionClosed(f"the server sent what is not Gearman: {error}") from None
        except OSError as error:
            raise ConnectionClosed(f"the connection failed: {error}") from None

    async def _run(self, job: WorkerJob) -> None:
        handler = self.handlers.get(job.function)
        try:
            if handler is None:
                raise WorkFailed(f"no handler for {job.function!r}")
            result = handler(job)
            if inspect.isawaitable(result):
                result = await result
        except WorkFailed:
            self.link.send(T.WORK_FAIL, job.handle)
        except Exception as error:  # the job failed, not the worker
            self.link.send(T.WORK_EXCEPTION, job.handle, str(error).encode())
        else:
            self.link.send(T.WORK_COMPLETE, job.handle, to_bytes(result or b""))
        self.jobs_done += 1
