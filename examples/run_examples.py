"""Run every example against a target and check what it prints.

    python examples/run_examples.py [--target ref|gearmand|tcp://HOST:PORT]

Starts the target (the reference server by default) on a free 127.0.0.1
port, runs the reverse worker and client pair and the JSON job, and exits 1
if any of them printed something else than expected.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from conformance.specs import parse_target
from conformance.targets import TargetError

HERE = Path(__file__).resolve().parent


def _run(script: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{script} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def run_all(server: str) -> list[tuple[str, bool, str]]:
    results = []
    worker = subprocess.Popen([sys.executable, str(HERE / "reverse_worker.py"), "--server",
                               server, "--jobs", "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        worker.stdout.readline()  # "ready"
        out = _run("reverse_client.py", "--server", server, "hello", "gearman")
        results.append(("reverse_client + reverse_worker",
                        out == "hello -> olleh\ngearman -> namraeg\n", out))
        worker.wait(30)
        results.append(("reverse_worker exits after its jobs", worker.returncode == 0,
                        f"exit status {worker.returncode}"))
    finally:
        worker.kill()
    out = _run("reverse_client.py", "--server", server, "--background", "later")
    results.append(("reverse_client --background", out.startswith("later -> queued as "), out))
    out = _run("json_job.py", "--server", server)
    expected = ["job 0: {'id': 0, 'words': 4, 'longest': 'quick'} (progress [(1, 4), (2, 4), "
                "(3, 4), (4, 4)])",
                "job 1: {'id': 1, 'words': 2, 'longest': 'jumps'} (progress [(1, 2), (2, 2)])",
                "job 2: {'id': 2, 'words': 3, 'longest': 'lazy'} (progress [(1, 3), (2, 3), "
                "(3, 3)])"]
    results.append(("json_job", out.splitlines() == expected, out))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ref")
    args = parser.parse_args()
    try:
        target = parse_target(args.target)
        target.start()
    except TargetError as error:
        print(f"run_examples: error: {error}", file=sys.stderr)
        return 2
    try:
        host, port = target.address
        results = run_all(f"{host}:{port}")
    finally:
        target.stop()
    for name, ok, output in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
        if not ok:
            print("      " + output.replace("\n", "\n      "))
    passed = sum(ok for _, ok, _ in results)
    print(f"{passed}/{len(results)} examples passed against {args.target}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
