"""Every CoAP object of the reference captures' decrypted message logs survives the codec.

The logs (``*.messages.ndjson``, copied from reference-captures/) keep type, code, mid,
token, uri and payload. Uri-Path options are rebuilt the way each sender writes them
(spec §11): the cloud one option per segment, the device the name as one option.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dissector.coap import CoapMessage, CoapOption, decode, encode, parse_code
from dissector.model import Direction

DATA = Path(__file__).parent / "data" / "coap"
LOGS = sorted(DATA.glob("*.messages.ndjson"))
TYPES = {"CON": 0, "NON": 1, "ACK": 2, "RST": 3}


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rebuild(coap: dict[str, Any], direction: Direction) -> CoapMessage:
    opts: list[CoapOption] = []
    if coap["uri"]:
        segments = coap["uri"][1:].split("/")
        if direction is Direction.CLOUD_TO_DEVICE:
            opts = [CoapOption(11, s.encode()) for s in segments]
        else:
            opts = [CoapOption(11, segments[0].encode())]
            if len(segments) > 1:
                opts.append(CoapOption(11, "/".join(segments[1:]).encode()))
    return CoapMessage(
        1,
        TYPES[coap["type"]],
        parse_code(coap["code"]),
        coap["mid"],
        bytes.fromhex(coap["token"]),
        opts,
        bytes.fromhex(coap["payload"]),
    )


def test_all_six_logs_are_present() -> None:
    assert len(LOGS) == 6
    assert sum(len(records(p)) for p in LOGS) == 162


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name.split(".")[0])
def test_every_logged_message_round_trips_to_the_same_fields(path: Path) -> None:
    for record in records(path):
        coap = record["coap"]
        direction = Direction(record["direction"])
        msg = rebuild(coap, direction)
        raw = encode(msg)
        back = decode(raw)
        assert back == msg
        assert encode(back) == raw
        assert back.type_name == coap["type"]
        assert back.code_str == coap["code"]
        assert back.mid == coap["mid"]
        assert back.token.hex() == coap["token"]
        assert back.uri == coap["uri"]
        assert back.payload.hex() == coap["payload"]


def test_empty_acks_with_token_from_spark_protocol_are_flagged_not_dropped() -> None:
    path = DATA / "sparkprotocol-0.1.6__deviceos-0.7.0_full.messages.ndjson"
    flagged = 0
    for record in records(path):
        coap = record["coap"]
        back = decode(encode(rebuild(coap, Direction(record["direction"]))))
        if coap["type"] == "ACK" and coap["code"] == "0.00" and coap["token"]:
            assert back.violations == ["empty message with token"]
            flagged += 1
        else:
            assert back.violations == []
    assert flagged == 6


def test_cloud_event_name_is_split_per_segment_device_name_is_one_option() -> None:
    path = DATA / "brewskey-1.0.21__deviceos-0.7.0_full.messages.ndjson"
    seen = {}
    for record in records(path):
        if record["coap"]["uri"] == "/E/peer/hello":
            msg = decode(encode(rebuild(record["coap"], Direction(record["direction"]))))
            seen[record["direction"]] = msg.uri_path
    assert seen == {
        "device->cloud": [b"E", b"peer/hello"],
        "cloud->device": [b"E", b"peer", b"hello"],
    }
