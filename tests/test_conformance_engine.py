"""The conformance engine itself: loader errors, verdicts, baselines, runner, CLI,
pytest plugin.  Scenarios here are written inline into tmp_path; the catalog's
own scenarios are checked in test_catalog.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance import services
from conformance.baselines import Baseline, judge, load_baseline
from conformance.coverage import coverage
from conformance.engine import run_scenario
from conformance.loader import load_catalog, load_file
from conformance.runner import RunOptions, run
from conformance.scenario import ScenarioError
from conformance.targets import Target
from conformance.wire import SocketNetwork
from results import CaseResult, RunResult, Verdict
from tests.conftest import require_gearmand

ROOT = Path(__file__).resolve().parent.parent

HEADER = """\
topic: engine tests
scenarios:
"""


def write(tmp_path: Path, body: str, name: str = "area/topic.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + textwrap.indent(textwrap.dedent(body), "  "))
    return path


def case(steps: str, level: str = "MUST", extra: str = "") -> str:
    return (f"- case: c\n  title: t\n  level: {level}\n  source: s\n  requirement: r\n"
            f"{extra}  steps:\n" + textwrap.indent(textwrap.dedent(steps), "    "))


def load_one(tmp_path: Path, body: str) -> object:
    [scenario] = load_file(write(tmp_path, body), tmp_path)
    return scenario


class TestLoader:
    def test_id_comes_from_path_and_case(self, tmp_path: Path) -> None:
        scenario = load_one(tmp_path, case("- a send ECHO_REQ: {data: x}\n"))
        assert scenario.id == "area/topic/c"  # type: ignore[attr-defined]

    @pytest.mark.parametrize(("body", "line", "where", "words"), [
        (case("- a send ECHO_REQ: {dat: x}\n"), 9, "steps[0].ECHO_REQ.dat",
         "ECHO_REQ has no field 'dat'"),
        (case("- a send NOPE\n"), 9, "steps[0]", "'NOPE' is not a packet type"),
        (case("- a frobnicate\n"), 9, "steps[0]", "unknown verb 'frobnicate'"),
        (case("- a expect SUBMIT_JOB\n"), 9, "steps[0]", "is a request"),
        (case("- a send ECHO_REQ\n", level="MAYBE"), 5, "level", "'MAYBE' is not one of"),
        (case("- a expect-line: {match: '('}\n"), 9, "steps[0].match", "bad pattern"),
        (case("- a send ECHO_REQ\n", extra="  colour: red\n"), 8, "colour", "unknown key"),
        ("- case: c\n  title: t\n", 3, "level", "missing"),
        (case("- a expect ECHO_RES:\n  within: soon\n"), 10, "steps[0].within",
         "'soon' is not a number"),
        (case("- sleep\n"), 9, "steps[0]", "sleep: SECONDS"),
        (case("- a send ECHO_REQ: {data: [1, 2]}\n"), 9, "steps[0].ECHO_REQ.data",
         "expected a single value"),
        (case("- h http-request: {path: /f, bogy: x}\n"), 9, "steps[0]",
         "unknown key 'bogy'"),
        (case("- c send ECHO_REQ\n", extra="  tls: {p: clear}\n"), 8, "tls.p",
         "'clear' is not one of plaintext, untrusted, anonymous"),
    ], ids=["field", "packet", "verb", "request", "level", "regex", "key", "missing", "within",
            "sleep", "value", "http-key", "tls-mode"])
    def test_errors_name_file_line_and_field(self, tmp_path: Path, body: str, line: int,
                                             where: str, words: str) -> None:
        path = write(tmp_path, body)
        with pytest.raises(ScenarioError) as caught:
            load_file(path, tmp_path)
        message = str(caught.value)
        assert message.startswith(f"{path}:{line}: {where}: "), message
        assert words in message

    def test_yaml_syntax_error(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b.yaml"
        path.parent.mkdir()
        path.write_text("scenarios:\n  - case: [unclosed\n")
        with pytest.raises(ScenarioError, match=rf"^{path}:\d+: yaml: "):
            load_file(path, tmp_path)

    def test_duplicate_ids_across_the_catalog(self, tmp_path: Path) -> None:
        write(tmp_path, case("- a send ECHO_REQ\n"), "x/y.yaml")
        second = tmp_path / "x" / "y.yaml"
        second.write_text(second.read_text() + textwrap.indent(case("- a send ECHO_REQ\n"), "  "))
        with pytest.raises(ScenarioError, match="id 'x/y/c' is already used"):
            load_catalog(tmp_path)

    def test_the_real_catalog_loads(self) -> None:
        assert len(load_catalog()) > 0


@pytest.fixture(scope="module")
def ref_server() -> Target:
    from conformance.targets import RefTarget

    target = RefTarget()
    target.start()
    yield target
    target.stop()


def play(tmp_path: Path, target: Target, body: str) -> tuple[Verdict, str]:
    scenario = load_one(tmp_path, body)
    outcome = asyncio.run(run_scenario(scenario, target.network(), tag="t_"))  # type: ignore[arg-type]
    return outcome.verdict, outcome.message


class TestVerdicts:
    ROUND_TRIP = """\
        - c send SUBMIT_JOB: {function: $fn, unique: $u, data: hi}
        - c expect JOB_CREATED: {handle: $h}
        - w send CAN_DO: {function: $fn}
        - w send GRAB_JOB_UNIQ
        - w expect JOB_ASSIGN_UNIQ: {handle: $h, function: $fn, unique: $u, data: hi}
        - w send WORK_COMPLETE: {handle: $h, data: {repeat: ab, times: 3}}
        - c expect WORK_COMPLETE: {handle: $h, data: ababab}
        - c expect-nothing
        """

    def test_pass_with_variables_and_captures(self, tmp_path: Path, ref_server: Target) -> None:
        assert play(tmp_path, ref_server, case(self.ROUND_TRIP)) == (Verdict.PASS, "")

    @pytest.mark.parametrize(("level", "verdict"), [("MUST", Verdict.FAIL),
                                                    ("SHOULD", Verdict.NON_STRICT),
                                                    ("MAY", Verdict.INFO)])
    def test_unmet_expectation_by_level(self, tmp_path: Path, ref_server: Target, level: str,
                                        verdict: Verdict) -> None:
        body = case("- c send ECHO_REQ: {data: x}\n- c expect ECHO_RES: {data: y}\n", level)
        got, message = play(tmp_path, ref_server, body)
        assert got is verdict
        assert message == "step 1 (line 10): ECHO_RES.data: expected y, got x"

    def test_wrong_packet_type(self, tmp_path: Path, ref_server: Target) -> None:
        got, message = play(tmp_path, ref_server, case(
            "- c send GRAB_JOB\n- c expect JOB_ASSIGN\n"))
        assert got is Verdict.FAIL and "expected JOB_ASSIGN, got NO_JOB" in message

    def test_nothing_arrives(self, tmp_path: Path, ref_server: Target) -> None:
        got, message = play(tmp_path, ref_server, case(
            "- c send CAN_DO: {function: $fn}\n- c expect NOOP:\n  within: 0.2\n",
            extra="  ignore: []\n"))
        assert got is Verdict.FAIL and "nothing arrived" in message

    def test_expect_nothing_sees_a_pending_reply(self, tmp_path: Path,
                                                 ref_server: Target) -> None:
        got, message = play(tmp_path, ref_server, case(
            "- c send ECHO_REQ: {data: x}\n- c expect-nothing\n"))
        assert got is Verdict.FAIL and "expected nothing, got ECHO_RES data=x" in message

    def test_closed_and_list(self, tmp_path: Path, ref_server: Target) -> None:
        body = case("""\
            - w send CAN_DO: {function: $fn}
            - a send-line: status
            - a expect-list: {rows: ["$fn\\t0\\t0\\t1\\n"], filter: [$fn]}
            - a send-line: workers
            - a expect-list: {rows: [{match: "\\\\d+ 127.0.0.1 - : $fn\\n"}], filter: [$fn]}
            - a send-raw: {magic: "\\0XYZ", type: 16}
            - a expect-closed
            """)
        assert play(tmp_path, ref_server, body) == (Verdict.PASS, "")

    def test_finish_waits_for_the_server_to_close(self, tmp_path: Path,
                                                  ref_server: Target) -> None:
        body = case("""\
            - c send ECHO_REQ: {data: x}
            - c send-text: "partial line without its end"
            - c finish
            - d send ECHO_REQ: {data: y}
            - d expect ECHO_RES: {data: y}
            """)
        assert play(tmp_path, ref_server, body) == (Verdict.PASS, "")

    def test_finish_fails_when_the_server_keeps_the_connection(self, tmp_path: Path) -> None:
        async def main() -> tuple[Verdict, str]:
            async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await asyncio.sleep(5)  # ignores EOF, never closes
                writer.close()

            server = await asyncio.start_server(keep, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            scenario = load_one(tmp_path, case("- c finish:\n  within: 0.2\n"))
            async with server:
                outcome = await run_scenario(scenario, SocketNetwork(("127.0.0.1", port)),  # type: ignore[arg-type]
                                             tag="t_")
            return outcome.verdict, outcome.message

        verdict, message = asyncio.run(main())
        assert verdict is Verdict.FAIL
        assert "kept the connection open after the client's EOF" in message

    def test_one_of_takes_the_matching_alternative(self, tmp_path: Path,
                                                   ref_server: Target) -> None:
        body = case("""\
            - c send OPTION_REQ: {option: bogus}
            - c expect-one-of:
                - verdict: PASS
                  note: accepted
                  expect: [c expect OPTION_RES]
                - verdict: INFO
                  note: refused
                  expect: [c expect ERROR: {code: UNKNOWN_OPTION}]
            """)
        assert play(tmp_path, ref_server, body) == (Verdict.INFO, "refused")

    def test_one_of_without_a_match_fails(self, tmp_path: Path, ref_server: Target) -> None:
        body = case("""\
            - c send ECHO_REQ: {data: x}
            - c expect-one-of:
                - verdict: PASS
                  expect: [c expect-closed]
            """)
        got, message = play(tmp_path, ref_server, body)
        assert got is Verdict.FAIL
        assert "none of the alternatives matches what arrived: ECHO_RES data=x" in message

    def test_unbound_variable_in_an_expectation_is_a_harness_error(
            self, tmp_path: Path, ref_server: Target) -> None:
        got, message = play(tmp_path, ref_server, case(
            "- c send ECHO_REQ: {data: x}\n- c expect ECHO_RES: {data: 'a $nope'}\n"))
        assert got is Verdict.ERROR and "$nope is used before it has a value" in message


class TestBaselines:
    def test_judge(self) -> None:
        baseline = Baseline("gearmand", {"a/b/c": "known"})
        failing = CaseResult("a/b/c", "gearmand", Verdict.FAIL)
        judge(failing, baseline, strict=False)
        assert (failing.expected, failing.baseline) == (True, "known")
        passing = CaseResult("a/b/c", "gearmand", Verdict.PASS)
        judge(passing, baseline, strict=False)
        assert not passing.expected and "remove it from the baseline" in passing.message
        other = CaseResult("x/y/z", "gearmand", Verdict.NON_STRICT)
        judge(other, baseline, strict=False)
        assert other.expected
        judge(other, baseline, strict=True)
        assert not other.expected

    def test_file_errors(self, tmp_path: Path) -> None:
        path = tmp_path / "t.yaml"
        path.write_text("target: t\ncases:\n  a/b/c: \"\"\n")
        with pytest.raises(ScenarioError, match=rf"{path}:3: a/b/c: each entry needs a reason"):
            load_baseline(path)
        path.write_text("target: t\ncases:\n  a/b/c: known\n  d/e/f: {flaky: yes, reason: r}\n")
        with pytest.raises(ScenarioError, match=rf"{path}:4: d/e/f: an entry is a reason, or "):
            load_baseline(path)

    def test_an_intermittent_entry_expects_the_deviation_and_a_pass(self, tmp_path: Path
                                                                   ) -> None:
        path = tmp_path / "t.yaml"
        path.write_text("target: t\ncases:\n  a/b/c:\n    intermittent: true\n"
                        "    reason: a race in the library\n  d/e/f: always\n")
        baseline = load_baseline(path)
        assert baseline.cases == {"a/b/c": "a race in the library", "d/e/f": "always"}
        for verdict in (Verdict.FAIL, Verdict.PASS):
            result = CaseResult("a/b/c", "t", verdict)
            judge(result, baseline, strict=False)
            assert result.expected and result.baseline == "a race in the library"
        steady = CaseResult("d/e/f", "t", Verdict.PASS)
        judge(steady, baseline, strict=False)
        assert not steady.expected  # only the intermittent one may pass

    def test_shipped_baselines_name_real_cases(self) -> None:
        from conformance.interop import TESTS  # interop-CLIENT@SERVER.yaml: its tests

        ids = {s.id for s in load_catalog()} | {t.id for t in TESTS.values()}
        for path in (ROOT / "conformance" / "baselines").glob("*.yaml"):
            baseline = load_baseline(path)
            assert set(baseline.cases) <= ids, (path, set(baseline.cases) - ids)


PLANTED = """\
- case: passes
  title: t
  level: MUST
  source: s
  requirement: r
  steps:
    - c send ECHO_REQ: {data: x}
    - c expect ECHO_RES: {data: x}
- case: fails
  title: t
  level: MUST
  source: s
  requirement: r
  steps:
    - c send ECHO_REQ: {data: x}
    - c expect ECHO_RES: {data: y}
- case: needs-options
  title: t
  level: MUST
  source: s
  requirement: r
  server-options: ["-w", "1"]
  steps:
    - c send ECHO_REQ: {data: x}
    - c expect ECHO_RES: {data: x}
- case: kills-the-server
  title: t
  level: MUST
  source: s
  requirement: r
  steps:
    - target kill
    - c send ECHO_REQ: {data: x}
    - c expect ECHO_RES: {data: x}
"""


def gearspec_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearspec", "run", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


class TestRunnerAndCli:
    def test_planted_failure_sets_the_exit_status(self, tmp_path: Path) -> None:
        write(tmp_path / "s", PLANTED)
        out = tmp_path / "run.json"
        done = gearspec_run("--scenarios", str(tmp_path / "s"), "--json", str(out),
                            "--baselines", str(tmp_path))
        assert done.returncode == 1, done.stderr
        result = RunResult.from_json(out.read_text())
        verdicts = {r.scenario: r.verdict for r in result.results}
        assert verdicts == {"area/topic/fails": Verdict.FAIL,
                            "area/topic/kills-the-server": Verdict.ERROR,
                            "area/topic/needs-options": Verdict.PASS,
                            "area/topic/passes": Verdict.PASS}
        killed = next(r for r in result.results if r.scenario.endswith("kills-the-server"))
        assert killed.transcript, "every case keeps its wire log"
        assert "area/topic/fails" in done.stdout and "unexpected" in done.stdout

    def test_baseline_makes_it_expected(self, tmp_path: Path) -> None:
        write(tmp_path / "s", PLANTED)
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "ref.yaml").write_text(
            "target: ref\ncases:\n  area/topic/fails: planted\n"
            "  area/topic/kills-the-server: planted\n")
        done = gearspec_run("--scenarios", str(tmp_path / "s"), "--json",
                            str(tmp_path / "r.json"), "--baselines", str(tmp_path / "b"))
        assert done.returncode == 0, done.stdout

    def test_tcp_target_cannot_take_server_options(self, ref_server: Target,
                                                   tmp_path: Path) -> None:
        write(tmp_path / "s", PLANTED)
        scenarios = [s for s in load_catalog(tmp_path / "s") if s.id.endswith("needs-options")]
        host, port = ref_server.address
        result = asyncio.run(run(scenarios, [(f"tcp://{host}:{port}", [])],
                                 RunOptions(baseline_dir=str(tmp_path))))
        assert [r.verdict for r in result.results] == [Verdict.UNSUPPORTED]

    def test_a_missing_helper_service_says_what_installs_it(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(services, "available", lambda: set())
        scenarios = [s for s in load_catalog() if s.id.startswith("persistence/memcached/")]
        assert scenarios
        result = asyncio.run(run(scenarios, [("ref", [])], RunOptions()))
        assert {(r.verdict, r.message) for r in result.results} == {
            (Verdict.UNSUPPORTED, "memcached is not installed here (apt install memcached)")}

    def test_json_round_trip(self, tmp_path: Path) -> None:
        write(tmp_path / "s", PLANTED)
        scenarios = [s for s in load_catalog(tmp_path / "s") if s.id.endswith(("passes", "fails"))]
        result = asyncio.run(run(scenarios, [("ref", [])], RunOptions(baseline_dir=str(tmp_path))))
        again = RunResult.from_json(result.to_json())
        assert again == result
        assert json.loads(result.to_json())["schema"] == "gearspec-run/1"
        assert result.totals()["ref"]["FAIL"] == 1

    @pytest.mark.parametrize(("args", "words"), [
        (["--target", "nosuch"], "unknown target 'nosuch'"),
        (["--target", "tcp://127.0.0.1:1"], "no answer from 127.0.0.1:1"),
        (["--select", "no/such/*"], "no scenario matches the selection"),
        (["--jobs", "0"], "must be positive"),
        (["--capabilities", "flying"], "unknown capability 'flying'"),
        (["--target", "tcp://127.0.0.1:1", "--capabilities", "persistence"],
         "tcp://127.0.0.1:1 runs as its owner started it: it cannot take persistence"),
    ])
    def test_one_line_errors(self, args: list[str], words: str) -> None:
        done = gearspec_run(*args)
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith("gearspec run: error: ") and words in line

    def test_bad_scenario_file_is_one_line(self, tmp_path: Path) -> None:
        path = write(tmp_path / "s", case("- a send ECHO_REQ: {dat: x}\n"))
        done = gearspec_run("--scenarios", str(tmp_path / "s"))
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"gearspec run: error: {path}:9: steps[0].ECHO_REQ.dat: ECHO_REQ has no field "
            "'dat' (fields: data)"]

    def test_an_exec_target_says_what_it_takes(self, tmp_path: Path) -> None:
        """Not told, an exec: server's option cases are UNSUPPORTED (and a failure with
        --require-all); told, they are played."""
        write(tmp_path / "s", PLANTED)
        exec_ref = f"exec:{sys.executable} -m reference_server -L {{host}} -p {{port}}"
        common = ["--scenarios", str(tmp_path / "s"), "--select", "*needs-options",
                  "--target", exec_ref, "--json", str(tmp_path / "r.json")]
        plain = gearspec_run(*common)
        assert plain.returncode == 0, plain.stderr
        assert "1 case not played (1 need gearmand-options)" in plain.stdout
        assert gearspec_run(*common, "--require-all").returncode == 1
        told = gearspec_run(*common, "--capabilities", "exec=gearmand-options")
        assert told.returncode == 0, told.stdout
        result = RunResult.from_json((tmp_path / "r.json").read_text())
        assert [r.verdict for r in result.results] == [Verdict.PASS]
        assert "gearmand-options" in result.targets[0].capabilities

    def test_list(self) -> None:
        done = gearspec_run("--list", "--select", "submit/unique/*")
        assert done.returncode == 0
        assert "submit/unique/coalesce-foreground" in done.stdout.splitlines()


def test_coverage_counts_what_scenarios_send(tmp_path: Path) -> None:
    write(tmp_path, case("- a send ECHO_REQ\n- a send-line: status\n- a send-raw: {type: 0}\n",
                         extra="  sections: ['3.11']\n"))
    cov = coverage(load_catalog(tmp_path))
    assert cov["request_types"]["covered"] == ["ECHO_REQ"]
    assert cov["admin_commands"]["covered"] == ["status"]
    assert cov["sections"]["covered"] == ["3.11"]
    assert cov["invalid_types"] == [0]


def test_pytest_plugin_collects_scenarios(tmp_path: Path) -> None:
    require_gearmand()
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--gearspec-target=ref", "--gearspec-target=gearmand",
                           "--gearspec-select=submit/unique/coalesce-foreground",
                           f"--junitxml={tmp_path / 'j.xml'}", "-q"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    junit = (tmp_path / "j.xml").read_text()
    assert 'tests="2"' in junit and 'failures="0"' in junit


def test_exec_target_runs_any_server_command(tmp_path: Path) -> None:
    require_gearmand()
    done = gearspec_run("--target", "exec:/usr/sbin/gearmand -L {host} -p {port} -l none",
                        "--select", "submit/unique/*", "--json", str(tmp_path / "r.json"))
    assert done.returncode in (0, 1), done.stderr
    result = RunResult.from_json((tmp_path / "r.json").read_text())
    assert result.targets[0].version == "1.1.20+ds"
    assert {r.verdict for r in result.results} <= {Verdict.PASS, Verdict.FAIL}
    assert sum(r.verdict is Verdict.PASS for r in result.results) > 10


def test_exec_target_needs_a_port_placeholder() -> None:
    done = gearspec_run("--target", "exec:/usr/sbin/gearmand")
    assert done.returncode == 2
    assert "must say where to listen with {port}" in done.stderr
