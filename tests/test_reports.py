"""Reports rendered from a real run, read back by a browser, a JUnit parser and the
JSON schema."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from junitparser import JUnitXml

from reports.compare import compare
from reports.html import case_path, render
from results import RunResult, Verdict
from tests.conftest import require_gearmand

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "reports" / "schema.json").read_text())
# A slice of the catalog with known gearmand deviations in it, so that the run has
# failing cells (baselined ones) as well as passing ones.
SELECTION = ["admin/cancel/*", "admin/functions/*", "framing/arguments/*", "submit/unique/*"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    require_gearmand()
    out = tmp_path_factory.mktemp("report")
    args = [sys.executable, "-m", "gearspec", "run", "--target", "ref", "--target", "gearmand",
            "--json", str(out / "run.json"), "--junit", str(out / "junit.xml"),
            "--report", str(out)]
    for glob in SELECTION:
        args += ["--select", glob]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          check=False)
    assert done.returncode in (0, 1), done.stderr
    assert f"report: {out / 'index.html'}" in done.stdout
    return out, RunResult.from_json((out / "run.json").read_text())


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed: apt-get install chromium (`make test` does it)")
    return path


def browse(url: str, out: Path, *extra: str) -> str:
    """The DOM after the page's scripts ran, from headless Chromium."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={out / 'chromium-profile'}", *extra, url],
        capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Cells(HTMLParser):
    """Totals per target and the links of the matrix, as a browser rendered them."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, dict[str, int]] = {}
        self.links: list[tuple[str, str]] = []  # (verdict, href)
        self._target: str | None = None
        self._verdict: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-target"):
            self._target = a["data-target"]
            self.totals[self._target] = {}
        elif tag == "td" and "total" in (a.get("class") or "") and self._target:
            self._verdict = a.get("data-verdict")
        elif tag == "a" and a.get("data-verdict") and a.get("href"):
            self.links.append((a["data-verdict"] or "", a["href"] or ""))

    def handle_data(self, data: str) -> None:
        if self._verdict and self._target and data.strip():
            self.totals[self._target][self._verdict] = int(data)
            self._verdict = None


def test_browser_sees_the_matrix_and_the_case_pages(real_run: tuple[Path, RunResult]) -> None:
    out, run = real_run
    dom = browse((out / "index.html").as_uri(), out, "--dump-dom")
    cells = Cells()
    cells.feed(dom)
    assert cells.totals == run.totals()
    assert len(cells.links) == len(run.results)
    failing = [href for verdict, href in cells.links if verdict == "FAIL"]
    assert failing, "the selection has known gearmand deviations: some cells must fail"
    page = browse((out / failing[0]).as_uri(), out, "--dump-dom")
    assert 'id="transcript"' in page
    assert re.search(r"SUBMIT_JOB|CAN_DO|ECHO_REQ|send-raw|raw", page)
    assert 'class="v v-FAIL' in page
    browse((out / "index.html").as_uri(), out, "--screenshot=" + str(out / "index.png"),
           "--window-size=1400,1100")
    assert (out / "index.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filters_hide_rows_in_the_browser(real_run: tuple[Path, RunResult], tmp_path: Path
                                         ) -> None:
    out, run = real_run
    # The same page with the "failures only" box ticked before the script runs.
    html = (out / "index.html").read_text().replace('id="f-failures"',
                                                     'id="f-failures" checked')
    (out / "ticked.html").write_text(html)
    dom = browse((out / "ticked.html").as_uri(), out, "--dump-dom")
    bad = {r.scenario for r in run.results if not r.expected
           or r.verdict in (Verdict.FAIL, Verdict.ERROR)}
    shown = re.search(r'id="f-count"[^>]*>(\d+) of (\d+) scenarios', dom)
    assert shown is not None
    assert (int(shown[1]), int(shown[2])) == (len(bad), len(run.scenarios))


def test_json_follows_the_schema(real_run: tuple[Path, RunResult]) -> None:
    out, _ = real_run
    jsonschema.validate(json.loads((out / "run.json").read_text()), SCHEMA)


def test_junit_is_parsed_and_counts_agree(real_run: tuple[Path, RunResult]) -> None:
    out, run = real_run
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(out / "junit.xml"))}
    assert set(suites) == {t.name for t in run.targets}
    for name, suite in suites.items():
        mine = [r for r in run.results if r.target == name]
        assert suite.tests == len(mine)
        assert suite.failures + suite.errors == sum(not r.expected for r in mine)
        assert suite.skipped == sum(r.expected and r.baseline is not None for r in mine) + \
            sum(r.verdict is Verdict.UNSUPPORTED for r in mine)


def test_every_result_has_its_page(real_run: tuple[Path, RunResult]) -> None:
    out, run = real_run
    for result in run.results:
        page = (out / case_path(result.target, result.scenario)).read_text()
        assert result.verdict.value in page
        if result.baseline:
            assert "Baseline:" in page


def test_compare_puts_new_failures_first(real_run: tuple[Path, RunResult]) -> None:
    _, run = real_run
    new = copy.deepcopy(run)
    fixed = next((r for r in new.results if r.baseline is not None), None)
    flipped = next(r for r in new.results if r.verdict is Verdict.PASS)
    flipped.verdict, flipped.expected = Verdict.FAIL, False
    if fixed is not None:  # a baselined case that now passes: reported too, after
        fixed.verdict, fixed.expected = Verdict.PASS, False
    changes = compare(run, new)
    kinds = [c["kind"] for c in changes]
    assert kinds == sorted(kinds, key=lambda k: k != "new failure"), "new failures first"
    news = {(c["target"], c["scenario"]) for c in changes if c["kind"] == "new failure"}
    assert (flipped.target, flipped.scenario) in news
    if fixed is not None:
        assert (fixed.target, fixed.scenario) in news


def test_report_command_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{}")
    for args, words in ((["nosuch.json"], "cannot read nosuch.json"),
                        ([str(tmp_path / "bad.json")], "is not a gearspec run file"),
                        ([], "give a run JSON")):
        done = subprocess.run([sys.executable, "-m", "gearspec", "report", *args],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              check=False)
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith("gearspec report: error: ") and words in line


def test_render_is_self_contained(real_run: tuple[Path, RunResult], tmp_path: Path) -> None:
    _, run = real_run
    index = render(run, tmp_path / "copy")
    text = index.read_text()
    assert "<script src" not in text and "<link " not in text and "http://" not in text
    assert "https://" not in text


def test_bench_chart_and_terminal_formats(real_run: tuple[Path, RunResult], tmp_path: Path
                                          ) -> None:
    from reports.terminal import summary

    _, run = real_run
    bench = {"targets": [
        {"target": "ref", "modes": {"fg": {"jobs_per_second": 40000.0, "cpu_us_per_job": 24.0},
                                    "bg": {"jobs_per_second": 60000.0, "cpu_us_per_job": 16.0}}},
        {"target": "gearmand", "modes": {"fg": {"jobs_per_second": 39000.0,
                                                "cpu_us_per_job": 27.0}}}]}
    text = render(run, tmp_path / "b", bench).read_text()
    assert text.count("<svg") >= 2 + len(run.targets)
    assert "Throughput" in text and "40,000.0 jobs/s" in text and "27.0 µs" in text
    github = summary(run, "github")
    assert github.splitlines()[1].startswith("|") and "gearmand" in github
    assert "| target" in summary(run, "markdown")


def test_a_failing_case_shows_expected_beside_actual(real_run: tuple[Path, RunResult]) -> None:
    import html

    out, run = real_run
    failing = [r for r in run.results if r.failure is not None]
    assert failing, "the selection has gearmand cases that fail on a step"
    for result in failing:
        assert result.verdict in (Verdict.FAIL, Verdict.NON_STRICT, Verdict.INFO)
        page = (out / case_path(result.target, result.scenario)).read_text()
        assert 'id="failure"' in page
        expected = re.search(r'id="expected">(.*?)</td>', page, re.S)
        actual = re.search(r'id="actual">(.*?)</td>', page, re.S)
        assert expected and html.unescape(expected[1]) == result.failure.expected
        assert actual and html.unescape(actual[1]) == result.failure.actual


def test_every_summary_counts_the_cases_not_played(real_run: tuple[Path, RunResult],
                                                   tmp_path: Path) -> None:
    from reports.junit import to_junit
    from reports.terminal import summary

    _, run = real_run
    run = copy.deepcopy(run)
    for result in [r for r in run.results if r.target == "ref"][:3]:
        result.verdict, result.missing = Verdict.UNSUPPORTED, ["gearmand-options"]
    run.results[0].missing.append("persistence")
    line = "ref: 3 cases not played (3 need gearmand-options, 1 need persistence)"
    assert run.unsupported_lines() == [line]
    assert line in summary(run)
    assert line in render(run, tmp_path / "u").read_text()
    junit = to_junit(run)
    assert 'name="unsupported.gearmand-options" value="3"' in junit
    assert 'name="unsupported.persistence" value="1"' in junit
    assert RunResult.from_json(run.to_json()).results[0].missing == ["gearmand-options",
                                                                     "persistence"]
