"""Review: block-wise describes survive blocks sent twice and interleaved transfers."""

from __future__ import annotations

import json

from dissector.coap import CoapOption
from dissector.coap.options import BLOCK1, BLOCK2, URI_PATH, URI_QUERY
from dissector.particle import ExchangeTracker
from tests.test_particle_tracker_blockwise import (
    ACK,
    C2D,
    CON,
    CONTENT,
    D2C,
    GET,
    POST,
    block,
    chunks,
    msg,
)

SYSTEM = json.dumps({"p": 6, "m": [{"s": 16384, "l": "m", "vc": 30, "vv": 30}] * 6}).encode()
APP = json.dumps({"f": ["led", "reset"], "v": {"temperature": 9, "label": 4}}).encode()


def test_a_block1_sent_again_with_a_new_message_id_is_not_joined_twice() -> None:
    """The device gave up on block 1's ACK and sent it again as a new message."""
    tr = ExchangeTracker("udp")
    pieces = chunks(APP, 16)  # szx 0
    assert len(pieces) >= 3
    mid = 100
    last = None
    for i, piece in enumerate(pieces):
        more = i < len(pieces) - 1
        options = [
            CoapOption(URI_PATH, b"d"),
            CoapOption(URI_QUERY, b"\x02"),
            CoapOption(BLOCK1, block(i, more, 0)),
        ]
        sends = 2 if i == 1 else 1
        for _ in range(sends):
            mid += 1
            last = tr.observe(msg(CON, POST, mid, b"", options, piece), D2C, float(mid))
            tr.observe(msg(ACK, 0, mid, b"", []), C2D, mid + 0.5)
    assert last is not None and last.decoded is not None
    assert last.decoded["json"] == json.loads(APP)
    assert last.decoded["reassembled"] == {"blocks": len(pieces), "length": len(APP)}


def test_interleaved_block2_describes_of_different_flags_both_reassemble() -> None:
    """The cloud asks for the system and the application describe at once."""
    tr = ExchangeTracker("udp")
    sys_pieces = chunks(SYSTEM, 32)  # szx 1
    app_pieces = chunks(APP, 32)
    assert len(sys_pieces) >= 2 and len(app_pieces) >= 2
    mid = 500
    finals: dict[bytes, dict] = {}
    for i in range(max(len(sys_pieces), len(app_pieces))):
        for flags, pieces in ((b"\x01", sys_pieces), (b"\x02", app_pieces)):
            if i >= len(pieces):
                continue
            mid += 1
            token = bytes([mid & 0xFF])
            request = [CoapOption(URI_PATH, b"d"), CoapOption(URI_QUERY, flags)]
            if i:
                request.append(CoapOption(BLOCK2, block(i, False, 1)))
            tr.observe(msg(CON, GET, mid, token, request), C2D, float(mid))
            more = i < len(pieces) - 1
            answer = [CoapOption(BLOCK2, block(i, more, 1))]
            obs = tr.observe(msg(ACK, CONTENT, mid, token, answer, pieces[i]), D2C, mid + 0.1)
            assert obs.kind == "DescribeReturn"
            if not more:
                assert obs.decoded is not None
                finals[flags] = obs.decoded
    assert finals[b"\x01"]["json"] == json.loads(SYSTEM)
    assert finals[b"\x02"]["json"] == json.loads(APP)


def test_the_last_block_sent_again_after_completion_is_not_a_lone_block() -> None:
    """The ACK of the last block was lost: the device sends it again as a new message.
    The describe stays decoded once; the repeat says it repeats, not that blocks were lost."""
    tr = ExchangeTracker("udp")
    pieces = chunks(APP, 16)
    observations = []
    for i, piece in enumerate([*pieces, pieces[-1]]):
        num = min(i, len(pieces) - 1)
        options = [
            CoapOption(URI_PATH, b"d"),
            CoapOption(BLOCK1, block(num, num < len(pieces) - 1, 0)),
        ]
        observations.append(tr.observe(msg(CON, POST, 200 + i, b"", options, piece), D2C, float(i)))
    whole, repeat = observations[-2].decoded, observations[-1].decoded
    assert whole is not None and whole["json"] == json.loads(APP)
    assert repeat is not None and "json" not in repeat
    assert repeat["reassembly"] == "block of a completed body sent again: not joined"
    # A different block at that position is still a lone block.
    options = [CoapOption(URI_PATH, b"d"), CoapOption(BLOCK1, block(1, True, 0))]
    other = tr.observe(msg(CON, POST, 300, b"", options, b"x" * 16), D2C, 99.0)
    assert other.decoded is not None
    assert "earlier blocks not seen" in other.decoded["reassembly"]
