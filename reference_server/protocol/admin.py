"""The admin (text) protocol's vocabulary: its commands, and which answer with a list.

PROTOCOL "Administrative Protocol"; gearmand 1.1.20 libgearman-server/text.cc.
What each command does is in ``reference_server/core/admin.py``.
"""

from __future__ import annotations

#: The admin commands of gearmand 1.1.20's text protocol, and "shutdown", which it
#: removed in 1.1.15 (the reference server keeps it behind --admin-shutdown).
ADMIN_COMMANDS = ("workers", "status", "prioritystatus", "maxqueue", "cancel", "show",
                  "create", "drop", "getpid", "verbose", "version", "shutdown")

#: Commands whose answer is a list of rows closed by a line holding a single ".".
LIST_COMMANDS = frozenset({"workers", "status", "prioritystatus", "show"})
