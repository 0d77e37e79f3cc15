"""``gearspec mutate``: how many single-mistake copies of the reference server the
catalog catches.

    gearspec mutate                                  # core/ and protocol/, every mutant
    gearspec mutate --module reference_server/core/jobs.py --jobs 2
    gearspec mutate --list                           # the mutants, without playing them
    gearspec mutate --client                         # the client library, by the client catalog
    gearspec mutate --fuzz --from mutation.json      # the fuzzers, on what the catalog kills

Each mutant (``conformance/mutants.py``) is played in a process of its own: the
import hook puts it in place of its module, then the catalog runs against the
``inproc`` target. A case whose verdict differs from the server as it is kills
the mutant (a MAY case's INFO counts as much as a MUST case's FAIL), and its run
stops after the tenth of the cases where that happened; a run that
outlives ``--timeout`` counts as killed too (a hang is what a real run would
report as an ERROR). A mutant the catalog cannot kill is a survivor, reported
with its diff, unless ``conformance/equivalent-mutants.yaml`` lists it as
equivalent with a reason (a listed mutant that is killed is reported, so that
the list stays true). The score of a module is killed / (mutants - equivalent).
The results go to a JSON file (``--json``) and a table; the exit status is 1
when a mutant survived.

``--client`` measures the client catalog the same way: mutants of gearspec's own
client library (``reference_server/client``), each played by the library cases
against that library's adapter, which ``conformance/mutant_exec.py`` starts with
the mutant in place.  ``--fuzz`` (``fuzz/power.py``) measures the fuzzers on the
mutants a run of this command killed.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from conformance.children import follow_parent, run_bounded, run_pool
from conformance.mutant_exec import VARIABLE
from conformance.mutants import ROOT, Mutant, install, mutants_of
from reference_server.usage import Parser, UsageError  # not the server: the mutants' modules
from results.mutation import COUNTS, score, score_rows

MODULES = ("reference_server/core", "reference_server/protocol")
#: With --client: gearspec's own client library, played by the client catalog.
CLIENT_MODULES = ("reference_server/client",)
CLIENT_ADAPTER = ROOT / "conformance" / "adapters" / "gearspec_client.py"
EQUIVALENT = Path(__file__).resolve().parent / "equivalent-mutants.yaml"
DEFAULT_JSON = Path("reports/latest/mutation.json")
#: What a mutant's process runs: read the mutant, play the catalog, print the verdict.
CHILD = "from conformance.mutation import child; child()"
BATCHES = 10  # a mutant's run plays the cases in tenths, and stops at its first kill
UNMUTATED_LIMIT = 900.0  # seconds the catalog may take on the server as it is


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed, timeout, survived, equivalent, stale-equivalent
    killed_by: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reason: str = ""


def child() -> None:
    """In the mutant's process: stdin holds the mutant (or null for the server as
    it is), the case globs and whether it is the client library that is mutated;
    the last line of stdout holds the verdict of every case that did not pass."""
    follow_parent()
    order = json.loads(sys.stdin.read())
    if order.get("client"):
        # The library runs in its adapter's processes, one per case: the mutant
        # goes to them through mutant_exec; the harness here stays as it is.
        os.environ[VARIABLE] = json.dumps(order["mutant"]) if order["mutant"] else ""
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        target, mode = f"client:exec:{shlex.quote(sys.executable)} -m " \
                       f"conformance.mutant_exec {shlex.quote(str(CLIENT_ADAPTER))}", "library"
    else:
        if order["mutant"] is not None:
            install(Mutant(**order["mutant"]))
        target, mode = "inproc", "server"
    # Imported only now, after the hook: the runner imports the server.
    import asyncio

    from conformance.loader import load_catalog
    from conformance.runner import RunOptions, run, select

    catalog = load_catalog()
    chosen = select([s for s in catalog if s.mode == mode], order["select"], [])
    before: dict[str, str] = order.get("before") or {}
    # In tenths, so that a mutant's run stops after the tenth where a verdict first
    # changes: a killed mutant is known as killed there (the server as it is, and a
    # mutant nothing kills, play every case).
    size = max(1, -(-len(chosen) // BATCHES))
    verdicts: dict[str, str] = {}
    played: list[str] = []
    for start in range(0, len(chosen), size):
        batch = chosen[start:start + size]
        result = asyncio.run(run(batch, [(target, [])], RunOptions(jobs=1),
                                 catalog_ids={s.id for s in catalog}))
        got = {r.scenario: r.verdict.value for r in result.results}
        played += [s.id for s in batch]
        # Every verdict but PASS: a MAY case's INFO or a SHOULD's NON-STRICT changes too.
        verdicts.update({case: verdict for case, verdict in got.items() if verdict != "PASS"})
        if order["mutant"] is not None and any(
                verdict != before.get(case, "PASS") for case, verdict in got.items()):
            break
    print(json.dumps({"verdicts": verdicts, "played": played}))


@dataclass
class Played:
    """What a mutant's run (or the server's as it is) played: the verdict of every
    case that did not pass, the cases played (None: the run outlived its timeout),
    and how long it took."""

    verdicts: dict[str, str]
    cases: list[str] | None
    seconds: float


def play(mutant: Mutant | None, select: list[str], timeout: float, client: bool = False,
         before: dict[str, str] | None = None) -> Played:
    """One run of the catalog with ``mutant`` in place; it stops once a case's
    verdict differs from ``before`` (the server as it is)."""
    began = time.monotonic()
    order = json.dumps({"mutant": mutant.to_json() if mutant else None, "select": select,
                        "client": client, "before": before or {}})
    done = run_bounded([sys.executable, "-c", CHILD], input=order, timeout=timeout, cwd=ROOT,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
    if done is None:
        return Played({}, None, time.monotonic() - began)
    lines = done.stdout.strip().splitlines()
    try:
        last = json.loads(lines[-1])
        verdicts, cases = dict(last["verdicts"]), list(last["played"])
    except (IndexError, ValueError, KeyError):
        # The run itself broke (the mutant broke an import, say): as a real run
        # would, that is a failure, and its last words say which.
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        failed = f"(the run failed: {tail[:200]})"
        verdicts, cases = {failed: "ERROR"}, [failed]
    return Played(verdicts, cases, time.monotonic() - began)


def changed(played: Played, before: dict[str, str]) -> list[str] | None:
    """The cases whose verdict the mutant changed (a kill), from the server as it is,
    among those its run played (None: it outlived its timeout)."""
    if played.cases is None:
        return None
    return sorted(case for case in played.cases
                  if played.verdicts.get(case, "PASS") != before.get(case, "PASS"))


def equivalents(path: Path = EQUIVALENT) -> dict[str, str]:
    """Mutant id → why it is equivalent (it cannot change what any peer sees)."""
    if not path.exists():
        return {}
    entries = (yaml.safe_load(path.read_text()) or {}).get("equivalent") or []
    return {entry["id"]: entry["reason"] for entry in entries}


def judge(mutant: Mutant, failing: list[str] | None, seconds: float,
          known: dict[str, str]) -> Outcome:
    reason = known.get(mutant.id, "")
    if failing is None:
        return Outcome(mutant, "timeout", [], seconds)
    if failing:
        return Outcome(mutant, "stale-equivalent" if reason else "killed", failing[:3],
                       seconds, reason)
    return Outcome(mutant, "equivalent" if reason else "survived", [], seconds, reason)


def scores(outcomes: list[Outcome]) -> dict[str, dict[str, Any]]:
    per: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        row = per.setdefault(outcome.mutant.module, dict.fromkeys(COUNTS, 0))
        row["mutants"] += 1
        status = "killed" if outcome.status == "stale-equivalent" else outcome.status
        row[status] += 1
    for row in per.values():
        row["score"] = round(score(row), 4)
    return per


def read_sources(mutants: list[Mutant]) -> dict[str, str]:
    """The text of every module the mutants were made from, read once: the diffs and
    the hashes (by which --resume knows a module has changed) come from it."""
    return {m: (ROOT / m).read_text() for m in sorted({m.module for m in mutants})}


def hashes(sources: dict[str, str]) -> dict[str, str]:
    return {m: hashlib.sha256(text.encode()).hexdigest() for m, text in sources.items()}


def report(outcomes: list[Outcome], options: dict[str, Any], sources: dict[str, str],
           unplayed: list[Mutant] | None = None) -> dict[str, Any]:
    """The run's JSON; while it goes on (or once it was stopped), ``unplayed`` names
    the mutants not played yet, which no score counts."""
    return {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options,
        "sources": hashes(sources),
        "unplayed": [m.id for m in unplayed or []],
        "modules": scores(outcomes),
        "survivors": [{"id": o.mutant.id, "diff": o.mutant.diff(sources[o.mutant.module])}
                      for o in outcomes if o.status == "survived"],
        "equivalent": [{"id": o.mutant.id, "reason": o.reason}
                       for o in outcomes if o.status == "equivalent"],
        "stale_equivalents": [{"id": o.mutant.id, "killed_by": o.killed_by}
                              for o in outcomes if o.status == "stale-equivalent"],
        "mutants": [{"id": o.mutant.id, "status": o.status, "killed_by": o.killed_by,
                     "seconds": round(o.seconds, 2)} for o in outcomes],
    }


def table(summary: dict[str, Any]) -> str:
    rows = [list(row.values()) for row in score_rows(summary["modules"])]
    text = tabulate(rows, headers=["module", *COUNTS, "score"])
    if summary.get("unplayed"):
        text += f"\n{len(summary['unplayed'])} mutants not played (no score counts them)"
    return text


def earlier_outcomes(path: Path, mutants: list[Mutant], options: dict[str, Any],
                     known: dict[str, str], sources: dict[str, str]) -> dict[str, Outcome]:
    """With --resume: the mutants an earlier run with the same cases played, judged
    again against today's equivalents; none of a module whose source has changed."""
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
        same = all(earlier["options"].get(k) == options[k] for k in ("select", "catalog"))
        then, played = earlier["sources"], {e["id"]: e for e in earlier["mutants"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError(f"--resume: {path} is not a gearspec mutate --json file") from None
    if not same:
        raise UsageError(f"--resume: {path} played other cases (--select, --client)")
    now = hashes(sources)
    outcomes = {}
    for mutant in mutants:
        entry = played.get(mutant.id)
        if entry is None or then.get(mutant.module) != now[mutant.module]:
            continue
        failing = None if entry["status"] == "timeout" else entry["killed_by"]
        outcomes[mutant.id] = judge(mutant, failing, entry["seconds"], known)
    return outcomes


def chosen_mutants(modules: list[str], only: list[str],
                   default: tuple[str, ...] = MODULES) -> list[Mutant]:
    paths: list[Path] = []
    for name in modules or list(default):
        path = (ROOT / name).resolve()
        if not path.exists() or ROOT not in path.parents:
            raise ValueError(f"--module {name}: no such module or folder in the project")
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    found = [m for p in paths for m in mutants_of(p)]
    return [m for m in found if not only or any(fnmatch.fnmatchcase(m.id, g) for g in only)]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--module", action="append", default=[], metavar="PATH",
                        help="a module or folder to mutate (default: reference_server/core "
                             "and reference_server/protocol); repeatable")
    parser.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="only the mutants whose id matches")
    parser.add_argument("--select", action="append", default=[], metavar="GLOB",
                        help="play only these cases (default: the whole catalog)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="mutants at once (CPUs)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a mutant's run may take before it counts as a hang "
                             "(default: ten times the unmutated run, at least 30)")
    parser.add_argument("--equivalent", type=Path, default=EQUIVALENT, metavar="FILE",
                        help="the mutants known to be equivalent, each with its reason")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--client", action="store_true",
                        help="mutate gearspec's client library (default: "
                             "reference_server/client) and play the client catalog against "
                             "its adapter instead")
    parser.add_argument("--resume", action="store_true",
                        help="keep what the --json file of an earlier run (stopped, say) "
                             "played and play only the rest")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    return parser


def main(argv: list[str] | None = None, prog: str = "gearspec mutate") -> int:
    try:
        args = build_parser(prog).parse_args(argv)
        if args.jobs < 1 or (args.timeout is not None and args.timeout <= 0):
            raise UsageError("--jobs and --timeout must be positive")
        default = CLIENT_MODULES if args.client else MODULES
        mutants = chosen_mutants(args.module, args.only, default)
        sources = read_sources(mutants)
        known = equivalents(args.equivalent)
        options = {"modules": args.module or list(default), "only": args.only,
                   "select": args.select, "timeout": args.timeout,
                   "catalog": "client" if args.client else "server"}
        outcomes = earlier_outcomes(args.json, mutants, options, known, sources) \
            if args.resume else {}
    except (UsageError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(m.id for m in mutants))
        return 0
    unmutated = play(None, args.select, args.timeout or UNMUTATED_LIMIT, args.client)
    before = unmutated.verdicts if unmutated.cases is not None else None
    failing = None if before is None else \
        sorted(case for case, verdict in before.items() if verdict in ("FAIL", "ERROR"))
    if failing is None or failing:
        why = f"does not finish within {args.timeout or UNMUTATED_LIMIT:g} s" \
            if failing is None else \
            f"fails ({', '.join(failing)})"
        print(f"{prog}: error: the catalog {why} on the server as it is: a mutant's run "
              "would mean nothing", file=sys.stderr)
        return 2
    # A mutant that hangs costs its whole timeout: ten times what the catalog takes
    # as it is is room enough for a slow machine, and no more.
    args.timeout = options["timeout"] = args.timeout or max(30.0, 10 * unmutated.seconds)
    print(f"the catalog as it is: {unmutated.seconds:.1f} s; a mutant's run past "
          f"{args.timeout:.0f} s counts as a hang")
    if outcomes:
        print(f"resumed: {len(outcomes)} of {len(mutants)} mutants played before")
    assert before is not None
    summary = _play_all(mutants, outcomes, before, known, args,
                        lambda done, unplayed: report(done, options, sources, unplayed))
    print(table(summary))
    for survivor in summary["survivors"]:
        print(f"\nsurvived: {survivor['id']}\n{survivor['diff'].rstrip()}")
    for stale in summary["stale_equivalents"]:
        print(f"\nlisted as equivalent but killed by {stale['killed_by']}: {stale['id']}")
    print(f"\nresults: {args.json}")
    if summary["unplayed"]:
        print(f"stopped: {len(summary['unplayed'])} mutants not played; the same command "
              "with --resume plays them", file=sys.stderr)
        return 130
    return 1 if summary["survivors"] or summary["stale_equivalents"] else 0


def _play_all(mutants: list[Mutant], outcomes: dict[str, Outcome], before: dict[str, str],
              known: dict[str, str], args: argparse.Namespace,
              summarise: Callable[[list[Outcome], list[Mutant]], dict[str, Any]]
              ) -> dict[str, Any]:
    """Play the mutants not in ``outcomes``, the JSON rewritten after each one (a run
    stopped by Ctrl-C or SIGTERM keeps what it played, and ends every child run)."""
    def save() -> dict[str, Any]:
        summary = summarise([outcomes[m.id] for m in mutants if m.id in outcomes],
                            [m for m in mutants if m.id not in outcomes])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        partial = args.json.with_name(args.json.name + ".part")  # never read half-written
        partial.write_text(json.dumps(summary, indent=1))
        partial.replace(args.json)
        return summary

    todo = [m for m in mutants if m.id not in outcomes]
    try:
        with run_pool(args.jobs) as pool:
            runs = {pool.submit(play, m, args.select, args.timeout, args.client, before): m
                    for m in todo}
            for run in as_completed(runs):
                mutant, played = runs[run], run.result()
                outcomes[mutant.id] = judge(mutant, changed(played, before), played.seconds,
                                            known)
                save()
    except KeyboardInterrupt:
        pass  # stopped: what was played is kept, and save() names the rest
    return save()
