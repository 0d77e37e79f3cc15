"""What the fuzzers already found in other servers, so a campaign can look past it.

A finding recorded here is a deviation the catalog already holds: its case is
in the server's baseline, with the reason and a reproducer.  Fuzzing that
server again would find the same crash in the first seconds and stop there,
so by default the server fuzzer leaves out the inputs that trigger it
(``gearspec fuzz server --include-known`` puts them back).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from reference_server.protocol import Magic

#: A binary header whose type number has its top bit set (2^31 and up).
_TOP_BIT_TYPE = re.compile(b"(?:" + re.escape(Magic.REQ.value) + b"|" + re.escape(Magic.RES.value)
                           + b")[\x80-\xff]", re.DOTALL)


@dataclass(frozen=True)
class KnownFinding:
    target: str  # the baseline it is recorded in
    case: str  # the catalog scenario that reproduces it
    summary: str
    #: Whether one connection's outgoing bytes may trigger it.  Over-approximate:
    #: the pattern anywhere in the stream, not only where a header would start.
    triggered_by: Callable[[bytes], bool]


KNOWN: tuple[KnownFinding, ...] = (
    KnownFinding("gearmand", "framing/types/type-2147483648-closes",
                 "a header with a type number of 2^31 or more crashes gearmand 1.1.20",
                 lambda stream: _TOP_BIT_TYPE.search(stream) is not None),
)


def known_for(target: str) -> tuple[KnownFinding, ...]:
    return tuple(k for k in KNOWN if k.target == target)


def triggers(findings: tuple[KnownFinding, ...], noise: list[tuple[int, bytes]]) -> bool:
    """Whether generated noise (connection, bytes) may trigger one of ``findings``."""
    streams: dict[int, bytes] = {}
    for conn, data in noise:
        streams[conn] = streams.get(conn, b"") + data
    return any(k.triggered_by(s) for k in findings for s in streams.values())
