"""The whole scenario catalog against every real server, through every front end.

* ``ref``: every case passes, with no baseline at all; so does ``inproc`` (the
  same server in the harness's process, on a memory transport), case for case;
* ``gearmand`` (1.1.20): every case passes or is in baselines/gearmand.yaml, and
  every entry there still deviates; the same gearmand as an ``exec:`` target told
  that it takes gearmand's options gets the same verdict, case by case;
* ``perl`` and ``gear``: the run reaches the end without harness errors, and their
  baselines account for exactly the cases where they differ from gearmand;
* ``gearspec run`` and the pytest plugin (``pytest --gearspec-target``) give the
  same verdict for every case on ``ref``, ``ref`` over TLS, ``gearmand`` and
  ``perl``: both go through the one runner.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import services
from conformance.baselines import BASELINE_DIR, baseline_for
from conformance.coverage import coverage
from conformance.loader import load_catalog
from conformance.runner import RunOptions, run
from conformance.targets import GEARMAND, PERL_GEARMAND
from results import RunResult, Verdict
from tests.conftest import require_gearmand

CATALOG = [s for s in load_catalog() if s.mode == "server"]  # library cases: test_library
ROOT = Path(__file__).resolve().parent.parent
EXEC_GEARMAND = f"exec:{GEARMAND} -p {{port}} -L {{host}}"

NEEDS_TLS = {s.id for s in CATALOG if "tls" in s.needs}
#: Cases that need a helper this machine lacks (e.g. memcached): UNSUPPORTED, with a
#: message saying what installs it.  ``make test`` installs them all.
NEEDS_MISSING_SERVICE = {s.id for s in CATALOG
                         if (s.needs & services.MISSING.keys()) - services.available()}


def play(targets: list[str], jobs: int = RunOptions().jobs, **options: object) -> RunResult:
    return asyncio.run(run(CATALOG, [(t, []) for t in targets],
                           RunOptions(jobs=jobs, **options)))  # type: ignore[arg-type]


def explain(result: RunResult) -> str:
    return "\n".join(f"{r.target} {r.scenario}: {r.verdict.value} {r.message}"
                     for r in result.unexpected)


def verdicts(result: RunResult, target: str) -> dict[str, str]:
    return {r.scenario: r.verdict.value for r in result.results if r.target == target}


def gearspec_run(tmp_path: Path, target: str, *args: str) -> RunResult:
    """``gearspec run`` as a user types it; its run JSON."""
    out = tmp_path / "run.json"
    done = subprocess.run([sys.executable, "-m", "gearspec", "run", "--target", target,
                           "--json", str(out), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return RunResult.from_json(out.read_text())


def plugin_start(tmp_path: Path, target: str, *args: str) -> subprocess.Popen[str]:
    """``pytest --gearspec-target``, in a folder of its own (so only the catalog is
    collected), started: ``plugin_result`` waits for its run JSON."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                             "-p", "no:xdist", f"--gearspec-target={target}",
                             f"--gearspec-json={folder / 'plugin.json'}", *args], text=True,
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def plugin_result(tmp_path: Path, process: subprocess.Popen[str]) -> RunResult:
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-6000:]
    return RunResult.from_json((tmp_path / "plugin" / "plugin.json").read_text())


def test_catalog_size_and_coverage() -> None:
    assert len(CATALOG) >= 150
    cov = coverage(CATALOG)
    assert cov["request_types"]["missing"] == []
    assert cov["responses_sent_by_peer"]["missing"] == []
    assert cov["admin_commands"]["missing"] == []


@pytest.mark.timeout(600)  # two runs of the whole catalog (perl's takes half a minute)
@pytest.mark.parametrize(("target", "run_args", "plugin_args"), [
    ("ref", [], []),
    ("ref", ["--tls"], ["--gearspec-tls"]),
    ("gearmand", [], []),
    ("perl", [], []),
], ids=["ref", "ref-tls", "gearmand", "perl"])
def test_gearspec_run_and_the_plugin_agree(tmp_path: Path, target: str, run_args: list[str],
                                           plugin_args: list[str]) -> None:
    """The plugin is the runner's: same servers, restarts after crashes (gearmand dies on
    one case), helper services, TLS, capabilities and baselines."""
    if target == "gearmand":
        require_gearmand()
    if target == "perl" and not os.path.exists(PERL_GEARMAND):
        pytest.skip("the Perl server is not installed: apt-get install gearman-server "
                    "(`make test` does it)")
    plugin = plugin_start(tmp_path, target, *plugin_args)  # both at once: each has its servers
    ours = gearspec_run(tmp_path, target, *run_args)
    theirs = plugin_result(tmp_path, plugin)
    assert ours.unexpected == [], explain(ours)
    mine, plugins = verdicts(ours, target), verdicts(theirs, target)
    assert len(mine) == len(CATALOG)
    assert {k: (mine[k], plugins.get(k)) for k in mine if mine[k] != plugins.get(k)} == {}
    # Every case not played says for lack of what.
    assert all((r.verdict is Verdict.UNSUPPORTED) == bool(r.missing) for r in ours.results)
    if target == "ref":
        unsupported = {k for k, v in mine.items() if v == "UNSUPPORTED"}
        assert unsupported == (set() if run_args else NEEDS_TLS) | NEEDS_MISSING_SERVICE
        assert set(mine.values()) <= {"PASS", "UNSUPPORTED"}, explain(ours)


def test_ref_passes_everything_without_a_baseline_and_inproc_agrees() -> None:
    """The reference server over TCP and in process (no sockets, a clock the engine
    moves) pass the same cases: all but the TLS ones."""
    assert not baseline_for("ref").cases, "the reference server has no known deviations"
    assert NEEDS_TLS, "the TLS cases are in the catalog"
    result = play(["ref", "inproc"])
    assert verdicts(result, "inproc") == verdicts(result, "ref")
    for target in ("ref", "inproc"):
        assert {s for s, v in verdicts(result, target).items() if v == "UNSUPPORTED"} == \
            NEEDS_TLS | NEEDS_MISSING_SERVICE
        assert [r for r in result.results if r.verdict not in (Verdict.PASS,
                                                               Verdict.UNSUPPORTED)] == [], \
            explain(result)


def test_exec_target_told_it_takes_gearmands_options_plays_like_gearmand() -> None:
    """An ``exec:`` server plays the whole catalog once told what it takes: every case
    gets gearmand's verdict (the TLS cases are UNSUPPORTED for both: Debian's gearmand is
    built without TLS)."""
    require_gearmand()
    result = play(["gearmand", EXEC_GEARMAND],
                  capabilities={EXEC_GEARMAND: frozenset({"gearmand-options", "persistence",
                                                          "http"})},
                  baselines={EXEC_GEARMAND: "gearmand"})
    assert result.unexpected == [], explain(result)
    ours, theirs = verdicts(result, "gearmand"), verdicts(result, EXEC_GEARMAND)
    assert {k: (v, theirs[k]) for k, v in ours.items() if theirs[k] != v} == {}
    assert {k for k, v in theirs.items() if v == "UNSUPPORTED"} == NEEDS_TLS


def test_exec_target_without_capabilities_says_what_it_did_not_play() -> None:
    require_gearmand()
    result = play([EXEC_GEARMAND], baselines={EXEC_GEARMAND: "gearmand"})
    assert result.unexpected == [], explain(result)
    skipped = result.unsupported()[EXEC_GEARMAND]
    assert skipped["gearmand-options"] >= 30 and skipped["persistence"] >= 10
    [line] = result.unsupported_lines()
    assert line.startswith(f"{EXEC_GEARMAND}: ") and "need gearmand-options" in line
    strict = play([EXEC_GEARMAND], baselines={EXEC_GEARMAND: "gearmand"}, require_all=True)
    assert {r.scenario for r in strict.unexpected} == \
        {r.scenario for r in strict.results if r.verdict is Verdict.UNSUPPORTED}


@pytest.mark.timeout(300)
def test_gear_runs_to_the_end() -> None:
    if shutil.which("geard", path=os.path.dirname(sys.executable)
                    + os.pathsep + os.environ["PATH"]) is None:
        pytest.skip("geard is not installed: pip install gear (`make test` does it)")
    # geard ignores many requests, so its cases often wait out their timeouts: more at
    # once keeps the run short.
    result = play(["gear"], jobs=32)
    errors = [r for r in result.results if r.verdict is Verdict.ERROR and r.baseline is None]
    assert errors == [], "\n".join(f"{r.scenario}: {r.message}" for r in errors)
    assert result.unexpected == [], explain(result)
    # The differences are real: the suite tells these servers apart from gearmand.
    assert len(baseline_for("gear").cases) >= 10


def test_baselines_have_reasons_and_real_ids() -> None:
    from conformance.interop import TESTS  # interop-CLIENT@SERVER.yaml: its tests

    ids = {s.id for s in load_catalog()} | {t.id for t in TESTS.values()}
    for path in BASELINE_DIR.glob("*.yaml"):
        baseline = baseline_for(path.stem)
        assert set(baseline.cases) <= ids, sorted(set(baseline.cases) - ids)
        assert all(len(reason) > 20 for reason in baseline.cases.values())
    assert len(baseline_for("gearmand").cases) <= 0.15 * len(CATALOG), \
        "gearmand's baseline should stay short"
    assert len(baseline_for("perl").cases) >= 10
