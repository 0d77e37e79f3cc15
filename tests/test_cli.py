"""The server's command line, run for real as subprocesses.

``python -m reference_server`` and ``gearspec serve`` are started with the
options under test on 127.0.0.1 and a port found free at run time, and checked
from outside: exit status, what they print, the ECHO round trip, signals,
/proc and ``ss``.  Where /usr/sbin/gearmand has the same behaviour it runs
the same test (and skips cleanly when it is not installed); where it differs
(see the notes on single tests) only our server is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.targets import GEARMAND, echo_round_trip, free_port
from reference_server import __version__
from reference_server.client import Client
from reference_server.protocol import Decoder, Packet, PacketType, encode
from tests.conftest import require_gearmand, require_program

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TIMEOUT = 10.0  # only a guard against hangs: every wait polls for its condition
REF = [sys.executable, "-m", "reference_server"]
GEARSPEC = Path(sys.executable).with_name("gearspec")
PROGS = {"ref": "python -m reference_server", "gearspec": "gearspec serve"}


# --------------------------------------------------------------------------- helpers


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without GEARMAND_PORT (it would change the default port)."""
    env = {key: value for key, value in os.environ.items() if key != "GEARMAND_PORT"}
    env.update(extra)
    return env


def gearspec_command() -> str:
    if not os.access(GEARSPEC, os.X_OK):
        pytest.skip(f"{GEARSPEC} is missing: pip install -e '.[test]' (`make venv` does it)")
    return str(GEARSPEC)


def server_command(kind: str) -> list[str]:
    """The command that starts a server of this kind (skips when it is missing)."""
    if kind == "ref":
        return list(REF)
    if kind == "gearspec":
        return [gearspec_command(), "serve"]
    if kind == "gearmand":
        require_gearmand()
        return [GEARMAND]
    raise ValueError(kind)


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run a command that should end by itself (killed after TIMEOUT if it does not)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                          env=dict(env) if env is not None else clean_env(),
                          stdin=subprocess.DEVNULL, check=False)


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def wait_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once the server answers ECHO on ``port``; False if it exits first (or hangs)."""
    deadline = time.monotonic() + TIMEOUT
    while process.poll() is None:
        if echo_round_trip(HOST, port):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return False


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    text = read_text(path).strip()
    return int(text) if text.isdigit() else None


def alive(pid: int) -> bool:
    """Is ``pid`` a running process (a zombie counts as gone)?"""
    status = read_text(Path(f"/proc/{pid}/status"))
    match = re.search(r"^State:\s+(\S)", status, re.MULTILINE)
    return match is not None and match.group(1) not in ("Z", "X")


def proc_field(pid: int, name: str) -> list[str]:
    """The values of one ``/proc/PID/status`` line, e.g. ``Uid``."""
    for line in read_text(Path(f"/proc/{pid}/status")).splitlines():
        key, _, values = line.partition(":")
        if key == name:
            return values.split()
    return []


def open_files_limit(pid: int) -> tuple[str, str] | None:
    """(soft, hard) of "Max open files" in ``/proc/PID/limits``."""
    limits = read_text(Path(f"/proc/{pid}/limits"))
    match = re.search(r"^Max open files\s+(\S+)\s+(\S+)", limits, re.MULTILINE)
    return (match.group(1), match.group(2)) if match else None


def read_packet(sock: socket.socket) -> Packet:
    decoder = Decoder()
    while True:
        event = decoder.next_event()
        if event is not None:
            assert isinstance(event, Packet), event
            return event
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("connection closed before a whole packet arrived")
        decoder.feed(data)


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


@contextlib.contextmanager
def connected(port: int) -> Iterator[socket.socket]:
    """A connection the server has accepted for sure (an ECHO came back on it)."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(encode(PacketType.ECHO_REQ, b"hello"))
        reply = read_packet(sock)
        assert (reply.type, reply.args) == (PacketType.ECHO_RES, (b"hello",))
        yield sock


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    """A 127.0.0.1 port we hold in LISTEN state, so nobody else can bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def submit_background(port: int, count: int) -> list[bytes]:
    """Handles of ``count`` background jobs submitted over one connection."""

    async def submit() -> list[bytes]:
        async with await Client.connect((HOST, port)) as client:
            return [(await client.submit("gearspec-cli-test", b"%d" % n, background=True)).handle
                    for n in range(count)]

    return asyncio.run(submit())


def assert_one_error_line(done: subprocess.CompletedProcess[str], prog: str) -> str:
    """Exit 2, nothing on stdout, exactly one ``PROG: error: ...`` line on stderr."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert done.stdout == ""
    assert done.returncode == 2, done
    return lines[0]


@dataclass
class Server:
    kind: str
    process: subprocess.Popen[bytes]
    port: int
    output: Path  # stdout and stderr

    @property
    def pid(self) -> int:
        return self.process.pid

    def output_text(self) -> str:
        return read_text(self.output)


class Launcher:
    """Starts server processes for one test and makes sure none outlives it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None
              ) -> tuple[subprocess.Popen[bytes], Path]:
        self.count += 1
        output = self.tmp_path / f"output-{self.count}.txt"
        with output.open("wb") as out:
            process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, cwd=ROOT,
                                       env=dict(env) if env is not None else clean_env(),
                                       start_new_session=True)
        self.processes.append(process)
        return process, output

    def defaults(self, kind: str, options: Sequence[str]) -> list[str]:
        """gearmand writes /var/log/gearmand.log and /var/gearmand.pid unless told otherwise."""
        if kind != "gearmand":
            return []
        self.count += 1
        extra = []
        if "-l" not in options and "--log-file" not in options:
            extra += ["-l", str(self.tmp_path / f"gearmand-{self.count}.log")]
        if "-P" not in options and "--pid-file" not in options:
            extra += ["-P", str(self.tmp_path / f"gearmand-{self.count}.pid")]
        return extra

    def start(self, kind: str, *options: str, setup: Callable[[int], Sequence[str]] | None = None,
              port_env: str | None = None) -> Server:
        """Start a server and wait for its ECHO answer on a free port.

        By default the port is given as ``-L 127.0.0.1 -p PORT``; ``setup(port)``
        returns other arguments instead (and may write files), ``port_env`` names
        an environment variable that carries the port.  A port taken by someone
        else between the probe and the bind means another try."""
        command = server_command(kind)
        failure = ""
        for _attempt in range(3):
            port = free_port()
            env = clean_env()
            if setup is not None:
                where = list(setup(port))
            elif port_env is not None:
                where = ["-L", HOST]
                env[port_env] = str(port)
            else:
                where = ["-L", HOST, "-p", str(port)]
            argv = [*command, *self.defaults(kind, options), *where, *options]
            process, output = self.spawn(argv, env)
            if wait_ready(process, port):
                return Server(kind, process, port, output)
            failure = (f"{argv} exited {process.poll()} or gave no ECHO answer on port {port}: "
                       f"{read_text(output)[-800:]!r}")
            if process.poll() is None:
                break  # running but not answering: a retry would not help
        pytest.fail(failure)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(TIMEOUT)
        # Daemons are not our children: find them by this test's private directory,
        # which is on their command line.
        mark = str(self.tmp_path).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if mark in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    servers = Launcher(tmp_path)
    try:
        yield servers
    finally:
        servers.close()


# --------------------------------------------------------------------------- 1. bad arguments

BAD_ARGUMENTS = [
    ["-w", "300"],
    ["-j", "256"],
    ["--bogus"],
    ["-p", "70000"],
    ["-q", "nosuch"],
    ["--verbose", "LOUD"],
    ["-r", "memcache"],
    ["--ssl"],
    ["--config-file", "/nonexistent/file"],
    ["-b", "0"],
]


@pytest.mark.parametrize("kind", ["ref", "gearspec"])
@pytest.mark.parametrize("bad", BAD_ARGUMENTS, ids=" ".join)
def test_bad_argument_prints_one_line_and_exits_2(kind: str, bad: list[str]) -> None:
    # -L/-p first: should the bad option be accepted after all, the server must
    # not listen on 0.0.0.0:4730.  A later -p (the -p 70000 case) wins.
    done = run([*server_command(kind), "-L", HOST, "-p", str(free_port()), *bad])
    assert_one_error_line(done, PROGS[kind])


@pytest.mark.parametrize("kind", ["ref", "gearspec"])
def test_port_in_use_prints_one_line_and_exits_2(kind: str) -> None:
    with port_in_use() as port:
        done = run([*server_command(kind), "-L", HOST, "-p", str(port)])
    line = assert_one_error_line(done, PROGS[kind])
    assert f"{HOST}:{port}" in line


# gearmand rejects these too, with one line, but exits 1 (not 2).  It accepts
# -w 300 / -j 256 (wrapped to 8 bits), -p 70000 (listens on 70000 % 65536),
# -r http (serves HTTP on --http-port, 8080 by default), --ssl (ignored) and
# -b 0; on a port in use it retries bind() for about 20 s, then exits 1.
@pytest.mark.parametrize("bad", [["--bogus"], ["--verbose", "LOUD"],
                                 ["--config-file", "/nonexistent/file"]], ids=" ".join)
def test_gearmand_rejects_bad_arguments_with_one_line(tmp_path: Path, bad: list[str]) -> None:
    done = run([*server_command("gearmand"), "-l", str(tmp_path / "gearmand.log"),
                "-P", str(tmp_path / "gearmand.pid"), "-L", HOST, "-p", str(free_port()), *bad])
    assert done.returncode != 0, done
    assert len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.parametrize("kind", ["ref", "gearspec"])
def test_bad_gearmand_port_environment_variable_prints_one_line_and_exits_2(kind: str) -> None:
    # BUG: GEARMAND_PORT=70000 ends in a traceback (argparse.ArgumentTypeError
    # escapes parse()) and exit 1.  --check-args: a fixed server must not listen.
    done = run([*server_command(kind), "-L", HOST, "--check-args"],
               env=clean_env(GEARMAND_PORT="70000"))
    assert_one_error_line(done, PROGS[kind])


def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this system (useradd --system nobody)")


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_user_switch_not_permitted_prints_one_line(tmp_path: Path, kind: str) -> None:
    # BUG (ours): a server that may not switch users and is given -u dies with
    # a PermissionError traceback from os.setgroups() and exit 1.  gearmand
    # prints one line ("Could not switch to user : nobody") and exits 1.
    user = nobody()
    command = server_command(kind)
    if os.geteuid() == 0:  # root without CAP_SETUID / CAP_SETGID, like any other user
        setpriv = require_program("setpriv", "util-linux")
        command = [setpriv, "--bounding-set=-setuid,-setgid", "--", *command]
    done = run([*command, "-l", "none", "-P", str(tmp_path / "server.pid"), "-L", HOST,
                "-p", str(free_port()), "-u", user.pw_name])
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.returncode != 0, done
    if kind == "ref":
        assert_one_error_line(done, PROGS[kind])


def test_gearspec_without_a_command_prints_usage_and_exits_2() -> None:
    done = run([gearspec_command()])
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert (done.stdout + done.stderr).startswith("usage: gearspec COMMAND"), done


def test_gearspec_unknown_command_prints_one_line_and_exits_2() -> None:
    done = run([gearspec_command(), "nosuchcommand"])
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("gearspec: error: unknown command 'nosuchcommand'"), lines


# --------------------------------------------------------------------------- 2. print and exit


@pytest.mark.parametrize("kind", ["ref", "gearspec", "gearmand"])
def test_check_args_exits_0_without_listening(tmp_path: Path, kind: str) -> None:
    # The port is held by us: a server that tried to listen on it would fail.
    with port_in_use() as port:
        done = run([*server_command(kind), "-l", str(tmp_path / "server.log"),
                    "-P", str(tmp_path / "server.pid"), "-L", HOST, "-p", str(port),
                    "--check-args"])
    assert done.returncode == 0, done
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("kind", ["ref", "gearspec"])
def test_version_prints_one_line_and_exits_0(kind: str) -> None:
    done = run([*server_command(kind), "-V"])
    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert __version__ in lines[0]
    assert done.stderr == ""


@pytest.mark.parametrize("kind", ["ref", "gearspec"])
def test_help_exits_0(kind: str) -> None:
    done = run([*server_command(kind), "-h"])
    assert done.returncode == 0, done
    assert done.stdout.startswith(f"usage: {PROGS[kind]}"), done.stdout[:200]
    assert "--job-handle-prefix" in done.stdout
    assert done.stderr == ""


# --------------------------------------------------------------------------- 3. config file


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gearmand.conf"
    path.write_text(text)
    return path


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_config_file_sets_listen_and_port(launcher: Launcher, tmp_path: Path, kind: str) -> None:
    def setup(port: int) -> list[str]:
        return ["--config-file",
                str(config_file(tmp_path, f"--listen {HOST}\n--port {port}\n"))]

    server = launcher.start(kind, setup=setup)
    assert echo_round_trip(HOST, server.port)


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_command_line_overrides_config_file(launcher: Launcher, tmp_path: Path,
                                            kind: str) -> None:
    # The file names a port we hold: if the file won, the server could not listen.
    with port_in_use() as taken:
        def setup(port: int) -> list[str]:
            path = config_file(tmp_path, f"--listen {HOST} --port {taken}")
            return ["--config-file", str(path), "-p", str(port)]

        server = launcher.start(kind, setup=setup)
        assert echo_round_trip(HOST, server.port)
        assert server.process.poll() is None


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_at_file_is_not_a_config_file(tmp_path: Path, kind: str) -> None:
    # gearmand 1.1.20's --help says "Can be specified with '@name', too", but it
    # answers "unrecognised option '@FILE'": we refuse it the same way.
    path = config_file(tmp_path, f"--listen {HOST} --port {free_port()}")
    done = run([*server_command(kind), f"@{path}", "--check-args"])
    assert done.returncode != 0, done
    if kind == "ref":
        assert_one_error_line(done, PROGS[kind])


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_option_value_starting_with_at_is_not_a_config_file(launcher: Launcher,
                                                            kind: str) -> None:
    server = launcher.start(kind, "--job-handle-prefix", "@X")
    assert submit_background(server.port, 1) == [b"@X:1"]


# --------------------------------------------------------------------------- 4. stop signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
@pytest.mark.parametrize("kind", ["ref", "gearspec", "gearmand"])
def test_stop_signal_exits_0_closes_connections_and_removes_pid_file(
        launcher: Launcher, tmp_path: Path, kind: str, sig: signal.Signals) -> None:
    pid_file = tmp_path / "server.pid"
    server = launcher.start(kind, "-P", str(pid_file))
    assert read_pid(pid_file) == server.pid
    with connected(server.port) as sock:
        server.process.send_signal(sig)
        assert sock.recv(1) == b""  # EOF, not a reset and not a hang (socket timeout)
    assert server.process.wait(TIMEOUT) == 0, server.output_text()
    assert not pid_file.exists()


# --------------------------------------------------------------------------- 5. SIGHUP


def test_sighup_reopens_the_log_file(launcher: Launcher, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    rotated = tmp_path / "server.log.1"
    server = launcher.start("ref", "-l", str(log), "--verbose", "DEBUG")
    assert wait_until(lambda: "accepted" in read_text(log)), read_text(log)
    log.rename(rotated)  # what logrotate does
    server.process.send_signal(signal.SIGHUP)
    assert wait_until(log.exists), "SIGHUP did not reopen the log file"
    with connected(server.port) as sock:
        line = f"accepted {HOST}:{sock.getsockname()[1]} as connection"
    assert wait_until(lambda: line in read_text(log)), read_text(log)
    assert line not in read_text(rotated)
    assert server.process.poll() is None


def test_sighup_keeps_logging_when_the_log_file_cannot_be_reopened(launcher: Launcher,
                                                                    tmp_path: Path) -> None:
    # BUG: reopen() closes the old stream before opening the new file; when the
    # open fails, the handler keeps the closed stream, and every later record
    # prints a "--- Logging error ---" traceback on stderr and is lost.
    logs = tmp_path / "logs"
    logs.mkdir()
    moved = tmp_path / "logs.old"
    server = launcher.start("ref", "-l", str(logs / "server.log"), "--verbose", "INFO")
    assert wait_until(lambda: "listening on" in read_text(logs / "server.log"))
    logs.rename(moved)  # the log's directory is gone: reopening the file must fail
    server.process.send_signal(signal.SIGHUP)
    # Handled after SIGHUP (the loop runs signal handlers in arrival order);
    # the server logs "stopped" at INFO on its way out.
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(TIMEOUT) == 0
    output = server.output_text()
    assert "Traceback" not in output, output
    assert "Logging error" not in output, output
    assert "stopped" in read_text(moved / "server.log") + output


# --------------------------------------------------------------------------- 6. daemon


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_daemon_detaches_and_stops_on_sigterm(launcher: Launcher, tmp_path: Path,
                                              kind: str) -> None:
    pid_file = tmp_path / "daemon.pid"
    port = free_port()
    process, output = launcher.spawn([*server_command(kind), "-d", "-P", str(pid_file),
                                      "-l", str(tmp_path / "daemon.log"), "-L", HOST,
                                      "-p", str(port)])
    assert process.wait(TIMEOUT) == 0, read_text(output)
    assert wait_until(lambda: read_pid(pid_file) is not None), "no pid file"
    pid = read_pid(pid_file)
    assert pid is not None and pid != process.pid
    assert wait_until(lambda: echo_round_trip(HOST, port)), read_text(tmp_path / "daemon.log")
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not alive(pid)), f"daemon {pid} still runs after SIGTERM"
    assert wait_until(lambda: not pid_file.exists())


# --------------------------------------------------------------------------- 7. handle prefix


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_job_handle_prefix(launcher: Launcher, kind: str) -> None:
    server = launcher.start(kind, "--job-handle-prefix", "X")
    assert submit_background(server.port, 2) == [b"X:1", b"X:2"]


# --------------------------------------------------------------------------- 8. -p 0


def test_port_0_picks_a_free_port_and_logs_it(launcher: Launcher, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    process, output = launcher.spawn([*REF, "-L", HOST, "-p", "0", "-l", str(log),
                                      "--verbose", "INFO"])
    pattern = re.compile(rf"listening on {re.escape(HOST)}:(\d+)")
    assert wait_until(lambda: pattern.search(read_text(log)) is not None
                      or process.poll() is not None)
    match = pattern.search(read_text(log))
    assert match is not None, read_text(log) + read_text(output)
    port = int(match.group(1))
    assert port != 0
    assert wait_until(lambda: echo_round_trip(HOST, port))


# --------------------------------------------------------------------------- 9. GEARMAND_PORT


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_gearmand_port_environment_variable(launcher: Launcher, kind: str) -> None:
    server = launcher.start(kind, port_env="GEARMAND_PORT")
    assert echo_round_trip(HOST, server.port)


# --------------------------------------------------------------------------- 10. admin shutdown


def test_admin_shutdown_allowed_stops_the_server(launcher: Launcher) -> None:
    server = launcher.start("ref", "--admin-shutdown")
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"shutdown\n")
        assert read_line(sock) == b"OK\r\n"
    assert server.process.wait(TIMEOUT) == 0, server.output_text()


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_admin_shutdown_is_unknown_without_the_option(launcher: Launcher, kind: str) -> None:
    server = launcher.start(kind)
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"shutdown\n")
        assert read_line(sock) == b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
        sock.sendall(encode(PacketType.ECHO_REQ, b"still there"))
        reply = read_packet(sock)
        assert (reply.type, reply.args) == (PacketType.ECHO_RES, (b"still there",))
    assert echo_round_trip(HOST, server.port)
    assert server.process.poll() is None


# --------------------------------------------------------------------------- 11. process options


def test_file_descriptors_sets_the_open_files_limit(launcher: Launcher) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 777 if soft != 777 else 778
    if os.geteuid() != 0 and hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-files limit is {hard} < {wanted} and raising it needs root")
    server = launcher.start("ref", "-f", str(wanted))
    assert open_files_limit(server.pid) == (str(wanted), str(wanted))


def test_user_switches_the_process_uid(launcher: Launcher) -> None:
    if os.geteuid() != 0:
        pytest.skip("-u needs root to switch users: run the tests as root (CI does)")
    user = nobody()
    server = launcher.start("ref", "-u", user.pw_name)
    expected = [str(user.pw_uid)] * 4  # real, effective, saved, filesystem
    assert wait_until(lambda: proc_field(server.pid, "Uid") == expected), \
        proc_field(server.pid, "Uid")
    assert echo_round_trip(HOST, server.port)


# --------------------------------------------------------------------------- 12. keepalive


def established_rows(port: int) -> list[str]:
    """``ss`` rows of established TCP sockets whose local port is ``port``."""
    ss = require_program("ss", "iproute2")
    done = run([ss, "-tno", "state", "established", f"( sport = :{port} )"])
    assert done.returncode == 0, done
    return [row for row in done.stdout.splitlines()[1:] if row.strip()]


# gearmand 1.1.20 sets SO_KEEPALIVE on every accepted socket, with or without
# --keepalive, and so do we.
@pytest.mark.parametrize("kind", ["ref", "gearmand"])
@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "no-keepalive"])
def test_keepalive_on_accepted_sockets(launcher: Launcher, kind: str, keepalive: bool) -> None:
    require_program("ss", "iproute2")
    server = launcher.start(kind, *(["--keepalive"] if keepalive else []))
    with connected(server.port):
        rows = established_rows(server.port)
        assert len(rows) == 1, rows
        assert "timer:(keepalive" in rows[0], rows[0]


def keepalive_timer_ms(row: str) -> int | None:
    """The time left on an ``ss`` keepalive timer, in milliseconds."""
    match = re.search(r"timer:\(keepalive,(?:(\d+)min)?(?:(\d+)sec)?(?:(\d+)ms)?", row)
    if match is None:
        return None
    minutes, seconds, millis = (int(group or 0) for group in match.groups())
    return (minutes * 60 + seconds) * 1000 + millis


# The case for --keepalive-idle: the first probe is due within its 30 s, where
# without it the kernel's default (tcp_keepalive_time, 7200 s) is left, so a
# server that ignored the option fails here.
@pytest.mark.parametrize("kind", ["ref", "gearmand"])
@pytest.mark.parametrize("idle", [True, False], ids=["idle-30", "default-idle"])
def test_keepalive_idle_sets_the_first_probe_time(launcher: Launcher, kind: str,
                                                  idle: bool) -> None:
    require_program("ss", "iproute2")
    default = int(Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text())
    if not idle and default <= 30:
        pytest.skip(f"net.ipv4.tcp_keepalive_time is {default} s here, no different from "
                    "30 s: `sysctl -w net.ipv4.tcp_keepalive_time=7200` (the kernel's default) "
                    "lets this case tell them apart")
    server = launcher.start(kind, "--keepalive", *(["--keepalive-idle", "30"] if idle else []))
    with connected(server.port):
        rows = established_rows(server.port)
        assert len(rows) == 1, rows
        left = keepalive_timer_ms(rows[0])
        assert left is not None, rows[0]
        assert (0 < left <= 30_000) if idle else left > 30_000, rows[0]
