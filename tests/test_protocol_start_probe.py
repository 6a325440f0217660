"""StartProbe: judging where a SYN-less TCP connection's streams start."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.model import Direction
from dissector.protocol.start_probe import StartProbe
from dissector.protocol.tcp import _START_LAYOUTS

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


def noise(n: int) -> bytes:
    """Deterministic random-looking bytes (RSA ciphertext stands in for nothing else)."""
    return random.Random(n).randbytes(n)


def frames(*lengths: int) -> bytes:
    return b"".join(n.to_bytes(2, "big") + noise(n) for n in lengths)


def probe() -> StartProbe:
    return StartProbe(_START_LAYOUTS)


def test_both_directions_at_the_handshake() -> None:
    p = probe()
    p.add(C2D, noise(40), 1.0)
    assert p.decide() is None  # the nonce alone proves nothing yet
    p.add(D2C, noise(256), 2.0)
    assert p.decide() is None
    p.add(C2D, noise(384) + frames(16), 3.0)
    assert p.decide() is None  # the device's stream is not confirmed yet
    p.add(D2C, frames(32, 48), 4.0)
    layout = p.decide()
    assert layout is not None and layout.handshake
    assert layout.blobs[C2D] == [("nonce", 40), ("session_key", 384)]
    assert layout.blobs[D2C] == [("identity", 256)]
    assert [f.ts for f in p.feeds] == [1.0, 2.0, 3.0, 4.0]


def test_cloud_stream_starting_at_the_session_key() -> None:
    p = probe()
    p.add(D2C, noise(256) + frames(16), 1.0)
    p.add(C2D, noise(384) + frames(32), 2.0)
    layout = p.decide()
    assert layout is not None and layout.handshake
    assert layout.blobs[C2D] == [("session_key", 384)]


def test_failed_handshake_judged_at_the_end() -> None:
    """Server closed after the identity: 40 bytes one way, 256 the other."""
    p = probe()
    p.add(C2D, noise(40), 1.0)
    p.add(D2C, noise(256), 2.0)
    assert p.decide() is None
    layout = p.decide(final=True)
    assert layout is not None and layout.handshake


def test_one_direction_framed_from_byte_zero_decides_at_once() -> None:
    p = probe()
    p.add(D2C, frames(16, 32, 16), 1.0)
    layout = p.decide()
    assert layout is not None and not layout.handshake


def test_one_direction_alone_is_not_enough() -> None:
    """Only the device side fits its layout; the cloud side is framed mid-frame."""
    p = probe()
    p.add(D2C, noise(256) + frames(16, 16), 1.0)
    p.add(C2D, b"\x00" * 5 + frames(16, 16, 16), 2.0)  # not a boundary at 0, 384 or 424
    layout = p.decide(final=True)
    assert layout is not None and not layout.handshake


def test_one_direction_ruling_the_handshake_out_decides_without_the_other() -> None:
    """Mid-frame at byte 0 and no frame at 256: no need to wait for a quiet cloud."""
    p = probe()
    p.add(D2C, b"\x00" * 7 + frames(48, 48, 48, 48, 48, 48), 1.0)
    layout = p.decide()
    assert layout is not None and not layout.handshake


def test_gap_forces_a_decision() -> None:
    p = probe()
    p.add(C2D, noise(40), 1.0)
    p.add_gap(C2D, 100, 2.0)
    assert p.decide() is not None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=700)), min_size=1, max_size=12)
)
def test_arbitrary_bytes_never_raise_and_always_decide_at_the_end(
    feeds: list[tuple[bool, bytes]],
) -> None:
    p = probe()
    for i, (to_cloud, data) in enumerate(feeds):
        p.add(D2C if to_cloud else C2D, data, float(i))
        p.decide()
    layout = p.decide(final=True)
    assert layout is not None
    assert sum(f.nbytes for f in p.feeds) == sum(len(d) for _, d in feeds)
