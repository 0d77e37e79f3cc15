"""``gearspec mutate --fuzz``: how strong the fuzzers are, measured on the mutants
the catalog kills.

    gearspec mutate --json mutation.json                  # first: what the catalog kills
    gearspec mutate --fuzz --from mutation.json --sample 30 --budget 60s --seed 1

Each chosen mutant (``conformance/mutants.py``) is served by the reference server
started as an ``exec:`` target through ``conformance/mutant_exec.py``, so that the
server process, and only it, runs the mutant; then each fuzzer runs one campaign
against it, as ``gearspec fuzz`` would: the model fuzzer against that server, the
diff fuzzer with it as the subject and gearmand as the oracle.  A campaign that
reports a finding has found the mutant; the seconds it took are the campaign's
own.  Before any mutant, every fuzzer runs once against the server as it is: a
fuzzer that finds something there would "find" every mutant, and the command
stops.  The mutants are the catalog's kills from a ``gearspec mutate --json``
file, all of them or ``--sample N`` drawn with ``--seed`` (the same draw every
time); the figures go to ``--json`` and a table, a row per fuzzer and one for all
of them together.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from conformance.children import run_bounded, run_pool
from conformance.mutant_exec import VARIABLE
from conformance.mutants import ROOT, Mutant, mutants_of
from fuzz.cli import budget as parse_budget
from reference_server.usage import Parser, UsageError

FUZZERS = ("model", "diff")
DEFAULT_JSON = Path("reports/latest/fuzz-power.json")
#: The mutated server: the reference server's command line, under the hook.
SUBJECT = (f"exec:{shlex.quote(sys.executable)} -m conformance.mutant_exec "
           "-m reference_server -L {host} -p {port}")
_CAMPAIGN = re.compile(r"\bin (\d+(?:\.\d+)?) s \(")


@dataclass(frozen=True)
class Hunt:
    """One fuzzer's campaign against one mutant (or the server as it is)."""

    fuzzer: str
    found: bool
    seconds: float
    summary: str  # the campaign's line, as gearspec fuzz prints it
    started: bool = True  # False: the mutated server never came up (found at once)


def hunt(fuzzer: str, mutant: Mutant | None, budget: float, seed: int) -> Hunt:
    """One campaign of ``fuzzer`` against the server with ``mutant`` in place."""
    # The diff fuzzer runs both servers with the HTTP module, so that it reaches the
    # mutants of core/http.py too.
    # The reference server takes gearmand's options: the fuzzers' rounds may draw them
    # (a persistent queue, -w, -j, ...).
    targets = ["--target", SUBJECT, "--capabilities", "exec=gearmand-options,persistence"] + \
        (["--target", "gearmand", "--http"] if fuzzer == "diff" else [])
    env = {**os.environ, VARIABLE: json.dumps(mutant.to_json()) if mutant else "",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="gearspec-power-") as saved:
        command = [sys.executable, "-m", "gearspec", "fuzz", fuzzer, *targets,
                   "--budget", f"{budget:g}s", "--seed", str(seed), "--save", saved]
        done = run_bounded(command, cwd=ROOT, env=env, timeout=budget * 4 + 120)
        if done is None:
            return Hunt(fuzzer, False, budget * 4 + 120, "the campaign did not end")
    lines = [line for line in done.stdout.splitlines() if " against " in line]
    if done.returncode not in (0, 1) or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if mutant is not None and done.returncode == 2 and "error: exec:" in tail:
            # The mutant keeps the server from starting: any campaign, any run of
            # the catalog, sees that at once.
            return Hunt(fuzzer, True, 0.0, tail[:300], started=False)
        raise RuntimeError(f"gearspec fuzz {fuzzer} broke (exit {done.returncode}): {tail}")
    seconds = _CAMPAIGN.search(lines[0])
    return Hunt(fuzzer, done.returncode == 1, float(seconds[1]) if seconds else budget,
                lines[0][:300])


def killed_mutants(path: Path, sample: int | None, seed: int) -> list[Mutant]:
    """The mutants a ``gearspec mutate --json`` file says the catalog killed, made
    again from the modules as they are now (an id that no longer exists is refused)."""
    try:
        data = json.loads(path.read_text())
        killed = [m["id"] for m in data["mutants"] if m["status"] in ("killed", "timeout")]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--from {path}: not a gearspec mutate --json file ({error})") from None
    modules = sorted({mutant_id.split(":", 1)[0] for mutant_id in killed})
    known = {m.id: m for module in modules for m in mutants_of(ROOT / module)}
    gone = [mutant_id for mutant_id in killed if mutant_id not in known]
    if gone:
        raise UsageError(f"--from {path}: {len(gone)} of its mutants no longer exist (the "
                         f"modules changed since; first: {gone[0]}): run gearspec mutate again")
    if sample is not None and sample < len(killed):
        killed = sorted(random.Random(seed).sample(killed, sample))
    return [known[mutant_id] for mutant_id in killed]


def figures(rows: list[dict[str, Any]], fuzzers: list[str]) -> list[dict[str, Any]]:
    """Per fuzzer, and for all together: how many of the mutants it found, and the
    median seconds a finding took."""
    table = []
    for name in [*fuzzers, "together"]:
        chosen = fuzzers if name == "together" else [name]
        found = [r for r in rows if any(r[f]["found"] for f in chosen)]
        dead = [r for r in found if any(not r[f].get("started", True) for f in chosen)]
        took = [min(r[f]["seconds"] for f in chosen if r[f]["found"]) for r in found
                if r not in dead]
        table.append({"fuzzer": name, "mutants": len(rows), "found": len(found),
                      "of them, the server never started": len(dead),
                      "share": f"{100 * len(found) / len(rows):.1f}%" if rows else "-",
                      "median seconds": f"{statistics.median(took):.1f}" if took else "-"})
    return table


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--fuzz", action="store_true", required=True,
                        help="measure the fuzzers instead of the catalog")
    parser.add_argument("--fuzzer", action="append", choices=FUZZERS, default=[],
                        help="which fuzzers (default: model and diff); repeatable")
    parser.add_argument("--from", dest="source", type=Path,
                        default=Path("reports/latest/mutation.json"), metavar="MUTATION.json",
                        help="a gearspec mutate --json file: its killed mutants are hunted")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="only N of them, drawn with --seed")
    parser.add_argument("--budget", type=parse_budget, default=60.0,
                        help="each campaign's budget (default 60s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="campaigns at once")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return parser


def main(argv: list[str] | None = None, prog: str = "gearspec mutate --fuzz") -> int:
    try:
        args = build_parser(prog).parse_args(argv)
        if args.jobs < 1 or (args.sample is not None and args.sample < 1):
            raise UsageError("--jobs and --sample must be positive")
        mutants = killed_mutants(args.source, args.sample, args.seed)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    fuzzers = args.fuzzer or list(FUZZERS)
    try:
        for fuzzer in fuzzers:
            clean = hunt(fuzzer, None, args.budget, args.seed)
            if clean.found:
                print(f"{prog}: error: {fuzzer} finds something on the server as it is, so "
                      f"a finding would say nothing of a mutant: {clean.summary}",
                      file=sys.stderr)
                return 2
        pairs = [(m, f) for m in mutants for f in fuzzers]
        with run_pool(args.jobs) as pool:  # a stop ends every campaign, with its servers
            hunts = list(pool.map(lambda p: hunt(p[1], p[0], args.budget, args.seed), pairs))
    except KeyboardInterrupt:
        print(f"{prog}: stopped", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    for (mutant, fuzzer), result in zip(pairs, hunts, strict=True):
        if not rows or rows[-1]["id"] != mutant.id:
            rows.append({"id": mutant.id})
        rows[-1][fuzzer] = asdict(result)
    table = figures(rows, fuzzers)
    summary = {"options": {"from": str(args.source), "sample": args.sample, "seed": args.seed,
                           "budget": args.budget, "fuzzers": fuzzers},
               "figures": table, "mutants": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1))
    print(tabulate([list(row.values()) for row in table], headers=list(table[0])))
    for row in rows:
        missed = [f for f in fuzzers if not row[f]["found"]]
        if len(missed) == len(fuzzers):
            print(f"missed by every fuzzer: {row['id']}")
    print(f"\nresults: {args.json}")
    return 0
