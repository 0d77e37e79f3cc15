"""Run a GitHub Actions workflow of this repository here, step by step, so that the
workflow is tested and not just written (tests/test_workflow.py).

    .venv/bin/python .ci/workflow.py [--workflow .github/workflows/gearspec.yml]
                                     [--workspace DIR] [--artifacts DIR] [--parallel N]

What a hosted runner would do, done on this machine:

* jobs in the order their ``needs`` give; a job's matrix expanded (every
  combination) and its instances run at once, as on as many runners;
* ``run:`` steps in ``bash -eo pipefail``, with the step's ``env``;
* ``uses: ./``: this repository's ``action.yml``, its composite steps with their
  inputs (defaults, then ``with``);
* each job instance in a workspace of its own, as on a runner of its own;
  ``actions/checkout`` fills it with links to this checkout's files (so the set-up
  done here, the virtualenv and the peers, is shared); ``actions/upload-artifact``
  and ``actions/download-artifact``: copies into and out of ``--artifacts``;
  ``mikepenz/action-junit-report``: the JUnit file read and summed up;
* ``if:`` of ``always()`` runs after a failure; no ``if:`` runs only after success.

Anything else (another action, another expression, ``include:`` in a matrix) stops
the run with one line naming it: a workflow step this script cannot play is not
tested, so it is refused rather than skipped.  Exit status 0 when every job
succeeded, 1 when one failed, 2 when the workflow could not be played.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from junitparser import JUnitXml

ROOT = Path(__file__).resolve().parent.parent
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")
#: Besides the tracked files, what the checkout links in: the set-up ``make setup``
#: did here (a hosted runner would make them again).
SET_UP = (".venv", ".clients")


class WorkflowError(Exception):
    """The workflow asks for something this script cannot play; one line."""


@dataclass
class Context:
    """What ``${{ ... }}`` can name, and where a job runs."""

    workspace: Path
    artifacts: Path
    matrix: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def expand(self, text: Any) -> str:
        def value(match: re.Match[str]) -> str:
            words = match.group(1).split(".")
            known = {"matrix": self.matrix, "inputs": self.inputs,
                     # uses: ./ is the action checked out in the workspace
                     "github": {"action_path": str(self.workspace),
                                "workspace": str(self.workspace)}}
            if len(words) == 2 and words[0] in known and words[1] in known[words[0]]:
                return str(known[words[0]][words[1]])
            raise WorkflowError(f"expression ${{{{ {match.group(1)} }}}} is not one "
                                f"this script plays (matrix.X, inputs.X, github.action_path)")
        return EXPRESSION.sub(value, str(text))


def bash(script: str, env: dict[str, str], ctx: Context) -> bool:
    """A ``run:`` step; its output goes into the job's log."""
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=ctx.workspace,
                          env={**os.environ, **env}, capture_output=True, text=True)
    ctx.log.append((done.stdout + done.stderr).rstrip())
    return done.returncode == 0


def checkout(ctx: Context, _with: dict[str, str]) -> bool:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split("\n")
    for name in sorted({path.split("/")[0] for path in tracked if path} | set(SET_UP)):
        if (ROOT / name).exists() and not (ctx.workspace / name).exists():
            (ctx.workspace / name).symlink_to(ROOT / name)
    return True


def upload_artifact(ctx: Context, given: dict[str, str]) -> bool:
    name, source = given.get("name", "artifact"), ctx.workspace / given["path"]
    if not source.exists():
        ctx.log.append(f"upload-artifact: no files were found at {given['path']}")
        return True  # as the action's default if-no-files-found: warn
    target = ctx.artifacts / name
    if target.exists():
        raise WorkflowError(f"artifact {name!r} uploaded twice")
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.mkdir(parents=True)
        shutil.copy2(source, target / source.name)
    return True


def download_artifact(ctx: Context, given: dict[str, str]) -> bool:
    names = sorted(p.name for p in ctx.artifacts.glob(given.get("pattern", given.get("name",
                                                                                   "*"))))
    into = ctx.workspace / given.get("path", ".")
    for name in names:
        shutil.copytree(ctx.artifacts / name,
                        into if given.get("merge-multiple", "").lower() == "true" else into / name,
                        dirs_exist_ok=True)
    ctx.log.append(f"download-artifact: {len(names)} artifact(s) into {given.get('path')}")
    return bool(names)


def junit_report(ctx: Context, given: dict[str, str]) -> bool:
    paths = glob.glob(str(ctx.workspace / given["report_paths"]))
    if not paths:
        ctx.log.append(f"junit report: no file at {given['report_paths']}")
        return False
    for path in paths:
        xml = JUnitXml.fromfile(path)
        ctx.log.append(f"junit report {Path(path).name}: {xml.tests} tests, {xml.failures} "
                       f"failures, {xml.errors} errors, {xml.skipped} skipped")
    return True


#: Actions played here, by name without the version.
ACTIONS = {"actions/checkout": checkout, "actions/upload-artifact": upload_artifact,
           "actions/download-artifact": download_artifact,
           "mikepenz/action-junit-report": junit_report}


def local_action(ctx: Context, given: dict[str, str]) -> bool:
    """``uses: ./``: the repository's composite action with its inputs."""
    action = yaml.safe_load((ctx.workspace / "action.yml").read_text())
    if action["runs"].get("using") != "composite":
        raise WorkflowError("action.yml is not a composite action")
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    unknown = set(given) - set(inputs)
    if unknown:
        raise WorkflowError(f"action.yml has no input {', '.join(sorted(unknown))}")
    inner = Context(ctx.workspace, ctx.artifacts, ctx.matrix, {**inputs, **given}, ctx.log)
    return run_steps(action["runs"]["steps"], inner)


def run_step(step: dict[str, Any], ctx: Context) -> bool:
    given = {k: ctx.expand(v) for k, v in (step.get("with") or {}).items()}
    if "run" in step:
        env = {k: ctx.expand(v) for k, v in (step.get("env") or {}).items()}
        return bash(ctx.expand(step["run"]), env, ctx)
    uses = step.get("uses", "")
    if uses == "./":
        return local_action(ctx, given)
    player = ACTIONS.get(uses.split("@")[0])
    if player is None:
        raise WorkflowError(f"step uses {uses!r}, which this script does not play")
    return player(ctx, given)


def run_steps(steps: list[dict[str, Any]], ctx: Context) -> bool:
    ok = True
    for number, step in enumerate(steps, 1):
        condition = step.get("if")
        if condition not in (None, "always()"):
            raise WorkflowError(f"if: {condition!r} is not one this script plays")
        if not ok and condition is None:
            continue
        name = step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0]
        passed = run_step(step, ctx)
        ctx.log.append(f"  step {number} {'ok' if passed else 'FAILED'}: {name}")
        ok = ok and passed
    return ok


def matrix_of(job: dict[str, Any], name: str) -> list[dict[str, Any]]:
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    if set(matrix) & {"include", "exclude"}:
        raise WorkflowError(f"job {name}: matrix include/exclude is not played here")
    keys = list(matrix)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(matrix[k] for k in keys))]


def job_order(jobs: dict[str, Any]) -> list[str]:
    order: list[str] = []
    while len(order) < len(jobs):
        ready = [n for n, job in jobs.items() if n not in order
                 and all(need in order for need in _needs(job))]
        if not ready:
            raise WorkflowError(f"jobs {sorted(set(jobs) - set(order))} need each other")
        order += ready
    return order


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def play(workflow: Path, workspace: Path, artifacts: Path, parallel: int) -> bool:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    results: dict[str, bool] = {}
    for name in job_order(jobs):
        job = jobs[name]
        if job.get("if") not in (None, "always()"):
            raise WorkflowError(f"job {name}: if: {job['if']!r} is not played here")
        if not all(results[n] for n in _needs(job)) and job.get("if") != "always()":
            print(f"job {name}: skipped (a job it needs failed)")
            results[name] = False
            continue
        instances = matrix_of(job, name)
        contexts = [Context(workspace / f"{name}-{i}", artifacts, matrix)
                    for i, matrix in enumerate(instances, 1)]
        for ctx in contexts:
            ctx.workspace.mkdir(parents=True)
        with ThreadPoolExecutor(max_workers=parallel or len(contexts)) as pool:
            passed = list(pool.map(run_steps, [job["steps"]] * len(contexts), contexts))
        for ctx, ok in zip(contexts, passed, strict=True):
            label = f"{name} {ctx.matrix}" if ctx.matrix else name
            print(f"job {label}: {'succeeded' if ok else 'FAILED'}")
            print("\n".join(line for line in ctx.log if line))
        results[name] = all(passed)
    return all(results.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=".ci/workflow.py", description=__doc__.split("\n")[0])
    parser.add_argument("--workflow", type=Path,
                        default=ROOT / ".github" / "workflows" / "gearspec.yml")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="a new folder for the jobs' workspaces, WORKSPACE/JOB-N "
                             "(default: a new temporary folder)")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="where uploaded artifacts go (default: WORKSPACE/artifacts)")
    parser.add_argument("--parallel", type=int, default=0,
                        help="matrix instances at once (default: all, as on many runners)")
    args = parser.parse_args(argv)
    workspace = (args.workspace or Path(tempfile.mkdtemp(prefix="gearspec-workflow-"))).resolve()
    artifacts = (args.artifacts or workspace / "artifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        ok = play(args.workflow, workspace, artifacts, args.parallel)
    except (WorkflowError, OSError, KeyError, yaml.YAMLError) as error:
        print(f".ci/workflow.py: error: {error}", file=sys.stderr)
        return 2
    print(f"workspace: {workspace}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
