"""Which parts of the protocol a set of scenarios exercises.

Counted from the scenarios themselves (not from a run): the packet types
they send (requests, and server-only types sent by a peer), the admin
commands they send, what their HTTP requests ask of the HTTP module, and the
protocol sections (``SECTIONS``) they name.
"""

from __future__ import annotations

from typing import Any

from conformance.scenario import Scenario
from conformance.sections import SECTIONS
from conformance.verbs import verb_of
from reference_server.protocol import ADMIN_COMMANDS, PACKETS, TYPE_LIMIT, Direction, PacketType

#: What an HTTP request to gearmand's HTTP module can ask for (section 5).
HTTP_FEATURES = ("POST", "PUT", "GET", "background", "unique", "priority high",
                 "priority low")


REQUESTS = tuple(t for t in PacketType if PACKETS[t].direction in (Direction.REQUEST,
                                                                    Direction.BOTH))
PEER_SENT_RESPONSES = tuple(t for t in PacketType if PACKETS[t].direction in (
    Direction.RESPONSE, Direction.NONE) and t != PacketType.TEXT)


def _covered(scenarios: list[Scenario]) -> tuple[set[int], set[str], set[str]]:
    """Packet types sent, admin commands sent, HTTP features asked for: what each
    step's verb says it covers ("type:7", "admin:status", "http:POST")."""
    sent: set[int] = set()
    commands: set[str] = set()
    http: set[str] = set()
    for scenario in scenarios:
        for step in scenario.all_steps():
            for key in verb_of(step).covers(step):
                kind, _, what = key.partition(":")
                if kind == "type":
                    sent.add(int(what))
                elif kind == "admin" and what in ADMIN_COMMANDS:
                    commands.add(what)
                elif kind == "http":
                    http.add(what)
    return sent, commands, http


def coverage(scenarios: list[Scenario]) -> dict[str, Any]:
    sent, commands, http = _covered(scenarios)
    sections = {section for scenario in scenarios for section in scenario.sections}

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
    return {**figures, "lines": summary_lines(figures) if scenarios else []}


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
