"""``gearspec pcap decode|to-scenario FILE`` and ``gearspec replay FILE --target X``.

    gearspec pcap decode capture.pcap                 # a transcript per connection
    gearspec pcap decode capture.pcapng --port 4731 --format json
    gearspec pcap to-scenario capture.pcap -o found.yaml
    gearspec replay capture.pcap --target gearmand    # replay, compare, report
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conformance.capture.reader import GEARMAN_PORT, Captured, CaptureError, read
from conformance.events import describe
from reference_server.protocol import PACKETS, Magic, Packet, TextLine
from reference_server.usage import Parser, UsageError


def _ports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, action="append", default=[],
                        help=f"the server's TCP port (default {GEARMAN_PORT}); repeatable")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    decode = commands.add_parser("decode", help="print the Gearman traffic of a capture")
    decode.add_argument("file", type=Path)
    _ports(decode)
    decode.add_argument("--format", choices=["table", "json"], default="table",
                        help="table: a section per connection; json: an object per "
                             "connection, one per line; each printed once it has closed")
    to_scenario = commands.add_parser("to-scenario", help="write a capture as a scenario file")
    to_scenario.add_argument("file", type=Path)
    _ports(to_scenario)
    to_scenario.add_argument("-o", "--output", type=Path, default=None,
                             help="where to write it (default: standard output)")
    return parser


def by_connection(captured: Iterator[Captured]) -> Iterator[tuple[str, list[Captured]]]:
    """Events grouped per connection, each group given out as soon as its
    connection has closed both ways (so memory holds only open connections)."""
    open_: dict[str, list[Captured]] = {}
    closes: dict[str, int] = {}
    for c in captured:
        open_.setdefault(c.conn, []).append(c)
        if c.event is None and c.note.startswith(("closed by", "reset by")):
            closes[c.conn] = closes.get(c.conn, 0) + (2 if c.note.startswith("reset") else 1)
            if closes[c.conn] >= 2:
                yield c.conn, open_.pop(c.conn)
    yield from open_.items()


def _arrow(c: Captured) -> str:
    return {"send": f"{c.conn}>", "recv": f"<{c.conn}"}.get(c.direction, f"{c.conn} ")


def as_dict(c: Captured) -> dict[str, Any]:
    out: dict[str, Any] = {"t": round(c.time, 6), "direction": c.direction}
    if isinstance(c.event, Packet):
        out["type"] = c.event.name
        out["magic"] = c.event.magic.name
        out["fields"] = {n: a.decode("latin-1") for n, a in
                         zip(PACKETS[c.event.type].args, c.event.args)}
    elif isinstance(c.event, TextLine):
        out["text"] = c.event.raw.decode("latin-1")
    else:
        out["note"] = c.note
    return out


def decode(args: argparse.Namespace) -> int:
    for name, events in by_connection(read(args.file, args.port or [GEARMAN_PORT])):
        if args.format == "json":
            opened = events[0].note.removeprefix("open ") if events[0].event is None else ""
            print(json.dumps({"connection": name, "endpoints": opened,
                              "events": [as_dict(e) for e in events]}, ensure_ascii=False))
            continue
        head = events[0].note.removeprefix("open ") if events[0].event is None else ""
        print(f"connection {name}  {head}".rstrip())
        for c in events[1 if head else 0:]:
            usual = Magic.REQ if c.direction == "send" else Magic.RES
            what = describe(c.event, usual) if c.event is not None else f"({c.note})"
            print(f"  {c.time:10.6f}  {_arrow(c):<4} {what}")
        print()
    return 0


def main(argv: list[str] | None = None, prog: str = "gearspec pcap") -> int:
    try:
        args = build_parser(prog).parse_args(argv)
        if args.command == "decode":
            return decode(args)
        from conformance.capture.scenario import write_scenario

        write_scenario(args.file, args.port or [GEARMAN_PORT], args.output)
        return 0
    except (UsageError, CaptureError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # | head
        return 0
