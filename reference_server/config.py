"""gearmand's command line, parsed into a ``ServeConfig``, and the core it opens.

Option names and meanings follow gearmand 1.1.20 (``gearmand --help``).  What
differs, and why:

* ``-l/--log-file`` defaults to ``stderr`` (gearmand: a file under /var/log).
* ``-t/--threads`` is accepted and ignored: this server is one event loop.
* ``-w`` and ``-j`` must be 0..255; gearmand stores them in 8 bits and
  silently wraps larger values.
* ``-p 0`` binds a free port; the chosen address is logged at INFO.
* Ours, not gearmand's: ``--max-packet-size`` (see the codec) and
  ``--admin-shutdown`` (the admin ``shutdown`` command, which gearmand
  removed in 1.1.15 because any peer could stop the server).

A bad option or value raises ``UsageError`` (one line, exit 2 from the
command).  Both transports start from here: ``cli.serve`` (sockets) and
``memory.MemoryServer`` parse the same options and open the same core with
``open_core``.
"""

from __future__ import annotations

import argparse
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reference_server import __version__
from reference_server.core import GEARMAND_VERSION, VERBOSE_LEVELS, JobServer, ServerOptions
from reference_server.net import Keepalive
from reference_server.queues import JobQueue, QueueError, queue_types
from reference_server.tls import TLSError, TLSFiles, server_context
from reference_server.usage import Parser, UsageError

DEFAULT_PORT = 4730
DEFAULT_CONFIG_FILE = "/etc/gearmand.conf"

#: gearmand queue modules we do not provide, and why (each gets one error line).
NOT_PROVIDED = {
    "libtokyocabinet": "Tokyo Cabinet is unmaintained and Debian's gearmand is built "
                       "without it; use -q libsqlite3 for a local file",
    "mongodb": "no gearmand release shipped a MongoDB queue; use -q libsqlite3, postgres, "
               "mysql or redis",
}
NOT_PROVIDED["tokyocabinet"] = NOT_PROVIDED["libtokyocabinet"]


@dataclass(slots=True)
class ServeConfig:
    options: ServerOptions
    host: str | None = None
    port: int = DEFAULT_PORT
    backlog: int = 32
    keepalive: Keepalive = field(default_factory=Keepalive)
    log_file: str = "stderr"
    pid_file: str | None = None
    daemon: bool = False
    user: str | None = None
    file_descriptors: int | None = None
    queue_type: str = "builtin"
    queue_options: dict[str, object] = field(default_factory=dict)
    syslog: bool = False
    coredump: bool = False
    tls: ssl.SSLContext | None = None  # --ssl
    http_port: int | None = None  # -r http --http-port


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _byte(text: str) -> int:
    value = _non_negative(text)
    if value > 255:
        raise argparse.ArgumentTypeError(f"{value} is above 255 (gearmand keeps it in 8 bits)")
    return value


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _keepalive_value(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _verbose(text: str) -> str:
    level = text.upper()
    if level not in VERBOSE_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(VERBOSE_LEVELS)}")
    return level


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="gearspec's reference Gearman job server "
                     f"(answers like gearmand {GEARMAND_VERSION}).", allow_abbrev=False)
    # In the order --help lists them; split in three for length only.
    for add_options in (_add_server_options, _add_queue_options, _add_more_options):
        add_options(parser.add_argument)
    return parser


Add = Callable[..., object]


def _add_server_options(add: Add) -> None:
    add("-b", "--backlog", type=_positive, default=32, help="listen backlog (32)")
    add("-d", "--daemon", action="store_true", help="detach and run in the background")
    add("--exceptions", action="store_true", help="every connection starts with 'exceptions' on")
    add("-f", "--file-descriptors", type=_positive, help="raise the open-file limit to N")
    add("-j", "--job-retries", type=_byte, default=0,
        help="drop a job after N requeues from lost or timed-out workers (0: never)")
    add("--job-handle-prefix", help="job handles are PREFIX:N (default H:<hostname>)")
    add("--hashtable-buckets", type=_positive, default=991, help="accepted; Python dicts resize")
    add("--keepalive", action="store_true",
        help="apply the --keepalive-* values (SO_KEEPALIVE itself is always on)")
    add("--keepalive-idle", type=_keepalive_value, default=-1)
    add("--keepalive-interval", type=_keepalive_value, default=-1)
    add("--keepalive-count", type=_keepalive_value, default=-1)
    add("-l", "--log-file", default="stderr", help="log file, or 'stderr' (default) or 'none'")
    add("-L", "--listen", help="address to listen on (default: all)")
    add("-p", "--port", type=_port, help="TCP port (4730, or $GEARMAND_PORT); 0 picks a free one")
    add("-P", "--pid-file", help="write the process id to this file")
    add("-r", "--protocol", help="extra protocol module: http (gearmand's only one)")
    add("--http-port", type=_port, default=8080, help="port for -r http")
    add("-R", "--round-robin", action="store_true",
        help="rotate a worker's functions after each job it takes")


def _add_queue_options(add: Add) -> None:
    add("-q", "--queue-type", default="builtin",
        help="persistent queue: builtin (none), libsqlite3, postgres, mysql, redis, "
             "libmemcached, libdrizzle")
    add("--libsqlite3-db", help="libsqlite3: database file")
    add("--libsqlite3-table", default="gearman_queue", help="libsqlite3: table")
    add("--store-queue-on-shutdown", action="store_true",
        help="libsqlite3: write pending jobs only when the server stops (as gearmand 1.1.20)")
    add("--libpq-conninfo", default="", help="postgres: libpq connection string")
    add("--libpq-table", default="queue", help="postgres: table")
    add("--mysql-host", default="localhost")
    add("--mysql-port", type=_port, default=3306)
    add("--mysql-user", default="")
    add("--mysql-password", default="")
    add("--mysql-db", default="")
    add("--mysql-table", default="gearman_queue")
    add("--redis-server", default="127.0.0.1")
    add("--redis-port", type=_port, default=6379)
    add("--redis-password", default="")
    add("--redis-prefix", default="_gear_")
    add("--libmemcached-servers", default="127.0.0.1:11211",
        help="memcached server, HOST:PORT (the first of a list is used)")
    add("--libmemcached-prefix", default="gear_")
    # gearmand's libdrizzle module, with its defaults (Drizzle's port among them).
    add("--libdrizzle-host", default="localhost")
    add("--libdrizzle-port", type=_port, default=4427)
    add("--libdrizzle-uds", default="", help="libdrizzle: Unix socket of the server")
    add("--libdrizzle-user", default="root")
    add("--libdrizzle-password", default="")
    add("--libdrizzle-db", default="gearman")
    add("--libdrizzle-table", default="queue")
    add("--libdrizzle-mysql", action="store_true",
        help="libdrizzle: the server speaks MySQL (required: MySQL and MariaDB only)")
    # Accepted so that -q libtokyocabinet gets its own message, not an unknown option.
    add("--libtokyocabinet-file", help=argparse.SUPPRESS)
    add("--libtokyocabinet-optimize", help=argparse.SUPPRESS)


def _add_more_options(add: Add) -> None:
    add("--config-file", help=f"file of further options (default {DEFAULT_CONFIG_FILE} if present)")
    add("--syslog", action="store_true", help="also log to syslog")
    add("--coredump", action="store_true", help="allow core dumps")
    add("-t", "--threads", type=_non_negative, default=4,
        help="accepted; one event loop serves all")
    add("-u", "--user", help="switch to this user after binding")
    add("--verbose", type=_verbose, default="ERROR",
        help="log level: " + ", ".join(VERBOSE_LEVELS))
    add("-V", "--version", action="store_true", help="print the version and exit")
    add("-w", "--worker-wakeup", type=_byte, default=0,
        help="sleeping workers woken per queued job (0: all)")
    add("--ssl", action="store_true", help="TLS on the port (clients need no certificate)")
    add("--ssl-ca-file", help="CA file (or GEARMAND_CA_CERTIFICATE)")
    add("--ssl-certificate", help="server certificate, PEM (or GEARMAND_SERVER_PEM)")
    add("--ssl-key", help="its key, PEM (or GEARMAND_SERVER_KEY)")
    add("--check-args", action="store_true", help="check the options and exit")
    add("--max-packet-size", type=_positive, default=None,
        help="largest packet payload accepted, in bytes (64 MiB)")
    add("--admin-shutdown", action="store_true",
        help="allow the admin 'shutdown [graceful]' command (off: any peer could stop us)")


def _config_file_args(argv: list[str]) -> list[str]:
    """Options from --config-file, split on whitespace as gearmand does.  A
    missing default file is fine; a missing named one is an error.  (gearmand's
    --help also promises an ``@FILE`` form, but 1.1.20 rejects it, and so do we.)"""
    named = None
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--config-file":
            named = next(it, None)
            if named is None:
                raise UsageError("argument --config-file: expected one argument")
        elif arg.startswith("--config-file="):
            named = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    path = Path(named or DEFAULT_CONFIG_FILE)
    if not path.exists():
        if named is not None:
            raise UsageError(f"config file {named} does not exist")
        return rest
    try:
        words = path.read_text().split()
    except OSError as error:
        raise UsageError(f"cannot read config file {path}: {error.strerror}") from None
    return words + rest  # the command line comes last, so it wins


def parse(argv: list[str], prog: str = "gearspec serve") -> ServeConfig | None:
    """The configuration, or None when the command only had to print something."""
    parser = build_parser(prog)
    ns = parser.parse_args(_config_file_args(argv))
    if ns.version:
        print(f"gearspec reference server {__version__} (gearmand {GEARMAND_VERSION} protocol)")
        return None
    queue_type = ns.queue_type.lower()
    queue_options = _queue_options(ns, queue_type)
    if ns.protocol is not None and ns.protocol.lower() != "http":
        raise UsageError(f"protocol module {ns.protocol!r} is not available (gearmand's "
                         "only one is http)")
    tls = None
    if ns.ssl:
        try:
            tls = server_context(TLSFiles.from_options(ns.ssl_ca_file, ns.ssl_certificate,
                                                       ns.ssl_key))
        except TLSError as error:
            raise UsageError(str(error)) from None
    port = ns.port
    if port is None:
        env = os.environ.get("GEARMAND_PORT", "")
        try:
            port = _port(env) if env else DEFAULT_PORT
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"GEARMAND_PORT: {error}") from None
    options = ServerOptions(worker_wakeup=ns.worker_wakeup, job_retries=ns.job_retries,
                            round_robin=ns.round_robin, exceptions=ns.exceptions,
                            admin_shutdown=ns.admin_shutdown, verbose=ns.verbose)
    if ns.job_handle_prefix is not None:
        options.job_handle_prefix = ns.job_handle_prefix.encode()
    if ns.max_packet_size is not None:
        options.max_payload = ns.max_packet_size
    config = ServeConfig(
        options=options, host=ns.listen, port=port, backlog=ns.backlog,
        keepalive=Keepalive(ns.keepalive, ns.keepalive_idle, ns.keepalive_interval,
                            ns.keepalive_count),
        log_file=ns.log_file, pid_file=ns.pid_file, daemon=ns.daemon, user=ns.user,
        file_descriptors=ns.file_descriptors, queue_type=queue_type,
        queue_options=queue_options, syslog=ns.syslog,
        coredump=ns.coredump, tls=tls,
        http_port=ns.http_port if ns.protocol is not None else None)
    if ns.check_args:
        return None
    return config


def _queue_options(ns: argparse.Namespace, queue_type: str) -> dict[str, object]:
    """The keyword arguments of the -q queue's class, from its options."""
    if queue_type in NOT_PROVIDED:
        raise UsageError(f"-q {ns.queue_type}: not provided: {NOT_PROVIDED[queue_type]}")
    if queue_type not in queue_types():
        raise UsageError(f"unknown queue type {ns.queue_type!r} (available: "
                         f"{', '.join(queue_types())})")
    if queue_type == "libsqlite3":
        if not ns.libsqlite3_db:
            raise UsageError("-q libsqlite3 needs --libsqlite3-db FILE")
        return {"path": ns.libsqlite3_db, "table": ns.libsqlite3_table,
                "store_on_shutdown": ns.store_queue_on_shutdown}
    if queue_type == "postgres":
        return {"conninfo": ns.libpq_conninfo, "table": ns.libpq_table}
    if queue_type == "mysql":
        return {"host": ns.mysql_host, "port": ns.mysql_port, "user": ns.mysql_user,
                "password": ns.mysql_password, "db": ns.mysql_db, "table": ns.mysql_table}
    if queue_type == "redis":
        return {"host": ns.redis_server, "port": ns.redis_port,
                "password": ns.redis_password, "prefix": ns.redis_prefix}
    if queue_type == "libmemcached":
        return {"servers": ns.libmemcached_servers, "prefix": ns.libmemcached_prefix}
    if queue_type == "libdrizzle":
        return {"host": ns.libdrizzle_host, "port": ns.libdrizzle_port,
                "user": ns.libdrizzle_user, "password": ns.libdrizzle_password,
                "db": ns.libdrizzle_db, "table": ns.libdrizzle_table,
                "uds": ns.libdrizzle_uds, "mysql": ns.libdrizzle_mysql}
    return {}


def open_queue(config: ServeConfig) -> JobQueue:
    """The persistent queue of ``-q``; a store that cannot be reached is one line, exit 2."""
    try:
        queue: JobQueue = queue_types()[config.queue_type](**config.queue_options)
    except QueueError as error:
        raise UsageError(f"-q {config.queue_type}: {error}") from None
    except ImportError as error:
        raise UsageError(f"-q {config.queue_type} needs the Python package {error.name!r} "
                         "(pip install gearspec installs it)") from None
    return queue


def open_core(config: ServeConfig, clock: Callable[[], float] = time.time
              ) -> tuple[JobServer, int]:
    """A core for ``config`` with its ``-q`` queue open and replayed (and committed), as
    gearmand does before it listens; and how many jobs came back."""
    queue = open_queue(config)
    core = JobServer(config.options, queue=queue, clock=clock)
    try:
        replayed = core.replay(queue.replay())
        core.commit()
    except QueueError as error:
        raise UsageError(f"cannot replay the {queue.name} queue: {error}") from None
    return core, replayed
