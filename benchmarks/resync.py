"""Resynchronisation cost: bytes on the Particle port that never chain as frames.

    python benchmarks/resync.py [--kb 512]

Another protocol on 5683, or a stream that lost its frame boundaries, makes the framing
look for a chain of frame headers in up to 64 KiB of buffered bytes. It used to rescan
that window from its start on every new segment: quadratic in the segment count (0.5 MB
in 100-byte segments took a minute). This times ``dissect`` on the same random bytes cut
into 1460-byte and into 40-byte segments, in the same run, and prints the ratio of the
time per byte: with resumed scanning it stays near the ratio of the packet counts' cost,
not the square. A measurement: it never fails on slowness.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dissector.capture.reader import CaptureReader  # noqa: E402
from dissector.capture.writer import PcapWriter, build_tcp_frame  # noqa: E402
from dissector.keys import KeyRing  # noqa: E402
from dissector.pipeline import Dissector  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


def junk_capture(nbytes: int, segment: int) -> Path:
    """A SYN-less connection to 5683 carrying ``nbytes`` random bytes in ``segment``s."""
    path = OUT / f"resync-{nbytes}-{segment}.pcap"
    if path.exists():
        return path
    data = random.Random(1).randbytes(nbytes)
    buf = io.BytesIO()
    writer = PcapWriter(buf, 1)
    seq, ts = 101, 1.0
    for i in range(0, nbytes, segment):
        piece = data[i : i + segment]
        frame = build_tcp_frame(1, "10.0.0.2", 40000, "10.0.0.1", 5683, seq, 501, "PA", piece)
        writer.write_packet(ts, frame)
        seq += len(piece)
        ts += 0.0001
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def seconds(path: Path) -> float:
    start = time.perf_counter()
    with CaptureReader([str(path)]) as reader:
        for _ in Dissector(KeyRing()).run(iter(reader)):
            pass
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=512, help="random bytes to frame, in KiB")
    args = parser.parse_args()
    nbytes = args.kb * 1024
    big, small = junk_capture(nbytes, 1460), junk_capture(nbytes, 40)
    t_big = min(seconds(big) for _ in range(3))
    t_small = min(seconds(small) for _ in range(3))
    print(f"{args.kb} KiB of unframeable bytes on 5683")
    print(f"  1460-byte segments: {t_big:.2f} s ({nbytes / t_big / 1e6:.2f} MB/s)")
    print(f"    40-byte segments: {t_small:.2f} s ({nbytes / t_small / 1e6:.2f} MB/s)")
    print(f"  ratio {t_small / t_big:.1f}x for {1460 // 40}x the segments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
