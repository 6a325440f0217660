"""Particle payload layers: round trips, spec vectors, agreement with dissector.particle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.packet import Packet, Raw

from dissector.particle import (
    decode_chunk_missed,
    decode_function_return,
    decode_goodbye,
    decode_hello,
    decode_time,
    decode_update_begin,
)
from dissector.scapy import (
    CoAP,
    ParticleChunkMissed,
    ParticleFunctionReturn,
    ParticleGoodbye,
    ParticleHello,
    ParticleHelloA,
    ParticleHelloB,
    ParticleHelloBUdp,
    ParticleHelloC,
    ParticleTime,
    ParticleUpdateBegin,
    coap_layer,
    payload_layer_class,
)

# Spec §10: a constructed Variant C Hello from a Gen3 device (39 bytes).
HELLO_C = bytes.fromhex(
    "40 02 0001 b1 68 ff  0001 0003 0016 000d 00 0c  e00fce681122334455667788"
    "  1234 0480 00000000 0200"
)


def roundtrip(cls: type[Packet], data: bytes) -> Packet:
    layer = cls(data)
    assert bytes(layer) == data
    assert not isinstance(layer.payload, Raw) or bytes(layer.payload) == b""
    rebuilt = cls(**{f.name: layer.getfieldval(f.name) for f in layer.fields_desc})
    assert bytes(rebuilt) == data
    return layer


def hello_fields(layer: Packet) -> dict[str, Any]:
    out: dict[str, Any] = {
        "product_id": layer.product_id,
        "product_version": layer.product_version,
        "flags": int(layer.flags),
    }
    if "platform_id" in layer.fieldtype:
        out["platform_id"] = layer.platform_id
    if "device_id" in layer.fieldtype and layer.device_id:
        out["device_id"] = bytes(layer.device_id).hex()
    if isinstance(layer, ParticleHelloC):
        out |= {
            "system_version": layer.system_version,
            "max_message_size": layer.max_message_size,
            "max_binary_size": layer.max_binary_size,
            "ota_chunk_size": layer.ota_chunk_size,
        }
    return out


def decoded_hello_fields(decoded: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "product_id",
        "product_version",
        "flags",
        "platform_id",
        "device_id",
        "system_version",
        "max_message_size",
        "max_binary_size",
        "ota_chunk_size",
    )
    return {k: decoded[k] for k in keys if decoded.get(k) is not None}


@pytest.mark.parametrize(
    ("payload", "variant"),
    [
        (bytes.fromhex("ffffffff0001"), ParticleHelloA),  # 2014 Core, OTA flag set
        (bytes.fromhex("0003ffff00020003"), ParticleHelloB),  # Device OS 1.0.1 (TCP)
        (bytes.fromhex("0006000300170006000c") + bytes(range(12)), ParticleHelloBUdp),
        (HELLO_C[7:], ParticleHelloC),
        (bytes.fromhex("0001 0003 0016 0006 00 00 1234 0480 00000000 0200"), ParticleHelloC),
    ],
    ids=["A", "B", "B-udp", "C-udp", "C-tcp"],
)
def test_hello_variants_dissect_build_and_agree_with_decode_hello(
    payload: bytes, variant: type[Packet]
) -> None:
    layer = ParticleHello(payload)
    assert type(layer) is variant
    roundtrip(variant, payload)
    assert hello_fields(layer) == decoded_hello_fields(decode_hello(payload))


def test_hello_c_example_of_the_spec_reads_like_the_spec() -> None:
    msg = CoAP(HELLO_C)
    hello = msg[ParticleHello]
    assert isinstance(hello, ParticleHelloC)
    assert hello.device_id_length == 12
    shown = hello.show(dump=True)
    assert "###[ Particle Hello (C) ]###" in shown
    assert "flags     = diagnostics_support+immediate_updates_support+goodbye_support" in shown
    assert "platform_id= Boron" in shown
    assert "device_id = e00fce681122334455667788" in shown
    assert "Particle Hello (C) product=1 v3 Boron" in msg.summary()
    assert bytes(msg) == HELLO_C


def test_hello_built_from_fields_is_variant_c() -> None:
    hello = ParticleHello(product_id=1, product_version=3, flags=0x16, platform_id=13)
    assert isinstance(hello, ParticleHelloC)
    data = bytes(hello)
    assert len(data) == 20
    assert decode_hello(data)["variant"] == "C"


def test_hello_of_unknown_layout_stays_raw() -> None:
    assert payload_layer_class("Hello", 0x02, bytes(7)) is None
    assert isinstance(ParticleHello(bytes(7)), Raw)
    msg = CoAP(bytes.fromhex("5002f649b168ff") + bytes(7))
    assert isinstance(msg.payload, Raw)


@settings(max_examples=200, deadline=None)
@given(
    product=st.integers(0, 0xFFFF),
    version=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF),
    platform=st.integers(0, 0xFFFF),
    device_id=st.sampled_from([b"", bytes(range(12))]),
    system=st.integers(0, 0xFFFF),
    max_message=st.integers(0, 0xFFFF),
    max_binary=st.integers(0, 0xFFFFFFFF),
    chunk=st.integers(0, 0xFFFF),
)
def test_hello_c_from_random_fields_round_trips_and_agrees_with_decode_hello(
    product: int,
    version: int,
    flags: int,
    platform: int,
    device_id: bytes,
    system: int,
    max_message: int,
    max_binary: int,
    chunk: int,
) -> None:
    layer = ParticleHelloC(
        product_id=product,
        product_version=version,
        flags=flags,
        platform_id=platform,
        device_id=device_id,
        system_version=system,
        max_message_size=max_message,
        max_binary_size=max_binary,
        ota_chunk_size=chunk,
    )
    data = bytes(layer)
    back = ParticleHello(data)
    assert isinstance(back, ParticleHelloC)
    assert hello_fields(back) == decoded_hello_fields(decode_hello(data))
    assert back.max_binary_size == max_binary and bytes(back.device_id) == device_id


@pytest.mark.parametrize(
    ("plaintext", "result"),
    [("514497b3efff000001c8", 456), ("5144f649c3ff0000002a", 42)],
)
def test_function_return_vectors(plaintext: str, result: int) -> None:
    msg = coap_layer(bytes.fromhex(plaintext), "FunctionReturn")
    layer = msg[ParticleFunctionReturn]
    assert layer.result == result == decode_function_return(bytes(layer))["result"]
    assert bytes(msg) == bytes.fromhex(plaintext)
    assert roundtrip(ParticleFunctionReturn, (-5).to_bytes(4, "big", signed=True)).result == -5


def test_function_return_of_an_error_response_stays_raw() -> None:
    msg = coap_layer(bytes.fromhex("5180f649c3ff00000001"), "FunctionReturn")
    assert isinstance(msg.payload, Raw)


def test_time_vector() -> None:
    msg = coap_layer(bytes.fromhex("6145999999ff535966ad"), "GetTimeReturn")
    layer = msg[ParticleTime]
    assert layer.unix_time == decode_time(b"\x53\x59\x66\xad")["unix_time"] == 1398367917
    assert "Thu, 24 Apr 2014 19:31:57" in layer.show(dump=True)
    assert "Particle Time 2014-04-24T19:31:57Z" in msg.summary()
    roundtrip(ParticleTime, b"\x53\x59\x66\xad")


def test_update_begin_parameters() -> None:
    payload = bytes.fromhex("01 0100 00012345 80 00080000")
    layer = roundtrip(ParticleUpdateBegin, payload)
    decoded = decode_update_begin(payload)
    assert (
        int(layer.flags),
        layer.chunk_size,
        layer.file_size,
        layer.destination,
        layer.address,
    ) == (
        decoded["flags"],
        decoded["chunk_size"],
        decoded["file_size"],
        decoded["destination"],
        decoded["address"],
    )
    shown = layer.show(dump=True)
    assert "flags     = fast_ota" in shown
    assert "destination= application_storage" in shown
    msg = CoAP(bytes.fromhex("4102abd033b175ff") + payload)
    assert isinstance(msg.payload, ParticleUpdateBegin)
    assert isinstance(coap_layer(bytes.fromhex("4102abd033b175ff") + bytes(8)).payload, Raw)


def test_chunk_missed_list() -> None:
    payload = bytes.fromhex("0000 0003 ffff")
    layer = roundtrip(ParticleChunkMissed, payload)
    assert layer.chunks == decode_chunk_missed(payload)["chunks"] == [0, 3, 0xFFFF]
    assert payload_layer_class("ChunkMissed", 0x01, b"\x00") is None


GOODBYE_FIELDS = {1: "cloud_reason", 2: "reset_reason", 4: "sleep_duration", 8: "network_reason"}


def present(layer: Packet, name: str) -> Any:
    """A conditional field's value, None when the flags leave it out."""
    bit = next(b for b, n in GOODBYE_FIELDS.items() if n == name)
    return layer.getfieldval(name) if int(layer.flags) & bit else None


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        (bytes.fromhex("0102"), ["flags     = cloud_reason", "cloud_reason= user (2)"]),
        (
            bytes.fromhex("0f 06 8c01 a08d06 05"),
            [
                "reset_reason= user (140)",
                "sleep_duration= 100000",
                "network_reason= sleep (5)",
            ],
        ),
        (bytes.fromhex("00"), ["flags     = 0"]),
    ],
)
def test_goodbye_varints(payload: bytes, shown: list[str]) -> None:
    layer = roundtrip(ParticleGoodbye, payload)
    text = layer.show(dump=True)
    for line in shown:
        assert line in text
    decoded = decode_goodbye(payload)
    for name in GOODBYE_FIELDS.values():
        assert present(layer, name) == decoded.get(name)


@settings(max_examples=300, deadline=None)
@given(
    flags=st.integers(0, 0xFF),
    values=st.lists(st.integers(0, (1 << 63) - 1), min_size=4, max_size=4),
)
def test_goodbye_from_random_fields_agrees_with_decode_goodbye(
    flags: int, values: list[int]
) -> None:
    fields = dict(zip(GOODBYE_FIELDS.values(), values, strict=True))
    data = bytes(ParticleGoodbye(flags=flags, **fields))
    decoded = decode_goodbye(data)
    assert "error" not in decoded and "trailing" not in decoded
    assert decoded["flags"] == flags
    back = ParticleGoodbye(data)
    for bit, name in GOODBYE_FIELDS.items():
        expected = fields[name] if flags & bit else None
        assert decoded.get(name) == expected
        assert present(back, name) == expected
    assert bytes(back) == data


def test_goodbye_with_a_truncated_varint_stays_raw() -> None:
    msg = CoAP(bytes.fromhex("5002000ab178ff0181"))
    assert isinstance(msg.payload, Raw)


def test_payload_layers_keep_trailing_bytes_as_raw() -> None:
    msg = CoAP(bytes.fromhex("5002000ab178ff010277"))  # Goodbye + one trailing byte
    assert isinstance(msg.payload, ParticleGoodbye)
    assert bytes(msg.payload.payload) == b"\x77"
    assert bytes(msg) == bytes.fromhex("5002000ab178ff010277")


def all_layers() -> list[Packet]:
    from dissector.scapy import (
        CoAPOption,
        ParticleFrame,
        ParticleIdentity,
        ParticleIdentityPlaintext,
        ParticleNonce,
        ParticleSessionCredentials,
        ParticleSessionKey,
    )

    return [
        ParticleNonce(nonce=bytes(range(40))),
        ParticleIdentity(ciphertext=bytes(range(256))),
        ParticleIdentityPlaintext(nonce=bytes(40), device_id="5190c68b84cc2643c6b052a7"),
        ParticleSessionKey(ciphertext=bytes(128), signature=bytes(range(256))),
        ParticleSessionCredentials(key=bytes(16), iv=bytes(range(16)), salt=bytes(8)),
        ParticleFrame(ciphertext=bytes(range(48))),
        CoAP(type="CON", code="GET", message_id=9, token=b"\x01", options=[("Uri-Path", "t")]),
        CoAPOption(number="Uri-Query", value="on"),
        ParticleHelloA(flags="ota_upgrade_successful"),
        ParticleHelloB(platform_id=6),
        ParticleHelloBUdp(platform_id=10, device_id=bytes(12)),
        ParticleHelloC(platform_id=13, flags=0x16),
        ParticleTime(unix_time=1398367917),
        ParticleFunctionReturn(result=-1),
        ParticleUpdateBegin(flags="fast_ota", file_size=1024),
        ParticleChunkMissed(chunks=[1, 2]),
        ParticleGoodbye(flags=0x05, cloud_reason=6, sleep_duration=3600),
    ]


@pytest.mark.parametrize("layer", all_layers(), ids=lambda layer: type(layer).__name__)
def test_every_layer_round_trips_and_has_a_summary(layer: Packet) -> None:
    data = bytes(layer)
    back = type(layer)(data)
    assert bytes(back) == data
    assert bytes(type(layer)(**back.fields)) == data  # rebuilt from the dissected fields
    summary = back.summary()
    assert summary and summary != type(layer).__name__
    assert back.show(dump=True).startswith(f"###[ {back.name} ]###")
