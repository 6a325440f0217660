"""``dissect --format ndjson`` keeps the README's schema on every record of both reference
captures, under every key combination, and keeps capture order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DEVICE_ID, expected_messages
from tests.test_cli_common import (
    BREWSKEY_KEYLOG,
    BREWSKEY_PCAP,
    DEVICE_KEY,
    HEX,
    HEX24,
    SERVER_KEY,
    SPARK_KEYLOG,
    SPARK_PCAP,
    messages,
    of_kind,
    records_of,
)

CAPTURES = {"spark": (SPARK_PCAP, SPARK_KEYLOG), "brewskey": (BREWSKEY_PCAP, BREWSKEY_KEYLOG)}
KEYS = ("none", "server", "device", "both", "keylog")
RUNS = [(c, k) for c in CAPTURES for k in KEYS]

CODE = re.compile(r"^[0-7]\.[0-3][0-9]$")
FINDING_CODE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
DIRECTIONS = {"device->cloud", "cloud->device"}
RECORD_TYPES = {"message", "handshake", "session", "finding"}


def _key_args(keys: str, keylog: Path) -> list[str]:
    return {
        "none": [],
        "server": ["--server-key", str(SERVER_KEY)],
        "device": ["--device-key", str(DEVICE_KEY)],
        "both": ["--server-key", str(SERVER_KEY), "--device-key", str(DEVICE_KEY)],
        "keylog": ["--keylog", str(keylog)],
    }[keys]


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every capture under every key combination, dissected once for the module."""
    out = {}
    for capture, keys in RUNS:
        pcap, keylog = CAPTURES[capture]
        out[(capture, keys)] = records_of(pcap, *_key_args(keys, keylog))
    return out


def _check_hex(value: Any, what: str) -> None:
    assert isinstance(value, str), f"{what} must be a hex string, got {value!r}"
    assert HEX.match(value), f"{what} must be lower-case hex: {value!r}"


def _check_device_id(rec: dict[str, Any]) -> None:
    assert "device_id" in rec, rec
    did = rec["device_id"]
    assert did is None or (isinstance(did, str) and HEX24.match(did)), did


def _check_message(rec: dict[str, Any]) -> None:
    assert isinstance(rec["session"], str) and rec["session"]
    assert rec["transport"] == "tcp"
    assert rec["direction"] in DIRECTIONS
    assert isinstance(rec["ts"], float)
    _check_device_id(rec)
    assert isinstance(rec["length"], int) and rec["length"] >= 2
    assert isinstance(rec["kind"], str) and rec["kind"]
    assert "coap" in rec
    coap = rec["coap"]
    if coap is None:
        assert rec["kind"] == "Encrypted"
        enc = rec["encrypted"]
        assert isinstance(enc, dict)
        assert isinstance(enc["length"], int) and enc["length"] > 0
        assert isinstance(enc["reason"], str) and enc["reason"].strip()
        return
    assert "encrypted" not in rec
    assert rec["kind"] != "Encrypted"
    assert set(coap) >= {"type", "code", "mid", "token", "payload", "uri", "options"}
    assert coap["type"] in ("CON", "NON", "ACK", "RST")
    assert isinstance(coap["code"], str) and CODE.match(coap["code"]), coap["code"]
    assert isinstance(coap["mid"], int) and 0 <= coap["mid"] <= 0xFFFF
    _check_hex(coap["token"], "token")
    assert len(coap["token"]) <= 16
    _check_hex(coap["payload"], "payload")
    assert isinstance(coap["uri"], str)
    assert isinstance(coap["options"], list)
    path = []
    for opt in coap["options"]:
        assert set(opt) == {"number", "name", "value"}, opt
        assert isinstance(opt["number"], int) and opt["number"] > 0
        assert isinstance(opt["name"], str) and opt["name"]
        if opt["number"] == 11:
            assert opt["name"] == "Uri-Path"
            path.append(opt["value"])
    # "/" + raw Uri-Path values joined by "/", "" without Uri-Path; no query part.
    assert coap["uri"] == ("/" + "/".join(path) if path else "")


def _check_record(rec: dict[str, Any]) -> None:
    assert rec["record"] in RECORD_TYPES, rec
    assert rec["schema_version"] == 1
    kind = rec["record"]
    if kind == "message":
        _check_message(rec)
    elif kind == "handshake":
        _check_device_id(rec)
        assert rec["direction"] in DIRECTIONS
        assert rec["step"] in ("nonce", "identity", "session_key")
        assert isinstance(rec["ts"], float)
        _check_hex(rec["data"], "handshake data")
        assert rec["length"] == len(rec["data"]) // 2
        assert isinstance(rec["info"], dict)
    elif kind == "session":
        _check_device_id(rec)
        assert isinstance(rec["session"], str)
        assert isinstance(rec["handshake"], list)
        assert set(rec["stats"]) == DIRECTIONS
    else:
        assert rec["severity"] in ("info", "warning", "error")
        assert isinstance(rec["code"], str) and FINDING_CODE.match(rec["code"]), rec["code"]
        assert isinstance(rec["message"], str) and rec["message"]
        assert "details" in rec and "session" in rec and "ts" in rec


@pytest.mark.parametrize(("capture", "keys"), RUNS, ids=[f"{c}-{k}" for c, k in RUNS])
def test_every_record_keeps_the_schema(
    runs: dict[tuple[str, str], list[dict[str, Any]]], capture: str, keys: str
) -> None:
    records = runs[(capture, keys)]
    assert messages(records), "no message records"
    for rec in records:
        _check_record(rec)


@pytest.mark.parametrize(("capture", "keys"), RUNS, ids=[f"{c}-{k}" for c, k in RUNS])
def test_what_each_key_combination_reveals(
    runs: dict[tuple[str, str], list[dict[str, Any]]], capture: str, keys: str
) -> None:
    records = runs[(capture, keys)]
    msgs = messages(records)
    pcap, _ = CAPTURES[capture]
    reference = expected_messages(Path(str(pcap).removesuffix(".pcap")))
    assert len(msgs) == len(reference), "one message record per CoAP message on the wire"
    if keys in ("none", "server"):
        assert all(m["coap"] is None for m in msgs)
        missing = [f for f in of_kind(records, "finding") if f["code"] == "decrypt.missing_key"]
        assert missing, "an undecryptable session must name the missing key"
    else:
        assert all(m["coap"] is not None for m in msgs)
        got = [(m["direction"], m["coap"]["mid"], m["coap"]["payload"]) for m in msgs]
        want = [(m["direction"], m["coap"]["mid"], m["coap"]["payload"]) for m in reference]
        assert got == want
    if keys == "none":
        assert all(m["device_id"] is None for m in msgs)
    if keys in ("server", "device", "both"):
        assert all(m["device_id"] == DEVICE_ID for m in msgs)


@pytest.mark.parametrize("capture", list(CAPTURES))
def test_server_key_alone_raises_no_error_finding(
    runs: dict[tuple[str, str], list[dict[str, Any]]], capture: str
) -> None:
    """The server key opens the identity message only; that is not an error, and no device
    key was given, so no finding may blame a wrong device key."""
    records = runs[(capture, "server")]
    errors = [f for f in of_kind(records, "finding") if f["severity"] == "error"]
    assert errors == [], [(f["code"], f["message"]) for f in errors]


@pytest.mark.parametrize(("capture", "keys"), RUNS, ids=[f"{c}-{k}" for c, k in RUNS])
def test_records_come_in_capture_order(
    runs: dict[tuple[str, str], list[dict[str, Any]]], capture: str, keys: str
) -> None:
    records = runs[(capture, keys)]
    stamps = [r["ts"] for r in records if r["record"] in ("message", "handshake")]
    assert stamps == sorted(stamps)
    # The handshake precedes the first message, and the session summary ends the session.
    kinds = [r["record"] for r in records]
    assert kinds.index("handshake") < kinds.index("message")
    assert kinds.index("session") > max(i for i, k in enumerate(kinds) if k == "message")


def test_json_format_holds_the_same_records_as_ndjson(
    runs: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    import json

    from tests.test_cli_common import invoke

    result = invoke(SPARK_PCAP, "--device-key", DEVICE_KEY, "--format", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert doc["records"] == runs[("spark", "device")]
