"""Bad input into the sans-IO TCP core: every case gives a finding, never an exception.

The streams come from the real spark-protocol capture and are damaged on purpose.
"""

from __future__ import annotations

import itertools
import random

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.protocol.events import Event, FindingEvent, HandshakeBlob, MessageEvent
from dissector.protocol.tcp import TcpConnection
from tests.derive import frame_boundaries, stream_writes
from tests.helpers import DEVICE_ID, SPARK, TCP_KEYS, ring_with

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
WRITES = stream_writes(f"{SPARK}.pcap")


def run(
    writes: list[tuple[Direction, bytes, float]],
    ring: KeyRing,
    handshake_expected: bool | None = True,
) -> tuple[list[Event], TcpConnection]:
    conn = TcpConnection("t", ring, handshake_expected=handshake_expected)
    events: list[Event] = []
    for direction, data, ts in writes:
        events += conn.receive_data(direction, data, ts)
    events += conn.end()
    return events, conn


def codes(events: list[Event]) -> list[str]:
    return [e.finding.code for e in events if isinstance(e, FindingEvent)]


def msgs(events: list[Event]) -> list[MessageEvent]:
    return [e for e in events if isinstance(e, MessageEvent)]


def both_keys() -> KeyRing:
    return ring_with(TCP_KEYS)


def fresh_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def test_baseline_stream_decodes_cleanly() -> None:
    events, conn = run(WRITES, both_keys())
    assert all(m.coap is not None for m in msgs(events))
    assert conn.info.outcome == "established"


def test_wrong_device_key_names_the_session_key_step() -> None:
    ring = KeyRing()
    ring.add_key(fresh_key(1024), role="device", device_id=DEVICE_ID)
    ring.load(str(TCP_KEYS / "default_key.pem"), role="server")
    events, conn = run(WRITES, ring)
    assert "handshake.session_key.wrong_device_key" in codes(events)
    assert conn.info.checks["session_key"].status.value == "failed"
    assert conn.info.checks["device_key_match"].status.value == "failed"
    assert all(m.coap is None for m in msgs(events))


def test_wrong_server_key_names_the_identity_step() -> None:
    ring = KeyRing()
    ring.add_key(fresh_key(2048), role="server")
    events, conn = run(WRITES, ring)
    assert "handshake.identity.wrong_server_key" in codes(events)
    assert conn.info.checks["identity_decrypted"].status.value == "failed"
    assert conn.info.device_id is None


def test_signature_by_another_server_key_is_reported() -> None:
    ring = KeyRing()
    ring.load(str(TCP_KEYS / f"{DEVICE_ID}.der"), role="device")
    ring.add_key(fresh_key(2048).public_key(), role="server")
    events, _conn = run(WRITES, ring)
    assert "handshake.signature.invalid" in codes(events)
    # Frames still decrypt: the device key alone is what opens them.
    assert all(m.coap is not None for m in msgs(events))


def _flat(writes: list[tuple[Direction, bytes, float]], direction: Direction) -> bytes:
    return b"".join(d for dr, d, _ in writes if dr is direction)


def _rebuild(device: bytes, cloud: bytes) -> list[tuple[Direction, bytes, float]]:
    """Cloud stream first up to its handshake, then interleave frame by frame."""
    return [
        (C2D, cloud[:40], 1.0),
        (D2C, device[:256], 2.0),
        (C2D, cloud[40:], 3.0),
        (D2C, device[256:], 4.0),
    ]


@pytest.mark.parametrize("cut", [10, 100, 255])
def test_truncated_identity(cut: int) -> None:
    device = _flat(WRITES, D2C)[:cut]
    cloud = _flat(WRITES, C2D)[:40]
    events, conn = run([(C2D, cloud, 1.0), (D2C, device, 2.0)], both_keys())
    found = codes(events)
    assert "handshake.identity.incomplete" in found
    assert conn.info.outcome == "handshake failed"


@pytest.mark.parametrize("cut", [41, 200, 423])
def test_truncated_session_key(cut: int) -> None:
    device = _flat(WRITES, D2C)[:256]
    cloud = _flat(WRITES, C2D)[:cut]
    events, conn = run(
        [(C2D, cloud[:40], 1.0), (D2C, device, 2.0), (C2D, cloud[40:], 3.0)], both_keys()
    )
    assert "handshake.session_key.incomplete" in codes(events)
    assert conn.info.checks["session_key"].status.value == "failed"


def test_server_closes_after_identity() -> None:
    device = _flat(WRITES, D2C)[:256]
    cloud = _flat(WRITES, C2D)[:40]
    events, _conn = run([(C2D, cloud, 1.0), (D2C, device, 2.0)], both_keys())
    assert "handshake.closed_after_identity" in codes(events)


def test_device_closes_after_session_key() -> None:
    device = _flat(WRITES, D2C)[:256]
    cloud = _flat(WRITES, C2D)[:424]
    events, _ = run(
        [(C2D, cloud[:40], 1.0), (D2C, device, 2.0), (C2D, cloud[40:], 3.0)], both_keys()
    )
    assert "handshake.closed_after_session_key" in codes(events)


def test_bit_flipped_frame_gives_a_finding_and_the_rest_still_decodes() -> None:
    device = bytearray(_flat(WRITES, D2C))
    cloud = _flat(WRITES, C2D)
    # The device Hello frame starts at 256: flip a bit in its last ciphertext byte.
    hello_len = int.from_bytes(device[256:258], "big")
    device[256 + 2 + hello_len - 1] ^= 0x01
    events, _ = run(_rebuild(bytes(device), cloud), both_keys())
    found = codes(events)
    assert "frame.bad_padding" in found or "coap.malformed" in found
    decoded = [m for m in msgs(events) if m.coap is not None]
    assert len(decoded) == len(msgs(events)) - 1


def test_bad_padding_in_first_block_changes_only_that_message() -> None:
    device = bytearray(_flat(WRITES, D2C))
    cloud = _flat(WRITES, C2D)
    device[258] ^= 0x80  # first ciphertext byte of the Hello: garbles its first block
    events, _ = run(_rebuild(bytes(device), cloud), both_keys())
    messages = msgs(events)
    assert len(messages) == 45
    # CBC: the flipped block garbles itself and one bit of the next block of that frame;
    # the following frame uses the (flipped) first block as IV.
    assert sum(m.coap is None for m in messages) <= 2


def test_length_prefix_longer_than_the_data() -> None:
    device = _flat(WRITES, D2C)
    cloud = _flat(WRITES, C2D)
    events, _ = run(_rebuild(device[:-5], cloud), both_keys())
    last = [m for m in msgs(events) if m.direction is D2C][-1]
    assert last.coap is None and last.encrypted is not None
    assert "not captured" in last.encrypted.reason
    assert "tcp.frame.truncated" in codes(events)


def test_zero_length_frame_is_reported_and_skipped() -> None:
    device = _flat(WRITES, D2C)
    cloud = _flat(WRITES, C2D)
    hello_end = 256 + 2 + int.from_bytes(device[256:258], "big")
    damaged = device[:hello_end] + b"\x00\x00" + device[hello_end:]
    events, _ = run(_rebuild(damaged, cloud), both_keys())
    assert "tcp.frame.zero_length" in codes(events)
    assert all(m.coap is not None for m in msgs(events))


def test_garbage_instead_of_a_handshake() -> None:
    rng = random.Random(7)
    garbage = [(C2D, rng.randbytes(500), 1.0), (D2C, rng.randbytes(700), 2.0)]
    events, conn = run(garbage, both_keys())
    assert codes(events)
    assert conn.info.outcome == "handshake failed" or any(
        c.startswith("tcp.") for c in codes(events)
    )


def test_garbage_mid_session_stream() -> None:
    rng = random.Random(8)
    garbage = [(C2D, rng.randbytes(5000), 1.0), (D2C, rng.randbytes(5000), 2.0)]
    events, _ = run(garbage, both_keys(), handshake_expected=None)
    assert codes(events)


def test_gap_inside_a_frame_loses_only_that_frame() -> None:
    device = _flat(WRITES, D2C)
    cloud = _flat(WRITES, C2D)
    conn = TcpConnection("t", both_keys())
    events: list[Event] = []
    events += conn.receive_data(C2D, cloud[:40], 1.0)
    events += conn.receive_data(D2C, device[:256], 2.0)
    events += conn.receive_data(C2D, cloud[40:], 3.0)
    hello_end = 256 + 2 + int.from_bytes(device[256:258], "big")
    nxt = int.from_bytes(device[hello_end : hello_end + 2], "big")
    # Lose 8 bytes in the middle of the second device frame (after its first block,
    # which the next frame needs as IV).
    events += conn.receive_data(D2C, device[256 : hello_end + 22], 4.0)
    events += conn.receive_gap(D2C, 8, 4.5)
    events += conn.receive_data(D2C, device[hello_end + 30 :], 5.0)
    events += conn.end()
    device_msgs = [m for m in msgs(events) if m.direction is D2C]
    assert device_msgs[1].coap is None and device_msgs[1].encrypted is not None
    assert device_msgs[1].wire_length == nxt + 2
    assert all(m.coap is not None for m in device_msgs[2:])
    assert "tcp.gap" in codes(events)


def test_gap_across_frame_headers_resynchronises() -> None:
    device = _flat(WRITES, D2C)
    cloud = _flat(WRITES, C2D)
    conn = TcpConnection("t", both_keys())
    events: list[Event] = []
    events += conn.receive_data(C2D, cloud, 1.0)
    events += conn.receive_data(D2C, device[:400], 2.0)
    events += conn.receive_gap(D2C, 300, 3.0)
    events += conn.receive_data(D2C, device[700:], 4.0)
    events += conn.end()
    bounds = sorted(frame_boundaries(device, 256))
    before = [b for b, e in itertools.pairwise(bounds) if e <= 400]
    after = [b for b in bounds[:-1] if b >= 700]
    decoded = [m for m in msgs(events) if m.direction is D2C and m.coap is not None]
    # Every whole frame before the gap, and every frame after it but the first one after
    # the resynchronisation point (its IV was in a lost frame).
    assert len(decoded) == len(before) + len(after) - 1
    assert [m.stream_offset for m in decoded][-len(after) + 1 :] == after[1:]
    assert {"tcp.gap"} <= set(codes(events))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.booleans(), st.binary(min_size=0, max_size=600), st.integers(0, 50)),
        max_size=12,
    ),
    st.sampled_from([True, None, False]),
)
def test_arbitrary_bytes_never_raise(
    chunks: list[tuple[bool, bytes, int]], handshake: bool | None
) -> None:
    conn = TcpConnection("fuzz", RING, handshake_expected=handshake)
    ts = 0.0
    for to_cloud, data, gap in chunks:
        ts += 0.5
        direction = D2C if to_cloud else C2D
        conn.receive_data(direction, data, ts)
        if gap == 0:
            conn.receive_gap(direction, 17, ts)
    conn.end()


RING = ring_with(TCP_KEYS, f"{SPARK}.keylog")


def test_handshake_blobs_carry_the_device_id_once_known() -> None:
    events, _ = run(WRITES, both_keys())
    blobs = [e for e in events if isinstance(e, HandshakeBlob)]
    assert [b.step for b in blobs] == ["nonce", "identity", "session_key"]
    assert blobs[1].device_id == DEVICE_ID and blobs[2].device_id == DEVICE_ID
