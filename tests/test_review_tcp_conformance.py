"""Spec conformance of the TCP core on traffic real firmware and clouds produce.

Each test builds the bytes a source named in the spec sends (Device OS ``messages.cpp``,
``chunked_transfer.cpp``, spark-protocol / Brewskey flashers, ``Handshake.js``), runs them
through the real :class:`~dissector.protocol.tcp.TcpConnection` with real encryption, and
checks the message records and findings.
"""

from __future__ import annotations

import zlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dissector.coap import CoapError, CoapMessage, CoapOption, decode
from dissector.crypto import rsa_encrypt_pkcs1v15
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.output.records import message_record
from dissector.protocol.events import Event, FindingEvent, MessageEvent
from dissector.protocol.tcp import TcpConnection
from dissector.simulate import ByteSource, TcpSessionBuilder

DATA = Path(__file__).parent / "data" / "simulate"
DEVICE_ID = "5190c68b84cc2643c6b052a7"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
CON, NON, ACK = 0, 1, 2
GET, POST = 1, 2


@cache
def _keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    device = serialization.load_pem_private_key((DATA / f"{DEVICE_ID}.pem").read_bytes(), None)
    server = serialization.load_pem_private_key((DATA / "default_key.pem").read_bytes(), None)
    assert isinstance(device, rsa.RSAPrivateKey) and isinstance(server, rsa.RSAPrivateKey)
    return device, server


def _ring() -> KeyRing:
    device, server = _keys()
    ring = KeyRing()
    ring.add_key(device, role="device", device_id=DEVICE_ID)
    ring.add_key(server, role="server")
    return ring


class Session:
    """A TCP session with the handshake done and Hellos exchanged; device message IDs
    follow the little-endian salt convention (Device OS ≥ 0.8 / the 0.7 virtual device)."""

    def __init__(self, *, handshake: bool = True) -> None:
        device, server = _keys()
        self.b = TcpSessionBuilder(device, server, DEVICE_ID)
        self.device_mid = self.b.session_credentials.message_id_seed_le
        self.cloud_mid = 40000
        if handshake:
            self.b.handshake()
            self.hellos()

    def hellos(self) -> None:
        self.device(_msg(NON, POST, self.next_device_mid(), path=["h"], payload=_HELLO_B))
        self.cloud(_msg(NON, POST, self.next_cloud_mid(), b"\x01", path=["h"]))

    def next_device_mid(self) -> int:
        self.device_mid = (self.device_mid + 1) & 0xFFFF
        return self.device_mid

    def next_cloud_mid(self) -> int:
        self.cloud_mid = (self.cloud_mid + 1) & 0xFFFF
        return self.cloud_mid

    def device(self, msg: CoapMessage | bytes) -> None:
        self.b.device_sends(msg)

    def cloud(self, msg: CoapMessage | bytes) -> None:
        self.b.cloud_sends(msg)

    def run(self, drop_device_write: int | None = None) -> tuple[list[Event], TcpConnection]:
        """Feed every write; ``drop_device_write`` (index among device frames) is replaced
        by a capture gap of its length."""
        conn = TcpConnection("t", _ring())
        events: list[Event] = []
        device_frames = -1
        for write in self.b.writes:
            if write.direction is D2C and len(write.data) != 256:
                device_frames += 1
                if device_frames == drop_device_write:
                    events += conn.receive_gap(D2C, len(write.data), write.ts)
                    continue
            events += conn.receive_data(write.direction, write.data, write.ts)
        events += conn.end()
        return events, conn


_HELLO_B = bytes.fromhex("0006000300020006")  # product 6, version 3, flags 0x02, Photon


def _msg(
    mtype: int,
    code: int,
    mid: int,
    token: bytes = b"",
    *,
    path: list[str | bytes] | None = None,
    queries: list[bytes] | None = None,
    payload: bytes = b"",
) -> CoapMessage:
    options = [CoapOption(11, p.encode() if isinstance(p, str) else p) for p in path or []]
    options += [CoapOption(15, q) for q in queries or []]
    return CoapMessage(1, mtype, code, mid, token, options, payload)


def _records(events: list[Event]) -> list[dict[str, Any]]:
    return [message_record(e) for e in events if isinstance(e, MessageEvent)]


def _codes(events: list[Event]) -> list[str]:
    return [e.finding.code for e in events if isinstance(e, FindingEvent)]


# --- empty payloads behind a payload marker (Device OS messages.cpp) -------------------------


def test_codec_accepts_a_bare_payload_marker_only_when_lenient() -> None:
    raw = bytes.fromhex("61450102 07ff".replace(" ", ""))
    with pytest.raises(CoapError):
        decode(raw)
    msg = decode(raw, lenient=True)
    assert (msg.type, msg.code, msg.mid, msg.token, msg.payload) == (ACK, 0x45, 0x0102, b"\7", b"")
    assert msg.violations == ["payload marker followed by no payload"]
    # A well-formed message decodes identically either way.
    good = bytes.fromhex("61450102 07ff 41".replace(" ", ""))
    assert decode(good, lenient=True) == decode(good)
    assert decode(good, lenient=True).violations == []


def test_empty_string_variable_is_a_variable_value_not_a_malformed_frame() -> None:
    """``Messages::variable_value(buf, id, token, str, 0)`` = ``content()`` (which always
    writes ``ff``) + zero bytes: ``61 45 id id tt ff`` for an empty String variable."""
    s = Session()
    mid = s.next_cloud_mid()
    s.cloud(_msg(CON, GET, mid, b"\x02", path=["v", "status"]))
    s.device(bytes.fromhex(f"6145{mid:04x}02ff"))
    s.device(_msg(NON, POST, s.next_device_mid(), path=["E", "after"], payload=b"x"))
    events, _ = s.run()
    recs = _records(events)
    value = next(r for r in recs if r["kind"] == "VariableValue")
    assert value["coap"]["payload"] == ""
    assert value["decoded"]["name"] == "status"
    assert value["request"]["kind"] == "VariableRequest"
    assert value["violations"] == ["payload marker followed by no payload"]
    codes = _codes(events)
    assert "coap.malformed" not in codes
    assert "coap.mid_jump" not in codes
    assert all(r["coap"] is not None for r in recs)


def test_event_with_empty_data_string_is_decoded() -> None:
    """``Messages::event``: ``if (NULL != data) { *p++ = 0xff; memcpy(.., strlen(data)) }``:
    ``Particle.publish("door", "")`` ends in a bare payload marker."""
    s = Session()
    s.device(bytes.fromhex(f"5002{s.next_device_mid():04x}b1650464 6f6f72ff".replace(" ", "")))
    s.device(_msg(NON, POST, s.next_device_mid(), path=["e", "next"], payload=b"1"))
    events, _ = s.run()
    recs = _records(events)
    event = recs[2]
    assert event["kind"] == "PublicEvent"
    assert event["decoded"]["name"] == "door"
    assert event["decoded"]["data"] == ""
    assert recs[3]["kind"] == "PublicEvent"
    assert "coap.malformed" not in _codes(events)
    assert "coap.mid_jump" not in _codes(events)


# --- fast OTA (chunked_transfer.cpp handle_chunk; spark-protocol / Brewskey flashers) -------


def _fast_ota(s: Session, chunks: int, token_wrap: int) -> None:
    token = 0

    def next_token() -> bytes:
        nonlocal token
        token = (token + 1) % token_wrap
        return bytes((token,))

    mid = s.next_cloud_mid()
    begin = bytes.fromhex("01 0100 00012c00 00 00000000".replace(" ", ""))
    s.cloud(_msg(CON, POST, mid, next_token(), path=["u"], payload=begin))
    s.device(_msg(ACK, 0, mid))
    ready_token = bytes((token,))
    s.device(_msg(NON, 0x44, s.next_device_mid(), ready_token, payload=b"\x01"))
    for i in range(chunks):
        data = bytes((i & 0xFF,)) * 256
        crc = zlib.crc32(data).to_bytes(4, "big")
        s.cloud(
            _msg(
                CON,
                POST,
                s.next_cloud_mid(),
                next_token(),
                path=["c"],
                queries=[crc, i.to_bytes(2, "big")],
                payload=data,
            )
        )


@pytest.mark.parametrize("token_wrap", [255, 256], ids=["spark-protocol", "brewskey"])
def test_fast_ota_chunks_are_never_answered_so_tokens_wrap_without_reuse(token_wrap: int) -> None:
    """In fast OTA the device sends no ACK and no ChunkReceived for indexed chunks, and the
    clouds' 1-byte tokens wrap (1..254,0 / 0..255): 300 chunks are clean traffic."""
    s = Session()
    _fast_ota(s, 300, token_wrap)
    # After the transfer the cloud reads a variable with a token the chunks used too.
    mid = s.next_cloud_mid()
    s.cloud(_msg(CON, GET, mid, b"\x07", path=["v", "x"]))
    s.device(_msg(ACK, 0x45, mid, b"\x07", payload=b"\0\0\0\1"))
    events, _ = s.run()
    kinds = [r["kind"] for r in _records(events)]
    assert kinds.count("Chunk") == 300
    assert kinds[-1] == "VariableValue"
    codes = _codes(events)
    assert "coap.token_reuse" not in codes
    assert "particle.ota.chunk_crc_mismatch" not in codes


def test_legacy_chunks_still_wait_for_their_chunk_received() -> None:
    """Without an index (normal mode) the chunk is answered: empty ACK, then ChunkReceived
    2.04 with the chunk's token; a second request with that token while the first is
    unanswered is still token reuse."""
    s = Session()
    data = b"\xaa" * 256
    crc = zlib.crc32(data).to_bytes(4, "big")
    mid = s.next_cloud_mid()
    s.cloud(_msg(CON, POST, mid, b"\x05", path=["c"], queries=[crc], payload=data))
    s.device(_msg(ACK, 0, mid))
    s.device(_msg(NON, 0x44, s.next_device_mid(), b"\x05"))
    s.cloud(_msg(CON, POST, s.next_cloud_mid(), b"\x06", path=["c"], queries=[crc], payload=data))
    s.cloud(_msg(CON, POST, s.next_cloud_mid(), b"\x06", path=["c"], queries=[crc], payload=data))
    events, _ = s.run()
    recs = _records(events)
    received = next(r for r in recs if r["kind"] == "ChunkReceived")
    assert received["request"]["kind"] == "Chunk"
    assert received["decoded"]["ok"] is True
    assert _codes(events).count("coap.token_reuse") == 1


# --- device message-ID sequence (Node "Bad Counter" rule, spec §3.5) ------------------------


def test_a_real_device_message_id_jump_is_reported() -> None:
    s = Session()
    s.device(_msg(NON, POST, s.next_device_mid(), path=["e", "a"]))
    s.next_device_mid()  # skipped on purpose
    s.device(_msg(NON, POST, s.next_device_mid(), path=["e", "b"]))
    events, _ = s.run()
    assert _codes(events).count("coap.mid_jump") == 1


def test_an_undecodable_device_frame_does_not_make_the_next_one_a_jump() -> None:
    """A frame that decrypts but is not CoAP (here version 0) still used a message ID."""
    s = Session()
    s.device(b"\x00\x02" + s.next_device_mid().to_bytes(2, "big") + b"junk")
    s.device(_msg(NON, POST, s.next_device_mid(), path=["e", "b"]))
    events, _ = s.run()
    codes = _codes(events)
    assert "coap.malformed" in codes
    assert "coap.mid_jump" not in codes


def test_device_frames_lost_to_a_capture_gap_are_not_a_message_id_jump() -> None:
    s = Session()
    for name in ("a", "b", "c", "d"):
        s.device(_msg(NON, POST, s.next_device_mid(), path=["e", name], payload=b"1"))
    # device frames: 0 Hello, 1 a, 2 b (lost), 3 c (its IV was in b: first block lost), 4 d
    events, _ = s.run(drop_device_write=2)
    recs = [r for r in _records(events) if r["direction"] == "device->cloud"]
    assert [r["kind"] for r in recs] == ["Hello", "PublicEvent", "Encrypted", "PublicEvent"]
    codes = _codes(events)
    assert "tcp.gap" in codes
    assert "coap.mid_jump" not in codes


# --- identity plaintext length (Handshake.js read_coreid, spec §2.1) -------------------------


def test_identity_longer_than_214_bytes_is_read_as_the_reference_cloud_reads_it() -> None:
    """The Node server takes bytes 52..end of any plaintext ≥ 52 bytes as the device key; a
    longer identity must not be reported as encrypted to the wrong server key."""
    s = Session(handshake=False)
    s.b.cloud_nonce()
    plaintext = s.b.identity_plaintext + b"\x00\x00"
    blob = rsa_encrypt_pkcs1v15(_keys()[1].public_key(), plaintext, ByteSource(7))
    s.b.raw(D2C, blob)
    s.b.cloud_session_key()
    s.hellos()
    events, conn = s.run()
    codes = _codes(events)
    assert "handshake.identity.wrong_server_key" not in codes
    assert "handshake.identity.unusual_length" in codes
    assert conn.info.device_id == DEVICE_ID
    assert conn.info.checks["identity_decrypted"].status.value == "passed"
    assert conn.info.checks["nonce_echo"].status.value == "passed"
    assert [r["kind"] for r in _records(events)] == ["Hello", "Hello"]


def test_identity_of_unusual_length_without_the_nonce_echo_is_not_trusted() -> None:
    """The length check is what catches a wrong server key: an odd length is read only when
    the plaintext echoes the captured nonce."""
    s = Session(handshake=False)
    s.b.cloud_nonce()
    plaintext = bytes(40) + s.b.identity_plaintext[40:] + b"\x00\x00"
    blob = rsa_encrypt_pkcs1v15(_keys()[1].public_key(), plaintext, ByteSource(7))
    s.b.raw(D2C, blob)
    s.b.cloud_session_key()
    s.hellos()
    events, conn = s.run()
    codes = _codes(events)
    assert "handshake.identity.wrong_server_key" in codes
    assert "handshake.identity.unusual_length" not in codes
    assert conn.info.checks["identity_decrypted"].status.value == "failed"


# --- UpdateBegin parameters (chunked_transfer.cpp handle_update_begin) ------------------------


def test_update_begin_payload_longer_than_12_bytes_is_parsed_like_the_device() -> None:
    """The device reads flags, chunk size, file size, destination and address from the first
    12 payload bytes whenever the message is long enough; extra bytes are not an error."""
    s = Session()
    mid = s.next_cloud_mid()
    params = bytes.fromhex("01 0200 0001e240 80 00001000 00".replace(" ", ""))
    s.cloud(_msg(CON, POST, mid, b"\x09", path=["u"], payload=params))
    s.device(_msg(ACK, 0, mid))
    s.device(_msg(NON, 0x44, s.next_device_mid(), b"\x09", payload=b"\x01"))
    events, _ = s.run()
    recs = _records(events)
    begin = next(r for r in recs if r["kind"] == "UpdateBegin")["decoded"]
    assert begin["fast_ota"] is True
    assert (begin["chunk_size"], begin["file_size"]) == (512, 123456)
    assert (begin["destination_name"], begin["address"]) == ("application_storage", 4096)
    assert begin["trailing"] == "00" and "error" not in begin
    ready = next(r for r in recs if r["kind"] == "UpdateReady")
    assert ready["decoded"]["fast_ota"] is True and ready["request"]["kind"] == "UpdateBegin"
    assert "particle.decode_error" not in _codes(events)
