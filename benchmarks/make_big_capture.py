"""Build a large Particle TCP capture for benchmarks: one long session, keys next to it.

    python benchmarks/make_big_capture.py --messages 200000 --out benchmarks/out

writes ``OUT/big-<N>.pcap``, ``OUT/big-<N>.json`` (what was built: message and packet
counts, seed, device ID) and, unless they exist already, ``OUT/keys/<device-id>.pem``
(device RSA-1024) and ``OUT/keys/default_key.pem`` (cloud RSA-2048), so
``particle-dissect dissect OUT/big-<N>.pcap --keys OUT/keys`` decrypts everything.

The session is the real thing (handshake, Hellos, then a realistic mix of events, pings,
variable reads, function calls, time requests, describes, cloud events and signals with
their ACKs, both directions), built by :class:`dissector.simulate.TcpSessionBuilder` and
streamed to disk: consecutive frames of one direction share a TCP segment (1–4 frames),
as on a loopback capture. Deterministic for a seed (the keys are generated once).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from dissector.capture.writer import PcapWriter  # noqa: E402
from dissector.model import Direction  # noqa: E402
from dissector.simulate import ByteSource, TcpPacketizer, TcpSessionBuilder  # noqa: E402
from dissector.simulate import messages as m  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
DEVICE_ID = "e00fce68a1b2c3d4e5f60718"
START = 1_700_000_000.0
STEP = 0.0005  # seconds between messages
MAX_FRAMES_PER_SEGMENT = 4

EVENT_NAMES = ["temp", "peer/hello", "status/battery", "motion", "door/front/open", "log"]
SYSTEM_EVENTS = ["spark/device/diagnostics/update", "spark/hardware/max_binary"]
DESCRIPTION = {
    "f": ["led", "add", "reset", "setMode"],
    "v": {"counter": 2, "temp": 9, "status": 4, "armed": 1},
    "p": 6,
    "m": [{"s": 16384, "l": "m", "vc": 30, "vv": 30, "f": "b", "n": "0", "v": 11, "d": []}],
}


@dataclass
class BuildInfo:
    """What :func:`build` wrote."""

    capture: str
    keys: str
    messages: int
    packets: int
    bytes: int
    seed: int
    device_id: str
    seconds: float


def load_or_make_keys(keys_dir: Path) -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """The device and cloud keys in ``keys_dir``, generated (and written) if missing."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, bits in ((f"{DEVICE_ID}.pem", 1024), ("default_key.pem", 2048)):
        path = keys_dir / name
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), None)
            assert isinstance(key, rsa.RSAPrivateKey)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                )
            )
        out.append(key)
    return out[0], out[1]


def _mix(b: TcpSessionBuilder, pick: random.Random) -> list[tuple[float, Callable[[], object]]]:
    """Weighted exchanges of a busy device; each call sends 1–3 messages."""
    digits = "0123456789"

    def data(n: int) -> str:
        return "".join(pick.choice(digits) for _ in range(n))

    return [
        (30, lambda: b.device_event(pick.choice(EVENT_NAMES), data(pick.randint(0, 120)))),
        (8, lambda: b.device_event(pick.choice(SYSTEM_EVENTS), data(6), ack=0)),
        (4, lambda: b.device_event("peer/hello", "msg", ttl=3600, ack=0x80)),
        (10, lambda: b.variable_read("counter", m.int32_value(pick.randint(-(2**31), 2**31 - 1)))),
        (5, lambda: b.variable_read("temp", m.double_value(pick.uniform(-40, 60)))),
        (5, lambda: b.variable_read("status", data(40).encode(), piggybacked=False)),
        (10, lambda: b.function_call(pick.choice(["led", "add"]), data(8), pick.randint(-5, 500))),
        (8, lambda: b.ping()),
        (2, lambda: b.ping(from_device=False)),
        (5, lambda: b.time_request()),
        (8, lambda: b.cloud_event("peer/fromserver", data(pick.randint(0, 200)))),
        (2, lambda: b.describe(DESCRIPTION)),
        (2, lambda: b.signal(pick.random() < 0.5)),
        (1, lambda: b.subscribe("peer/", my_devices=True)),
    ]


def build(out_dir: Path, messages: int, seed: int = 1, *, checksum: bool = False) -> BuildInfo:
    """Write ``big-<messages>.pcap`` (+ ``.json``) and the keys into ``out_dir``."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    keys_dir = out_dir / "keys"
    device_key, server_key = load_or_make_keys(keys_dir)
    capture = out_dir / f"big-{messages}.pcap"
    b = TcpSessionBuilder(
        device_key, server_key, DEVICE_ID, rng=seed, start=START, step=STEP, keep_messages=False
    )
    pick = random.Random(seed)
    mix = _mix(b, pick)
    weights = [w for w, _ in mix]
    actions = [a for _, a in mix]
    pk = TcpPacketizer(
        ("192.168.1.23", 49321),
        ("10.0.0.1", 5683),
        rng=ByteSource(seed).fork("tcp"),
        segment_size=65000,
        checksum=checksum,
    )
    sent = 0
    packets = 0
    tmp = capture.with_suffix(".pcap.part")
    with open(tmp, "wb", buffering=1 << 20) as fh:
        writer = PcapWriter(fh, 1)

        def flush(final: bool = False) -> None:
            nonlocal packets
            writes = b.writes
            keep = 0 if final else 1  # the last write may still get company
            i = 0
            while i < len(writes) - keep:
                ts, direction, data = writes[i]
                n = pick.randint(1, MAX_FRAMES_PER_SEGMENT)
                j = i + 1
                while j < len(writes) - keep and j - i < n and writes[j].direction is direction:
                    data += writes[j].data
                    j += 1
                for pts, frame in pk.data(ts, direction, data):
                    writer.write_packet(pts, frame)
                    packets += 1
                i = j
            del writes[:i]

        for pts, frame in pk.open(START):
            writer.write_packet(pts, frame)
            packets += 1
        b.handshake()
        b.device_hello(product_id=0xFFFF, flags=0x02, platform_id=6)
        b.cloud_hello()
        sent = 2
        flush()
        while sent < messages:
            before = len(b.writes)
            pick.choices(actions, weights)[0]()
            sent += len(b.writes) - before
            if len(b.writes) > 64:
                flush()
        flush(final=True)
        for pts, frame in pk.close(b.now + STEP, Direction.DEVICE_TO_CLOUD):
            writer.write_packet(pts, frame)
            packets += 1
    tmp.replace(capture)
    info = BuildInfo(
        capture=str(capture),
        keys=str(keys_dir),
        messages=sent,
        packets=packets,
        bytes=capture.stat().st_size,
        seed=seed,
        device_id=DEVICE_ID,
        seconds=round(time.perf_counter() - started, 3),
    )
    capture.with_suffix(".json").write_text(json.dumps(asdict(info), indent=1) + "\n")
    return info


def command_line(
    build_fn: Callable[..., Any], doc: str, checksum_help: str, argv: list[str] | None
) -> int:
    """The builders' shared command line: ``--messages N --out DIR --seed S --checksum``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="CoAP messages (≈)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--checksum", action="store_true", help=checksum_help)
    args = parser.parse_args(argv)
    info = build_fn(args.out, args.messages, args.seed, checksum=args.checksum)
    print(json.dumps(asdict(info), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_line(build, __doc__ or "", "compute TCP/IP checksums", argv)


if __name__ == "__main__":
    sys.exit(main())
