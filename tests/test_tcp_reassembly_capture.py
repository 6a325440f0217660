"""The reassembler against a real Particle TCP capture (Device OS 0.7.0 vs spark-protocol 0.1.6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import PcapReader

from dissector.capture.packets import TcpSegment
from dissector.capture.tcp_reassembly import (
    ConnectionClosed,
    StreamData,
    StreamEvent,
    StreamGap,
    TcpReassembler,
)

PCAP = (
    Path(__file__).parent / "data" / "reassembly" / "sparkprotocol-0.1.6__deviceos-0.7.0_full.pcap"
)
CLOUD_PORT = 5683


def read_segments(path: Path) -> list[TcpSegment]:
    segs = []
    with PcapReader(str(path)) as reader:
        for index, pkt in enumerate(reader, 1):
            ip, tcp = pkt[IP], pkt[TCP]
            segs.append(
                TcpSegment(
                    float(pkt.time),
                    index,
                    ip.src,
                    int(tcp.sport),
                    ip.dst,
                    int(tcp.dport),
                    int(tcp.seq),
                    int(tcp.ack),
                    int(tcp.flags),
                    bytes(tcp.payload),
                    4,
                )
            )
    return segs


@pytest.fixture(scope="module")
def segments() -> list[TcpSegment]:
    return read_segments(PCAP)


def reassemble(segs: list[TcpSegment]) -> list[StreamEvent]:
    r = TcpReassembler()
    events: list[StreamEvent] = []
    for seg in segs:
        events += r.feed(seg)
    events += r.close_all(segs[-1].ts)
    return events


def side_stream(events: list[StreamEvent], side: int) -> bytes:
    pos = 0
    out = bytearray()
    for e in events:
        if isinstance(e, StreamData) and e.side == side:
            assert e.offset == pos
            out += e.data
            pos += len(e.data)
    return bytes(out)


def walk_frames(stream: bytes, start: int) -> int:
    """Walk ``u16be len ‖ len bytes`` frames from ``start``; return how many, ending exactly."""
    pos = start
    count = 0
    while pos < len(stream):
        assert pos + 2 <= len(stream)
        length = int.from_bytes(stream[pos : pos + 2], "big")
        assert length > 0 and length % 16 == 0, (pos, length)
        pos += 2 + length
        count += 1
    assert pos == len(stream)
    return count


def test_capture_reassembles_into_the_particle_handshake_and_frames(segments) -> None:
    events = reassemble(segments)
    conns = {e.conn.id: e.conn for e in events}
    assert len(conns) == 1
    conn = next(iter(conns.values()))
    assert conn.syn_seen
    device = conn.side_of("127.0.0.1", segments[0].src_port)
    assert conn.endpoints[1][1] == CLOUD_PORT and device == 0
    assert not any(isinstance(e, StreamGap) for e in events)

    up = side_stream(events, 0)  # device -> cloud: 256-byte identity, then frames
    down = side_stream(events, 1)  # cloud -> device: 40-byte nonce, 384-byte key block, frames
    assert len(up) == sum(len(s.payload) for s in segments if s.dst_port == CLOUD_PORT)
    assert int.from_bytes(up[256:258], "big") % 16 == 0
    assert walk_frames(up, 256) > 10
    assert int.from_bytes(down[424:426], "big") % 16 == 0
    assert walk_frames(down, 40 + 384) > 10
    assert conn.data_bytes == (len(up), len(down))


def test_capture_counts_its_one_retransmission_once(segments) -> None:
    events = reassemble(segments)
    conn = events[0].conn
    assert conn.retransmitted_segments == (0, 1)
    assert conn.retransmitted_bytes == (0, 18)
    assert conn.conflicting_overlaps == (0, 0) and conn.out_of_order_segments == (0, 0)
    down = side_stream(events, 1)
    sent = sum(len(s.payload) for s in segments if s.src_port == CLOUD_PORT)
    assert len(down) == sent - 18


def test_capture_closes_with_fin_from_both_sides(segments) -> None:
    events = reassemble(segments)
    closes = [(e.side, e.reason) for e in events if isinstance(e, ConnectionClosed)]
    assert closes == [(0, "fin"), (1, "fin")]
    assert events[0].conn.finished


def test_capture_with_one_byte_resegmentation_gives_same_streams(segments) -> None:
    """Split every payload into 1-byte segments: the streams do not change."""
    whole = reassemble(segments)
    split: list[TcpSegment] = []
    for s in segments:
        if len(s.payload) <= 1:
            split.append(s)
            continue
        for i in range(len(s.payload)):
            flags = s.flags if i == len(s.payload) - 1 else s.flags & ~0x01
            split.append(
                TcpSegment(
                    s.ts,
                    s.index,
                    s.src_ip,
                    s.src_port,
                    s.dst_ip,
                    s.dst_port,
                    (s.seq + i) & 0xFFFFFFFF,
                    s.ack,
                    flags,
                    s.payload[i : i + 1],
                    4,
                )
            )
    pieces = reassemble(split)
    for side in (0, 1):
        assert side_stream(pieces, side) == side_stream(whole, side)


def test_capture_started_mid_connection_still_frames_correctly(segments) -> None:
    """Drop the handshake packets (capture starting at packet 9): SYN-less streams."""
    events = reassemble(segments[8:])
    conn = events[0].conn
    assert not conn.syn_seen
    device_side = conn.side_of("127.0.0.1", segments[0].src_port)
    up = side_stream(events, device_side)
    down = side_stream(events, 1 - device_side)
    assert walk_frames(up, 0) > 10
    assert walk_frames(down, 0) > 10
    assert not any(isinstance(e, StreamGap) for e in events)
