"""The interop grid: client libraries × servers, a letter per test.

* The grid's text and pages come from a run JSON alone (reports never run).
* `gearspec interop` over installed libraries and real servers: every cell
  gets every test's verdict, nothing unexpected (known bad pairs are in their
  baselines, with reasons), and every red cell's page links to the failing
  test's transcript page and its capture.
* The verdicts do not move from run to run: every red cell is in its pair's
  baseline and every baselined test still fails (a test that starts passing
  is unexpected too), so each CI run is compared with the run that wrote them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.interop import TESTS
from conformance.interop_run import SERVERS as GRID_SERVERS
from conformance.libraries import KNOWN, parse_library
from reports.interop import cell_path, cell_text, grid_text, render_grid
from results import CaseResult, RunResult, TargetInfo, Verdict

ROOT = Path(__file__).resolve().parent.parent
# CI plays two slices of the grid (`gearspec interop` with no options plays all of
# it, 11 libraries × 4 servers, in about 14 minutes here): the libraries that differ
# most (C, PHP's C extension, Perl, Node, ours) against gearmand and ref, every
# test; and every library against Perl's server, the tests that show its four
# differences (R: the grabs it lacks, S: its status answer, D: no WORK_DATA, K: a
# dead worker's job failed).  The geard column is left to the command: geard takes
# minutes over a 16 MiB packet, and whether a library waits that long depends on
# the machine's load (README).
GRIDS = {"five-libraries@gearmand,ref": (["libgearman", "gearspec", "php", "perl",
                                          "npm-gearman"], ["gearmand", "ref"], ""),
         "every-library@perl": (list(KNOWN), ["perl"], "RSDK")}


def _run(**verdicts: Verdict) -> RunResult:
    run = RunResult(started="now")
    from conformance.interop_run import scenario_infos

    run.scenarios = scenario_infos()
    run.targets = [TargetInfo("lib@srv", "interop")]
    for test in TESTS.values():
        verdict = verdicts.get(test.code, Verdict.PASS)
        run.results.append(CaseResult(test.id, "lib@srv", verdict, "why", expected=verdict.ok))
    return run


def test_a_cell_reads_as_letters() -> None:
    run = _run(C=Verdict.FAIL, Q=Verdict.UNSUPPORTED)
    assert cell_text(run.results) == "RBLSPUDFK ✗C! ·Q"
    text = grid_text(run)
    assert "lib " in text and "srv" in text and "RBLSPUDFK ✗C! ·Q" in text
    assert all(f"  {code}  " in text for code in TESTS)  # the legend


def test_the_grid_page_links_each_cell(tmp_path: Path) -> None:
    run = _run(K=Verdict.FAIL)
    capture = tmp_path / "k.pcap"
    capture.write_bytes(b"")
    run.results[list(TESTS).index("K")].capture = str(capture)
    index = render_grid(run, tmp_path / "report")
    grid = index.read_text()
    assert cell_path("lib@srv") in grid and 'class="l l-FAIL unexpected"' in grid
    cell = (tmp_path / "report" / cell_path("lib@srv")).read_text()
    assert 'class="capture"' in cell and "k.pcap" in cell
    assert "cases/lib_srv/interop/K-worker-dies.html" in cell


def _require(names: list[str]) -> None:
    for name in names:
        missing = parse_library(f"client:{name}").present()
        if missing is not None:
            pytest.skip(f"{name}: {missing}")


def _interop(out: Path, clients: list[str], servers: list[str], *args: str
             ) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, "-m", "gearspec", "interop", *(f"--client={c}" for c in clients),
         *(f"--server={s}" for s in servers), "--json", str(out / "run.json"),
         "--report", str(out / "report"), "--junit", str(out / "junit.xml"), *args],
        capture_output=True, text=True, timeout=900, cwd=ROOT, check=False)
    return done, json.loads((out / "run.json").read_text())


@pytest.mark.timeout(900)
@pytest.mark.parametrize("grid", list(GRIDS))
def test_the_grid_is_played_and_every_red_cell_is_explained(tmp_path: Path, grid: str) -> None:
    clients, servers, tests = GRIDS[grid]
    _require(clients)
    done, run = _interop(tmp_path, clients, servers, *(["--tests", tests] if tests else []))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    pairs = {t["name"] for t in run["targets"]}
    assert len(KNOWN) >= 11 and set(GRID_SERVERS) == {"gearmand", "perl", "gear", "ref"}
    assert pairs == {f"{c}@{s}" for c in clients for s in servers}
    verdicts = {(r["target"], r["scenario"]): r["verdict"] for r in run["results"]}
    assert len(verdicts) == len(pairs) * len(tests or TESTS)
    played = [v for v in verdicts.values() if v != "UNSUPPORTED"]
    assert len(played) >= 0.85 * len(verdicts)
    red = [r for r in run["results"] if r["verdict"] in ("FAIL", "ERROR")]
    assert red, "known bad pairs: Perl's server lacks packets, gearmand's queue loses jobs"
    report = tmp_path / "report"
    for result in red:
        assert result["baseline"], result  # else the exit status above was 1
        cell = (report / cell_path(result["target"])).read_text()
        assert re.search(r'href="\.\./cases/[^"]+' + re.escape(result["scenario"]), cell)
        assert result["capture"] and Path(result["capture"]).stat().st_size > 0
        assert Path(result["capture"]).name in cell
        assert result["log"] or result["transcript"], result["scenario"]  # its logs
    assert "<testsuite" in (tmp_path / "junit.xml").read_text()


def test_a_test_letter_that_does_not_exist_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "gearspec", "interop", "--tests", "RZ"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("gearspec interop: error: unknown "
                                                           "test letter(s) 'Z'")
