"""Decrypt the reference DTLS captures and compare with their expected CoAP messages.

Captures (tests/data/dtls, from real third-party implementations): Particle's mbedTLS fork
(CCM-8, draft CID records type 25 from the device), OpenSSL CCM-8 and GCM (X.509, no CID),
and real Device OS 1.0.1 (RPK, cookie exchange, CCM-8, no CID). Plus OpenSSL-generated
datagram logs for the CBC (MtE and EtM), CCM-16 and GCM-SHA384 suites.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from scapy.layers.inet import UDP
from scapy.utils import PcapReader

from dissector.dtls import (
    ApplicationData,
    DtlsConnection,
    DtlsEvent,
    HandshakeMessage,
    parse_session_persist_text,
)
from dissector.dtls.handshake import Certificate, ClientHello, Finished, HelloVerifyRequest
from dissector.dtls.records import build_record, parse_datagram
from dissector.dtls.session import Alert, ChangeCipherSpec
from dissector.model import Direction, Finding, Severity

DATA = Path(__file__).parent / "data" / "dtls"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
CAPTURES = [
    "particle_mbedtls_ccm8_full",
    "openssl_ecdhe_ecdsa_aes128_ccm8",
    "openssl_ecdhe_ecdsa_aes128_gcm_sha256",
    "deviceos-1.0.1_udp_full",
]

Datagram = tuple[Direction, bytes, float]


@cache
def datagrams(name: str) -> tuple[Datagram, ...]:
    out = []
    with PcapReader(str(DATA / f"{name}.pcap")) as reader:
        for pkt in reader:
            udp = pkt[UDP]
            direction = D2C if udp.dport == 5684 else C2D
            out.append((direction, bytes(udp.payload), float(pkt.time)))
    return tuple(out)


def keylog(path: Path) -> dict[bytes, bytes]:
    keys = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "CLIENT_RANDOM":
            keys[bytes.fromhex(parts[1])] = bytes.fromhex(parts[2])
    return keys


def expected(name: str) -> list[tuple[str, dict[str, Any]]]:
    lines = (DATA / f"{name}.messages.ndjson").read_text().splitlines()
    return [(o["direction"], o["coap"]) for o in map(json.loads, lines)]


def coap_fields(msg: bytes) -> dict[str, Any]:
    """Just enough CoAP (RFC 7252) to compare with messages.ndjson."""
    tkl = msg[0] & 0x0F
    pos, number, paths, payload = 4 + tkl, 0, [], b""
    while pos < len(msg):
        if msg[pos] == 0xFF:
            payload = msg[pos + 1 :]
            break
        delta, length = msg[pos] >> 4, msg[pos] & 0x0F
        pos += 1
        for nibble in ("delta", "length"):
            v = delta if nibble == "delta" else length
            if v == 13:
                v, pos = msg[pos] + 13, pos + 1
            elif v == 14:
                v, pos = int.from_bytes(msg[pos : pos + 2], "big") + 269, pos + 2
            if nibble == "delta":
                delta = v
            else:
                length = v
        number += delta
        if number == 11:
            paths.append(msg[pos : pos + length].decode())
        pos += length
    return {
        "type": ("CON", "NON", "ACK", "RST")[(msg[0] >> 4) & 3],
        "code": f"{msg[1] >> 5}.{msg[1] & 0x1F:02d}",
        "mid": int.from_bytes(msg[2:4], "big"),
        "token": msg[4 : 4 + tkl].hex(),
        "uri": "/" + "/".join(paths) if paths else "",
        "payload": payload.hex(),
    }


def run(conn: DtlsConnection, items: tuple[Datagram, ...] | list[Datagram]) -> list[DtlsEvent]:
    events: list[DtlsEvent] = []
    for direction, data, ts in items:
        events.extend(conn.receive(direction, data, ts))
    return events


def app_data(events: list[DtlsEvent]) -> list[ApplicationData]:
    return [e for e in events if isinstance(e, ApplicationData)]


def decoded(events: list[DtlsEvent]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for e in app_data(events):
        assert e.plaintext is not None, e.reason
        out.append((e.direction.value, coap_fields(e.plaintext)))
    return out


def errors(events: list[DtlsEvent]) -> list[Finding]:
    return [e for e in events if isinstance(e, Finding) and e.severity is not Severity.INFO]


@pytest.mark.parametrize("name", CAPTURES)
def test_every_application_record_decrypts_to_the_expected_coap(name: str) -> None:
    conn = DtlsConnection(keylog(DATA / f"{name}.keylog").get, session=name)
    events = run(conn, datagrams(name))
    assert errors(events) == []
    assert decoded(events) == expected(name)
    # Both Finished messages are decrypted; the connection closes with close_notify.
    finished = [e for e in events if isinstance(e, HandshakeMessage) and e.encrypted]
    assert [(e.direction, type(e.msg)) for e in finished] == [(D2C, Finished), (C2D, Finished)]
    assert all(isinstance(e.msg, Finished) and len(e.msg.verify_data) == 12 for e in finished)
    ccs = [e.direction for e in events if isinstance(e, ChangeCipherSpec)]
    assert ccs == [D2C, C2D]
    if name != "deviceos-1.0.1_udp_full":
        alerts = [(e.direction, e.description_name) for e in events if isinstance(e, Alert)]
        assert alerts == [(D2C, "close_notify"), (C2D, "close_notify")]


def test_particle_device_records_are_draft_cid_records() -> None:
    name = "particle_mbedtls_ccm8_full"
    conn = DtlsConnection(keylog(DATA / f"{name}.keylog").get)
    events = run(conn, datagrams(name))
    cid = bytes.fromhex("c1d05e5510000001")
    assert conn.device_cid == cid and conn.cipher_suite == 0xC0AE
    for e in app_data(events):
        if e.direction is D2C:
            assert e.record.wire_type == 25 and e.record.cid == cid
        else:
            assert e.record.wire_type == 23 and e.record.cid is None
    # The device's Finished and its close_notify travel in CID records too.
    fin = next(e for e in events if isinstance(e, HandshakeMessage) and e.encrypted)
    assert fin.direction is D2C and fin.message_seq == 5
    (dev_alert,) = [e for e in events if isinstance(e, Alert) and e.direction is D2C]
    assert dev_alert.record.wire_type == 25 and dev_alert.level == 1
    assert conn.device_public_key == (DATA / "mbedtls_device.pub.der").read_bytes()


PERSIST = DATA / "particle_mbedtls_ccm8_full.persist.txt"


def _resumed_flow() -> list[Datagram]:
    """The post-handshake part of the mbedTLS capture, as a resumed connection shows it:
    no handshake, the device's first record re-marked 253 (spec §6.4), then 25 again."""
    items = list(datagrams("particle_mbedtls_ccm8_full"))[6:]
    direction, data, ts = items[0]
    assert direction is D2C and data[0] == 25
    items[0] = (direction, b"\xfd" + data[1:], ts)
    return items


def test_resumed_connection_decrypts_from_persisted_session_alone() -> None:
    conn = DtlsConnection(lambda _cr: None)
    conn.resume(parse_session_persist_text(PERSIST.read_text()))
    events = run(conn, _resumed_flow())
    assert decoded(events) == expected("particle_mbedtls_ccm8_full")
    assert errors(events) == []
    moved = [e for e in events if isinstance(e, Finding) and e.code == "dtls.session.moved"]
    assert len(moved) == 1 and "253" in moved[0].message
    first = app_data(events)[0]
    assert first.record.wire_type == 253 and first.record.content_type == 25
    assert conn.resumed and conn.device_cid == bytes.fromhex("c1d05e5510000001")


def test_resumed_connection_decrypts_with_master_from_key_log() -> None:
    persisted = parse_session_persist_text(PERSIST.read_text())
    persisted.master = None  # randoms from the blob, master from the key log
    conn = DtlsConnection(keylog(DATA / "particle_mbedtls_ccm8_full.keylog").get)
    conn.resume(persisted)
    assert decoded(run(conn, _resumed_flow())) == expected("particle_mbedtls_ccm8_full")


def test_moved_flow_continues_from_a_handshake_seen_earlier() -> None:
    # Key log only: the handshake connection exports its session to the moved flow.
    name = "particle_mbedtls_ccm8_full"
    first = DtlsConnection(keylog(DATA / f"{name}.keylog").get)
    run(first, list(datagrams(name))[:6])
    exported = first.export_session()
    assert exported is not None
    persisted = parse_session_persist_text(PERSIST.read_text())
    assert exported.client_random == persisted.client_random
    assert exported.server_random == persisted.server_random
    assert exported.master == persisted.master and exported.cid == persisted.cid
    moved = DtlsConnection()
    moved.resume(exported)
    assert decoded(run(moved, _resumed_flow())) == expected(name)


def test_resumed_connection_without_any_key_reports_once() -> None:
    persisted = parse_session_persist_text(PERSIST.read_text())
    persisted.master = None
    conn = DtlsConnection(lambda _cr: None)
    conn.resume(persisted)
    events = run(conn, _resumed_flow())
    reasons = {e.reason for e in app_data(events)}
    assert reasons == {f"no key log entry for client random {persisted.client_random.hex()}"}
    no_key = [e for e in events if isinstance(e, Finding) and e.code == "dtls.decrypt.no_key"]
    assert len(no_key) == 1


def test_deviceos_cookie_exchange_and_raw_public_key() -> None:
    name = "deviceos-1.0.1_udp_full"
    conn = DtlsConnection(keylog(DATA / f"{name}.keylog").get)
    events = run(conn, datagrams(name))
    hs = [e for e in events if isinstance(e, HandshakeMessage)]
    assert [(e.direction, e.name, e.message_seq) for e in hs] == [
        (D2C, "ClientHello", 0),
        (C2D, "HelloVerifyRequest", 0),
        (D2C, "ClientHello", 1),
        (C2D, "ServerHello", 1),
        (C2D, "ServerKeyExchange", 2),
        (C2D, "CertificateRequest", 3),
        (C2D, "ServerHelloDone", 4),
        (D2C, "Certificate", 2),
        (D2C, "ClientKeyExchange", 3),
        (D2C, "CertificateVerify", 4),
        (D2C, "Finished", 5),
        (C2D, "Finished", 5),
    ]
    ch1, hvr, ch2 = (e.msg for e in hs[:3])
    assert isinstance(ch1, ClientHello) and isinstance(ch2, ClientHello)
    assert isinstance(hvr, HelloVerifyRequest)
    assert ch1.cookie == b"" and hvr.cookie and ch2.cookie == hvr.cookie == conn.cookie
    assert ch1.random == ch2.random == conn.client_random
    assert ch2.ext.client_certificate_types == [2] and ch2.ext.connection_id is None
    cert = hs[7].msg
    assert isinstance(cert, Certificate) and cert.certificates == []
    device_key = (DATA / "deviceos_device_key.pub.der").read_bytes()
    assert cert.raw_public_key == device_key == conn.device_public_key
    assert conn.device_cid is None
    assert {e.record.wire_type for e in app_data(events)} == {23}
    assert len(app_data(events)) == 48


def test_deviceos_moved_record_type_254() -> None:
    # Pre-3.1 firmware re-marks application data as 254 and appends its device ID.
    name = "deviceos-1.0.1_udp_full"
    items = list(datagrams(name))
    device_id = bytes.fromhex((DATA / "deviceos_device_id.txt").read_text().strip())
    direction, hello, ts = items[10]
    assert direction is D2C and hello[0] == 23
    items[10] = (direction, b"\xfe" + hello[1:] + device_id + b"\x0c", ts)
    conn = DtlsConnection(keylog(DATA / f"{name}.keylog").get)
    events = run(conn, items)
    assert decoded(events) == expected(name)
    assert conn.device_id == device_id
    moved = [e for e in events if isinstance(e, Finding) and e.code == "dtls.session.moved"]
    assert len(moved) == 1 and device_id.hex() in moved[0].message


def test_openssl_x509_certificates_are_kept_as_der() -> None:
    name = "openssl_ecdhe_ecdsa_aes128_ccm8"
    conn = DtlsConnection(keylog(DATA / f"{name}.keylog").get)
    events = run(conn, datagrams(name))
    certs = [
        e.msg for e in events if isinstance(e, HandshakeMessage) and isinstance(e.msg, Certificate)
    ]
    assert [len(c.certificates) for c in certs] == [1, 1]
    names = [x509.load_der_x509_certificate(c.certificates[0]).subject for c in certs]
    assert any("cloud.test.local" in n.rfc4514_string() for n in names)
    # The client's (device's) certificate key stands in for a raw public key.
    client_cert = next(
        x509.load_der_x509_certificate(c.certificates[0])
        for c in certs
        if "cloud.test.local"
        not in x509.load_der_x509_certificate(c.certificates[0]).subject.rfc4514_string()
    )
    assert conn.device_public_key == client_cert.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )


def _resequenced(data: bytes, delta: int) -> bytes:
    """The same records with new sequence numbers: how DTLS retransmits a flight."""
    out = b""
    for rec in parse_datagram(data).records:
        out += build_record(rec.wire_type, rec.epoch, rec.seq + delta, rec.fragment, cid=rec.cid)
    return out


def test_retransmitted_flight_is_flagged() -> None:
    name = "particle_mbedtls_ccm8_full"
    items = list(datagrams(name))
    # The cloud's flight is retransmitted (new record sequence numbers).
    direction, flight, ts = items[3]
    items = [*items[:4], (direction, _resequenced(flight, 10), ts + 1), *items[4:]]
    conn = DtlsConnection(keylog(DATA / f"{name}.keylog").get)
    events = run(conn, items)
    hs = [e for e in events if isinstance(e, HandshakeMessage) and e.direction is C2D]
    assert [(e.name, e.retransmission) for e in hs[:9]] == [
        ("HelloVerifyRequest", False),
        ("ServerHello", False),
        ("ServerKeyExchange", False),
        ("CertificateRequest", False),
        ("ServerHelloDone", False),
        ("ServerHello", True),
        ("ServerKeyExchange", True),
        ("CertificateRequest", True),
        ("ServerHelloDone", True),
    ]
    assert decoded(events) == expected(name)


def test_duplicated_datagrams_are_processed_once() -> None:
    # Byte-identical records (same epoch and sequence number) are network duplicates:
    # handshake, ChangeCipherSpec and alerts give no second event; application records
    # give one marked duplicate (the session layer drops it).
    name = "particle_mbedtls_ccm8_full"
    once = run(DtlsConnection(keylog(DATA / f"{name}.keylog").get), datagrams(name))
    twice_items = [item for item in datagrams(name) for _ in (0, 1)]
    twice = run(DtlsConnection(keylog(DATA / f"{name}.keylog").get), twice_items)
    kept = [e for e in twice if not (isinstance(e, ApplicationData) and e.duplicate)]
    assert [type(e) for e in kept] == [type(e) for e in once]
    assert decoded(kept) == expected(name)
    dups = [e for e in twice if isinstance(e, ApplicationData) and e.duplicate]
    # one per application or CID record (the device's Finished and alert are CID records)
    protected = [
        r for _, data, _ in datagrams(name) for r in parse_datagram(data).records
        if r.content_type in (23, 25)
    ]  # fmt: skip
    assert len(dups) == len(protected) == len(app_data(once)) + 2


def test_duplicated_records_are_dropped_without_keys_too() -> None:
    name = "openssl_ecdhe_ecdsa_aes128_gcm_sha256"
    twice_items = [item for item in datagrams(name) for _ in (0, 1)]
    events = run(DtlsConnection(lambda _cr: None), twice_items)
    records = app_data(events)
    assert len([e for e in records if not e.duplicate]) == 8
    assert all(e.plaintext is None for e in records)


def test_same_sequence_number_with_other_bytes_is_not_a_duplicate() -> None:
    # A new ClientHello reusing record sequence number 0 (a device that restarted its
    # handshake) is processed, not dropped.
    name = "deviceos-1.0.1_udp_full"
    items = list(datagrams(name))
    direction, hello, ts = items[0]
    other = bytearray(hello)
    other[13 + 12 + 2] ^= 0xFF  # another client random, same record header
    conn = DtlsConnection(keylog(DATA / f"{name}.keylog").get)
    run(conn, items[:1])
    events = conn.receive(direction, bytes(other), ts + 1)
    (hs,) = [e for e in events if isinstance(e, HandshakeMessage)]
    assert hs.name == "ClientHello" and conn.client_random == bytes(other[27:59])


def test_missing_key_log_entry() -> None:
    name = "openssl_ecdhe_ecdsa_aes128_gcm_sha256"
    conn = DtlsConnection(lambda _cr: None)
    events = run(conn, datagrams(name))
    records = app_data(events)
    assert len(records) == 8 and all(e.plaintext is None for e in records)
    assert conn.client_random is not None
    assert records[0].reason == f"no key log entry for client random {conn.client_random.hex()}"
    codes = [e.code for e in errors(events)]
    assert codes == ["dtls.decrypt.no_key"]
    fin = [e for e in events if isinstance(e, HandshakeMessage) and e.encrypted]
    assert len(fin) == 2 and all(e.msg is None and e.msg_type is None for e in fin)


def test_wrong_master_gives_tag_failures() -> None:
    name = "openssl_ecdhe_ecdsa_aes128_ccm8"
    conn = DtlsConnection(lambda _cr: bytes(48))
    events = run(conn, datagrams(name))
    assert {e.reason for e in app_data(events)} == {"tag check failed"}
    assert {e.code for e in errors(events)} == {"dtls.decrypt.failed"}


def _generated(name: str) -> tuple[dict[bytes, bytes], list[Datagram]]:
    base = DATA / "openssl_gen" / name
    items = []
    for i, line in enumerate((base.with_suffix(".datagrams.txt")).read_text().splitlines()):
        side, hexdata = line.split()
        items.append((D2C if side == "C" else C2D, bytes.fromhex(hexdata), float(i)))
    return keylog(base.with_suffix(".keylog")), items


@pytest.mark.parametrize(
    ("name", "suite", "etm"),
    [
        ("cbc_sha256_etm", 0xC023, True),
        ("cbc_sha256_mte", 0xC023, False),
        ("cbc_sha1_etm", 0xC009, True),
        ("ccm16", 0xC0AC, False),
        ("gcm384", 0xC02C, False),
    ],
)
def test_openssl_generated_suites(name: str, suite: int, etm: bool) -> None:
    keys, items = _generated(name)
    conn = DtlsConnection(keys.get)
    events = run(conn, items)
    assert errors(events) == []
    assert conn.cipher_suite == suite
    assert conn.server_hello is not None and conn.server_hello.ext.encrypt_then_mac is etm
    got = [(e.direction, e.plaintext) for e in app_data(events)]
    assert got == [(D2C, b"hello from device\n"), (C2D, b"2.04 reply from cloud\n")]
    fin = [e for e in events if isinstance(e, HandshakeMessage) and e.encrypted]
    assert [type(e.msg) for e in fin] == [Finished, Finished]
