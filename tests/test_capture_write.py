"""Conformance transcripts written as pcaps: the TCP framing, the full bytes from the
engine, and `gearspec run --pcap-dir` checked with Wireshark's own dissector."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from scapy.layers.inet import TCP
from scapy.packet import Packet as ScapyPacket
from scapy.utils import rdpcap

from conformance.capture.layer import Gearman
from conformance.capture.pcapwrite import MAX_SEGMENT, frames, write_pcap
from conformance.engine import run_scenario
from conformance.loader import load_catalog
from conformance.runner import pcap_path, select
from conformance.targets import Target
from conformance.transcript import Chunk
from reference_server.protocol import Magic, Packet, PacketType, decode_all, encode
from tests.conftest import require_program

ROOT = Path(__file__).resolve().parent.parent
SERVER = 4730
START = 1_700_000_000.0
# Cases for the real run: one with a 1 MiB packet (split into many segments), text
# lines, and connections closed by the client.  Wireshark 4.0's Gearman dissector calls
# a packet with an empty argument (ECHO_REQ of nothing, WORK_COMPLETE without data)
# malformed although it is not, so none of these sends one.
REAL_CASES = ["client/echo/echo", "client/echo/echo-1mib", "submit/basic/normal-foreground",
              "client/disconnect/abandoned-job-flagged-in-show-jobs",
              "worker/lost/disconnect-requeues"]


def chunk(t: float, direction: str, kind: str, data: bytes = b"", stream: int = 0) -> Chunk:
    return Chunk(t, stream, "c", direction, kind, data)


def check_tcp(packets: list[ScapyPacket]) -> dict[bool, bytes]:
    """Assert continuous sequence and acknowledgement numbers; return the bytes each
    way (True: towards the server)."""
    next_seq: dict[bool, int] = {}
    carried: dict[bool, bytes] = {True: b"", False: b""}
    for frame in packets:
        tcp = frame[TCP]
        out = tcp.dport == SERVER
        flags = str(tcp.flags)
        payload = bytes(tcp.payload)
        assert len(payload) <= MAX_SEGMENT
        if "S" in flags:
            next_seq[out] = tcp.seq + 1
        else:
            assert tcp.seq == next_seq[out], f"{flags} segment out of sequence"
            next_seq[out] = tcp.seq + len(payload) + ("F" in flags)
        if "A" in flags:
            assert tcp.ack == next_seq[not out]
        carried[out] += payload
    return carried


def test_handshake_data_and_closes() -> None:
    big = bytes(range(256)) * 600  # 153,600 bytes: three segments
    chunks = [chunk(0.0, "send", "open"), chunk(0.001, "send", "data", b"ping"),
              chunk(0.002, "recv", "data", big), chunk(0.003, "recv", "eof"),
              chunk(0.004, "send", "eof")]
    packets = list(frames(chunks, started=START))
    assert [str(p[TCP].flags) for p in packets[:3]] == ["S", "SA", "A"]
    assert [str(p[TCP].flags) for p in packets[-4:]] == ["FA", "A", "FA", "A"]
    assert packets[-4][TCP].sport == SERVER  # the server closed first
    assert check_tcp(packets) == {True: b"ping", False: big}
    sizes = [len(p[TCP].payload) for p in packets if p[TCP].sport == SERVER and p[TCP].payload]
    assert sizes == [MAX_SEGMENT, MAX_SEGMENT, len(big) - 2 * MAX_SEGMENT]
    assert float(packets[0].time) == START
    assert float(packets[-1].time) == START + 0.004


def test_connections_left_open_are_closed_and_resets_end_them() -> None:
    chunks = [chunk(0.0, "send", "open"), chunk(0.0, "send", "open", stream=1),
              chunk(0.1, "recv", "reset", stream=1), chunk(0.2, "send", "data", b"x", stream=1),
              chunk(0.3, "send", "data", b"y")]
    packets = list(frames(chunks))
    ports = {p[TCP].sport for p in packets} | {p[TCP].dport for p in packets}
    assert ports == {SERVER, 49152, 49153}
    second = [p for p in packets if 49153 in (p[TCP].sport, p[TCP].dport)]
    assert str(second[-1][TCP].flags) == "RA"  # and nothing after the reset
    first = [p for p in packets if 49152 in (p[TCP].sport, p[TCP].dport)]
    assert [str(p[TCP].flags) for p in first[-4:]] == ["FA", "A", "FA", "A"]
    assert check_tcp(first) == {True: b"y", False: b""}


def test_client_ports_avoid_the_server_port() -> None:
    packets = list(frames([chunk(0.0, "send", "open")], server_port=49152))
    assert packets[0][TCP].sport == 49153 and packets[0][TCP].dport == 49152


def test_written_file_dissects_as_gearman(tmp_path: Path) -> None:
    submit = encode(PacketType.SUBMIT_JOB, b"f", b"u", b"x\0y")
    created = encode(PacketType.JOB_CREATED, b"H:1", magic=Magic.RES)
    chunks = [chunk(0.0, "send", "open"), chunk(0.1, "send", "data", submit),
              chunk(0.2, "recv", "data", created)]
    path = tmp_path / "a" / "case.pcap"
    count = write_pcap(path, chunks, started=START)
    packets = list(rdpcap(str(path)))
    assert len(packets) == count
    layers = [p[Gearman] for p in packets if Gearman in p]
    assert [g.mysummary() for g in layers] == ["SUBMIT_JOB function=f unique=u data=x\\x00y",
                                               "JOB_CREATED handle=H:1"]
    assert not list(tmp_path.glob("a/*.partial"))


def by_stream(chunks: list[Chunk], direction: str) -> dict[int, bytes]:
    streams: dict[int, bytes] = {}
    for item in chunks:
        if item.kind == "data" and item.direction == direction:
            streams[item.stream] = streams.get(item.stream, b"") + item.data
    return streams


async def test_engine_records_every_byte(start_target: Callable[..., Target]) -> None:
    target = start_target("ref")
    scenario, = select(load_catalog(), ["client/echo/echo-1mib"], [])
    plain = await run_scenario(scenario, target.network(), tag="p_")
    assert plain.raw is None
    outcome = await run_scenario(scenario, target.network(), tag="r_", record_raw=True)
    assert outcome.verdict.value == "PASS" and outcome.raw is not None
    assert [c.kind for c in outcome.raw[:1]] == ["open"]
    sent, received = by_stream(outcome.raw, "send"), by_stream(outcome.raw, "recv")
    assert list(sent) == list(received) == [0]
    echo = encode(PacketType.ECHO_REQ, b"x" * 1048576)
    events = decode_all(sent[0])
    assert sent[0].startswith(echo)
    assert events[0] == Packet(PacketType.ECHO_REQ, (b"x" * 1048576,))
    # The harness's own sync ECHO is real traffic and stays in.
    assert any(isinstance(e, Packet) and e.args[0].startswith(b"gearspec-sync-")
               for e in events[1:])
    answers = decode_all(received[0])
    assert [e.type for e in answers if isinstance(e, Packet)] == [PacketType.ECHO_RES] * 2
    assert len(answers[0].args[0]) == 1048576  # type: ignore[union-attr]
    # The harness hangs up at the end (whether the server's FIN is seen first is a race).
    assert ("send", "eof") in [(c.direction, c.kind) for c in outcome.raw]


def test_pcap_path_is_safe() -> None:
    assert pcap_path("out", "ref", "client/echo/echo") == Path("out/ref/client__echo__echo.pcap")
    assert pcap_path("out", "tcp://10.0.0.5:4730", "a/b").parent == Path("out/tcp___10.0.0.5_4730")


def tshark(path: Path, *options: str) -> list[str]:
    done = subprocess.run(["tshark", "-r", str(path), "-d", f"tcp.port=={SERVER},gearman",
                           *options], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.strip()]


_NAME = re.compile(r"^(?:\[\w+ magic\] )?([A-Z_]+)")


def expected_packets(transcript: list[dict[str, object]]) -> list[tuple[bool, str]]:
    """(towards the server, type name) of every packet entry, in transcript order."""
    packets = []
    for entry in transcript:
        assert entry["kind"] != "raw", "pick cases whose every write is whole packets or lines"
        if entry["kind"] == "packet":
            match = _NAME.match(str(entry["summary"]))
            assert match is not None
            packets.append((entry["direction"] == "send", match.group(1)))
    return packets


def test_run_writes_pcaps_wireshark_reads(tmp_path: Path) -> None:
    require_program("tshark", "tshark")
    out = tmp_path / "pcaps"
    command = [sys.executable, "-m", "gearspec", "run", "--target", "ref", "--pcap-dir", str(out),
               "--json", str(tmp_path / "run.json"), "--jobs", "4"]
    for case in REAL_CASES:
        command += ["--select", case]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((tmp_path / "run.json").read_text())
    assert sorted(r["scenario"] for r in run["results"]) == sorted(REAL_CASES)
    for result in run["results"]:  # each result says where its capture is
        assert result["capture"].endswith(".pcap") and Path(result["capture"]).is_file()
    assert len(list(out.rglob("*.pcap"))) == len(REAL_CASES)
    for result in run["results"]:
        path = pcap_path(out, "ref", result["scenario"])
        wanted = expected_packets(result["transcript"])
        seen: list[tuple[bool, str]] = []
        for line in tshark(path, "-Y", "gearman.pkt_type", "-T", "fields",
                           "-e", "tcp.dstport", "-e", "gearman.pkt_type"):
            port, types = line.split("\t")
            seen += [(int(port) == SERVER, PacketType(int(t)).name) for t in types.split(",")]
        assert seen == wanted, result["scenario"]
        assert tshark(path, "-Y", "tcp.analysis.flags || _ws.malformed") == [], path
    sizes = tshark(pcap_path(out, "ref", "client/echo/echo-1mib"), "-Y", "tcp.len > 0",
                   "-T", "fields", "-e", "tcp.len")
    assert max(int(s) for s in sizes) <= MAX_SEGMENT and len(sizes) > 2 * (1048576 // 65536)
