"""Stream writes → TCP/IP packets → pcap/pcapng, read back with the project's own reader."""

from __future__ import annotations

import io
import ipaddress
import itertools
import struct
from typing import Any

import pytest

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import TcpSegment
from dissector.capture.reader import CaptureReader
from dissector.capture.writer import internet_checksum
from dissector.model import Direction
from dissector.simulate import (
    ByteSource,
    SimulationError,
    StreamWrite,
    TcpFlow,
    TcpPacketizer,
    build_packets,
    write_pcap,
    write_pcapng,
)

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
T0 = 1_700_000_000.0

WRITES = [
    StreamWrite(T0, C2D, bytes(range(40))),
    StreamWrite(T0 + 0.01, D2C, b"\x01" * 256),
    StreamWrite(T0 + 0.02, C2D, b"\x02" * 384),
    StreamWrite(T0 + 0.03, D2C, b"\x00\x10" + b"\x03" * 16),
    StreamWrite(T0 + 0.03, D2C, b"\x00\x20" + b"\x04" * 32),
    StreamWrite(T0 + 0.04, C2D, b"\x00\x10" + b"\x05" * 16),
]


def read_back(data: bytes) -> list[TcpSegment]:
    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([io.BytesIO(data)]):
        assert not hasattr(item, "code"), item  # no reader findings
        seg = decoder.decode(item)  # type: ignore[arg-type]
        assert isinstance(seg, TcpSegment)
        out.append(seg)
    return out


def pcap(flows: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    write_pcap(buf, flows, **kwargs)
    return buf.getvalue()


def stream(segs: list[TcpSegment], src_port: int) -> bytes:
    return b"".join(s.payload for s in segs if s.src_port == src_port)


def test_connection_has_handshake_data_and_close_with_consistent_numbers() -> None:
    segs = read_back(pcap(TcpFlow(WRITES, device=("10.1.2.3", 40000)), segment_size=100))
    assert [s.flag_text for s in segs[:3]] == ["S", "SA", "A"]
    assert [s.flag_text for s in segs[-3:]] == ["FA", "FA", "A"]
    syn, synack = segs[0], segs[1]
    assert (syn.src_ip, syn.src_port, syn.dst_ip, syn.dst_port) == (
        "10.1.2.3",
        40000,
        "10.0.0.1",
        5683,
    )
    assert synack.ack == syn.seq + 1
    expect = {40000: syn.seq + 1, 5683: synack.seq + 1}
    for seg in segs[2:-3]:
        peer = 5683 if seg.src_port == 40000 else 40000
        assert seg.seq == expect[seg.src_port]
        assert seg.ack == expect[peer]
        assert 0 < len(seg.payload) <= 100 or seg.flag_text == "A"
        expect[seg.src_port] += len(seg.payload)
    fin, fin2, last = segs[-3:]
    assert fin.src_port == 40000 and fin.seq == expect[40000] and fin2.ack == fin.seq + 1
    assert last.seq == fin.seq + 1 and last.ack == fin2.seq + 1
    assert stream(segs, 40000) == b"".join(w.data for w in WRITES if w.direction is D2C)
    assert stream(segs, 5683) == b"".join(w.data for w in WRITES if w.direction is C2D)
    data_ts = sorted({s.ts for s in segs if s.payload})
    assert data_ts == pytest.approx(sorted({w.ts for w in WRITES}), abs=1e-6)
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(segs))


def test_checksums_are_correct_for_ipv4_and_ipv6() -> None:
    for device, cloud in (
        (("10.0.0.2", 50000), ("10.0.0.1", 5683)),
        (("fd00::2", 50000), ("fd00::1", 5683)),
    ):
        for ts, frame in build_packets(TcpFlow(WRITES, device=device, cloud=cloud)):
            ip = frame[14:]
            if ip[0] >> 4 == 4:
                assert internet_checksum(ip[:20]) == 0
                seg = ip[20:]
                src, dst = ip[12:16], ip[16:20]
                pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
            else:
                seg = ip[40:]
                src, dst = ip[8:24], ip[24:40]
                pseudo = src + dst + struct.pack("!I3xB", len(seg), 6)
            assert device[0] in {ipaddress.ip_address(a).compressed for a in (src, dst)}
            assert internet_checksum(pseudo + seg) == 0, ts


def test_flows_without_checksums_still_read_back() -> None:
    packets = build_packets(TcpFlow(WRITES), checksum=False)
    assert all(frame[14 + 20 + 16 : 14 + 20 + 18] == b"\0\0" for _, frame in packets)
    assert len(read_back(pcap(TcpFlow(WRITES), checksum=False))) == len(packets)


def test_segment_size_and_coalescing() -> None:
    tiny = read_back(pcap(TcpFlow(WRITES), segment_size=1))
    assert all(len(s.payload) <= 1 for s in tiny)
    assert sum(len(s.payload) for s in tiny) == sum(len(w.data) for w in WRITES)
    plain = read_back(pcap(TcpFlow(WRITES)))
    merged = read_back(pcap(TcpFlow(WRITES), coalesce=True))
    assert len(merged) == len(plain) - 1  # the two device frames at the same instant
    assert stream(merged, 5683) == stream(plain, 5683)


def test_close_variants_and_mid_stream_start() -> None:
    rst = read_back(pcap(TcpFlow(WRITES, close="rst", syn=False)))
    assert rst[0].payload == WRITES[0].data and rst[-1].flag_text == "RA"
    cloud = read_back(pcap(TcpFlow(WRITES, close="cloud")))
    assert cloud[-3].flag_text == "FA" and cloud[-3].src_port == 5683
    left_open = read_back(pcap(TcpFlow(WRITES, close=None)))
    assert left_open[-1].payload == WRITES[-1].data
    assert [s.flag_text for s in read_back(pcap(TcpFlow([])))] == ["S", "SA", "A", "FA", "FA", "A"]


def test_several_flows_are_merged_by_time_with_distinct_ports() -> None:
    later = [StreamWrite(w.ts + 0.005, w.direction, w.data) for w in WRITES]
    segs = read_back(pcap([TcpFlow(WRITES), TcpFlow(later)], seed=3))
    ports = {s.src_port for s in segs if s.dst_port == 5683}
    assert len(ports) == 2
    assert [s.ts for s in segs] == sorted(s.ts for s in segs)
    for port in ports:
        assert stream(segs, port) == b"".join(w.data for w in WRITES if w.direction is D2C)


def test_pcapng_holds_the_same_packets_as_pcap() -> None:
    buf = io.BytesIO()
    count = write_pcapng(buf, TcpFlow(WRITES), seed=5)
    ng = read_back(buf.getvalue())
    classic = read_back(pcap(TcpFlow(WRITES), seed=5, nanosecond=True))
    assert count == len(ng) == len(classic)
    assert [(s.seq, s.ack, s.flags, s.payload) for s in ng] == [
        (s.seq, s.ack, s.flags, s.payload) for s in classic
    ]


def test_other_link_types_and_paths(tmp_path: Any) -> None:
    for linktype in (0, 101, 113, 276):
        data = pcap(TcpFlow(WRITES), linktype=linktype)
        assert struct.unpack_from("<I", data, 20)[0] == linktype
        assert stream(read_back(data), 5683) == b"".join(
            w.data for w in WRITES if w.direction is C2D
        )
    path = tmp_path / "flow.pcap"
    assert write_pcap(path, TcpFlow(WRITES)) == len(build_packets(TcpFlow(WRITES)))
    assert path.read_bytes() == pcap(TcpFlow(WRITES))
    ng = tmp_path / "flow.pcapng"
    write_pcapng(str(ng), TcpFlow(WRITES))
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_same_seed_same_bytes_other_seed_other_numbers() -> None:
    assert pcap(TcpFlow(WRITES), seed=9) == pcap(TcpFlow(WRITES), seed=9)
    a = read_back(pcap(TcpFlow(WRITES), seed=9))
    b = read_back(pcap(TcpFlow(WRITES), seed=10))
    assert a[0].seq != b[0].seq or a[0].src_port != b[0].src_port


def test_bad_input_raises_simulation_error() -> None:
    backwards = [WRITES[1], WRITES[0]]
    with pytest.raises(SimulationError):
        build_packets(TcpFlow(backwards))
    with pytest.raises(SimulationError):
        build_packets(TcpFlow(WRITES), segment_size=0)
    with pytest.raises(SimulationError):
        build_packets(TcpFlow(WRITES, device=("not an address", 1)))
    with pytest.raises(SimulationError):
        build_packets(TcpFlow(WRITES, close="sideways"))
    with pytest.raises(SimulationError):
        build_packets(TcpFlow(WRITES), linktype=9999)
    with pytest.raises(SimulationError):
        build_packets(WRITES)  # type: ignore[arg-type]


def test_packetizer_can_be_driven_stream_wise() -> None:
    pk = TcpPacketizer(("10.0.0.2", 50001), ("10.0.0.1", 5683), rng=ByteSource(1))
    packets = pk.open(T0)
    for w in WRITES:
        packets += pk.data(w.ts, w.direction, w.data)
    packets += pk.close(T0 + 1, C2D)
    flow = TcpFlow(WRITES, device=("10.0.0.2", 50001), close=None)
    assert packets[:-3] == build_packets(flow, seed=1)
    assert [flags for flags in (f[14 + 20 + 13] for _, f in packets[-3:])] == [0x11, 0x11, 0x10]
