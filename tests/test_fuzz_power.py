"""``gearspec mutate --fuzz`` (``fuzz/power.py``): the fuzzers hunted on mutants.

* a mutant the catalog killed is served by the reference server under the import
  hook, and a fuzzer that tells it apart is counted as finding it, with its time;
* the figures go to the JSON and a table, a row per fuzzer and one for all;
* a ``--from`` file whose mutants no longer exist is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from conformance.mutants import ROOT, mutants_of
from tests.conftest import require_gearmand
from tests.test_mutation import mutate

HANDLERS = "reference_server/core/handlers.py"
PACKETS = "reference_server/protocol/packets.py"


def option_res_dropped() -> str:
    """The mutant that never answers OPTION_REQ with OPTION_RES."""
    line = next(n for n, text in enumerate((ROOT / HANDLERS).read_text().splitlines(), 1)
                if "response(T.OPTION_RES" in text)
    [mutant] = [m for m in mutants_of(ROOT / HANDLERS)
                if m.line == line and m.operator == "call dropped"]
    return mutant.id


def server_cannot_start() -> str:
    """A mutant of the packet table that fails its own assertion on import."""
    [mutant] = [m for m in mutants_of(ROOT / PACKETS) if m.operator == "0 -> 1"
                and "TEXT = 0" in (ROOT / PACKETS).read_text().splitlines()[m.line - 1]]
    return mutant.id


def test_the_diff_fuzzer_finds_a_mutant_the_catalog_kills(tmp_path: Path) -> None:
    require_gearmand()
    source, out = tmp_path / "mutation.json", tmp_path / "power.json"
    source.write_text(json.dumps({"mutants": [{"id": option_res_dropped(), "status": "killed"},
                                              {"id": server_cannot_start(), "status": "killed"},
                                              {"id": "a survivor", "status": "survived"}]}))
    done = mutate("--fuzz", "--fuzzer", "diff", "--from", str(source), "--budget", "15s",
                  "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text())
    rows = {row["id"]: row["diff"] for row in summary["mutants"]}
    assert sorted(rows) == sorted([option_res_dropped(), server_cannot_start()])
    found = rows[option_res_dropped()]
    assert found["found"] and found["started"] and "FOUND" in found["summary"]
    assert 0 < found["seconds"] <= 15 * 4
    dead = rows[server_cannot_start()]
    assert dead["found"] and not dead["started"] and "error: exec:" in dead["summary"]
    assert [f["fuzzer"] for f in summary["figures"]] == ["diff", "together"]
    together = summary["figures"][-1]
    assert together["found"] == 2 and together["of them, the server never started"] == 1
    assert "100.0%" in done.stdout


def test_a_mutation_file_of_other_modules_is_refused_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "mutation.json"
    source.write_text(json.dumps({"mutants": [
        {"id": f"{HANDLERS}:99999:0-99999:1:call dropped", "status": "killed"}]}))
    done = mutate("--fuzz", "--from", str(source), "--json", str(tmp_path / "p.json"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no longer exist" in done.stderr and not (tmp_path / "p.json").exists()
