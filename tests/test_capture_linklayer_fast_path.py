"""The Ethernet/IPv4/TCP fast path of ``decode_packet`` decodes exactly like the general
path (the same frame with a VLAN tag, which the fast path does not take), for good and
damaged headers alike."""

from __future__ import annotations

from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.capture.ipfrag import IpDefragmenter
from dissector.capture.linklayer import LinkStats, decode_packet
from dissector.capture.packets import RawPacket
from dissector.capture.writer import ethernet_frame, ipv4_packet, tcp_segment


@st.composite
def ip_packets(draw: st.DrawFn) -> bytes:
    payload = draw(st.binary(max_size=60))
    seg = tcp_segment(
        "10.0.0.2",
        draw(st.integers(0, 65535)),
        "10.0.0.1",
        5683,
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 0x1FF)),
        payload,
        options=draw(st.sampled_from([b"", b"\x01\x01\x01\x01", b"\x02\x04\x05\xb4"])),
    )
    pkt = bytearray(
        ipv4_packet(
            "10.0.0.2",
            "10.0.0.1",
            draw(st.sampled_from([6, 6, 6, 17, 1])),
            seg,
            options=draw(st.sampled_from([b"", b"", b"\x01\x01\x01\x01"])),
            more_fragments=draw(st.booleans()) and draw(st.booleans()),
        )
    )
    # Damage some header bytes: lengths, data offset, version/IHL, fragment fields.
    for _ in range(draw(st.integers(0, 2))):
        pos = draw(st.sampled_from([0, 2, 3, 6, 7, 9, 32, 33]))
        if pos < len(pkt):
            pkt[pos] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, 8))
    return bytes(pkt[: len(pkt) - cut] if cut < len(pkt) else pkt)


@settings(max_examples=400, deadline=None)
@given(ip_packets(), st.booleans())
def test_fast_path_matches_the_general_path(ip: bytes, pad: bool) -> None:
    frame = ethernet_frame(ip, ethertype=0x0800, pad=pad)
    tagged = ethernet_frame(ip, ethertype=0x0800, vlans=[5], pad=pad)
    if pad:  # the same padding after the IP packet in both frames
        tagged += b"\0" * (len(frame) - 14 - len(tagged) + 18)
    fast_stats, slow_stats = LinkStats(), LinkStats()
    fast = decode_packet(RawPacket(1.5, 1, frame, len(frame), 7, "x"), IpDefragmenter(), fast_stats)
    slow = decode_packet(
        RawPacket(1.5, 1, tagged, len(tagged), 7, "x"), IpDefragmenter(), slow_stats
    )
    assert (asdict(fast) if fast else None) == (asdict(slow) if slow else None)
    assert asdict(fast_stats) == asdict(slow_stats)
