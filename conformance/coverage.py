"""Which parts of the protocol a set of scenarios exercises.

Counted from the scenarios themselves (not from a run): the packet types
they send (requests, and server-only types sent by a peer), the admin
commands they send, what their HTTP requests ask of the HTTP module, and the
protocol sections (``SECTIONS``) they name.
"""

from __future__ import annotations

from typing import Any

from conformance.scenario import HTTPRequest, Scenario, SendPacket, SendRaw, SendText
from conformance.sections import SECTIONS
from reference_server.protocol import ADMIN_COMMANDS, PACKETS, TYPE_LIMIT, Direction, PacketType

#: What an HTTP request to gearmand's HTTP module can ask for (section 5).
HTTP_FEATURES = ("POST", "PUT", "GET", "background", "unique", "priority high",
                 "priority low")


def _http_features(scenario: Scenario) -> set[str]:
    seen = set()
    for step in scenario.all_steps():
        if isinstance(step, HTTPRequest):
            seen.add(step.method)
            for header in step.headers:
                line = header.text.lower()
                if line.startswith("x-gearman-background: true"):
                    seen.add("background")
                elif line.startswith("x-gearman-unique:"):
                    seen.add("unique")
                elif line.startswith("x-gearman-priority: "):
                    seen.add("priority " + line.split(": ", 1)[1].strip())
    return seen


REQUESTS = tuple(t for t in PacketType if PACKETS[t].direction in (Direction.REQUEST,
                                                                    Direction.BOTH))
PEER_SENT_RESPONSES = tuple(t for t in PacketType if PACKETS[t].direction in (
    Direction.RESPONSE, Direction.NONE) and t != PacketType.TEXT)


def _sent_types(scenario: Scenario) -> set[int]:
    types: set[int] = set()
    for step in scenario.all_steps():
        if isinstance(step, SendPacket):
            types.add(int(step.type))
        elif isinstance(step, SendRaw) and step.packet_type is not None:
            types.add(step.packet_type)
    return types


def _admin_commands(scenario: Scenario) -> set[str]:
    commands = set()
    for step in scenario.all_steps():
        if isinstance(step, SendText) and step.text.raw is None:
            for line in step.text.text.splitlines() or [""]:
                word = line.split(" ", 1)[0].strip().lower()
                if word in ADMIN_COMMANDS:
                    commands.add(word)
    return commands


def coverage(scenarios: list[Scenario]) -> dict[str, Any]:
    sent: set[int] = set()
    commands: set[str] = set()
    sections: set[str] = set()
    http: set[str] = set()
    for scenario in scenarios:
        http |= _http_features(scenario)
        sent |= _sent_types(scenario)
        commands |= _admin_commands(scenario)
        sections |= set(scenario.sections)

    def part(universe: list[str], seen: set[str]) -> dict[str, Any]:
        return {"covered": sorted(seen & set(universe), key=universe.index),
                "missing": [u for u in universe if u not in seen], "total": len(universe)}

    requests = [t.name for t in REQUESTS]
    peer_responses = [t.name for t in PEER_SENT_RESPONSES]
    names = {PacketType(t).name for t in sent if 0 <= t < TYPE_LIMIT}
    figures = {
        "request_types": part(requests, names),
        "responses_sent_by_peer": part(peer_responses, names),
        "invalid_types": sorted(t for t in sent if not 0 < t < TYPE_LIMIT),
        "admin_commands": part(list(ADMIN_COMMANDS), commands),
        "sections": part(list(SECTIONS), sections),
        "http": part(list(HTTP_FEATURES), http),
        "scenarios": len(scenarios),
    }
    # The lines reports print, written into the run JSON: reports read results only.
    return {**figures, "lines": summary_lines(figures)}


def summary_lines(cov: dict[str, Any]) -> list[str]:
    lines = []
    for key, label in (("request_types", "request packet types"),
                       ("responses_sent_by_peer", "server-only types sent by a peer"),
                       ("admin_commands", "admin commands"),
                       ("http", "HTTP module requests"),
                       ("sections", "protocol sections")):
        if key not in cov:  # a run JSON written before it was counted
            continue
        part = cov[key]
        missing = f" (missing: {', '.join(part['missing'])})" if part["missing"] else ""
        lines.append(f"{label}: {len(part['covered'])}/{part['total']}{missing}")
    return lines
