"""The CoAP builders against the spec's byte strings and the dissector's own classifier."""

from __future__ import annotations

import pytest

from dissector.coap import ACK, CON, NON, decode, encode
from dissector.model import Direction
from dissector.particle import ExchangeTracker
from dissector.particle.hello import decode_hello
from dissector.simulate import SimulationError
from dissector.simulate import messages as m

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


def test_hello_variants() -> None:
    # spec §10 constructed example: Variant C over UDP (CON), message ID 1.
    payload = m.hello_payload(
        "C",
        product_id=1,
        product_version=3,
        flags=0x16,
        platform_id=13,
        device_id=bytes.fromhex("e00fce681122334455667788"),
        system_version=0x1234,
        max_message_size=1152,
        max_binary_size=0,
        ota_chunk_size=512,
    )
    assert encode(m.hello(1, payload, confirmable=True)) == bytes.fromhex(
        "40020001b168ff000100030016000d000ce00fce68112233445566778812340480000000000200"
    )
    # the reference captures' TCP Hello; the 2014 Core Hello of test-vectors §3.1
    ref = m.hello_payload("B", product_id=3, platform_id=3)
    assert ref == bytes.fromhex("0003ffff00000003")
    assert encode(m.hello(0x97B2, m.hello_payload("A"))) == bytes.fromhex(
        "500297b2b168ffffffffff0000"
    )
    udp_b = m.hello_payload("B", platform_id=10, device_id=bytes(12))
    assert decode_hello(udp_b)["variant"] == "B" and decode_hello(udp_b)["transport"] == "udp"
    tcp_c = m.hello_payload("C", flags=0x8016)
    assert decode_hello(tcp_c)["variant"] == "C" and decode_hello(tcp_c)["flags"] == 0x8016


def test_spec_byte_strings() -> None:
    cases = [
        (m.time_request(0x97B3, b"\x98"), "410197b398b174"),
        (m.time_response(0x9999, b"\x99", 1398367917), "6145999999ff535966ad"),
        (m.function_return(0x97B3, b"\xef", 456), "514497b3efff000001c8"),
        (m.empty_ack(0x97B2), "600097b2"),
        (
            m.function_call(0x97B2, b"\xef", "brew", "32,240"),
            "410297b2efb16604627265774633322c323430",
        ),
        (
            m.variable_request(0x97B2, b"\x88", "temperature"),
            "410197b288b1760b74656d7065726174757265",
        ),
        (m.variable_value(0x97B2, b"\x88", m.int32_value(-98765)), "614597b288fffffe7e33"),
        (
            m.event(0x97B3, "motion-detected", private=False),
            "500297b3b1650d026d6f74696f6e2d6465746563746564",
        ),
        (
            m.event(0x97B3, "lake-depth/1", "28m", ttl=21600),
            "500297b3b1450c6c616b652d64657074682f3133005460ff32386d",
        ),
        (
            m.subscribe(0x97B3, "motion/open", my_devices=True),
            "400197b3b1650b6d6f74696f6e2f6f70656e4175",
        ),
        (m.describe_request(0x97B2, b"\x28"), "410197b228b164"),
        (m.ping(1), "40000001"),
    ]
    for msg, hexed in cases:
        assert encode(msg).hex() == hexed
        assert decode(bytes.fromhex(hexed)) == msg


def test_values_and_cloud_style_events() -> None:
    assert m.double_value(-104.858) == bytes.fromhex("f4fdd478e9365ac0")
    assert m.int32_value(456) == bytes.fromhex("000001c8")
    assert m.bool_value(True) == b"\x01" and m.bool_value(False) == b"\x00"
    cloud = m.event(5, "a/b/c", "x", split_name=True, ttl_width=None, always_ttl=True)
    assert [o.value for o in cloud.options] == [b"E", b"a", b"b", b"c", b"\x3c"]
    assert cloud.uri == "/E/a/b/c" and cloud.type == NON
    typed = m.event(6, "t", b"\x01", content_format=42, confirmable=True)
    assert typed.type == CON and typed.options[-1].value == b"\x2a"
    assert m.signal(7, b"\x01", on=False).options[-1].value == b"\x00"
    assert m.describe_request(8, b"\x01", flags=2).options[-1].value == b"\x02"
    assert m.variable_value(9, b"\x01", b"v", piggybacked=False).type == NON
    assert m.ack(9, m.CHANGED, b"\x01").type == ACK


@pytest.mark.parametrize(
    "call",
    [
        lambda: m.hello_payload("Z"),
        lambda: m.hello_payload("A", product_id=70000),
        lambda: m.hello_payload("B", flags=256),
        lambda: m.int32_value(2**31),
        lambda: m.event(1, "e", ttl=-1),
        lambda: m.time_response(1, b"", -5),
    ],
)
def test_out_of_range_values_raise_simulation_error(call: object) -> None:
    with pytest.raises(SimulationError):
        call()  # type: ignore[operator]


def test_the_dissector_classifies_every_builder_as_meant() -> None:
    tracker = ExchangeTracker()
    exchanges = [
        (D2C, m.hello(1, m.hello_payload()), "Hello"),
        (C2D, m.hello(100, token=b"\x01"), "Hello"),
        (D2C, m.event(2, "spark/x", "1"), "PrivateEvent"),
        (C2D, m.empty_ack(2), "EmptyAck"),
        (D2C, m.event(3, "pub", "1", private=False), "PublicEvent"),
        (C2D, m.ack(3, 0x80), "EventSlowdown"),
        (D2C, m.subscribe(4, "spark"), "Subscribe"),
        (D2C, m.time_request(5, b"\x01"), "GetTime"),
        (C2D, m.time_response(5, b"\x01", 1), "GetTimeReturn"),
        (C2D, m.describe_request(101, b"\x02"), "Describe"),
        (D2C, m.ack(101, m.CONTENT, b"\x02", b'{"f":[],"v":{}}'), "DescribeReturn"),
        (C2D, m.variable_request(102, b"\x03", "v"), "VariableRequest"),
        (D2C, m.variable_value(102, b"\x03", b"\x00\x00\x00\x01"), "VariableValue"),
        (C2D, m.function_call(103, b"\x04", "f", "a"), "FunctionCall"),
        (D2C, m.empty_ack(103), "EmptyAck"),
        (D2C, m.function_return(6, b"\x04", 1), "FunctionReturn"),
        (D2C, m.ping(7), "Ping"),
        (C2D, m.signal(104, b"\x05", True), "SignalStart"),
        (D2C, m.ack(104, m.CHANGED, b"\x05"), "SignalAck"),
        (C2D, m.signal(105, b"\x06", False), "SignalStop"),
    ]
    ts = 0.0
    for direction, msg, kind in exchanges:
        ts += 1
        wire = decode(encode(msg))
        assert tracker.observe(wire, direction, ts).kind == kind, msg


def test_legacy_ota_and_key_change_builders_match_the_firmware_encodings() -> None:
    # test-vectors §3.1: UpdateBegin, UpdateReady (2014 Core: no flag), chunk, UpdateDone,
    # its ACK, ChunkMissed.
    assert encode(m.update_begin(0xABD0, b"\x33")) == bytes.fromhex("4102abd033b175")
    assert encode(m.update_ready(0x97B3, b"\x33")) == bytes.fromhex("514497b333")
    assert encode(m.update_ready(1, b"\x01", fast=True)).endswith(b"\xff\x01")
    data = b"not actually a valid firmware data chunk payload, but the header is fine"
    assert (
        encode(m.chunk(0xABD1, b"\x22", data, 0x01234567))
        == bytes.fromhex("4102abd122b1634401234567ff") + data
    )
    assert encode(m.chunk_received(0x97B3, b"\x22", ok=False)) == bytes.fromhex("518097b322")
    assert encode(m.update_done(0xABD2, b"\x11")) == bytes.fromhex("4103abd211b175")
    assert encode(m.update_done_ack(0xABD2, b"\x11", complete=True)) == bytes.fromhex("6144abd211")
    assert encode(m.chunk_missed(0x97B4, [0])) == bytes.fromhex("400197b4b163ff0000")
    assert encode(m.chunk_missed(1, [3, 258], confirmable=False)).endswith(b"\xff\x00\x03\x01\x02")
    params = m.update_begin_payload(fast=True, chunk_size=256, file_size=1500)
    assert params == bytes.fromhex("01010000 0005dc 00 00000000".replace(" ", ""))
    fast_chunk = decode(encode(m.chunk(2, b"\x05", b"ab", 7, index=3)))
    assert fast_chunk.queries == [b"\x00\x00\x00\x07", b"\x00\x03"]
    assert decode(encode(m.key_change(5, b"\x09", 1))).queries == [b"\x01"]
    with pytest.raises(SimulationError):
        m.chunk_missed(1, [])
    with pytest.raises(SimulationError):
        m.chunk_missed(1, list(range(41)))
