"""``Client``: submit jobs and follow them over one connection.

Replies to requests come back in request order on a connection (gearmand
keeps one outgoing FIFO per connection), so ``Client`` pairs JOB_CREATED,
STATUS_RES, ECHO_RES, OPTION_RES and ERROR with its oldest open request,
while WORK_* packets go to the job their handle names.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reference_server.client.errors import (
    ConnectionClosed,
    GearmanError,
    JobException,
    JobFailed,
    ServerError,
)
from reference_server.client.link import Link, to_bytes
from reference_server.protocol import SUBMIT_TYPES, Packet, PacketType, Priority, ProtocolError

T = PacketType


@dataclass(slots=True)
class JobStatus:
    """STATUS_RES / STATUS_RES_UNIQUE, with numbers parsed."""

    known: bool
    running: bool
    numerator: int
    denominator: int
    waiting_clients: int | None = None  # only from GET_STATUS_UNIQUE

    @classmethod
    def from_args(cls, args: tuple[bytes, ...]) -> JobStatus:
        def number(text: bytes) -> int:
            return int(text) if text.isdigit() else 0

        waiting = number(args[5]) if len(args) > 5 else None
        return cls(args[1] == b"1", args[2] == b"1", number(args[3]), number(args[4]), waiting)


Callback = Callable[..., Any]


@dataclass(eq=False)
class Job:
    """A submitted job, as its client sees it."""

    handle: bytes
    function: bytes
    background: bool
    on_data: Callback | None = None
    on_warning: Callback | None = None
    on_status: Callback | None = None
    data: list[bytes] = field(default_factory=list)
    warnings: list[bytes] = field(default_factory=list)
    status: tuple[int, int] | None = None
    _done: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop()
                                         .create_future())

    async def result(self, timeout: float | None = None) -> bytes:
        """The WORK_COMPLETE data; raises ``JobFailed`` / ``JobException``."""
        if self.background:
            raise GearmanError("a background job sends no result to its client")
        return await asyncio.wait_for(asyncio.shield(self._done), timeout)

    @property
    def done(self) -> bool:
        return self._done.done()


class Client:
    """Submits jobs and follows them over one connection."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._waiting: deque[tuple[int, asyncio.Future[Any], Job | None]] = deque()
        self._jobs: dict[bytes, list[Job]] = {}
        # A connection that submitted the same unique k times gets every WORK_*
        # packet k times in a row (one per submit): apply it once, skip the echoes.
        self._echoes: dict[bytes, tuple[Packet, int]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._error: BaseException | None = None

    @classmethod
    async def connect(cls, address: str | tuple[str, int], *, timeout: float = 5.0) -> Client:
        return cls(await Link.open(address, timeout=timeout))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._reader.cancel()
        await self.link.close()

    def _request(self, packet_type: int, *args: bytes, job: Job | None = None
                 ) -> asyncio.Future[Any]:
        if self._error is not None:
            raise ConnectionClosed(str(self._error))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((packet_type, future, job))
        self.link.send(packet_type, *args)
        return future

    async def submit(self, function: bytes | str, data: bytes | str = b"", *,
                     unique: bytes | str = b"", priority: Priority = Priority.NORMAL,
                     background: bool = False, epoch: int | None = None,
                     on_data: Callback | None = None, on_warning: Callback | None = None,
                     on_status: Callback | None = None) -> Job:
        """Submit a job; returns once the server sent its handle (JOB_CREATED)."""
        function, data, unique = to_bytes(function), to_bytes(data), to_bytes(unique)
        job = Job(b"", function, background or epoch is not None, on_data, on_warning, on_status)
        if epoch is not None:
            if priority is not Priority.NORMAL:
                raise ValueError("epoch jobs run at normal priority")
            future = self._request(T.SUBMIT_JOB_EPOCH, function, unique, b"%d" % epoch, data,
                                   job=job)
        else:
            future = self._request(SUBMIT_TYPES[(priority, background)], function, unique, data,
                                   job=job)
        await future
        return job

    async def run(self, function: bytes | str, data: bytes | str = b"", *,
                  timeout: float | None = None, **options: Any) -> bytes:
        """Submit a foreground job and wait for its result."""
        job = await self.submit(function, data, **options)
        return await job.result(timeout)

    async def submit_reduce(self, function: bytes | str, data: bytes | str, *,
                            reducer: bytes | str, unique: bytes | str = b"",
                            background: bool = False) -> Job:
        """SUBMIT_REDUCE_JOB(_BACKGROUND): four arguments before the data, as libgearman."""
        job = Job(b"", to_bytes(function), background)
        packet_type = T.SUBMIT_REDUCE_JOB_BACKGROUND if background else T.SUBMIT_REDUCE_JOB
        await self._request(packet_type, to_bytes(function), to_bytes(unique),
                            to_bytes(reducer), b"", to_bytes(data), job=job)
        return job

    async def get_status(self, handle: bytes | str) -> JobStatus:
        return JobStatus.from_args(await self._request(T.GET_STATUS, to_bytes(handle)))

    async def get_status_unique(self, unique: bytes | str) -> JobStatus:
        return JobStatus.from_args(await self._request(T.GET_STATUS_UNIQUE, to_bytes(unique)))

    async def echo(self, data: bytes | str) -> bytes:
        args = await self._request(T.ECHO_REQ, to_bytes(data))
        return args[0]  # type: ignore[no-any-return]

    async def set_option(self, option: bytes | str = b"exceptions") -> None:
        await self._request(T.OPTION_REQ, to_bytes(option))

    async def set_client_id(self, client_id: bytes | str) -> None:
        self.link.send(T.SET_CLIENT_ID, to_bytes(client_id))
        await self.link.drain()

    async def _read(self) -> None:
        try:
            while True:
                event = await self.link.next_event()
                if not isinstance(event, Packet):
                    # A server never sends a client text: the stream is not Gearman (or
                    # no longer in step), and nothing after it can be trusted.
                    raise ProtocolError(f"the server sent a text line, not a packet: "
                                        f"{event.raw[:60]!r}")
                self._dispatch(event)
                if event.type in _REPLIES:
                    # Let whoever waited for this answer run before the packets read with
                    # it are delivered: a submitter learns its handle before its job's
                    # first updates reach their callbacks.
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except (ConnectionClosed, ProtocolError, OSError) as error:
            self._fail_all(error)

    def _dispatch(self, packet: Packet) -> None:
        kind = packet.type
        if kind in _REPLIES:
            if not self._waiting:
                if kind == T.ERROR:  # unasked: the jobs it may be about cannot be trusted
                    self._fail_all(ServerError(packet.args[0], packet.args[1]))
                return
            _, future, job = self._waiting.popleft()
            if future.done():
                return
            if kind == T.ERROR:
                future.set_exception(ServerError(packet.args[0], packet.args[1]))
            elif kind == T.JOB_CREATED and job is not None:
                job.handle = packet.args[0]
                if not job.background:
                    self._jobs.setdefault(job.handle, []).append(job)
                future.set_result(job)
            else:
                future.set_result(packet.args)
            return
        if not packet.args:
            return
        # gearmand's WORK_FAIL standing in for a WORK_EXCEPTION carries the handle's NUL.
        handle = packet.args[0].split(b"\0", 1)[0]
        jobs = self._jobs.get(handle)
        if not jobs:
            return
        echo = self._echoes.get(handle)
        if echo is not None and echo[1] and echo[0] == packet:
            self._echoes[handle] = (packet, echo[1] - 1)
            return
        self._echoes[handle] = (packet, len(jobs) - 1)
        for job in jobs:
            self._update(job, packet)
        if kind in (T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION):
            del self._jobs[handle]  # later copies of this packet find no job
            del self._echoes[handle]

    @staticmethod
    def _update(job: Job, packet: Packet) -> None:
        kind, args = packet.type, packet.args
        if kind == T.WORK_DATA:
            job.data.append(args[1])
            if job.on_data:
                job.on_data(args[1])
        elif kind == T.WORK_WARNING:
            job.warnings.append(args[1])
            if job.on_warning:
                job.on_warning(args[1])
        elif kind == T.WORK_STATUS:
            job.status = (int(args[1]) if args[1].isdigit() else 0,
                          int(args[2]) if args[2].isdigit() else 0)
            if job.on_status:
                job.on_status(*job.status)
        elif not job._done.done():
            if kind == T.WORK_COMPLETE:
                job._done.set_result(args[1])
            elif kind == T.WORK_EXCEPTION:
                job._done.set_exception(JobException(args[1]))
            elif kind == T.WORK_FAIL:
                job._done.set_exception(JobFailed(f"job {job.handle.decode()} failed"))

    def _fail_all(self, error: BaseException) -> None:
        self._error = error
        closed = ConnectionClosed(str(error))
        while self._waiting:
            _, future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(closed)
        for jobs in self._jobs.values():
            for job in jobs:
                if not job._done.done():
                    job._done.set_exception(closed)
        self._jobs.clear()


_REPLIES = frozenset({T.JOB_CREATED, T.STATUS_RES, T.STATUS_RES_UNIQUE, T.ECHO_RES,
                      T.OPTION_RES, T.ERROR})
