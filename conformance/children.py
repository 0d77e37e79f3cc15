"""Child runs that cannot outlive their parent: ``gearspec mutate`` and its ``--fuzz``
start a run per mutant, and each run starts servers and adapters of its own.

A run that outlives its timeout, or whose parent is stopped (Ctrl-C, SIGTERM, or
killed outright), is ended with every process below it: the servers a run starts
sit in sessions of their own (so that a case can kill one), so a process group
would miss them; the tree of parent links does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import psutil

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: Set by run_bounded to its own pid: the child (and not the child's children, whose
#: parent is another) then follows its parent.
FOLLOW = "GEARSPEC_FOLLOW_PARENT"
_live: set[subprocess.Popen[str]] = set()
_lock = threading.Lock()
_stopping = False


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it, the whole tree found first (a
    process killed first would hand its children to init, out of reach), ``pid``
    last (it may be the caller)."""
    try:
        top = psutil.Process(pid)
        tree = [*top.children(recursive=True), top]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def run_bounded(command: Sequence[str], *, timeout: float, input: str | None = None,
                cwd: str | os.PathLike[str] | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str] | None:
    """``subprocess.run`` that ends the whole tree at the timeout (then None) and when
    the caller is interrupted. (A run that ends by itself stops its own servers.)"""
    env = {**(os.environ if env is None else env), FOLLOW: str(os.getpid())}
    with _lock:  # end_all either sees this run or stops it from starting
        if _stopping:
            return None
        process = subprocess.Popen(list(command), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=cwd, env=env)
        _live.add(process)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        process.communicate()
        return None
    finally:
        if process.returncode is None:  # interrupted (once reaped, its pid is not ours)
            kill_tree(process.pid)
            process.wait()
        with _lock:
            _live.discard(process)
    return subprocess.CompletedProcess(list(command), process.returncode, out, err)


def end_all() -> None:
    """Kill every run still going (the parent is being stopped): the threads waiting
    on them then return at once."""
    global _stopping
    with _lock:
        _stopping = True
        running = list(_live)
    for process in running:
        kill_tree(process.pid)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def run_pool(jobs: int) -> Iterator[ThreadPoolExecutor]:
    """Threads that start bounded runs, ``jobs`` at once. SIGTERM stops them as
    Ctrl-C does: the runs not started are cancelled, those going are ended with
    every process below them (``end_all``), and KeyboardInterrupt goes on up."""
    previous = signal.signal(signal.SIGTERM, _interrupted)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        yield pool
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        end_all()
        raise
    finally:
        pool.shutdown(wait=True)
        signal.signal(signal.SIGTERM, previous)


def follow_parent() -> None:
    """In a child of run_bounded (a no-op elsewhere): when the parent dies, even by
    SIGKILL, the kernel sends us SIGTERM (Linux's PR_SET_PDEATHSIG), and we end our
    own tree with us. (The kernel means the parent's thread that started us:
    ``run_bounded``'s callers are pool threads that live until every run is over.)"""
    parent = os.getppid()
    if os.environ.get(FOLLOW) != str(parent):
        return
    signal.signal(signal.SIGTERM, lambda *_: kill_tree(os.getpid()))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the prctl took hold
        kill_tree(os.getpid())
