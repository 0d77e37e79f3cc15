"""The repository's GitHub Actions workflow, played here by ``.ci/workflow.py``.

* its matrix (``ref`` and ``gearmand`` × four shards) runs as eight processes at
  once, through the repository's ``action.yml``; the shards' JSON travel as
  artifacts to the report job, which merges them into one run JSON, an HTML
  report and JUnit;
* the merged run gives every case the verdict that one unsharded run, made at the
  same time, gives it, with the same coverage;
* a step the script cannot play (another action, another expression) stops the
  run in one line instead of being skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

from conformance.loader import load_catalog
from results import RunResult
from tests.conftest import require_gearmand

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "workflow.py"
CATALOG = [s for s in load_catalog() if s.mode == "server"]


def play(*args: str, timeout: float = 900) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_the_workflow_merges_shards_into_the_verdicts_of_one_run(tmp_path: Path) -> None:
    require_gearmand()
    workflow = play("--workspace", str(tmp_path / "ws"))
    whole = subprocess.run([sys.executable, "-m", "gearspec", "run", "--target", "ref",
                            "--target", "gearmand", "--json", str(tmp_path / "whole.json")],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    log = workflow.communicate(timeout=900)[0]
    assert workflow.returncode == 0, log[-4000:]
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr
    for target in ("ref", "gearmand"):
        for k in range(1, 5):
            assert f"job catalog {{'target': '{target}', 'shard': {k}}}: succeeded" in log
    assert "download-artifact: 8 artifact(s) into shards" in log
    merged_dir = tmp_path / "ws" / "report-1" / "merged"
    together = RunResult.from_json((merged_dir / "run.json").read_text())
    one = RunResult.from_json((tmp_path / "whole.json").read_text())
    verdicts = {(r.target, r.scenario): r.verdict for r in one.results}
    assert len(verdicts) == 2 * len(CATALOG)
    assert {(r.target, r.scenario): r.verdict for r in together.results} == verdicts
    assert {s.id for s in together.scenarios} == {s.id for s in CATALOG}
    assert together.coverage == one.coverage
    assert len(together.options["merged"]) == 8
    junit = JUnitXml.fromfile(str(merged_dir / "junit.xml"))
    assert junit.tests == 2 * len(CATALOG)
    assert f"junit report junit.xml: {junit.tests} tests" in log
    assert (merged_dir / "index.html").exists()


@pytest.mark.parametrize(("step", "says"), [
    ("uses: someone/else@v1", "step uses 'someone/else@v1', which this script does not play"),
    ("run: echo ${{ secrets.TOKEN }}", "expression ${{ secrets.TOKEN }} is not one"),
    ("if: github.event_name == 'push'\n        run: echo", "is not one this script plays"),
], ids=["action", "expression", "condition"])
def test_a_step_it_cannot_play_is_refused_in_one_line(tmp_path: Path, step: str, says: str
                                                      ) -> None:
    workflow = tmp_path / "w.yml"
    workflow.write_text(f"jobs:\n  one:\n    steps:\n      - {step}\n")
    done = play("--workflow", str(workflow), "--workspace", str(tmp_path / "ws"))
    out = done.communicate(timeout=60)[0]
    assert done.returncode == 2
    assert out.count("\n") == 1 and says in out, out


def test_a_failing_step_fails_its_job_and_skips_the_next_steps(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yml"
    workflow.write_text("jobs:\n  one:\n    strategy: {matrix: {n: [1, 2]}}\n    steps:\n"
                        "      - run: test ${{ matrix.n }} = 1\n"
                        "      - run: echo after-${{ matrix.n }}\n"
                        "      - if: always()\n        run: echo always-${{ matrix.n }}\n"
                        "  two:\n    needs: one\n    steps:\n      - run: echo never\n")
    done = play("--workflow", str(workflow), "--workspace", str(tmp_path / "ws"))
    out = done.communicate(timeout=60)[0]
    assert done.returncode == 1, out
    assert "job one {'n': 1}: succeeded" in out and "job one {'n': 2}: FAILED" in out
    assert "after-1" in out and "after-2" not in out and "always-2" in out
    assert "job two: skipped (a job it needs failed)" in out and "never" not in out
