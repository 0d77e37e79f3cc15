"""The fuzzers beyond one server as started: rounds with server options (the diff
fuzzer's and the model's), cases that restart a persistent queue, jobs held past a
CAN_DO_TIMEOUT.

Each kind of case is played on the reference server and on gearmand, which must
agree; then on a mutant of the reference server that the kind of case is there to
catch, which must not.  A restart case's reproducer replays on gearmand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from conformance.mutant_exec import VARIABLE
from conformance.mutants import ROOT, Mutant, mutants_of
from conformance.targets import Target
from conformance.writer import dump
from fuzz import diff, diff_http, diff_play
from fuzz.campaign import Campaign, model_test
from fuzz.diff import PAUSE, RESTART, ROUND_OPTIONS, Send
from fuzz.model import GearmanMachine
from fuzz.oracle import ROUND_OPTIONS as MODEL_OPTIONS
from fuzz.oracle import Job, Model, Registration
from reference_server.protocol import PacketType
from results import RunResult, Verdict
from tests.conftest import require_gearmand

T = PacketType
SQLITE = ["-q", "libsqlite3", "--libsqlite3-db", "{workdir}/queue.db"]
MUTANT_SERVER = f"exec:{sys.executable} -m conformance.mutant_exec -m reference_server " \
                "-L {host} -p {port}"


def packet(conn: str, packet_type: PacketType, **fields: str) -> Send:
    return Send(conn, packet_type, tuple(fields.items()))


def mutant(module: str, text: str, operator: str) -> Mutant:
    """The one mutant by ``operator`` of the line of ``module`` that holds ``text``."""
    path = ROOT / "reference_server" / "core" / module
    line = next(n for n, words in enumerate(path.read_text().splitlines(), 1) if text in words)
    [found] = [m for m in mutants_of(path) if m.line == line and m.operator == operator]
    return found


def player(target: Target) -> diff_play.Server:
    def crash_and_restart() -> None:
        target.kill()
        target.restart()

    return diff_play.Server(target.address, None, crash_and_restart)


def play(ours: Target, theirs: Target, sends: list[Send], tag: str
         ) -> tuple[list[list[diff_play.Seen]], list[list[diff_play.Seen]]]:
    return diff_play.record_pair(player(ours), player(theirs), sends, tag)


# ------------------------------------------------------------------ rounds

def test_the_first_round_runs_as_started_and_later_rounds_draw_every_option_set() -> None:
    assert all(diff.round_options(1, seed) == [] for seed in range(50))
    drawn = {tuple(diff.round_options(2, seed)) for seed in range(200)}
    assert drawn == {tuple(o.replace("{round}", "2") for o in options)
                     for options in ROUND_OPTIONS}
    # A queue file of its own per round: no round replays another's jobs.
    queues = {option for r in range(2, 40) for option in diff.round_options(r, r)
              if option.endswith(".db")}
    assert len(queues) > 1 and all(q.startswith("{workdir}/fuzz-") for q in queues)


@settings(max_examples=200, derandomize=True)
@given(diff.conversations(http=True, persistent=True))
def test_persistent_rounds_give_every_background_job_a_unique_and_data(sends: list[Send]
                                                                       ) -> None:
    for send in sends:
        assert send.http not in diff_http.NO_DATA, send
        if send.packet_type in diff.BACKGROUND:
            fields = dict(send.fields)
            assert fields["unique"] and fields["data"], send
    restarts = [n for n, send in enumerate(sends) if send.restart]
    assert len(restarts) <= 1
    if restarts:  # and then a look at what came back
        assert sends[restarts[0] + 1] == Send("admin", None, line="status")


@given(st.data())
def test_cases_of_plain_rounds_never_restart(data: st.DataObject) -> None:
    assert not any(send.restart for send in data.draw(diff.conversations()))


# ------------------------------------------------------------------ restarts

#: A background job acknowledged, the server killed and started again: the job is
#: queued and a worker gets it.
RESTART_CASE = [
    packet("c1", T.SUBMIT_JOB_BG, function="$fa", unique="$u1", data="x"),
    RESTART, Send("admin", None, line="status"),
    packet("w1", T.CAN_DO, function="$fa"), packet("w1", T.GRAB_JOB_UNIQ),
]


def test_a_restart_case_agrees_with_gearmand_and_its_reproducer_replays_there(
        start_target: Callable[..., Target], tmp_path: Path) -> None:
    require_gearmand()
    ours, theirs = start_target("ref", *SQLITE), start_target("gearmand", *SQLITE)
    mine, oracle = play(ours, theirs, RESTART_CASE, "rs1")
    assert mine == oracle
    assert oracle[2][0].events == (("text", "$fa\t1\t0\t0\n", ".\n"),)
    assigned = oracle[4][0].events[0]
    assert assigned[:2] == ("packet", "JOB_ASSIGN_UNIQ") and "unique=$u1" in assigned
    scenario = diff_play.reproducer(RESTART_CASE, oracle, "ref", "gearmand", "none", SQLITE)
    path = tmp_path / "restart.yaml"
    path.write_text(dump([scenario], "a restart case"))
    text = path.read_text()
    assert "target kill" in text and "target restart" in text and "libsqlite3" in text
    for spec in ("gearmand", "ref"):
        assert replay(path, spec, tmp_path) == [Verdict.PASS], spec


def test_a_restart_case_catches_a_queue_that_never_writes(start_target: Callable[..., Target]
                                                          ) -> None:
    """The mutant that drops the commit's write: JOB_CREATED still goes out, and the
    job is gone after the crash."""
    require_gearmand()
    never_written = mutant("persistence.py", "self.queue.flush()", "call dropped")
    ours = start_target(MUTANT_SERVER, *SQLITE, mutant=never_written)
    theirs = start_target("gearmand", *SQLITE)
    mine, oracle = play(ours, theirs, RESTART_CASE, "rs2")
    assert mine[0] == oracle[0]  # acknowledged alike
    assert mine[2] != oracle[2]  # but after the restart only gearmand has the job


def replay(path: Path, spec: str, tmp_path: Path) -> list[Verdict]:
    out = tmp_path / f"replay-{spec}.json"
    subprocess.run([sys.executable, "-m", "gearspec", "run", "--scenario", str(path),
                    "--target", spec, "--json", str(out)], capture_output=True, text=True,
                   timeout=120, cwd=ROOT, check=False)
    return [r.verdict for r in RunResult.from_json(out.read_text()).results]


# ------------------------------------------------------------------ timeouts

#: A job held by a worker with a timeout, past it: another worker then gets it, and
#: the first one's late result is refused.
TIMEOUT_CASE = [
    packet("w3", T.CAN_DO_TIMEOUT, function="$fa", timeout=diff.TIMEOUT_MS),
    packet("c1", T.SUBMIT_JOB, function="$fa", unique="", data="x"),
    packet("w3", T.GRAB_JOB),
    Send("", None, pause=PAUSE, until="$fa"),
    packet("w1", T.CAN_DO, function="$fa"), packet("w1", T.GRAB_JOB),
    packet("w3", T.WORK_COMPLETE, handle="$h1", data="late"),
]


def test_a_job_held_past_its_timeout_agrees_with_gearmand(start_target: Callable[..., Target]
                                                          ) -> None:
    require_gearmand()
    mine, oracle = play(start_target("ref"), start_target("gearmand"), TIMEOUT_CASE, "to1")
    assert mine == oracle
    assert oracle[5][0].events[0][:2] == ("packet", "JOB_ASSIGN")  # w1 has it now
    assert oracle[6][0].events[0][:2] == ("packet", "ERROR")  # w3's result refused


def test_a_timeout_case_catches_timers_that_never_fire(start_target: Callable[..., Target]
                                                       ) -> None:
    require_gearmand()
    never_fire = mutant("server.py", "while (timer := self.timers.pop_due(now))",
                        "is not -> is")
    mine, oracle = play(start_target(MUTANT_SERVER, mutant=never_fire), start_target("gearmand"),
                        TIMEOUT_CASE, "to2")
    assert mine[:5] == oracle[:5]
    assert mine[5] != oracle[5]  # the job is still w3's: w1 is told NO_JOB


def test_the_command_draws_options_for_a_target_told_it_takes_them(tmp_path: Path) -> None:
    """Rounds with options reach an exec: target only when --capabilities says it
    takes gearmand's options; the campaign still finds nothing on the server as is."""
    require_gearmand()
    log = tmp_path / "examples.txt"
    done = subprocess.run(
        [sys.executable, "-m", "gearspec", "fuzz", "diff", "--target", MUTANT_SERVER,
         "--target", "gearmand", "--capabilities", "exec=gearmand-options,persistence",
         "--seed", "1", "--batch", "20", "--examples", "45", "--examples-log", str(log),
         "--save", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, VARIABLE: ""}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 rounds, nothing found" in done.stdout, done.stdout
    # Round 2 of seed 1 is a persistent round (5 examples: a quarter of the batch).
    assert diff.round_options(2, 2)[:2] == ["-q", "libsqlite3"]
    assert len(log.read_text().splitlines()) == 45


# ------------------------------------------------------------------ the model's options

def held_job(model: Model) -> tuple[Job, Registration]:
    job = Job(b"H:x:1", "$h1", "fa", b"", b"a", 1, background=False, clients=["c0"])
    model.jobs.append(job)
    model.queue(job)
    registration = Registration("w0", "fa")
    model.registrations["w0"].append(registration)
    assert model.take("w0") is job
    return job, registration


def test_the_model_drops_a_job_at_its_last_retry_and_forwards_exceptions_to_all() -> None:
    """As the catalog's worker/lost job-retries cases and work/exceptions show
    gearmand 1.1.20 doing: -j 2 queues a job again after its first lost worker and
    drops it at the second; --exceptions sends WORK_EXCEPTION to clients that never
    asked for it."""
    model = Model(("-j", "2", "--exceptions"))
    job, registration = held_job(model)
    assert model.requeue([registration]) == [] and model.take("w0") is job
    assert model.requeue([registration]) == [job] and job not in model.jobs
    assert model.hears_exceptions("c1") and not Model().hears_exceptions("c1")
    unlimited = Model()
    job, registration = held_job(unlimited)
    for _ in range(5):
        assert unlimited.requeue([registration]) == [] and unlimited.take("w0") is job


def test_a_model_that_assumes_job_retries_fails_on_a_server_without_them(
        start_target: Callable[..., Target]) -> None:
    """The model's -j is checked against the server: bound to a server started
    without -j, a machine that believes in -j 1 soon meets a requeued job it
    expected dropped."""
    target = start_target("ref")
    failures: list[str] = []
    machine = GearmanMachine.bound(target.address, options=("-j", "1"),
                                   on_failure=lambda s: failures.append(s.requirement))
    with pytest.raises(AssertionError):
        run_state_machine_as_test(machine, settings=settings(
            max_examples=300, derandomize=True, deadline=None, stateful_step_count=25,
            suppress_health_check=list(HealthCheck), database=None))
    assert failures


def test_model_rounds_with_options_agree_with_both_servers(start_target: Callable[..., Target]
                                                            ) -> None:
    """Seed 3 draws -j 1, then -j 2, for rounds 2 and 3 of the model's table: each
    started on the server, with the model told; neither server differs from it."""
    require_gearmand()
    assert [diff.round_options(r, 2 + r, MODEL_OPTIONS) for r in (2, 3)] == \
        [["-j", "1"], ["-j", "2"]]
    for spec in ("ref", "gearmand"):
        target = start_target(spec)
        run = Campaign("model", [spec], base_seed=3, batch=40, limit=120)
        run.run(model_test(run, target))
        assert run.failure is None, (spec, run.failure)
        # A round runs hypothesis's count of machines: at least two rounds, the last
        # one's options on the server.
        assert run.rounds >= 2, run.rounds
        assert target.options == diff.round_options(run.rounds, 2 + run.rounds, MODEL_OPTIONS)


# ------------------------------------------------------------------ wake-ups

#: Three workers asleep on one function, two background submits: with -w 1 each
#: wakes the next sleeper round the ring, in order of registration.
SLEEPERS_CASE = [
    *(packet(w, T.CAN_DO, function="$fa") for w in ("w1", "w2", "w3")),
    *(packet(w, T.PRE_SLEEP) for w in ("w1", "w2", "w3")),
    *(packet("c1", T.SUBMIT_JOB_BG, function="$fa", unique="", data=d) for d in "xy"),
]


def test_a_sleepers_case_agrees_with_gearmand_and_catches_a_ring_cursor_off_by_two(
        start_target: Callable[..., Target]) -> None:
    require_gearmand()
    mine, oracle = play(start_target("ref", "-w", "1"), start_target("gearmand", "-w", "1"),
                        SLEEPERS_CASE, "wk1")
    assert mine == oracle
    woken = [n for n, seen in enumerate(oracle[6:], 6) if any(
        event[:2] == ("packet", "NOOP") for record in seen for event in record.events)]
    assert woken, oracle[6:]  # the submits woke someone
    backwards = mutant("jobs.py", "function.wake_cursor = cursor + 1", "+ -> -")
    moved, oracle = play(start_target(MUTANT_SERVER, "-w", "1", mutant=backwards),
                         start_target("gearmand", "-w", "1"), SLEEPERS_CASE, "wk2")
    assert moved != oracle
