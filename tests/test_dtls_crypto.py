"""TLS 1.2 PRF, key expansion and DTLS record protection (AEAD, CBC, draft-05 CID)."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.dtls.crypto import (
    SUITES,
    RecordDecryptError,
    RecordProtection,
    build_inner_plaintext,
    derive_master,
    key_block,
    prf,
    split_inner_plaintext,
)
from dissector.dtls.records import CT_ALERT, CT_APPLICATION_DATA, CT_HANDSHAKE, parse_datagram

# Session of particle_mbedtls_ccm8_full (key log / persisted session).
CLIENT_RANDOM = bytes.fromhex("6b074dd8c47b97f9b08fc90ac2d794380112b38e2e03a78c1283de525d989400")
SERVER_RANDOM = bytes.fromhex("6b074dd83442ab9ced647d581adeca63dcf634f628554cb2b6f072566baa522d")
MASTER = bytes.fromhex(
    "70cfecc4307e05793024fa3a47178a6edae2a56701ae17fbede77a6ad335be92"
    "85e038caadb341385f53a500c46f15fb"
)
CID = bytes.fromhex("c1d05e5510000001")
DEVICE_HELLO_CID = bytes.fromhex(
    "19fefd0001000000000001c1d05e5510000001004000010000000000012e3c81d44cbe473c537b8d00707f05"
    "65beec558b73c13f3c1cd60287d701565cf746a2d4c079d41527067ad2c1a8078038a1edbb8149848e"
)
DEVICE_HELLO_COAP = bytes.fromhex(
    "40020001b168ff000c00010002000c000ce00fce68aabbccddeeff001118380400000e00000200"
)
SERVER_ACK = bytes.fromhex("17fefd000100000000000100140001000000000001d64ea6877c286a1d47369b77")


def test_prf_sha256_known_answer() -> None:
    # The TLS 1.2 PRF test vector circulated on the IETF TLS list (P_SHA256, 100 bytes).
    out = prf(
        bytes.fromhex("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"),
        100,
    )
    assert out.hex() == (
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9"
        "c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789ba"
        "a48082d122ee42c5a72e5a5110fff70187347b66"
    )


def test_prf_sha384_known_answer() -> None:
    # Same source, P_SHA384, 148 bytes (also what `openssl kdf ... TLS1-PRF` gives).
    out = prf(
        bytes.fromhex("b80b733d6ceefcdc71566ea48e5567df"),
        b"test label",
        bytes.fromhex("cd665cf6a8447dd6ff8b27555edb7465"),
        148,
        "sha384",
    )
    assert out.hex().startswith(
        "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cde9ca0faa60be9fe3"
    )
    assert out.hex().endswith("8d5eaa3be85e0990703d73e56f")


def test_derive_master_is_the_prf_over_both_randoms() -> None:
    pm = bytes(range(32))
    expect = prf(pm, b"master secret", CLIENT_RANDOM + SERVER_RANDOM, 48)
    assert derive_master(pm, CLIENT_RANDOM, SERVER_RANDOM) == expect and len(expect) == 48


def test_key_block_layout_ccm8() -> None:
    kb = key_block(MASTER, CLIENT_RANDOM, SERVER_RANDOM, 0xC0AE)
    raw = prf(MASTER, b"key expansion", SERVER_RANDOM + CLIENT_RANDOM, 40)
    assert kb.client_key == raw[0:16] and kb.server_key == raw[16:32]
    assert kb.client_iv == raw[32:36] and kb.server_iv == raw[36:40]
    assert kb.client_mac_key == kb.server_mac_key == b""


def test_key_block_layout_cbc_sha256() -> None:
    kb = key_block(MASTER, CLIENT_RANDOM, SERVER_RANDOM, 0xC023)
    raw = prf(MASTER, b"key expansion", SERVER_RANDOM + CLIENT_RANDOM, 96)
    assert kb.client_mac_key == raw[:32] and kb.server_mac_key == raw[32:64]
    assert kb.client_key == raw[64:80] and kb.server_key == raw[80:96]
    assert kb.client_iv == kb.server_iv == b""


def test_unsupported_suite_raises_key_error() -> None:
    with pytest.raises(KeyError):
        key_block(MASTER, CLIENT_RANDOM, SERVER_RANDOM, 0x1301)


def test_real_ccm8_cid_record_uses_draft05_aad() -> None:
    kb = key_block(MASTER, CLIENT_RANDOM, SERVER_RANDOM, 0xC0AE)
    dev = RecordProtection.for_client(kb)
    (rec,) = parse_datagram(DEVICE_HELLO_CID).records
    assert dev.decrypt_typed(rec) == (CT_APPLICATION_DATA, DEVICE_HELLO_COAP)
    assert dev.decrypt(rec) == DEVICE_HELLO_COAP
    # Another CID in the additional data breaks the tag.
    with pytest.raises(RecordDecryptError, match="tag check failed"):
        dev.decrypt(rec, cid=bytes(8))
    # So does processing it as a plain record (RFC 5246 AAD).
    rec.content_type = CT_APPLICATION_DATA
    with pytest.raises(RecordDecryptError):
        dev.decrypt(rec)


def test_real_ccm8_plain_record() -> None:
    kb = key_block(MASTER, CLIENT_RANDOM, SERVER_RANDOM, 0xC0AE)
    (rec,) = parse_datagram(SERVER_ACK).records
    assert RecordProtection.for_server(kb).decrypt(rec) == bytes.fromhex("60000001")
    with pytest.raises(RecordDecryptError):
        RecordProtection.for_client(kb).decrypt(rec)


def test_encrypt_reproduces_the_devices_record() -> None:
    # mbedTLS uses epoch‖seq as explicit nonce and pads the inner plaintext to 16 bytes.
    kb = key_block(MASTER, CLIENT_RANDOM, SERVER_RANDOM, 0xC0AE)
    wire = RecordProtection.for_client(kb).encrypt(
        CT_APPLICATION_DATA, 1, 1, DEVICE_HELLO_COAP, CID
    )
    assert wire == DEVICE_HELLO_CID


def test_inner_plaintext_helpers() -> None:
    inner = build_inner_plaintext(CT_HANDSHAKE, b"abc")
    assert inner == b"abc\x16" + bytes(12)
    assert split_inner_plaintext(inner) == (CT_HANDSHAKE, b"abc")
    assert len(build_inner_plaintext(23, bytes(15))) == 16
    assert split_inner_plaintext(b"\x00\x00\x15\x00") == (CT_ALERT, b"\x00\x00")
    with pytest.raises(RecordDecryptError):
        split_inner_plaintext(bytes(16))


def _protection(code: int, etm: bool = False) -> RecordProtection:
    s = SUITES[code]
    return RecordProtection(
        code, os.urandom(s.key_len), os.urandom(s.fixed_iv_len), os.urandom(s.mac_len), etm
    )


SUITE_CASES = [(code, False) for code in sorted(SUITES)] + [
    (code, True) for code in sorted(SUITES) if SUITES[code].kind == "cbc"
]


@pytest.mark.parametrize(("code", "etm"), SUITE_CASES)
@pytest.mark.parametrize("cid", [None, CID])
def test_round_trip_every_suite(code: int, etm: bool, cid: bytes | None) -> None:
    prot = _protection(code, etm)
    for plaintext in (b"", b"\x40\x00\x00\x03", os.urandom(200)):
        wire = prot.encrypt(CT_APPLICATION_DATA, 1, 77, plaintext, cid)
        p = parse_datagram(wire, cid_len=len(cid) if cid else 8)
        assert p.errors == []
        (rec,) = p.records
        assert rec.cid == cid
        assert prot.decrypt_typed(rec) == (CT_APPLICATION_DATA, plaintext)


@pytest.mark.parametrize(("code", "etm"), SUITE_CASES)
@pytest.mark.parametrize("cid", [None, CID])
def test_corruption_is_detected(code: int, etm: bool, cid: bytes | None) -> None:
    prot = _protection(code, etm)
    wire = prot.encrypt(CT_HANDSHAKE, 1, 5, b"\x14" + bytes(23), cid)
    for pos in (len(wire) - 1, len(wire) - 20, len(wire) // 2 + 5):
        bad = bytearray(wire)
        bad[pos] ^= 0x01
        (rec,) = parse_datagram(bytes(bad)).records
        with pytest.raises(RecordDecryptError):
            prot.decrypt(rec)
    # A different sequence number is part of the MAC/AAD too.
    (rec,) = parse_datagram(wire).records
    rec.seq += 1
    with pytest.raises(RecordDecryptError):
        prot.decrypt(rec)


@pytest.mark.parametrize(("code", "etm"), SUITE_CASES)
def test_short_fragments_raise_decrypt_error(code: int, etm: bool) -> None:
    prot = _protection(code, etm)
    for n in (0, 1, 8, 15, 16, 17, 31):
        (rec,) = parse_datagram(
            bytes.fromhex("17fefd00010000000000050000")[:11] + n.to_bytes(2, "big") + bytes(n)
        ).records
        with pytest.raises(RecordDecryptError):
            prot.decrypt(rec)


def test_cbc_mac_then_encrypt_bad_padding() -> None:
    prot = _protection(0xC023)
    wire = prot.encrypt(CT_APPLICATION_DATA, 1, 1, b"x" * 10)
    other = _protection(0xC023)  # wrong key: garbage padding or MAC
    (rec,) = parse_datagram(wire).records
    with pytest.raises(RecordDecryptError, match=r"padding|MAC"):
        other.decrypt(rec)


def test_wrong_key_lengths_rejected() -> None:
    with pytest.raises(ValueError):
        RecordProtection(0xC0AE, bytes(15), bytes(4))
    with pytest.raises(ValueError):
        RecordProtection(0xC0AE, bytes(16), bytes(3))
    with pytest.raises(ValueError):
        RecordProtection(0xC023, bytes(16), b"", bytes(20))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=13, max_size=120), st.sampled_from(sorted(SUITES)), st.booleans())
def test_garbage_records_raise_only_decrypt_error(data: bytes, code: int, etm: bool) -> None:
    prot = _protection(code, etm)
    for rec in parse_datagram(data).records:
        with contextlib.suppress(RecordDecryptError):
            prot.decrypt_typed(rec)
