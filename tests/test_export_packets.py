"""The export packet builders and writer: exported-PDU TLVs, synthesized IP/UDP, files our
own reader reads back, and the event driver (decoded messages only, in order)."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, UdpDatagram
from dissector.capture.reader import CaptureReader
from dissector.coap import ACK, CON, CoapMessage, CoapOption, encode
from dissector.export import (
    LINKTYPE_RAW,
    LINKTYPE_WIRESHARK_UPPER_PDU,
    CoapPacketWriter,
    ExportError,
    export_events,
    exported_pdu_header,
    udp_ip_packet,
)
from dissector.model import Direction
from dissector.pipeline import SessionStarted
from dissector.protocol.events import EncryptedInfo, MessageEvent
from dissector.protocol.session import SessionInfo

DEVICE = ("192.0.2.10", 40000)
CLOUD = ("198.51.100.7", 5684)
V6_DEVICE = ("2001:db8::10", 40000)
V6_CLOUD = ("2001:db8::1", 5683)


def parse_tlvs(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split an exported-PDU packet into its TLVs (values with padding) and the PDU."""
    tlvs = []
    pos = 0
    while True:
        tag, length = struct.unpack_from("!HH", data, pos)
        pos += 4
        if tag == 0:
            assert length == 0
            return tlvs, data[pos:]
        assert length % 4 == 0, "every value is padded to 4 bytes"
        tlvs.append((tag, data[pos : pos + length]))
        pos += length


def test_exported_pdu_header_names_coap_addresses_udp_and_ports() -> None:
    header = exported_pdu_header(DEVICE, CLOUD)
    tlvs, rest = parse_tlvs(header)
    assert rest == b""
    assert tlvs == [
        (12, b"coap"),
        (20, bytes([192, 0, 2, 10])),
        (21, bytes([198, 51, 100, 7])),
        (24, struct.pack("!I", 3)),  # EXP_PDU_PT_UDP
        (25, struct.pack("!I", 40000)),
        (26, struct.pack("!I", 5684)),
    ]


def test_exported_pdu_header_pads_names_and_uses_ipv6_tags() -> None:
    tlvs, _ = parse_tlvs(exported_pdu_header(V6_DEVICE, V6_CLOUD, dissector="coap-x"))
    assert tlvs[0] == (12, b"coap-x\0\0")
    assert [t for t, _ in tlvs[1:3]] == [22, 23]
    assert tlvs[1][1] == b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x10"


@pytest.mark.parametrize(
    ("src", "dst"),
    [(DEVICE, V6_CLOUD), (("not-an-ip", 1), CLOUD), (DEVICE, ("300.1.1.1", 5683))],
)
def test_bad_or_mixed_addresses_are_export_errors(
    src: tuple[str, int], dst: tuple[str, int]
) -> None:
    with pytest.raises(ExportError):
        exported_pdu_header(src, dst)
    with pytest.raises(ExportError):
        udp_ip_packet(src, dst, b"\x40\x00\x00\x01")


@pytest.mark.parametrize(("src", "dst"), [(DEVICE, CLOUD), (V6_DEVICE, V6_CLOUD)])
def test_udp_packet_decodes_back_with_our_link_decoder(
    src: tuple[str, int], dst: tuple[str, int]
) -> None:
    payload = encode(CoapMessage(type=CON, code=1, mid=7, token=b"\x01"))
    unit = LinkDecoder().decode(RawPacket(1.0, LINKTYPE_RAW, udp_ip_packet(src, dst, payload),
                                          0, 1, "x"))  # fmt: skip
    assert isinstance(unit, UdpDatagram)
    assert (unit.src_ip, unit.src_port, unit.dst_ip, unit.dst_port) == (*src, *dst)
    assert unit.payload == payload


def test_udp_packet_refuses_what_a_datagram_cannot_hold() -> None:
    with pytest.raises(ExportError, match="--encap pdu"):
        udp_ip_packet(DEVICE, CLOUD, b"\0" * 65508)


@given(
    src=st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
    dst=st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
    name=st.text("abcdefghijklmnopqrstuvwxyz_-.", min_size=1, max_size=20),
)
def test_exported_pdu_tlvs_always_parse_back(
    src: tuple[str, int], dst: tuple[str, int], name: str
) -> None:
    tlvs, rest = parse_tlvs(exported_pdu_header(src, dst, dissector=name) + b"PDU")
    assert rest == b"PDU"
    assert tlvs[0][1].rstrip(b"\0") == name.encode()
    assert struct.unpack("!I", tlvs[4][1])[0] == src[1]
    assert struct.unpack("!I", tlvs[5][1])[0] == dst[1]


def _read(data: bytes) -> list[RawPacket]:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".cap") as fh:
        fh.write(data)
        fh.flush()
        return [p for p in CaptureReader([fh.name]) if isinstance(p, RawPacket)]


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
@pytest.mark.parametrize("encap", ["pdu", "udp"])
def test_writer_files_read_back_with_times_and_link_type(fmt: str, encap: str) -> None:
    buf = io.BytesIO()
    writer = CoapPacketWriter(buf, fmt=fmt, encap=encap)
    msg = encode(CoapMessage(type=ACK, code=0, mid=0x1234, token=b""))
    writer.write(1795641070.149021, DEVICE, CLOUD, Direction.CLOUD_TO_DEVICE, msg, "tcp-1 x")
    writer.write(1795641070.5, DEVICE, CLOUD, Direction.DEVICE_TO_CLOUD, msg)
    writer.flush()
    packets = _read(buf.getvalue())
    assert writer.packets == len(packets) == 2
    assert [p.ts for p in packets] == [1795641070.149021, 1795641070.5]
    want = LINKTYPE_WIRESHARK_UPPER_PDU if encap == "pdu" else LINKTYPE_RAW
    assert {p.linktype for p in packets} == {want}
    assert all(p.data.endswith(msg) for p in packets)
    if encap == "pdu":
        tlvs, rest = parse_tlvs(packets[0].data)
        assert rest == msg
        assert tlvs[4:] == [(25, struct.pack("!I", 5684)), (26, struct.pack("!I", 40000))]
    else:
        first = LinkDecoder().decode(packets[0])
        second = LinkDecoder().decode(packets[1])
        assert isinstance(first, UdpDatagram) and isinstance(second, UdpDatagram)
        assert (first.src_port, first.dst_port) == (5683, 40000)
        assert (second.src_port, second.dst_port) == (40000, 5683)
    assert (b"tcp-1 x" in buf.getvalue()) == (fmt == "pcapng")


def test_writer_rejects_unknown_format_and_encapsulation() -> None:
    with pytest.raises(ValueError):
        CoapPacketWriter(io.BytesIO(), fmt="erf")
    with pytest.raises(ValueError):
        CoapPacketWriter(io.BytesIO(), encap="tcp")


def test_export_events_writes_decoded_messages_only_in_order() -> None:
    info = SessionInfo("dtls-1", "dtls", device_endpoint=DEVICE, cloud_endpoint=CLOUD)
    msgs = [CoapMessage(type=CON, code=2, mid=i, options=[CoapOption(11, b"h")]) for i in range(3)]
    events = [
        SessionStarted(info, 1.0),
        MessageEvent("dtls-1", Direction.DEVICE_TO_CLOUD, 1.0, 40, coap=msgs[0]),
        MessageEvent(
            "dtls-1",
            Direction.CLOUD_TO_DEVICE,
            1.5,
            40,
            encrypted=EncryptedInfo(40, "no key log entry"),
        ),
        MessageEvent("dtls-1", Direction.CLOUD_TO_DEVICE, 2.0, 40, coap=msgs[1]),
        MessageEvent("dtls-2", Direction.DEVICE_TO_CLOUD, 3.0, 40, coap=msgs[2]),
    ]
    buf = io.BytesIO()
    stats = export_events(events, CoapPacketWriter(buf))
    assert (stats.exported, stats.sessions) == (3, 1)
    assert dict(stats.not_decoded) == {"no key log entry": 1}
    packets = _read(buf.getvalue())
    assert [p.data[-len(encode(m)) :] for p, m in zip(packets, msgs, strict=True)] == [
        encode(m) for m in msgs
    ]
    assert [p.ts for p in packets] == [1.0, 2.0, 3.0]
    # A message of a session never announced keeps its place, with unknown addresses.
    tlvs, _ = parse_tlvs(packets[2].data)
    assert tlvs[1] == (20, b"\0\0\0\0")
