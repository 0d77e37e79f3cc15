"""Client and worker libraries under test: the harness plays the job server.

* Every library `make clients` installs runs the whole library catalog to the end:
  every case gets a verdict within its budget, and every failure is in that
  library's baseline with its reason (libgearman, the reference, included).
* A case that fails one real library passes on another.
* The three bugs planted in our own client library are caught by named cases
  that pass on libgearman.
* `gearspec fuzz client` runs with a fixed seed against real libraries, and a
  finding replays to FAIL on its library and PASS on libgearman.
* A library that hangs or dies gets a verdict saying so, never a hung run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.adapter_check import check
from conformance.baselines import BASELINE_DIR, baseline_for
from conformance.libraries import KNOWN, UNUSABLE, parse_library
from conformance.loader import load_catalog
from conformance.runner import RunOptions, run
from conformance.targets import TargetError
from results import RunResult, Verdict

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_CASES = [s for s in load_catalog() if s.mode == "library"]
REAL = [name for name in KNOWN if name != "gearspec"]
PLANTED = {"first-data-only": "library/client-basics/work-data-many-times",
           "status-swapped": "library/client-basics/work-status-numbers",
           "error-ignored": "library/client-basics/error-answering-a-submit"}


def require(name: str) -> None:
    missing = parse_library(f"client:{name}").present()
    if missing is not None:
        pytest.skip(f"{name}: {missing}")


def play(spec: str, cases: list = LIBRARY_CASES, **options: object) -> RunResult:  # type: ignore[type-arg]
    options.setdefault("jobs", 8)  # adapters are processes: more at once only adds load
    return asyncio.run(run(cases, [(spec, [])], RunOptions(**options),  # type: ignore[arg-type]
                           catalog_ids={s.id for s in load_catalog()}))


def explain(result: RunResult) -> str:
    return "\n".join(f"{r.scenario}: {r.verdict.value} {r.message}" for r in result.unexpected)


def gearspec(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearspec", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def test_the_library_catalog_is_big_enough() -> None:
    assert len(LIBRARY_CASES) >= 150
    assert len(KNOWN) >= 11 and len(REAL) >= 10


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(KNOWN))
def test_each_library_runs_the_whole_catalog(name: str) -> None:
    """To the end, every case within its budget, every failure baselined with a reason
    (the adapter's own troubles would be harness ERRORs: there must be none)."""
    require(name)
    result = play(f"client:{name}")
    assert len(result.results) == len(LIBRARY_CASES)
    harness = [r for r in result.results if r.message.startswith("harness error")]
    assert harness == [], explain(result)
    assert result.unexpected == [], explain(result)
    if name in ("gearspec", "libgearman"):  # the reference: it passes, or its baseline says why
        failing = {r.scenario for r in result.results
                   if r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT)}
        assert failing == set(baseline_for(f"client-{name}").cases)


def test_a_case_that_fails_a_library_passes_on_another_real_library() -> None:
    """From the baselines (which the test above keeps exact): every failure of one
    library is a case some other real library, able to play it, passes."""
    able = {}
    for name in REAL:
        target = parse_library(f"client:{name}")
        if target.present() is None:
            target.start()
            able[name] = target.capabilities
    if len(able) < 2:
        pytest.skip("fewer than two client libraries are installed (make clients)")
    cases = {s.id: s for s in LIBRARY_CASES}
    for name in able:
        for case in baseline_for(f"client-{name}").cases:
            passing = [other for other in able if other != name
                       and case not in baseline_for(f"client-{other}").cases
                       and cases[case].needs <= able[other]]
            assert passing, f"{case} fails {name} and passes on no other real library"


def test_the_findings_are_many_and_each_has_a_reason() -> None:
    found = {(path.stem, case): reason
             for path in BASELINE_DIR.glob("client-*.yaml")
             for case, reason in baseline_for(path.stem).cases.items()}
    libraries = {library for library, _ in found}
    assert len(found) >= 10 and len(libraries - {"client-gearspec"}) >= 5, sorted(found)
    assert all(len(reason) > 30 for reason in found.values())


@pytest.mark.parametrize(("bug", "case"), sorted(PLANTED.items()))
def test_a_planted_client_bug_is_caught(bug: str, case: str) -> None:
    require("libgearman")
    chosen = [s for s in LIBRARY_CASES if s.id == case]
    planted = f"client:exec:{sys.executable} {ROOT / 'tests' / 'planted_client.py'} {bug}"
    caught = play(planted, chosen, baselines={planted: "client-gearspec"})
    assert [r.verdict for r in caught.results] == [Verdict.FAIL], caught.results[0].message
    for real in ("client:gearspec", "client:libgearman"):
        assert [r.verdict for r in play(real, chosen).results] == [Verdict.PASS]


@pytest.mark.timeout(600)
def test_fuzz_client_finds_a_bug_that_replays(tmp_path: Path) -> None:
    """With a fixed seed against three real libraries; pygearman's loses the order of
    a job's updates, and the saved finding says so on replay, and passes on
    libgearman."""
    for name in ("pygearman", "libgearman", "npm-gearman"):
        require(name)
    done = gearspec("fuzz", "client", "--client", "pygearman", "--derandomize", "--batch",
                    "30", "--save", str(tmp_path / "found"))
    assert done.returncode == 1, done.stdout + done.stderr
    [finding] = (tmp_path / "found").glob("*.yaml")
    for name, verdict in (("pygearman", "FAIL"), ("libgearman", "PASS")):
        replayed = gearspec("run", "--scenario", str(finding), "--client", name, "--json",
                            str(tmp_path / f"{name}.json"))
        result = RunResult.from_json((tmp_path / f"{name}.json").read_text())
        assert [r.verdict.value for r in result.results] == [verdict], replayed.stdout
    for name in ("libgearman", "npm-gearman"):
        other = gearspec("fuzz", "client", "--client", name, "--derandomize", "--batch", "10",
                         "--save", str(tmp_path / name))
        assert other.returncode in (0, 1), other.stderr
        assert " examples (digest " in other.stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(KNOWN))
def test_each_adapter_keeps_the_contract(name: str) -> None:
    require(name)
    problems, verdicts = check(f"client:{name}")
    assert problems == [], problems
    assert verdicts, "the basic cases were played"


HANG_AND_DIE = """\
topic: misbehaving adapters
scenarios:
  - case: waits
    title: t
    level: MUST
    source: s
    requirement: r
    budget: 2
    library: {role: client, submit: [{function: f, workload: x}]}
    steps:
      - lib expect SUBMIT_JOB
      - lib send JOB_CREATED: {handle: "H:1"}
      - app reports created:
        within: 30
"""


@pytest.mark.parametrize(("script", "words"), [
    ("import time; time.sleep(60)", "ran past its budget of 2 s"),
    ("import sys; print('Traceback (most recent call last):', file=sys.stderr); sys.exit(3)",
     "the adapter died (exit status 3): Traceback"),
], ids=["hang", "crash"])
def test_a_library_that_hangs_or_dies_gets_a_verdict(tmp_path: Path, script: str,
                                                     words: str) -> None:
    (tmp_path / "adapter.py").write_text(textwrap.dedent(f"""\
        import json, sys
        if sys.argv[1] == "describe":
            print(json.dumps({{"library": "x", "roles": ["client"],
                              "features": ["client.created"]}}))
            sys.exit(0)
        {script}
        """))
    (tmp_path / "cases.yaml").write_text(HANG_AND_DIE)
    done = gearspec("run", "--scenario", str(tmp_path / "cases.yaml"), "--client",
                    f"exec:{sys.executable} {tmp_path / 'adapter.py'}", "--json",
                    str(tmp_path / "r.json"), timeout=60)
    assert done.returncode == 1
    [result] = RunResult.from_json((tmp_path / "r.json").read_text()).results
    assert result.verdict is Verdict.FAIL and words in result.message, result.message


def test_an_unusable_library_says_why() -> None:
    for name, why in UNUSABLE.items():
        with pytest.raises(TargetError, match=why[:40]):
            parse_library(f"client:{name}")


def test_gearman3_dies_at_the_first_bytes_it_reads(ref) -> None:  # type: ignore[no-untyped-def]
    """Why gearman3 is not among the libraries: set-up installs it, and its client dies
    as soon as the server answers."""
    python = ROOT / ".clients" / "venv-gearman3" / "bin" / "python"
    if not python.exists():
        pytest.skip("gearman3 is not installed here (make clients)")
    host, port = ref.address
    done = subprocess.run([str(python), "-c", textwrap.dedent(f"""\
        import gearman
        client = gearman.GearmanClient(["{host}:{port}"])
        client.submit_job("reverse", "hello", background=True)
        """)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "'array.array' object has no attribute 'fromstring'" in done.stderr, done.stderr
