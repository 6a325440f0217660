"""Particle message kinds and the one-message classifier (spec §4.2 catalogue, §10 routing).

Requests are routed by method and the first Uri-Path value. Responses carry no path, so
:func:`classify` alone can only call them ``Response``; :class:`~dissector.particle.tracker.
ExchangeTracker` pairs them with their request and gives the response kinds in the second
table.

Request and empty-message kinds (from one message):

=====================  ============================================================
Kind                   Meaning (method, first Uri-Path)
=====================  ============================================================
Hello                  POST ``h``: session hello, device first then cloud (TCP)
Describe               GET ``d``: cloud asks for the system/application description
DeviceDescribe         POST ``d``: device pushes its description unasked
FunctionCall           POST ``f/<name>``: cloud calls a device function
VariableRequest        GET ``v/<name>``: cloud reads a device variable
PublicEvent            POST ``e/<name>``: public event (either direction)
PrivateEvent           POST ``E/<name>``: private event (v6.2+: every device event)
Subscribe              GET ``e/<filter>``: device subscribes to events
GetTime                GET ``t``: device asks for the time
SignalStart            PUT ``s``, first query byte non-zero (1): start the LED signal
SignalStop             PUT ``s``, first query byte 0: stop the signal
Signal                 PUT ``s`` without a readable start/stop query byte
KeyChange              PUT ``k``: cloud tells the device to change/discard keys
UpdateBegin            POST ``u``: legacy OTA start
SaveBegin              POST ``s``: legacy file save start (same handler as UpdateBegin)
Chunk                  POST ``c``: legacy OTA data chunk (CRC-32 in Uri-Query)
ChunkMissed            GET ``c``: device lists missing legacy OTA chunks
UpdateDone             PUT ``u``: legacy OTA end
UpdateStart            POST ``S``: OTA v3 start
UpdateChunk            POST ``C``: OTA v3 chunk (cloud to device)
UpdateAck              POST ``A``: OTA v3 chunk acknowledgement bitmap
UpdateFinish           POST ``F``: OTA v3 end
Goodbye                POST ``x``: device announces a graceful disconnect
ServerMoved            POST ``M``: cloud moves the device to another server
Ledger                 POST ``L``: ledger synchronisation (Device OS 5.x+)
Ping                   CON 0.00: keep-alive ping
SocketPing             NON 0.00: Node's (unused) socket ping
EmptyAck               ACK 0.00: acknowledgement; the tracker adds what it acknowledges
Reset                  RST: the peer rejects a message
Unknown                request (or reserved code) with no Particle meaning
Response               response (2.xx/4.xx/5.xx) whose request is not known
=====================  ============================================================

Response kinds (need the request; given by the tracker, request kind in brackets):

=====================  ============================================================
Kind                   Meaning
=====================  ============================================================
DescribeReturn         description JSON [Describe]
DeviceDescribeReturn   coded answer to a device describe [DeviceDescribe]
FunctionReturn         int32 result, or an error code [FunctionCall]
VariableValue          variable value, typed from the app description [VariableRequest]
GetTimeReturn          Unix time [GetTime]
SignalAck              answer to a signal request [SignalStart/SignalStop/Signal]
KeyChanged             answer to a key change [KeyChange]
UpdateReady            device ready for chunks; fast-OTA flag byte [UpdateBegin/SaveBegin]
ChunkReceived          2.04 CRC ok / 4.00 CRC bad [Chunk]
ChunkMissedAck         coded answer to a missing-chunks list [ChunkMissed]
UpdateDoneAck          2.04 update complete / 4.00 chunks missing [UpdateDone]
UpdateStartReturn      OTA v3 window size and resume offset [UpdateStart]
UpdateFinishReturn     OTA v3 result, JSON statistics [UpdateFinish]
SubscribeAck           subscription accepted [Subscribe]
SubscribeFail          subscription refused (4.xx/5.xx) [Subscribe]
EventAck               event accepted with a coded 2.xx ACK [PublicEvent/PrivateEvent]
EventSlowdown          event answered 4.xx/5.xx (Node's name; spark-protocol 0.1.6
                       answers every user event this way) [PublicEvent/PrivateEvent]
ServerMovedReturn      answer to a server-moved request [ServerMoved]
LedgerReturn           answer to a ledger request [Ledger]
Response               any other coded response (request kept in ``request``)
=====================  ============================================================
"""

from __future__ import annotations

from typing import Final

from dissector.coap.message import CoapMessage
from dissector.coap.options import URI_PATH, URI_QUERY
from dissector.model import Direction

#: Every kind this package can produce -> one-line meaning.
KINDS: Final[dict[str, str]] = {
    "Hello": "session hello",
    "Describe": "cloud asks for the description",
    "DeviceDescribe": "device pushes its description",
    "FunctionCall": "cloud calls a device function",
    "VariableRequest": "cloud reads a device variable",
    "PublicEvent": "public event",
    "PrivateEvent": "private event",
    "Subscribe": "device subscribes to events",
    "GetTime": "device asks for the time",
    "SignalStart": "start the LED signal",
    "SignalStop": "stop the LED signal",
    "Signal": "signal request without a readable start/stop byte",
    "KeyChange": "cloud asks the device to change keys",
    "UpdateBegin": "legacy OTA start",
    "SaveBegin": "legacy file save start",
    "Chunk": "legacy OTA chunk",
    "ChunkMissed": "device lists missing legacy OTA chunks",
    "UpdateDone": "legacy OTA end",
    "UpdateStart": "OTA v3 start",
    "UpdateChunk": "OTA v3 chunk",
    "UpdateAck": "OTA v3 chunk acknowledgement",
    "UpdateFinish": "OTA v3 end",
    "Goodbye": "device announces a graceful disconnect",
    "ServerMoved": "cloud moves the device to another server",
    "Ledger": "ledger synchronisation",
    "Ping": "keep-alive ping",
    "SocketPing": "Node socket ping (NON 0.00)",
    "EmptyAck": "empty acknowledgement",
    "Reset": "reset (RST)",
    "Unknown": "request with no Particle meaning",
    "Response": "response to an unknown or generic request",
    "DescribeReturn": "description",
    "DeviceDescribeReturn": "answer to a device describe",
    "FunctionReturn": "function result",
    "VariableValue": "variable value",
    "GetTimeReturn": "time",
    "SignalAck": "answer to a signal request",
    "KeyChanged": "answer to a key change",
    "UpdateReady": "device ready for OTA chunks",
    "ChunkReceived": "legacy OTA chunk verdict",
    "ChunkMissedAck": "answer to a missing-chunks list",
    "UpdateDoneAck": "legacy OTA end verdict",
    "UpdateStartReturn": "OTA v3 start answer",
    "UpdateFinishReturn": "OTA v3 end answer",
    "SubscribeAck": "subscription accepted",
    "SubscribeFail": "subscription refused",
    "EventAck": "event accepted",
    "EventSlowdown": "event answered with an error code",
    "ServerMovedReturn": "answer to server moved",
    "LedgerReturn": "answer to a ledger request",
}

_GET: Final[dict[bytes, str]] = {
    b"v": "VariableRequest",
    b"d": "Describe",
    b"t": "GetTime",
    b"e": "Subscribe",
    b"c": "ChunkMissed",
}
_POST: Final[dict[bytes, str]] = {
    b"h": "Hello",
    b"e": "PublicEvent",
    b"E": "PrivateEvent",
    b"f": "FunctionCall",
    b"u": "UpdateBegin",
    b"s": "SaveBegin",
    b"c": "Chunk",
    b"d": "DeviceDescribe",
    b"x": "Goodbye",
    b"M": "ServerMoved",
    b"S": "UpdateStart",
    b"C": "UpdateChunk",
    b"F": "UpdateFinish",
    b"A": "UpdateAck",
    b"L": "Ledger",
}
_PUT: Final[dict[bytes, str]] = {b"u": "UpdateDone", b"s": "Signal", b"k": "KeyChange"}
_ROUTES: Final = (None, _GET, _POST, _PUT)

_EMPTY_KINDS: Final = ("Ping", "SocketPing", "EmptyAck", "Reset")

#: request kind -> (kind of a 2.xx answer, kind of a 4.xx/5.xx answer)
RESPONSE_KINDS: Final[dict[str, tuple[str, str]]] = {
    "Describe": ("DescribeReturn", "DescribeReturn"),
    "DeviceDescribe": ("DeviceDescribeReturn", "DeviceDescribeReturn"),
    "FunctionCall": ("FunctionReturn", "FunctionReturn"),
    "VariableRequest": ("VariableValue", "VariableValue"),
    "GetTime": ("GetTimeReturn", "GetTimeReturn"),
    "SignalStart": ("SignalAck", "SignalAck"),
    "SignalStop": ("SignalAck", "SignalAck"),
    "Signal": ("SignalAck", "SignalAck"),
    "KeyChange": ("KeyChanged", "KeyChanged"),
    "UpdateBegin": ("UpdateReady", "UpdateReady"),
    "SaveBegin": ("UpdateReady", "UpdateReady"),
    "Chunk": ("ChunkReceived", "ChunkReceived"),
    "ChunkMissed": ("ChunkMissedAck", "ChunkMissedAck"),
    "UpdateDone": ("UpdateDoneAck", "UpdateDoneAck"),
    "UpdateStart": ("UpdateStartReturn", "UpdateStartReturn"),
    "UpdateFinish": ("UpdateFinishReturn", "UpdateFinishReturn"),
    "Subscribe": ("SubscribeAck", "SubscribeFail"),
    "PublicEvent": ("EventAck", "EventSlowdown"),
    "PrivateEvent": ("EventAck", "EventSlowdown"),
    "ServerMoved": ("ServerMovedReturn", "ServerMovedReturn"),
    "Ledger": ("LedgerReturn", "LedgerReturn"),
}


def response_kind(request_kind: str, code: int) -> str:
    """Kind of a response with ``code`` to a request of ``request_kind``."""
    pair = RESPONSE_KINDS.get(request_kind)
    if pair is None:
        return "Response"
    return pair[0] if code >> 5 == 2 else pair[1]


def classify(msg: CoapMessage, direction: Direction) -> str:
    """Kind of one message on its own (responses come out as ``Response``).

    ``direction`` is accepted for kinds whose meaning depends on the sender; the current
    catalogue routes every request the same way in both directions.
    """
    code = msg.code
    mtype = msg.type
    if mtype == 3:
        return "Reset"
    if code == 0:
        if mtype == 2:
            return "EmptyAck"
        return "Ping" if mtype == 0 else "SocketPing"
    if code >= 0x20:
        return "Response" if (code >> 5) in (2, 4, 5) else "Unknown"
    if code > 3:
        return "Unknown"
    first = None
    for opt in msg.options:
        if opt.number == URI_PATH:
            first = opt.value
            break
    if first is None:
        return "Unknown"
    route = _ROUTES[code]
    assert route is not None
    kind = route.get(first, "Unknown")
    if kind == "Signal":
        return _signal_kind(msg)
    return kind


def _signal_kind(msg: CoapMessage) -> str:
    """Like the device (``buf[8]``): first byte of the first Uri-Query, non-zero = start."""
    for opt in msg.options:
        if opt.number == URI_QUERY:
            if opt.value:
                return "SignalStart" if opt.value[0] else "SignalStop"
            break
    return "Signal"
