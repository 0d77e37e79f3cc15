"""What a target can take, in words a user can give (``--capabilities``).

A case needs some of these (``Scenario.needs``); a target that lacks one gets
the case as UNSUPPORTED with the missing words, and every summary counts
those cases by the capability they lacked, so a skipped part of the catalog
never passes for green (``--require-all`` makes them failures).  Kinds the
harness knows say what they take; ``exec:`` and ``tcp://`` targets can be
told more.
"""

from __future__ import annotations

#: Capability → what it means.  ``memcached`` is a helper service, not the server's:
#: the harness starts one when the machine has it (conformance.services).
CAPABILITIES = {
    "echo": "answers ECHO_REQ (the harness syncs on it; without it, on short silences)",
    "grab-job-uniq": "knows GRAB_JOB_UNIQ",
    "restart": "is started, killed and restarted by the harness (cases that restart it, "
               "or need a server of their own)",
    "gearmand-options": "takes gearmand's command-line options: -j, -R, -w, -t, "
                        "--exceptions, --job-handle-prefix, ... (the case starts its own "
                        "server with them)",
    "persistence": "takes gearmand's persistent queue options: -q libsqlite3 "
                   "--libsqlite3-db FILE, -q libmemcached --libmemcached-servers ...",
    "http": "takes gearmand's HTTP protocol module: -r http --http-port PORT",
    "tls": "speaks TLS with gearmand's --ssl options (or is a tls:// server)",
    "memcached": "a memcached the harness can start (apt install memcached)",
}

#: Other spellings accepted: image labels written before the names above, and the
#: word the docs of other servers use.
ALIASES = {
    "grab_job_uniq": {"grab-job-uniq"},
    "server_options": {"gearmand-options", "http"},  # labels from before "http" existed
    "server-options": {"gearmand-options"},
}

#: What only a server the harness starts can take: a tcp:// server runs as it runs.
STARTED_ONLY = frozenset({"restart", "gearmand-options", "persistence", "http"})


class CapabilityError(ValueError):
    """An unknown capability word."""


def parse(text: str) -> frozenset[str]:
    """``"gearmand-options,persistence"`` → the capabilities (aliases resolved)."""
    found: set[str] = set()
    for word in (w.strip().lower() for w in text.split(",")):
        if not word:
            continue
        if word in ALIASES:
            found |= ALIASES[word]
        elif word in CAPABILITIES:
            found.add(word)
        else:
            raise CapabilityError(f"unknown capability {word!r} (known: "
                                  f"{', '.join(CAPABILITIES)})")
    return frozenset(found)


def sorted_names(capabilities: set[str] | frozenset[str]) -> list[str]:
    """In the order of ``CAPABILITIES`` (the order a reader meets them)."""
    order = list(CAPABILITIES)
    return sorted(capabilities, key=lambda c: order.index(c) if c in order else len(order))
