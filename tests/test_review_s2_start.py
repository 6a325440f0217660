"""Review: SYN-less starts judged by the handshake's causal order; ordered output at scale."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest

from dissector.capture.reader import CaptureReader
from dissector.capture.writer import PcapWriter, build_tcp_frame, build_udp_frame
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.pipeline import Dissector
from dissector.protocol import tcp as tcp_module
from dissector.protocol.events import FindingEvent, MessageEvent
from dissector.protocol.start_probe import StartProbe
from dissector.protocol.tcp import _START_LAYOUTS, TcpConnection
from tests.derive import (
    frame_boundaries,
    load_datagrams,
    load_segments,
    stream_writes,
    write,
    write_pcap,
)
from tests.helpers import SPARK, dissect, findings, messages, ring_with

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
BUNDLED = Path(__file__).resolve().parent.parent / "captures"
PHOTON = BUNDLED / "photon.pcap"
PHOTON_KEYLOG = BUNDLED / "keys" / "photon-midsession.keylog"


def frames(*lengths: int) -> bytes:
    rng = random.Random(sum(lengths))
    return b"".join(n.to_bytes(2, "big") + rng.randbytes(n) for n in lengths)


def _cut_run(
    capture: Path, ring: KeyRing, cut: dict[Direction, int], seed: int = 0
) -> tuple[list[Any], dict[Direction, bytes]]:
    """Feed a connection's streams from the given byte offsets on (re-segmented), as a
    capture that began there would, to a SYN-less connection."""
    rng = random.Random(seed)
    streams: dict[Direction, bytes] = {D2C: b"", C2D: b""}
    conn = TcpConnection("t", ring, handshake_expected=None)
    events: list[Any] = []
    for direction, data, ts in stream_writes(capture):
        offset = len(streams[direction])
        streams[direction] += data
        if offset + len(data) <= cut[direction]:
            continue
        piece = data[max(0, cut[direction] - offset) :]
        while piece:
            n = rng.randint(1, 90)
            events += conn.receive_data(direction, piece[:n], ts)
            piece = piece[n:]
    events += conn.end()
    return events, streams


# Cuts inside the first frames where both streams happen to have a frame boundary at
# the handshake layout's offsets (256 device, 384 or 424 cloud): a one-direction-at-a-time
# judgement took them for a SYN-less handshake and lost nearly every cloud message.
CUTS = [
    (PHOTON, PHOTON_KEYLOG, {C2D: 162, D2C: 258}),
    (PHOTON, PHOTON_KEYLOG, {C2D: 358, D2C: 258}),
    (PHOTON, PHOTON_KEYLOG, {D2C: 258, C2D: 426}),
    (Path(f"{SPARK}.pcap"), Path(f"{SPARK}.keylog"), {D2C: 272, C2D: 428}),
    (Path(f"{SPARK}.pcap"), Path(f"{SPARK}.keylog"), {D2C: 272, C2D: 432}),
]


@pytest.mark.parametrize(("capture", "keylog", "cut"), CUTS)
def test_mid_session_cut_matching_the_layout_offsets_stays_mid_session(
    capture: Path, keylog: Path, cut: dict[Direction, int]
) -> None:
    events, streams = _cut_run(capture, ring_with(keylog, role="keylog"), cut)
    codes = [e.finding.code for e in events if isinstance(e, FindingEvent)]
    assert "tcp.handshake_without_syn" not in codes
    decoded = {
        (e.direction, e.stream_offset + cut[e.direction])
        for e in events
        if isinstance(e, MessageEvent) and e.coap is not None
    }
    expected = set()
    for direction, start in ((D2C, 256), (C2D, 424)):
        stream = streams[direction]
        bounds = frame_boundaries(stream, start)
        after = sorted(b for b in bounds if cut[direction] <= b < len(stream))
        expected |= {(direction, b) for b in after[1:]}  # the first one lost its IV
    assert decoded == expected


def test_device_frames_before_the_session_key_rule_the_handshake_out() -> None:
    """A device stream that fits the identity layout, captured one way only: decided at
    once (the device frames only after the cloud's session key), not held for 64 KiB."""
    rng = random.Random(3)
    p = StartProbe(_START_LAYOUTS)
    p.add(D2C, rng.randbytes(256), 1.0)
    assert p.decide() is None
    p.add(D2C, frames(16, 32), 2.0)
    layout = p.decide()
    assert layout is not None and not layout.handshake


def test_cloud_bytes_before_the_identity_rule_the_handshake_out() -> None:
    """The cloud sends its session key only after the whole identity: more than a nonce
    before any device byte is mid-session traffic."""
    p = StartProbe(_START_LAYOUTS)
    p.add(C2D, frames(32, 16), 1.0)
    layout = p.decide()
    assert layout is not None and not layout.handshake


def test_device_speaking_before_the_nonce_is_complete_rules_the_handshake_out() -> None:
    p = StartProbe(_START_LAYOUTS)
    p.add(C2D, frames(16), 1.0)  # 18 bytes: could still be the start of the nonce
    assert p.decide() is None
    p.add(D2C, frames(16), 2.0)  # a ping exchange, not nonce -> identity
    layout = p.decide()
    assert layout is not None and not layout.handshake


def test_bytes_after_a_gap_say_nothing_about_the_start() -> None:
    """Identity, a hole, then frames: the frames must not count as chaining after it."""
    rng = random.Random(5)
    p = StartProbe(_START_LAYOUTS)
    p.add(C2D, rng.randbytes(40), 1.0)
    p.add(D2C, rng.randbytes(200), 2.0)
    p.add_gap(D2C, 56, 3.0)
    p.add(D2C, frames(16, 16, 16), 4.0)
    layout = p.decide()
    assert layout is not None and not layout.handshake


def test_synless_failed_handshake_note_comes_before_its_records(tmp_path: Path) -> None:
    segments = [s for s in load_segments(BUNDLED / "fail-unknown-device.pcap") if not s.syn]
    path = write(tmp_path / "nosyn.pcap", write_pcap(segments))
    records = dissect([path], ring_with(BUNDLED / "keys"))
    order = [r.get("code") or r.get("step") for r in records if r["record"] != "session"]
    assert order.index("tcp.handshake_without_syn") < order.index("nonce")
    stamps = [r["ts"] for r in records if r.get("ts") is not None]
    assert stamps == sorted(stamps)


def _synless_pings(n_conns: int, rounds: int) -> bytes:
    """``n_conns`` SYN-less connections exchanging 16-byte frames, interleaved."""
    rng = random.Random(0)
    seqs: dict[tuple[int, bool], int] = {}
    buf = io.BytesIO()
    writer = PcapWriter(buf, 1)
    t = 1.0
    for _ in range(rounds):
        for i in range(n_conns):
            for to_cloud in (True, False):
                t += 0.001
                dev = (f"10.1.{i // 250}.{i % 250 + 2}", 40000 + i)
                cloud = ("10.0.0.1", 5683)
                seq = seqs.get((i, to_cloud), rng.randrange(1 << 32))
                data = (16).to_bytes(2, "big") + rng.randbytes(16)
                seqs[(i, to_cloud)] = (seq + len(data)) & 0xFFFFFFFF
                src, dst = (dev, cloud) if to_cloud else (cloud, dev)
                frame = build_tcp_frame(1, src[0], src[1], dst[0], dst[1], seq, 0, 0x18, data)
                writer.write_packet(t, frame)
    writer.flush()
    return buf.getvalue()


def test_many_holding_connections_do_not_cost_a_scan_per_packet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of mid-session connections all holding (no frame boundary proven yet):
    the output watermark must not ask every one of them at every packet."""
    n_conns, rounds = 300, 4
    path = write(tmp_path / "many.pcap", _synless_pings(n_conns, rounds))
    calls = 0
    original = TcpConnection.holding_since

    def counted(self: TcpConnection) -> float | None:
        nonlocal calls
        calls += 1
        return original.fget(self)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(tcp_module.TcpConnection, "holding_since", property(counted))
    out = list(Dissector(KeyRing()).run(iter(CaptureReader([str(path)]))))
    packets = n_conns * rounds * 2
    assert calls <= 3 * packets
    stamps = [e.ts for e in out if isinstance(e, MessageEvent)]
    assert len(stamps) == packets
    assert stamps == sorted(stamps)


def test_interleaved_dtls_handshakes_keep_capture_order(tmp_path: Path) -> None:
    """Copies of a DTLS session from many devices, their handshakes overlapping."""
    datagrams = load_datagrams(BUNDLED / "dtls-gen3-session.pcap")
    buf = io.BytesIO()
    writer = PcapWriter(buf, 1)
    rows = []
    copies = 30
    for i in range(copies):
        for ts, src, sport, dst, dport, payload in datagrams:
            device = f"10.9.0.{i + 2}"
            s = device if sport != 5684 else src
            d = device if dport != 5684 else dst
            rows.append((ts + i * 3e-4, build_udp_frame(1, s, sport, d, dport, payload)))
    for ts, frame in sorted(rows, key=lambda r: r[0]):
        writer.write_packet(ts, frame)
    writer.flush()
    path = write(tmp_path / "dtls-many.pcap", buf.getvalue())
    ring = ring_with(BUNDLED / "keys")
    single = dissect([BUNDLED / "dtls-gen3-session.pcap"], ring)
    records = dissect([path], ring)
    stamps = [r["ts"] for r in records if r.get("ts") is not None]
    assert stamps == sorted(stamps)
    assert len(messages(records)) == copies * len(messages(single))
    assert len(findings(records)) == copies * len(findings(single))
