"""The sans-IO job server: state, rules for the binary and admin protocols."""

from reference_server.core.model import Connection, Function, Job, Registration
from reference_server.core.options import GEARMAND_VERSION, VERBOSE_LEVELS, ServerOptions
from reference_server.core.server import JobServer
from reference_server.protocol import Priority

__all__ = ["Connection", "Function", "GEARMAND_VERSION", "Job", "JobServer", "Priority",
           "Registration", "ServerOptions", "VERBOSE_LEVELS"]
