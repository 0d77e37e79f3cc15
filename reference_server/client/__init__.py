"""A Gearman client and worker library on asyncio, built on the one codec.

Three layers, each usable alone:

* ``Link`` (``link.py``): one TCP connection that sends packets or raw bytes
  and yields decoded events, with timeouts; ``SyncMarker`` and ``Link.sync``
  wait, without sleeping, until everything sent so far has been answered.
  The conformance runner and the fuzzers drive this one.
* ``Client`` (``client.py``: submit jobs, follow them, ask for status, echo)
  and ``Worker`` (``worker.py``: register functions, run the GRAB / PRE_SLEEP
  / NOOP loop) on top of it.
* ``Admin`` (``admin.py``): the text protocol (``status``, ``workers``, ...).

Errors are in ``errors.py``, JSON workload helpers in ``workload.py``.  The
library stands on ``reference_server.protocol`` alone (pyproject's import
contracts), so it talks to any Gearman server.

Example::

    async with await Client.connect("127.0.0.1:4730") as client:
        job = await client.submit("reverse", b"hello")
        print(await job.result())
"""

from reference_server.client.admin import Admin
from reference_server.client.client import Client, Job, JobStatus
from reference_server.client.errors import (
    ConnectionClosed,
    GearmanError,
    JobException,
    JobFailed,
    ServerError,
)
from reference_server.client.link import (
    DEFAULT_PORT,
    Link,
    SyncMarker,
    SyncMarkers,
    parse_address,
)
from reference_server.client.worker import Handler, Worker, WorkerJob, WorkFailed
from reference_server.client.workload import from_json, to_json
from reference_server.protocol import Magic, Priority, TextLine

__all__ = ["Admin", "Client", "ConnectionClosed", "DEFAULT_PORT", "GearmanError",
           "Handler", "Job", "JobException", "JobFailed", "JobStatus", "Link", "Magic",
           "Priority", "ServerError", "SyncMarker", "SyncMarkers", "TextLine", "WorkFailed",
           "Worker", "WorkerJob", "from_json", "parse_address", "to_json"]
