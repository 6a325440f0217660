"""Frames wait while the other direction of a mid-session capture resynchronises.

The request tracker must see both directions in capture order (an answer after its
request), so a direction's frames completed after the oldest byte the other direction
still buffers are held; the hold is bounded, so a direction that never finds its frame
boundaries does not stall the other one for long (nor grow memory).
"""

from __future__ import annotations

import os

from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.protocol.events import MessageEvent
from dissector.protocol.tcp import MAX_HELD, TcpConnection

D2C, C2D = Direction.DEVICE_TO_CLOUD, Direction.CLOUD_TO_DEVICE


def _frame() -> bytes:
    return (32).to_bytes(2, "big") + os.urandom(32)


def _messages(events: list[object]) -> list[MessageEvent]:
    return [e for e in events if isinstance(e, MessageEvent)]


def test_a_direction_that_never_syncs_holds_the_other_only_boundedly() -> None:
    conn = TcpConnection("t", KeyRing(), handshake_expected=False)
    conn.receive_data(C2D, b"\xff" * 100, 1.0)  # no frame header can start here
    out: list[MessageEvent] = []
    for i in range(3 * MAX_HELD):
        out += _messages(conn.receive_data(D2C, _frame(), 2.0 + i))
        assert len(conn._sides[D2C].held) <= MAX_HELD + 1
        if i == 2:
            assert out == []  # held: an older cloud frame might still come
    assert len(out) >= 2 * MAX_HELD
    out += _messages(conn.end(1000.0))
    assert [m.ts for m in out] == [2.0 + i for i in range(3 * MAX_HELD)]


def test_frames_held_for_order_come_out_in_time_order_once_the_other_side_syncs() -> None:
    conn = TcpConnection("t", KeyRing(), handshake_expected=False)
    # The cloud stream starts in the middle of a frame: 10 stray bytes, then frames.
    cloud = [os.urandom(10)] + [_frame() for _ in range(4)]
    out: list[MessageEvent] = []
    out += _messages(conn.receive_data(C2D, cloud[0] + cloud[1][:20], 1.0))
    out += _messages(conn.receive_data(D2C, b"".join(_frame() for _ in range(4)), 1.5))
    assert out == []  # framed, but the cloud's frame completing at 2.0 may precede them
    out += _messages(conn.receive_data(C2D, cloud[1][20:] + b"".join(cloud[2:]), 2.0))
    out += _messages(conn.end(3.0))
    stamps = [(m.ts, m.direction) for m in out]
    assert stamps == sorted(stamps, key=lambda s: s[0])
    assert [d for _, d in stamps].count(D2C) == 4
