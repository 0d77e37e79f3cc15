"""Deliberately broken copies of gearspec's own client library, for checking that the
client catalog catches real client bugs.  ``python tests/planted_client.py BUG
describe|run`` is the library's adapter (conformance/adapters/gearspec_client.py)
with BUG planted:

* ``first-data-only``: the data callback is called for a job's first WORK_DATA
  only (gearman-go issue 20's bug);
* ``status-swapped``: WORK_STATUS's numerator and denominator change places;
* ``error-ignored``: an ERROR packet is thrown away (a client that then waits
  for an answer that will never come).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reference_server.client import client as library  # noqa: E402
from reference_server.protocol import Packet, PacketType  # noqa: E402

BUGS = ("first-data-only", "status-swapped", "error-ignored")
T = PacketType


def plant(bug: str) -> None:
    update = library.Client._update
    dispatch = library.Client._dispatch
    if bug == "first-data-only":
        def first_only(job, packet):  # type: ignore[no-untyped-def]
            if packet.type == T.WORK_DATA and job.data:
                job.data.append(packet.args[1])  # kept, but the callback is not called
                return
            update(job, packet)

        library.Client._update = staticmethod(first_only)  # type: ignore[method-assign]
    elif bug == "status-swapped":
        def swapped(job, packet):  # type: ignore[no-untyped-def]
            if packet.type == T.WORK_STATUS:
                handle, numerator, denominator = packet.args
                packet = Packet(packet.type, (handle, denominator, numerator), packet.magic)
            update(job, packet)

        library.Client._update = staticmethod(swapped)  # type: ignore[method-assign]
    elif bug == "error-ignored":
        def no_errors(self, packet):  # type: ignore[no-untyped-def]
            if packet.type != T.ERROR:
                dispatch(self, packet)

        library.Client._dispatch = no_errors  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown bug {bug!r} (known: {', '.join(BUGS)})")


if __name__ == "__main__":
    plant(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    runpy.run_path(str(ROOT / "conformance" / "adapters" / "gearspec_client.py"),
                   run_name="__main__")
