"""Link / IP / transport decoding: every link type, tags, padding, extension headers, scapy."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.capture.ipfrag import IpDefragmenter
from dissector.capture.linklayer import (
    SUPPORTED_LINKTYPES,
    LinkDecoder,
    LinkStats,
    decode_packet,
)
from dissector.capture.packets import RawPacket, TcpSegment, UdpDatagram
from dissector.capture.writer import (
    ethernet_frame,
    fragment_ipv4,
    fragment_ipv6,
    frame_for_linktype,
    ip_tcp,
    ip_udp,
    ipv4_packet,
    ipv6_ext_header,
    ipv6_packet,
    linux_sll2_frame,
    linux_sll_frame,
    loop_frame,
    null_frame,
    tcp_segment,
    udp_datagram,
)

V4 = ("192.168.1.10", "52.1.2.3")
V6 = ("2001:db8::10", "2001:db8::1:0:0:3")


def raw(linktype: int, data: bytes, ts: float = 1.0, orig_len: int | None = None) -> RawPacket:
    return RawPacket(ts, linktype, data, len(data) if orig_len is None else orig_len, 7, "t")


def decode(linktype: int, data: bytes, orig_len: int | None = None) -> tuple[object, LinkStats]:
    dec = LinkDecoder()
    return dec.decode(raw(linktype, data, orig_len=orig_len)), dec.stats


def tcp_pkt(addrs: tuple[str, str] = V4, payload: bytes = b"hello", **kw: object) -> bytes:
    return ip_tcp(addrs[0], 40000, addrs[1], 5683, 0xFFFFFFF0, 123, "PA", payload, **kw)  # type: ignore[arg-type]


def check_tcp(seg: object, addrs: tuple[str, str] = V4, payload: bytes = b"hello") -> None:
    assert isinstance(seg, TcpSegment)
    assert (seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port) == (addrs[0], 40000, addrs[1], 5683)
    assert (seg.seq, seg.ack, seg.flags, seg.payload) == (0xFFFFFFF0, 123, 0x18, payload)
    assert seg.ip_version == (6 if ":" in addrs[0] else 4)
    assert seg.index == 7 and seg.ts == 1.0
    assert seg.psh and seg.has_ack and not seg.syn and not seg.fin and not seg.rst
    assert seg.flag_text == "PA"


LINKTYPES = sorted(SUPPORTED_LINKTYPES)
LINK_AND_IP = [
    (lt, addrs)
    for lt in LINKTYPES
    for addrs in (V4, V6)
    if not ((lt == 228 and addrs is V6) or (lt == 229 and addrs is V4))
]


@pytest.mark.parametrize(("linktype", "addrs"), LINK_AND_IP)
def test_every_linktype_tcp_and_udp(linktype: int, addrs: tuple[str, str]) -> None:
    seg, stats = decode(linktype, frame_for_linktype(linktype, tcp_pkt(addrs)))
    check_tcp(seg, addrs)
    assert stats.tcp == 1 and stats.packets == 1
    dgram, stats = decode(
        linktype, frame_for_linktype(linktype, ip_udp(addrs[0], 5684, addrs[1], 1234, b"dtls"))
    )
    assert isinstance(dgram, UdpDatagram)
    assert (dgram.src_ip, dgram.src_port, dgram.dst_ip, dgram.dst_port) == (
        addrs[0], 5684, addrs[1], 1234,
    )  # fmt: skip
    assert dgram.payload == b"dtls" and stats.udp == 1


def test_ipv6_text_is_compressed() -> None:
    seg, _ = decode(101, tcp_pkt(("2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:10.0.0.1")))
    assert isinstance(seg, TcpSegment)
    assert (seg.src_ip, seg.dst_ip) == ("2001:db8::1", "::ffff:10.0.0.1")


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("family", [24, 28, 30, 10])
def test_null_loopback_families(big_endian: bool, family: int) -> None:
    seg, _ = decode(0, null_frame(tcp_pkt(V6), big_endian=big_endian, family=family))
    check_tcp(seg, V6)
    seg, _ = decode(0, null_frame(tcp_pkt(), big_endian=big_endian, family=2))
    check_tcp(seg)


def test_null_and_loop_non_ip_family() -> None:
    for frame, linktype in (
        (null_frame(tcp_pkt(), family=7), 0),
        (loop_frame(tcp_pkt(), family=7), 108),
    ):
        seg, stats = decode(linktype, frame)
        assert seg is None and stats.non_ip == 1


def test_stacked_vlan_tags() -> None:
    for vlans, tpid in (((10,), 0x8100), ((100, 200), 0x88A8), ((1, 2, 3), 0x9100)):
        seg, _ = decode(1, ethernet_frame(tcp_pkt(), vlans=vlans, outer_tpid=tpid))
        check_tcp(seg)
        seg, _ = decode(1, ethernet_frame(tcp_pkt(V6), vlans=vlans, outer_tpid=tpid))
        check_tcp(seg, V6)


def test_vlan_tag_in_cooked_captures() -> None:
    inner = struct.pack("!HH", 5, 0x0800) + tcp_pkt()
    check_tcp(decode(113, linux_sll_frame(inner, protocol=0x8100))[0])
    check_tcp(decode(276, linux_sll2_frame(inner, protocol=0x8100))[0])


def test_pppoe_session() -> None:
    for pkt, proto, addrs in ((tcp_pkt(), 0x0021, V4), (tcp_pkt(V6), 0x0057, V6)):
        body = struct.pack("!BBHHH", 0x11, 0, 1, len(pkt) + 2, proto) + pkt
        seg, _ = decode(1, ethernet_frame(body, ethertype=0x8864))
        check_tcp(seg, addrs)


def test_ethernet_padding_never_becomes_payload() -> None:
    for payload in (b"", b"x", b"abcd"):
        frame = ethernet_frame(tcp_pkt(payload=payload), pad=True)
        assert len(frame) == 60
        check_tcp(decode(1, frame)[0], payload=payload)
        frame = ethernet_frame(ip_udp(*V4[:1], 1, V4[1], 2, payload), pad=True)
        dgram, _ = decode(1, frame)
        assert isinstance(dgram, UdpDatagram) and dgram.payload == payload
    # an FCS or trailer after the IP packet is ignored too
    check_tcp(decode(1, ethernet_frame(tcp_pkt()) + b"\xde\xad\xbe\xef")[0])


def test_udp_length_shorter_than_ip_payload_trims() -> None:
    dgram = udp_datagram(V4[0], 1, V4[1], 2, b"abc", checksum=False) + b"TRAILER"
    pkt = ipv4_packet(V4[0], V4[1], 17, dgram)
    got, _ = decode(101, pkt)
    assert isinstance(got, UdpDatagram) and got.payload == b"abc"


def test_ipv4_options_and_tcp_options() -> None:
    seg = tcp_segment(V4[0], 40000, V4[1], 5683, 0xFFFFFFF0, 123, "PA", b"hello",
                      options=b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02")  # fmt: skip
    pkt = ipv4_packet(V4[0], V4[1], 6, seg, options=b"\x94\x04\x00\x00\x01\x01\x01\x00")
    assert pkt[0] & 15 == 7
    check_tcp(decode(1, ethernet_frame(pkt))[0])


def test_ipv6_extension_headers() -> None:
    seg = tcp_segment(V6[0], 40000, V6[1], 5683, 0xFFFFFFF0, 123, "PA", b"hello")
    dest = ipv6_ext_header(6, b"\x01\x02\x00\x00")
    routing = ipv6_ext_header(60, b"\x00\x00" + b"\0" * 4 + bytes(16))
    ah = bytes([43, 4]) + b"\0" * 22  # (4 + 2) * 4 = 24 bytes
    hbh = ipv6_ext_header(51, b"\x05\x02\x00\x00")
    pkt = ipv6_packet(V6[0], V6[1], 0, hbh + ah + routing + dest + seg)
    check_tcp(decode(1, ethernet_frame(pkt))[0], V6)


@pytest.mark.parametrize(("nh", "body"), [(58, b"\x80\x00\x00\x00"), (50, b"\0" * 16), (59, b"")])
def test_ipv6_not_tcp_or_udp(nh: int, body: bytes) -> None:
    got, stats = decode(229, ipv6_packet(V6[0], V6[1], nh, body))
    assert got is None and stats.other_protocol == 1


def test_ipv6_extension_header_longer_than_packet_is_malformed() -> None:
    pkt = ipv6_packet(V6[0], V6[1], 0, bytes([6, 200]) + b"\0" * 6)
    got, stats = decode(229, pkt)
    assert got is None and stats.malformed == 1


def test_ipv4_fragments_shuffled_through_decode_packet() -> None:
    payload = bytes(range(256)) * 6
    whole = ip_udp(V4[0], 5684, V4[1], 9999, payload, ident=0x4242)
    frags = fragment_ipv4(whole, 480)
    assert len(frags) == 4
    random.Random(3).shuffle(frags)
    dec = LinkDecoder()
    results = [dec.decode(raw(1, ethernet_frame(f))) for f in frags]
    assert results[:-1] == [None] * 3
    assert isinstance(results[-1], UdpDatagram) and results[-1].payload == payload
    assert dec.stats.fragments_held == 3 and dec.defrag.pending == 0
    assert dec.defrag.stats.reassembled == 1


def test_ipv4_tcp_fragments_overlapping() -> None:
    payload = bytes(range(200)) * 4
    whole = tcp_pkt(payload=payload, ident=77)
    frags = fragment_ipv4(whole, 400)
    # an extra fragment covering the middle of the first two again
    middle = fragment_ipv4(whole, 200)[1]
    dec = LinkDecoder()
    assert dec.decode(raw(101, frags[0])) is None
    assert dec.decode(raw(101, middle)) is None
    got = [dec.decode(raw(101, f)) for f in frags[1:]]
    check_tcp(got[-1], payload=payload)
    assert dec.defrag.stats.overlaps == 1


def test_ipv6_fragments_shuffled() -> None:
    payload = b"0123456789abcdef" * 40
    frags = fragment_ipv6(tcp_pkt(V6, payload=payload), 160)
    random.Random(9).shuffle(frags)
    dec = LinkDecoder()
    results = [dec.decode(raw(229, f)) for f in frags]
    assert results[:-1] == [None] * (len(frags) - 1)
    check_tcp(results[-1], V6, payload)
    # an atomic fragment (offset 0, no more fragments) is decoded directly
    atomic = fragment_ipv6(tcp_pkt(V6), 1000)
    assert len(atomic) == 1
    check_tcp(dec.decode(raw(229, atomic[0])), V6)


def test_snaplen_truncation_is_counted() -> None:
    frame = ethernet_frame(tcp_pkt(payload=b"x" * 500))
    for snap in (10, 20, 40, 50):  # cut inside the headers: skipped
        got, stats = decode(1, frame[:snap], orig_len=len(frame))
        assert got is None and stats.truncated == 1 and stats.malformed == 0, snap


def test_tcp_segment_cut_after_its_header_keeps_the_bytes_it_has() -> None:
    frame = ethernet_frame(tcp_pkt(payload=b"x" * 500))
    for snap in (54, 60, 100):
        got, stats = decode(1, frame[:snap], orig_len=len(frame))
        assert isinstance(got, TcpSegment) and got.payload == b"x" * (snap - 54), snap
        assert stats.truncated_kept == 1 and stats.truncated == 0 and stats.malformed == 0


def test_lying_ip_length_is_malformed() -> None:
    pkt = ipv4_packet(V4[0], V4[1], 6, tcp_segment(V4[0], 1, V4[1], 2, 0, 0, "S"), total_length=900)
    got, stats = decode(101, pkt)
    assert got is None and stats.malformed == 1 and stats.truncated == 0
    for bad in (
        b"\x45\x00\x00\x10" + pkt[4:],
        b"\x46" + pkt[1:20],
        b"\x55" + pkt[1:],
        b"\x42" + pkt[1:],
    ):
        got, stats = decode(228, bad)
        assert got is None and stats.malformed + stats.truncated == 1


def test_tcp_data_offset_out_of_range_is_malformed() -> None:
    seg = bytearray(tcp_segment(V4[0], 1, V4[1], 2, 0, 0, "S"))
    for doff in (0x20, 0xF0):
        seg[12] = doff
        got, stats = decode(101, ipv4_packet(V4[0], V4[1], 6, bytes(seg)))
        assert got is None and stats.malformed == 1


def test_segmentation_offload_zero_total_length() -> None:
    pkt = bytearray(tcp_pkt(payload=b"x" * 3000))
    pkt[2:4] = b"\0\0"
    check_tcp(decode(1, ethernet_frame(bytes(pkt)))[0], payload=b"x" * 3000)
    pkt6 = bytearray(tcp_pkt(V6, payload=b"y" * 70000))
    check_tcp(decode(229, bytes(pkt6))[0], V6, b"y" * 70000)


def test_bad_checksums_are_ignored() -> None:
    pkt = bytearray(tcp_pkt())
    pkt[10:12] = b"\xff\xff"  # IP header checksum
    pkt[36:38] = b"\x12\x34"  # TCP checksum
    check_tcp(decode(1, ethernet_frame(bytes(pkt)))[0])
    check_tcp(decode(1, ethernet_frame(tcp_pkt(checksum=False)))[0])


def test_not_ip_and_unknown() -> None:
    arp = ethernet_frame(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, ethertype=0x0806)
    got, stats = decode(1, arp)
    assert got is None and stats.non_ip == 1
    llc = ethernet_frame(b"\xaa\xaa\x03" + b"\0" * 40, ethertype=46)
    assert decode(1, llc)[1].non_ip == 1
    icmp = ipv4_packet(V4[0], V4[1], 1, b"\x08\x00\x00\x00\x00\x01\x00\x01")
    got, stats = decode(1, ethernet_frame(icmp))
    assert got is None and stats.other_protocol == 1
    got, stats = decode(147, tcp_pkt())
    assert got is None and stats.unknown_linktype == 1 and stats.unknown_linktypes == {147}
    got, stats = decode(101, b"\x10" + tcp_pkt()[1:])
    assert got is None and stats.malformed == 1  # raw IP that is not IP


def test_decode_packet_counts_into_given_stats() -> None:
    stats = LinkStats()
    defrag = IpDefragmenter()
    for _ in range(3):
        decode_packet(raw(101, tcp_pkt()), defrag, stats)
    decode_packet(raw(101, b""), defrag, stats)
    assert (stats.packets, stats.tcp, stats.malformed) == (4, 3, 1)


# -- differential against scapy -----------------------------------------------------------------


def _scapy_cases() -> list[tuple[int, bytes]]:
    from scapy.layers.inet import IP, TCP, UDP, IPOption_RR
    from scapy.layers.inet6 import (
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback

    tcp = TCP(
        sport=1234,
        dport=5683,
        seq=99,
        ack=7,
        flags="PA",
        options=[("MSS", 1460), ("NOP", None), ("WScale", 7)],
    )
    udp = UDP(sport=5684, dport=40000)
    ip4 = IP(src="10.9.8.7", dst="1.2.3.4", options=[IPOption_RR(routers=["1.1.1.1"])])
    ip6 = IPv6(src="fe80::1", dst="2001:db8::abcd")
    ext = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["2001:db8::1"]) / IPv6ExtHdrDestOpt()
    return [
        (1, bytes(Ether() / ip4 / tcp / b"payload")),
        (1, bytes(Ether() / Dot1AD(vlan=5) / Dot1Q(vlan=6) / ip4 / udp / b"dgram")),
        (1, bytes(Ether() / ip6 / ext / tcp / b"six")),
        (1, bytes(Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / TCP(flags="S"))),
        (113, bytes(CookedLinux(proto=0x0800) / ip4 / tcp / b"sll")),
        (276, bytes(CookedLinuxV2(proto=0x86DD) / ip6 / udp / b"sll2")),
        (0, bytes(Loopback(type=2) / ip4 / udp / b"null")),
        (101, bytes(ip6 / IPv6ExtHdrDestOpt() / udp / b"raw6")),
    ]


def _scapy_fields(linktype: int, data: bytes) -> tuple:
    from scapy.config import conf
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    cls = (
        Ether
        if linktype == 1
        else conf.l2types.num2layer.get(linktype, IPv6 if data[0] >> 4 == 6 else IP)
    )
    pkt = cls(data)
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    body = bytes(l4.payload)
    if TCP in pkt:
        return (ip.src, l4.sport, ip.dst, l4.dport, l4.seq, l4.ack, int(l4.flags), body)
    return (ip.src, l4.sport, ip.dst, l4.dport, body)


def test_differential_against_scapy() -> None:
    for linktype, data in _scapy_cases():
        got, _ = decode(linktype, data)
        assert got is not None, linktype
        ours: tuple
        if isinstance(got, TcpSegment):
            ours = (
                got.src_ip,
                got.src_port,
                got.dst_ip,
                got.dst_port,
                got.seq,
                got.ack,
                got.flags,
                got.payload,
            )
        else:
            assert isinstance(got, UdpDatagram)
            ours = (got.src_ip, got.src_port, got.dst_ip, got.dst_port, got.payload)
        assert ours == _scapy_fields(linktype, data), linktype


# -- fuzzing --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*LINKTYPES, 147]), st.binary(max_size=120), st.integers(0, 200))
def test_fuzz_arbitrary_packet_bytes(linktype: int, data: bytes, orig_extra: int) -> None:
    dec = LinkDecoder()
    got = dec.decode(raw(linktype, data, orig_len=len(data) + orig_extra))
    assert got is None or isinstance(got, TcpSegment | UdpDatagram)
    assert dec.stats.packets == 1


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(LINKTYPES),
    st.sampled_from([V4, V6]),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 120),
)
def test_fuzz_mutated_packets(
    linktype: int, addrs: tuple[str, str], udp: bool, flips: list[tuple[int, int]], cut: int
) -> None:
    if (linktype == 228 and addrs is V6) or (linktype == 229 and addrs is V4):
        addrs = V4 if linktype == 228 else V6
    pkt = ip_udp(addrs[0], 1, addrs[1], 2, b"abc" * 10) if udp else tcp_pkt(addrs)
    frame = bytearray(frame_for_linktype(linktype, pkt))
    for pos, value in flips:
        frame[pos % len(frame)] = value
    data = bytes(frame[: len(frame) - cut % len(frame)])
    dec = LinkDecoder(IpDefragmenter(max_pending=4))
    for _ in range(2):  # a second time, so that fragment state is exercised
        got = dec.decode(raw(linktype, data, orig_len=len(frame)))
        assert got is None or isinstance(got, TcpSegment | UdpDatagram)


def test_a_raw_ip_packet_that_is_not_ip_is_malformed_not_silently_skipped() -> None:
    """Link type 101 (raw IP) holding Ethernet frames (a mislabelled file): counted as
    malformed, which the capture's end reports, instead of vanishing as 'not IP'."""
    ethernet = bytes(12) + b"\x08\x00" + bytes(40)
    got, stats = decode(101, ethernet)
    assert got is None and stats.malformed == 1 and stats.non_ip == 0
