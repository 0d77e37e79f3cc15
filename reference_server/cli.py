"""``gearspec serve`` / ``python -m reference_server``: gearmand's command line.

The options and what they mean are in ``config.py`` (``parse`` gives a
``ServeConfig``); this module runs a server from one: logging, the process
options (daemon, pid file, file limit, user), signals, and the asyncio
transport (``net.py``) on the core ``config.open_core`` opened.

A bad option or value prints one line and exits 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from reference_server.config import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_PORT,
    NOT_PROVIDED,
    ServeConfig,
    build_parser,
    open_core,
    open_queue,
    parse,
)
from reference_server.net import Transport
from reference_server.usage import UsageError

__all__ = ["DEFAULT_CONFIG_FILE", "DEFAULT_PORT", "NOT_PROVIDED", "ServeConfig", "build_parser",
           "main", "open_core", "open_queue", "parse", "serve"]

_LOG_LEVELS = {"FATAL": logging.CRITICAL, "ALERT": logging.CRITICAL, "CRITICAL": logging.CRITICAL,
               "ERROR": logging.ERROR, "WARNING": logging.WARNING, "NOTICE": logging.INFO,
               "INFO": logging.INFO, "DEBUG": logging.DEBUG}

log = logging.getLogger("reference_server")


class _ReopenableFileHandler(logging.FileHandler):
    """A log file that SIGHUP reopens (for logrotate), as gearmand's does."""

    def reopen(self) -> None:
        try:
            stream = self._open()
        except OSError as error:  # keep the old file rather than lose every later line
            log.warning("cannot reopen log file %s: %s", self.baseFilename, error.strerror)
            return
        self.acquire()
        try:
            old, self.stream = self.stream, stream
        finally:
            self.release()
        if old:
            old.close()


def _setup_logging(config: ServeConfig) -> _ReopenableFileHandler | None:
    log.setLevel(_LOG_LEVELS[config.options.verbose])
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    file_handler = None
    if config.log_file == "stderr":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    elif config.log_file == "none":
        handler = logging.NullHandler()
    else:
        try:
            handler = file_handler = _ReopenableFileHandler(config.log_file)
        except OSError as error:
            raise UsageError(f"cannot open log file {config.log_file}: {error.strerror}") from None
    handler.setFormatter(fmt)
    log.addHandler(handler)
    if config.syslog and os.path.exists("/dev/log"):
        log.addHandler(logging.handlers.SysLogHandler(address="/dev/log"))
    return file_handler


def _apply_process_options(config: ServeConfig) -> None:
    if config.file_descriptors is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (config.file_descriptors, config.file_descriptors))
        except (ValueError, OSError) as error:
            raise UsageError(f"cannot set the file descriptor limit to "
                             f"{config.file_descriptors}: {error}") from None
    if config.coredump:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _drop_privileges(user: str) -> None:
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"no such user {user!r}") from None
    try:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as error:
        raise UsageError(f"cannot switch to user {user!r}: {error.strerror}") from None


def _daemonize() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


async def serve(config: ServeConfig, on_hangup: Callable[[], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT (or an allowed admin shutdown); SIGHUP calls
    ``on_hangup`` (reopening the log file)."""
    core, replayed = open_core(config)
    queue = core.queue
    log.info("replayed %d jobs from the %s queue", replayed, queue.name)
    transport = Transport(core, keepalive=config.keepalive)
    try:
        addresses = await transport.listen(config.host, config.port, backlog=config.backlog,
                                           tls=config.tls)
    except OSError as error:
        raise UsageError(f"cannot listen on {config.host or '*'}:{config.port}: "
                         f"{error.strerror}") from None
    if config.http_port is not None:
        try:
            addresses += await transport.listen_http(config.host, config.http_port,
                                                     backlog=config.backlog)
        except OSError as error:
            raise UsageError(f"cannot listen for HTTP on {config.host or '*'}:"
                             f"{config.http_port}: {error.strerror}") from None
    for host, port in addresses:
        log.info("listening on %s:%d", host, port)
    if config.user:
        _drop_privileges(config.user)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, transport.stop)
    loop.add_signal_handler(signal.SIGHUP, on_hangup or (lambda: None))
    await transport.stopped.wait()
    for server in transport.servers:
        await server.wait_closed()
    queue.shutdown(core.stored_jobs())
    queue.close()
    log.info("stopped")
    return 0


def _run(config: ServeConfig) -> int:
    if config.daemon:
        _daemonize()
    file_handler = _setup_logging(config)
    _apply_process_options(config)
    if config.pid_file:
        Path(config.pid_file).write_text(f"{os.getpid()}\n")
    try:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        return runner(serve(config, file_handler.reopen if file_handler else None))
    finally:
        if config.pid_file:
            with contextlib.suppress(OSError):
                os.unlink(config.pid_file)


def main(argv: list[str] | None = None, prog: str = "python -m reference_server") -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = parse(argv, prog)
        if config is None:
            return 0
        return _run(config)
    except UsageError as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
