"""The crypto primitives on real handshakes from the reference captures (Device OS 0.7.0
against spark-protocol 0.1.6 and Brewskey 1.0.21), with the keys those runs used."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dissector.crypto import (
    CbcDirection,
    RsaDecryptError,
    coap_header_plausible,
    parse_credentials,
    parse_identity_plaintext,
    rsa_decrypt_pkcs1v15,
    score_session_key,
    verify_server_signature,
)
from dissector.keys import KeyRing

DATA = Path(__file__).parent / "data" / "keys" / "reference"
VECTORS = Path(__file__).parent / "data" / "keys" / "vectors"
DEVICE_ID = "5190c68b84cc2643c6b052a7"
CAPTURES = ["sparkprotocol-0.1.6__deviceos-0.7.0_full", "brewskey-1.0.21__deviceos-0.7.0_full"]


@cache
def handshakes() -> dict[str, Any]:
    return json.loads((VECTORS / "tcp_handshakes.json").read_text())


@cache
def ring() -> KeyRing:
    r = KeyRing()
    r.load(DATA / "tcp")
    for name in CAPTURES:
        r.load(DATA / f"{name}.keylog", role="keylog")
    return r


@pytest.mark.parametrize("name", CAPTURES)
def test_identity_h2_decrypts_with_server_key(name: str) -> None:
    hs = handshakes()[name]
    (server,) = ring().server_private_keys()
    ident = parse_identity_plaintext(rsa_decrypt_pkcs1v15(server, bytes.fromhex(hs["h2"])))
    assert ident.nonce == bytes.fromhex(hs["nonce"])
    assert ident.device_id_hex == DEVICE_ID
    assert ident.public_key_der is not None
    assert ring().device_private_key(public_der=ident.public_key_der) is ring().device_private_key(
        DEVICE_ID
    )


@pytest.mark.parametrize("name", CAPTURES)
def test_h3_credentials_match_key_log_and_signature_verifies(name: str) -> None:
    hs = handshakes()[name]
    h3 = bytes.fromhex(hs["h3"])
    device = ring().device_private_key(DEVICE_ID)
    assert device is not None
    creds = rsa_decrypt_pkcs1v15(device, h3[:128])
    assert creds == ring().tcp_session(bytes.fromhex(hs["nonce"]))
    (server_pub,) = ring().server_public_keys()
    assert verify_server_signature(server_pub, creds, h3[:128], h3[128:]).valid
    # the server's own private key is not the device key: the trap must not fire silently
    (server,) = ring().server_private_keys()
    with pytest.raises(RsaDecryptError, match="modulus"):
        rsa_decrypt_pkcs1v15(server, h3[:128])


@pytest.mark.parametrize("name", CAPTURES)
def test_frames_decrypt_with_iv_rule_both_directions(name: str) -> None:
    hs = handshakes()[name]
    creds_raw = ring().tcp_session(bytes.fromhex(hs["nonce"]))
    assert creds_raw is not None
    creds = parse_credentials(creds_raw)
    for direction in ("frames_d2s", "frames_s2d"):
        state = CbcDirection(creds.key, creds.iv)
        for ct_hex in hs[direction]:
            result = state.decrypt(bytes.fromhex(ct_hex))
            assert result.ok, (direction, result.reason)
            assert result.plaintext is not None and coap_header_plausible(result.plaintext)
    hello = CbcDirection(creds.key, creds.iv).decrypt(bytes.fromhex(hs["frames_d2s"][0]))
    assert hello.plaintext is not None
    # POST /h; the virtual device seeds message IDs with the little-endian salt (spec §11)
    assert hello.plaintext[1] == 0x02 and hello.plaintext[4:6] == b"\xb1h"
    assert int.from_bytes(hello.plaintext[2:4], "big") == creds.message_id_seed_le + 1


def test_trial_decryption_finds_the_logged_key_for_a_mid_session_capture() -> None:
    best = {}
    for name in CAPTURES:
        frames = [bytes.fromhex(x) for x in handshakes()[name]["frames_d2s"][1:]]
        scores = {
            nonce: score_session_key(creds[:16], frames) for nonce, creds in ring().tcp_sessions()
        }
        best[name] = max(scores, key=lambda n: scores[n])
        assert scores[best[name]] >= 2
        assert best[name] == bytes.fromhex(handshakes()[name]["nonce"])
    assert best[CAPTURES[0]] != best[CAPTURES[1]]
