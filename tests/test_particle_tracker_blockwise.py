"""Describes sent block-wise (RFC 7959) are reassembled and decoded whole.

A large device-initiated describe goes as several CON POST ``d`` with Block1 (spec §4.2);
a large DescribeReturn as Block2 answers to repeated GET ``d``. The last block's record
carries the whole decoded describe, and its variable types type later variable reads.
"""

from __future__ import annotations

import json

from dissector.coap import CoapMessage, CoapOption, decode, encode
from dissector.coap.options import BLOCK1, BLOCK2, URI_PATH, URI_QUERY
from dissector.model import Direction
from dissector.particle import ExchangeTracker

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
CON, ACK = 0, 2
GET, POST, CONTENT = 0x01, 0x02, 0x45

DESCRIBE = json.dumps(
    {
        "f": ["led", "reset"],
        "v": {"temperature": 9, "label": 4, "count": 2},
        "p": 12,
        "m": [{"s": 262144, "l": "m", "vc": 30, "vv": 30, "f": "s", "n": "1", "v": 4}],
    }
).encode()


def block(num: int, more: bool, szx: int) -> bytes:
    value = num << 4 | (8 if more else 0) | szx
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def msg(
    mtype: int, code: int, mid: int, token: bytes, options: list[CoapOption], payload: bytes = b""
) -> CoapMessage:
    # Through the wire codec, as the session cores see it.
    return decode(encode(CoapMessage(1, mtype, code, mid, token, options, payload)))


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_device_describe_in_block1_pieces_is_decoded_whole() -> None:
    tr = ExchangeTracker("udp")
    pieces = chunks(DESCRIBE, 64)  # szx 2
    assert len(pieces) >= 3
    observations = []
    for i, piece in enumerate(pieces):
        more = i < len(pieces) - 1
        options = [
            CoapOption(URI_PATH, b"d"),
            CoapOption(URI_QUERY, b"\x02"),
            CoapOption(BLOCK1, block(i, more, 2)),
        ]
        obs = tr.observe(msg(CON, POST, 100 + i, b"", options, piece), D2C, float(i))
        observations.append(obs)
        if i == 1:  # retransmitted before its ACK: shown, not joined twice
            again = tr.observe(msg(CON, POST, 100 + i, b"", options, piece), D2C, i + 0.2)
            assert again.retransmission
        tr.observe(msg(ACK, 0, 100 + i, b"", []), C2D, i + 0.5)
    *firsts, last = observations
    assert all(o.kind == "DeviceDescribe" for o in observations)
    for o in firsts:
        assert o.decoded is not None and o.decoded.get("partial") is True
        assert not [f for f in o.findings if f.code == "particle.decode_error"]
    assert last.decoded is not None
    assert last.decoded["json"] == json.loads(DESCRIBE)
    assert last.decoded["functions"] == ["led", "reset"]
    assert last.decoded["reassembled"] == {"blocks": len(pieces), "length": len(DESCRIBE)}
    assert tr.variable_types == {"temperature": 9, "label": 4, "count": 2}


def test_describe_return_in_block2_answers_is_decoded_whole() -> None:
    tr = ExchangeTracker("udp")
    pieces = chunks(DESCRIBE, 128)  # szx 3
    last = None
    for i, piece in enumerate(pieces):
        more = i < len(pieces) - 1
        token = bytes([0x40 + i])
        request = [CoapOption(URI_PATH, b"d"), CoapOption(URI_QUERY, b"\x02")]
        if i:
            request.append(CoapOption(BLOCK2, block(i, False, 3)))
        tr.observe(msg(CON, GET, 500 + i, token, request), C2D, float(i))
        answer = [CoapOption(BLOCK2, block(i, more, 3))]
        last = tr.observe(msg(ACK, CONTENT, 500 + i, token, answer, piece), D2C, i + 0.1)
        assert last.kind == "DescribeReturn"
    assert last is not None and last.decoded is not None
    assert last.decoded["variables"] == {
        "temperature": "double",
        "label": "string",
        "count": "int32",
    }
    assert last.decoded["reassembled"]["blocks"] == len(pieces)


def test_a_lost_block_is_said_and_nothing_is_made_up() -> None:
    tr = ExchangeTracker("udp")
    pieces = chunks(DESCRIBE, 64)
    seen = [0, 2, 3] if len(pieces) > 3 else [0, 2]
    last = None
    for i in seen:
        more = i < len(pieces) - 1
        options = [CoapOption(URI_PATH, b"d"), CoapOption(BLOCK1, block(i, more, 2))]
        last = tr.observe(msg(CON, POST, 300 + i, b"", options, pieces[i]), D2C, float(i))
    assert last is not None and last.decoded is not None
    assert "json" not in last.decoded
    assert "earlier blocks not seen" in last.decoded.get("reassembly", "")
    assert tr.variable_types == {}
