"""Property tests: random segmentation, duplication, reordering, overlap and capture loss."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.capture.packets import TcpSegment
from dissector.capture.tcp_reassembly import (
    SYNLESS_HOLD_SEGMENTS,
    Connection,
    StreamData,
    StreamEvent,
    StreamGap,
    TcpReassembler,
)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MASK = 0xFFFFFFFF
C = ("192.0.2.1", 50000)
S = ("192.0.2.2", 5683)

isns = st.one_of(st.integers(0, MASK), st.integers(MASK - 2000, MASK))


def mkseg(
    src: tuple[str, int],
    dst: tuple[str, int],
    seq: int,
    payload: bytes,
    flags: int,
    ack: int,
    ts: float = 1.0,
) -> TcpSegment:
    return TcpSegment(ts, 0, *src, *dst, seq & MASK, ack & MASK, flags, payload, 4)


@st.composite
def plans(draw: st.DrawFn, min_piece: int = 1) -> tuple[bytes, list[tuple[int, int]]]:
    """A byte stream and the (start, end) ranges of the segments carrying it, in send order.

    The ranges cover every byte; extra ranges add duplicates and overlaps.
    """
    data = draw(st.binary(min_size=min_piece, max_size=1500))
    n = len(data)
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=40))))
    bounds = [0]
    for c in cuts:
        if c - bounds[-1] >= min_piece and n - c >= min_piece:
            bounds.append(c)
    bounds.append(n)
    ranges = list(itertools.pairwise(bounds))
    if n >= min_piece:
        extras = draw(
            st.lists(
                st.tuples(st.integers(0, n - min_piece), st.integers(min_piece, 64)), max_size=12
            )
        )
        ranges += [(a, min(n, a + k)) for a, k in extras]
    order = draw(st.permutations(range(len(ranges))))
    return data, [ranges[i] for i in order]


def tile(events: list[StreamEvent], conn: Connection, side: int) -> tuple[int, list[StreamEvent]]:
    """Check data and gaps of one side tile the stream from offset 0; return (end, chunks)."""
    pos = 0
    chunks = []
    for e in events:
        if isinstance(e, (StreamData, StreamGap)) and e.conn is conn and e.side == side:
            assert e.offset == pos
            if isinstance(e, StreamData):
                assert e.data
                pos += len(e.data)
                chunks.append(e)
            else:
                assert e.nbytes > 0
                pos += e.nbytes
                chunks.append(e)
    return pos, chunks


def run(
    data: bytes,
    ranges: list[tuple[int, int]],
    isn_c: int,
    isn_s: int,
    *,
    syn: bool = True,
    lost: list[bool] | None = None,
    acks: list[bool] | None = None,
) -> tuple[list[StreamEvent], Connection]:
    """Send ``ranges`` of ``data`` from client to server; the server acks what it received."""
    r = TcpReassembler()
    ev: list[StreamEvent] = []
    if syn:
        ev += r.feed(mkseg(C, S, isn_c, b"", SYN, 0))
        ev += r.feed(mkseg(S, C, isn_s, b"", SYN | ACK, isn_c + 1))
    base = isn_c + 1
    received = bytearray(len(data))
    prefix = 0
    captured_end = 0  # end of the furthest captured byte so far
    for i, (a, b) in enumerate(ranges):
        if not (lost and lost[i]):
            ev += r.feed(mkseg(C, S, base + a, data[a:b], PSH, 0))
            captured_end = max(captured_end, b)
        received[a:b] = b"\x01" * (b - a)  # the peer got it even if the capture did not
        while prefix < len(data) and received[prefix]:
            prefix += 1
        if acks and acks[i]:
            ev += r.feed(mkseg(S, C, isn_s + 1, b"", ACK, base + prefix))
            # an ACK releases every hole below it that has captured data beyond it
            pos, _ = tile(ev, ev[0].conn, 0)
            assert pos >= min(prefix, captured_end)
    ev += r.feed(mkseg(C, S, base + len(data), b"", FIN | ACK, isn_s + 1))
    ev += r.close_all(2.0)
    return ev, ev[0].conn


@settings(max_examples=150, deadline=None)
@given(plans(), isns, isns, st.data())
def test_no_loss_reassembles_exactly(plan, isn_c: int, isn_s: int, draw: st.DataObject) -> None:
    data, ranges = plan
    acks = draw.draw(st.lists(st.booleans(), min_size=len(ranges), max_size=len(ranges)))
    ev, conn = run(data, ranges, isn_c, isn_s, acks=acks)
    end, chunks = tile(ev, conn, 0)
    assert end == len(data)
    assert b"".join(c.data for c in chunks if isinstance(c, StreamData)) == data
    assert conn.gaps == (0, 0)
    assert conn.conflicting_overlaps == (0, 0)
    dup = sum(b - a for a, b in ranges) - len(data)
    assert conn.retransmitted_bytes[0] + conn.keepalive_probes[0] <= dup


@settings(max_examples=150, deadline=None)
@given(plans(), isns, isns, st.data())
def test_loss_is_accounted_byte_for_byte(plan, isn_c: int, isn_s: int, draw: st.DataObject) -> None:
    data, ranges = plan
    k = len(ranges)
    lost = draw.draw(st.lists(st.booleans(), min_size=k, max_size=k))
    acks = draw.draw(st.lists(st.booleans(), min_size=k, max_size=k))
    ev, conn = run(data, ranges, isn_c, isn_s, lost=lost, acks=acks)
    end, chunks = tile(ev, conn, 0)
    assert end == len(data)  # delivered + gaps cover every byte exactly once
    for c in chunks:
        if isinstance(c, StreamData):
            assert c.data == data[c.offset : c.offset + len(c.data)]
    delivered, gap = conn.data_bytes[0], conn.gap_bytes[0]
    assert delivered + gap == len(data)
    if not any(lost):
        assert gap == 0
    captured = bytearray(len(data))
    for (a, b), gone in zip(ranges, lost, strict=True):
        if not gone:
            captured[a:b] = b"\x01" * (b - a)
    assert delivered <= sum(captured)


@settings(max_examples=100, deadline=None)
@given(plans(min_piece=2), isns, st.data())
def test_synless_stream_with_early_reordering_is_exact(
    plan, isn_c: int, draw: st.DataObject
) -> None:
    data, ranges = plan
    firsts = [i for i, (a, _) in enumerate(ranges) if a == 0]
    i = firsts[0]
    j = draw.draw(st.integers(0, min(SYNLESS_HOLD_SEGMENTS, len(ranges)) - 1))
    ranges[i], ranges[j] = ranges[j], ranges[i]  # the true start arrives within the hold
    ev, conn = run(data, ranges, isn_c, 0, syn=False)
    assert not conn.syn_seen
    end, chunks = tile(ev, conn, 0)
    assert end == len(data) and conn.gaps == (0, 0)
    assert b"".join(c.data for c in chunks if isinstance(c, StreamData)) == data


segments = st.builds(
    lambda src, seq, ack, flags, payload, ts: (src, seq, ack, flags, payload, ts),
    st.integers(0, 2),
    st.one_of(st.integers(0, MASK), st.integers(990, 1100)),
    st.one_of(st.integers(0, MASK), st.integers(990, 1100)),
    st.integers(0, 0x1FF),
    st.binary(max_size=40),
    st.floats(0, 10_000, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(segments, max_size=60))
def test_arbitrary_segments_never_raise_and_streams_stay_consistent(segs) -> None:
    hosts = [("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 3)]
    r = TcpReassembler(max_buffer_per_direction=64, max_connections=2, idle_timeout=500.0)
    ev: list[StreamEvent] = []
    for src, seq, ack, flags, payload, ts in segs:
        dst = hosts[(src + 1) % 3]
        ev += r.feed(mkseg(hosts[src], dst, seq, payload, flags, ack, ts))
    ev += r.close_all(20_000.0)
    conns = {e.conn.id: e.conn for e in ev}
    for conn in conns.values():
        for side in (0, 1):
            end, _ = tile(ev, conn, side)
            assert end == conn.data_bytes[side] + conn.gap_bytes[side]
