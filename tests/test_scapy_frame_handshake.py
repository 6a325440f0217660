"""Handshake and frame layers, and the build side (encrypt_frame / decrypt_frame), against
the Core session fixture of the firmware unit tests (test-vectors §3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scapy.packet import Packet, Raw

from dissector.crypto import parse_credentials, parse_identity_plaintext
from dissector.scapy import (
    CoAP,
    FrameError,
    ParticleChunkMissed,
    ParticleFrame,
    ParticleFunctionReturn,
    ParticleHelloA,
    ParticleIdentity,
    ParticleIdentityPlaintext,
    ParticleNonce,
    ParticleSessionCredentials,
    ParticleSessionKey,
    ParticleTime,
    decrypt_frame,
    encrypt_frame,
    session_credentials,
)

FIXTURE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "scapy" / "core_fixture.json").read_text()
)
CREDS = bytes.fromhex(FIXTURE["credentials"])
FRAMES = FIXTURE["frames"]
PAYLOAD_LAYER = {
    "Hello": ParticleHelloA,
    "FunctionReturn": ParticleFunctionReturn,
    "GetTimeReturn": ParticleTime,
    "ChunkMissed": ParticleChunkMissed,
}


def iv_of(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["iv"]) if vector["iv"] else CREDS[16:32]


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["test"])
def test_firmware_frames_decrypt_to_their_plaintext(vector: dict[str, Any]) -> None:
    wire = bytes.fromhex(vector["frame"])
    frame = decrypt_frame(wire, CREDS, iv_of(vector), kind=vector["kind"])
    assert bytes(frame[CoAP]) == bytes.fromhex(vector["plaintext"])
    assert bytes(frame) == wire  # the decrypted view is never serialised
    expected = PAYLOAD_LAYER.get(vector["kind"])
    if expected is not None:
        assert isinstance(frame[CoAP].payload, expected)


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["test"])
def test_encrypting_the_plaintext_rebuilds_the_firmware_frame_byte_for_byte(
    vector: dict[str, Any],
) -> None:
    message = CoAP(bytes.fromhex(vector["plaintext"]))
    frame = encrypt_frame(message, CREDS, iv_of(vector))
    assert bytes(frame) == bytes.fromhex(vector["frame"])
    assert bytes(frame[CoAP]) == bytes(message)


def test_a_direction_chains_its_ivs_through_next_iv() -> None:
    device = [v for v in FRAMES if v["direction"] == "device->cloud"][:3]
    iv = None
    for vector in device:
        frame = encrypt_frame(CoAP(bytes.fromhex(vector["plaintext"])), CREDS, iv)
        assert bytes(frame) == bytes.fromhex(vector["frame"])
        iv = frame.next_iv


def test_frame_layer_round_trips_and_derives_its_length() -> None:
    frame = ParticleFrame(ciphertext=bytes(range(32)))
    data = bytes(frame)
    assert data[:2] == b"\x00\x20" and len(data) == 34
    back = ParticleFrame(data)
    assert (back.length, bytes(back.ciphertext)) == (32, bytes(range(32)))
    assert bytes(back) == data
    assert back.summary() == "Particle Frame 32 bytes (encrypted)"
    assert not back.decrypted


def test_extra_bytes_after_a_frame_stay_outside_it() -> None:
    wire = bytes.fromhex(FRAMES[0]["frame"]) + b"\x00\x10"
    frame = ParticleFrame(wire)
    assert len(bytes(frame.ciphertext)) == 16
    assert bytes(frame) == wire


def test_credentials_can_be_a_layer_raw_bytes_or_the_crypto_type() -> None:
    layer = ParticleSessionCredentials(CREDS)
    for creds in (layer, CREDS, parse_credentials(CREDS), Raw() / layer):
        assert session_credentials(creds).raw == CREDS
    with pytest.raises(FrameError):
        session_credentials(CREDS[:39])
    with pytest.raises(FrameError):
        session_credentials(Raw(b"x"))


def test_wrong_key_truncated_frame_and_non_coap_are_frame_errors() -> None:
    vector = FRAMES[0]
    wire = bytes.fromhex(vector["frame"])
    wrong = bytes(16) + CREDS[16:]
    with pytest.raises(FrameError):
        decrypt_frame(wire, wrong)
    with pytest.raises(FrameError):
        decrypt_frame(wire[:10], CREDS)
    with pytest.raises(FrameError):
        decrypt_frame(b"\x00", CREDS)
    not_coap = encrypt_frame(Raw(b"\x00\x01\x02"), CREDS)
    assert isinstance(not_coap.payload, Raw)
    with pytest.raises(FrameError, match="not valid CoAP"):
        decrypt_frame(bytes(not_coap), CREDS)
    with pytest.raises(FrameError):
        encrypt_frame(CoAP(), CREDS, iv=b"short")


def test_handshake_layers_read_the_fixture_like_the_crypto_module() -> None:
    nonce = bytes.fromhex(FIXTURE["nonce"])
    plaintext = bytes.fromhex(FIXTURE["identity_plaintext"])
    h3 = bytes.fromhex(FIXTURE["session_key_message"])

    assert bytes(ParticleNonce(nonce)) == nonce
    assert bytes(ParticleNonce(nonce=nonce)) == nonce

    identity = ParticleIdentityPlaintext(plaintext)
    parsed = parse_identity_plaintext(plaintext)
    assert bytes(identity.nonce) == parsed.nonce == nonce
    assert identity.device_id_hex == parsed.device_id_hex == FIXTURE["device_id"]
    assert bytes(identity.public_key) == parsed.public_key_der
    assert bytes(identity.public_key) == bytes.fromhex(FIXTURE["device_public_der"])
    assert not identity.legacy and bytes(identity) == plaintext
    assert "device_id = 54e1c888f6d9492bebee1ee9" in identity.show(dump=True)

    legacy = ParticleIdentityPlaintext(plaintext[:52])
    assert legacy.legacy and bytes(legacy) == plaintext[:52]
    built = ParticleIdentityPlaintext(nonce=nonce, device_id=FIXTURE["device_id"])
    assert bytes(built) == plaintext[:52]

    key = ParticleSessionKey(h3)
    assert (bytes(key.ciphertext), bytes(key.signature)) == (h3[:128], h3[128:])
    assert bytes(key) == h3

    creds = ParticleSessionCredentials(CREDS)
    parsed_creds = parse_credentials(CREDS)
    assert (bytes(creds.key), bytes(creds.iv), bytes(creds.salt)) == (
        parsed_creds.key,
        parsed_creds.iv,
        parsed_creds.salt,
    )
    assert bytes(creds) == CREDS


@pytest.mark.parametrize(
    ("wire", "view"),
    [
        (ParticleIdentity(bytes(range(256))), ParticleIdentityPlaintext(bytes(214))),
        (ParticleSessionKey(bytes(384)), ParticleSessionCredentials(CREDS)),
        (ParticleFrame(ciphertext=bytes(16)), CoAP(type="ACK")),
    ],
    ids=["identity", "session_key", "frame"],
)
def test_encrypted_layers_write_only_their_wire_bytes(wire: Packet, view: Packet) -> None:
    alone = bytes(wire)
    stacked = wire / view
    assert bytes(stacked) == alone
    assert stacked.haslayer(type(view))
    assert stacked.decrypted
