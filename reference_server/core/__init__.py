"""The sans-IO job server: state, rules for the binary and admin protocols."""

from reference_server.core.model import Connection, Function, Job, Priority, Registration
from reference_server.core.options import GEARMAND_VERSION, VERBOSE_LEVELS, ServerOptions
from reference_server.core.server import JobServer

__all__ = ["Connection", "Function", "GEARMAND_VERSION", "Job", "JobServer", "Priority",
           "Registration", "ServerOptions", "VERBOSE_LEVELS"]
