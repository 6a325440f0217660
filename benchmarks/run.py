"""End-to-end benchmark of ``particle-dissect`` (on demand, never in CI: ``make bench``).

Builds the captures if missing (``benchmarks/out/``, git-ignored), then times the whole
CLI in a subprocess, start-up and JSON output included::

    particle-dissect dissect BIG --keys KEYS --format ndjson > /dev/null

and measures each run's peak RSS (``os.wait4`` rusage of that child: ``ru_maxrss``, the
per-child form of ``getrusage(RUSAGE_CHILDREN)``) and CPU time (user + system: steadier
than wall time on a shared machine). A 50k- and a 200k-message capture are
run to show whether memory stays flat as the capture grows. If ``tshark`` is on PATH it
is timed on the same files (``tshark -r BIG -q -z io,stat,0``: every packet dissected,
no tree printed; ``--tshark-full`` uses ``-V`` to /dev/null instead). It is a
measurement: it never fails on slowness. ``--profile N`` prints the top functions by own
time (cProfile, in-process) on an N-message capture.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import make_big_capture  # noqa: E402

GOAL_RATE = 115_000  # messages per second
GOAL_RSS_MB = 150


@dataclass
class Run:
    """One timed subprocess."""

    seconds: float
    max_rss_mb: float
    returncode: int
    cpu_seconds: float = 0.0


def timed(cmd: list[str]) -> Run:
    """Run ``cmd`` with stdout to /dev/null; wall time and this child's peak RSS."""
    with open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    if proc.returncode:
        print(f"warning: {' '.join(cmd)} exited {proc.returncode}: {err.strip()[:300]}")
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return Run(seconds, rss, proc.returncode, usage.ru_utime + usage.ru_stime)


def dissect_cmd() -> list[str]:
    """The installed CLI next to this interpreter, else ``python -m dissector``."""
    exe = Path(sys.executable).parent / "particle-dissect"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dissector"]


def capture_for(out: Path, messages: int, seed: int) -> dict[str, object]:
    """Build ``big-<messages>.pcap`` unless it (and its description) exist."""
    meta = out / f"big-{messages}.json"
    pcap = out / f"big-{messages}.pcap"
    if pcap.exists() and meta.exists() and (out / "keys").is_dir():
        info: dict[str, object] = json.loads(meta.read_text())
        return info
    print(f"building {pcap} ({messages} messages)…", flush=True)
    built = make_big_capture.build(out, messages, seed)
    print(f"  built in {built.seconds:.1f} s: {built.packets} packets, {built.bytes / 1e6:.1f} MB")
    built_info: dict[str, object] = json.loads(meta.read_text())
    return built_info


def profile(out: Path, messages: int, seed: int, top: int = 15) -> None:
    """cProfile the CLI in-process on an N-message capture; print the top by own time."""
    from dissector.cli.main import main as cli

    info = capture_for(out, messages, seed)
    args = ["dissect", str(info["capture"]), "--keys", str(info["keys"])]
    args += ["--format", "ndjson", "-o", os.devnull]
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    try:
        cli.main(args, standalone_mode=False)
    finally:
        prof.disable()
    took = time.perf_counter() - start
    print(f"\ncProfile, {info['messages']} messages, {took:.2f} s under the profiler")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    print(buf.getvalue())


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=make_big_capture.DEFAULT_OUT)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=50_000, help="second, smaller capture")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per capture (best kept)")
    parser.add_argument("--no-tshark", action="store_true")
    parser.add_argument("--tshark-full", action="store_true", help="tshark -V instead of -z")
    parser.add_argument("--profile", type=int, metavar="N", help="also cProfile N messages")
    args = parser.parse_args(argv)

    tshark = None if args.no_tshark else shutil.which("tshark")
    sizes = sorted({args.small, args.messages})
    head = ["capture", "messages", "packets", "MB", "ours s", "msg/s", "cpu s", "msg/cpu-s"]
    rows = [[*head, "peak RSS MB"]]
    if tshark:
        rows[0] += ["tshark s", "tshark RSS MB", "ours/tshark"]
    results: dict[int, tuple[Run, float]] = {}
    for size in sizes:
        info = capture_for(args.out, size, args.seed)
        pcap, keys, n = str(info["capture"]), str(info["keys"]), int(str(info["messages"]))
        cmd = [*dissect_cmd(), "dissect", pcap, "--keys", keys, "--format", "ndjson"]
        ours = min((timed(cmd) for _ in range(args.repeat)), key=lambda r: r.seconds)
        rate = n / ours.seconds
        results[size] = (ours, rate)
        row = [
            Path(pcap).name,
            f"{n:,}",
            f"{int(str(info['packets'])):,}",
            f"{int(str(info['bytes'])) / 1e6:.1f}",
            f"{ours.seconds:.2f}",
            f"{rate:,.0f}",
            f"{ours.cpu_seconds:.2f}",
            f"{n / ours.cpu_seconds:,.0f}" if ours.cpu_seconds else "-",
            f"{ours.max_rss_mb:.0f}",
        ]
        if tshark:
            tcmd = [tshark, "-n", "-r", pcap]
            tcmd += ["-V"] if args.tshark_full else ["-q", "-z", "io,stat,0"]
            theirs = min((timed(tcmd) for _ in range(args.repeat)), key=lambda r: r.seconds)
            row += [
                f"{theirs.seconds:.2f}",
                f"{theirs.max_rss_mb:.0f}",
                f"{ours.seconds / theirs.seconds:.2f}x",
            ]
        rows.append(row)

    print()
    print(table(rows))
    print()
    if tshark:
        mode = "-V to /dev/null" if args.tshark_full else "-q -z io,stat,0"
        print(f"tshark: {tshark} {mode} (ours/tshark < 1 means we are faster)")
    else:
        print("tshark: not on PATH, not compared")
    big_run, big_rate = results[sizes[-1]]
    print(
        f"goal: >= {GOAL_RATE:,} msg/s and <= {GOAL_RSS_MB} MB peak RSS; "
        f"measured {big_rate:,.0f} msg/s, {big_run.max_rss_mb:.0f} MB "
        f"({'met' if big_rate >= GOAL_RATE else 'NOT met'} / "
        f"{'met' if big_run.max_rss_mb <= GOAL_RSS_MB else 'NOT met'})"
    )
    if len(sizes) == 2:
        small_run = results[sizes[0]][0]
        growth = big_run.max_rss_mb / small_run.max_rss_mb
        print(
            f"memory: {small_run.max_rss_mb:.0f} MB at {sizes[0]:,} messages, "
            f"{big_run.max_rss_mb:.0f} MB at {sizes[1]:,} ({growth:.2f}x for "
            f"{sizes[1] / sizes[0]:.0f}x the messages)"
        )
    if args.profile:
        profile(args.out, args.profile, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
