"""Payload decoders for Particle requests and responses (spec §4.4-§4.9).

Every decoder is a pure function returning a JSON-friendly ``dict``; none raises on short or
garbage input: the problem is reported as ``{"error": "..."}`` (with whatever could be read).
Byte strings are rendered as lower-case hex, names as UTF-8 with ``backslashreplace``.
"""

from __future__ import annotations

import json
import math
import struct
import time
from typing import Any, Final

from dissector.coap.message import CoapMessage, code_str
from dissector.coap.options import (
    BLOCK1,
    BLOCK2,
    CONTENT_FORMAT,
    CONTENT_FORMATS,
    MAX_AGE,
    URI_PATH,
    decode_block,
)

#: Variable type digits in the application describe (spec §4.4).
VARIABLE_TYPES: Final[dict[int, str]] = {1: "bool", 2: "int32", 4: "string", 5: "null", 9: "double"}

DESCRIBE_FLAGS: Final[dict[int, str]] = {1: "system", 2: "application", 4: "metrics"}

CLOUD_DISCONNECT_REASONS: Final[dict[int, str]] = {
    0: "none",
    1: "error",
    2: "user",
    3: "network_disconnect",
    4: "listening",
    5: "system_reset",
    6: "sleep",
    7: "unknown",
    8: "server_moved",
}
NETWORK_DISCONNECT_REASONS: Final[dict[int, str]] = {
    0: "none",
    1: "error",
    2: "user",
    3: "network_off",
    4: "listening",
    5: "sleep",
    6: "reset",
    7: "unknown",
}
#: ``System_Reset_Reason`` (device-os ``hal/inc/system_defs.h``).
RESET_REASONS: Final[dict[int, str]] = {
    0: "none",
    10: "unknown",
    20: "pin_reset",
    30: "power_management",
    40: "power_down",
    50: "power_brownout",
    60: "watchdog",
    70: "update",
    80: "update_error",
    90: "update_timeout",
    100: "factory_reset",
    110: "safe_mode",
    120: "dfu_mode",
    130: "panic",
    140: "user",
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def json_loads(data: bytes) -> Any:
    """Strict JSON (no NaN/Infinity, so the result re-serialises as standard JSON).
    Raises ``ValueError`` (``RecursionError`` is turned into one)."""
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def text(value: bytes) -> str:
    """UTF-8 with visible escapes for invalid bytes (JSON-safe)."""
    return value.decode("utf-8", "backslashreplace")


_CONTROL = (frozenset(range(32)) - {9, 10, 13}) | {127}
_CONTROL_BYTES = bytes(sorted(_CONTROL))


def data_repr(data: bytes) -> dict[str, Any]:
    """``{"data": text, "data_format": "text"}`` when ``data`` is UTF-8 without control
    characters (tab, CR, LF allowed), else ``{"data": hex, "data_format": "hex"}``."""
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"data": data.hex(), "data_format": "hex"}
    if len(data.translate(None, _CONTROL_BYTES)) == len(data):
        return {"data": s, "data_format": "text"}
    return {"data": data.hex(), "data_format": "hex"}


def path_name(msg: CoapMessage) -> str:
    """Uri-Path values after the first, joined with ``/`` (function/variable/event name)."""
    parts = [o.value for o in msg.options if o.number == URI_PATH]
    if len(parts) == 2:
        return parts[1].decode("utf-8", "backslashreplace")
    return b"/".join(parts[1:]).decode("utf-8", "backslashreplace")


def _float(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)


# --- generic responses -------------------------------------------------------------------


def decode_status(msg: CoapMessage) -> dict[str, Any]:
    """Status of any response plus its payload: a JSON object/array (for 4.xx/5.xx Particle's
    diagnostic ``{"code": .., "message": ..}``, spec §4.1) under ``diagnostic`` (errors) or
    ``json`` (others), anything else as text or hex."""
    out: dict[str, Any] = {"status": code_str(msg.code), "status_name": msg.code_name}
    payload = msg.payload
    if payload:
        if payload[:1] in (b"{", b"["):
            try:
                out["diagnostic" if msg.code >> 5 in (4, 5) else "json"] = json_loads(payload)
                return out
            except ValueError:
                pass
        out |= data_repr(payload)
    return out


# --- describe ----------------------------------------------------------------------------


def describe_flag_names(flags: int) -> list[str]:
    """``[system, application, metrics]`` subset named by a describe flag byte."""
    return [name for bit, name in DESCRIBE_FLAGS.items() if flags & bit]


def decode_describe_request(msg: CoapMessage) -> dict[str, Any]:
    """Describe flags from the first Uri-Query byte (absent: legacy combined describe)."""
    queries = msg.queries
    if not queries or not queries[0]:
        return {"flags": None, "types": ["system", "application"], "legacy": True}
    flags = queries[0][0]
    return {"flags": flags, "types": describe_flag_names(flags)}


def decode_describe(
    payload: bytes, content_format: int | None = None, flags: int | None = None
) -> dict[str, Any]:
    """Describe body: JSON object (kept under ``json``) with a summary of functions and
    variables; metrics (leading ``00``) and protobuf (Content-Format 42) kept as hex."""
    out: dict[str, Any] = {}
    if flags is not None:
        out["flags"] = flags
        out["types"] = describe_flag_names(flags)
    if not payload:
        return out | {"format": "empty"}
    if content_format == 42 or (flags == 4) or payload[0] == 0:
        fmt = "metrics" if payload[0] == 0 else "protobuf"
        return out | {"format": fmt, "length": len(payload), "hex": payload.hex()}
    try:
        obj = json_loads(payload)
    except ValueError as exc:
        return out | {"format": "json", "error": f"describe is not valid JSON: {exc}"}
    if not isinstance(obj, dict):
        return out | {"format": "json", "json": obj, "error": "describe JSON is not an object"}
    out |= {"format": "json", "json": obj}
    if "f" in obj and isinstance(obj["f"], list):
        out["functions"] = [str(f) for f in obj["f"]]
    if "v" in obj and isinstance(obj["v"], dict):
        out["variables"] = {
            str(k): VARIABLE_TYPES.get(v, f"type {v}") if isinstance(v, int) else str(v)
            for k, v in obj["v"].items()
        }
    if "p" in obj:
        out["platform_id"] = obj["p"]
    if "m" in obj and isinstance(obj["m"], list):
        out["module_count"] = len(obj["m"])
    return out


def variable_types_from_describe(decoded: dict[str, Any]) -> dict[str, int]:
    """``{name: type digit}`` from a decoded describe (empty when it has no ``v``)."""
    obj = decoded.get("json")
    if not isinstance(obj, dict) or not isinstance(obj.get("v"), dict):
        return {}
    return {str(k): v for k, v in obj["v"].items() if isinstance(v, int)}


# --- functions and variables -------------------------------------------------------------


def decode_function_call(msg: CoapMessage) -> dict[str, Any]:
    """Function name and argument (first Uri-Query, as the device reads it; all listed)."""
    queries = msg.queries
    out: dict[str, Any] = {
        "name": path_name(msg),
        "argument": text(queries[0]) if queries else "",
    }
    if len(queries) > 1:
        out["queries"] = [text(q) for q in queries]
    return out


def decode_function_return(payload: bytes) -> dict[str, Any]:
    """4-byte big-endian signed result (spec §4.5)."""
    if len(payload) != 4:
        return {"error": f"function result of {len(payload)} bytes, expected 4"}
    return {"result": int.from_bytes(payload, "big", signed=True)}


def decode_variable_request(msg: CoapMessage) -> dict[str, Any]:
    """Variable name (Uri-Path values after ``v``)."""
    return {"name": path_name(msg)}


def _typed(payload: bytes, type_code: int) -> Any:
    n = len(payload)
    if type_code == 1:
        if n != 1:
            raise ValueError(f"bool of {n} bytes, expected 1")
        return payload[0] != 0
    if type_code == 2:
        if n != 4:
            raise ValueError(f"int32 of {n} bytes, expected 4")
        return int.from_bytes(payload, "big", signed=True)
    if type_code == 9:
        if n != 8:
            raise ValueError(f"double of {n} bytes, expected 8")
        return _float(struct.unpack("<d", payload)[0])
    if type_code == 4:
        return text(payload)
    if type_code == 5:
        return None
    raise ValueError(f"unknown variable type {type_code}")


def decode_variable_value(payload: bytes, type_code: int | None = None) -> dict[str, Any]:
    """Variable value: typed when the app describe gave ``type_code`` (1 bool, 2 int32 BE,
    4 string, 9 double LE, 5 null), otherwise every plausible interpretation."""
    out: dict[str, Any] = {"length": len(payload), "hex": payload.hex()}
    if type_code is not None:
        out["type"] = VARIABLE_TYPES.get(type_code, f"type {type_code}")
        try:
            out["value"] = _typed(payload, type_code)
        except ValueError as exc:
            out["error"] = str(exc)
        return out
    guesses: dict[str, Any] = {}
    n = len(payload)
    if n == 1 and payload[0] in (0, 1):
        guesses["bool"] = payload[0] == 1
    if n == 4:
        guesses["int32"] = int.from_bytes(payload, "big", signed=True)
    if n == 8:
        value = struct.unpack("<d", payload)[0]
        if math.isfinite(value):
            guesses["double"] = value
    try:
        s = payload.decode("utf-8")
        if s.isprintable():
            guesses["string"] = s
    except UnicodeDecodeError:
        pass
    out["interpretations"] = guesses
    return out


# --- events and subscriptions ------------------------------------------------------------


def decode_event(msg: CoapMessage) -> dict[str, Any]:
    """Event name, visibility (``e`` public / ``E`` private), TTL (Max-Age, default 60),
    Content-Format and data."""
    parts: list[bytes] = []
    max_age = cf_raw = None
    for opt in msg.options:
        n = opt.number
        if n == URI_PATH:
            parts.append(opt.value)
        elif n == MAX_AGE:
            if max_age is None:
                max_age = opt.value
        elif n == CONTENT_FORMAT and cf_raw is None:
            cf_raw = opt.value
    out: dict[str, Any] = {
        "name": b"/".join(parts[1:]).decode("utf-8", "backslashreplace"),
        "visibility": "public" if parts and parts[0] == b"e" else "private",
        "ttl": int.from_bytes(max_age, "big") if max_age is not None else 60,
        "ttl_default": max_age is None,
    }
    payload = msg.payload
    if cf_raw is not None:
        cf = int.from_bytes(cf_raw, "big")
        out["content_format"] = cf
        out["content_format_name"] = CONTENT_FORMATS.get(cf)
        if cf in (42, 60):
            out["data"] = payload.hex()
            out["data_format"] = "hex"
            return out
    # data_repr(payload), written into ``out`` directly (the most common message).
    try:
        data = payload.decode("utf-8")
    except UnicodeDecodeError:
        data = None
    if data is not None and len(payload.translate(None, _CONTROL_BYTES)) == len(payload):
        out["data"] = data
        out["data_format"] = "text"
    else:
        out["data"] = payload.hex()
        out["data_format"] = "hex"
    return out


def decode_subscribe(msg: CoapMessage) -> dict[str, Any]:
    """Subscription filter, options (``u`` my devices, ``b`` binary ok, ``c`` CBOR) and the
    device-ID payload of single-device subscriptions (2014 encoder)."""
    queries = msg.queries
    out: dict[str, Any] = {
        "filter": path_name(msg),
        "my_devices": b"u" in queries,
        "binary": b"b" in queries,
        "cbor": b"c" in queries,
        "device_id": text(msg.payload) if msg.payload else None,
    }
    if queries:
        out["queries"] = [text(q) for q in queries]
    return out


# --- time, signal, key change ------------------------------------------------------------


def decode_time(payload: bytes) -> dict[str, Any]:
    """4-byte big-endian Unix seconds -> ``{"unix_time", "iso"}``."""
    if len(payload) != 4:
        return {"error": f"time of {len(payload)} bytes, expected 4"}
    t = int.from_bytes(payload, "big")
    return {"unix_time": t, "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))}


def decode_signal(msg: CoapMessage) -> dict[str, Any]:
    """Signal state from the first Uri-Query byte (non-zero starts, as on the device)."""
    queries = msg.queries
    if not queries or not queries[0]:
        return {"start": None, "error": "signal request without a start/stop query byte"}
    return {"start": queries[0][0] != 0, "query": queries[0].hex()}


def decode_key_change(msg: CoapMessage) -> dict[str, Any]:
    """First value byte of the option after Uri-Path ``k``; 1 = discard the DTLS session."""
    value: int | None = None
    seen_k = False
    for opt in msg.options:
        if seen_k:
            value = opt.value[0] if opt.value else None
            break
        if opt.number == URI_PATH and opt.value == b"k":
            seen_k = True
    return {
        "value": value,
        "discard_session": value == 1,
        "payload_length": len(msg.payload),
    }


# --- goodbye and server moved ------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 varint at ``pos`` -> (value, next pos). Raises ``ValueError``."""
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def decode_goodbye(payload: bytes) -> dict[str, Any]:
    """Goodbye varints (spec §4.8): flags, then cloud reason, reset reason, sleep duration,
    network reason for each flag bit set."""
    out: dict[str, Any] = {}
    try:
        flags, pos = _varint(payload, 0)
        out["flags"] = flags
        if flags & 0x01:
            v, pos = _varint(payload, pos)
            out |= {"cloud_reason": v, "cloud_reason_name": CLOUD_DISCONNECT_REASONS.get(v)}
        if flags & 0x02:
            v, pos = _varint(payload, pos)
            out |= {"reset_reason": v, "reset_reason_name": RESET_REASONS.get(v)}
        if flags & 0x04:
            v, pos = _varint(payload, pos)
            out["sleep_duration"] = v
        if flags & 0x08:
            v, pos = _varint(payload, pos)
            out |= {"network_reason": v, "network_reason_name": NETWORK_DISCONNECT_REASONS.get(v)}
    except ValueError as exc:
        return out | {"error": f"goodbye payload: {exc}"}
    if pos != len(payload):
        out["trailing"] = payload[pos:].hex()
    return out


def protobuf_fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """Tiny protobuf reader: ``[(field, wire type, value)]``; varints as int, length-delimited
    and fixed-size as bytes. Raises ``ValueError`` on malformed input."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    n = len(data)
    while pos < n:
        key, pos = _varint(data, pos)
        number, wtype = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        value: int | bytes
        if wtype == 0:
            value, pos = _varint(data, pos)
        elif wtype == 2:
            length, pos = _varint(data, pos)
            if pos + length > n:
                raise ValueError(f"field {number}: {length} bytes announced, {n - pos} left")
            value = data[pos : pos + length]
            pos += length
        elif wtype in (1, 5):
            size = 8 if wtype == 1 else 4
            if pos + size > n:
                raise ValueError(f"field {number}: truncated fixed{size * 8}")
            value = data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"field {number}: unsupported wire type {wtype}")
        fields.append((number, wtype, value))
    return fields


def decode_server_moved(payload: bytes) -> dict[str, Any]:
    """``ServerMovedPermanentlyRequest`` (spec §4.9): server_addr, server_port,
    server_pub_key (hex), sign (hex)."""
    try:
        fields = protobuf_fields(payload)
    except ValueError as exc:
        return {"error": f"server-moved protobuf: {exc}"}
    out: dict[str, Any] = {}
    names = {1: "server_addr", 2: "server_port", 3: "server_pub_key", 4: "sign"}
    unknown = []
    for number, wtype, value in fields:
        name = names.get(number)
        expected = 0 if number == 2 else 2
        if name is None or wtype != expected:
            unknown.append(number)
        elif number == 1:
            assert isinstance(value, bytes)
            out[name] = text(value)
        elif number == 2:
            out[name] = value
        else:
            assert isinstance(value, bytes)
            out[name] = value.hex()
    if unknown:
        out["unknown_fields"] = unknown
    if "server_addr" not in out:
        out["error"] = "server-moved request without server_addr"
    return out


# --- block-wise bodies -------------------------------------------------------------------


def block_info(msg: CoapMessage) -> dict[str, Any] | None:
    """First Block1/Block2 option as ``{"option", "num", "m", "szx", "size"}``."""
    for opt in msg.options:
        if opt.number in (BLOCK1, BLOCK2):
            name = "Block1" if opt.number == BLOCK1 else "Block2"
            return {"option": name} | decode_block(opt.value)
    return None


__all__ = [
    "CLOUD_DISCONNECT_REASONS",
    "DESCRIBE_FLAGS",
    "NETWORK_DISCONNECT_REASONS",
    "RESET_REASONS",
    "VARIABLE_TYPES",
    "block_info",
    "data_repr",
    "decode_describe",
    "decode_describe_request",
    "decode_event",
    "decode_function_call",
    "decode_function_return",
    "decode_goodbye",
    "decode_key_change",
    "decode_server_moved",
    "decode_signal",
    "decode_status",
    "decode_subscribe",
    "decode_time",
    "decode_variable_request",
    "decode_variable_value",
    "describe_flag_names",
    "path_name",
    "protobuf_fields",
    "text",
    "variable_types_from_describe",
]
