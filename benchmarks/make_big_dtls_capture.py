"""Build a large Particle DTLS capture for benchmarks: one long session and its key log.

    python benchmarks/make_big_dtls_capture.py --messages 200000 --out benchmarks/out

writes ``OUT/big-dtls-<N>.pcap``, ``OUT/big-dtls-<N>.keylog`` (the session's NSS
``CLIENT_RANDOM`` line) and ``OUT/big-dtls-<N>.json`` (what was built: message and packet
counts, seed, device ID), so ``particle-dissect dissect OUT/big-dtls-<N>.pcap --keylog
OUT/big-dtls-<N>.keylog`` decrypts everything, and so does tshark::

    tshark -r OUT/big-dtls-<N>.pcap -o tls.keylog_file:OUT/big-dtls-<N>.keylog

The session is an Electron's (Device OS 1.x, as the bundled ``dtls-electron-session``): the
full DTLS 1.2 handshake (cookie round, ECDHE-ECDSA-AES128-CCM-8, no connection ID, so
plain type-23 records that tshark decrypts too), the CON Hello, then a realistic mix of
events, pings both ways, variable reads (piggybacked and separate), function calls, time
requests, describes, cloud events, signals and subscriptions with their empty ACKs, built
by :class:`dissector.simulate.dtls.DtlsSessionBuilder`: one record per datagram, as Device
OS sends them (a separate response follows its empty ACK in its own datagram). Datagrams
are written as they are built (memory does not grow with N). The P-256 keys are derived
from the seed: the output is byte-identical for a seed.
"""

from __future__ import annotations

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

from dissector.capture.writer import PcapWriter, ip_udp  # noqa: E402
from dissector.model import Direction  # noqa: E402
from dissector.simulate import messages as m  # noqa: E402
from dissector.simulate.dtls import DtlsSessionBuilder  # noqa: E402
from dissector.simulate.dtls_handshake import ephemeral_key  # noqa: E402
from dissector.simulate.pcap import link_frame  # noqa: E402
from dissector.simulate.rng import ByteSource  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
DEVICE_ID = "3b0034000b4734343231be7c"  # Electron style: the STM32 96-bit unique ID
DEVICE = ("10.0.0.2", 50123)
CLOUD = ("10.0.0.1", 5684)
START = 1_700_000_000.0
STEP = 0.0005  # seconds between datagrams
FLUSH_EVERY = 256  # datagrams buffered in the builder before they go to the file

EVENT_NAMES = ["temp", "peer/hello", "status/battery", "motion", "door/front/open", "log"]
SYSTEM_EVENTS = ["spark/device/diagnostics/update", "spark/hardware/max_binary"]
HELLO: dict[str, Any] = {
    "product_id": 10,
    "product_version": 0xFFFF,
    "flags": 0x02,
    "platform_id": 10,
}
DESCRIPTION = {
    "f": ["led", "add", "reset", "setMode"],
    "v": {"counter": 2, "temp": 9, "status": 4, "armed": 1},
    "p": 10,
    "m": [{"s": 131072, "l": "m", "vc": 30, "vv": 30, "f": "b", "n": "0", "v": 11, "d": []}],
}


@dataclass
class BuildInfo:
    """What :func:`build` wrote."""

    capture: str
    keylog: str
    messages: int
    packets: int
    bytes: int
    seed: int
    device_id: str
    seconds: float


def paths(out_dir: Path, messages: int) -> tuple[Path, Path, Path]:
    """``(pcap, keylog, json)`` of the ``messages``-message capture in ``out_dir``."""
    base = out_dir / f"big-dtls-{messages}"
    return base.with_suffix(".pcap"), base.with_suffix(".keylog"), base.with_suffix(".json")


def _digits(pick: random.Random) -> Callable[[int], str]:
    """``data(n)``: ``n`` random decimal digits (event data, arguments)."""

    def data(n: int) -> str:
        return "".join(pick.choice("0123456789") for _ in range(n))

    return data


def _mix(b: DtlsSessionBuilder, pick: random.Random) -> list[tuple[float, Callable[[], object]]]:
    """Weighted exchanges of a busy device over DTLS; each call sends 2 or 4 messages."""
    data = _digits(pick)
    return [
        (30, lambda: b.device_event(pick.choice(EVENT_NAMES), data(pick.randint(0, 120)))),
        (8, lambda: b.device_event(pick.choice(SYSTEM_EVENTS), data(6))),
        (2, lambda: b.device_event("peer/hello", "msg", ttl=3600, ack=0x80)),
        (
            6,
            lambda: b.variable_read(
                "counter", m.int32_value(pick.randint(-(2**31), 2**31 - 1)), piggybacked=True
            ),
        ),
        (4, lambda: b.variable_read("temp", m.double_value(pick.uniform(-40, 60)))),
        (4, lambda: b.variable_read("status", data(40).encode(), piggybacked=True)),
        (10, lambda: b.function_call(pick.choice(["led", "add"]), data(8), pick.randint(-5, 500))),
        (8, lambda: b.ping()),
        (3, lambda: b.ping(from_device=False)),
        (5, lambda: b.time_request()),
        (8, lambda: b.cloud_event("peer/fromserver", data(pick.randint(0, 200)))),
        (1, lambda: b.describe(DESCRIPTION, piggybacked=True)),
        (1, lambda: b.describe(DESCRIPTION)),
        (2, lambda: b.signal(pick.random() < 0.5)),
        (1, lambda: b.subscribe("peer/", my_devices=True)),
    ]


def build(out_dir: Path, messages: int, seed: int = 1, *, checksum: bool = False) -> BuildInfo:
    """Write ``big-dtls-<messages>.pcap`` (+ ``.keylog``, ``.json``) into ``out_dir``."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    capture, keylog, meta = paths(out_dir, messages)
    rng = ByteSource(seed)
    b = DtlsSessionBuilder(
        ephemeral_key(rng.fork("device-key")),
        ephemeral_key(rng.fork("server-key")),
        DEVICE_ID,
        rng=rng.fork("session"),
        start=START,
        step=STEP,
        connection_id=False,  # Device OS < 3.1: type-23 records tshark can decrypt
        pack_flights=False,  # Device OS 1.0.1: one handshake record per datagram
        cloud=CLOUD,
        keep_messages=False,
    )
    pick = random.Random(seed)
    data = _digits(pick)
    mix = _mix(b, pick)
    weights = [w for w, _ in mix]
    actions = [a for _, a in mix]
    ident = {d: rng.uint(0, 0xFFFF) for d in (Direction.DEVICE_TO_CLOUD, Direction.CLOUD_TO_DEVICE)}
    ends = {
        Direction.DEVICE_TO_CLOUD: (*DEVICE, *CLOUD),
        Direction.CLOUD_TO_DEVICE: (*CLOUD, *DEVICE),
    }
    packets = 0
    tmp = capture.with_suffix(".pcap.part")
    with open(tmp, "wb", buffering=1 << 20) as fh:
        writer = PcapWriter(fh, 1)

        def flush() -> None:
            nonlocal packets
            for ts, direction, payload in b.datagrams:
                sip, sport, dip, dport = ends[direction]
                ip = ip_udp(
                    sip, sport, dip, dport, payload, checksum=checksum, ident=ident[direction]
                )
                ident[direction] = (ident[direction] + 1) & 0xFFFF
                writer.write_packet(ts, link_frame(ip, direction, 1))
            packets += len(b.datagrams)
            b.datagrams.clear()

        # The handshake with realistic gaps: network latency, the device's ECC work.
        b.client_hello(at=START)
        b.hello_verify_request(at=START + 0.03)
        b.client_hello(at=START + 0.06)
        b.server_flight(at=START + 0.09)
        b.client_flight(at=START + 0.44)
        b.server_finished()
        b.wait(0.05)
        flush()
        b.device_hello("B", **HELLO)
        flush()
        sent = 2
        while sent < messages:
            before = len(b.datagrams)
            left = messages - sent
            if left >= 4:
                pick.choices(actions, weights)[0]()
            elif left >= 2:
                b.ping()  # fill up to exactly ``messages``
            else:  # a NO_ACK event: NON, no reply
                b.device_sends(m.event(b.next_device_mid(), "log", data(8), confirmable=False))
            sent += len(b.datagrams) - before
            if len(b.datagrams) >= FLUSH_EVERY:
                flush()
        flush()
    tmp.replace(capture)
    keylog.write_text(b.keylog_line() + "\n")
    info = BuildInfo(
        capture=str(capture),
        keylog=str(keylog),
        messages=sent,
        packets=packets,
        bytes=capture.stat().st_size,
        seed=seed,
        device_id=DEVICE_ID,
        seconds=round(time.perf_counter() - started, 3),
    )
    meta.write_text(json.dumps(asdict(info), indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    from make_big_capture import command_line

    return command_line(build, __doc__ or "", "compute UDP checksums", argv)


if __name__ == "__main__":
    sys.exit(main())
