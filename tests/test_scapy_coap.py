"""The Scapy CoAP layer: round trips, named options, and agreement with the strict codec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.packet import Raw

from dissector.coap import CoapError, CoapMessage, CoapOption, decode, encode
from dissector.coap.codec import BARE_PAYLOAD_MARKER
from dissector.coap.options import OPTIONS
from dissector.scapy import CoAP, CoAPOption, ParticleChunkMissed, ParticleHello, coap_layer

VECTORS = Path(__file__).parent / "data" / "coap" / "spec_vectors.json"


def spec_messages() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS.read_text())
    return [v for v in vectors if not v["name"].endswith("UriPath")]


def layer_fields(layer: CoAP) -> tuple[Any, ...]:
    """Every wire-relevant field of a dissected layer, in codec terms."""
    return (
        int(layer.version),
        int(layer.type),
        int(layer.code),
        int(layer.message_id),
        bytes(layer.token),
        [(int(o.number), bytes(o.value)) for o in layer.options],
        bytes(layer.payload),
    )


def message_fields(msg: CoapMessage) -> tuple[Any, ...]:
    return (
        msg.version,
        msg.type,
        msg.code,
        msg.mid,
        msg.token,
        [(o.number, o.value) for o in msg.options],
        msg.payload,
    )


@pytest.mark.parametrize("vector", spec_messages(), ids=lambda v: v["name"])
def test_firmware_vectors_dissect_like_the_codec_and_build_back(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    layer = CoAP(data)
    assert layer_fields(layer) == message_fields(decode(data))
    assert bytes(layer) == data
    assert layer.to_message() == decode(data)


def test_header_fields_read_like_the_spec() -> None:
    # Core time request (test-vectors §3.1): CON GET /t, token 0x98, message ID 0x97b3.
    layer = CoAP(bytes.fromhex("410197b398b174"))
    assert [f.name for f in layer.fields_desc] == [
        "version",
        "type",
        "token_length",
        "code",
        "message_id",
        "token",
        "options",
    ]
    shown = layer.show(dump=True)
    assert "type      = CON" in shown
    assert "code      = 0.01 GET" in shown
    assert "message_id= 38835" in shown
    assert "number    = Uri-Path" in shown
    assert "value     = 't'" in shown
    assert layer.summary() == "CoAP CON 0.01 GET mid=38835 token=98 /t"
    assert layer.uri == "/t"


def test_every_registered_option_is_shown_by_name_including_particle_ota_options() -> None:
    options = [CoAPOption(number=number, value=b"\x01") for number in sorted(OPTIONS)]
    layer = CoAP(type="CON", code="POST", message_id=7, token=b"\x01", options=options)
    shown = CoAP(bytes(layer)).show(dump=True)
    for name, _ in OPTIONS.values():
        assert f"number    = {name}" in shown
    for name in (
        "Particle-Chunk-Index",
        "Particle-Window-Size",
        "Particle-File-Size",
        "Particle-File-SHA-256",
        "Particle-Chunk-Size",
        "Particle-Discard-Data",
        "Particle-Cancel-Update",
        "Particle-Module-Function",
    ):
        assert name in shown
    unknown = CoAP(bytes(CoAP(options=[CoAPOption(number=3000, value=b"\xaa")])))
    assert "number    = Unknown-3000" in unknown.show(dump=True)


def test_options_can_be_given_by_name_tuples_ints_and_text() -> None:
    layer = CoAP(
        type="NON",
        code="POST",
        message_id=0x1234,
        options=[("Max-Age", 3600), ("Uri-Path", "E"), ("Uri-Path", "a/b"), (2057, 1 << 20)],
    ) / Raw(b"data")
    data = bytes(layer)
    assert data == encode(
        CoapMessage(
            1,
            1,
            0x02,
            0x1234,
            b"",
            [
                CoapOption(11, b"E"),
                CoapOption(11, b"a/b"),
                CoapOption(14, b"\x0e\x10"),
                CoapOption(2057, b"\x10\x00\x00"),
            ],
            b"data",
        )
    )
    back = CoAP(data)
    assert back.uri == "/E/a/b"
    assert back.option_values("Max-Age") == [b"\x0e\x10"]
    shown = back.show(dump=True)
    assert "value     = 3600 (0x0e10)" in shown
    assert "number    = Particle-File-Size" in shown


@pytest.mark.parametrize(
    ("code", "byte"),
    [("GET", 0x01), ("post", 0x02), ("2.05", 0x45), ("2.05 Content", 0x45), ("Bad Request", 0x80)],
)
def test_codes_can_be_given_as_text(code: str, byte: int) -> None:
    assert bytes(CoAP(code=code))[1] == byte


def test_unknown_code_text_is_refused() -> None:
    with pytest.raises(ValueError):
        CoAP(code="FETCHIFY")


def test_the_payload_marker_is_written_only_with_a_payload() -> None:
    assert bytes(CoAP(type="ACK", message_id=1)) == b"\x60\x00\x00\x01"
    assert bytes(CoAP(type="ACK", message_id=1) / Raw(b"\x01")) == b"\x60\x00\x00\x01\xff\x01"


def test_tolerated_quirks_dissect_as_sent() -> None:
    # spark-protocol 0.1.6 acknowledges with a 1-byte token (spec §11).
    data = bytes.fromhex("6100abcd00")
    layer = CoAP(data)
    assert bytes(layer.token) == b"\x00" and bytes(layer) == data
    assert layer.violations() == ["empty message with token"]


@pytest.mark.parametrize(
    "data",
    [
        b"\x40\x01",  # shorter than the header
        b"\x80\x01\x00\x00",  # version 2
        b"\x49\x01\x00\x00",  # token length 9
        b"\x42\x01\x00\x00\x01",  # truncated token
        b"\x40\x01\x00\x00\xf1\x00",  # delta nibble 15
        b"\x40\x01\x00\x00\x1f",  # length nibble 15
        b"\x40\x01\x00\x00\xd0",  # truncated extended delta
        b"\x40\x01\x00\x00\x13ab",  # truncated value
    ],
)
def test_malformed_messages_raise_the_codecs_error(data: bytes) -> None:
    with pytest.raises(CoapError) as codec:
        decode(data)
    with pytest.raises(CoapError) as layer:
        CoAP(data)
    assert str(layer.value) == str(codec.value)
    assert layer.value.offset == codec.value.offset


def test_marker_without_payload_reads_as_an_empty_payload_like_the_session_codec() -> None:
    """Device OS sends a bare marker for an empty string; the cores decode it leniently
    (strict RFC 7252 refuses it), and so does the layer."""
    data = b"\x40\x01\x00\x00\xb1v\xff"
    with pytest.raises(CoapError):
        decode(data)
    msg = decode(data, lenient=True)
    layer = CoAP(data)
    assert layer_fields(layer) == message_fields(msg)
    assert bytes(layer.payload) == b"" and bytes(layer) == data[:-1]


def test_requests_get_their_payload_layer_without_context() -> None:
    hello = CoAP(bytes.fromhex("5002f649b168ffffffffff0000"))
    assert isinstance(hello.payload, ParticleHello)
    missed = CoAP(bytes.fromhex("400197b4b163ff0000"))
    assert isinstance(missed.payload, ParticleChunkMissed)
    assert missed[ParticleChunkMissed].chunks == [0]


def test_responses_need_their_kind_to_be_typed() -> None:
    data = bytes.fromhex("6145999999ff535966ad")  # time answer, test-vectors §3.1
    assert isinstance(CoAP(data).payload, Raw)
    typed = coap_layer(data, "GetTimeReturn")
    assert typed.payload.unix_time == 1398367917
    assert bytes(typed) == data


def test_a_single_option_is_a_layer_of_its_own() -> None:
    opt = CoAPOption(b"\xb1h")
    assert (opt.number, bytes(opt.value)) == (11, b"h")
    assert bytes(opt) == b"\xb1h"
    assert opt.summary() == "Uri-Path='h'"
    # 2049 = 269 + 0x06f4: delta nibble 14, two extension bytes.
    assert bytes(CoAPOption(number="Particle-Chunk-Index", value=5)) == bytes.fromhex("e106f405")


# -- property tests ---------------------------------------------------------------------

option_numbers = st.one_of(
    st.sampled_from([1, 4, 6, 11, 12, 14, 15, 23, 27, 60, 258, 2049, 2061, 2077]),
    st.integers(min_value=0, max_value=65535),
)
option_values = st.one_of(st.binary(max_size=16), st.binary(min_size=260, max_size=300))
option_lists = st.lists(st.tuples(option_numbers, option_values), max_size=6)
payloads = st.binary(max_size=64)


@settings(max_examples=300, deadline=None)
@given(
    mtype=st.integers(0, 3),
    code=st.integers(0, 255),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    options=option_lists,
    payload=payloads,
)
def test_built_from_fields_the_layer_dissects_back_to_the_same_fields(
    mtype: int,
    code: int,
    mid: int,
    token: bytes,
    options: list[tuple[int, bytes]],
    payload: bytes,
) -> None:
    layer = CoAP(
        type=mtype,
        code=code,
        message_id=mid,
        token=token,
        options=[CoAPOption(number=n, value=v) for n, v in options],
    )
    if payload:
        layer = layer / Raw(payload)
    data = bytes(layer)
    back = CoAP(data)
    in_order = sorted(options, key=lambda o: o[0])
    assert layer_fields(back) == (1, mtype, code, mid, token, in_order, payload)
    assert bytes(back) == data
    codec_msg = CoapMessage(
        1, mtype, code, mid, token, [CoapOption(n, v) for n, v in options], payload
    )
    assert data == encode(codec_msg)


messages = st.builds(
    CoapMessage,
    version=st.just(1),
    type=st.integers(0, 3),
    code=st.integers(0, 255),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    options=option_lists.map(
        lambda opts: sorted((CoapOption(n, v) for n, v in opts), key=lambda o: o.number)
    ),
    payload=payloads,
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_valid_messages_dissect_exactly_as_the_codec_decodes_them(msg: CoapMessage) -> None:
    data = encode(msg)
    layer = CoAP(data)
    assert layer_fields(layer) == message_fields(decode(data))
    assert layer.to_message() == decode(data)
    assert bytes(layer) == data


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=1, max_size=60))  # Scapy reads CoAP(b"") as "a default CoAP"
@example(b"\x60\x00\x00\x01\xff")
@example(b"\x40\x01\x00\x00\xe0\xff\xff")
@example(b"\x40\x01\x00\x00\xe1\x00\x00")
def test_arbitrary_bytes_are_accepted_or_refused_exactly_like_the_codec(data: bytes) -> None:
    """The layer agrees with the codec as the session cores use it (``lenient``)."""
    try:
        msg = decode(data, lenient=True)
    except CoapError as exc:
        with pytest.raises(CoapError) as layer_exc:
            CoAP(data)
        assert (str(layer_exc.value), layer_exc.value.offset) == (str(exc), exc.offset)
        return
    layer = CoAP(data)
    assert layer_fields(layer) == message_fields(msg)
    bare_marker = BARE_PAYLOAD_MARKER in msg.violations
    assert bytes(layer) == (data[:-1] if bare_marker else data)
