"""The strict RFC 7252 codec against firmware test vectors, RFC edge cases and real quirks."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dissector.coap import (
    ACK,
    CON,
    NON,
    RST,
    CoapError,
    CoapMessage,
    CoapOption,
    code_str,
    decode,
    encode,
    option_name,
    option_value_repr,
    parse_code,
)

DATA = Path(__file__).parent / "data" / "coap"


@cache
def spec_vectors() -> list[dict[str, Any]]:
    """Plaintext CoAP messages of test-vectors.md §3-§5 (name, direction, hex)."""
    vectors: list[dict[str, Any]] = json.loads((DATA / "spec_vectors.json").read_text())
    return vectors


def full_messages() -> list[dict[str, Any]]:
    # The two *UriPath vectors of §5 are option fragments, not messages.
    return [v for v in spec_vectors() if not v["name"].endswith("UriPath")]


@pytest.mark.parametrize("vector", full_messages(), ids=lambda v: v["name"])
def test_every_spec_vector_decodes_and_reencodes_byte_identically(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    msg = decode(raw)
    assert msg.version == 1
    assert msg.violations == []
    assert encode(msg) == raw
    assert decode(encode(msg)) == msg


def test_function_call_vector_fields() -> None:
    msg = decode(bytes.fromhex("410297b2efb16604627265774633322c323430"))
    assert (msg.type, msg.type_name, msg.code, msg.code_str) == (CON, "CON", 2, "0.02")
    assert msg.mid == 0x97B2
    assert msg.token == b"\xef"
    assert msg.uri_path == [b"f", b"brew"]
    assert msg.uri == "/f/brew"
    assert msg.queries == [b"32,240"]
    assert [o.name for o in msg.options] == ["Uri-Path", "Uri-Path", "Uri-Query"]
    assert msg.payload == b""
    assert msg.is_request and not msg.is_response


def test_time_response_vector_fields() -> None:
    msg = decode(bytes.fromhex("6145999999ff535966ad"))
    assert (msg.type_name, msg.code_str, msg.code_name) == ("ACK", "2.05", "Content")
    assert msg.mid == 0x9999 and msg.token == b"\x99"
    assert msg.uri == "" and msg.uri_path == []
    assert msg.payload == bytes.fromhex("535966ad")
    assert msg.is_response


def test_server_hello_vector_has_no_token_and_no_payload() -> None:
    msg = decode(bytes.fromhex("5002f649b168"))
    assert (msg.type, msg.code, msg.mid, msg.token) == (NON, 2, 0xF649, b"")
    assert msg.uri == "/h" and msg.payload == b""


def test_event_with_legacy_max_age_option() -> None:
    raw = bytes.fromhex(
        next(v for v in spec_vectors() if v["name"] == "ExpectedBufForLongEventWithDataAndTtl")[
            "hex"
        ]
    )
    msg = decode(raw)
    assert msg.uri == "/e/weather/us/mn/minneapolis"
    assert msg.uri_path == [b"e", b"weather/us/mn/minneapolis"]  # one option holding slashes
    max_age = msg.options[2]
    assert (max_age.number, max_age.name, max_age.value) == (14, "Max-Age", b"\x00\x0e\x10")
    assert option_value_repr(14, max_age.value) == 3600
    assert msg.payload == b"t:5F,d:-2F,p:15%"


def test_event_name_option_fragments_of_section_5() -> None:
    # §5 gives the Uri-Path option bytes alone; after a "e" option they are delta 0.
    header = bytes.fromhex("5002f649b165")
    for name, expected in (
        ("ExpectedBufForSingleCharEventNameUriPath", b"x"),
        ("ExpectedBufForLongerEventNameUriPath", b"front-door-unlocked"),
    ):
        frag = bytes.fromhex(next(v for v in spec_vectors() if v["name"] == name)["hex"])
        msg = decode(header + frag)
        assert msg.uri_path == [b"e", expected]
        assert encode(msg) == header + frag


def test_multi_segment_event_name_joins_with_slashes() -> None:
    msg = decode(bytes.fromhex("50029753b1650161016201630164313cff78797a"))
    assert msg.uri == "/e/a/b/c/d"
    assert msg.first_option(14) == b"\x3c"


# --- hard errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexdata", "offset", "words"),
    [
        ("", 0, "shorter"),
        ("4001", 0, "shorter"),
        ("400100", 0, "shorter"),
        ("000100ff", 0, "version 0"),
        ("800100ff", 0, "version 2"),
        ("c0010000", 0, "version 3"),
        ("49010000" + "00" * 9, 0, "reserved token length 9"),
        ("4f010000" + "00" * 16, 0, "reserved token length 15"),
        ("42010000aa", 4, "token of 2 bytes truncated"),
        ("40010000f0", 4, "delta nibble 15"),
        ("400100001f", 4, "length nibble 15"),
        ("40010000d1", 5, "truncated 1-byte extended option delta"),
        ("40010000e1", 5, "truncated 2-byte extended option delta"),
        ("40010000e100", 5, "truncated 2-byte extended option delta"),
        ("400100001d", 5, "truncated 1-byte extended option length"),
        ("400100001e00", 5, "truncated 2-byte extended option length"),
        ("40010000b3616263".replace("616263", "6162"), 5, "option value of 3 bytes truncated"),
        ("40010000ff", 4, "payload marker followed by no payload"),
        ("41450001aaff", 5, "payload marker followed by no payload"),
    ],
)
def test_malformed_input_raises_coap_error_with_offset(
    hexdata: str, offset: int, words: str
) -> None:
    with pytest.raises(CoapError) as info:
        decode(bytes.fromhex(hexdata))
    assert info.value.offset == offset
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = bytes.fromhex("410197b398b174")
    assert decode(bytearray(raw)) == decode(memoryview(raw)) == decode(raw)


# --- tolerated deviations ----------------------------------------------------------------


def test_spark_protocol_empty_ack_with_token_is_kept_with_a_violation() -> None:
    raw = bytes.fromhex("61004dd700")  # spark-protocol 0.1.6: ACK 0.00 with token 00
    msg = decode(raw)
    assert (msg.type, msg.code, msg.mid, msg.token) == (ACK, 0, 0x4DD7, b"\x00")
    assert msg.violations == ["empty message with token"]
    assert encode(msg) == raw


@pytest.mark.parametrize(
    ("hexdata", "violation"),
    [
        ("60000001b161", "empty message with options"),
        ("60000001ff01", "empty message with payload"),
        ("50000001", "empty message sent as NON"),
        ("70440001", "RST with non-empty code 2.04"),
        ("60010001", "ACK carrying request method 0.01"),
        ("40200001", "reserved code class 1"),
        ("40e00001", "reserved code class 7"),
        ("40010001" + "e0ffff", "option number 65804 above 65535"),
        ("40010001" + "0161", "option number 0 is reserved"),
    ],
)
def test_other_rfc_deviations_are_decoded_and_described(hexdata: str, violation: str) -> None:
    raw = bytes.fromhex(hexdata)
    msg = decode(raw)
    assert violation in msg.violations
    assert encode(msg) == raw


def test_well_formed_messages_have_no_violations() -> None:
    for h in ("600097b2", "40000001", "700097b2", "514497b3efff000001c8"):
        assert decode(bytes.fromhex(h)).violations == []


def test_violations_do_not_take_part_in_equality() -> None:
    a = CoapMessage(1, ACK, 0, 5, b"\x00")
    assert a == decode(encode(a))


# --- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "header"),
    [
        (12, "c0"),
        (13, "d000"),
        (268, "d0ff"),
        (269, "e00000"),
        (2049, "e006f4"),
        (65535, "e0fef2"),
    ],
)
def test_extended_option_deltas(number: int, header: str) -> None:
    raw = encode(CoapMessage(1, CON, 2, 1, b"", [CoapOption(number, b"")]))
    assert raw == bytes.fromhex("40020001" + header)
    assert decode(raw).options == [CoapOption(number, b"")]


@pytest.mark.parametrize(
    ("length", "header"),
    [(12, "bc"), (13, "bd00"), (268, "bdff"), (269, "be0000"), (1024, "be02f3")],
)
def test_extended_option_lengths(length: int, header: str) -> None:
    value = bytes(range(256)) * 5
    msg = CoapMessage(1, CON, 2, 1, b"", [CoapOption(11, value[:length])])
    raw = encode(msg)
    assert raw[: 4 + len(header) // 2] == bytes.fromhex("40020001" + header)
    assert decode(raw) == msg


def test_no_response_option_encoding_matches_the_goodbye_bytes() -> None:
    # Goodbye over TCP: Uri-Path "x" then No-Response (258) empty = d0 ea (spec §4.8).
    raw = encode(CoapMessage(1, NON, 2, 7, b"", [CoapOption(11, b"x"), CoapOption(258, b"")]))
    assert raw == bytes.fromhex("50020007b178d0ea")


def test_encode_sorts_options_stably() -> None:
    msg = CoapMessage(
        1,
        CON,
        2,
        1,
        b"\x01",
        [CoapOption(15, b"q1"), CoapOption(11, b"f"), CoapOption(15, b"q2"), CoapOption(11, b"n")],
    )
    back = decode(encode(msg))
    assert [(o.number, o.value) for o in back.options] == [
        (11, b"f"),
        (11, b"n"),
        (15, b"q1"),
        (15, b"q2"),
    ]


def test_payload_marker_only_with_payload() -> None:
    assert encode(CoapMessage(1, ACK, 0x44, 9, b"\x01")) == bytes.fromhex("61440009" + "01")
    assert encode(CoapMessage(1, ACK, 0x44, 9, b"\x01", payload=b"\x00")).endswith(b"\xff\x00")


@pytest.mark.parametrize(
    "msg",
    [
        CoapMessage(2, CON, 0, 0),
        CoapMessage(1, 4, 0, 0),
        CoapMessage(1, CON, 256, 0),
        CoapMessage(1, CON, 0, 65536),
        CoapMessage(1, CON, 0, -1),
        CoapMessage(1, CON, 0, 0, b"123456789"),
        CoapMessage(1, CON, 0, 0, b"", [CoapOption(-1, b"")]),
        CoapMessage(1, CON, 0, 0, b"", [CoapOption(65805, b"")]),
        CoapMessage(1, CON, 0, 0, b"", [CoapOption(11, b"x" * 65805)]),
    ],
)
def test_unencodable_messages_raise_coap_error(msg: CoapMessage) -> None:
    with pytest.raises(CoapError) as info:
        encode(msg)
    assert info.value.offset is None


def test_ping_and_reset_encodings_match_device_builders() -> None:
    assert encode(CoapMessage(1, CON, 0, 0x1234)) == bytes.fromhex("40001234")
    assert encode(CoapMessage(1, RST, 0, 0x97B2)) == bytes.fromhex("700097b2")


# --- helpers -------------------------------------------------------------------------------


def test_code_str_and_parse_code() -> None:
    assert [code_str(c) for c in (0x00, 0x02, 0x44, 0x45, 0x80, 0xA3, 0x5F)] == [
        "0.00",
        "0.02",
        "2.04",
        "2.05",
        "4.00",
        "5.03",
        "2.31",
    ]
    for c in range(256):
        assert parse_code(code_str(c)) == c
    with pytest.raises(ValueError):
        parse_code("8.00")


def test_option_names_cover_rfc_block_and_particle_options() -> None:
    expected = {
        1: "If-Match",
        3: "Uri-Host",
        4: "ETag",
        5: "If-None-Match",
        6: "Observe",
        7: "Uri-Port",
        8: "Location-Path",
        11: "Uri-Path",
        12: "Content-Format",
        14: "Max-Age",
        15: "Uri-Query",
        17: "Accept",
        20: "Location-Query",
        23: "Block2",
        27: "Block1",
        28: "Size2",
        35: "Proxy-Uri",
        39: "Proxy-Scheme",
        60: "Size1",
        258: "No-Response",
        2049: "Particle-Chunk-Index",
        2053: "Particle-Window-Size",
        2057: "Particle-File-Size",
        2061: "Particle-File-SHA-256",
        2065: "Particle-Chunk-Size",
        2069: "Particle-Discard-Data",
        2073: "Particle-Cancel-Update",
        2077: "Particle-Module-Function",
    }
    assert {n: option_name(n) for n in expected} == expected
    assert option_name(9) == "Unknown-9"
    assert CoapOption(65000, b"").name == "Unknown-65000"


def test_option_value_repr_by_format() -> None:
    assert option_value_repr(12, b"") == 0
    assert option_value_repr(14, b"\x00\x54\x60") == 21600
    assert option_value_repr(11, b"brew") == "brew"
    assert option_value_repr(15, b"\x01#Eg") == "\x01#Eg"
    assert option_value_repr(15, b"\xff") == "\\xff"
    assert option_value_repr(4, b"\xde\xad") == "dead"
    assert option_value_repr(2069, b"") is None
    assert option_value_repr(2069, b"\x01") == "01"
    assert option_value_repr(2061, bytes(32)) == "00" * 32
    assert option_value_repr(999, b"\x01\x02") == "0102"
    # Block2 num 3, more, szx 6 (1024 bytes); Block1 num 0, last, szx 2.
    assert option_value_repr(23, b"\x3e") == {"num": 3, "m": True, "szx": 6, "size": 1024}
    assert option_value_repr(27, b"\x02") == {"num": 0, "m": False, "szx": 2, "size": 64}
    assert option_value_repr(27, b"\x07")["size"] is None
    assert option_value_repr(23, b"") == {"num": 0, "m": False, "szx": 0, "size": 16}


def test_uri_escapes_raw_bytes_and_is_empty_without_path() -> None:
    msg = CoapMessage(1, CON, 1, 1, b"", [CoapOption(11, b"v"), CoapOption(11, b"\x04temp\xff")])
    assert msg.uri == "/v/\x04temp\\xff"
    json.dumps(msg.uri)  # JSON-safe
    assert CoapMessage().uri == ""
    assert CoapMessage(options=[CoapOption(11, b"")]).uri == "/"


def test_type_names() -> None:
    assert [CoapMessage(type=t).type_name for t in range(4)] == ["CON", "NON", "ACK", "RST"]
