"""gearmand's HTTP protocol module (``-r http --http-port P``), sans-IO.

One HTTP request is one job: ``POST /FUNCTION`` (also PUT and GET) with the
workload as the body.  The gateway turns the request into a submit packet for
the core, as if a binary client had sent it, and the core's answer into the
HTTP response; then the connection closes (gearmand answers HTTP/1.0 and
closes after every response, keep-alive or not).

Request headers gearmand reads (exact, case-insensitive): ``Content-Length:``,
``X-Gearman-Unique: U`` (default ``-``: the body is the unique),
``X-Gearman-Background: true``, ``X-Gearman-Priority: high`` / ``low``.
Responses, as gearmand 1.1.20 sends them::

    HTTP/1.0 200 OK
    X-Gearman-Job-Handle: H:host:1
    X-Gearman-Command: WORK_COMPLETE        (JOB_CREATED for a background job,
    Content-Length: 5                        WORK_FAIL for a failed one)
    Server: Gearman/1.1.20...

    olleh

A submit the core refuses (a full queue) is answered the same way with
``X-Gearman-Command: ERROR``, the error code (``QUEUE_ERROR``) as the handle
and no body.  An empty function (``POST /``) gets ``404 NOT_FOUND``; another method or
HTTP version, a request line without two spaces or with a space at either
end, or a negative Content-Length, is closed unanswered.
Where gearmand's module misbehaves we do not follow it (DEVIATIONS.md, "HTTP"):
it cuts the last character off the handle of a WORK_FAIL, writes WORK_DATA
over its own status line, prints ``(null)`` as the handle for ``HEAD /``,
never answers ``TRACE``, queues a job no worker can take for a function name
with a NUL (we answer 404) and garbles the workload of a job whose unique has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_server.core.compat import c_atoi, c_string
from reference_server.protocol import Decoder, Packet, PacketType, encode

T = PacketType
METHODS = (b"GET", b"PUT", b"POST", b"HEAD", b"TRACE")
#: Requests larger than this are refused (closed): a body is held in memory.
MAX_REQUEST = 64 << 20


@dataclass
class Request:
    method: bytes
    function: bytes
    body: bytes = b""
    unique: bytes = b"-"
    background: bool = False
    priority: bytes = b""  # b"high", b"low" or normal


@dataclass
class Reply:
    """What to do: bytes for the core (a submit), bytes for the client, close."""

    to_core: bytes = b""
    to_client: bytes = b""
    close: bool = False


@dataclass
class HTTPGateway:
    """One HTTP connection: request bytes in, a packet for the core out; the
    core's packets in, the HTTP response out."""

    server_name: bytes
    buffer: bytearray = field(default_factory=bytearray)
    request: Request | None = None
    answered: bool = False
    decoder: Decoder = field(default_factory=Decoder)

    # -- the client's side ---------------------------------------------------

    def receive(self, data: bytes) -> Reply:
        if self.request is not None:
            # DEVIATION "A second request on one connection": one request per
            # connection, the rest is ignored (gearmand queues what it has read).
            return Reply()
        self.buffer += data
        if len(self.buffer) > MAX_REQUEST:
            return Reply(close=True)
        end = self.buffer.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = self.buffer.find(b"\n\n"), 2
        if end < 0:
            return Reply()  # the headers are not all here yet
        head = bytes(self.buffer[:end]).replace(b"\r\n", b"\n").split(b"\n")
        if not head[0]:
            # gearmand reads an empty request line, drops it and waits for more bytes
            # before it reads on ("Zero length request made").
            del self.buffer[:2 if self.buffer.startswith(b"\r\n") else 1]
            return Reply()
        parsed = _parse(head)
        if parsed is None:
            return Reply(close=True)
        request, length = parsed
        if length < 0:
            return Reply(close=True)  # gearmand cannot make a body of (size_t) -1 bytes
        body_start = end + sep
        if len(self.buffer) - body_start < length:
            return Reply()  # the body is not all here yet
        request.body = bytes(self.buffer[body_start:body_start + length])
        self.request = request
        # DEVIATION "A NUL in the function name": no packet can carry such a name
        # (gearmand queues a job under it that no worker can ask for), so it is 404.
        if not request.function or b"\0" in request.function:
            self.answered = True
            return Reply(to_client=self._status(b"404 NOT_FOUND"), close=True)
        return Reply(to_core=encode(_submit_type(request), request.function, request.unique,
                                    request.body))

    # -- the core's side -----------------------------------------------------

    def deliver(self, data: bytes) -> Reply:
        """The core's bytes for this connection: the response, once there is one."""
        self.decoder.feed(data)
        reply = Reply()
        while (event := self.decoder.next_event()) is not None:
            if self.answered or not isinstance(event, Packet):
                continue
            command = _answer(event, self.request)
            if command is not None:
                # An ERROR's code takes the handle's place and its text is dropped.
                handle = event.args[0]
                body = event.args[1] if event.type == T.WORK_COMPLETE else b""
                reply.to_client += (
                    b"HTTP/1.0 200 OK\r\nX-Gearman-Job-Handle: " + handle +
                    b"\r\nX-Gearman-Command: " + command + b"\r\nContent-Length: %d\r\n" %
                    len(body) + b"Server: Gearman/" + self.server_name + b"\r\n\r\n" + body)
                reply.close = self.answered = True
        return reply

    def _status(self, status: bytes) -> bytes:
        return (b"HTTP/1.0 " + status + b"\r\nServer: Gearman/" + self.server_name +
                b"\r\nContent-Length: 0\r\n\r\n")


def _request_line(line: bytes) -> tuple[bytes, bytes] | None:
    """The method and the function, read as gearmand does (HTTPtext::unpack): the
    method runs to the first space; spaces, then slashes, are skipped; the function
    runs to the next space; spaces are skipped, and the rest of the line must be the
    version, exactly.  So a leading or trailing space closes the connection."""
    method, space, rest = line.partition(b" ")
    if not space or method not in METHODS:
        return None
    function, space, version = rest.lstrip(b" ").lstrip(b"/").partition(b" ")
    if not space or version.lstrip(b" ") not in (b"HTTP/1.0", b"HTTP/1.1"):
        return None
    return method, function


def _parse(head: list[bytes]) -> tuple[Request, int] | None:
    """The request line and the headers gearmand reads; None: close unanswered."""
    parsed = _request_line(head[0])
    if parsed is None:
        return None
    method, function = parsed
    request = Request(method, function)
    length = 0
    for line in head[1:]:
        lower = line.lower()
        if lower.startswith(b"content-length: ") and method in (b"PUT", b"POST"):
            # gearmand copies at most 10 characters of the value, as a C string, and
            # reads them with atoi: "2x" is 2, "abc" 0, "+3" 3.
            length = c_atoi(line[16:26])
        elif lower.startswith(b"x-gearman-unique: ") and len(line) > 18:
            # The unique is a C string to gearmand: what follows a NUL is not part of it
            # (DEVIATION "A NUL in X-Gearman-Unique": gearmand garbles the workload).
            request.unique = c_string(line[18:])
        elif lower == b"x-gearman-background: true":
            request.background = True
        elif lower in (b"x-gearman-priority: high", b"x-gearman-priority: low"):
            request.priority = lower[20:]
    return request, length


def _submit_type(request: Request) -> PacketType:
    table = {(False, b""): T.SUBMIT_JOB, (False, b"high"): T.SUBMIT_JOB_HIGH,
             (False, b"low"): T.SUBMIT_JOB_LOW, (True, b""): T.SUBMIT_JOB_BG,
             (True, b"high"): T.SUBMIT_JOB_HIGH_BG, (True, b"low"): T.SUBMIT_JOB_LOW_BG}
    return table[request.background, request.priority]


def _answer(packet: Packet, request: Request | None) -> bytes | None:
    """The X-Gearman-Command of the packet that ends the request, if it is one."""
    if packet.type == T.JOB_CREATED:
        return b"JOB_CREATED" if request is not None and request.background else None
    if packet.type in (T.WORK_COMPLETE, T.WORK_FAIL, T.ERROR):
        return packet.type.name.encode()  # ERROR: the submit was refused (a full queue)
    return None  # WORK_DATA, WORK_STATUS, WORK_WARNING: the job goes on
