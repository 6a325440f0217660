"""The Spark Core fixture of Particle's firmware unit tests, through the sans-IO core.

Keys, nonce, the 384-byte session key message and the framed messages are the
firmware's own test vectors (test-vectors.md §3); only the identity message is made
here (it is randomised PKCS#1 type-2, so the fixture cannot carry it).
"""

from __future__ import annotations

import json
import random

from cryptography.hazmat.primitives.serialization import load_der_public_key

from dissector.crypto import build_identity_plaintext, rsa_encrypt_pkcs1v15
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.protocol.events import Event, MessageEvent
from dissector.protocol.tcp import TcpConnection
from tests.helpers import DATA

V = json.loads((DATA / "keys" / "vectors" / "test_vectors.json").read_text())
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


def _frame(test: str, array: str) -> bytes:
    return bytes.fromhex(
        next(f["frame"] for f in V["cf_frames"] if f["test"] == test and f["array"] == array)
    )


def _core_session() -> tuple[list[Event], TcpConnection]:
    ring = KeyRing()
    ring.load_bytes(bytes.fromhex(V["cf_device_priv_slot"]), "device-slot.bin", "device")
    ring.load_bytes(bytes.fromhex(V["cf_server_pub"]), "server.pub.der", "server")
    nonce = bytes.fromhex(V["cf_nonce"])
    server_pub = load_der_public_key(bytes.fromhex(V["cf_server_pub"]))
    rng = random.Random(1)
    identity = rsa_encrypt_pkcs1v15(
        server_pub,  # type: ignore[arg-type]
        build_identity_plaintext(nonce, bytes.fromhex(V["cf_id"]), None),
        rng=rng.randbytes,
    )
    conn = TcpConnection("core", ring)
    events: list[Event] = []
    events += conn.receive_data(C2D, nonce, 1.0)
    events += conn.receive_data(D2C, identity, 1.1)
    events += conn.receive_data(C2D, bytes.fromhex(V["cf_h3"]), 1.2)
    events += conn.receive_data(D2C, _frame("HandshakeSendsExpectedHello", "expected"), 1.3)
    events += conn.receive_data(
        C2D, _frame("EventLoopRespondsToDescribeWith50Bytes", "describe"), 1.4
    )
    events += conn.receive_data(
        D2C, _frame("EventLoopRespondsToDescribeWithDescription", "expected"), 1.5
    )
    events += conn.end()
    return events, conn


def test_core_fixture_session_key_and_signature() -> None:
    _, conn = _core_session()
    checks = {k: c.status.value for k, c in conn.info.checks.items()}
    assert checks["session_key"] == "passed"
    assert checks["signature"] == "passed"
    # No server private key: the identity stays opaque, and the tool says so.
    assert checks["identity_decrypted"] == "not_checkable"


def test_core_fixture_messages_decode_as_the_firmware_tests_say() -> None:
    events, _conn = _core_session()
    messages = [e for e in events if isinstance(e, MessageEvent)]
    kinds = [m.observation.kind for m in messages if m.observation]
    assert kinds == ["Hello", "Describe", "DescribeReturn"]
    hello = messages[0]
    assert hello.coap is not None and hello.coap.mid == 0x97B2
    describe = messages[2]
    assert describe.observation is not None
    assert describe.observation.decoded is not None
    assert describe.observation.latency is not None


def test_core_fixture_uses_the_big_endian_salt_convention() -> None:
    _, conn = _core_session()
    # Salt 97 b1 …: the Core's SparkProtocol reads it big-endian, Hello mid = 0x97b1 + 1.
    assert conn.info.salt_convention is not None
    assert conn.info.salt_convention.startswith("big-endian")
