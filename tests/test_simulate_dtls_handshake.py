"""The simulator's DTLS handshake pieces against the real reference captures.

The transcript and Finished computation (RFC 6347: 12-byte DTLS headers, without the first
ClientHello and the HelloVerifyRequest) must verify the Finished messages that Particle's
mbedTLS fork, Device OS 1.0.1 and OpenSSL wrote; the message builders must reproduce the
real messages byte for byte (deterministic ECDSA included: Device OS signs with RFC 6979).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, UdpDatagram
from dissector.capture.reader import CaptureReader
from dissector.dtls.crypto import SUITES, RecordProtection, key_block
from dissector.dtls.handshake import (
    ClientHello,
    ServerHello,
    ServerKeyExchange,
    parse_handshake_body,
    split_handshake_fragments,
)
from dissector.dtls.records import parse_datagram
from dissector.simulate import SimulationError
from dissector.simulate import dtls_handshake as hs
from dissector.simulate.rng import ByteSource
from tests.helpers import DATA

DTLS = DATA / "dtls"
KEYS = DATA / "keys" / "reference"
CAPTURES = [
    "particle_mbedtls_ccm8_full",
    "deviceos-1.0.1_udp_full",
    "openssl_ecdhe_ecdsa_aes128_ccm8",
    "openssl_ecdhe_ecdsa_aes128_gcm_sha256",
]
#: (device key, server key) of the two Particle-stack captures (private keys available).
PARTICLE_KEYS = {
    "particle_mbedtls_ccm8_full": (
        KEYS / "dtls" / "device.key.der",
        KEYS / "dtls" / "server.key.der",
    ),
    "deviceos-1.0.1_udp_full": (
        KEYS / "dtls-deviceos" / "device_key.der",
        KEYS / "dtls-deviceos" / "server_key.der",
    ),
}


@dataclass
class Msg:
    client: bool
    msg_type: int
    seq: int
    body: bytes


def _handshake(name: str) -> tuple[list[Msg], bytes, bytes, bytes, int]:
    """Every handshake message of a capture (retransmissions once, the encrypted
    Finished decrypted with the key log), the randoms, the master secret and the suite."""
    base = DTLS / name
    masters = {}
    for line in Path(f"{base}.keylog").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "CLIENT_RANDOM":
            masters[bytes.fromhex(parts[1])] = bytes.fromhex(parts[2])
    decoder = LinkDecoder()
    msgs: list[Msg] = []
    seen: set[tuple[bool, int, int, bytes]] = set()
    cr = sr = b""
    suite = 0
    prot: dict[bool, RecordProtection] = {}
    for item in CaptureReader([f"{base}.pcap"]):
        if not isinstance(item, RawPacket):
            continue
        unit = decoder.decode(item)
        if not isinstance(unit, UdpDatagram):
            continue
        client = unit.dst_port == 5684
        for rec in parse_datagram(unit.payload).records:
            if rec.epoch == 0 and rec.content_type == 22:
                content = rec.fragment
            elif rec.epoch == 1 and rec.content_type in (22, 25):
                if not prot:
                    kb = key_block(masters[cr], cr, sr, suite)
                    prot = {
                        True: RecordProtection.for_client(kb),
                        False: RecordProtection.for_server(kb),
                    }
                ctype, content = prot[client].decrypt_typed(rec)
                if ctype != 22:
                    continue
            else:
                continue
            frags, error = split_handshake_fragments(content)
            assert error is None
            for f in frags:
                assert f.fragment_offset == 0 and f.fragment_length == f.length
                key = (client, f.msg_type, f.message_seq, f.body)
                if key in seen:
                    continue
                seen.add(key)
                msgs.append(Msg(client, f.msg_type, f.message_seq, f.body))
                parsed = parse_handshake_body(f.msg_type, f.body)
                if isinstance(parsed, ClientHello):
                    cr = parsed.random
                elif isinstance(parsed, ServerHello):
                    sr, suite = parsed.random, parsed.cipher_suite
    return msgs, cr, sr, masters[cr], suite


@pytest.mark.parametrize("name", CAPTURES)
def test_finished_of_real_implementations_verifies_with_the_rfc6347_transcript(name: str) -> None:
    msgs, _cr, _sr, master, suite = _handshake(name)
    hash_name = SUITES[suite].prf_hash
    transcript = hs.Transcript()
    checked = []
    for msg in msgs:
        if msg.msg_type == 20:
            expect = hs.finished_verify_data(
                master, transcript.digest(hash_name), msg.client, hash_name
            )
            checked.append((msg.client, expect == msg.body))
        transcript.add(msg.msg_type, msg.seq, msg.body)
    assert checked == [(True, True), (False, True)]


@pytest.mark.parametrize("name", CAPTURES)
def test_transcript_with_the_cookie_round_does_not_verify(name: str) -> None:
    msgs, _cr, _sr, master, suite = _handshake(name)
    hash_name = SUITES[suite].prf_hash
    data = b""
    for msg in msgs:
        if msg.msg_type == 20:
            break
        data += hs.handshake_fragment(msg.msg_type, msg.seq, msg.body)
    client_finished = next(m for m in msgs if m.msg_type == 20 and m.client)
    digest = hashlib.new(hash_name, data).digest()
    assert hs.finished_verify_data(master, digest, True, hash_name) != client_finished.body


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_der_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.mark.parametrize("name", sorted(PARTICLE_KEYS))
def test_signatures_are_reproduced_byte_for_byte(name: str) -> None:
    """Device OS and the cloud sign with deterministic ECDSA: same key + data = same bytes."""
    device_path, server_path = PARTICLE_KEYS[name]
    device_key, server_key = _load_private(device_path), _load_private(server_path)
    msgs, cr, sr, _master, _suite = _handshake(name)
    transcript = hs.Transcript()
    seen = set()
    for msg in msgs:
        if msg.msg_type == 12:
            ske = parse_handshake_body(12, msg.body)
            assert isinstance(ske, ServerKeyExchange)
            assert hs.server_key_exchange(server_key, cr, sr, ske.public_point) == msg.body
            seen.add(12)
        elif msg.msg_type == 15:
            assert hs.certificate_verify(device_key, transcript.data) == msg.body
            assert hs.ecdsa_verify(device_key.public_key(), msg.body[4:], transcript.data)
            seen.add(15)
        transcript.add(msg.msg_type, msg.seq, msg.body)
    assert seen == {12, 15}


def test_mbedtls_fork_handshake_messages_are_reproduced() -> None:
    """Every message of the Device OS ≥ 3.1-style handshake but the ECDHE points."""
    msgs, cr, sr, _master, _suite = _handshake("particle_mbedtls_ccm8_full")
    by = {(m.client, m.msg_type, m.seq): m.body for m in msgs}
    device_key = _load_private(KEYS / "dtls" / "device.key.der")
    hvr = parse_handshake_body(3, by[(False, 3, 0)])
    sh = parse_handshake_body(2, by[(False, 2, 1)])
    assert isinstance(sh, ServerHello) and sh.ext.connection_id is not None
    assert hs.client_hello(cr) == by[(True, 1, 0)]
    assert hs.hello_verify_request(hvr.cookie) == by[(False, 3, 0)]  # type: ignore[union-attr]
    assert hs.client_hello(cr, hvr.cookie) == by[(True, 1, 1)]  # type: ignore[union-attr]
    assert hs.server_hello(sr, sh.session_id, sh.ext.connection_id) == by[(False, 2, 1)]
    assert hs.certificate_request() == by[(False, 13, 3)]
    assert hs.server_hello_done() == by[(False, 14, 4)]
    assert hs.raw_public_key_certificate(hs.spki_der(device_key)) == by[(True, 11, 2)]
    cke = by[(True, 16, 3)]
    assert hs.client_key_exchange(cke[1:]) == cke


def test_device_os_1_client_hello_is_reproduced() -> None:
    msgs, cr, sr, _master, _suite = _handshake("deviceos-1.0.1_udp_full")
    by = {(m.client, m.msg_type, m.seq): m.body for m in msgs}
    hvr = parse_handshake_body(3, by[(False, 3, 0)])
    opts = {"connection_id": False, "signature_algorithms": hs.SIG_ALGS_DEVICE_OS_1}
    assert hs.client_hello(cr, **opts) == by[(True, 1, 0)]  # type: ignore[arg-type]
    assert hs.client_hello(cr, hvr.cookie, **opts) == by[(True, 1, 1)]  # type: ignore[arg-type, union-attr]
    sh = parse_handshake_body(2, by[(False, 2, 1)])
    assert isinstance(sh, ServerHello) and sh.ext.connection_id is None
    assert hs.server_hello(sr, sh.session_id, None) == by[(False, 2, 1)]


def test_ecdhe_premaster_and_master_match_the_prf() -> None:
    a = hs.ephemeral_key(ByteSource(1))
    b = hs.ephemeral_key(ByteSource(2))
    pm = hs.ecdh_premaster(a, hs.point_bytes(b))
    assert pm == hs.ecdh_premaster(b, hs.point_bytes(a)) and len(pm) == 32
    master = hs.master_secret(pm, b"c" * 32, b"s" * 32)
    assert len(master) == 48
    assert hs.ephemeral_key(ByteSource(1)).private_numbers() == a.private_numbers()


def test_builders_reject_bad_input() -> None:
    with pytest.raises(SimulationError):
        hs.client_hello(b"short")
    with pytest.raises(SimulationError):
        hs.server_hello(b"short", b"", None)
    with pytest.raises(SimulationError):
        hs.ecdh_premaster(hs.ephemeral_key(ByteSource(1)), b"\x04" + bytes(64))
    with pytest.raises(SimulationError):
        hs.hello_verify_request(bytes(300))
    with pytest.raises(SimulationError):
        hs.handshake_fragment(1, 0x10000, b"")


def test_fragment_header_and_transcript_rules() -> None:
    frag = hs.handshake_fragment(11, 2, b"abcdef", 2, 3)
    assert frag == bytes([11, 0, 0, 6, 0, 2, 0, 0, 2, 0, 0, 3]) + b"cde"
    t = hs.Transcript()
    t.add(1, 0, b"first")
    t.add(3, 0, b"cookie")
    t.add(1, 1, b"second")
    assert t.data == hs.handshake_fragment(1, 1, b"second")
    t2 = hs.Transcript()
    t2.add(1, 0, b"only")
    assert t2.data == hs.handshake_fragment(1, 0, b"only")
