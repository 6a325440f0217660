"""Particle AES-128-CBC and its IV rule against test-vectors §2 and §3.1."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.crypto import (
    CbcDirection,
    CbcEncryptor,
    SessionCredentials,
    coap_header_plausible,
    parse_credentials,
    pkcs7_pad,
    score_session_key,
    strip_pkcs7,
    trial_decrypt_score,
)

DATA = Path(__file__).parent / "data" / "keys" / "reference"
VECTORS = Path(__file__).parent / "data" / "keys" / "vectors"


@cache
def vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "test_vectors.json").read_text())


def creds() -> SessionCredentials:
    return parse_credentials(bytes.fromhex(vectors()["cf_creds"]))


def frame(test: str, direction: str) -> dict[str, Any]:
    for f in vectors()["cf_frames"]:
        if f["test"] == test and f["direction"] == direction:
            return f
    raise KeyError(test)


def ct_of(test: str, direction: str) -> bytes:
    raw = bytes.fromhex(frame(test, direction)["frame"])
    assert int.from_bytes(raw[:2], "big") == len(raw) - 2
    return raw[2:]


def pt_of(test: str, direction: str) -> bytes:
    return bytes.fromhex(frame(test, direction)["plaintext"])


HELLO = ("HandshakeSendsExpectedHello", "d2s")
DESCRIBE_REQ = ("EventLoopRespondsToDescribeWith50Bytes", "s2d")
DESCRIBE_RESP = ("EventLoopRespondsToDescribeWithDescription", "d2s")
FUNC_CALL = ("EventLoopRespondsToFunctionCallWithACK", "s2d")
FUNC_ACK = ("EventLoopRespondsToFunctionCallWithACK", "d2s")
FUNC_RETURN = ("EventLoopLaterRespondsToFunctionCallWithFunctionReturn", "d2s")


# ---------------------------------------------------------------- credentials


def test_aes_fixture_vector() -> None:
    c = parse_credentials(bytes.fromhex(vectors()["aes_creds"]))
    d = CbcDirection(c.key, c.iv)
    result = d.decrypt(bytes.fromhex(vectors()["aes_ct"]))
    assert result.ok and result.first_block_known
    assert result.plaintext == b"Super secret message\n"
    assert result.raw == bytes.fromhex(vectors()["aes_pt"])
    assert d.iv == bytes.fromhex(vectors()["aes_ct"])[:16]


def test_credentials_layout_and_seeds() -> None:
    c = creds()
    assert c.key.hex() == "ead9e1e2014903b9e76632f6fa5afa66"
    assert c.iv.hex() == "9522a567e100cd3cfe5215473921b63d"
    assert c.salt.hex() == "97b197250038fa09"
    assert c.message_id_seed_be == 0x97B1
    assert c.message_id_seed_le == 0xB197
    assert c.token_seed == 0x97
    assert c.raw == bytes.fromhex(vectors()["cf_creds"])
    assert SessionCredentials.from_bytes(c.raw) == c
    with pytest.raises(ValueError):
        parse_credentials(bytes(39))


# ---------------------------------------------------------------- §3.1 frames, IV rule


def test_every_vector_frame_decrypts_with_its_documented_iv() -> None:
    c = creds()
    checked = 0
    for f in vectors()["cf_frames"]:
        if f["plaintext"] is None:
            continue
        iv = c.iv if f["iv"] == "initial" else bytes.fromhex(f["iv"])
        result = CbcDirection(c.key, iv).decrypt(bytes.fromhex(f["frame"])[2:])
        assert result.ok, f["test"]
        assert result.plaintext == bytes.fromhex(f["plaintext"]), f["test"]
        assert result.plaintext is not None and coap_header_plausible(result.plaintext)
        checked += 1
    assert checked == 33


def test_filler_frame_does_not_decrypt_cleanly() -> None:
    c = creds()
    ct = ct_of("EventLoopLaterReceives16Bytes", "s2d")
    result = CbcDirection(c.key, c.iv).decrypt(ct)
    assert not (result.ok and coap_header_plausible(result.plaintext or b""))
    assert len(result.raw) == 16


def test_hello_describe_chain_device_direction() -> None:
    c = creds()
    up = CbcDirection(c.key, c.iv)
    hello = up.decrypt(ct_of(*HELLO))
    assert hello.plaintext == bytes.fromhex("500297b2b168ffffffffff0000")
    # Hello message ID = big-endian salt seed + 1 (Core implementation)
    assert int.from_bytes(hello.plaintext[2:4], "big") == c.message_id_seed_be + 1
    assert up.iv == ct_of(*HELLO)[:16]
    describe = up.decrypt(ct_of(*DESCRIBE_RESP))
    assert describe.ok and describe.plaintext == pt_of(*DESCRIBE_RESP)
    assert b'{"f":["brew"],"v":{"temperature":2}}' in describe.plaintext


def test_hello_ack_function_return_chain_device_direction() -> None:
    c = creds()
    up = CbcDirection(c.key, c.iv)
    assert up.decrypt(ct_of(*HELLO)).ok
    ack = up.decrypt(ct_of(*FUNC_ACK))
    assert ack.plaintext == bytes.fromhex("600097b2")
    ret = up.decrypt(ct_of(*FUNC_RETURN))
    assert ret.plaintext == bytes.fromhex("514497b3efff000001c8")
    assert up.frames == 3


def test_server_direction_starts_with_same_iv() -> None:
    c = creds()
    down = CbcDirection(c.key, c.iv)
    assert down.decrypt(ct_of(*DESCRIBE_REQ)).plaintext == pt_of(*DESCRIBE_REQ)
    assert CbcDirection(c.key, c.iv).decrypt(ct_of(*FUNC_CALL)).plaintext == pt_of(*FUNC_CALL)


def test_wrong_iv_order_breaks_the_first_block_only() -> None:
    c = creds()
    up = CbcDirection(c.key, c.iv)  # skip the Hello: IV is wrong for the describe response
    result = up.decrypt(ct_of(*DESCRIBE_RESP))
    assert result.raw[16:] == pkcs7_pad(pt_of(*DESCRIBE_RESP))[16:]
    assert result.raw[:16] != pt_of(*DESCRIBE_RESP)[:16]


def test_encryptor_reproduces_vector_frames() -> None:
    c = creds()
    enc = CbcEncryptor(c.key, c.iv)
    assert enc.encrypt_frame(pt_of(*HELLO)) == bytes.fromhex(frame(*HELLO)["frame"])
    assert enc.encrypt_frame(pt_of(*FUNC_ACK)) == bytes.fromhex(frame(*FUNC_ACK)["frame"])
    ct = enc.encrypt(pt_of(*FUNC_RETURN))
    assert enc.frame(ct) == bytes.fromhex(frame(*FUNC_RETURN)["frame"])
    assert enc.iv == ct[:16]


def test_encryptor_aligned_message_gets_full_pad_block() -> None:
    c = creds()
    ct = CbcEncryptor(c.key, c.iv).encrypt(bytes(16))
    assert len(ct) == 32
    result = CbcDirection(c.key, c.iv).decrypt(ct)
    assert result.plaintext == bytes(16) and result.raw[16:] == b"\x10" * 16
    with pytest.raises(ValueError):
        CbcEncryptor.frame(bytes(0x10000))


# ---------------------------------------------------------------- mid-session, bad input


def test_unknown_iv_decrypts_all_but_first_block_then_recovers() -> None:
    c = creds()
    up = CbcDirection(c.key, None)
    first = up.decrypt(ct_of(*DESCRIBE_RESP))
    assert not first.first_block_known and first.padding_ok
    assert first.plaintext == pt_of(*DESCRIBE_RESP)[16:]
    assert "IV unknown" in first.reason
    # next frame in the same direction decrypts fully with the rule
    enc = CbcEncryptor(c.key, ct_of(*DESCRIBE_RESP)[:16])
    nxt = up.decrypt(enc.encrypt(b"\x50\x02\x12\x34\xb1e"))
    assert nxt.first_block_known and nxt.plaintext == b"\x50\x02\x12\x34\xb1e"


def test_unknown_iv_single_block_frame() -> None:
    c = creds()
    up = CbcDirection(c.key, None)
    result = up.decrypt(ct_of(*HELLO))
    assert result.plaintext is None and not result.first_block_known
    assert up.iv == ct_of(*HELLO)[:16]
    assert up.decrypt(ct_of(*FUNC_ACK)).plaintext == bytes.fromhex("600097b2")


def test_bad_length_reports_and_advances_iv() -> None:
    c = creds()
    d = CbcDirection(c.key, c.iv)
    bad = bytes(range(20))
    result = d.decrypt(bad)
    assert result.plaintext is None and "multiple of 16" in result.reason
    assert d.iv == bad[:16]
    d2 = CbcDirection(c.key, c.iv)
    assert d2.decrypt(b"").reason.startswith("ciphertext length 0")
    assert d2.iv == c.iv


def test_bad_padding_keeps_raw_plaintext() -> None:
    c = creds()
    # 20 bytes → block 2 is "xxxx" + twelve 0x0c; flipping ciphertext block 1 byte 15
    # turns the last pad byte into 0x03 (0x0c 0x0c 0x03: invalid)
    tampered = bytearray(CbcEncryptor(c.key, c.iv).encrypt(b"x" * 20))
    tampered[15] ^= 0x0C ^ 0x03
    result = CbcDirection(c.key, c.iv).decrypt(bytes(tampered))
    assert not result.padding_ok and result.plaintext is None
    assert "bad padding" in result.reason and len(result.raw) == 32
    assert result.raw[16:20] == b"xxxx"


def test_strip_pkcs7_strictness() -> None:
    assert strip_pkcs7(b"abc" + b"\x01") == (b"abc", "ok")
    assert strip_pkcs7(b"\x10" * 16) == (b"", "ok")
    assert strip_pkcs7(b"abc\x00")[0] is None
    assert strip_pkcs7(b"a" * 15 + b"\x11")[0] is None
    assert strip_pkcs7(b"ab\x03\x02\x03")[0] is None
    assert strip_pkcs7(b"\x05\x05")[0] is None
    assert strip_pkcs7(b"")[0] is None


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        CbcDirection(bytes(15), None)
    with pytest.raises(ValueError):
        CbcDirection(bytes(16), bytes(8))


# ---------------------------------------------------------------- trial decryption


def test_trial_decrypt_with_known_previous_block() -> None:
    c = creds()
    assert trial_decrypt_score(c.key, ct_of(*DESCRIBE_RESP), ct_of(*HELLO)[:16])
    assert trial_decrypt_score(c.key, ct_of(*FUNC_RETURN), ct_of(*FUNC_ACK)[:16])
    other = parse_credentials(bytes.fromhex(vectors()["hs_creds"]))
    assert not trial_decrypt_score(other.key, ct_of(*DESCRIBE_RESP), ct_of(*HELLO)[:16])
    assert not trial_decrypt_score(bytes(3), ct_of(*DESCRIBE_RESP), None)


def test_trial_decrypt_without_iv_checks_last_block_padding() -> None:
    c = creds()
    long_ct = ct_of("SubscribeToFirehoseWithMaxLenFilterMatchesOpenSSL", "d2s")
    assert trial_decrypt_score(c.key, long_ct, None)
    assert not trial_decrypt_score(c.key, ct_of(*HELLO), None)  # 16 bytes: cannot tell
    wrong = [parse_credentials(bytes(range(i, i + 40))).key for i in range(20)]
    assert sum(trial_decrypt_score(k, long_ct, None) for k in wrong) <= 2


def test_score_session_key_picks_the_right_key() -> None:
    c = creds()
    frames = [ct_of(*HELLO), ct_of(*DESCRIBE_RESP)]
    other = parse_credentials(bytes.fromhex(vectors()["hs_creds"]))
    assert score_session_key(c.key, frames) > score_session_key(other.key, frames)
    assert score_session_key(c.key, [ct_of(*HELLO), ct_of(*FUNC_ACK), ct_of(*FUNC_RETURN)]) == 2


# ---------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=5), st.booleans())
def test_cbc_direction_never_raises(frames: list[bytes], known: bool) -> None:
    c = creds()
    d = CbcDirection(c.key, c.iv if known else None)
    for ct in frames:
        result = d.decrypt(ct)
        assert isinstance(result.reason, str)
        if result.plaintext is not None:
            assert result.padding_ok


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100), st.binary(min_size=16, max_size=16))
def test_encrypt_decrypt_round_trip(message: bytes, iv: bytes) -> None:
    key = creds().key
    enc = CbcEncryptor(key, iv)
    dec = CbcDirection(key, iv)
    for _ in range(2):
        assert dec.decrypt(enc.encrypt(message)).plaintext == message
    assert dec.iv == enc.iv
