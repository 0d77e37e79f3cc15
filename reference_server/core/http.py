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

An empty function (``POST /``) gets ``404 NOT_FOUND``; another method or
HTTP version, or a request line without two spaces, is closed unanswered.
Where gearmand's module misbehaves we do not follow it (DEVIATIONS.md, "HTTP"):
it cuts the last character off the handle of a WORK_FAIL, writes WORK_DATA
over its own status line, prints ``(null)`` as the handle for ``HEAD /`` and
never answers ``TRACE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
            return Reply()  # one request per connection: the rest is ignored
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
        parsed = _parse(head)
        if parsed is None:
            return Reply(close=True)
        request, length = parsed
        body_start = end + sep
        if len(self.buffer) - body_start < length:
            return Reply()  # the body is not all here yet
        request.body = bytes(self.buffer[body_start:body_start + length])
        self.request = request
        if not request.function:
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
                handle, body = event.args[0], (event.args[1] if len(event.args) > 1 else b"")
                reply.to_client += (
                    b"HTTP/1.0 200 OK\r\nX-Gearman-Job-Handle: " + handle +
                    b"\r\nX-Gearman-Command: " + command + b"\r\nContent-Length: %d\r\n" %
                    len(body) + b"Server: Gearman/" + self.server_name + b"\r\n\r\n" + body)
                reply.close = self.answered = True
        return reply

    def _status(self, status: bytes) -> bytes:
        return (b"HTTP/1.0 " + status + b"\r\nServer: Gearman/" + self.server_name +
                b"\r\nContent-Length: 0\r\n\r\n")


def _parse(head: list[bytes]) -> tuple[Request, int] | None:
    """The request line and the headers gearmand reads; None: close unanswered."""
    parts = head[0].split(b" ")
    parts = [p for p in parts if p] if len(parts) >= 3 else parts
    if len(parts) != 3 or parts[0] not in METHODS or parts[2] not in (b"HTTP/1.0",
                                                                        b"HTTP/1.1"):
        return None
    method, uri, _version = parts
    request = Request(method, uri.lstrip(b"/"))
    length = 0
    for line in head[1:]:
        lower = line.lower()
        if lower.startswith(b"content-length: ") and method in (b"PUT", b"POST"):
            digits = line[16:].strip()
            length = int(digits) if digits.isdigit() else 0
        elif lower.startswith(b"x-gearman-unique: ") and len(line) > 18:
            request.unique = line[18:]
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
    if packet.type in (T.WORK_COMPLETE, T.WORK_FAIL):
        return packet.type.name.encode()
    return None  # WORK_DATA, WORK_STATUS, WORK_WARNING: the job goes on
