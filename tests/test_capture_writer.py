"""Writers and packet builders, checked against scapy and against our own reader."""

from __future__ import annotations

import io
import random

import pytest

from dissector.capture.reader import CaptureReader
from dissector.capture.writer import (
    PcapngWriter,
    PcapWriter,
    build_ethernet_ipv4_tcp,
    build_ethernet_ipv4_udp,
    build_ethernet_ipv6_tcp,
    build_ethernet_ipv6_udp,
    build_tcp_frame,
    build_udp_frame,
    fragment_ipv4,
    frame_for_linktype,
    internet_checksum,
    ip_tcp,
    ip_udp,
    linux_sll2_frame,
    linux_sll_frame,
)


def test_internet_checksum_rfc1071_example() -> None:
    # RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, checksum 220d
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6")) == internet_checksum(
        bytes.fromhex("0001f203f4f5f600")
    )


@pytest.mark.parametrize("src,dst", [("10.0.0.1", "192.168.7.9"), ("fe80::1", "2001:db8::2")])
def test_checksums_match_scapy(src: str, dst: str) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    rnd = random.Random(5)
    for n in (0, 1, 7, 100, 1001):
        payload = rnd.randbytes(n)
        for pkt in (
            ip_tcp(
                src, 1234, dst, 5683, 0xDEADBEEF, 42, "SA", payload, options=b"\x02\x04\x05\xb4"
            ),
            ip_udp(src, 5684, dst, 40000, payload),
        ):
            parsed = (IPv6 if ":" in src else IP)(pkt)
            l4 = parsed[TCP] if TCP in parsed else parsed[UDP]
            theirs = parsed.copy()
            theirs_l4 = theirs[TCP] if TCP in theirs else theirs[UDP]
            del theirs_l4.chksum
            if IP in theirs:
                del theirs[IP].chksum
            rebuilt = type(parsed)(bytes(theirs))
            assert l4.chksum == (rebuilt[TCP] if TCP in rebuilt else rebuilt[UDP]).chksum
            if IP in parsed:
                assert parsed[IP].chksum == rebuilt[IP].chksum
            assert bytes(l4.payload) == payload


def test_unchecked_builders_leave_zero_checksums() -> None:
    pkt = ip_tcp("10.0.0.1", 1, "10.0.0.2", 2, 0, 0, 0x02, b"x", checksum=False)
    assert pkt[10:12] == b"\0\0" and pkt[36:38] == b"\0\0"
    dgram = ip_udp("10.0.0.1", 1, "10.0.0.2", 2, b"x", checksum=False)
    assert dgram[26:28] == b"\0\0"


def test_tcp_flags_as_letters_or_bits() -> None:
    a = ip_tcp("10.0.0.1", 1, "10.0.0.2", 2, 0, 0, "FSRPAUEC")
    b = ip_tcp("10.0.0.1", 1, "10.0.0.2", 2, 0, 0, 0xFF)
    assert a == b and a[33] == 0xFF


def test_link_builders_parse_in_scapy() -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether

    tcp4 = build_ethernet_ipv4_tcp("1.2.3.4", 10, "5.6.7.8", 20, 1, 2, "PA", b"data")
    assert Ether(tcp4)[TCP].load == b"data"
    tcp6 = build_ethernet_ipv6_tcp("::1", 10, "::2", 20, 1, 2, "PA", b"data6")
    assert Ether(tcp6)[IPv6][TCP].load == b"data6"
    udp4 = build_ethernet_ipv4_udp("1.2.3.4", 10, "5.6.7.8", 20, b"u", pad=True)
    assert len(udp4) == 60 and Ether(udp4)[UDP].load == b"u"
    udp6 = build_ethernet_ipv6_udp("::1", 10, "::2", 20, b"u6")
    assert Ether(udp6)[UDP].load == b"u6"
    sll = CookedLinux(linux_sll_frame(ip_udp("1.2.3.4", 1, "5.6.7.8", 2, b"s")))
    assert sll[IP].dst == "5.6.7.8" and sll[UDP].load == b"s"
    sll2 = CookedLinuxV2(linux_sll2_frame(ip_udp("::1", 1, "::2", 2, b"s2")))
    assert sll2[IPv6].dst == "::2" and sll2[UDP].load == b"s2"
    assert build_tcp_frame(113, "1.2.3.4", 1, "5.6.7.8", 2, 0, 0, "S")[:2] == b"\0\0"
    assert build_udp_frame(101, "1.2.3.4", 1, "5.6.7.8", 2, b"r")[0] == 0x45
    with pytest.raises(ValueError):
        frame_for_linktype(147, b"")


def test_fragment_ipv4_reassembled_by_scapy() -> None:
    from scapy.layers.inet import IP, UDP, defragment

    payload = bytes(range(256)) * 5
    whole = ip_udp("10.0.0.1", 5684, "10.0.0.2", 9, payload, ident=7)
    frags = fragment_ipv4(whole, 512)
    assert len(frags) == 3
    assert [IP(f).flags.MF for f in frags] == [True, True, False]
    joined = defragment([IP(f) for f in frags])
    assert len(joined) == 1 and joined[0][UDP].load == payload
    with pytest.raises(ValueError):
        fragment_ipv4(whole, 100)


def test_pcap_writer_read_by_scapy_and_by_us() -> None:
    import scapy.layers.inet  # noqa: F401 - registers Ethernet/IP
    from scapy.utils import rdpcap

    frames = [build_ethernet_ipv4_tcp("1.2.3.4", 1, "5.6.7.8", 2, i, 0, "A", bytes([i]) * i)
              for i in range(5)]  # fmt: skip
    stamps = [1_700_000_000.25, 1_700_000_000.5, 1_700_000_001.999999, 1_700_000_002.0, 3.0]
    for nano in (False, True):
        for big in (False, True):
            buf = io.BytesIO()
            w = PcapWriter(buf, 1, nanosecond=nano, big_endian=big)
            for ts, frame in zip(stamps, frames, strict=True):
                w.write(ts, frame)
            w.flush()
            theirs = rdpcap(io.BytesIO(buf.getvalue()))
            assert [bytes(p) for p in theirs] == frames
            assert [float(p.time) for p in theirs] == pytest.approx(stamps, abs=1e-6)
            ours = list(CaptureReader([io.BytesIO(buf.getvalue())]))
            assert [p.data for p in ours] == frames  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), 1).write(0.0, b"", interface=1)


def test_timestamp_rounding_carries_into_seconds() -> None:
    buf = io.BytesIO()
    PcapWriter(buf, 101).write_packet(1.9999999, b"\x45")
    assert buf.getvalue()[24:32] == (2).to_bytes(4, "little") + (0).to_bytes(4, "little")


def test_pcapng_writer_timestamps_and_scapy() -> None:
    import scapy.layers.inet  # noqa: F401
    from scapy.utils import rdpcap

    frame = build_ethernet_ipv4_udp("1.2.3.4", 1, "5.6.7.8", 2, b"ng")
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    w.add_interface(1, name="eth0")
    w.add_interface(1, tsresol=9)
    w.add_interface(1, tsresol=0x80 | 16)
    w.add_interface(1, tsoffset=1_600_000_000)
    for iface in range(4):
        w.write(1_700_000_000.123456, frame, iface)
    w.write_packet(5.5, frame)
    w.flush()
    ours = list(CaptureReader([io.BytesIO(buf.getvalue())]))
    assert [p.ts for p in ours] == pytest.approx([1_700_000_000.123456] * 4 + [5.5], abs=2e-5)
    theirs = rdpcap(io.BytesIO(buf.getvalue()))
    assert [bytes(p) for p in theirs] == [frame] * 5
    assert float(theirs[1].time) == pytest.approx(1_700_000_000.123456, abs=1e-6)


def test_pcapng_write_packet_adds_an_ethernet_interface() -> None:
    buf = io.BytesIO()
    PcapngWriter(buf).write_packet(1.0, b"\0" * 14)
    reader = CaptureReader([io.BytesIO(buf.getvalue())])
    assert len(list(reader)) == 1 and reader.stats[0].linktypes == [1]
