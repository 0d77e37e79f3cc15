"""``gearspec mutate``: mutants of the reference server, each played against the
catalog in a process of its own (``conformance/mutants.py``, ``conformance/mutation.py``).

* the operators change one node each, never a docstring, an annotation or a
  logging call, and every mutant compiles and differs from its module in one place;
* the command kills a mutant the selected cases catch, reports a survivor with its
  diff, takes a listed equivalent as equivalent, and reports a listed one that is
  killed (the list must stay true); the score counts what is not equivalent;
* the figures go into the run JSON (``--mutation``), a merged run and the HTML report;
* a catalog that cannot finish on the unmutated server stops the command in one line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from html import escape as html_escape
from pathlib import Path

import jsonschema
import psutil
import yaml

from conformance.mutants import ROOT, mutants_of

PRIORITY = "reference_server/protocol/priority.py"


def mutate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearspec", "mutate", *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_each_operator_changes_one_node_and_leaves_docs_and_logging(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text('"""Docs: 1 == 1."""\nimport logging\nlog = logging.getLogger()\n\n\n'
                      'def f(a: int = 0, b: bool = True) -> bool:\n'
                      '    """Not this: a < b."""\n'
                      '    log.debug("x %d", 1 + 2)\n'
                      '    send(a)\n'
                      '    return a == 3 and not b\n')
    found = {(m.line, m.operator) for m in mutants_of(module)}
    assert found == {(6, "0 -> 1"), (6, "True -> False"), (9, "call dropped"),
                     (10, "== -> !="), (10, "3 -> 4"), (10, "and -> or"), (10, "not dropped")}
    for mutant in mutants_of(module):
        changed = mutant.source(module.read_text())
        compile(changed, "sample.py", "exec")
        diff = [line for line in mutant.diff(module.read_text()).splitlines()
                if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        assert len(diff) == 2 and diff[0].startswith("-") and diff[1].startswith("+"), diff


def test_the_server_modules_have_mutants_with_stable_ids() -> None:
    first = [m.id for m in mutants_of(ROOT / PRIORITY)]
    assert first == [m.id for m in mutants_of(ROOT / PRIORITY)]
    assert len(first) == len(set(first)) >= 5
    listed = mutate("--list").stdout.splitlines()
    assert set(first) <= set(listed) and len(listed) > 500
    assert len(listed) == len(set(listed))  # nested nodes that start at one place too


def test_killed_survived_equivalent_and_a_stale_equivalent(tmp_path: Path) -> None:
    ids = {m.id.split(":")[1]: m.id for m in mutants_of(ROOT / PRIORITY)}
    # Lines 26, 27, 29: SUBMIT_JOB_BG's background flag (no submit/priority case
    # submits in the background), SUBMIT_JOB_HIGH's and SUBMIT_JOB_LOW's.
    normal_bg, high_fg, low_fg = ids["26"], ids["27"], ids["29"]
    listed = tmp_path / "equivalent.yaml"
    listed.write_text(yaml.safe_dump({"equivalent": [
        {"id": normal_bg, "reason": "no selected case submits in the background"},
        {"id": high_fg, "reason": "wrongly listed"}]}))
    out = tmp_path / "mutation.json"
    done = mutate("--module", PRIORITY, "--only", normal_bg, "--only", high_fg, "--only", low_fg,
                  "--select", "submit/priority/*", "--equivalent", str(listed),
                  "--json", str(out))
    assert done.returncode == 1, done.stdout + done.stderr  # the stale entry
    summary = json.loads(out.read_text())
    status = {m["id"]: m["status"] for m in summary["mutants"]}
    assert status == {normal_bg: "equivalent", high_fg: "stale-equivalent", low_fg: "killed"}
    assert summary["modules"][PRIORITY]["score"] == 1.0  # 2 killed of 2 not equivalent
    assert "listed as equivalent but killed by" in done.stdout and high_fg in done.stdout
    survivor = mutate("--module", PRIORITY, "--only", low_fg, "--select", "client/echo/*",
                      "--json", str(out))
    assert survivor.returncode == 1
    [entry] = json.loads(out.read_text())["survivors"]
    assert entry["id"] == low_fg and "\n-" in entry["diff"] and "\n+" in entry["diff"]
    assert f"survived: {low_fg}" in survivor.stdout
    assert json.loads(out.read_text())["modules"][PRIORITY]["score"] == 0.0
    _the_figures_go_into_the_run_json_and_the_report(out, entry, tmp_path)


def _the_figures_go_into_the_run_json_and_the_report(mutation: Path, survivor: dict[str, str],
                                                     tmp_path: Path) -> None:
    run_json, html = tmp_path / "run.json", tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "gearspec", "run", "--target", "inproc",
                           "--select", "client/echo/*", "--mutation", str(mutation),
                           "--json", str(run_json), "--report", str(html)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(run_json.read_text())
    jsonschema.validate(data, json.loads((ROOT / "reports" / "schema.json").read_text()))
    assert data["mutation"]["survivors"] == [survivor]
    page = (html / "index.html").read_text()
    # The row of the module and the total, then the survivor's id and its diff.
    assert f'<td class="mono">{PRIORITY}</td><td>1</td><td>0</td>' in page
    assert "<td><b>0.0%</b></td></tr>" in page and html_escape(survivor["id"]) in page
    assert html_escape(survivor["diff"]) in page
    # Merged runs keep it; a file that is not mutate's is refused in one line.
    merged = tmp_path / "merged.json"
    subprocess.run([sys.executable, "-m", "gearspec", "report", "--merge", str(run_json),
                    "--json", str(merged), "--out", str(tmp_path / "m")],
                   capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    assert json.loads(merged.read_text())["mutation"] == data["mutation"]
    refused = subprocess.run([sys.executable, "-m", "gearspec", "report", str(run_json),
                              "--mutation", str(run_json), "--out", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "is not a gearspec mutate --json file" in refused.stderr
    # gearspec run refuses it when it reads its command line, before playing anything.
    before = subprocess.run([sys.executable, "-m", "gearspec", "run", "--target", "inproc",
                             "--mutation", str(run_json), "--json", str(tmp_path / "no.json")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert before.returncode == 2 and before.stderr.count("\n") == 1, before.stderr
    assert "is not a gearspec mutate --json file" in before.stderr
    assert not (tmp_path / "no.json").exists() and "results:" not in before.stdout


def test_a_catalog_that_cannot_finish_unmutated_stops_in_one_line() -> None:
    done = mutate("--module", PRIORITY, "--timeout", "0.2")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "does not finish within 0.2 s" in done.stderr


def test_the_client_library_is_mutated_in_its_adapters_processes(tmp_path: Path) -> None:
    """``--client``: the mutant reaches the adapter's own processes (through
    conformance/mutant_exec.py), and the client catalog kills it there."""
    module = "reference_server/client/client.py"
    line = next(n for n, text in enumerate((ROOT / module).read_text().splitlines(), 1)
                if "async def echo(" in text) + 2  # its `return args[0]`
    out = tmp_path / "client.json"
    done = mutate("--client", "--module", module, "--only", f"{module}:{line}:*",
                  "--select", "library/client-echo/*", "--jobs", "1", "--json", str(out))
    summary = json.loads(out.read_text())
    [mutant] = summary["mutants"]
    assert mutant["status"] == "killed", done.stdout + done.stderr
    assert mutant["killed_by"][0].startswith("library/client-echo/")
    assert summary["options"]["catalog"] == "client" and done.returncode == 0


def test_a_stopped_run_keeps_what_it_played_and_resume_plays_the_rest(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) midway: the JSON holds the mutants played and names the
    rest, no run of the stopped command lives on, and --resume plays only the rest."""
    out = tmp_path / "mutation.json"
    ids = [m.id for m in mutants_of(ROOT / PRIORITY)][:4]
    args = ["--module", PRIORITY, *(a for i in ids for a in ("--only", i)),
            "--select", "submit/priority/*", "--jobs", "1", "--json", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "gearspec", "mutate", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240  # only against hanging
    while not (out.exists() and json.loads(out.read_text())["mutants"]):
        assert time.monotonic() < deadline and process.poll() is None, process.stderr
        time.sleep(0.05)
    runs = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "not played; the same command with --resume plays them" in stderr
    summary = json.loads(out.read_text())
    played = {m["id"] for m in summary["mutants"]}
    assert played and set(summary["unplayed"]) == set(ids) - played
    assert sum(summary["modules"][PRIORITY][k] for k in ("killed", "survived")) == len(played)
    _, alive = psutil.wait_procs(runs, timeout=30)
    assert not alive, f"still running after the stop: {alive}"
    report = tmp_path / "report"
    subprocess.run([sys.executable, "-m", "gearspec", "run", "--target", "inproc", "--select",
                    "client/echo/*", "--mutation", str(out), "--json", str(tmp_path / "r.json"),
                    "--report", str(report)], capture_output=True, timeout=120, cwd=ROOT,
                   check=True)
    assert f"<b>{len(summary['unplayed'])} mutants not played</b>" in \
        (report / "index.html").read_text()
    resumed = mutate(*args, "--resume")
    assert f"resumed: {len(played)} of 4 mutants played before" in resumed.stdout
    final = json.loads(out.read_text())
    assert final["unplayed"] == [] and {m["id"] for m in final["mutants"]} == set(ids)
    assert final["modules"][PRIORITY]["mutants"] == 4
    # Another --select is another measurement: resuming it is refused in one line.
    other = mutate(*args[:-4], "--select", "client/echo/*", "--json", str(out), "--resume")
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert "played other cases" in other.stderr
