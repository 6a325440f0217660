"""The DTLS reference captures decode to exactly their message lists through `dissect`.

Covers Particle's mbedTLS fork (draft CID records), real Device OS 1.0.1 (cookie round,
raw public keys) and OpenSSL (CCM-8, GCM), from key logs and from the device's persisted
session; plus derived copies: a handshake-less resumption from a new port and a session
that moves address mid-way.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.derive import write
from tests.helpers import (
    DATA,
    comparable,
    dissect,
    expected_messages,
    findings,
    messages,
    ring_with,
)

DTLS = DATA / "dtls"
NAMES = [
    "particle_mbedtls_ccm8_full",
    "deviceos-1.0.1_udp_full",
    "openssl_ecdhe_ecdsa_aes128_ccm8",
    "openssl_ecdhe_ecdsa_aes128_gcm_sha256",
]
MBEDTLS = DTLS / "particle_mbedtls_ccm8_full"


@pytest.mark.parametrize("name", NAMES)
def test_key_log_decrypts_every_message(name: str) -> None:
    base = DTLS / name
    records = dissect([f"{base}.pcap"], ring_with(f"{base}.keylog", role="keylog"))
    assert [comparable(m) for m in messages(records)] == [
        comparable(m) for m in expected_messages(base)
    ]
    assert all(m["transport"] == "dtls" for m in messages(records))
    assert not findings(records, "decrypt.missing_key")


def test_persisted_session_alone_decrypts_the_full_capture() -> None:
    records = dissect([f"{MBEDTLS}.pcap"], ring_with(f"{MBEDTLS}.persist.txt", role="session"))
    assert [comparable(m) for m in messages(records)] == [
        comparable(m) for m in expected_messages(MBEDTLS)
    ]


def test_no_keys_says_which_key_is_missing() -> None:
    records = dissect([f"{MBEDTLS}.pcap"], ring_with())
    msgs = messages(records)
    # Without keys a connection-ID record hides its real type: the device's closing alert
    # is one more (undecryptable) message record; its Finished is recognised by position.
    assert len(msgs) == len(expected_messages(MBEDTLS)) + 1
    assert all(m["coap"] is None for m in msgs)
    assert "hides its real type" in msgs[-1]["encrypted"]["reason"]
    missing = findings(records, "decrypt.missing_key")
    assert missing and "client random" in missing[0]["message"]


def test_ec_private_keys_do_not_decrypt_and_the_tool_says_why() -> None:
    ring = ring_with(DTLS.parent / "keys" / "reference" / "dtls")
    records = dissect([f"{MBEDTLS}.pcap"], ring)
    assert all(m["coap"] is None for m in messages(records))
    missing = findings(records, "decrypt.missing_key")
    assert missing and "ECDHE" in missing[0]["message"]


def test_device_public_key_names_the_device_before_decryption() -> None:
    base = DTLS / "deviceos-1.0.1_udp_full"
    records = dissect([f"{base}.pcap"], ring_with(DTLS / "deviceos_device_key.pub.der"))
    session = next(r for r in records if r["record"] == "session")
    checks = {c["check"]: c["status"] for c in session["handshake"]}
    assert checks["device_certificate"] == "passed"
    assert checks["device_known"] == "passed"
    assert session["device_key_fingerprint"]


def _datagrams(path: Path):  # type: ignore[no-untyped-def]
    from dissector.capture.linklayer import LinkDecoder
    from dissector.capture.packets import RawPacket, UdpDatagram
    from dissector.capture.reader import CaptureReader

    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([str(path)]):
        if isinstance(item, RawPacket):
            unit = decoder.decode(item)
            if isinstance(unit, UdpDatagram):
                out.append(unit)
    return out


def _write_udp(path: Path, dgrams) -> Path:  # type: ignore[no-untyped-def]
    import io

    from dissector.capture.writer import PcapWriter, build_udp_frame

    buf = io.BytesIO()
    w = PcapWriter(buf, 1)
    for d in dgrams:
        w.write_packet(
            d.ts, build_udp_frame(1, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload)
        )
    w.flush()
    return write(path, buf.getvalue())


def _first_app_index(dgrams) -> int:  # type: ignore[no-untyped-def]
    return next(i for i, d in enumerate(dgrams) if d.payload[0] in (23, 25) and d.src_port != 5684)


def test_resumed_session_from_a_new_port_decrypts_from_the_persisted_session(
    tmp_path: Path,
) -> None:
    dgrams = _datagrams(Path(f"{MBEDTLS}.pcap"))
    start = _first_app_index(dgrams)
    moved = []
    first = True
    for d in dgrams[start:]:
        payload = d.payload
        if d.dst_port == 5684:
            if first and payload[0] == 25:
                payload = bytes([253]) + payload[1:]  # Device OS marks the first resumed record
                first = False
            d = replace(d, src_port=40001, payload=payload)
        else:
            d = replace(d, dst_port=40001)
        moved.append(d)
    path = _write_udp(tmp_path / "resumed.pcap", moved)
    records = dissect([path], ring_with(f"{MBEDTLS}.persist.txt", role="session"))
    want = [comparable(m) for m in expected_messages(MBEDTLS)]
    got = [comparable(m) for m in messages(records)]
    assert got == want[-len(got) :] and len(got) >= 4
    sessions = [r for r in records if r["record"] == "session"]
    assert len(sessions) == 1 and sessions[0]["outcome"] == "resumed"


def test_resumed_session_without_persisted_session_is_reported(tmp_path: Path) -> None:
    dgrams = _datagrams(Path(f"{MBEDTLS}.pcap"))
    path = _write_udp(tmp_path / "resumed.pcap", dgrams[_first_app_index(dgrams) :])
    records = dissect([path], ring_with(f"{MBEDTLS}.keylog", role="keylog"))
    assert all(m["coap"] is None for m in messages(records))
    assert findings(records, "dtls.session.unknown_resume")


def test_session_moving_to_a_new_port_mid_way_stays_one_session(tmp_path: Path) -> None:
    dgrams = _datagrams(Path(f"{MBEDTLS}.pcap"))
    cut = _first_app_index(dgrams) + 2
    moved = dgrams[:cut] + [
        replace(d, src_port=40002) if d.dst_port == 5684 else replace(d, dst_port=40002)
        for d in dgrams[cut:]
    ]
    path = _write_udp(tmp_path / "moved.pcap", moved)
    records = dissect([path], ring_with(f"{MBEDTLS}.keylog", role="keylog"))
    assert [comparable(m) for m in messages(records)] == [
        comparable(m) for m in expected_messages(MBEDTLS)
    ]
    assert len([r for r in records if r["record"] == "session"]) == 1
    assert findings(records, "dtls.session.moved")
