"""Verbs of the HTTP protocol module (``-r http``): a request, and its response.

As gearmand's module does, one request is one job and the answer closes the
connection, so ``expect-http`` judges the status, the headers it names (others
ignored), the body, and then the close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from conformance.context import Context, HarnessError, HTTPConnection
from conformance.events import Closed, Data, Event, TimedOut, show
from conformance.match import PENDING, Met, Mismatch, Result, Scope, Unmet
from conformance.nodes import matcher_data, value_data
from conformance.scenario import Matcher, Step, Value
from conformance.verbs.record import Form, Verb, Written

NO_PORT = ("this server has no HTTP port (the case needs server-options [-r, http, "
           "--http-port, '{http_port}'])")


@dataclass
class HTTPRequest(Step):
    """An HTTP request on a connection to the server's HTTP port (``-r http``)."""

    method: str = "POST"
    path: Value = field(default_factory=lambda: Value("/"))
    headers: list[Value] = field(default_factory=list)  # whole lines, as sent
    body: Value = field(default_factory=lambda: Value(""))
    version: str = "HTTP/1.0"

    needs: ClassVar[frozenset[str]] = frozenset({"http"})


def _read_request(written: Written) -> HTTPRequest:
    read, where = written.reader, written.where
    args = written.needs_args("http-request needs {method, path, ...}")
    spec = read.mapping(args, where)
    read.keys(spec, args, where, {"method", "path", "headers", "body", "version"},
              "known: method, path, headers, body, version")
    return HTTPRequest(
        written.line, written.conn, written.note,
        method=read.scalar(spec["method"], f"{where}.method") if "method" in spec else "POST",
        path=read.value(spec["path"], f"{where}.path") if "path" in spec else Value("/"),
        headers=[read.value(h, f"{where}.headers[{i}]") for i, h in
                 enumerate(read.sequence(spec["headers"], f"{where}.headers"))]
        if "headers" in spec else [],
        body=read.value(spec["body"], f"{where}.body") if "body" in spec else Value(""),
        version=read.scalar(spec["version"], f"{where}.version") if "version" in spec
        else "HTTP/1.0")


def _write_request(step: HTTPRequest) -> Form:
    request: dict[str, object] = {"method": step.method, "path": value_data(step.path)}
    if step.headers:
        request["headers"] = [value_data(h) for h in step.headers]
    if step.body.text or step.body.raw:
        request["body"] = value_data(step.body)
    if step.version != "HTTP/1.0":
        request["version"] = step.version
    return Form(request)


async def _open(ctx: Context, conn: str) -> HTTPConnection:
    try:
        stream = await ctx.network.open_http(conn)
    except ConnectionError:
        raise HarnessError(NO_PORT) from None
    except (OSError, TimeoutError) as error:
        raise HarnessError(f"cannot connect {conn} to the HTTP port: {error}") from None
    ctx.http[conn] = HTTPConnection(stream)
    return ctx.http[conn]


async def _request(ctx: Context, step: HTTPRequest) -> None:
    stream = (await _open(ctx, step.conn)).stream
    body = ctx.resolve(step.body)
    lines = [step.method.encode() + b" " + ctx.resolve(step.path) + b" " +
             step.version.encode(), *(ctx.resolve(h) for h in step.headers)]
    if step.method in ("POST", "PUT") and not any(
            line.lower().startswith(b"content-length:") for line in lines[1:]):
        lines.append(b"Content-Length: %d" % len(body))
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    ctx.transcript.add(step.conn, "send", "text", f"HTTP {show(request)}", request)
    stream.write(request)


HTTP_REQUEST = Verb(name="http-request", step=HTTPRequest,
                    usage="http-request: {method, path, headers: [LINE ...], body, version}: "
                          "an HTTP request to the HTTP port",
                    read=_read_request, write=_write_request, perform=_request,
                    covers=lambda step: _features(step))


def _features(step: HTTPRequest) -> set[str]:
    seen = {f"http:{step.method}"}
    for header in step.headers:
        line = header.text.lower()
        if line.startswith("x-gearman-background: true"):
            seen.add("http:background")
        elif line.startswith("x-gearman-unique:"):
            seen.add("http:unique")
        elif line.startswith("x-gearman-priority: "):
            seen.add("http:priority " + line.split(": ", 1)[1].strip())
    return seen


@dataclass
class HTTPSend(Step):
    """Bytes as written on an HTTP connection (opened by the first): what
    ``http-request`` cannot build, such as a request in two writes."""

    data: Value = field(default_factory=Value)

    needs: ClassVar[frozenset[str]] = frozenset({"http"})


async def _send(ctx: Context, step: HTTPSend) -> None:
    connection = ctx.http.get(step.conn) or await _open(ctx, step.conn)
    data = ctx.resolve(step.data)
    ctx.transcript.add(step.conn, "send", "text", f"HTTP {show(data)}", data)
    connection.stream.write(data)


HTTP_SEND = Verb(name="http-send", step=HTTPSend,
                 usage="http-send: TEXT: bytes as written on an HTTP connection (say \\r\\n "
                       "yourself)",
                 read=lambda w: HTTPSend(w.line, w.conn, w.note, w.reader.value(
                     w.needs_args("http-send needs the bytes"), w.where)),
                 write=lambda step: Form(value_data(step.data)), perform=_send)


@dataclass
class ExpectHTTP(Step):
    """The HTTP response on that connection: status code, the headers named (others
    ignored), the body; then the server closes the connection (as gearmand's does)."""

    status: int = 200
    headers: dict[str, Matcher] = field(default_factory=dict)
    body: Matcher | None = None
    within: float | None = None


def _read_response(written: Written) -> ExpectHTTP:
    read, where = written.reader, written.where
    args = written.needs_args("expect-http needs {status, headers, body}")
    spec = read.mapping(args, where)
    read.keys(spec, args, where, {"status", "headers", "body"}, "known: status, headers, body")
    headers = {name: read.matcher(value, f"{where}.headers.{name}") for name, value in
               read.mapping(spec["headers"], f"{where}.headers").items()} \
        if "headers" in spec else {}
    return ExpectHTTP(written.line, written.conn, written.note,
                      status=int(read.number(spec["status"], f"{where}.status"))
                      if "status" in spec else 200,
                      headers=headers,
                      body=read.matcher(spec["body"], f"{where}.body") if "body" in spec
                      else None, within=written.within)


def _write_response(step: ExpectHTTP) -> Form:
    response: dict[str, object] = {"status": step.status}
    if step.headers:
        response["headers"] = {k: matcher_data(m) for k, m in step.headers.items()}
    if step.body is not None:
        response["body"] = matcher_data(step.body)
    return Form(response)


@dataclass(frozen=True, kw_only=True)
class HTTPResponse:
    """An HTTP response as read off a connection: the status line, the header
    lines, and what follows the blank line (the body, and whatever came after it)."""

    status_line: bytes
    header_lines: list[bytes]
    after_head: bytes

    @property
    def headers(self) -> dict[bytes, bytes]:
        """Header values by lower-cased name."""
        return {k.strip().lower(): v.strip() for k, _, v in
                (line.partition(b":") for line in self.header_lines)}


def split_response(data: bytes) -> HTTPResponse | None:
    """The response in ``data``; None while its head (up to the blank line) is not
    all there."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = data[:head_end].split(b"\r\n")
    return HTTPResponse(status_line=lines[0], header_lines=lines[1:],
                        after_head=data[head_end + 4:])


def expect_http(step: ExpectHTTP, events: Sequence[Event], scope: Scope) -> Result:
    """The response is complete, says what the step wants, and the connection closes."""
    data = b"".join(e.data for e in events if isinstance(e, Data))
    closed = any(isinstance(e, Closed) for e in events)
    timed_out = next((e for e in events if isinstance(e, TimedOut)), None)
    response = split_response(data)
    if response is None:
        if timed_out is not None:
            return Unmet("an HTTP response", "nothing complete",
                         text=f"no HTTP response within {timed_out.waited:.1f} s")
        if closed:
            return Unmet("an HTTP response", show(data) or "nothing",
                         text="the connection closed without an HTTP response"
                              + (f": {show(data)}" if data else ""))
        return PENDING
    status, headers = response.status_line.split(b" "), response.headers
    declared = headers.get(b"content-length", b"0") or b"0"
    if not declared.isdigit():
        return Unmet("a Content-Length", show(declared),
                     text=f"HTTP Content-Length is not a number: {show(declared)}")
    body, extra = response.after_head[:int(declared)], response.after_head[int(declared):]
    if len(body) < int(declared):
        if closed or timed_out is not None:
            return Unmet(f"{declared.decode()} bytes of body", f"{len(body)}",
                         text=f"the body was shorter than its Content-Length {int(declared)}")
        return PENDING
    if len(status) < 2 or status[1] != str(step.status).encode():
        return Unmet(str(step.status), show(response.status_line), "HTTP status")
    try:
        for name, matcher in step.headers.items():
            value = headers.get(name.lower().encode())
            if value is None:
                return Unmet(f"a header {name}", "none", text=f"HTTP header {name}: missing")
            scope = scope.with_variables(scope.check(matcher, value, f"HTTP header {name}"))
        if step.body is not None:
            scope = scope.with_variables(scope.check(step.body, body, "HTTP body"))
    except Mismatch as mismatch:
        return mismatch.unmet
    if extra:
        return Unmet("the close", show(extra),
                     text=f"more bytes after the response: {show(extra)}")
    if not closed:
        if timed_out is not None:
            return Unmet("the close", "the connection still open",
                         text="the connection stayed open after the response")
        return PENDING
    return Met(len(events), scope.variables)


async def _response(ctx: Context, step: ExpectHTTP) -> None:
    if step.conn not in ctx.http:
        raise HarnessError(f"{step.conn} sent no HTTP request")
    try:
        await ctx.http_read(step.conn, lambda events: expect_http(step, events, ctx.scope),
                            ctx.timeout(step.within))
    finally:
        received = ctx.http[step.conn].received
        data = b"".join(e.data for e in received if isinstance(e, Data))
        if data:
            ctx.transcript.add(step.conn, "recv", "text", f"HTTP {show(data)}", data)
        if any(isinstance(e, Closed) for e in received):
            ctx.transcript.add(step.conn, "event", "close", "closed by the server")


EXPECT_HTTP = Verb(name="expect-http", step=ExpectHTTP, modifiers=frozenset({"note", "within"}),
                   usage="expect-http: {status, headers: {NAME: VALUE}, body}: the HTTP "
                         "response, then the close",
                   read=_read_response, write=_write_response, perform=_response,
                   expect=expect_http, gather="http")

VERBS = (HTTP_REQUEST, HTTP_SEND, EXPECT_HTTP)
