"""Payload decoders against firmware vectors, reference-capture payloads and spec examples."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.coap import CoapMessage, CoapOption, decode
from dissector.model import Direction
from dissector.particle import (
    KINDS,
    classify,
    decode_chunk,
    decode_chunk_missed,
    decode_describe,
    decode_describe_request,
    decode_event,
    decode_function_call,
    decode_function_return,
    decode_goodbye,
    decode_hello,
    decode_key_change,
    decode_payload,
    decode_server_moved,
    decode_signal,
    decode_status,
    decode_subscribe,
    decode_time,
    decode_update_ack,
    decode_update_begin,
    decode_update_ready,
    decode_update_start,
    decode_variable_value,
    protobuf_fields,
)

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


def msg(hexdata: str) -> CoapMessage:
    return decode(bytes.fromhex(hexdata))


# --- Hello (spec §4.3) ---------------------------------------------------------------------


def test_hello_variant_a_from_the_2014_core_vector() -> None:
    m = msg("5002f649b168ffffffffff0000")
    assert classify(m, D2C) == "Hello"
    assert decode_hello(m.payload) == {
        "variant": "A",
        "product_id": 0xFFFF,
        "product_version": 0xFFFF,
        "reserved": 0,
        "flags": 0,
        "flag_names": [],
    }


def test_hello_variant_b_tcp_from_the_reference_capture() -> None:
    out = decode_hello(bytes.fromhex("0003ffff00020003"))
    assert out["variant"] == "B" and out["transport"] == "tcp"
    assert (out["product_id"], out["product_version"], out["platform_id"]) == (3, 0xFFFF, 3)
    assert out["flags"] == 2 and out["flag_names"] == ["diagnostics_support"]
    assert out["platform"] == "Virtual device (gcc)"
    assert "device_id" not in out


def test_hello_variant_b_udp_from_device_os_1_0_1() -> None:
    out = decode_hello(bytes.fromhex("0003ffff00020003000cad2cc13702ed03012d837cd1"))
    assert out["variant"] == "B" and out["transport"] == "udp"
    assert out["device_id"] == "ad2cc13702ed03012d837cd1"
    assert out["platform_id"] == 3


def test_hello_variant_c_constructed_example_of_section_10() -> None:
    raw = bytes.fromhex(
        "40020001b168ff"
        "0001" "0003" "0016" "000d" "00" "0c" "e00fce681122334455667788"
        "1234" "0480" "00000000" "0200"
    )  # fmt: skip
    assert len(raw) == 39
    m = decode(raw)
    assert classify(m, D2C) == "Hello"
    assert decode_payload("Hello", m) == {
        "variant": "C",
        "transport": "udp",
        "product_id": 1,
        "product_version": 3,
        "flags": 0x16,
        "flag_names": ["diagnostics_support", "immediate_updates_support", "goodbye_support"],
        "platform_id": 13,
        "platform": "Boron",
        "device_id": "e00fce681122334455667788",
        "system_version": 0x1234,
        "max_message_size": 1152,
        "max_binary_size": 0,
        "ota_chunk_size": 512,
    }


def test_hello_variant_c_tcp_has_no_device_id() -> None:
    out = decode_hello(bytes.fromhex("0001000300920020000013880480001000000200"))
    assert out["variant"] == "C" and out["transport"] == "tcp"
    assert out["device_id"] is None
    assert out["platform"] == "P2/Photon 2"
    assert out["flag_names"] == [
        "diagnostics_support",
        "goodbye_support",
        "ota_protocol_v3",
    ]
    assert (out["system_version"], out["max_binary_size"]) == (5000, 0x100000)


def test_hello_hand_built_dtls_capture_payload() -> None:
    out = decode_hello(
        bytes.fromhex("000c00010002000c000ce00fce68aabbccddeeff001118380400000e00000200")
    )
    assert out["variant"] == "C"
    assert (out["product_id"], out["platform"], out["max_message_size"]) == (12, "Argon", 1024)
    assert out["device_id"] == "e00fce68aabbccddeeff0011"
    assert out["ota_chunk_size"] == 512


def test_hello_from_the_cloud_has_no_payload_and_bad_lengths_are_errors() -> None:
    assert decode_hello(b"") == {"variant": "empty"}
    assert "error" in decode_hello(b"\x00\x01\x02")
    odd = decode_hello(bytes(10))
    assert odd["product_id"] == 0 and "error" in odd


# --- describe ------------------------------------------------------------------------------


def test_describe_return_from_the_core_vector() -> None:
    m = msg("614597b228ff7b2266223a5b2262726577225d2c2276223a7b2274656d7065726174757265223a327d7d")
    out = decode_payload("DescribeReturn", m)
    assert out is not None
    assert out["json"] == {"f": ["brew"], "v": {"temperature": 2}}
    assert out["functions"] == ["brew"]
    assert out["variables"] == {"temperature": "int32"}


def test_describe_request_flags_and_combined_legacy_describe() -> None:
    legacy = decode_describe_request(msg("4101f64928b164"))
    assert legacy == {"flags": None, "types": ["system", "application"], "legacy": True}
    m = CoapMessage(1, 0, 1, 1, b"\x01", [CoapOption(11, b"d"), CoapOption(15, b"\x02")])
    assert decode_describe_request(m) == {"flags": 2, "types": ["application"]}
    combined = b'{"f":["led","add"],"v":{"counter":2,"temp":9,"status":4},"p":3,"m":[]}'
    out = decode_describe(combined)
    assert out["variables"] == {"counter": "int32", "temp": "double", "status": "string"}
    assert (out["platform_id"], out["module_count"]) == (3, 0)


def test_describe_binary_forms_are_kept_as_hex_and_bad_json_is_an_error() -> None:
    metrics = decode_describe(bytes.fromhex("00040001000200000000"), flags=4)
    assert metrics["format"] == "metrics" and metrics["hex"].startswith("000400")
    assert metrics["types"] == ["metrics"]
    proto = decode_describe(b"\x0a\x03abc", content_format=42)
    assert proto["format"] == "protobuf"
    assert "error" in decode_describe(b'{"f": [')
    assert "error" in decode_describe(b'{"v": NaN}')
    assert "error" in decode_describe(b"[1]")


def test_block_wise_describe_part_is_not_parsed() -> None:
    m = CoapMessage(1, 0, 0x45, 1, b"\x07", [CoapOption(23, b"\x0e")], payload=b'{"p":')
    out = decode_payload("DescribeReturn", m, describe_flags=1)
    assert out == {
        "block": {"option": "Block2", "num": 0, "m": True, "szx": 6, "size": 1024},
        "length": 5,
        "partial": True,
        "flags": 1,
    }


# --- functions and variables ---------------------------------------------------------------


def test_function_call_and_return_vectors() -> None:
    assert decode_function_call(msg("410297b2efb16604627265774633322c323430")) == {
        "name": "brew",
        "argument": "32,240",
    }
    assert decode_function_return(bytes.fromhex("000001c8")) == {"result": 456}
    assert decode_payload("FunctionReturn", msg("5144f649c3ff0000002a")) == {"result": 42}
    assert decode_function_return(b"\xff\xff\xff\xff") == {"result": -1}
    assert "error" in decode_function_return(b"\x01")


def test_function_argument_is_the_first_query_all_queries_listed() -> None:
    m = CoapMessage(
        1,
        0,
        2,
        1,
        b"\x05",
        [CoapOption(11, b"f"), CoapOption(11, b"led"), CoapOption(15, b"o"), CoapOption(15, b"n")],
    )
    assert decode_function_call(m) == {"name": "led", "argument": "o", "queries": ["o", "n"]}


def test_function_error_answer_is_a_status() -> None:
    m = CoapMessage(1, 2, 0x80, 1, b"\x05", payload=b'{"code":-160,"message":"too long"}')
    out = decode_payload("FunctionReturn", m)
    assert out == {
        "status": "4.00",
        "status_name": "Bad Request",
        "diagnostic": {"code": -160, "message": "too long"},
    }


def test_variable_values_typed_from_describe_digits() -> None:
    assert decode_variable_value(bytes.fromhex("f4fdd478e9365ac0"), 9)["value"] == -104.858
    assert decode_variable_value(bytes.fromhex("fffe7e33"), 2)["value"] == -98765
    assert decode_variable_value(b"\x00", 1)["value"] is False
    assert decode_variable_value(b"\x01", 1)["value"] is True
    assert decode_variable_value(b"woot", 4) == {
        "length": 4,
        "hex": "776f6f74",
        "type": "string",
        "value": "woot",
    }
    assert decode_variable_value(b"", 5)["value"] is None
    assert decode_variable_value(struct.pack("<d", float("nan")), 9)["value"] == "nan"
    assert "error" in decode_variable_value(b"\x00\x01", 2)
    assert "error" in decode_variable_value(b"\x00", 7)


def test_variable_value_without_describe_lists_interpretations() -> None:
    out = decode_variable_value(bytes.fromhex("0000000000803540"))
    assert out["interpretations"] == {"double": 21.5}
    out = decode_variable_value(b"21.5")
    assert out["interpretations"] == {"int32": 842083893, "string": "21.5"}
    assert decode_variable_value(b"\x01")["interpretations"] == {"bool": True}


# --- events, subscriptions -----------------------------------------------------------------


def test_event_ttl_from_max_age_and_default_60() -> None:
    out = decode_event(
        msg(
            "50027654b1650d0c776561746865722f75732f6d6e2f6d696e6e6561706f6c6973"
            "33000e10ff743a35462c643a2d32462c703a313525"
        )
    )
    assert out == {
        "name": "weather/us/mn/minneapolis",
        "visibility": "public",
        "ttl": 3600,
        "ttl_default": False,
        "data": "t:5F,d:-2F,p:15%",
        "data_format": "text",
    }
    private = decode_event(msg("500297b3b1450c6c616b652d64657074682f3133005460ff32386d"))
    assert (private["visibility"], private["name"], private["ttl"]) == (
        "private",
        "lake-depth/1",
        21600,
    )
    plain = decode_event(msg("5002f649b1650178"))
    assert (plain["ttl"], plain["ttl_default"], plain["data"]) == (60, True, "")


def test_event_name_from_cloud_segments_and_binary_data() -> None:
    m = CoapMessage(
        1,
        1,
        2,
        1,
        b"",
        [
            CoapOption(11, b"E"),
            CoapOption(11, b"peer"),
            CoapOption(11, b"hello"),
            CoapOption(12, b"\x2a"),
        ],
        b"\x00\xff",
    )
    out = decode_event(m)
    assert out["name"] == "peer/hello"
    assert (out["content_format"], out["data"], out["data_format"]) == (42, "00ff", "hex")
    latin1 = decode_event(CoapMessage(options=[CoapOption(11, b"e")], payload=b"\xc3"))
    assert latin1["data_format"] == "hex"


def test_subscription_vectors() -> None:
    one_device = decode_subscribe(
        msg("40018888b1650777656174686572ff353366663733303635303637353434383136333030313837")
    )
    assert one_device["filter"] == "weather"
    assert one_device["device_id"] == "53ff73065067544816300187"
    mine = decode_subscribe(msg("40011113b1650b6d6f74696f6e2f6f70656e4175"))
    assert (mine["filter"], mine["my_devices"], mine["device_id"]) == ("motion/open", True, None)
    firehose = decode_subscribe(msg("40011115b1650d0d" + b"China/ShenZhen/FuTianKouAn".hex()))
    assert firehose["filter"] == "China/ShenZhen/FuTianKouAn" and not firehose["my_devices"]


# --- time, signal, key change --------------------------------------------------------------


def test_time_response_vector() -> None:
    assert decode_time(msg("6145999999ff535966ad").payload) == {
        "unix_time": 1398367917,
        "iso": "2014-04-24T19:31:57Z",
    }
    assert "error" in decode_time(b"\x01\x02")


def test_signal_and_key_change() -> None:
    assert decode_signal(msg("4103abcdefb1734101")) == {"start": True, "query": "01"}
    assert decode_signal(msg("4103abcdefb1734100")) == {"start": False, "query": "00"}
    assert "error" in decode_signal(msg("4103abcdefb173"))
    key = CoapMessage(1, 0, 3, 1, b"\x01", [CoapOption(11, b"k"), CoapOption(15, b"\x01")])
    assert decode_key_change(key) == {"value": 1, "discard_session": True, "payload_length": 0}
    core = decode_key_change(decode(bytes.fromhex("4103abcf75b16bff") + bytes(512)))
    assert core == {"value": None, "discard_session": False, "payload_length": 512}


# --- legacy OTA ----------------------------------------------------------------------------


def test_update_begin_parameters() -> None:
    assert decode_update_begin(b"") == {"legacy": True}
    assert decode_update_begin(bytes.fromhex("010100000012340000000000")) == {
        "legacy": False,
        "flags": 1,
        "fast_ota": True,
        "chunk_size": 256,
        "file_size": 0x1234,
        "destination": 0,
        "destination_name": "firmware",
        "address": 0,
    }
    assert decode_update_begin(bytes.fromhex("0008000000000400"))["file_size"] == 1024
    assert "error" in decode_update_begin(b"\x00\x01\x02")


def test_update_ready_vectors() -> None:
    assert decode_update_ready(msg("5144f64910")) == {
        "ready": True,
        "fast_ota": False,
        "flag": None,
    }
    with_flag = CoapMessage(1, 1, 0x44, 1, b"\x10", payload=b"\x01")
    assert decode_update_ready(with_flag)["fast_ota"] is True
    refused = decode_update_ready(CoapMessage(1, 2, 0xA3, 1, b"\x10"))
    assert (refused["ready"], refused["status"]) == (False, "5.03")


def test_chunk_crc_and_index() -> None:
    vector = decode_chunk(msg(
        "4102abd122b1634401234567ff6e6f742061637475616c6c7920612076616c6964206669726d77617265"
        "2064617461206368756e6b207061796c6f61642c20627574207468652068656164657220697320666"
        "96e65"
    ))  # fmt: skip
    assert vector["crc"] == 0x01234567 and vector["crc_ok"] is False
    assert vector["length"] == 72 and vector["fast_ota"] is False
    data = b"\x00" * 256
    crc = zlib.crc32(data).to_bytes(4, "big")
    good = CoapMessage(
        1,
        0,
        2,
        1,
        b"\x22",
        [CoapOption(11, b"c"), CoapOption(15, crc), CoapOption(15, b"\x00\x07")],
        data,
    )
    out = decode_chunk(good)
    assert (out["crc_ok"], out["index"], out["fast_ota"]) == (True, 7, True)
    assert "error" in decode_chunk(CoapMessage(options=[CoapOption(11, b"c")], payload=b"x"))


def test_chunk_missed_vector_and_chunk_received() -> None:
    assert decode_chunk_missed(msg("400197b4b163ff0000").payload) == {"chunks": [0]}
    assert decode_chunk_missed(bytes.fromhex("00010002ffff")) == {"chunks": [1, 2, 65535]}
    assert "error" in decode_chunk_missed(b"\x00")
    assert decode_payload("ChunkReceived", msg("514497b322")) == {"ok": True, "status": "2.04"}
    assert decode_payload("ChunkReceived", msg("518097b322")) == {"ok": False, "status": "4.00"}
    assert decode_payload("UpdateDoneAck", msg("6144abd211")) == {
        "complete": True,
        "status": "2.04",
    }


# --- OTA v3 -----------------------------------------------------------------------------------


def test_update_start_options() -> None:
    sha = bytes(range(32))
    m = CoapMessage(
        1,
        0,
        2,
        1,
        b"\x01",
        [
            CoapOption(11, b"S"),
            CoapOption(2057, (300000).to_bytes(3, "big")),
            CoapOption(2061, sha),
            CoapOption(2065, (1024).to_bytes(2, "big")),
            CoapOption(2069, b""),
            CoapOption(2077, b"\x04"),
        ],
    )
    assert decode_update_start(m) == {
        "file_size": 300000,
        "file_sha256": sha.hex(),
        "chunk_size": 1024,
        "discard_data": True,
        "module_function": 4,
        "resumable": True,
    }
    assert "error" in decode_update_start(CoapMessage(options=[CoapOption(11, b"S")]))
    ret = CoapMessage(
        1, 0, 0x41, 9, b"\x01", [CoapOption(2053, b"\x80"), CoapOption(2057, b"\x10\x00")]
    )
    assert decode_payload("UpdateStartReturn", ret) == {
        "window_size": 128,
        "resume_offset": 4096,
        "status": "2.01",
    }


def test_update_ack_bitmap_lists_chunks_after_the_contiguous_run() -> None:
    words = (0b1011).to_bytes(4, "little") + (1).to_bytes(4, "little")
    m = CoapMessage(1, 1, 2, 1, b"", [CoapOption(11, b"A"), CoapOption(2049, b"\x05")], words)
    assert decode_update_ack(m) == {"contiguous": 5, "received": [6, 7, 9, 38]}
    done = CoapMessage(1, 1, 2, 1, b"", [CoapOption(11, b"A"), CoapOption(2049, b"\x02\x00")])
    assert decode_update_ack(done) == {"contiguous": 512, "received": []}
    assert "error" in decode_update_ack(CoapMessage(options=[CoapOption(11, b"A")]))
    bad = CoapMessage(1, 1, 2, 1, b"", [CoapOption(2049, b"\x01")], b"\x01\x02\x03")
    assert "error" in decode_update_ack(bad)


def test_update_finish_and_its_json_statistics() -> None:
    m = CoapMessage(1, 0, 2, 1, b"\x01", [CoapOption(11, b"F"), CoapOption(2073, b"")])
    assert decode_payload("UpdateFinish", m) == {"cancel_update": True, "discard_data": False}
    stats = b'{"recv_chunks":3,"dup_chunks":0}'
    out = decode_payload("UpdateFinishReturn", CoapMessage(1, 0, 0x44, 2, b"\x01", payload=stats))
    assert out == {"status": "2.04", "status_name": "Changed", "stats": json.loads(stats)}


# --- goodbye, server moved, status -----------------------------------------------------------


def test_goodbye_varints() -> None:
    assert decode_goodbye(bytes([0x0F, 8, 70, 0xAC, 0x02, 3])) == {
        "flags": 15,
        "cloud_reason": 8,
        "cloud_reason_name": "server_moved",
        "reset_reason": 70,
        "reset_reason_name": "update",
        "sleep_duration": 300,
        "network_reason": 3,
        "network_reason_name": "network_off",
    }
    assert decode_goodbye(b"\x01\x06") == {
        "flags": 1,
        "cloud_reason": 6,
        "cloud_reason_name": "sleep",
    }
    assert "error" in decode_goodbye(b"\x05\x02")
    assert "error" in decode_goodbye(b"")
    assert "error" in decode_goodbye(b"\x80")
    goodbye = decode(bytes.fromhex("50020007b178d0eaff0102"))
    assert classify(goodbye, D2C) == "Goodbye"
    assert decode_payload("Goodbye", goodbye) == {
        "flags": 1,
        "cloud_reason": 2,
        "cloud_reason_name": "user",
    }


def pb_len(field: int, data: bytes) -> bytes:
    return bytes([field << 3 | 2, len(data)]) + data


def test_server_moved_protobuf() -> None:
    payload = (
        pb_len(1, b"new.example.com")
        + bytes([2 << 3, 0xB4, 0x2C])  # port 5684
        + pb_len(3, b"\x30\x59\x01")
        + pb_len(4, b"\x30\x44\x02")
        + bytes([5 << 3 | 5, 1, 2, 3, 4])  # unknown fixed32 field
    )
    assert decode_server_moved(payload) == {
        "server_addr": "new.example.com",
        "server_port": 5684,
        "server_pub_key": "305901",
        "sign": "304402",
        "unknown_fields": [5],
    }
    assert "error" in decode_server_moved(b"\x0a\x05ab")
    assert "error" in decode_server_moved(b"\x10\x01")
    assert protobuf_fields(b"\x08\x96\x01") == [(1, 0, 150)]


def test_status_of_generic_responses() -> None:
    assert decode_status(msg("70000001")) == {"status": "0.00", "status_name": "Empty"}
    assert decode_status(CoapMessage(1, 2, 0x84, 1, payload=b"no such var")) == {
        "status": "4.04",
        "status_name": "Not Found",
        "data": "no such var",
        "data_format": "text",
    }
    assert decode_status(CoapMessage(1, 2, 0x45, 1, payload=b"\x00\x00\x00*"))["data"] == "0000002a"


# --- robustness ------------------------------------------------------------------------------

any_message = st.builds(
    CoapMessage,
    version=st.just(1),
    type=st.integers(0, 3),
    code=st.sampled_from([0, 1, 2, 3, 0x41, 0x44, 0x45, 0x80, 0x84, 0xA3, 0xE0]),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=2),
    options=st.lists(
        st.builds(
            CoapOption,
            st.sampled_from([11, 11, 12, 14, 15, 15, 23, 27, 2049, 2053, 2057, 2061, 2065, 2069]),
            st.binary(max_size=6),
        ),
        max_size=5,
    ),
    payload=st.one_of(st.binary(max_size=40), st.sampled_from([b"{", b'{"v":{"a":2}}', b"[NaN]"])),
)


def _json_clean(value: Any) -> None:
    json.dumps(value, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(any_message, st.sampled_from(sorted(KINDS)), st.sampled_from([None, 1, 2, 4, 5, 9, 77]))
def test_decoders_never_raise_and_return_strict_json(
    m: CoapMessage, kind: str, vtype: int | None
) -> None:
    out = decode_payload(kind, m, variable_type=vtype, describe_flags=vtype)
    assert out is None or isinstance(out, dict)
    _json_clean(out)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48))
def test_payload_only_decoders_never_raise(data: bytes) -> None:
    for fn in (
        decode_hello,
        decode_function_return,
        decode_time,
        decode_update_begin,
        decode_chunk_missed,
        decode_goodbye,
        decode_server_moved,
        decode_variable_value,
        decode_describe,
    ):
        _json_clean(fn(data))
