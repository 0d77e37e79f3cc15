"""Reading captures: real clients' traffic decoded as tshark's Gearman dissector
does, and the reassembly cases a capture throws at a reader."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, PcapWriter

from conformance.capture.reader import CaptureError, read
from reference_server.protocol import PACKETS, Magic, Packet, PacketType, TextLine, encode

PCAPS = Path(__file__).parent / "data" / "pcaps"
ALL = sorted(PCAPS.glob("*.pcap"))
ROOT = Path(__file__).resolve().parent.parent
T = PacketType


def port_of(path: Path) -> int:
    """The server port of a fixture: the Perl server and geard ran beside gearmand."""
    return 4731 if "perlserver" in path.name else 4732 if "geard" in path.name else 4730


Seen = dict[tuple[int, str], list[tuple[str, ...]]]


def ours(path: Path) -> Seen:
    seen: Seen = defaultdict(list)
    for c in read(path, [port_of(path)]):
        key = (_index(c.conn), c.direction)
        if isinstance(c.event, Packet):
            fields = dict(zip(PACKETS[c.event.type].args, c.event.args))
            seen[key].append((str(int(c.event.type)),
                              fields.get("handle", b"").decode(errors="replace"),
                              fields.get("function", b"").decode(errors="replace")))
        elif isinstance(c.event, TextLine) and c.direction == "send":
            seen[key].append(("text", c.event.line.decode(errors="replace").rstrip("\r")))
    return seen


def _index(name: str) -> int:
    index = 0
    for letter in name:
        index = index * 26 + ord(letter) - 64
    return index - 1


#: Admin commands of the Perl server that tshark's dissector does not know as
#: Gearman (it knows gearmand's): it shows nothing for those frames.
NOT_IN_TSHARK = {("text", "clients"), ("text", "jobs")}


def tshark(path: Path) -> Seen:
    """What tshark's dissector shows.  It does not dissect admin replies (only the
    command lines), so those are compared on the sending side alone."""
    port = port_of(path)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", f"tcp.port=={port},gearman", "-Y", "gearman",
         "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
         "-e", "tcp.stream", "-e", "tcp.dstport", "-e", "gearman.pkt_type",
         "-e", "gearman.job.handle", "-e", "gearman.func.name", "-e", "gearman.mgr_cmd"],
        capture_output=True, text=True, check=True).stdout
    seen: Seen = defaultdict(list)
    for row in out.splitlines():
        stream, dport, types, handles, functions, commands = (row.split("\t") + [""] * 6)[:6]
        key = (int(stream), "send" if int(dport) == port else "recv")
        handle_list, function_list = handles.split("|"), functions.split("|")
        for type_ in filter(None, types.split("|")):
            # tshark lists each field once per packet that has it, in order.
            handle = handle_list.pop(0) if _has(int(type_), "handle") and handle_list else ""
            function = (function_list.pop(0) if _has(int(type_), "function") and function_list
                        else "")
            seen[key].append((type_, handle, function))
        for command in filter(None, commands.split("|")):
            seen[key].append(("text", command))
    return seen


def _has(type_number: int, name: str) -> bool:
    try:
        return name in PACKETS[PacketType(type_number)].args
    except ValueError:
        return False


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed (apt-get install tshark; "
                                         "make test installs it)")


@needs_tshark
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_same_packets_as_tshark(path: Path) -> None:
    mine, theirs = ours(path), tshark(path)
    assert sum(len(v) for v in mine.values()) > 0
    mine = {k: kept for k, v in mine.items() if (kept := [e for e in v if e not in NOT_IN_TSHARK])}
    assert mine == theirs


def test_fixtures_are_all_there() -> None:
    # Real libgearman, Perl and PHP clients with gearmand, the Perl server and geard.
    assert len(ALL) >= 37


# ---------------------------------------------------------------- synthetic captures

CLIENT, SERVER = ("127.0.0.1", 40000), ("127.0.0.1", 4730)


class Stream:
    """Frames of one made-up connection, with correct sequence numbers."""

    def __init__(self, client_port: int = 40000, isn: tuple[int, int] = (1000, 5000)) -> None:
        self.port = client_port
        self.seq = {"send": isn[0], "recv": isn[1]}
        self.frames: list[Ether] = []

    def segment(self, direction: str, data: bytes = b"", flags: str = "PA",
                seq: int | None = None) -> Ether:
        src, dst = ("127.0.0.1", "127.0.0.1")
        sport, dport = (self.port, 4730) if direction == "send" else (4730, self.port)
        frame = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags,
                                                     seq=self.seq[direction] if seq is None
                                                     else seq)
        if data:
            frame = frame / data
        return frame

    def handshake(self) -> None:
        self.frames.append(self.segment("send", flags="S", seq=self.seq["send"] - 1))
        self.frames.append(self.segment("recv", flags="SA", seq=self.seq["recv"] - 1))

    def send(self, direction: str, data: bytes) -> Ether:
        frame = self.segment(direction, data)
        self.seq[direction] = (self.seq[direction] + len(data)) & 0xFFFFFFFF
        return frame

    def close(self) -> None:
        for direction in ("send", "recv"):
            self.frames.append(self.segment(direction, flags="FA"))


def write(tmp_path: Path, frames: list[Ether], ng: bool = False) -> Path:
    path = tmp_path / ("made.pcapng" if ng else "made.pcap")
    writer = PcapNgWriter(str(path)) if ng else PcapWriter(str(path))
    for i, frame in enumerate(frames):
        frame.time = 1_700_000_000 + i / 1000
        writer.write(frame)
    writer.close()
    return path


def events(path: Path) -> list[tuple[str, str, str]]:
    return [(c.conn, c.direction, repr(c.event) if c.event is not None else c.note)
            for c in read(path)]


SUBMIT = encode(T.SUBMIT_JOB, b"reverse", b"u1", b"hello")


def job_bytes() -> tuple[bytes, bytes]:
    created = encode(T.JOB_CREATED, b"H:x:1", magic=Magic.RES)
    complete = encode(T.WORK_COMPLETE, b"H:x:1", b"olleh", magic=Magic.RES)
    return SUBMIT + encode(T.ECHO_REQ, b"e") + b"status\n", created + complete


def expected() -> list[tuple[str, str, str]]:
    return [("A", "event", "open 127.0.0.1:40000 > 127.0.0.1:4730"),
            ("A", "send", "<SUBMIT_JOB(function=b'reverse', unique=b'u1', data=b'hello')>"),
            ("A", "send", "<ECHO_REQ(data=b'e')>"),
            ("A", "send", "<TEXT b'status\\n'>"),
            ("A", "recv", "<RES JOB_CREATED(handle=b'H:x:1')>"),
            ("A", "recv", "<RES WORK_COMPLETE(handle=b'H:x:1', data=b'olleh')>")]


def conversation(cuts: list[int], shuffle: bool = False, repeat: bool = False,
                 isn: tuple[int, int] = (1000, 5000)) -> list[Ether]:
    sent, received = job_bytes()
    stream = Stream(isn=isn)
    stream.handshake()
    pieces = [sent[a:b] for a, b in zip([0, *cuts], [*cuts, len(sent)])]
    segments = [stream.send("send", piece) for piece in pieces]
    if shuffle:
        random.Random(7).shuffle(segments)
    if repeat:
        segments = [s for seg in segments for s in (seg, seg)]
    stream.frames += segments
    stream.frames.append(stream.send("recv", received))
    return stream.frames


def test_all_in_one_segment(tmp_path: Path) -> None:
    assert events(write(tmp_path, conversation([])))[:6] == expected()


@pytest.mark.parametrize("cuts", [[1], [5, 11, 12, 13], list(range(1, 60, 3))])
def test_packets_split_across_segments(tmp_path: Path, cuts: list[int]) -> None:
    assert events(write(tmp_path, conversation(cuts)))[:6] == expected()


def test_retransmissions_and_out_of_order(tmp_path: Path) -> None:
    frames = conversation([7, 20, 33, 50], shuffle=True, repeat=True)
    assert events(write(tmp_path, frames))[:6] == expected()


def test_overlapping_retransmission(tmp_path: Path) -> None:
    sent, received = job_bytes()
    stream = Stream()
    stream.handshake()
    first = stream.segment("send", sent[:30])
    overlap = stream.segment("send", sent[10:], seq=1000 + 10)
    stream.frames += [first, overlap, stream.segment("recv", received)]
    assert events(write(tmp_path, stream.frames))[:6] == expected()


def test_sequence_numbers_wrap(tmp_path: Path) -> None:
    frames = conversation([5, 40], isn=(2**32 - 20, 2**32 - 3))
    assert events(write(tmp_path, frames))[:6] == expected()


def test_pcapng(tmp_path: Path) -> None:
    assert events(write(tmp_path, conversation([9]), ng=True))[:6] == expected()


def test_capture_started_mid_stream(tmp_path: Path) -> None:
    sent, received = job_bytes()
    stream = Stream()  # no handshake: the capture began during a packet
    stream.frames += [stream.send("send", sent[17:]), stream.send("recv", received[3:]),
                      stream.send("recv", encode(T.NOOP, magic=Magic.RES))]
    got = events(write(tmp_path, stream.frames))
    assert got[1:] == [
        ("A", "send", "resynchronised"),
        ("A", "send", "<ECHO_REQ(data=b'e')>"),
        ("A", "send", "<TEXT b'status\\n'>"),
        ("A", "recv", "resynchronised"),
        ("A", "recv", "<RES WORK_COMPLETE(handle=b'H:x:1', data=b'olleh')>"),
        ("A", "recv", "<RES NOOP()>")]


def test_mid_stream_text_line(tmp_path: Path) -> None:
    stream = Stream()
    stream.frames += [stream.send("recv", b"tail of a row\t0\t0\t1\nfunc\t1\t0\t0\n.\n")]
    assert [e[2] for e in events(write(tmp_path, stream.frames))[1:]] == [
        "resynchronised", "<TEXT b'func\\t1\\t0\\t0\\n'>", "<TEXT b'.\\n'>"]


def test_a_lost_segment_is_skipped_and_noted(tmp_path: Path) -> None:
    sent, _ = job_bytes()
    stream = Stream()
    stream.handshake()
    segments = [stream.send("send", piece) for piece in (sent[:10], sent[10:28], sent[28:])]
    stream.frames += [segments[0], segments[2]]  # the middle one never made it
    got = events(write(tmp_path, stream.frames))
    assert got[1:] == [("A", "event", "18 bytes sent were not captured; resynchronising"),
                       ("A", "send", "resynchronised"),
                       ("A", "send", "<ECHO_REQ(data=b'e')>"),
                       ("A", "send", "<TEXT b'status\\n'>")]


def test_several_connections_and_port_reuse(tmp_path: Path) -> None:
    frames = []
    for port in (40001, 40002, 40001):
        stream = Stream(client_port=port)
        stream.handshake()
        stream.frames.append(stream.send("send", encode(T.ECHO_REQ, str(port).encode())))
        stream.close()
        frames += stream.frames
    got = [(c, e) for c, d, e in events(write(tmp_path, frames)) if d == "send"]
    assert got == [("A", "<ECHO_REQ(data=b'40001')>"), ("B", "<ECHO_REQ(data=b'40002')>"),
                   ("C", "<ECHO_REQ(data=b'40001')>")]


def test_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "x.pcap"
    bogus.write_bytes(b"hello, this is not a capture at all")
    with pytest.raises(CaptureError, match=r"x\.pcap"):
        list(read(bogus))


# ---------------------------------------------------------------- the command

def gearspec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearspec", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


def test_decode_prints_a_transcript_per_connection() -> None:
    done = gearspec("pcap", "decode", str(PCAPS / "gearman-fg.pcap"))
    assert done.returncode == 0, done.stderr
    assert "connection A  127.0.0.1:37748 > 127.0.0.1:4730" in done.stdout
    assert "SUBMIT_JOB function=reverse" in done.stdout
    assert "connection B  127.0.0.1:37752 > 127.0.0.1:4730" in done.stdout


def test_decode_json_and_port() -> None:
    done = gearspec("pcap", "decode", str(PCAPS / "xsrv-perlserver-perl-fg.pcap"),
                    "--port", "4731", "--format", "json")
    assert done.returncode == 0, done.stderr
    conns = [json.loads(line) for line in done.stdout.splitlines()]
    # Each connection is printed once it has closed, so memory holds open ones only.
    assert sorted(c["connection"] for c in conns) == ["A", "B"]
    assert any(e.get("type") == "SUBMIT_JOB" for c in conns for e in c["events"])


@pytest.mark.parametrize(("args", "words"), [
    (["pcap", "decode", "nosuch.pcap"], "nosuch.pcap"),
    (["pcap", "decode", "README.md"], "not a pcap or pcapng file"),
    (["pcap", "decode", "x.pcap", "--port", "http"], "invalid int value"),
    (["pcap", "nosuch"], "invalid choice"),
])
def test_decode_bad_arguments(args: list[str], words: str) -> None:
    done = gearspec(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_bench_capture_decodes_whole(tmp_path: Path) -> None:
    from conformance.capture.bench import measure, write_capture

    path = tmp_path / "bench.pcap"
    made = write_capture(path, 2000, connections=7)
    assert measure(path)[0] == made
    if shutil.which("tshark"):
        flagged = subprocess.run(["tshark", "-r", str(path), "-d", "tcp.port==4730,gearman",
                                  "-Y", "_ws.malformed || tcp.analysis.flags"],
                                 capture_output=True, text=True, check=True).stdout
        assert flagged == ""
