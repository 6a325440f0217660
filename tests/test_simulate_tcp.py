"""The simulated Particle TCP session, checked by the real dissector and the test vectors."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissector.capture.reader import CaptureReader
from dissector.coap import CoapMessage
from dissector.crypto import CbcDirection, rsa_decrypt_pkcs1v15
from dissector.keys import KeyRing, der_total_length
from dissector.model import Direction
from dissector.output.records import coap_record, to_record
from dissector.pipeline import Dissector
from dissector.simulate import (
    ByteSource,
    SimulationError,
    TcpFlow,
    TcpSessionBuilder,
    write_pcap,
    write_pcapng,
)
from dissector.simulate import messages as m
from tests.helpers import findings, messages

DATA = Path(__file__).parent / "data" / "simulate"
DEVICE_ID = "5190c68b84cc2643c6b052a7"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


@cache
def device_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((DATA / f"{DEVICE_ID}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@cache
def server_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((DATA / "default_key.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@cache
def other_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def core_fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "core_fixture.json").read_text())
    return data


def ring(*, device: bool = False, server: bool = False, keylog: str | None = None) -> KeyRing:
    r = KeyRing()
    if device:
        r.add_key(device_key(), role="device", device_id=DEVICE_ID)
    if server:
        r.add_key(server_key(), role="server")
    if keylog is not None:
        r.load_bytes(keylog.encode(), "sim.keylog", role="keylog")
    return r


def builder(**kwargs: Any) -> TcpSessionBuilder:
    kwargs.setdefault("rng", 7)
    return TcpSessionBuilder(device_key(), server_key(), DEVICE_ID, **kwargs)


def full_session(**kwargs: Any) -> TcpSessionBuilder:
    """A session with every helper, as the reference captures show them."""
    b = builder(**kwargs)
    b.handshake()
    b.device_hello(product_id=3, platform_id=3)
    b.cloud_hello()
    b.device_event("spark/hardware/max_binary", "102400", ack=0)
    b.subscribe("spark")
    b.subscribe("peer/", my_devices=True)
    b.time_request()
    b.describe({"f": ["led", "add"], "v": {"counter": 2, "temp": 9, "status": 4}, "p": 3})
    b.variable_read("counter", m.int32_value(42))
    b.variable_read("temp", m.double_value(21.5))
    b.variable_read("status", b"led:o", piggybacked=False)
    b.device_event("peer/hello", "msg 1", ttl=3600, ack=0x80)
    b.function_call("led", "on", result=1)
    b.function_call("add", "40,7", result=47)
    b.wait(15)
    b.ping()
    b.ping(from_device=False)
    b.cloud_event("peer/fromserver", "hello device")
    b.signal(True)
    b.signal(False)
    b.device_event("public/thing", b"\x00\xffbinary", private=False)
    return b


FULL_SESSION_KINDS = [
    *("Hello", "Hello", "PrivateEvent", "EmptyAck", "Subscribe", "EmptyAck", "Subscribe"),
    *("EmptyAck", "GetTime", "GetTimeReturn", "Describe", "DescribeReturn", "VariableRequest"),
    *("VariableValue", "VariableRequest", "VariableValue", "VariableRequest", "EmptyAck"),
    *("VariableValue", "PrivateEvent", "EventSlowdown", "FunctionCall", "EmptyAck"),
    *("FunctionReturn", "FunctionCall", "EmptyAck", "FunctionReturn", "Ping", "EmptyAck"),
    *("Ping", "EmptyAck", "PrivateEvent", "SignalStart", "SignalAck", "SignalStop", "SignalAck"),
    "PublicEvent",
]


def pcap_of(*builders: TcpSessionBuilder | TcpFlow, **kwargs: Any) -> bytes:
    """The sessions as pcap bytes."""
    buf = io.BytesIO()
    write_pcap(buf, list(builders), **kwargs)
    return buf.getvalue()


def dissect(capture: bytes, keys: KeyRing) -> list[dict[str, Any]]:
    """All records the real pipeline yields for an in-memory capture (as helpers.dissect)."""
    reader = CaptureReader([io.BytesIO(capture)])
    records = (to_record(event) for event in Dissector(keys).run(iter(reader)))
    return [rec for rec in records if rec is not None]


def assert_decrypts_exactly(records: list[dict[str, Any]], b: TcpSessionBuilder) -> None:
    got = messages(records)
    sent = [s for s in b.messages if s.coap is not None]
    assert len(got) == len(sent)
    for rec, s in zip(got, sent, strict=True):
        assert s.coap is not None
        assert rec["direction"] == s.direction.value
        assert rec["coap"] == coap_record(s.coap)
        assert rec["length"] == len(s.frame)
        assert rec["ts"] == pytest.approx(s.ts, abs=1e-6)


# -- end to end through the real pipeline -------------------------------------------------


def test_device_key_alone_decrypts_every_message_as_built() -> None:
    b = full_session()
    records = dissect(pcap_of(b), ring(device=True))
    assert_decrypts_exactly(records, b)
    assert [r["kind"] for r in messages(records)] == FULL_SESSION_KINDS
    assert findings(records) == []
    session = [r for r in records if r["record"] == "session"]
    assert len(session) == 1
    assert session[0]["outcome"] == "established"
    assert session[0]["device_id"] == DEVICE_ID
    assert session[0]["salt_convention"].startswith("little-endian")
    assert not findings(records, "handshake")
    assert not findings(records, "decrypt")


def test_key_log_alone_decrypts_every_message_as_built() -> None:
    b = full_session()
    records = dissect(pcap_of(b), ring(keylog=b.keylog_line() + "\n"))
    assert_decrypts_exactly(records, b)
    session = next(r for r in records if r["record"] == "session")
    assert session["key_source"] == "key log"


def test_server_key_alone_reads_the_identity_but_no_frame() -> None:
    b = full_session()
    records = dissect(pcap_of(b), ring(server=True))
    identity = next(r for r in records if r["record"] == "handshake" and r["step"] == "identity")
    assert identity["info"]["device_id"] == DEVICE_ID
    assert identity["info"]["nonce_echo_ok"] is True
    assert identity["info"]["legacy"] is False
    assert all(r["coap"] is None for r in messages(records))
    assert findings(records, "decrypt.missing_key")


def test_both_keys_verify_the_signature_and_the_nonce_echo() -> None:
    b = full_session(salt_convention="be")
    records = dissect(pcap_of(b), ring(device=True, server=True))
    assert_decrypts_exactly(records, b)
    key_blob = next(r for r in records if r["record"] == "handshake" and r["step"] == "session_key")
    assert key_blob["info"]["signature_valid"] is True
    session = next(r for r in records if r["record"] == "session")
    assert session["salt_convention"].startswith("big-endian")
    assert [c for c in session["handshake"] if c["status"] != "passed"] == []


def test_capture_starting_mid_session_decrypts_with_the_key_log() -> None:
    b = full_session()
    cut = b.messages[1].ts  # the first frames: a long device event, a short cloud ACK
    late = [w for w in b.writes if w.ts > cut]
    records = dissect(pcap_of(TcpFlow(late, syn=False)), ring(keylog=b.keylog_line()))
    assert findings(records, "keylog.trial_match")
    sent = [s for s in b.messages if s.ts > cut]
    got = messages(records)
    assert len(got) == len(sent)
    firsts = {next(i for i, s in enumerate(sent) if s.direction is d) for d in (D2C, C2D)}
    for i, (rec, s) in enumerate(zip(got, sent, strict=True)):
        assert s.coap is not None
        if i in firsts:  # its IV was the first block of the previous, uncaptured frame
            assert rec["coap"] is None
            known = rec["encrypted"]["known_plaintext"]
            if len(s.frame) > 18:
                assert rec["encrypted"]["known_offset"] == 16
                assert known == s.plaintext[16:].hex()
            else:
                assert known is None
        else:
            assert rec["coap"] == coap_record(s.coap)


def test_several_sessions_and_formats_dissect_the_same() -> None:
    first = full_session(rng=1)
    second = full_session(rng=2, start=first.now + 5)
    for kwargs in ({}, {"segment_size": 7}, {"coalesce": True}):
        records = dissect(pcap_of(first, second, **kwargs), ring(device=True))
        by_session: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            if rec["record"] == "message":
                by_session.setdefault(rec["session"], []).append(rec)
        assert sorted(by_session) == ["tcp-1", "tcp-2"]
        assert_decrypts_exactly(by_session["tcp-1"], first)
        assert_decrypts_exactly(by_session["tcp-2"], second)
    buf = io.BytesIO()
    write_pcapng(buf, [first, second])
    records = dissect(
        buf.getvalue(), ring(keylog=first.keylog_line() + "\n" + second.keylog_line())
    )
    assert len(messages(records)) == len(first.messages) + len(second.messages)
    assert all(r["coap"] is not None for r in messages(records))


# -- determinism ---------------------------------------------------------------------------


def test_fixed_seed_gives_byte_identical_output() -> None:
    one, two = full_session(rng=42), full_session(rng=42)
    assert one.writes == two.writes
    assert pcap_of(one) == pcap_of(two)
    assert full_session(rng=43).writes != one.writes
    assert pcap_of(one, seed=1) != pcap_of(one, seed=2)


#: SHA-256 of ``full_session(rng=5)``'s writes. Changes only when the builder's output does
#: (a new random draw, another convention); update it deliberately.
GOLDEN_WRITES = "d1ca6ff98d3a1eec7689254b1b20fd65e94351270eb7fa2b1a6c3a1c4a93ec5f"


def test_fixed_seed_output_is_the_same_in_every_process() -> None:
    digest = hashlib.sha256()
    for w in full_session(rng=5).writes:
        digest.update(f"{w.ts!r} {w.direction.value} ".encode() + w.data)
    assert digest.hexdigest() == GOLDEN_WRITES


def test_handshake_blobs_have_the_spec_sizes_and_contents() -> None:
    b = builder()
    b.handshake()
    assert [len(w.data) for w in b.writes] == [40, 256, 384]
    assert [w.direction for w in b.writes] == [C2D, D2C, C2D]
    assert b.writes[0].data == b.nonce
    identity = rsa_decrypt_pkcs1v15(server_key(), b.writes[1].data)
    assert identity == b.nonce + bytes.fromhex(DEVICE_ID) + b.device_public_der
    assert rsa_decrypt_pkcs1v15(device_key(), b.writes[2].data[:128]) == b.credentials


# -- the Core test vectors (test-vectors.md §3) ---------------------------------------------


def core_builder(**kwargs: Any) -> TcpSessionBuilder:
    fx = core_fixture()
    slot = bytes.fromhex(fx["device_private_slot"])
    key = serialization.load_der_private_key(slot[: der_total_length(slot)], None)
    server = serialization.load_der_public_key(bytes.fromhex(fx["server_public_der"]))
    assert isinstance(key, rsa.RSAPrivateKey)
    assert isinstance(server, rsa.RSAPublicKey)
    return TcpSessionBuilder(
        key,
        server,
        fx["device_id"],
        rng=0,
        nonce=bytes.fromhex(fx["nonce"]),
        credentials=bytes.fromhex(fx["credentials"]),
        session_key_message=bytes.fromhex(fx["session_key_message"]),
        salt_convention="be",
        **kwargs,
    )


def fixture_frame(test: str, direction: str) -> bytes:
    for f in core_fixture()["frames"]:
        if f["test"] == test and f["direction"] == direction:
            return bytes.fromhex(f["frame"])
    raise KeyError(test)


def test_core_fixture_hello_and_time_request_frames_match_byte_for_byte() -> None:
    b = core_builder()
    b.handshake()
    (hello,) = b.device_hello("A")
    request, _ = b.time_request()
    assert hello.mid == 0x97B2 and request.mid == 0x97B3 and request.token == b"\x98"
    assert b.messages[0].frame == fixture_frame("HandshakeSendsExpectedHello", "d2s")
    assert b.messages[1].frame == fixture_frame("TimeRequestMatchesOpenSSL", "d2s")
    assert b.writes[2].data == bytes.fromhex(core_fixture()["session_key_message"])


def test_core_fixture_function_call_and_describe_frames_match_byte_for_byte() -> None:
    b = core_builder(cloud_mid_seed=0x97B1, cloud_token_seed=0xEE)
    b.handshake()
    b.device_hello("A")
    b.function_call("brew", "32,240", result=456)
    frames = [s.frame for s in b.messages]
    assert frames[1] == fixture_frame("EventLoopRespondsToFunctionCallWithACK", "s2d")
    assert frames[2] == fixture_frame("EventLoopRespondsToFunctionCallWithACK", "d2s")
    assert frames[3] == fixture_frame(
        "EventLoopLaterRespondsToFunctionCallWithFunctionReturn", "d2s"
    )
    b = core_builder(cloud_mid_seed=0x97B1, cloud_token_seed=0x27)
    b.handshake()
    b.device_hello("A")
    b.describe({"f": ["brew"], "v": {"temperature": 2}})
    assert b.messages[1].frame == fixture_frame("EventLoopRespondsToDescribeWith50Bytes", "s2d")
    assert b.messages[2].frame == fixture_frame("EventLoopRespondsToDescribeWithDescription", "d2s")


@pytest.mark.parametrize(
    ("test", "send"),
    [
        ("EventMatchesOpenSSL", lambda b: b.device_event("motion-detected", private=False)),
        (
            "EventWithDataMatchesOpenSSL",
            lambda b: b.device_event("lake-depth/1", "28m", ttl=21600),
        ),
        (
            "SubscribeToMyDevicesFilteredMatchesOpenSSL",
            lambda b: b.subscribe("motion/open", my_devices=True),
        ),
        (
            "SubscribeToFirehoseWithMaxLenFilterMatchesOpenSSL",
            lambda b: b.subscribe(
                "a/really_long/event-name-filter/actually/as/long-as-one-can-be!"
            ),
        ),
    ],
)
def test_core_fixture_device_requests_match_byte_for_byte(
    test: str, send: Callable[[TcpSessionBuilder], object]
) -> None:
    b = core_builder()
    b.device_hello("A")
    send(b)
    assert b.messages[1].frame == fixture_frame(test, "d2s")


def test_core_fixture_variable_read_matches_byte_for_byte() -> None:
    b = core_builder(cloud_mid_seed=0x97B1, cloud_token_seed=0x87)
    b.device_hello("A")
    b.variable_read("temperature", m.int32_value(-98765))
    test = "EventLoopRespondsToVariableRequestWithVariableValue"
    assert [s.frame for s in b.messages[1:]] == [
        fixture_frame(test, "s2d"),
        fixture_frame(test, "d2s"),
    ]


def test_core_fixture_session_decrypts_with_the_fixture_device_key_only() -> None:
    b = core_builder()
    b.handshake()
    b.device_hello("A")
    b.time_request(unix_time=1398367917)
    fx = core_fixture()
    keys = KeyRing()
    keys.load_bytes(bytes.fromhex(fx["device_private_slot"]), "core.der", role="device")
    keys.load_bytes(bytes.fromhex(fx["server_public_der"]), "server.der", role="server")
    records = dissect(pcap_of(b), keys)
    assert_decrypts_exactly(records, b)
    blob = next(r for r in records if r["record"] == "handshake" and r["step"] == "session_key")
    assert blob["info"]["signature_valid"] is True  # the fixture's own signature
    session = next(r for r in records if r["record"] == "session")
    assert session["salt_convention"].startswith("big-endian")


# -- deliberate breakage ----------------------------------------------------------------------


def broken_codes(b: TcpSessionBuilder, keys: KeyRing) -> set[str]:
    return {f["code"] for f in findings(dissect(pcap_of(b), keys), "handshake")}


def test_device_using_a_wrong_server_key_is_named() -> None:
    b = builder(device_encrypts_to=other_key(2048).public_key())
    b.cloud_nonce()
    b.device_identity()  # the real cloud closes here
    assert "handshake.identity.wrong_server_key" in broken_codes(b, ring(server=True))


def test_cloud_using_a_wrong_device_key_is_named() -> None:
    b = builder(cloud_encrypts_to=other_key(1024).public_key())
    b.handshake()  # the device cannot decrypt the session key and closes
    codes = broken_codes(b, ring(device=True, server=True))
    assert "handshake.session_key.wrong_device_key" in codes


def test_bad_signature_is_named() -> None:
    b = builder(bad_signature=True)
    b.handshake()
    b.device_hello()
    assert "handshake.signature.invalid" in broken_codes(b, ring(device=True, server=True))


def test_legacy_identity_is_the_52_byte_form() -> None:
    b = builder(legacy_identity=True)
    b.handshake()
    b.device_hello("A")
    b.cloud_hello()
    assert len(b.identity_plaintext) == 52
    records = dissect(pcap_of(b), ring(device=True, server=True))
    identity = next(r for r in records if r["record"] == "handshake" and r["step"] == "identity")
    assert identity["info"]["legacy"] is True
    assert identity["info"]["device_id"] == DEVICE_ID
    assert not findings(records, "handshake")
    assert_decrypts_exactly(records, b)


def test_bad_builder_input_raises_simulation_error() -> None:
    with pytest.raises(SimulationError):
        TcpSessionBuilder(device_key(), server_key(), "abcd")
    with pytest.raises(SimulationError):
        TcpSessionBuilder(device_key(), server_key(), "zz" * 12)
    with pytest.raises(SimulationError):
        builder(nonce=b"short")
    with pytest.raises(SimulationError):
        builder(salt_convention="middle")
    with pytest.raises(SimulationError):  # identity (214 bytes) does not fit RSA-1024
        builder(device_encrypts_to=device_key().public_key()).device_identity()
    with pytest.raises(SimulationError):  # cannot sign without the server private key
        TcpSessionBuilder(device_key(), server_key().public_key(), DEVICE_ID).handshake()
    with pytest.raises(SimulationError):
        builder().device_sends(CoapMessage(mid=70000))
    with pytest.raises(SimulationError):
        builder().device_sends(b"x" * 70000)


# -- conventions ---------------------------------------------------------------------------------


def test_message_id_and_token_conventions() -> None:
    creds = bytes(32) + bytes.fromhex("1234ab0000000000")
    le = builder(credentials=creds, cloud_ack_token=b"\x00")
    (hello,) = le.device_hello()
    request, response = le.time_request()
    assert hello.mid == 0x3413 and request.mid == 0x3414 and request.token == b"\x01"
    assert response.mid == request.mid and response.token == request.token
    event, slowdown = le.device_event("x", ack=0x80)
    assert slowdown.token == b"\x00" and slowdown.code == 0x80 and slowdown.mid == event.mid
    be = builder(credentials=creds, salt_convention="be", cloud_hello_token=False)
    (hello,) = be.device_hello()
    request, _ = be.time_request()
    assert hello.mid == 0x1235 and request.token == b"\xac"
    (cloud_hello,) = be.cloud_hello()
    assert cloud_hello.token == b""
    call, ack, ret = be.function_call("f")
    assert call.mid == (cloud_hello.mid + 1) & 0xFFFF and call.token == b"\x01"
    assert ack.mid == call.mid and ack.token == b"" and ret.mid == 0x1237
    assert ret.token == call.token and ret.type == m.NON and ret.code == m.CHANGED
    tokens = [be.next_cloud_token()[0] for _ in range(300)]
    assert tokens[252:256] == [254, 0, 1, 2]


def test_frames_follow_the_particle_iv_rule() -> None:
    b = full_session()
    creds = b.session_credentials
    for direction in (D2C, C2D):
        dec = CbcDirection(creds.key, creds.iv)
        for s in (s for s in b.messages if s.direction is direction):
            assert dec.decrypt(s.frame[2:]).plaintext == s.plaintext


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(
        st.tuples(
            st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=64),
            st.binary(max_size=300),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    segment=st.integers(min_value=1, max_value=1500),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_any_events_round_trip_through_the_dissector(
    events: list[tuple[str, bytes, bool]], segment: int, seed: int
) -> None:
    b = builder(rng=ByteSource(seed))
    b.handshake()
    b.device_hello()
    b.cloud_hello()
    for name, data, from_device in events:
        if from_device:
            b.device_event(name, data, ttl=seed % 100_000)
        else:
            b.cloud_event(name, data)
    records = dissect(pcap_of(b, segment_size=segment, seed=seed), ring(keylog=b.keylog_line()))
    assert_decrypts_exactly(records, b)


def test_clock_steps_waits_and_explicit_times() -> None:
    b = builder(start=100.0, step=0.5, keep_messages=False)
    b.handshake()
    b.device_hello(at=200.0)
    b.cloud_hello()
    b.wait(15)
    b.ping()
    assert [w.ts for w in b.writes] == [100.0, 100.5, 101.0, 200.0, 200.5, 215.5, 216.0]
    assert b.messages == []
