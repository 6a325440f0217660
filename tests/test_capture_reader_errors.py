"""Broken input: cut-off files, corrupt pcapng blocks, files that are not captures, fuzzing."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket
from dissector.capture.reader import CaptureFormatError, CaptureReader
from dissector.capture.writer import PcapngWriter, PcapWriter, ip_udp
from dissector.model import Finding, Severity

DATA = Path(__file__).parent / "data" / "capture"
SMALL = DATA / "particle_mbedtls_ccm8_full.pcap"


def read_bytes(data: bytes) -> tuple[list[RawPacket], list[Finding]]:
    packets: list[RawPacket] = []
    findings: list[Finding] = []
    for item in CaptureReader([io.BytesIO(data)]):
        (findings if isinstance(item, Finding) else packets).append(item)  # type: ignore[arg-type]
    return packets, findings


def pcap_record_offsets(data: bytes) -> list[int]:
    """Start offsets of every record of a little-endian microsecond pcap, plus the end."""
    offsets = []
    pos = 24
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    assert pos == len(data)
    return [*offsets, pos]


def make_pcapng(n: int = 6) -> tuple[bytes, list[int]]:
    """A pcapng file of ``n`` packets and the start offset of every block (plus the end)."""
    buf = io.BytesIO()
    offsets = [0]
    w = PcapngWriter(buf)
    offsets.append(buf.tell())
    w.add_interface(101)
    for i in range(n):
        offsets.append(buf.tell())
        w.write(100.0 + i, ip_udp("10.0.0.1", 1000, "10.0.0.2", 5684, bytes([i]) * (10 + i)))
    offsets.append(buf.tell())
    return buf.getvalue(), offsets


# -- truncation ---------------------------------------------------------------------------------


def test_pcap_cut_at_every_offset_of_the_last_three_records() -> None:
    data = SMALL.read_bytes()
    offsets = pcap_record_offsets(data)
    n_records = len(offsets) - 1
    for rec in range(n_records - 3, n_records):
        start, end = offsets[rec], offsets[rec + 1]
        for cut in range(start, end):
            packets, findings = read_bytes(data[:cut])
            assert len(packets) == rec, cut
            if cut == start:  # a clean record boundary: nothing lost
                assert findings == []
                continue
            assert len(findings) == 1, cut
            f = findings[0]
            assert f.severity is Severity.WARNING and f.code == "capture.truncated"
            assert f.details["offset"] == start
            assert f.details["available"] == cut - start
            if cut - start < 16:  # inside the record header: the record length is unknown
                assert f.details["expected"] == 16
            else:
                assert f.details["expected"] == end - start
                assert f.details["lost"] == end - cut
            assert f.details["file"] == "<stream>" and "<stream>" in f.message
            assert f.ts == packets[-1].ts


def test_pcap_cut_inside_the_file_header() -> None:
    data = SMALL.read_bytes()
    for cut in range(4, 24):
        packets, findings = read_bytes(data[:cut])
        assert packets == []
        assert [f.code for f in findings] == ["capture.truncated"]
        assert findings[0].details["expected"] == 24
        assert findings[0].ts is None
    for cut in range(4):
        with pytest.raises(CaptureFormatError):
            read_bytes(data[:cut])


def test_pcapng_cut_at_every_offset() -> None:
    data, offsets = make_pcapng()
    for cut in range(4, len(data)):
        packets, findings = read_bytes(data[:cut])
        complete_packets = sum(1 for o in offsets[2:] if o <= cut) - 1
        assert len(packets) == max(complete_packets, 0), cut
        if cut in offsets:
            assert findings == []
        else:
            assert [f.code for f in findings] == ["capture.truncated"], cut
            block_start = max(o for o in offsets if o <= cut)
            assert findings[0].details["offset"] == block_start


def test_truncated_file_does_not_stop_the_others(tmp_path: Path) -> None:
    data = SMALL.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: pcap_record_offsets(data)[5] + 7])
    whole = tmp_path / "whole.pcap"
    buf = io.BytesIO()
    w = PcapWriter(buf, 101)
    for i in range(4):  # later than everything in the cut file
        w.write_packet(2_000_000_000.0 + i, ip_udp("10.0.0.1", 1, "10.0.0.2", 2, b"z"))
    whole.write_bytes(buf.getvalue())
    items = list(CaptureReader([cut, whole]))
    kinds = ["F" if isinstance(i, Finding) else i.source[-9:] for i in items]
    assert kinds == ["e/cut.pcap"[-9:]] * 5 + ["F"] + ["whole.pcap"[-9:]] * 4
    assert [i.index for i in items if isinstance(i, RawPacket)] == list(range(1, 10))


def test_gzip_cut_short() -> None:
    data = SMALL.read_bytes()
    compressed = gzip.compress(data)
    full, _ = read_bytes(compressed)
    assert len(full) == 16
    for cut in range(2, len(compressed), 7):
        try:
            packets, findings = read_bytes(compressed[:cut])
        except CaptureFormatError as exc:  # not even the capture's magic could be inflated
            assert "gzip" in str(exc), cut
            assert len(zlib.decompressobj(31).decompress(compressed[:cut])) < 4, cut
            continue
        assert [f.code for f in findings] == ["capture.truncated"], cut
        assert len(packets) <= 16
        assert [p.data for p in packets] == [p.data for p in full[: len(packets)]]


def test_gzip_garbage_after_the_stream_is_reported() -> None:
    packets, findings = read_bytes(gzip.compress(SMALL.read_bytes()) + b"garbage!")
    assert len(packets) == 16
    assert [f.code for f in findings] == ["capture.corrupt"]


# -- corruption inside a good file --------------------------------------------------------------


def test_pcap_impossible_record_length() -> None:
    data = bytearray(SMALL.read_bytes())
    offsets = pcap_record_offsets(bytes(data))
    struct.pack_into("<I", data, offsets[3] + 8, 0x7FFFFFFF)
    packets, findings = read_bytes(bytes(data))
    assert len(packets) == 3
    assert [f.code for f in findings] == ["capture.corrupt"]
    assert findings[0].details["offset"] == offsets[3]


@pytest.mark.parametrize("bad_length", [0, 8, 13, 0x7FFFFFF0])
def test_pcapng_bogus_block_length_stops_the_file(bad_length: int) -> None:
    data, offsets = make_pcapng()
    broken = bytearray(data)
    struct.pack_into("<I", broken, offsets[4] + 4, bad_length)
    packets, findings = read_bytes(bytes(broken))
    assert len(packets) == 2
    assert [f.code for f in findings] == ["capture.corrupt"]
    assert findings[0].details["offset"] == offsets[4]


def test_pcapng_trailing_length_mismatch() -> None:
    data, offsets = make_pcapng()
    broken = bytearray(data)
    struct.pack_into("<I", broken, offsets[5] - 4, 999)
    packets, findings = read_bytes(bytes(broken))
    assert len(packets) == 2 and [f.code for f in findings] == ["capture.corrupt"]


def test_pcapng_bad_packet_blocks_are_skipped() -> None:
    data, offsets = make_pcapng()
    broken = bytearray(data)
    struct.pack_into("<I", broken, offsets[3] + 8, 7)  # interface 7 does not exist
    struct.pack_into("<I", broken, offsets[5] + 20, 5000)  # captured length beyond the block
    packets, findings = read_bytes(bytes(broken))
    assert len(packets) == 4
    assert [f.code for f in findings] == ["capture.corrupt", "capture.corrupt"]
    assert "interface 7" in findings[0].message


def test_pcapng_packet_before_any_interface() -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    w.write_simple_packet(b"abc")
    packets, findings = read_bytes(buf.getvalue())
    assert packets == [] and [f.code for f in findings] == ["capture.corrupt"]


def test_pcapng_later_section_with_bad_byte_order_magic() -> None:
    data, _ = make_pcapng(2)
    second, _ = make_pcapng(2)
    bad = bytearray(second)
    bad[8:12] = b"XXXX"
    packets, findings = read_bytes(data + bytes(bad))
    assert len(packets) == 2 and [f.code for f in findings] == ["capture.corrupt"]


# -- not a capture --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html>", "3c 21 44 4f"),
        (b"\xd4\xc3", "not a pcap"),
        (b"hello world, this is text\n", "'hello wo'"),
        (gzip.compress(b"just text inside gzip"), "gzip"),
        (gzip.compress(b""), "empty gzip"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00NOPE" + b"\0" * 16, "byte-order"),
    ],
)
def test_not_a_capture(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "thing.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureFormatError) as err:
        CaptureReader([path])
    message = str(err.value)
    assert str(path) in message and fragment in message
    assert "\n" not in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureFormatError, match=r"missing\.pcap"):
        CaptureReader([tmp_path / "missing.pcap"])
    with pytest.raises(CaptureFormatError, match="cannot open"):
        CaptureReader([tmp_path])


def test_bad_second_file_raises_before_reading(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture")
    with pytest.raises(CaptureFormatError, match=r"notes\.txt"):
        CaptureReader([SMALL, bad])


# -- fuzzing --------------------------------------------------------------------------------------

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_PCAPNG_START, _ = make_pcapng(0)
_VALID = SMALL.read_bytes()[:2000]
_VALID_NG, _ = make_pcapng(4)


def _consume(data: bytes) -> None:
    try:
        reader = CaptureReader([io.BytesIO(data)])
    except CaptureFormatError as exc:
        assert str(exc)
        return
    decoder = LinkDecoder()
    for item in reader:
        if isinstance(item, Finding):
            assert item.code in ("capture.truncated", "capture.corrupt")
        else:
            assert isinstance(item, RawPacket)
            decoder.decode(item)


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _consume(data)


@_FUZZ
@given(st.sampled_from([_PCAP_HEADER, _PCAPNG_START, b"\x1f\x8b"]), st.binary(max_size=400))
def test_fuzz_valid_header_then_arbitrary_bytes(head: bytes, tail: bytes) -> None:
    _consume(head + tail)
    _consume(head + tail if head != b"\x1f\x8b" else gzip.compress(_PCAP_HEADER + tail))


@_FUZZ
@given(
    st.sampled_from([_VALID, _VALID_NG]),
    st.lists(st.tuples(st.integers(0, 1999), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_fuzz_mutated_valid_files(base: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(base)
    for pos, value in flips:
        data[pos % len(data)] = value
    _consume(bytes(data))
