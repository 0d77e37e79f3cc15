"""Docker targets: images built here without a registry, run on the host's
network bound to 127.0.0.1, killed from outside, and nothing left behind."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.containers import OWNER_LABEL, DockerTarget, ensure_engine, parse_docker
from conformance.durability import QUEUES
from conformance.loader import load_catalog, load_file
from conformance.runner import RunOptions, run
from conformance.specs import parse_target
from conformance.targets import TargetError
from reference_server.protocol import Decoder, Packet, PacketType, encode
from results import RunResult, Verdict
from tests.conftest import require_gearmand
from tests.test_queues import require_service

ROOT = Path(__file__).resolve().parent.parent
GEARMAND_IMAGE = "gearspec/gearmand:1.1.20"


@pytest.fixture(scope="session")
def engine() -> Any:
    try:
        return ensure_engine()
    except TargetError as error:
        pytest.skip(f"no Docker engine here: {error} (apt-get install docker.io; as root "
                    "the tests start dockerd --iptables=false --bridge=none themselves)")


def built_image(kind: str) -> str:
    """``gearspec docker build KIND``, once per test run however many processes ask: a
    rebuild removes the image the tag named before, which a container of another
    process may still be running from."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    marker = Path(tempfile.gettempdir()) / f"gearspec-image-{kind}-{run_id}"
    with open(Path(tempfile.gettempdir()) / "gearspec-image-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            done = subprocess.run([sys.executable, "-m", "gearspec", "docker", "build", kind],
                                  capture_output=True, text=True, timeout=300, cwd=ROOT)
            assert done.returncode == 0, done.stderr
            marker.write_text(done.stdout.split()[-1])
        return marker.read_text()


@pytest.fixture(scope="session")
def gearmand_image(engine: Any) -> Iterator[str]:
    require_gearmand()
    image = built_image("gearmand")
    assert image == GEARMAND_IMAGE
    yield image


def ours(engine: Any) -> list[Any]:
    """Containers this test process started and has not removed."""
    return engine.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={os.getpid()}"})


def test_catalog_against_the_image_matches_local_gearmand(engine: Any, gearmand_image: str
                                                          ) -> None:
    catalog = [s for s in load_catalog() if s.mode == "server"]
    result = asyncio.run(run(catalog, [(f"docker:{gearmand_image}", []), ("gearmand", [])],
                             RunOptions()))
    docker_side = {r.scenario: r.verdict for r in result.results if r.target.startswith("docker")}
    local = {r.scenario: r.verdict for r in result.results if r.target == "gearmand"}
    assert len(docker_side) == len(catalog)
    differ = {case: (docker_side[case], local[case]) for case in local
              if docker_side[case] != local[case]}
    assert differ == {}
    assert result.unexpected == []  # judged by gearmand's baseline, through the image label
    assert ours(engine) == []


KILLED = """\
topic: killed
scenarios:
  - case: killed-while-waiting
    title: the container is killed from outside during this case
    level: MUST
    source: test
    requirement: nothing
    exclusive: true
    steps:
      - c send ECHO_REQ: {data: before}
      - c expect ECHO_RES: {data: before}
      - c expect-silence: 5
  - case: after
    title: the next case meets a restarted container
    level: MUST
    source: test
    requirement: nothing
    exclusive: true
    steps:
      - c send ECHO_REQ: {data: after}
      - c expect ECHO_RES: {data: after}
"""


def test_a_container_killed_from_outside(engine: Any, gearmand_image: str,
                                         tmp_path: Path) -> None:
    path = tmp_path / "killed.yaml"
    path.write_text(KILLED)
    scenarios = load_file(path, tmp_path)
    killed: list[str] = []

    def kill_when_running() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            for container in ours(engine):
                if container.status == "running":
                    time.sleep(1.0)  # the first case is in its silence by now
                    container.kill()
                    killed.append(container.id)
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    result = asyncio.run(run(scenarios, [(f"docker:{gearmand_image}", [])],
                             RunOptions(jobs=1), check_baselines=False))
    killer.join()
    assert killed
    first, second = result.results
    assert first.verdict is Verdict.ERROR and "the server died" in first.message, first
    assert second.verdict is Verdict.PASS, second.message
    assert ours(engine) == []
    assert engine.images.list(filters={"dangling": True}) == []


def test_target_lifecycle_and_bad_image(engine: Any, gearmand_image: str) -> None:
    target = parse_docker(f"docker:{gearmand_image}", ["--threads", "1", "--verbose", "INFO"])
    assert isinstance(target, DockerTarget)
    target.start()
    try:
        assert {"restart", "persistence", "gearmand-options", "http"} <= target.capabilities
        assert target.version() == "1.1.20+ds"
        target.kill()
        assert not target.alive(settle=5)
        target.restart()
        assert target.alive()
        assert f"127.0.0.1:{target.port}" in target.log_text()  # both containers' logs
    finally:
        target.stop()
    assert ours(engine) == []
    with pytest.raises(TargetError, match="no image 'gearspec/nosuch:0'"):
        parse_docker("docker:gearspec/nosuch:0", []).start()
    with pytest.raises(TargetError, match="say which image"):
        parse_docker("docker:", [])


def test_matrix_report_agrees_with_single_target_runs(engine: Any, gearmand_image: str,
                                                      tmp_path: Path) -> None:
    targets = ["ref", "gearmand", "perl", "gear", f"docker:{gearmand_image}"]
    select = ["--select", "submit/basic/*", "--select", "client/echo/*"]
    args = [a for t in targets for a in ("--target", t)]
    done = subprocess.run([sys.executable, "-m", "gearspec", "matrix", *args, *select,
                           "--json", str(tmp_path / "matrix.json"),
                           "--report", str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    matrix = RunResult.from_json((tmp_path / "matrix.json").read_text())
    assert [t.name for t in matrix.targets] == targets
    for target in targets:
        single = tmp_path / f"single-{abs(hash(target))}.json"
        alone = subprocess.run([sys.executable, "-m", "gearspec", "run", "--target", target,
                                *select, "--json", str(single)],
                               capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert alone.returncode == 0, alone.stdout + alone.stderr
        one = RunResult.from_json(single.read_text())
        assert {(r.scenario, r.verdict) for r in one.results} == \
            {(r.scenario, r.verdict) for r in matrix.results if r.target == target}, target
        assert one.totals()[target] == matrix.totals()[target]
    index = (tmp_path / "html" / "index.html").read_text()
    assert all(json.dumps(t)[1:-1] in index for t in targets)
    assert ours(engine) == []


@pytest.mark.parametrize("kind", ["perl", "ref"])
def test_other_images_answer_like_their_local_servers(engine: Any, kind: str,
                                                      tmp_path: Path) -> None:
    image = built_image(kind)
    # For ref, the persistence cases too: the SQLite and memcached queues in the image.
    areas = ("submit/basic/", "client/echo/", *(("persistence/",) if kind == "ref" else ()))
    chosen = [s for s in load_catalog() if s.id.startswith(areas)]
    result = asyncio.run(run(chosen, [(f"docker:{image}", []), (kind, [])], RunOptions(),
                             catalog_ids={s.id for s in load_catalog()}))
    verdicts: dict[str, dict[str, Verdict]] = {}
    for r in result.results:
        verdicts.setdefault(r.target, {})[r.scenario] = r.verdict
    assert verdicts[f"docker:{image}"] == verdicts[kind]
    assert result.unexpected == []
    assert ours(engine) == []
    if kind == "ref":  # over TLS too: the certificates' folder is mounted into the container
        tls_cases = [s for s in load_catalog() if s.id.startswith("transport/")]
        secure = asyncio.run(run(tls_cases, [(f"docker:{image}", [])], RunOptions(tls=True)))
        assert {r.verdict for r in secure.results} == {Verdict.PASS}, secure.results
        assert ours(engine) == []


@pytest.mark.parametrize("queue", ["postgres", "mysql", "redis"])
def test_the_ref_image_carries_every_queue_driver(engine: Any, queue: str) -> None:
    """The ref image holds the database drivers (psycopg with its bundled libpq,
    PyMySQL, redis-py), so ``-q postgres|mysql|redis`` works inside it."""
    require_service(queue)
    table = f"gearspec_image_{secrets.token_hex(4)}"
    options = [o.replace("{table}", table) for o in QUEUES[queue]]
    with parse_docker(f"docker:{built_image('ref')}", options) as target:
        with socket.create_connection(target.address, timeout=10) as sock:
            sock.sendall(encode(PacketType.SUBMIT_JOB_BG, b"image_queue", b"u", b"x"))
            decoder = Decoder()
            while (reply := decoder.next_event()) is None:
                decoder.feed(sock.recv(4096))
        assert isinstance(reply, Packet) and reply.type == PacketType.JOB_CREATED, reply
    assert ours(engine) == []


@pytest.mark.parametrize(("judge", "status"), [("ref", 0), ("gearmand", 1)])
def test_the_harness_image_runs_the_catalog_like_the_host(engine: Any, tmp_path: Path,
                                                          judge: str, status: int) -> None:
    """``gearspec docker build gearspec``: the harness in a container, on the host's
    network, against a server outside it: the host's verdicts and exit status.  Judged
    by ref's baselines the run is clean (0); by gearmand's, ref's deviations from
    gearmand are unexpected (1), and the container must say so too."""
    image = built_image("gearspec")
    with parse_target("ref") as server:
        host, port = server.address
        args = ["run", "--target", f"tcp://{host}:{port}", "--judge-by", judge]
        here = subprocess.run([sys.executable, "-m", "gearspec", *args,
                               "--json", str(tmp_path / "host.json")],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        inside = engine.containers.run(image, [*args, "--json", str(tmp_path / "image.json")],
                                       network_mode="host", detach=True,
                                       labels={OWNER_LABEL: str(os.getpid())},
                                       volumes={str(tmp_path): {"bind": str(tmp_path),
                                                                "mode": "rw"}})
        try:
            code = inside.wait(timeout=300)["StatusCode"]
            output = inside.logs().decode()
        finally:
            inside.remove(force=True)
    assert here.returncode == status, here.stdout[-2000:] + here.stderr
    assert code == status, output[-3000:]
    verdicts = [{(r.scenario, r.verdict, r.expected) for r in
                 RunResult.from_json((tmp_path / name).read_text()).results}
                for name in ("host.json", "image.json")]
    assert verdicts[0] == verdicts[1]
    assert len(verdicts[0]) == len([s for s in load_catalog() if s.mode == "server"])
    assert ours(engine) == []
