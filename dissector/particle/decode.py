"""Dispatch from a message kind to its payload decoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from dissector.coap.message import CoapMessage
from dissector.coap.options import CONTENT_FORMAT
from dissector.particle import ota
from dissector.particle import payloads as p
from dissector.particle.hello import decode_hello

_Decoder = Callable[[CoapMessage], dict[str, Any] | None]


def _describe_body(msg: CoapMessage, flags: int | None) -> dict[str, Any]:
    if msg.code >> 5 not in (0, 2):
        return p.decode_status(msg)
    cf_raw = msg.first_option(CONTENT_FORMAT)
    cf = int.from_bytes(cf_raw, "big") if cf_raw is not None else None
    block = p.block_info(msg)
    if block is not None and (block["m"] or block["num"]):
        out: dict[str, Any] = {"block": block, "length": len(msg.payload), "partial": True}
        if flags is not None:
            out["flags"] = flags
        return out
    out = p.decode_describe(msg.payload, cf, flags)
    if block is not None:
        out["block"] = block
    return out


def _device_describe(msg: CoapMessage) -> dict[str, Any] | None:
    q = msg.queries
    flags = q[0][0] if q and q[0] else None
    return _describe_body(msg, flags)


def _ok_or_status(decoder: Callable[[bytes], dict[str, Any]]) -> _Decoder:
    def run(msg: CoapMessage) -> dict[str, Any]:
        if msg.code >> 5 != 2:
            return p.decode_status(msg)
        return decoder(msg.payload)

    return run


def _ledger(msg: CoapMessage) -> dict[str, Any]:
    return {"length": len(msg.payload)}


def _update_done(msg: CoapMessage) -> dict[str, Any] | None:
    return p.data_repr(msg.payload) if msg.payload else None


def _none(msg: CoapMessage) -> None:
    return None


_DECODERS: Final[dict[str, _Decoder]] = {
    "Hello": lambda m: decode_hello(m.payload),
    "Describe": p.decode_describe_request,
    "DeviceDescribe": _device_describe,
    "FunctionCall": p.decode_function_call,
    "VariableRequest": p.decode_variable_request,
    "PublicEvent": p.decode_event,
    "PrivateEvent": p.decode_event,
    "Subscribe": p.decode_subscribe,
    "GetTime": _none,
    "SignalStart": p.decode_signal,
    "SignalStop": p.decode_signal,
    "Signal": p.decode_signal,
    "KeyChange": p.decode_key_change,
    "UpdateBegin": lambda m: ota.decode_update_begin(m.payload),
    "SaveBegin": lambda m: ota.decode_update_begin(m.payload),
    "Chunk": ota.decode_chunk,
    "ChunkMissed": lambda m: ota.decode_chunk_missed(m.payload),
    "UpdateDone": _update_done,
    "UpdateStart": ota.decode_update_start,
    "UpdateChunk": ota.decode_update_chunk,
    "UpdateAck": ota.decode_update_ack,
    "UpdateFinish": ota.decode_update_finish,
    "Goodbye": lambda m: p.decode_goodbye(m.payload),
    "ServerMoved": lambda m: p.decode_server_moved(m.payload),
    "Ledger": _ledger,
    "Ping": _none,
    "SocketPing": _none,
    "EmptyAck": _none,
    "Reset": _none,
    "Unknown": _none,
    "FunctionReturn": _ok_or_status(p.decode_function_return),
    "GetTimeReturn": _ok_or_status(p.decode_time),
    "UpdateReady": ota.decode_update_ready,
    "ChunkReceived": ota.decode_chunk_received,
    "UpdateDoneAck": ota.decode_update_done_ack,
    "UpdateStartReturn": ota.decode_update_start_return,
    "UpdateFinishReturn": ota.decode_update_finish_return,
}


def decode_payload(
    kind: str,
    msg: CoapMessage,
    *,
    variable_type: int | None = None,
    describe_flags: int | None = None,
) -> dict[str, Any] | None:
    """Decode ``msg`` as a message of ``kind``.

    ``variable_type`` (a describe type digit) types a ``VariableValue``; ``describe_flags``
    (the request's Uri-Query byte) labels a ``DescribeReturn``. Returns ``None`` for kinds
    without content; never raises on bad payloads (``"error"`` key instead).
    """
    decoder = _DECODERS.get(kind)
    if decoder is not None:
        return decoder(msg)
    if kind == "VariableValue":
        if msg.code >> 5 != 2:
            return p.decode_status(msg)
        return p.decode_variable_value(msg.payload, variable_type)
    if kind == "DescribeReturn":
        return _describe_body(msg, describe_flags)
    return p.decode_status(msg)
