"""The whole scenario catalog against every real server.

* ``ref``: every case passes, with no baseline at all;
* ``gearmand`` (1.1.20): every case passes or is in baselines/gearmand.yaml, and
  every entry there still deviates;
* ``perl`` and ``gear``: the run reaches the end without harness errors, and their
  baselines account for exactly the cases where they differ from gearmand.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

import pytest

from conformance import services
from conformance.baselines import BASELINE_DIR, baseline_for
from conformance.coverage import coverage
from conformance.runner import RunOptions, run
from conformance.scenario import load_catalog
from conformance.targets import PERL_GEARMAND
from results import RunResult, Verdict
from tests.conftest import require_gearmand

CATALOG = load_catalog()


def play(target: str, jobs: int = RunOptions().jobs, tls: bool = False) -> RunResult:
    return asyncio.run(run(CATALOG, [(target, [])], RunOptions(jobs=jobs, tls=tls)))


NEEDS_TLS = {s.id for s in CATALOG if "tls" in s.needs}
#: Cases that need a helper this machine lacks (e.g. memcached): UNSUPPORTED, with a
#: message saying what installs it.  ``make test`` installs them all.
NEEDS_MISSING_SERVICE = {s.id for s in CATALOG
                         if (s.needs & services.MISSING.keys()) - services.available()}


def explain(result: RunResult) -> str:
    return "\n".join(f"{r.scenario}: {r.verdict.value} {r.message}" for r in result.unexpected)


def test_catalog_size_and_coverage() -> None:
    assert len(CATALOG) >= 150
    cov = coverage(CATALOG)
    assert cov["request_types"]["missing"] == []
    assert cov["responses_sent_by_peer"]["missing"] == []
    assert cov["admin_commands"]["missing"] == []


def test_ref_passes_everything_without_a_baseline() -> None:
    assert not baseline_for("ref").cases, "the reference server has no known deviations"
    result = play("ref")
    assert NEEDS_TLS, "the TLS cases are in the catalog"
    assert {r.scenario for r in result.results if r.verdict is Verdict.UNSUPPORTED} == \
        NEEDS_TLS | NEEDS_MISSING_SERVICE
    assert [r for r in result.results if r.verdict not in (Verdict.PASS, Verdict.UNSUPPORTED)
            ] == [], explain(result)


def test_ref_passes_everything_over_tls() -> None:
    """`gearspec run --target ref --tls`: the server started with --ssl and a throwaway
    certificate, every connection over TLS, the TLS cases included."""
    result = play("ref", tls=True)
    assert [r for r in result.results if r.verdict is not Verdict.PASS] == [], explain(result)
    assert len(result.results) == len(CATALOG)


def test_gearmand_passes_or_is_baselined() -> None:
    require_gearmand()
    result = play("gearmand")
    assert result.unexpected == [], explain(result)
    baseline = baseline_for("gearmand")
    assert len(baseline.cases) <= 0.15 * len(CATALOG), "gearmand's baseline should stay short"


@pytest.mark.parametrize("target", ["perl", "gear"])
def test_other_servers_run_to_the_end(target: str) -> None:
    if target == "perl" and not os.path.exists(PERL_GEARMAND):
        pytest.skip("the Perl server is not installed: apt-get install gearman-server "
                    "(`make test` does it)")
    if target == "gear" and shutil.which("geard", path=os.path.dirname(sys.executable)
                                         + os.pathsep + os.environ["PATH"]) is None:
        pytest.skip("geard is not installed: pip install gear (`make test` does it)")
    # geard ignores many requests, so its cases often wait out their timeouts: more at
    # once keeps the run short.
    result = play(target, jobs=32)
    errors = [r for r in result.results if r.verdict is Verdict.ERROR and r.baseline is None]
    assert errors == [], "\n".join(f"{r.scenario}: {r.message}" for r in errors)
    assert result.unexpected == [], explain(result)
    # The differences are real: the suite tells these servers apart from gearmand.
    assert len(baseline_for(target).cases) >= 10


def test_baselines_have_reasons_and_real_ids() -> None:
    ids = {s.id for s in CATALOG}
    for path in BASELINE_DIR.glob("*.yaml"):
        baseline = baseline_for(path.stem)
        assert set(baseline.cases) <= ids, sorted(set(baseline.cases) - ids)
        assert all(len(reason) > 20 for reason in baseline.cases.values())
