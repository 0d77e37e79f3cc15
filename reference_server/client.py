"""A Gearman client and worker library on asyncio, built on the one codec.

Three layers, each usable alone:

* ``Link``: one TCP connection that sends packets or raw bytes and yields
  decoded events, with timeouts.  The conformance runner drives this one.
* ``Client`` (submit jobs, follow them, ask for status, echo) and ``Worker``
  (register functions, run the GRAB / PRE_SLEEP / NOOP loop) on top of it.
* ``Admin``: the text protocol (``status``, ``workers``, ...).

Replies to requests come back in request order on a connection (gearmand
keeps one outgoing FIFO per connection), so ``Client`` pairs JOB_CREATED,
STATUS_RES, ECHO_RES, OPTION_RES and ERROR with its oldest open request,
while WORK_* packets go to the job their handle names.

Example::

    async with await Client.connect("127.0.0.1:4730") as client:
        job = await client.submit("reverse", b"hello")
        print(await job.result())
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from reference_server.protocol import (
    LIST_COMMANDS,
    SUBMIT_TYPES,
    Decoder,
    Event,
    Magic,
    Packet,
    PacketType,
    Priority,
    ProtocolError,
    TextLine,
    encode,
)

T = PacketType
DEFAULT_PORT = 4730


def parse_address(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"host:port"``, ``"host"`` or ``"[v6]:port"`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:
        host, port = address, str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in address {address!r}")
    return host, int(port)


class GearmanError(Exception):
    """Base of the errors this library raises."""


class ConnectionClosed(GearmanError):
    """The server closed the connection."""


class ServerError(GearmanError):
    """The server answered a request with an ERROR packet."""

    def __init__(self, code: bytes, text: bytes) -> None:
        super().__init__(f"{code.decode(errors='replace')}: {text.decode(errors='replace')}")
        self.code = code
        self.text = text


class JobFailed(GearmanError):
    """The job ended with WORK_FAIL."""


class JobException(JobFailed):
    """The job ended with WORK_EXCEPTION (only with the 'exceptions' option)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data.decode(errors="replace"))
        self.data = data


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Link:
    """One connection to a Gearman server: bytes out, decoded events in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 decoder: Decoder | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = decoder or Decoder()
        self.closed = False

    @classmethod
    async def open(cls, address: str | tuple[str, int], *, timeout: float = 5.0) -> Link:
        host, port = parse_address(address) if isinstance(address, str) else address
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    def send(self, packet_type: int, *args: bytes | str) -> None:
        self.writer.write(encode(packet_type, *(_bytes(a) for a in args)))

    def send_packet(self, packet: Packet) -> None:
        self.writer.write(packet.encode())

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next packet or text line; ``ConnectionClosed`` at EOF, ``TimeoutError``
        if nothing complete arrives in time, a ``ProtocolError`` for garbage."""
        while True:
            event = self.decoder.next_event()
            if event is not None:
                return event
            if self.closed:
                raise ConnectionClosed("connection closed by the server")
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                self.closed = True
                if self.decoder.buffered:
                    raise ConnectionClosed(
                        f"connection closed with {self.decoder.buffered} bytes of a partial packet")
                raise ConnectionClosed("connection closed by the server")
            self.decoder.feed(data)

    async def read_until(self, terminator: bytes, timeout: float | None = None) -> bytes:
        """Raw bytes up to and including ``terminator`` (admin list replies)."""
        try:
            return await asyncio.wait_for(self.reader.readuntil(terminator), timeout)
        except asyncio.IncompleteReadError as error:
            self.closed = True
            raise ConnectionClosed("connection closed by the server") from error

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def __aenter__(self) -> Link:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


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
        function, data, unique = _bytes(function), _bytes(data), _bytes(unique)
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
        job = Job(b"", _bytes(function), background)
        packet_type = T.SUBMIT_REDUCE_JOB_BACKGROUND if background else T.SUBMIT_REDUCE_JOB
        await self._request(packet_type, _bytes(function), _bytes(unique), _bytes(reducer), b"",
                            _bytes(data), job=job)
        return job

    async def get_status(self, handle: bytes | str) -> JobStatus:
        return JobStatus.from_args(await self._request(T.GET_STATUS, _bytes(handle)))

    async def get_status_unique(self, unique: bytes | str) -> JobStatus:
        return JobStatus.from_args(await self._request(T.GET_STATUS_UNIQUE, _bytes(unique)))

    async def echo(self, data: bytes | str) -> bytes:
        args = await self._request(T.ECHO_REQ, _bytes(data))
        return args[0]  # type: ignore[no-any-return]

    async def set_option(self, option: bytes | str = b"exceptions") -> None:
        await self._request(T.OPTION_REQ, _bytes(option))

    async def set_client_id(self, client_id: bytes | str) -> None:
        self.link.send(T.SET_CLIENT_ID, _bytes(client_id))
        await self.link.drain()

    async def _read(self) -> None:
        try:
            while True:
                event = await self.link.next_event()
                if isinstance(event, Packet):
                    self._dispatch(event)
        except asyncio.CancelledError:
            raise
        except (ConnectionClosed, ProtocolError, OSError) as error:
            self._fail_all(error)

    def _dispatch(self, packet: Packet) -> None:
        kind = packet.type
        if kind in _REPLIES:
            if not self._waiting:
                return  # an ERROR nobody asked for
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
        self._link.send(T.WORK_DATA, self.handle, _bytes(data))

    def send_warning(self, data: bytes | str) -> None:
        self._link.send(T.WORK_WARNING, self.handle, _bytes(data))

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
            link.send(T.SET_CLIENT_ID, _bytes(client_id))

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
        name = _bytes(function)
        self.handlers[name] = handler
        if timeout_ms is None:
            self.link.send(T.CAN_DO, name)
        else:
            self.link.send(T.CAN_DO_TIMEOUT, name, b"%d" % timeout_ms)

    def unregister(self, function: bytes | str) -> None:
        name = _bytes(function)
        self.handlers.pop(name, None)
        self.link.send(T.CANT_DO, name)

    async def work(self, max_jobs: int | None = None) -> None:
        """Run jobs until ``max_jobs`` are done (forever if None) or the server goes."""
        while max_jobs is None or self.jobs_done < max_jobs:
            self.link.send(T.GRAB_JOB_UNIQ)
            await self.link.drain()
            event = await self._next_packet()
            if event.type == T.NO_JOB:
                self.link.send(T.PRE_SLEEP)
                await self.link.drain()
                while (await self._next_packet()).type != T.NOOP:
                    pass
            elif event.type in (T.JOB_ASSIGN_UNIQ, T.JOB_ASSIGN, T.JOB_ASSIGN_ALL):
                await self._run(WorkerJob(self, event))
            elif event.type == T.ERROR:
                raise ServerError(event.args[0], event.args[1])

    async def _next_packet(self) -> Packet:
        while True:
            event = await self.link.next_event()
            if isinstance(event, Packet):
                return event

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
            self.link.send(T.WORK_COMPLETE, job.handle, _bytes(result or b""))
        self.jobs_done += 1


class Admin:
    """The text protocol on its own connection."""

    def __init__(self, link: Link) -> None:
        self.link = link

    @classmethod
    async def connect(cls, address: str | tuple[str, int], *, timeout: float = 5.0) -> Admin:
        return cls(await Link.open(address, timeout=timeout))

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.close()

    async def command(self, line: str, *, timeout: float = 5.0) -> bytes:
        """The raw reply to one admin command, line endings included."""
        self.link.send_raw(line.encode() + b"\n")
        first = await self.link.read_until(b"\n", timeout)
        words = line.split()
        if not words or words[0].lower() not in LIST_COMMANDS or first.startswith(b"ERR "):
            return first
        reply = first
        while not reply.endswith(b"\n.\n") and reply != b".\n":
            reply += await self.link.read_until(b"\n", timeout)
        return reply

    async def status(self) -> dict[bytes, tuple[int, int, int]]:
        """function → (total jobs, running jobs, workers)."""
        rows = (await self.command("status")).split(b"\n")[:-2]
        result = {}
        for row in rows:
            name, total, running, workers = row.rsplit(b"\t", 3)
            result[name] = (int(total), int(running), int(workers))
        return result


def to_json(value: Any) -> bytes:
    """A JSON workload (UTF-8, compact)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def from_json(data: bytes) -> Any:
    return json.loads(data.decode())


__all__ = ["Admin", "Client", "ConnectionClosed", "GearmanError", "Job", "JobException",
           "JobFailed", "JobStatus", "Link", "Priority", "ServerError", "TextLine", "WorkFailed",
           "Worker", "WorkerJob", "from_json", "parse_address", "to_json", "Magic"]
