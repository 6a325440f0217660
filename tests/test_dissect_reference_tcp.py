"""The real-implementation TCP captures decode to exactly their reference message lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    BREWSKEY,
    DEVICE_ID,
    SPARK,
    TCP_KEYS,
    comparable,
    dissect,
    expected_messages,
    findings,
    messages,
    ring_with,
)

CAPTURES = [SPARK, BREWSKEY]


def _pcap(base: Path) -> Path:
    return Path(f"{base}.pcap")


@pytest.mark.parametrize("base", CAPTURES, ids=lambda b: b.name.split("__")[0])
def test_device_key_alone_decrypts_every_message(base: Path) -> None:
    ring = ring_with(TCP_KEYS / f"{DEVICE_ID}.der", role="device")
    records = dissect([_pcap(base)], ring)
    got = [comparable(m) for m in messages(records)]
    want = [comparable(m) for m in expected_messages(base)]
    assert got == want
    assert all(m["device_id"] == DEVICE_ID for m in messages(records))
    assert not findings(records, "decrypt.missing_key")


@pytest.mark.parametrize("base", CAPTURES, ids=lambda b: b.name.split("__")[0])
def test_key_log_alone_decrypts_every_message(base: Path) -> None:
    ring = ring_with(f"{base}.keylog", role="keylog")
    records = dissect([_pcap(base)], ring)
    got = [comparable(m) for m in messages(records)]
    assert got == [comparable(m) for m in expected_messages(base)]
    session = [r for r in records if r["record"] == "session"]
    assert session and session[0]["key_source"] == "key log"


@pytest.mark.parametrize("base", CAPTURES, ids=lambda b: b.name.split("__")[0])
def test_server_key_alone_reveals_device_id_but_no_frame(base: Path) -> None:
    ring = ring_with(TCP_KEYS / "default_key.pem", role="server")
    records = dissect([_pcap(base)], ring)
    msgs = messages(records)
    assert len(msgs) == len(expected_messages(base))
    assert all(m["coap"] is None and m["kind"] == "Encrypted" for m in msgs)
    assert all(m["device_id"] == DEVICE_ID for m in msgs)
    identity = [r for r in records if r["record"] == "handshake" and r["step"] == "identity"]
    assert identity[0]["info"]["device_id"] == DEVICE_ID
    assert identity[0]["info"]["nonce_echo_ok"] is True
    missing = findings(records, "decrypt.missing_key")
    assert missing and DEVICE_ID in missing[0]["message"]
    assert "private key" in missing[0]["message"]


@pytest.mark.parametrize("base", CAPTURES, ids=lambda b: b.name.split("__")[0])
def test_both_keys_pass_every_handshake_check(base: Path) -> None:
    ring = ring_with(TCP_KEYS)
    records = dissect([_pcap(base)], ring)
    sessions = [r for r in records if r["record"] == "session"]
    assert sessions
    checks = {c["check"]: c["status"] for c in sessions[0]["handshake"]}
    assert checks == {
        "nonce": "passed",
        "identity_decrypted": "passed",
        "nonce_echo": "passed",
        "device_id": "passed",
        "device_key_match": "passed",
        "session_key": "passed",
        "signature": "passed",
        "device_hello": "passed",
        "cloud_hello": "passed",
    }
    assert sessions[0]["salt_convention"].startswith("little-endian")
    assert sessions[0]["hello"]["platform_id"] == 3
    assert not [f for f in findings(records) if f["severity"] == "error"]


def test_no_keys_still_shows_structure_and_says_what_is_missing() -> None:
    records = dissect([_pcap(SPARK)], ring_with())
    msgs = messages(records)
    assert len(msgs) == len(expected_messages(SPARK))
    assert [r["step"] for r in records if r["record"] == "handshake"] == [
        "nonce",
        "identity",
        "session_key",
    ]
    assert all(m["device_id"] is None for m in msgs)
    missing = findings(records, "decrypt.missing_key")
    assert missing and "private key" in missing[0]["message"]
