"""One-message classification: firmware vectors and the §10 routing table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dissector.coap import CoapMessage, CoapOption, decode
from dissector.model import Direction
from dissector.particle import KINDS, RESPONSE_KINDS, classify, kinds, response_kind

DATA = Path(__file__).parent / "data" / "coap"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

EXPECTED_KIND = {
    "HandshakeSendsExpectedHello.expected": "Hello",
    "EventLoopRespondsToDescribeWith50Bytes.describe": "Describe",
    "EventLoopRespondsToDescribeWithDescription.expected": "Response",
    "EventLoopRespondsToFunctionCallWithACK.function_call": "FunctionCall",
    "EventLoopRespondsToFunctionCallWithACK.expected": "EmptyAck",
    "EventLoopLaterRespondsToFunctionCallWithFunctionReturn.expected": "Response",
    "EventLoopRespondsToVariableRequestWithVariableValue.variable_request": "VariableRequest",
    "EventLoopRespondsToVariableRequestWithVariableValue.expected": "Response",
    "EventLoopRespondsToUpdateBeginWithACK.update_begin": "UpdateBegin",
    "EventLoopRespondsToUpdateBeginWithACK.expected": "EmptyAck",
    "EventLoopRespondsToUpdateBeginWithUpdateReady.expected": "Response",
    "EventLoopRespondsToChunkWithACK.chunk": "Chunk",
    "EventLoopRespondsToChunkWithACK.expected": "EmptyAck",
    "EventLoopRespondsToChunkWithChunkReceivedOKIfCRCMatches.expected": "Response",
    "EventLoopRespondsToChunkWithChunkReceivedBADOnCRCMismatch.expected": "Response",
    "EventLoopRespondsToUpdateDoneWithACK.update_done": "UpdateDone",
    "EventLoopRespondsToUpdateDoneWithACK.expected": "Response",
    "EventLoopSendsChunkMissedOnTimeout.expected": "ChunkMissed",
    "EventLoopCallsOnlyHandlerOnExactlyMatchedEvent.event": "PublicEvent",
    "EventLoopCallsHandlerWithData.event": "PublicEvent",
    "EventLoopDoesNotCallHandlerOnEventNameShorterThanFilter.event": "PrivateEvent",
    "EventLoopParsesMaxAgeOptionOnMatchedEvent.event": "PublicEvent",
    "EventLoopCallsHandlerWithMultiPathName.event": "PublicEvent",
    "EventLoopCallsHandlerWithLongMultiPathName.event": "PublicEvent",
    "EventLoopCallsSignalWithTrueOnSignalStart.signal_start": "SignalStart",
    "EventLoopCallsSignalWithFalseOnSignalStop.signal_stop": "SignalStop",
    "EventLoopCallsSetTimeOnTimeResponse.time": "Response",
    "EventMatchesOpenSSL.expected": "PublicEvent",
    "EventWithDataMatchesOpenSSL.expected": "PrivateEvent",
    "SubscribeToDeviceMatchesOpenSSL.expected": "Subscribe",
    "SubscribeToMyDevicesFilteredMatchesOpenSSL.expected": "Subscribe",
    "SubscribeToFirehoseWithMaxLenFilterMatchesOpenSSL.expected": "Subscribe",
    "TimeRequestMatchesOpenSSL.expected": "GetTime",
    "ReceivedMessageReturnsCoAPMessageTypeFunction.ciphertext": "FunctionCall",
    "ReceivedMessageReturnsCoAPMessageTypeVariable.ciphertext": "VariableRequest",
    "ReceivedMessageRecognizesKeyChange.ciphertext": "KeyChange",
    "ReceivedMessageRecognizesUpdateBegin.ciphertext": "UpdateBegin",
    "ReceivedMessageRecognizesChunk.ciphertext": "Chunk",
    "ReceivedMessageRecognizesUpdateDone.ciphertext": "UpdateDone",
    "ReceivedMessageRecognizesDescribe.ciphertext": "Describe",
    "ReceivedMessageRecognizesHello.ciphertext": "Hello",
    "HelloMatchesOpenSSL.expected": "Hello",
    "KeyChangedMatchesOpenSSL.expected": "Response",
    "FunctionReturnIntMatchesOpenSSL.expected": "Response",
    "VariableValueBoolMatchesOpenSSL.expected": "Response",
    "VariableValueIntMatchesOpenSSL.expected": "Response",
    "VariableValueDoubleMatchesOpenSSL.expected": "Response",
    "VariableValueStringMatchesOpenSSL.expected": "Response",
    "VariableValueLongStringMatchesOpenSSL.expected": "Response",
    "ChunkReceivedMatchesOpenSSL.expected": "Response",
    "UpdateReadyMatchesOpenSSL.expected": "Response",
    "DescriptionMatchesOpenSSL.expected": "Response",
    "ExpectedBufForSingleCharEventWithNoData": "PublicEvent",
    "ExpectedBufForLongerMessageWithNoData": "PrivateEvent",
    "ExpectedBufForLongEventWithDataAndTtl": "PublicEvent",
    "ExpectedBufForSubscriptionToOneDeviceFiltered": "Subscribe",
    "ExpectedBufForSubscriptionToOneDeviceUnfilteredWithNull": "Subscribe",
    "ExpectedBufForSubscriptionToOneDeviceUnfilteredWithEmptyString": "Subscribe",
    "ExpectedBufForSubscriptionToMyDevicesFiltered": "Subscribe",
    "ExpectedBufForSubscriptionToMyDevicesUnfiltered": "Subscribe",
    "ExpectedBufForSubscriptionToFirehoseFiltered": "Subscribe",
}


def vectors() -> list[dict[str, Any]]:
    all_vectors: list[dict[str, Any]] = json.loads((DATA / "spec_vectors.json").read_text())
    return [v for v in all_vectors if not v["name"].endswith("UriPath")]


def test_expectations_cover_every_full_message_vector() -> None:
    assert {v["name"] for v in vectors()} == set(EXPECTED_KIND)


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["name"])
def test_spec_vector_kind(vector: dict[str, Any]) -> None:
    direction = Direction(vector["direction"]) if vector["direction"] else D2C
    assert (
        classify(decode(bytes.fromhex(vector["hex"])), direction) == EXPECTED_KIND[vector["name"]]
    )


def request(code: int, path: bytes, *extra: CoapOption, mtype: int = 0) -> CoapMessage:
    return CoapMessage(1, mtype, code, 1, b"\x01", [CoapOption(11, path), *extra])


@pytest.mark.parametrize(
    ("code", "path", "kind"),
    [
        (1, b"v", "VariableRequest"),
        (1, b"d", "Describe"),
        (1, b"t", "GetTime"),
        (1, b"e", "Subscribe"),
        (1, b"c", "ChunkMissed"),
        (2, b"h", "Hello"),
        (2, b"e", "PublicEvent"),
        (2, b"E", "PrivateEvent"),
        (2, b"f", "FunctionCall"),
        (2, b"u", "UpdateBegin"),
        (2, b"s", "SaveBegin"),
        (2, b"c", "Chunk"),
        (2, b"d", "DeviceDescribe"),
        (2, b"x", "Goodbye"),
        (2, b"M", "ServerMoved"),
        (2, b"S", "UpdateStart"),
        (2, b"C", "UpdateChunk"),
        (2, b"F", "UpdateFinish"),
        (2, b"A", "UpdateAck"),
        (2, b"L", "Ledger"),
        (3, b"u", "UpdateDone"),
        (3, b"s", "Signal"),
        (3, b"k", "KeyChange"),
        (1, b"h", "Unknown"),
        (2, b"zz", "Unknown"),
        (4, b"e", "Unknown"),
        (3, b"v", "Unknown"),
    ],
)
def test_routing_by_method_and_first_path(code: int, path: bytes, kind: str) -> None:
    for direction in (D2C, C2D):
        assert classify(request(code, path), direction) == kind


def test_signal_state_comes_from_the_first_query_byte() -> None:
    assert classify(request(3, b"s", CoapOption(15, b"\x01")), C2D) == "SignalStart"
    assert classify(request(3, b"s", CoapOption(15, b"\x00")), C2D) == "SignalStop"
    assert classify(request(3, b"s", CoapOption(15, b"")), C2D) == "Signal"
    assert classify(request(3, b"s"), C2D) == "Signal"


def test_empty_messages_and_resets() -> None:
    assert classify(CoapMessage(1, 0, 0, 5), D2C) == "Ping"
    assert classify(CoapMessage(1, 1, 0, 5), C2D) == "SocketPing"
    assert classify(CoapMessage(1, 2, 0, 5), C2D) == "EmptyAck"
    assert classify(CoapMessage(1, 2, 0, 5, b"\x00"), C2D) == "EmptyAck"
    assert classify(CoapMessage(1, 3, 0, 5), D2C) == "Reset"
    assert classify(CoapMessage(1, 3, 0x44, 5), D2C) == "Reset"


def test_requests_without_path_and_reserved_codes_are_unknown() -> None:
    assert classify(CoapMessage(1, 0, 2, 5), D2C) == "Unknown"
    assert classify(CoapMessage(1, 0, 0x20, 5), D2C) == "Unknown"
    assert classify(CoapMessage(1, 0, 0xE0, 5), D2C) == "Unknown"
    for code in (0x41, 0x44, 0x45, 0x80, 0x84, 0xA0, 0xA3):
        assert classify(CoapMessage(1, 2, code, 5, b"\x01"), D2C) == "Response"


def test_response_kind_table() -> None:
    assert response_kind("FunctionCall", 0x44) == "FunctionReturn"
    assert response_kind("VariableRequest", 0x45) == "VariableValue"
    assert response_kind("Describe", 0x45) == "DescribeReturn"
    assert response_kind("GetTime", 0x45) == "GetTimeReturn"
    assert response_kind("UpdateBegin", 0x44) == "UpdateReady"
    assert response_kind("Chunk", 0x80) == "ChunkReceived"
    assert response_kind("SignalStart", 0x44) == "SignalAck"
    assert response_kind("UpdateDone", 0x80) == "UpdateDoneAck"
    assert response_kind("Subscribe", 0x44) == "SubscribeAck"
    assert response_kind("Subscribe", 0x80) == "SubscribeFail"
    assert response_kind("PrivateEvent", 0x44) == "EventAck"
    assert response_kind("PrivateEvent", 0x80) == "EventSlowdown"
    assert response_kind("Hello", 0x44) == "Response"
    assert response_kind("Unknown", 0x45) == "Response"


def test_every_kind_is_documented_in_the_module_docstring_table() -> None:
    doc = kinds.__doc__ or ""
    table_kinds = {m.group(1) for m in re.finditer(r"^([A-Z][A-Za-z]+) {2,}\S", doc, re.M)}
    table_kinds.discard("Kind")
    produced = set(KINDS)
    for pair in RESPONSE_KINDS.values():
        assert set(pair) <= produced
    assert produced <= table_kinds | {"Response"}
    assert table_kinds <= produced
