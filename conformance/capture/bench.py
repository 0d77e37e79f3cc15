"""``python -m conformance.capture.bench``: how fast captures decode (a benchmark,
not a test).

It writes a capture of ``--packets`` Gearman packets (default 1,000,000: jobs
submitted, created, assigned and completed on 100 connections, ten packets to a
TCP segment, the segments interleaved across connections), then times
``conformance.capture.reader.read`` over it and reports packets/s and the
process's peak memory, which stays flat however long the capture is.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import RawPcapWriter

from conformance.capture.reader import read
from reference_server.protocol import Magic, Packet, PacketType, encode

T = PacketType
PER_SEGMENT = 10


def _header(sport: int, dport: int) -> bytes:
    """Ethernet, IP and TCP headers for a segment, with the seq/length patched later."""
    return bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") /
                 TCP(sport=sport, dport=dport, flags="PA"))


def write_capture(path: Path, packets: int, connections: int = 100) -> int:
    """A capture of about ``packets`` packets; the number written."""
    job = [encode(T.SUBMIT_JOB, b"reverse", b"", b"hello world"),
           encode(T.JOB_CREATED, b"H:bench:1", magic=Magic.RES),
           encode(T.GRAB_JOB_UNIQ),
           encode(T.JOB_ASSIGN_UNIQ, b"H:bench:1", b"reverse", b"", b"hello world",
                  magic=Magic.RES),
           encode(T.WORK_COMPLETE, b"H:bench:1", b"dlrow olleh")]
    sends = b"".join(job[i] for i in (0, 2, 4))
    answers = b"".join(job[i] for i in (1, 3))
    templates = {}
    seqs = {}
    for conn in range(connections):
        port = 20000 + conn
        templates[conn, "send"] = bytearray(_header(port, 4730))
        templates[conn, "recv"] = bytearray(_header(4730, port))
        seqs[conn, "send"] = seqs[conn, "recv"] = 1
    written = 0
    stamp = 1_700_000_000.0
    with RawPcapWriter(str(path), linktype=1) as writer:
        writer.write_header(None)  # write_packet, unlike write, leaves it out
        while written < packets:
            for conn in range(connections):
                for direction, data, count in (("send", sends * (PER_SEGMENT // 3), 9),
                                               ("recv", answers * (PER_SEGMENT // 2), 10)):
                    frame = templates[conn, direction]
                    total = len(frame) - 14 + len(data)
                    frame[16:18] = total.to_bytes(2, "big")  # IP total length
                    frame[24:26] = b"\0\0"  # checksum: tshark does not check it
                    frame[38:42] = seqs[conn, direction].to_bytes(4, "big")
                    seqs[conn, direction] = (seqs[conn, direction] + len(data)) & 0xFFFFFFFF
                    stamp += 1e-5
                    writer.write_packet(bytes(frame) + data, sec=int(stamp),
                                        usec=int(stamp % 1 * 1e6))
                    written += count
    return written


def measure(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum(1 for c in read(path) if isinstance(c.event, Packet))
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the capture here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.pcap"
        made = write_capture(path, args.packets)
        size = path.stat().st_size
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        count, seconds = measure(path)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"capture: {made:,} Gearman packets, {size / 1e6:.1f} MB")
    print(f"decoded: {count:,} packets in {seconds:.1f} s = {count / seconds:,.0f} packets/s")
    print(f"peak memory: {peak / 1024:.0f} MB (before decoding {before / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
