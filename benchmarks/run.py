"""End-to-end benchmark of ``particle-dissect`` (on demand, never in CI: ``make bench``).

Builds the captures if missing (``benchmarks/out/``, git-ignored), then times the whole
CLI in a subprocess, start-up and JSON output included, on a long TCP session with its
keys and on a long DTLS session with its NSS key log (``--transport tcp|dtls|both``)::

    particle-dissect dissect BIG --keys KEYS --format ndjson > /dev/null
    particle-dissect dissect BIG-DTLS --keylog KEYLOG --format ndjson > /dev/null

and measures each run's peak RSS (``os.wait4`` rusage of that child: ``ru_maxrss``, the
per-child form of ``getrusage(RUSAGE_CHILDREN)``) and CPU time (user + system: steadier
than wall time on a shared machine). A 50k- and a 200k-message capture are
run to show whether memory stays flat as the capture grows. If ``tshark`` is on PATH it
is timed on the same files (``tshark -r BIG -q -z io,stat,0``: every packet dissected,
no tree printed; ``--tshark-full`` uses ``-V`` to /dev/null instead); on the DTLS files
with the key log (``-o tls.keylog_file:KEYLOG -d udp.port==5684,dtls``), so tshark
decrypts every record, which an untimed ``-z io,stat,0,coap`` run confirms. It is a
measurement: it never fails on slowness. ``benchmarks/floor.py`` is timed on each file
too: the least a Python program does per message (cut frames, write a JSON line), so
``ours/floor`` shows what the real work costs and the floor what pure Python can reach.
``--profile N`` prints the top functions by own time (cProfile, in-process) on an
N-message capture of each transport run.
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
import make_big_dtls_capture  # noqa: E402

GOAL_RATE = 115_000  # messages per second
GOAL_RSS_MB = 150
TRANSPORTS = ("tcp", "dtls")
DTLS_PORT = 5684


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


def capture_for(out: Path, messages: int, seed: int, transport: str = "tcp") -> dict[str, object]:
    """Build the ``transport`` capture of ``messages`` messages unless it (and its
    description, keys or key log) exist: ``big-<N>.pcap`` + ``keys/`` (TCP),
    ``big-dtls-<N>.pcap`` + ``.keylog`` (DTLS)."""
    if transport == "dtls":
        pcap, keylog, meta = make_big_dtls_capture.paths(out, messages)
        ready = pcap.exists() and meta.exists() and keylog.exists()
    else:
        meta = out / f"big-{messages}.json"
        pcap = out / f"big-{messages}.pcap"
        ready = pcap.exists() and meta.exists() and (out / "keys").is_dir()
    if ready:
        info: dict[str, object] = json.loads(meta.read_text())
        return info
    print(f"building {pcap} ({messages} messages)…", flush=True)
    if transport == "dtls":
        built: make_big_capture.BuildInfo | make_big_dtls_capture.BuildInfo
        built = make_big_dtls_capture.build(out, messages, seed)
    else:
        built = make_big_capture.build(out, messages, seed)
    print(f"  built in {built.seconds:.1f} s: {built.packets} packets, {built.bytes / 1e6:.1f} MB")
    built_info: dict[str, object] = json.loads(meta.read_text())
    return built_info


def key_args(info: dict[str, object]) -> list[str]:
    """Our CLI's key options for a capture: ``--keylog`` (DTLS) or ``--keys`` (TCP)."""
    if "keylog" in info:
        return ["--keylog", str(info["keylog"])]
    return ["--keys", str(info["keys"])]


def tshark_cmd(tshark: str, info: dict[str, object], full: bool) -> list[str]:
    """tshark dissecting every packet of the capture; with the key log on DTLS, so that
    it decrypts every record (and hands it to its CoAP dissector)."""
    cmd = [tshark, "-n", "-r", str(info["capture"])]
    if "keylog" in info:
        cmd += ["-o", f"tls.keylog_file:{info['keylog']}", "-d", f"udp.port=={DTLS_PORT},dtls"]
    return cmd + (["-V"] if full else ["-q", "-z", "io,stat,0"])


def tshark_coap_frames(tshark: str, info: dict[str, object]) -> int | None:
    """How many frames tshark decodes as CoAP (after decrypting, on DTLS); None if unknown."""
    cmd = [*tshark_cmd(tshark, info, False)[:-1], "io,stat,0,coap"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError):
        return None
    # The last table row: "|   0.0 <> 100.5 | 200000 | 19169040 |" (frames, bytes).
    rows = [line for line in proc.stdout.splitlines() if "<>" in line]
    cells = rows[-1].strip("| ").split("|") if rows else []
    return int(cells[1]) if len(cells) >= 3 and cells[1].strip().isdigit() else None


def profile(out: Path, messages: int, seed: int, transport: str = "tcp", top: int = 15) -> None:
    """cProfile the CLI in-process on an N-message capture; print the top by own time."""
    from dissector.cli.main import main as cli

    info = capture_for(out, messages, seed, transport)
    args = ["dissect", str(info["capture"]), *key_args(info)]
    args += ["--format", "ndjson", "-o", os.devnull]
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    try:
        cli.main(args, standalone_mode=False)
    finally:
        prof.disable()
    took = time.perf_counter() - start
    print(f"\ncProfile ({transport}), {info['messages']} messages, {took:.2f} s under the profiler")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    print(buf.getvalue())


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Result:
    """One capture's best run of ours (and of tshark's, if it ran)."""

    transport: str
    messages: int
    ours: Run
    rate: float
    theirs: Run | None = None
    floor: Run | None = None


def bench(
    transport: str, size: int, args: argparse.Namespace, tshark: str | None
) -> tuple[list[str], Result]:
    """Time our CLI (and tshark) on one capture; its table row and result."""
    info = capture_for(args.out, size, args.seed, transport)
    pcap, n = str(info["capture"]), int(str(info["messages"]))
    cmd = [*dissect_cmd(), "dissect", pcap, *key_args(info), "--format", "ndjson"]
    ours = min((timed(cmd) for _ in range(args.repeat)), key=lambda r: r.seconds)
    rate = n / ours.seconds
    result = Result(transport, size, ours, rate)
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
    floor = min(
        (timed([sys.executable, str(HERE / "floor.py"), pcap]) for _ in range(args.repeat)),
        key=lambda r: r.seconds,
    )
    result.floor = floor
    row += [f"{floor.seconds:.2f}", f"{ours.seconds / floor.seconds:.1f}x"]
    if tshark:
        if transport == "dtls":
            coap = tshark_coap_frames(tshark, info)
            if coap != n:
                print(f"warning: tshark decoded {coap} of {n} DTLS records as CoAP")
        tcmd = tshark_cmd(tshark, info, args.tshark_full)
        theirs = min((timed(tcmd) for _ in range(args.repeat)), key=lambda r: r.seconds)
        result.theirs = theirs
        row += [
            f"{theirs.seconds:.2f}",
            f"{theirs.max_rss_mb:.0f}",
            f"{ours.seconds / theirs.seconds:.2f}x",
        ]
    return row, result


def goal_lines(transport: str, results: list[Result]) -> list[str]:
    """The goal line (rate, RSS; DTLS: half of tshark's decrypt time) and the memory line."""
    big = results[-1]
    lines = [
        f"goal ({transport}): >= {GOAL_RATE:,} msg/s and <= {GOAL_RSS_MB} MB peak RSS; "
        f"measured {big.rate:,.0f} msg/s, {big.ours.max_rss_mb:.0f} MB "
        f"({'met' if big.rate >= GOAL_RATE else 'NOT met'} / "
        f"{'met' if big.ours.max_rss_mb <= GOAL_RSS_MB else 'NOT met'})"
    ]
    if transport == "dtls" and big.theirs is not None:
        half = big.theirs.seconds / 2
        lines.append(
            f"goal (dtls): wall time <= half of tshark's decrypting run ({half:.2f} s); "
            f"measured {big.ours.seconds:.2f} s "
            f"({'met' if big.ours.seconds <= half else 'NOT met'})"
        )
    if len(results) == 2:
        small = results[0]
        growth = big.ours.max_rss_mb / small.ours.max_rss_mb
        lines.append(
            f"memory ({transport}): {small.ours.max_rss_mb:.0f} MB at {small.messages:,} "
            f"messages, {big.ours.max_rss_mb:.0f} MB at {big.messages:,} ({growth:.2f}x for "
            f"{big.messages / small.messages:.0f}x the messages)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=make_big_capture.DEFAULT_OUT)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=50_000, help="second, smaller capture")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per capture (best kept)")
    parser.add_argument(
        "--transport", choices=[*TRANSPORTS, "both"], default="both", help="default: both"
    )
    parser.add_argument("--no-tshark", action="store_true")
    parser.add_argument("--tshark-full", action="store_true", help="tshark -V instead of -z")
    parser.add_argument("--profile", type=int, metavar="N", help="also cProfile N messages")
    args = parser.parse_args(argv)

    tshark = None if args.no_tshark else shutil.which("tshark")
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    sizes = sorted({args.small, args.messages})
    head = ["capture", "messages", "packets", "MB", "ours s", "msg/s", "cpu s", "msg/cpu-s"]
    rows = [[*head, "peak RSS MB", "floor s", "ours/floor"]]
    if tshark:
        rows[0] += ["tshark s", "tshark RSS MB", "ours/tshark"]
    results: dict[str, list[Result]] = {}
    for transport in transports:
        for size in sizes:
            row, result = bench(transport, size, args, tshark)
            rows.append(row)
            results.setdefault(transport, []).append(result)

    print()
    print(table(rows))
    print()
    if tshark:
        mode = "-V to /dev/null" if args.tshark_full else "-q -z io,stat,0"
        print(f"tshark: {tshark} {mode} (ours/tshark < 1 means we are faster)")
        if "dtls" in results:
            print(
                f"tshark on DTLS: -o tls.keylog_file:KEYLOG -d udp.port=={DTLS_PORT},dtls "
                "(decrypts every record)"
            )
    else:
        print("tshark: not on PATH, not compared")
    print(
        "floor: benchmarks/floor.py, a Python loop that only cuts frames/records and writes "
        "one JSON line each (no decryption, no CoAP)"
    )
    for transport in transports:
        for line in goal_lines(transport, results[transport]):
            print(line)
    if args.profile:
        for transport in transports:
            profile(args.out, args.profile, args.seed, transport)
    return 0


if __name__ == "__main__":
    sys.exit(main())
