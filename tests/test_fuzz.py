"""The fuzzers, bounded and derandomised for CI, and planted bugs they must catch.

`make fuzz` and `gearspec fuzz ... --budget` run the long campaigns."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.baselines import baseline_for
from conformance.loader import load_catalog
from conformance.specs import parse_target
from conformance.targets import Target
from conformance.verbs.send import SendRaw
from fuzz import diff, diff_http, diff_play, server
from fuzz.campaign import Campaign, diff_test, model_test, parser_test, save, server_test
from fuzz.known import KNOWN, known_for, triggers
from fuzz.oracle import Job, Model, Registration
from fuzz.parser import PROPERTIES
from fuzz.shared import Store
from fuzz.strategies import REQUEST_TYPES, WIRE_TYPES, names
from reference_server.client import Admin
from reference_server.protocol import PACKETS, PacketType, encode, frame
from results import RunResult, Verdict
from tests.conftest import require_gearmand

ROOT = Path(__file__).resolve().parent.parent
DEVIATIONS = (ROOT / "reference_server" / "DEVIATIONS.md").read_text()
T = PacketType
PLANTED = f"exec:{sys.executable} {ROOT / 'tests' / 'planted.py'} {{bug}} -L {{host}} " \
          "-p {port} -l none"


def campaign(name: str, batch: int) -> Campaign:
    return Campaign(name, [], batch=batch, derandomize=True)


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_parser_properties(name: str) -> None:
    run = campaign(name, 400)
    run.run(parser_test(run, name))
    assert run.failure is None, run.failure
    assert run.examples >= 400


@given(st.sampled_from(WIRE_TYPES), st.lists(names, min_size=1, max_size=6))
def test_encoder_refuses_wrong_arity(packet_type: PacketType, args: list[bytes]) -> None:
    expected = len(PACKETS[packet_type].args)
    try:
        encode(packet_type, *args)
    except ValueError:
        assert len(args) != expected
    else:
        assert len(args) == expected


def test_corpus_pools_hold_every_type_and_every_breakage() -> None:
    from fuzz import strategies
    from reference_server.protocol import Decoder, ProtocolError, TextLine

    kinds = {e.type for e in strategies.EVENT_POOL if not isinstance(e, TextLine)}
    assert kinds == set(WIRE_TYPES)
    assert any(isinstance(e, TextLine) for e in strategies.EVENT_POOL)
    refused = 0
    for item in strategies.GARBAGE_POOL:
        try:
            list(Decoder(max_payload=1 << 20).events(item))
        except ProtocolError:
            refused += 1
    assert 0.1 < refused / len(strategies.GARBAGE_POOL) < 0.9
    headers = {g[:4] for g in strategies.GARBAGE_POOL if len(g) >= 12}
    assert {b"\0REQ", b"\0RES", b"\0XYZ"} <= headers
    assert len(strategies.EVENT_STREAMS) > 10_000 and strategies.EVENT_STREAMS[0] == ()


def test_strategies_cover_every_request_type() -> None:
    assert {int(t) for t in REQUEST_TYPES} >= {7, 9, 13, 16, 23, 36, 37, 39, 41}


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_server_fuzzer(kind: str, start_target: Callable[..., Target]) -> None:
    target = start_target(kind)
    run = campaign("server", 60)
    run.run(server_test(run, target, known_for(kind)))
    assert run.failure is None, run.failure


def test_known_findings_are_baselined() -> None:
    for finding in KNOWN:
        assert finding.case in baseline_for(finding.target).cases, finding
        case = next(s for s in load_catalog() if s.id == finding.case)
        headers = [frame(s.magic, s.packet_type, b"") for s in case.steps
                   if isinstance(s, SendRaw) and s.magic and s.packet_type is not None]
        assert any(finding.triggered_by(header) for header in headers), finding.case


@given(server.noise_strategy(known_for("gearmand")))
def test_avoided_findings_are_never_generated(noise: list[tuple[int, bytes]]) -> None:
    for conn in {c for c, _ in noise}:
        stream = b"".join(data for c, data in noise if c == conn)
        assert b"\0REQ\x80" not in stream and b"\0RES\xff" not in stream
        assert not triggers(known_for("gearmand"), noise)


def test_server_fuzzer_finds_the_known_gearmand_crash(tmp_path: Path) -> None:
    require_gearmand()
    done = gearspec_fuzz("server", "--target", "gearmand", "--include-known", "--derandomize",
                         "--batch", "60", "--save", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gearmand died (exit status 1)" in done.stdout, done.stdout
    [path] = tmp_path.glob("*.yaml")
    crashed = replay(path, "gearmand", tmp_path).results
    assert [r.verdict for r in crashed] == [Verdict.ERROR], crashed[0].message
    assert [r.verdict for r in replay(path, "ref", tmp_path).results] == [Verdict.PASS]


def leftovers(target: Target, pattern: str) -> list[bytes]:
    """Functions a campaign left listed in ``status`` (fuzz/tidy.py drops them)."""
    async def status() -> dict[bytes, tuple[int, int, int]]:
        async with await Admin.connect(target.address) as admin:
            return await admin.status()

    return [name for name in asyncio.run(status()) if re.fullmatch(pattern.encode(), name)]


@pytest.mark.parametrize("kind", ["ref", "gearmand"])
def test_model_fuzzer(kind: str, start_target: Callable[..., Target]) -> None:
    target = start_target(kind)
    run = campaign("model", 30)
    run.run(model_test(run, target))
    assert run.failure is None, run.failure
    assert run.examples >= 30
    assert leftovers(target, r"m\d+_f[ab]") == []


def test_diff_fuzzer_ref_against_gearmand(start_target: Callable[..., Target]) -> None:
    # With the HTTP module, as gearspec fuzz diff --http: HTTP requests in the cases.
    subject = start_target("ref", *diff_http.SERVER_OPTIONS)
    oracle = start_target("gearmand", *diff_http.SERVER_OPTIONS)
    run = campaign("diff", 150)
    run.run(diff_test(run, subject, oracle))
    assert run.failure is None, run.failure
    for target in (subject, oracle):
        assert leftovers(target, r"d\d+x\d+yf[ab]") == [], target.name


@given(diff.cases)
def test_diff_cases_leave_out_the_background_join_deviation(sends: list[diff.Send]) -> None:
    assert not diff.joins_a_foreground_job(sends)


def test_the_left_out_background_join_really_differs(start_target: Callable[..., Target]
                                                      ) -> None:
    """What the diff fuzzer does not generate is a documented difference (found by
    it first): 'show jobs' flags the joined job as stored in ours only."""
    sends = [diff.Send("c1", T.SUBMIT_JOB, (("function", "$fa"), ("unique", "$u1"),
                                            ("data", ""))),
             diff.Send("c1", T.SUBMIT_JOB_BG, (("function", "$fa"), ("unique", "$u1"),
                                               ("data", ""))),
             diff.Send("admin", None, line="show jobs")]
    assert diff.joins_a_foreground_job(sends)
    ours = diff_play.record(start_target("ref").address, sends, "bgjoin")
    theirs = diff_play.record(start_target("gearmand").address, sends, "bgjoin")
    assert ours[:2] == theirs[:2]
    assert ours[2][0].events == (("text", "$h1\t0\t0\t1\n", ".\n"),)
    assert theirs[2][0].events == (("text", "$h1\t0\t0\t0\n", ".\n"),)
    assert "### A background submit joining a foreground job" in DEVIATIONS


# ------------------------------------------------------------------ planted bugs

def planted(bug: str) -> Target:
    target = parse_target(PLANTED.format(bug=bug, host="{host}", port="{port}"))
    target.start()
    return target


def replay(path: Path, target: str, tmp_path: Path) -> RunResult:
    out = tmp_path / f"replay-{abs(hash(target))}.json"
    subprocess.run([sys.executable, "-m", "gearspec", "run", "--scenario", str(path),
                    "--target", target, "--json", str(out)], capture_output=True, text=True,
                   timeout=120, cwd=ROOT, check=False)
    return RunResult.from_json(out.read_text())


def test_planted_forgotten_listener_is_caught_by_the_model(tmp_path: Path) -> None:
    target = planted("forget-listener")
    try:
        run = Campaign("model", [target.name], batch=200, derandomize=True)
        run.run(model_test(run, target))
        assert run.failure is not None, "the model fuzzer missed a forgotten listener"
        path = save(run, tmp_path)
    finally:
        target.stop()
    assert path is not None
    spec = PLANTED.format(bug="forget-listener", host="{host}", port="{port}")
    assert [r.verdict for r in replay(path, spec, tmp_path).results] == [Verdict.FAIL]
    assert [r.verdict for r in replay(path, "ref", tmp_path).results] == [Verdict.PASS]


def test_planted_mis_split_is_caught_by_the_diff_fuzzer(tmp_path: Path) -> None:
    require_gearmand()
    target = planted("mis-split")
    oracle = parse_target("gearmand")
    oracle.start()
    try:
        run = Campaign("diff", [target.name, oracle.name], batch=300, derandomize=True)
        run.run(diff_test(run, target, oracle))
        assert run.failure is not None, "the diff fuzzer missed a mis-splitting codec"
        path = save(run, tmp_path)
    finally:
        target.stop()
        oracle.stop()
    assert path is not None
    spec = PLANTED.format(bug="mis-split", host="{host}", port="{port}")
    assert [r.verdict for r in replay(path, spec, tmp_path).results] == [Verdict.FAIL]
    assert [r.verdict for r in replay(path, "gearmand", tmp_path).results] == [Verdict.PASS]


def test_planted_mis_split_fails_the_parser_property(monkeypatch: pytest.MonkeyPatch) -> None:
    from reference_server.protocol import codec
    from tests.planted import MisSplittingDecoder

    monkeypatch.setattr(codec, "Decoder", MisSplittingDecoder)
    monkeypatch.setattr("fuzz.parser.Decoder", MisSplittingDecoder)
    run = campaign("round-trip", 400)
    run.run(parser_test(run, "round-trip"))
    assert run.failure is not None
    assert "SUBMIT_JOB" in run.failure or "WORK_" in run.failure, run.failure  # the example


def test_example_database_replays_a_finding_first(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    from reference_server.protocol import codec
    from tests.planted import MisSplittingDecoder

    monkeypatch.setattr(codec, "Decoder", MisSplittingDecoder)
    monkeypatch.setattr("fuzz.parser.Decoder", MisSplittingDecoder)
    first = Campaign("round-trip", [], batch=400, database=Store(str(tmp_path / "db")))
    first.run(parser_test(first, "round-trip"))
    assert first.failure is not None and any((tmp_path / "db").iterdir())
    again = Campaign("round-trip", [], batch=400, database=Store(str(tmp_path / "db")))
    again.run(parser_test(again, "round-trip"))
    assert again.failure == first.failure
    assert again.examples < first.examples  # the saved example ran first, then shrank


# ------------------------------------------------------------------ the command

def gearspec_fuzz(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearspec", "fuzz", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


@pytest.mark.parametrize(("args", "words"), [
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["parser", "--budget", "5x"], "'5x' is not a duration like 90s, 5m or 1h"),
    (["server", "--target", "nosuch"], "unknown target 'nosuch'"),
    (["model", "--target", "tcp://127.0.0.1:1"], "no answer from 127.0.0.1:1"),
    (["parser", "--derandomize", "--db", "x"], "--db cannot go with --seed or --derandomize"),
    (["parser", "--seed", "3", "--db", "x"], "--db cannot go with --seed or --derandomize"),
    (["parser", "--batch", "0"], "--batch, --budget and --examples must be positive"),
    (["model", "--http"], "--http is for the diff fuzzer"),
    (["diff", "--capabilities", "bogus"], "unknown capability 'bogus'"),
])
def test_bad_arguments_print_one_line(args: list[str], words: str) -> None:
    done = gearspec_fuzz(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_command_runs_a_campaign_and_summarises(tmp_path: Path) -> None:
    done = gearspec_fuzz("server", "--target", "ref", "--batch", "20", "--budget", "1s",
                         "--db", str(tmp_path / "db"), "--save", str(tmp_path / "found"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^server against ref: \d+ examples \(digest \w{12}\) in [\d.]+ s "
                     r"\(\d+/s\), \d+ rounds, "
                     r"nothing found$", done.stdout, re.M), done.stdout
    assert not (tmp_path / "found").exists()


def fuzz_command(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gearspec", "fuzz", *args], cwd=ROOT,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize(("fuzzer", "first_seed"), [
    (["parser"], "11"), (["model", "--target", "ref"], "11"),
    # Four rounds: as started, a persistent queue with restarts, -w 1, -w 1.
    (["diff", "--target", "ref", "--target", "gearmand", "--batch", "20"], "1")],
    ids=["parser", "model", "diff"])
def test_a_seed_and_examples_run_the_same_examples_twice(fuzzer: list[str], first_seed: str,
                                                         tmp_path: Path) -> None:
    """Two campaigns at once (so each is slowed by the other as it happens) with one
    seed and --examples: the same examples, one by one, and the same digest."""
    if fuzzer[0] == "diff":
        require_gearmand()
    count = "300" if fuzzer == ["parser"] else "60"
    runs = [fuzz_command(*fuzzer, "--seed", first_seed, "--examples", count, "--examples-log",
                         str(tmp_path / f"{n}.txt"), "--save", str(tmp_path)) for n in (1, 2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    first, second = ((tmp_path / f"{n}.txt").read_text().splitlines() for n in (1, 2))
    per_campaign = 3 if fuzzer == ["parser"] else 1  # the parser's three properties
    assert len(first) == int(count) * per_campaign
    assert first == second
    digests = [re.findall(r"\(digest (\w+)\)", out) for out in outputs]
    assert digests[0] == digests[1] and len(digests[0]) == per_campaign
    other = fuzz_command(*fuzzer, "--seed", "12", "--examples", count, "--save", str(tmp_path))
    assert re.findall(r"\(digest (\w+)\)", other.communicate(timeout=300)[0]) != digests[0]


def test_the_budget_cuts_a_long_shrink_short_and_keeps_the_least_so_far() -> None:
    run = Campaign("slow", [], budget=1.0, base_seed=3, batch=100)
    least: list[int] = []

    @given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=30))
    def distinct_fails(values: list[int]) -> None:
        run.tick(values)
        time.sleep(0.05)  # every example costs time: shrinking to 0..29 takes many
        if len(set(values)) >= 30:
            least[:] = values
            run.found(message=f"{len(values)} values, the largest {max(values)}")
            raise AssertionError("30 distinct values")

    run.run(run.settings()(distinct_fails))
    assert run.failure is not None and run.failure.endswith("(shrinking cut short by the budget)")
    assert run.failure.startswith(f"{len(least)} values, the largest {max(least)}")
    assert max(least) > 29  # not the least there is: the shrink did not end


def test_examples_and_budget_do_not_go_together() -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", "fuzz", "parser", "--examples",
                           "5", "--budget", "3s"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot go with --budget" in done.stderr


def test_the_model_forgets_the_status_of_a_job_that_goes_back_to_the_queue() -> None:
    """As gearmand 1.1.20 and ours do: after a worker's RESET_ABILITIES (or hang-up)
    requeues a job, GET_STATUS answers 0/0, not the worker's last WORK_STATUS."""
    model = Model()
    job = Job(b"H:x:1", "$h1", "fa", b"", b"a", 1, background=False)
    model.jobs.append(job)
    model.queue(job)
    registration = Registration("w0", "fa")
    model.registrations["w0"].append(registration)
    assert model.take("w0") is job
    job.numerator, job.denominator = b"1", b"3"
    model.requeue([registration])
    assert (job.numerator, job.denominator, job.worker) == (b"0", b"0", None)
    assert model.take("w0") is job
