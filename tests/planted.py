"""Deliberately broken copies of the reference server, for checking that the fuzzers
catch real bugs.  ``python tests/planted.py BUG [server options]`` runs the server
with BUG planted; ``plant(BUG)`` plants it in this process."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reference_server.core import jobs as core_jobs
from reference_server.core import server as core_server
from reference_server.protocol import Packet, codec

BUGS = ("forget-listener", "mis-split")


class MisSplittingDecoder(codec.Decoder):
    """Splits arguments from the right: a NUL inside the last argument moves the
    boundaries (the classic bug of splitting the data before the header fields)."""

    def next_event(self):  # type: ignore[no-untyped-def]
        event = super().next_event()
        if isinstance(event, Packet) and len(event.args) > 1 and b"\0" in event.args[-1]:
            joined = b"\0".join(event.args)
            event = Packet(event.type, tuple(joined.rsplit(b"\0", len(event.args) - 1)),
                           event.magic)
        return event


def plant(bug: str) -> None:
    if bug == "forget-listener":
        original = core_jobs.JobStore.attach_client

        def attach(self, job, conn):  # type: ignore[no-untyped-def]
            if job.clients:  # a coalesced foreground submitter is never told anything
                return
            original(self, job, conn)

        core_jobs.JobStore.attach_client = attach  # type: ignore[method-assign]
    elif bug == "mis-split":
        core_server.Decoder = MisSplittingDecoder  # type: ignore[misc]
        codec.Decoder = MisSplittingDecoder  # type: ignore[misc]
    else:
        raise SystemExit(f"unknown bug {bug!r} (known: {', '.join(BUGS)})")


if __name__ == "__main__":
    plant(sys.argv[1])
    from reference_server.cli import main

    sys.exit(main(sys.argv[2:]))
