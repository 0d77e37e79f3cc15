"""Captures of real clients replayed against servers, and turned into scenarios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.capture.scenario import capture_scenario
from conformance.loader import load_file
from conformance.replay import replay
from conformance.verbs.send import SendPacket, SendText
from reference_server.protocol import PacketType
from results import RunResult, Verdict
from tests.conftest import require_gearmand

PCAPS = Path(__file__).parent / "data" / "pcaps"
ROOT = Path(__file__).resolve().parent.parent
#: libgearman's CLIs, Perl's Gearman::Client/Worker and PHP's extension with gearmand
#: (the xsrv-* captures are of other servers).
WITH_GEARMAND = sorted(p for p in PCAPS.glob("*.pcap") if not p.name.startswith("xsrv-"))
T = PacketType


@pytest.mark.parametrize("target", ["ref", "gearmand"])
def test_captures_with_gearmand_replay_without_divergence(target: str) -> None:
    if target == "gearmand":
        require_gearmand()
    result = replay(WITH_GEARMAND, [target], [])
    assert len({r.scenario.rsplit("/", 1)[0] for r in result.results}) == len(WITH_GEARMAND)
    diverged = [f"{r.scenario}: {r.message}" for r in result.results
                if r.verdict is not Verdict.PASS]
    assert diverged == []


#: What gear's geard does not answer, as the fact sheet of differences says:
#: GRAB_JOB and GRAB_JOB_ALL (it serves GRAB_JOB_UNIQ only), OPTION_REQ, and the
#: admin commands other than status, workers and cancel.
GEAR_SILENT = {T.GRAB_JOB, T.GRAB_JOB_ALL, T.OPTION_REQ, "version", "clients", "jobs"}


def test_replay_against_gear_finds_the_predicted_differences() -> None:
    chosen = [PCAPS / f"{n}.pcap" for n in ("gearman-fg", "gearman-bg", "php-echo",
                                            "perl-fg", "gearadmin-version", "gearadmin-status")]
    result = replay(chosen, ["gear"], [], timeout_factor=0.5)
    scenarios = {s.id: s for s in (capture_scenario(p, [4730]) for p in chosen)}
    causes = set()
    for case in result.results:
        if case.verdict is Verdict.FAIL:
            capture, conn = case.scenario.rsplit("/", 1)
            steps = scenarios[capture].steps[:case.step]
            last = next(s for s in reversed(steps) if s.conn == conn.lower()
                        and isinstance(s, SendPacket | SendText))
            cause = last.type if isinstance(last, SendPacket) else \
                last.text.text.split()[0]
            assert "nothing arrived" in case.message, case.message
            causes.add(cause)
        else:
            assert case.verdict is Verdict.PASS or case.message.startswith("not reached"), case
    assert causes == {T.GRAB_JOB, T.GRAB_JOB_ALL, T.OPTION_REQ, "version"}
    assert causes <= GEAR_SILENT
    passed = {r.scenario for r in result.results if r.verdict is Verdict.PASS}
    assert "capture/gearadmin-status/A" in passed  # what gear does serve still passes


def test_replay_command_writes_a_run_per_connection(tmp_path: Path) -> None:
    out = tmp_path / "replay.json"
    done = subprocess.run([sys.executable, "-m", "gearspec", "replay",
                           str(PCAPS / "gearman-fg.pcap"), "--target", "ref", "--json", str(out),
                           "--report", str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    run = RunResult.from_json(out.read_text())
    assert [(r.scenario, r.verdict) for r in run.results] == [
        ("capture/gearman-fg/A", Verdict.PASS), ("capture/gearman-fg/B", Verdict.PASS)]
    assert {e.conn for e in run.results[0].transcript} == {"a"}
    assert (tmp_path / "html" / "index.html").exists()


def test_to_scenario_writes_a_file_the_runner_accepts(tmp_path: Path) -> None:
    out = tmp_path / "fg.yaml"
    done = subprocess.run([sys.executable, "-m", "gearspec", "pcap", "to-scenario",
                           str(PCAPS / "php-fg.pcap"), "-o", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    [scenario] = load_file(out, tmp_path)
    written = out.read_text()
    # Names that differ between runs are variables; the captured ones are gone.
    assert "H:vm:" not in written and "$h1" in written
    assert "reverse" not in written and "$f1" in written
    assert "option: exceptions" in written  # a field that is not a name stays
    run = subprocess.run([sys.executable, "-m", "gearspec", "run", "--scenario", str(out),
                          "--target", "ref", "--json", str(tmp_path / "run.json")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert scenario.id == "fg/php-fg"


def test_to_scenario_of_admin_traffic() -> None:
    scenario = capture_scenario(PCAPS / "gearadmin-version.pcap", [4730])
    shapes = [getattr(s, "lines", None) for s in scenario.steps]
    assert any(lines and lines[0].pattern == r"OK \S.*\n" for lines in shapes)


@pytest.mark.parametrize(("args", "words"), [
    (["replay"], "the following arguments are required: file"),
    (["replay", "nosuch.pcap"], "nosuch.pcap"),
    (["replay", str(PCAPS / "gearman-fg.pcap"), "--target", "nosuch"], "unknown target"),
    (["replay", str(PCAPS / "gearman-fg.pcap"), "--timeout-factor", "0"], "must be positive"),
    (["docker", "build", "nosuch"], "invalid choice: 'nosuch'"),
    (["docker"], "the following arguments are required: command"),
])
def test_bad_arguments_are_one_line(args: list[str], words: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
