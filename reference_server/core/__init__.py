"""The sans-IO job server: state, rules for the binary and admin protocols.

A reading order, each module one sitting:

* ``server.py``: ``JobServer``, what a transport calls (bytes in, bytes out);
* ``handlers.py``: one handler per binary packet type, citing PROTOCOL;
* ``admin.py``: one function per admin text command;
* ``jobs.py``: the job store (functions, jobs, uniques, FIFOs, registrations);
* ``persistence.py``: rows in the persistent queue, staged and group-committed;
* ``timers.py``: CAN_DO_TIMEOUT deadlines; ``outbox.py``: bytes waiting to leave;
* ``model.py``: the records; ``compat.py``: how gearmand's C reads bytes;
* ``http.py``: the HTTP protocol module's translation; ``options.py``: settings.
"""

from reference_server.core.model import Connection, Function, Job, Registration
from reference_server.core.options import GEARMAND_VERSION, VERBOSE_LEVELS, ServerOptions
from reference_server.core.server import JobServer
from reference_server.protocol import Priority

__all__ = ["Connection", "Function", "GEARMAND_VERSION", "Job", "JobServer", "Priority",
           "Registration", "ServerOptions", "VERBOSE_LEVELS"]
