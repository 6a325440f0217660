"""DTLS record layer: datagram splitting, Particle record types 25/253/254, robustness."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.dtls.records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CT_TLS12_CID,
    build_record,
    parse_datagram,
)

# Real datagrams from particle_mbedtls_ccm8_full.pcap (Particle's mbedTLS fork).
# #6 (cloud->device): ChangeCipherSpec + encrypted Finished in one datagram.
SERVER_CCS_FINISHED = bytes.fromhex(
    "14fefd000000000000000500010116fefd0001000000000000002800010000000000009a57e0036a742af395"
    "3cc2621261b60784222b8651a591495544834bb72a066b"
)
# #7 (device->cloud): the device's CoAP Hello in a draft-05 CID record (type 25).
DEVICE_HELLO_CID = bytes.fromhex(
    "19fefd0001000000000001c1d05e5510000001004000010000000000012e3c81d44cbe473c537b8d00707f05"
    "65beec558b73c13f3c1cd60287d701565cf746a2d4c079d41527067ad2c1a8078038a1edbb8149848e"
)
CID = bytes.fromhex("c1d05e5510000001")
# #8 (cloud->device): an ordinary application-data record.
SERVER_ACK = bytes.fromhex("17fefd000100000000000100140001000000000001d64ea6877c286a1d47369b77")


def test_two_records_in_one_datagram() -> None:
    p = parse_datagram(SERVER_CCS_FINISHED)
    assert p.errors == [] and p.trailer is None and not p.keepalive
    ccs, fin = p.records
    assert (ccs.content_type, ccs.epoch, ccs.seq, ccs.fragment) == (
        CT_CHANGE_CIPHER_SPEC,
        0,
        5,
        b"\x01",
    )
    assert (fin.content_type, fin.epoch, fin.seq, fin.offset) == (CT_HANDSHAKE, 1, 0, 14)
    assert len(fin.fragment) == 0x28 and fin.cid is None
    assert fin.header == SERVER_CCS_FINISHED[14:27]
    assert fin.seq_num == bytes.fromhex("0001000000000000")


def test_cid_record_type_25() -> None:
    p = parse_datagram(DEVICE_HELLO_CID)
    assert p.errors == []
    (rec,) = p.records
    assert rec.content_type == rec.wire_type == CT_TLS12_CID
    assert (rec.version, rec.epoch, rec.seq, rec.cid) == (0xFEFD, 1, 1, CID)
    assert len(rec.header) == 13 + 8 and len(rec.fragment) == 0x40
    assert not rec.moved and rec.wire_length == len(DEVICE_HELLO_CID)


def test_cid_length_comes_from_the_caller() -> None:
    rec = build_record(CT_TLS12_CID, 1, 7, b"abcdef", cid=b"\x01\x02\x03\x04")
    (parsed,) = parse_datagram(rec, cid_len=4).records
    assert parsed.cid == b"\x01\x02\x03\x04" and parsed.fragment == b"abcdef"
    # With the Device OS default of 8 the same bytes do not fit.
    assert parse_datagram(rec).errors


def test_type_253_is_a_moved_cid_record() -> None:
    moved = b"\xfd" + DEVICE_HELLO_CID[1:]
    (rec,) = parse_datagram(moved).records
    assert rec.wire_type == 253 and rec.content_type == CT_TLS12_CID
    assert rec.moved and rec.cid == CID and rec.header[0] == 253


def test_type_254_strips_the_device_id_trailer() -> None:
    device_id = bytes.fromhex("ad2cc13702ed03012d837cd1")
    moved = b"\xfe" + SERVER_ACK[1:] + device_id + b"\x0c"
    p = parse_datagram(moved)
    assert p.errors == []
    assert p.trailer == device_id + b"\x0c" and p.device_id == device_id
    (rec,) = p.records
    assert rec.content_type == CT_APPLICATION_DATA and rec.wire_type == 254 and rec.moved
    assert rec.fragment == SERVER_ACK[13:]


def test_type_254_without_trailer_is_reported_but_parsed() -> None:
    p = parse_datagram(b"\xfe" + SERVER_ACK[1:])
    assert p.trailer is None and p.device_id is None
    assert p.errors and "trailer" in p.errors[0]
    assert p.records[0].content_type == CT_APPLICATION_DATA


def test_keepalive_datagrams() -> None:
    for d in (b"", b"\x00", b"\x17"):
        p = parse_datagram(d)
        assert p.keepalive and p.records == [] and p.errors == []
    assert not parse_datagram(SERVER_ACK).keepalive


def test_dtls_1_0_version_accepted() -> None:
    hvr = build_record(CT_HANDSHAKE, 0, 0, b"\x03" + bytes(11), version=0xFEFF)
    (rec,) = parse_datagram(hvr).records
    assert rec.version == 0xFEFF


def test_truncated_record_keeps_earlier_records() -> None:
    p = parse_datagram(SERVER_CCS_FINISHED[:-5])
    assert len(p.records) == 1 and p.records[0].content_type == CT_CHANGE_CIPHER_SPEC
    assert len(p.errors) == 1 and "truncated record at offset 14" in p.errors[0]


def test_truncated_headers() -> None:
    p = parse_datagram(SERVER_ACK + SERVER_ACK[:7])
    assert len(p.records) == 1 and "truncated record header at offset 33" in p.errors[0]
    p = parse_datagram(DEVICE_HELLO_CID[:16])
    assert p.records == [] and "truncated CID record header" in p.errors[0]


def test_unknown_type_and_version() -> None:
    p = parse_datagram(SERVER_ACK + b"\x30" + SERVER_ACK[1:])
    assert len(p.records) == 1 and "unknown record content type 48" in p.errors[0]
    p = parse_datagram(b"\x17\x03\x03" + SERVER_ACK[3:])
    assert p.records == [] and "version 0x0303" in p.errors[0]


def test_alert_record_fields() -> None:
    rec = build_record(CT_ALERT, 0, 0x0000FFFFFFFF01, b"\x02\x28")
    (parsed,) = parse_datagram(rec).records
    assert parsed.seq == 0x0000FFFFFFFF01 and parsed.fragment == b"\x02\x28"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=16))
def test_arbitrary_bytes_never_raise(data: bytes, cid_len: int) -> None:
    p = parse_datagram(data, cid_len)
    end = 0
    for rec in p.records:
        assert rec.offset == end
        end += rec.wire_length
    assert end + (len(p.trailer) if p.trailer else 0) <= len(data)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([20, 21, 22, 23, 25]),
            st.integers(0, 3),
            st.integers(0, (1 << 48) - 1),
            st.binary(max_size=40),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_build_then_parse_round_trip(specs: list[tuple[int, int, int, bytes]]) -> None:
    wire = b"".join(
        build_record(t, e, s, f, cid=CID if t == CT_TLS12_CID else None) for t, e, s, f in specs
    )
    p = parse_datagram(wire)
    assert p.errors == []
    assert [(r.content_type, r.epoch, r.seq, r.fragment) for r in p.records] == specs
