"""Every option of ``gearmand --help`` that changes what a peer sees on the wire has
a case that passes on gearmand and fails on gearmand started without it.

The server that ignores an option is gearmand itself, run through
``tests/ignore_option.py``, which drops that option (and its value) from the
case's ``server-options``; everything else about the server is the same.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.loader import load_catalog
from conformance.runner import RunOptions, run
from conformance.targets import GEARMAND
from results import Verdict
from tests.conftest import require_gearmand

ROOT = Path(__file__).resolve().parent.parent
CATALOG = [s for s in load_catalog() if s.mode == "server"]

#: gearmand's protocol-changing options, as ``gearmand --help`` names them.
PROTOCOL_OPTIONS = {
    "-w": "worker wake-up: how many sleeping workers a job wakes",
    "-j": "job retries: a job whose workers keep dying is failed after this many",
    "-R": "round robin: a worker's functions take turns",
    "--exceptions": "WORK_EXCEPTION forwarded without OPTION_REQ",
    "--job-handle-prefix": "the handles' prefix",
    "-q": "a persistent queue: background jobs survive a restart",
    "-r": "a protocol module (http): jobs submitted over HTTP",
}

#: Options of ``gearmand --help`` left out, and why no wire case can tell them apart.
NOT_ON_THE_WIRE = {
    "-t": "I/O threads: the same answers, in the same order per connection",
    "-b": "listen backlog", "-f": "file-descriptor limit", "-u": "the user it runs as",
    "-d": "daemon", "-l": "log file", "-P": "pid file", "--verbose": "log level",
    "--syslog": "logging", "--coredump": "core dumps",
    "--hashtable-buckets": "the job table's size, not its behaviour",
    "--config-file": "another way to give these same options",
    "--ssl": "Debian's gearmand is built without TLS: it speaks plaintext either way",
    "--keepalive": "TCP keepalive probes, below the protocol: tests/test_cli.py reads the "
                   "kernel's timer of gearmand's and ref's sockets (--keepalive-idle 30 "
                   "against the default)",
}


@pytest.mark.parametrize("option", list(PROTOCOL_OPTIONS))
def test_a_case_catches_the_option_ignored(option: str) -> None:
    require_gearmand()
    chosen = [s for s in CATALOG if option in s.server_options]
    assert chosen, f"no case starts a server with {option} ({PROTOCOL_OPTIONS[option]})"
    ignoring = f"exec:{sys.executable} {ROOT / 'tests' / 'ignore_option.py'} {option} -- " \
               f"{GEARMAND} -p {{port}} -L {{host}}"
    taken = frozenset({"gearmand-options", "persistence", "http"})
    result = asyncio.run(run(chosen, [("gearmand", []), (ignoring, [])],
                             RunOptions(capabilities={ignoring: taken},
                                        baselines={ignoring: "gearmand"}),
                             catalog_ids={s.id for s in load_catalog()}))
    real = {r.scenario: r for r in result.results if r.target == "gearmand"}
    assert [r for r in real.values() if not r.expected] == []
    passing = {case for case, r in real.items() if r.verdict is Verdict.PASS}
    caught = {r.scenario for r in result.results if r.target == ignoring
              and r.scenario in passing and r.verdict in (Verdict.FAIL, Verdict.ERROR)}
    assert caught, f"every case with {option} passes on gearmand without it too"


#: Options that only give a value to another (ports, a queue's or TLS's details,
#: keepalive's timings), or only print something.
SUB_OPTIONS = ("-p", "-L", "-h", "-V", "--http-port", "--libmemcached-", "--libsqlite3-",
               "--libpq-", "--redis-", "--mysql-", "--keepalive-", "--ssl-",
               "--store-queue-on-shutdown")


def test_the_lists_name_every_option_gearmand_help_prints() -> None:
    require_gearmand()
    help_text = subprocess.run([GEARMAND, "--help"], capture_output=True, text=True).stdout
    printed = re.findall(r"^\s+(-\w)?\s*(?:\[ )?(--[\w-]+)?", help_text, re.M)
    options = [(short, long) for short, long in printed if short or long]
    assert len(options) > 40, help_text
    named = {*PROTOCOL_OPTIONS, *NOT_ON_THE_WIRE}
    unnamed = [short or long for short, long in options
               if short not in named and long not in named
               and not any(o and o.startswith(SUB_OPTIONS) for o in (short, long))]
    assert unnamed == []
