"""Devices seen without keys: DNS queries for <ID>.udp.particle.io, presence
announcements, the 254 move-session trailer and DTLS device public keys."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.capture.packets import RawPacket
from dissector.capture.writer import PcapWriter, build_udp_frame
from dissector.keys import KeyRing
from dissector.report import CaptureTap, run_report
from dissector.report.discovery import (
    DnsError,
    device_id_in_name,
    parse_dns,
    presence_device_id,
)
from tests.test_report_fixtures import (
    GHOST_ID,
    OTHER_ID,
    dns_answer,
    dns_query,
    fleet_capture,
    presence,
    ring,
)

DTLS = Path(__file__).parent / "data" / "dtls"
MOVED_ID = "e00fce68deadbeef00112233"


def test_device_id_in_particle_names() -> None:
    assert device_id_in_name("E00FCE681122334455667788.udp.particle.io") == OTHER_ID
    assert device_id_in_name("e00fce681122334455667788.v5.udp-mesh.particle.io.") == OTHER_ID
    assert device_id_in_name("e00fce681122334455667788.udp.example.com") is None
    assert device_id_in_name("e00fce6811223344556677.udp.particle.io") is None  # 22 hex
    assert device_id_in_name("device.spark.io") is None


def test_dns_compression_and_answers() -> None:
    msg = parse_dns(dns_answer(f"{GHOST_ID}.udp.particle.io", "52.1.2.3"))
    assert msg.is_response
    assert msg.questions == [f"{GHOST_ID}.udp.particle.io"]
    assert msg.addresses == ["52.1.2.3"]
    assert not parse_dns(dns_query("a.b")).is_response


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x05abc",  # label past the end
        struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c",  # pointer loop
        struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x80",  # reserved label type
        struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x00\x00",  # truncated question
        struct.pack("!HHHHHH", 1, 0x2800, 1, 0, 0, 0),  # opcode UPDATE
    ],
)
def test_dns_rejects_malformed_messages(data: bytes) -> None:
    with pytest.raises(DnsError):
        parse_dns(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_dns_parser_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(DnsError):
        parse_dns(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_presence_parser_never_raises(data: bytes) -> None:
    result = presence_device_id(data)
    assert result is None or len(result) == 24


def test_presence_announcement() -> None:
    assert presence_device_id(presence(OTHER_ID)) == OTHER_ID
    assert presence_device_id(presence(OTHER_ID)[:-1]) is None  # 11-byte payload
    assert presence_device_id(b"\x50\x01\x00\x00\xb1\x68\xff" + bytes(12)) is None  # GET


def _raw(ts: float, frame: bytes) -> RawPacket:
    return RawPacket(ts, 1, frame, len(frame), 0, "x")


def test_tap_aggregates_sightings() -> None:
    tap = CaptureTap()
    name = f"{GHOST_ID.upper()}.udp.particle.io"
    for i in range(3):
        tap.packet(
            _raw(10.0 + i, build_udp_frame(1, "10.0.0.9", 5000, "8.8.8.8", 53, dns_query(name)))
        )
    tap.packet(
        _raw(
            20.0, build_udp_frame(1, "8.8.8.8", 53, "10.0.0.9", 5000, dns_answer(name, "52.1.2.3"))
        )
    )
    tap.packet(
        _raw(21.0, build_udp_frame(1, "10.0.0.7", 5683, "224.0.1.187", 5683, presence(OTHER_ID)))
    )
    tap.packet(_raw(22.0, build_udp_frame(1, "10.0.0.9", 5000, "8.8.8.8", 53, b"junk")))
    sights = {(s.device_id, s.source): s for s in tap.sightings.values()}
    query = sights[(GHOST_ID, "DNS query")]
    assert (query.count, query.first_ts, query.last_ts) == (3, 10.0, 12.0)
    assert query.address == "10.0.0.9"
    assert sights[(GHOST_ID, "DNS answer")].resolved == ["52.1.2.3"]
    assert sights[(OTHER_ID, "presence announcement")].address == "10.0.0.7"
    assert tap.dns_messages == 4


def test_fleet_report_lists_devices_seen_without_keys(tmp_path: Path) -> None:
    report = run_report([fleet_capture(tmp_path)], ring())
    devices = {d.device_id: d for d in report.devices}
    ghost = devices[GHOST_ID]
    assert ghost.sessions == [] and not ghost.decrypted
    assert any(src.startswith(f"DNS query {GHOST_ID}.udp.particle.io") for src in ghost.sources)
    assert any("52.1.2.3" in src for src in ghost.sources)
    other = devices[OTHER_ID]
    assert "identity message" in other.sources
    assert any(src.startswith("presence announcement") for src in other.sources)
    assert set(other.addresses) == {"10.0.0.4", "10.0.0.7"}
    codes = {f.code for f in report.findings}
    assert "report.weakness.device_id_in_dns" in codes


def _moved_capture(path: Path) -> Path:
    """One type-254 datagram (pre-3.1 moved session) with its device-ID trailer."""
    fragment = bytes(8) + bytes(range(24)) + bytes(8)
    record = bytes((254,)) + b"\xfe\xfd" + b"\x00\x01" + (7).to_bytes(6, "big")
    record += len(fragment).to_bytes(2, "big") + fragment
    payload = record + bytes.fromhex(MOVED_ID) + b"\x0c"
    with open(path, "wb") as fh:
        writer = PcapWriter(fh, 1)
        writer.write_packet(1.0, build_udp_frame(1, "10.1.1.1", 41000, "52.1.2.3", 5684, payload))
    return path


def test_move_session_trailer_reveals_the_device(tmp_path: Path) -> None:
    report = run_report([_moved_capture(tmp_path / "moved.pcap")], KeyRing())
    (session,) = report.sessions
    assert session.device_id == MOVED_ID
    assert session.device_id_source == "254 move-session trailer"
    (device,) = report.devices
    assert device.device_id == MOVED_ID and "254 move-session trailer" in device.sources
    assert not device.decrypted


def test_dtls_public_key_identifies_a_device_without_keys() -> None:
    report = run_report([DTLS / "particle_mbedtls_ccm8_full.pcap"], KeyRing())
    (device,) = report.devices
    assert device.device_id is None
    assert device.key_fingerprint and len(device.key_fingerprint) == 64
    assert device.sources == ["DTLS certificate (public key)"]
    assert device.sessions == ["dtls-1"]


def test_dtls_key_fingerprint_merges_with_the_hello_device_id() -> None:
    ring_ = KeyRing()
    ring_.load(str(DTLS / "deviceos-1.0.1_udp_full.keylog"))
    report = run_report([DTLS / "deviceos-1.0.1_udp_full.pcap"], ring_)
    (device,) = report.devices
    expected = (DTLS / "deviceos_device_id.txt").read_text().strip().lower()
    assert device.device_id == expected
    assert device.key_fingerprint is not None
    assert device.decrypted and device.platform == "Virtual device (gcc)"
