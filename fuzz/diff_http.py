"""HTTP requests in the diff fuzzer's conversations (``gearspec fuzz diff --http``).

Both servers run gearmand's HTTP protocol module (``-r http --http-port``); a
request goes on a new connection to that port and what comes back, read until
the server closes, is one event: the status line, the headers (the server's
version left out) and the body, or that the connection closed unanswered.
Only requests that are answered at once are generated: background submits, a
request without a function (404), requests the module closes.  Their jobs are
queued like any other, so the conversation's workers may grab them.

Left out, as DEVIATIONS.md says they differ: HEAD and TRACE, a NUL in the path
or the unique, a second request on one connection; and a background request
coalescing with a foreground binary submit (a unique of its own, ``$u3``, and
bodies no binary submit sends: without a unique the module submits "-", which
coalesces by workload).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from hypothesis import strategies as st

from conformance.verbs.http import HTTPResponse, split_response

BACKGROUND = "X-Gearman-Background: true"


def _request(line: str, *headers: str, body: str = "hb", length: str | None = None) -> str:
    sized = [f"Content-Length: {len(body) if length is None else length}"]
    return "\r\n".join([line, BACKGROUND, *headers, *sized]) + "\r\n\r\n" + body


#: Requests as templates: ``$fa``/``$fb``/``$u3`` are the case's names.
REQUESTS = [
    _request("POST /$fa HTTP/1.0"),
    _request("POST /$fb HTTP/1.1", "X-Gearman-Unique: $u3", body="hello"),
    _request("PUT /$fa HTTP/1.0", "X-Gearman-Priority: high"),
    _request("POST /$fb HTTP/1.0", "X-Gearman-Priority: low", "X-Gearman-Unique: $u3"),
    _request("POST /$fa HTTP/1.0", body="hello", length="+2x"),
    _request("POST /$fa HTTP/1.0", body="hello", length="-1"),
    _request("POST  ///$fb  HTTP/1.0"),
    _request("POST / HTTP/1.0"),
    _request("FOO /$fa HTTP/1.0"),
    _request("POST /$fa HTTP/2.0"),
    _request(" POST /$fa HTTP/1.0"),
    _request("POST /$fa HTTP/1.0 "),
    "POST /$fb HTTP/1.0\n" + BACKGROUND + "\nContent-Length: 2\n\nhb",
]
#: Requests whose job has no data (a GET reads no body; the module reads ten
#: characters of Content-Length, all zeros here): not where a persistent queue runs
#: (DEVIATION "A background job without data in the SQLite queue").
NO_DATA = [
    _request("POST /$fa HTTP/1.0", body="hello", length="00000000005"),
    _request("GET /$fa HTTP/1.0", body="", length="0"),
]
REQUESTS += NO_DATA

requests = st.builds(lambda conn, text: (conn, text), st.sampled_from(["h1", "h2"]),
                     st.sampled_from(REQUESTS))


async def exchange(address: tuple[str, int], request: bytes, show: Callable[[bytes], str],
                   timeout: float) -> tuple[str, ...]:
    """Send one request and read to the close: ("http", status, headers..., body),
    ("http", "closed unanswered") or ("http", "no close", what came)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        try:
            answer = await asyncio.wait_for(reader.read(-1), timeout)
        except TimeoutError:
            return ("http", "no close")
        except ConnectionError:
            return ("http", "reset")
    finally:
        writer.close()
    if not answer:
        return ("http", "closed unanswered")
    response = split_response(answer)
    if response is None:  # no blank line: what came is a head cut short, and no body
        first, *rest = answer.split(b"\r\n")
        response = HTTPResponse(status_line=first, header_lines=rest, after_head=b"")
    headers = sorted(re.sub(rb"^Server: Gearman/.*", b"Server: Gearman/<version>", line)
                     for line in response.header_lines)
    return ("http", show(response.status_line), *(show(h) for h in headers),
            f"body={show(response.after_head)}")


#: What a reproducer with HTTP requests starts its servers with.
SERVER_OPTIONS = ["-r", "http", "--http-port", "{http_port}"]


def expectations(conn: str, event: tuple[str, ...], value: Callable[[str], object]
                 ) -> list[object]:
    """The steps a reproducer checks the answer with (nothing for a close);
    ``value`` writes a recorded header (a handle seen first is captured)."""
    if len(event) < 3:
        return []
    status = int(event[1].split(" ")[1])
    headers = {name: value(text) for name, text in
               (line.split(": ", 1) for line in event[2:-1] if line.startswith("X-Gearman-"))}
    body = event[-1][len("body="):]
    return [{f"{conn} expect-http": {"status": status, "headers": headers, "body": body}}]
