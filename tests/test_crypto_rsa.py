"""RSA handshake primitives against the firmware unit-test vectors (test-vectors §1, §3)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.crypto import (
    IdentityPlaintextError,
    RsaDecryptError,
    RsaError,
    build_identity_plaintext,
    extract_firmware_public_key,
    firmware_can_read_private_key,
    hmac_sha1,
    open_type1_block,
    parse_identity_plaintext,
    prepare_private_key,
    rsa_decrypt_pkcs1v15,
    rsa_encrypt_pkcs1v15,
    rsa_private_raw,
    rsa_public_raw,
    rsa_sign_raw_type1,
    verify_server_signature,
)
from dissector.keys import der_total_length

DATA = Path(__file__).parent / "data" / "keys" / "reference"
VECTORS = Path(__file__).parent / "data" / "keys" / "vectors"


@cache
def vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "test_vectors.json").read_text())


def vec(name: str) -> bytes:
    return bytes.fromhex(vectors()[name])


def private_from_slot(name: str) -> rsa.RSAPrivateKey:
    slot = vec(name)
    total = der_total_length(slot)
    assert total is not None
    key = serialization.load_der_private_key(slot[:total], password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def public(name: str) -> rsa.RSAPublicKey:
    key = serialization.load_der_public_key(vec(name))
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@cache
def wrong_key_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def counting_rng(start: int = 1) -> Any:
    state = [start]

    def rng(n: int) -> bytes:
        out = bytes((state[0] + i) % 256 for i in range(n))
        state[0] = (state[0] + n) % 256
        return out

    return rng


# ---------------------------------------------------------------- §1 HandshakeFixture


def test_slot_der_lengths_match_vector_notes() -> None:
    assert der_total_length(vec("hs_device_priv_slot")) == 607
    assert der_total_length(vec("cf_device_priv_slot")) == 610


def test_decrypt_credentials_handshake_fixture() -> None:
    key = private_from_slot("hs_device_priv_slot")
    assert rsa_decrypt_pkcs1v15(key, vec("hs_creds_ct")) == vec("hs_creds")


def test_hmac_handshake_fixture() -> None:
    assert hmac_sha1(vec("hs_creds"), vec("hs_creds_ct")) == vec("hs_hmac")


def test_signature_block_and_verify_handshake_fixture() -> None:
    server = public("hs_server_pub")
    block = rsa_public_raw(server, vec("hs_signature"))
    assert block == vec("hs_signature_block")
    assert block[:2] == b"\x00\x01" and block[2:235] == b"\xff" * 233 and block[235] == 0
    check = verify_server_signature(
        server, vec("hs_creds"), vec("hs_creds_ct"), vec("hs_signature")
    )
    assert check.valid and check.reason == "ok"
    assert check.signed_hmac == vec("hs_hmac") == check.expected_hmac


def test_signature_rejects_changed_credentials() -> None:
    server = public("hs_server_pub")
    creds = bytearray(vec("hs_creds"))
    creds[0] ^= 1
    check = verify_server_signature(server, bytes(creds), vec("hs_creds_ct"), vec("hs_signature"))
    assert not check.valid
    assert check.reason == "hmac mismatch: credentials or ciphertext differ"


def test_signature_with_wrong_server_key_is_not_type1() -> None:
    other = public("cf_server_pub")
    check = verify_server_signature(other, vec("hs_creds"), vec("hs_creds_ct"), vec("hs_signature"))
    assert not check.valid
    assert "wrong server key" in check.reason


def test_signature_wrong_length() -> None:
    check = verify_server_signature(
        public("hs_server_pub"), vec("hs_creds"), vec("hs_creds_ct"), b"\x01" * 255
    )
    assert not check.valid and "255 bytes" in check.reason


# ---------------------------------------------------------------- §3 ConstructorFixture


def test_constructor_fixture_h3_full_chain() -> None:
    h3 = vec("cf_h3")
    creds = rsa_decrypt_pkcs1v15(private_from_slot("cf_device_priv_slot"), h3[:128])
    assert creds == vec("cf_creds")
    assert hmac_sha1(creds, h3[:128]) == vec("cf_hmac")
    check = verify_server_signature(public("cf_server_pub"), creds, h3[:128], h3[128:])
    assert check.valid, check.reason


def test_firmware_public_key_equals_standard_spki() -> None:
    slot = vec("cf_device_priv_slot")
    fw = extract_firmware_public_key(slot)
    assert fw == vec("cf_device_pub_firmware")
    assert len(fw) == 162
    std = (
        private_from_slot("cf_device_priv_slot")
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert fw == std
    assert firmware_can_read_private_key(slot)
    assert not firmware_can_read_private_key(b"\x30\x82" + bytes(200))
    with pytest.raises(ValueError):
        extract_firmware_public_key(slot[:100])


def test_firmware_public_key_handshake_fixture_too() -> None:
    key = private_from_slot("hs_device_priv_slot")
    std = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert extract_firmware_public_key(vec("hs_device_priv_slot")) == std


def test_identity_plaintext_layout() -> None:
    pt = build_identity_plaintext(vec("cf_nonce"), vec("cf_id"), vec("cf_device_pub_firmware"))
    assert pt == vec("cf_identity_plaintext")
    ident = parse_identity_plaintext(pt)
    assert ident.nonce == vec("cf_nonce")
    assert ident.device_id_hex == "54e1c888f6d9492bebee1ee9"
    assert ident.public_key_der == vec("cf_device_pub_firmware")
    assert not ident.legacy


def test_identity_plaintext_legacy_and_bad_lengths() -> None:
    legacy = build_identity_plaintext(vec("cf_nonce"), vec("cf_id"), None)
    assert len(legacy) == 52
    ident = parse_identity_plaintext(legacy)
    assert ident.legacy and ident.public_key_der is None and ident.device_id == vec("cf_id")
    for n in (0, 51, 53, 213, 215):
        with pytest.raises(IdentityPlaintextError, match=f"{n} bytes"):
            parse_identity_plaintext(bytes(n))
    with pytest.raises(IdentityPlaintextError):
        build_identity_plaintext(bytes(39), vec("cf_id"), None)
    with pytest.raises(IdentityPlaintextError):
        build_identity_plaintext(vec("cf_nonce"), bytes(11), None)
    with pytest.raises(IdentityPlaintextError):
        build_identity_plaintext(vec("cf_nonce"), vec("cf_id"), bytes(161))


def test_identity_round_trip_through_server_key() -> None:
    """H2 as the device builds it, decrypted with the server private key."""
    server = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pt = vec("cf_identity_plaintext")
    ct = rsa_encrypt_pkcs1v15(server.public_key(), pt, counting_rng())
    assert len(ct) == 256
    assert parse_identity_plaintext(rsa_decrypt_pkcs1v15(server, ct)).device_id == vec("cf_id")


# ---------------------------------------------------------------- implicit rejection trap


def test_wrong_key_raises_instead_of_returning_random_bytes() -> None:
    with pytest.raises(RsaDecryptError, match="wrong key"):
        rsa_decrypt_pkcs1v15(wrong_key_1024(), vec("hs_creds_ct"))


def test_wrong_key_of_other_size_raises_length_reason() -> None:
    with pytest.raises(RsaDecryptError, match="modulus is 256 bytes"):
        rsa_decrypt_pkcs1v15(
            rsa.generate_private_key(public_exponent=65537, key_size=2048), vec("hs_creds_ct")
        )


def test_ciphertext_not_below_modulus() -> None:
    with pytest.raises(RsaDecryptError, match="not smaller than the modulus"):
        rsa_decrypt_pkcs1v15(private_from_slot("hs_device_priv_slot"), b"\xff" * 128)


def test_strict_type2_padding_checks() -> None:
    key = private_from_slot("hs_device_priv_slot")
    pub = key.public_key()

    def encrypt_block(em: bytes) -> bytes:
        return rsa_public_raw(pub, em)

    good = b"\x00\x02" + b"\x11" * 8 + b"\x00" + b"m" * 117
    assert rsa_decrypt_pkcs1v15(key, encrypt_block(good)) == b"m" * 117
    short_pad = b"\x00\x02" + b"\x11" * 7 + b"\x00" + b"m" * 118
    with pytest.raises(RsaDecryptError, match="at least 8"):
        rsa_decrypt_pkcs1v15(key, encrypt_block(short_pad))
    no_sep = b"\x00\x02" + b"\x11" * 126
    with pytest.raises(RsaDecryptError, match="separator"):
        rsa_decrypt_pkcs1v15(key, encrypt_block(no_sep))
    type1 = b"\x00\x01" + b"\xff" * 8 + b"\x00" + b"m" * 117
    with pytest.raises(RsaDecryptError, match="type-2"):
        rsa_decrypt_pkcs1v15(key, encrypt_block(type1))


# ---------------------------------------------------------------- encryption side


def test_encrypt_is_deterministic_with_injected_rng_and_decrypts() -> None:
    key = private_from_slot("cf_device_priv_slot")
    creds = vec("cf_creds")
    a = rsa_encrypt_pkcs1v15(key.public_key(), creds, counting_rng())
    b = rsa_encrypt_pkcs1v15(key.public_key(), creds, counting_rng())
    assert a == b and len(a) == 128
    assert rsa_decrypt_pkcs1v15(key, a) == creds
    # a zero byte drawn from the rng is never used as padding
    em = rsa_public_raw(key.public_key(), a)
    assert 0 not in em[2 : 128 - 41]


def test_encrypt_rng_with_zeros_and_too_long_message() -> None:
    key = private_from_slot("cf_device_priv_slot")
    draws = iter([b"\x00" * 50, b"\x00\x07" * 100, b"\x09" * 200])
    ct = rsa_encrypt_pkcs1v15(key.public_key(), b"hello", lambda n: next(draws)[:n])
    assert rsa_decrypt_pkcs1v15(key, ct) == b"hello"
    with pytest.raises(RsaError, match="too long"):
        rsa_encrypt_pkcs1v15(key.public_key(), bytes(118))


def test_sign_raw_type1_reproduces_fixture_signature() -> None:
    """Our server-side "signature" verifies, for 2048-bit and other key sizes."""
    server = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    creds, ct = vec("hs_creds"), vec("hs_creds_ct")
    sig = rsa_sign_raw_type1(server, hmac_sha1(creds, ct))
    assert verify_server_signature(server.public_key(), creds, ct, sig).valid
    small = wrong_key_1024()
    sig = rsa_sign_raw_type1(small, hmac_sha1(creds, ct))
    assert verify_server_signature(small.public_key(), creds, ct, sig).valid
    payload, reason = open_type1_block(small.public_key(), sig)
    assert reason == "ok" and payload == hmac_sha1(creds, ct)


def test_signature_with_digestinfo_payload_is_reported() -> None:
    server = wrong_key_1024()
    sig = rsa_sign_raw_type1(server, b"\x30" + bytes(34))
    check = verify_server_signature(server.public_key(), b"c", b"x", sig)
    assert not check.valid and "35 bytes" in check.reason


def test_private_raw_matches_cryptography_and_is_cached() -> None:
    key = private_from_slot("hs_device_priv_slot")
    assert prepare_private_key(key) is prepare_private_key(key)
    block = bytes(range(1, 129))
    assert rsa_public_raw(key.public_key(), rsa_private_raw(key, block)) == block
    with pytest.raises(RsaError):
        rsa_private_raw(key, bytes(127))
    with pytest.raises(RsaError):
        rsa_public_raw(key.public_key(), b"\xff" * 128)


# ---------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(min_size=128, max_size=128),
    )
)
def test_arbitrary_ciphertext_raises_only_rsa_decrypt_error(data: bytes) -> None:
    key = private_from_slot("hs_device_priv_slot")
    try:
        out = rsa_decrypt_pkcs1v15(key, data)
    except RsaDecryptError as exc:
        assert exc.reason
    else:
        assert len(out) <= 128 - 11


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=64), st.binary(max_size=140))
def test_verify_signature_never_raises(sig: bytes, creds: bytes, ct: bytes) -> None:
    result = verify_server_signature(public("hs_server_pub"), creds, ct, sig)
    assert not result.valid and result.reason
