"""Reading real and derived captures: pcap variants, pcapng, gzip, stdin, merging, stats."""

from __future__ import annotations

import gzip
import io
import struct
import sys
from pathlib import Path

import pytest

from dissector.capture.ipfrag import IpDefragmenter
from dissector.capture.linklayer import LinkDecoder, decode_packet
from dissector.capture.packets import RawPacket, TcpSegment, UdpDatagram
from dissector.capture.reader import (
    CaptureFormatError,
    CaptureReader,
    DecryptionSecrets,
    open_capture_sources,
)
from dissector.capture.writer import (
    PcapngWriter,
    PcapWriter,
    ip_tcp,
    ip_udp,
    linux_sll2_frame,
)
from dissector.model import Finding

DATA = Path(__file__).parent / "data" / "capture"
TCP_CAPTURES = [
    "sparkprotocol-0.1.6__deviceos-0.7.0_full.pcap",
    "brewskey-1.0.21__deviceos-0.7.0_full.pcap",
]
UDP_CAPTURES = [
    "deviceos-1.0.1_udp_full.pcap",
    "openssl_ecdhe_ecdsa_aes128_ccm8.pcap",
    "openssl_ecdhe_ecdsa_aes128_gcm_sha256.pcap",
    "particle_mbedtls_ccm8_full.pcap",
]
PACKET_COUNTS = {
    "sparkprotocol-0.1.6__deviceos-0.7.0_full.pcap": 80,
    "brewskey-1.0.21__deviceos-0.7.0_full.pcap": 89,
    "deviceos-1.0.1_udp_full.pcap": 58,
    "openssl_ecdhe_ecdsa_aes128_ccm8.pcap": 16,
    "openssl_ecdhe_ecdsa_aes128_gcm_sha256.pcap": 16,
    "particle_mbedtls_ccm8_full.pcap": 16,
}

Unit = TcpSegment | UdpDatagram


def read_all(sources: list) -> tuple[list[RawPacket], list[Finding], CaptureReader]:
    reader = CaptureReader(sources)
    packets: list[RawPacket] = []
    findings: list[Finding] = []
    for item in reader:
        if isinstance(item, Finding):
            findings.append(item)
        else:
            packets.append(item)
    return packets, findings, reader


def decode_all(packets: list[RawPacket]) -> list[Unit]:
    dec = LinkDecoder()
    units = [dec.decode(p) for p in packets]
    assert all(u is not None for u in units), dec.stats
    return units  # type: ignore[return-value]


def key(u: Unit) -> tuple:
    """Everything but the timestamp and packet index."""
    if isinstance(u, TcpSegment):
        return ("tcp", u.src_ip, u.src_port, u.dst_ip, u.dst_port, u.seq, u.ack, u.flags, u.payload)
    return ("udp", u.src_ip, u.src_port, u.dst_ip, u.dst_port, u.payload)


def reference_units(name: str) -> list[Unit]:
    packets, findings, _ = read_all([DATA / name])
    assert findings == []
    return decode_all(packets)


def ip_packet_for(u: Unit, src: str | None = None, dst: str | None = None) -> bytes:
    s, d = src or u.src_ip, dst or u.dst_ip
    if isinstance(u, TcpSegment):
        return ip_tcp(s, u.src_port, d, u.dst_port, u.seq, u.ack, u.flags, u.payload)
    return ip_udp(s, u.src_port, d, u.dst_port, u.payload)


# -- the real captures ------------------------------------------------------------------------


def _scapy_view(pkt: object) -> tuple:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.packet import Padding

    ip = pkt[IP]  # type: ignore[index]
    l4 = ip[TCP] if TCP in ip else ip[UDP]
    raw = bytes(l4.payload)
    pad = len(pkt[Padding].load) if Padding in pkt else 0  # type: ignore[index, operator]
    payload = raw[: len(raw) - pad]
    if TCP in ip:
        return ("tcp", ip.src, l4.sport, ip.dst, l4.dport, l4.seq, l4.ack, int(l4.flags), payload)
    return ("udp", ip.src, l4.sport, ip.dst, l4.dport, payload)


@pytest.mark.parametrize("name", TCP_CAPTURES + UDP_CAPTURES)
def test_reference_capture_agrees_with_scapy_packet_by_packet(name: str) -> None:
    import scapy.layers.inet  # noqa: F401 - registers the Ethernet/IP dissectors
    from scapy.utils import rdpcap

    packets, findings, reader = read_all([DATA / name])
    assert findings == []
    assert len(packets) == PACKET_COUNTS[name]
    assert [p.index for p in packets] == list(range(1, len(packets) + 1))
    units = decode_all(packets)
    theirs = rdpcap(str(DATA / name))
    assert len(theirs) == len(units)
    for ours, pkt, raw in zip(units, theirs, packets, strict=True):
        assert key(ours) == _scapy_view(pkt)
        assert raw.data == bytes(pkt)
        assert ours.ts == pytest.approx(float(pkt.time), abs=1e-6)
    st = reader.stats[0]
    assert st.format == "pcap"
    assert st.linktypes == [1]
    assert st.packets == len(packets)
    assert st.size == (DATA / name).stat().st_size == st.bytes_read
    assert st.first_ts == packets[0].ts and st.last_ts == packets[-1].ts
    assert not st.truncated and not st.corrupt


@pytest.mark.parametrize("name", TCP_CAPTURES)
def test_tcp_streams_carry_the_handshake(name: str) -> None:
    units = reference_units(name)
    assert all(isinstance(u, TcpSegment) for u in units)
    first = units[0]
    assert isinstance(first, TcpSegment)
    assert first.syn and not first.has_ack and first.dst_port == 5683
    # handshake: cloud nonce (40), device RSA block (256), cloud key + signature (384)
    sizes = [len(u.payload) for u in units if u.payload]
    assert sizes[:3] == [40, 256, 384]
    assert next(u for u in units if u.payload).src_port == 5683
    # then each direction is a chain of frames: 2-byte length + whole AES-CBC blocks
    for port_field in ("src_port", "dst_port"):
        with_data = [u for u in units if u.payload and getattr(u, port_field) == 5683]
        stream = b"".join(u.payload for u in with_data[2 if port_field == "src_port" else 1 :])
        pos = frames = 0
        while pos < len(stream):
            length = int.from_bytes(stream[pos : pos + 2], "big")
            assert length % 16 == 0 and length > 0
            pos += 2 + length
            frames += 1
        assert pos == len(stream) and frames > 15


@pytest.mark.parametrize("name", UDP_CAPTURES)
def test_udp_captures_are_dtls_records(name: str) -> None:
    units = reference_units(name)
    assert all(isinstance(u, UdpDatagram) and 5684 in (u.src_port, u.dst_port) for u in units)
    # every datagram starts with a DTLS record header: content type, version 0xfe..
    assert all(u.payload[0] in (20, 21, 22, 23, 25) and u.payload[1] == 0xFE for u in units)


# -- pcap variants ----------------------------------------------------------------------------


def _write_pcap(units: list[Unit], **kw: object) -> bytes:
    from dissector.capture.writer import ethernet_frame

    buf = io.BytesIO()
    w = PcapWriter(buf, 1, **kw)  # type: ignore[arg-type]
    for u in units:
        w.write_packet(u.ts, ethernet_frame(ip_packet_for(u)))
    return buf.getvalue()


@pytest.mark.parametrize(
    "options",
    [{}, {"big_endian": True}, {"nanosecond": True}, {"nanosecond": True, "big_endian": True}],
)
def test_pcap_byte_orders_and_resolutions(options: dict) -> None:
    units = reference_units(TCP_CAPTURES[0])
    data = _write_pcap(units, **options)
    packets, findings, reader = read_all([io.BytesIO(data)])
    assert findings == []
    again = decode_all(packets)
    assert [key(u) for u in again] == [key(u) for u in units]
    tol = 1e-9 * 1e9 * 2e-7  # float rounding on ~1.8e9 s values
    for a, b in zip(again, units, strict=True):
        assert a.ts == pytest.approx(b.ts, abs=max(tol, 1e-6))
    assert reader.stats[0].byte_order == ("big" if options.get("big_endian") else "little")


def test_nanosecond_timestamps_keep_sub_microsecond_digits() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, 101, nanosecond=True)
    w.write_packet(1000.000000123, ip_udp("10.0.0.1", 1, "10.0.0.2", 2, b"x"))
    packets, _, _ = read_all([io.BytesIO(buf.getvalue())])
    assert packets[0].ts == pytest.approx(1000.000000123, abs=1e-12)


def test_modified_pcap_magic_with_longer_record_headers() -> None:
    frame = ip_udp("10.0.0.1", 1, "10.0.0.2", 2, b"hello")
    header = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 101)
    record = struct.pack("<IIII", 5, 6, len(frame), len(frame)) + b"\0" * 8 + frame
    packets, findings, _ = read_all([io.BytesIO(header + record * 2)])
    assert findings == [] and len(packets) == 2
    assert packets[0].data == frame and packets[0].ts == pytest.approx(5.000006)


def test_snaplen_keeps_orig_len() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, 101, snaplen=30)
    frame = ip_udp("10.0.0.1", 1, "10.0.0.2", 2, b"x" * 100)
    w.write_packet(1.0, frame)
    packets, findings, _ = read_all([io.BytesIO(buf.getvalue())])
    assert findings == []
    assert packets[0].data == frame[:30] and packets[0].orig_len == len(frame)


# -- pcapng -----------------------------------------------------------------------------------


def test_pcapng_sections_interfaces_and_block_kinds() -> None:
    tcp_units = reference_units(TCP_CAPTURES[0])
    udp_units = reference_units(UDP_CAPTURES[0])
    from dissector.capture.writer import ethernet_frame

    buf = io.BytesIO()
    w = PcapngWriter(buf)
    eth = w.add_interface(1, name="lo")
    sll2 = w.add_interface(276, name="any", tsresol=9)
    w.write_block(0x00000BAD, b"custom block \x00\x01")  # custom: skipped
    w.write_block(4, b"\x00" * 8)  # name resolution block: skipped
    w.write_decryption_secrets(DecryptionSecrets.TLS_KEY_LOG, b"CLIENT_RANDOM aa bb\n")
    half = len(tcp_units) // 2
    for u in tcp_units[:half]:
        w.write(u.ts, ethernet_frame(ip_packet_for(u)), eth)
    w.write_block(5, struct.pack("<III", 0, 0, 0))  # interface statistics: skipped
    for u in udp_units[:10]:
        w.write(u.ts, linux_sll2_frame(ip_packet_for(u)), sll2)
    # second section, big-endian, power-of-two resolution, timestamp offset
    w.new_section(big_endian=True)
    raw = w.add_interface(101, tsresol=0x80 | 20, tsoffset=1_700_000_000)
    for u in tcp_units[half:]:
        w.write(u.ts, ip_packet_for(u), raw)
    w.write_obsolete_packet(udp_units[10].ts, ip_packet_for(udp_units[10]), raw)
    w.write_simple_packet(ip_packet_for(udp_units[11]))

    seen: list[DecryptionSecrets] = []
    reader = CaptureReader([io.BytesIO(buf.getvalue())], on_secrets=seen.append)
    items = list(reader)
    assert not [i for i in items if isinstance(i, Finding)]
    packets = [i for i in items if isinstance(i, RawPacket)]
    units = decode_all(packets)
    expected = tcp_units[:half] + udp_units[:10] + tcp_units[half:] + udp_units[10:12]
    assert [key(u) for u in units] == [key(u) for u in expected]
    for got, want in zip(units[:-1], expected[:-1], strict=True):
        assert got.ts == pytest.approx(want.ts, abs=2e-6)
    # a simple packet block has no timestamp: it inherits the previous packet's
    assert units[-1].ts == units[-2].ts
    assert [p.linktype for p in packets[:half]] == [1] * half
    assert {p.linktype for p in packets[half : half + 10]} == {276}
    st = reader.stats[0]
    assert st.format == "pcapng" and st.sections == 2 and st.interfaces == 3
    assert st.linktypes == [1, 276, 101]
    assert st.packets == len(packets)
    assert st.byte_order == "little"
    assert (
        seen
        == reader.secrets
        == [DecryptionSecrets(DecryptionSecrets.TLS_KEY_LOG, b"CLIENT_RANDOM aa bb\n", "<stream>")]
    )


def test_pcapng_first_section_big_endian() -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf, big_endian=True)
    w.add_interface(228)
    pkt = ip_udp("10.1.1.1", 53, "10.1.1.2", 5353, b"query")
    w.write(12.5, pkt)
    packets, findings, reader = read_all([io.BytesIO(buf.getvalue())])
    assert findings == [] and packets[0].data == pkt and packets[0].ts == 12.5
    assert reader.stats[0].byte_order == "big"


def test_pcapng_readable_by_scapy_too() -> None:
    import scapy.layers.inet  # noqa: F401 - registers the IP dissectors
    from scapy.utils import rdpcap

    units = reference_units(TCP_CAPTURES[1])[:10]
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    w.add_interface(101)
    for u in units:
        w.write(u.ts, ip_packet_for(u))
    path = io.BytesIO(buf.getvalue())
    theirs = rdpcap(path)
    assert [bytes(p) for p in theirs] == [ip_packet_for(u) for u in units]


# -- sources: gzip, stdin, several files -------------------------------------------------------


def test_gzip_detected_by_magic_not_suffix(tmp_path: Path) -> None:
    plain = (DATA / TCP_CAPTURES[0]).read_bytes()
    target = tmp_path / "capture.pcap"  # no .gz suffix
    target.write_bytes(gzip.compress(plain))
    packets, findings, reader = read_all([target])
    assert findings == []
    assert [key(u) for u in decode_all(packets)] == [
        key(u) for u in reference_units(TCP_CAPTURES[0])
    ]
    st = reader.stats[0]
    assert st.compressed and st.format == "pcap" and st.bytes_read == len(plain)


def test_stdin_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = (DATA / UDP_CAPTURES[1]).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(plain))))
    packets, findings, reader = read_all(["-"])
    assert findings == [] and len(packets) == 16
    assert reader.stats[0].name == "<stdin>" and packets[0].source == "<stdin>"
    assert reader.stats[0].size is None
    with pytest.raises(CaptureFormatError, match="only once"):
        CaptureReader(["-", "-"])


def test_several_files_merge_by_time(tmp_path: Path) -> None:
    units = reference_units(TCP_CAPTURES[0])
    from dissector.capture.writer import ethernet_frame

    paths = []
    for part in range(3):
        path = tmp_path / f"part{part}.pcap"
        with path.open("wb") as fh:
            w = PcapWriter(fh, 1)
            for u in units[part::3]:
                w.write_packet(u.ts, ethernet_frame(ip_packet_for(u)))
        paths.append(path)
    packets, findings, reader = read_all(list(reversed(paths)))
    assert findings == []
    assert [key(u) for u in decode_all(packets)] == [key(u) for u in units]
    assert [p.index for p in packets] == list(range(1, len(units) + 1))
    assert [st.packets for st in reader.stats] == [
        len(units[2::3]),
        len(units[1::3]),
        len(units[::3]),
    ]
    assert packets[0].source == str(paths[0])


def test_merge_ties_keep_file_order() -> None:
    def capture(tag: bytes) -> io.BytesIO:
        buf = io.BytesIO()
        w = PcapWriter(buf, 101)
        for i in range(3):
            w.write_packet(100.0 + i, ip_udp("10.0.0.1", 1, "10.0.0.2", 2, tag + bytes([i])))
        buf.seek(0)
        return buf

    packets, _, _ = read_all([capture(b"A"), capture(b"B")])
    payloads = [decode_all([p])[0].payload for p in packets]
    assert payloads == [b"A\0", b"B\0", b"A\1", b"B\1", b"A\2", b"B\2"]


def test_open_capture_sources_and_context_manager() -> None:
    with open_capture_sources([str(DATA / UDP_CAPTURES[2])]) as reader:
        assert sum(1 for _ in reader) == 16


def test_decode_packet_function_without_stats() -> None:
    packets, _, _ = read_all([DATA / UDP_CAPTURES[3]])
    defrag = IpDefragmenter()
    units = [decode_packet(p, defrag) for p in packets]
    assert all(isinstance(u, UdpDatagram) for u in units)
    assert [u.index for u in units if u] == list(range(1, 17))


def test_reader_is_single_pass() -> None:
    reader = CaptureReader([DATA / UDP_CAPTURES[3]])
    assert len(list(reader)) == 16
    with pytest.raises(RuntimeError):
        iter(reader)


def test_hot_path_does_not_import_scapy() -> None:
    import subprocess

    code = (
        "import sys\n"
        "import dissector.capture.reader, dissector.capture.linklayer\n"
        "import dissector.capture.ipfrag, dissector.capture.packets, dissector.capture.writer\n"
        "from dissector.capture.reader import CaptureReader\n"
        "from dissector.capture.linklayer import LinkDecoder\n"
        "d = LinkDecoder()\n"
        f"reader = CaptureReader([{str(DATA / TCP_CAPTURES[0])!r}])\n"
        "n = sum(d.decode(p) is not None for p in reader)\n"
        "assert n == 80, n\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'scapy'], 'scapy imported'\n"
    )
    root = Path(__file__).parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
