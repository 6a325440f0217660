"""Every handshake record carries the device ID whenever any key revealed it.

The ID comes from the identity message (server key) or from the device key that opens
the session key, both after the nonce was sent: the handshake's records wait for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import BREWSKEY, DEVICE_ID, SPARK, TCP_KEYS, dissect, ring_with

KEYS = {
    "server key": (TCP_KEYS / "default_key.pem", "server"),
    "device key": (TCP_KEYS / f"{DEVICE_ID}.der", "device"),
}


@pytest.mark.parametrize("base", [SPARK, BREWSKEY], ids=["sparkprotocol", "brewskey"])
@pytest.mark.parametrize("key", sorted(KEYS))
def test_handshake_records_carry_the_device_id(base: Path, key: str) -> None:
    path, role = KEYS[key]
    records = dissect([f"{base}.pcap"], ring_with(path, role=role))
    blobs = [r for r in records if r["record"] == "handshake"]
    assert [b["step"] for b in blobs] == ["nonce", "identity", "session_key"]
    assert {b["device_id"] for b in blobs} == {DEVICE_ID}
    assert all(r["device_id"] == DEVICE_ID for r in records if r["record"] == "message")
    # Still in capture order.
    stamps = [r["ts"] for r in records if r["record"] in ("handshake", "message")]
    assert stamps == sorted(stamps)


def test_without_any_key_the_device_id_stays_null() -> None:
    records = dissect([f"{SPARK}.pcap"], ring_with())
    blobs = [r for r in records if r["record"] == "handshake"]
    assert len(blobs) == 3 and all(b["device_id"] is None for b in blobs)


DTLS = Path(__file__).resolve().parent / "data" / "dtls"


@pytest.mark.parametrize(
    "name", ["deviceos-1.0.1_udp_full", "particle_mbedtls_ccm8_full"], ids=["deviceos", "mbedtls"]
)
def test_dtls_handshake_records_carry_the_id_the_hello_revealed(name: str) -> None:
    """With a key log alone the device ID first appears in the device's Hello, after the
    handshake: the handshake records carry it too, and the output stays in order."""
    records = dissect([DTLS / f"{name}.pcap"], ring_with(DTLS / f"{name}.keylog", role="keylog"))
    hello = next(r for r in records if r["record"] == "message" and r["kind"] == "Hello")
    device_id = hello["device_id"]
    assert device_id
    blobs = [r for r in records if r["record"] == "handshake"]
    assert blobs and {b["device_id"] for b in blobs} == {device_id}
    stamps = [r["ts"] for r in records if r["record"] in ("handshake", "message")]
    assert stamps == sorted(stamps)


def test_x509_client_certificate_gives_the_device_key_fingerprint() -> None:
    """Peers with X.509 client certificates (OpenSSL) instead of raw public keys still get
    their key fingerprint and certificate check."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from dissector.keys import KeyRing

    name = "openssl_ecdhe_ecdsa_aes128_ccm8"
    records = dissect([DTLS / f"{name}.pcap"], ring_with(DTLS / f"{name}.keylog", role="keylog"))
    cert_record = next(
        r
        for r in records
        if r["record"] == "handshake"
        and r["step"] == "Certificate"
        and r["direction"] == "device->cloud"
    )
    body = bytes.fromhex(cert_record["data"])[12:]
    first_len = int.from_bytes(body[3:6], "big")
    cert = x509.load_der_x509_certificate(body[6 : 6 + first_len])
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    (session,) = [r for r in records if r["record"] == "session"]
    assert session["device_key_fingerprint"] == KeyRing.fingerprint(spki)
    checks = {c["check"]: c["status"] for c in session["handshake"]}
    assert checks["device_certificate"] == "passed"
