"""Review: which key decrypts a DTLS capture cut mid-handshake, and what the output says.

A key log entry is found by the ClientHello's random; the keys derive from both hello
randoms. A capture that starts after the ClientHello still has the ServerHello: every
key log entry (and every persisted session with that server random) is tried on the
records. A capture missing the ServerHello cannot use the key log at all, and the output
must say so instead of "no key log entry". Also: CID records of an RFC 9146 peer (not
Particle's draft-05 fork) decrypt too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dissector.dtls import ApplicationData, DtlsConnection, HandshakeMessage
from dissector.dtls.crypto import SUITES, RecordDecryptError, RecordProtection, key_block
from dissector.dtls.handshake import Finished
from dissector.dtls.records import parse_datagram
from dissector.keys import KeyRing
from dissector.model import Direction, Finding
from dissector.simulate.dtls import DtlsSessionBuilder
from tests.helpers import findings, messages
from tests.test_review_dtls_flows import (
    D2C,
    GEN3,
    builder,
    conversation,
    keylog,
    run,
    seen,
    sent,
    sessions,
)

DEVICE = ("10.0.0.2", 40000)
CLOUD = ("10.0.0.1", 5684)


def _server_flight_index(b: object) -> int:
    datagrams = b.datagrams  # type: ignore[attr-defined]
    return next(i for i, d in enumerate(datagrams) if d.data[0] == 22 and d.data[13] == 2)


@pytest.mark.parametrize("cid", [True, False])
def test_key_log_entry_found_by_trial_when_the_client_hello_is_not_captured(cid: bool) -> None:
    b = builder(cid=cid)
    conversation(b)
    other = builder(seed=7, cid=cid)
    other.handshake()
    ring = keylog(other, b)  # the right entry is not the only one
    start = _server_flight_index(b)
    records = run([(b.datagrams[start:], DEVICE, CLOUD)], ring)
    assert seen(records) == sent(b)
    (match,) = findings(records, "keylog.trial_match")
    assert b.client_random is not None and b.client_random.hex() in match["message"]
    (ses,) = sessions(records).values()
    assert ses["outcome"] == "established"
    assert ses["key_source"] == "key log"
    assert not findings(records, "decrypt.")


def test_persisted_session_found_by_the_server_random_when_the_client_hello_is_missing() -> None:
    b = builder()
    conversation(b)
    ring = KeyRing()
    ring.load_bytes(b.session_blob(), "device.session")
    start = _server_flight_index(b)
    records = run([(b.datagrams[start:], DEVICE, CLOUD)], ring)
    assert seen(records) == sent(b)
    (ses,) = sessions(records).values()
    assert ses["key_source"].startswith("persisted session")


def test_no_matching_entry_without_client_hello_names_what_is_missing() -> None:
    b = builder()
    conversation(b)
    other = builder(seed=7)
    other.handshake()
    start = _server_flight_index(b)
    records = run([(b.datagrams[start:], DEVICE, CLOUD)], keylog(other))
    assert all(m["coap"] is None for m in messages(records))
    (missing,) = findings(records, "decrypt.missing_key")
    assert "ClientHello is not in the capture" in missing["message"]
    assert b.server_random is not None and b.server_random.hex() in missing["message"]
    assert not findings(records, "keylog.trial_match")


def test_missing_server_hello_says_the_key_log_cannot_help() -> None:
    b = builder()
    conversation(b)
    flight = _server_flight_index(b)
    dgrams = b.datagrams[:flight] + b.datagrams[flight + 1 :]
    records = run([(dgrams, DEVICE, CLOUD)], keylog(b))
    (missing,) = findings(records, "decrypt.missing_key")
    assert "ServerHello is not in the capture" in missing["message"]
    assert "persisted session" in missing["message"]
    encrypted = [m for m in messages(records) if m["coap"] is None]
    assert encrypted and all("ServerHello" in m["encrypted"]["reason"] for m in encrypted)


# ------------------------------------------------------------------ RFC 9146 CID records


@pytest.mark.parametrize("suite", [0xC0AE, 0xC02B, 0xC023])
@pytest.mark.parametrize("rfc9146", [False, True])
def test_cid_records_of_both_aad_forms_decrypt(suite: int, rfc9146: bool) -> None:
    kb = key_block(bytes(range(48)), bytes(32), bytes(range(32)), SUITES[suite])
    for etm in (False, True):
        sender = RecordProtection.for_client(kb, etm)
        wire = sender.encrypt(23, 1, 7, b"\x40\x00\x12\x34", b"\x11" * 8, rfc9146=rfc9146)
        (record,) = parse_datagram(wire).records
        assert RecordProtection.for_client(kb, etm).decrypt_typed(record) == (
            23,
            b"\x40\x00\x12\x34",
        )
        # the other direction's key still fails
        with pytest.raises(RecordDecryptError):
            RecordProtection.for_server(kb, etm).decrypt_typed(record)


def test_draft_and_rfc9146_additional_data_differ() -> None:
    kb = key_block(bytes(48), bytes(32), bytes(32), 0xC0AE)
    prot = RecordProtection.for_client(kb)
    draft = prot.encrypt(23, 1, 1, b"x", b"\x22" * 8)
    rfc = prot.encrypt(23, 1, 1, b"x", b"\x22" * 8, rfc9146=True)
    assert draft[:21] == rfc[:21] and draft != rfc  # same header and nonce, other tag


# ------------------------------------------------------------------ ChaCha20-Poly1305


def test_openssl_chacha20_poly1305_exchange_decrypts() -> None:
    """A real OpenSSL 3.0 DTLS 1.2 exchange with ECDHE-ECDSA-CHACHA20-POLY1305 (RFC 7905:
    no explicit nonce, the IV XOR the record's epoch and sequence number)."""
    base = Path(__file__).parent / "data" / "review_dtls" / "chacha20"
    keys = {}
    for line in base.with_suffix(".keylog").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "CLIENT_RANDOM":
            keys[bytes.fromhex(parts[1])] = bytes.fromhex(parts[2])
    conn = DtlsConnection(keys.get)
    events = []
    for i, line in enumerate(base.with_suffix(".datagrams.txt").read_text().splitlines()):
        side, data = line.split()
        direction = Direction.DEVICE_TO_CLOUD if side == "C" else Direction.CLOUD_TO_DEVICE
        events += conn.receive(direction, bytes.fromhex(data), float(i))
    assert conn.cipher_suite == 0xCCA9
    assert not [e for e in events if isinstance(e, Finding)]
    got = [e.plaintext for e in events if isinstance(e, ApplicationData)]
    assert got == [b"hello from device\n", b"2.04 reply from cloud\n"]
    fin = [e for e in events if isinstance(e, HandshakeMessage) and e.encrypted]
    assert [type(e.msg) for e in fin] == [Finished, Finished]


def test_chacha20_round_trip_and_wrong_sequence_number_fails() -> None:
    kb = key_block(bytes(range(48)), bytes(32), bytes(range(32)), 0xCCA9)
    assert len(kb.client_key) == 32 and len(kb.client_iv) == 12
    wire = RecordProtection.for_server(kb).encrypt(23, 1, 9, b"abc")
    (record,) = parse_datagram(wire).records
    assert len(record.fragment) == 3 + 16  # no explicit nonce
    assert RecordProtection.for_server(kb).decrypt(record) == b"abc"
    record.seq = 10  # the nonce comes from the sequence number
    with pytest.raises(RecordDecryptError):
        RecordProtection.for_server(kb).decrypt(record)


# ------------------------------------------------------------------ Device OS 3.1 - 4.0


def test_resumed_cid_session_without_253_marking_decrypts_from_the_persisted_session() -> None:
    """Between v3.1.0 and v4.0.0 resumed CID records went out as plain type 25."""
    first = builder()
    conversation(first)
    ring = KeyRing()
    ring.load_bytes(first.session_blob(), "device.session")
    resumed = DtlsSessionBuilder.resume(
        first.export_session(), GEN3, rng=2, start=first.now + 600, move_marking=False
    )
    resumed.ping()
    resumed.device_event("temp", b"22")
    assert {d.data[0] for d in resumed.datagrams if d.direction is D2C} == {25}
    records = run([(resumed.datagrams, ("10.0.0.7", 41000), CLOUD)], ring)
    assert seen(records) == sent(resumed)
    (ses,) = sessions(records).values()
    assert ses["outcome"] == "resumed"
    assert not findings(records, "dtls.session.moved")
