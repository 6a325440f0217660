"""Firmware-update payload decoders: legacy chunked OTA (spec §5.1) and OTA v3 (§5.3).

Pure functions returning JSON-friendly dicts; problems are reported as ``"error"``.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

from dissector.coap.message import CoapMessage, code_str
from dissector.coap.options import (
    CANCEL_UPDATE,
    CHUNK_INDEX,
    CHUNK_SIZE,
    DISCARD_DATA,
    FILE_SHA256,
    FILE_SIZE,
    MODULE_FUNCTION,
    WINDOW_SIZE,
)
from dissector.particle.payloads import data_repr, decode_status

#: UpdateBegin destination byte (``communication/inc/file_transfer.h``).
DESTINATIONS: Final[dict[int, str]] = {
    0: "firmware",
    1: "system_storage",
    128: "application_storage",
}


def decode_update_begin(payload: bytes) -> dict[str, Any]:
    """UpdateBegin parameters: ``flags u8 | chunk_size u16 | file_size u32 | destination u8 |
    address u32`` (all BE), parsed when the payload has at least those 12 bytes (as
    ``ChunkedTransfer::handle_update_begin`` does; bytes after them are ignored by the device
    and kept as ``trailing``); none = legacy. An 8-byte payload is the 2014 SaveBegin form
    ``address u32 | size u32``."""
    n = len(payload)
    if n == 0:
        return {"legacy": True}
    if n > 12:
        return decode_update_begin(payload[:12]) | {"trailing": payload[12:].hex()}
    if n == 12:
        dest = payload[7]
        return {
            "legacy": False,
            "flags": payload[0],
            "fast_ota": bool(payload[0] & 1),
            "chunk_size": int.from_bytes(payload[1:3], "big"),
            "file_size": int.from_bytes(payload[3:7], "big"),
            "destination": dest,
            "destination_name": DESTINATIONS.get(dest),
            "address": int.from_bytes(payload[8:12], "big"),
        }
    if n == 8:
        return {
            "legacy": True,
            "address": int.from_bytes(payload[0:4], "big"),
            "file_size": int.from_bytes(payload[4:8], "big"),
        }
    return {
        "hex": payload.hex(),
        "error": f"UpdateBegin payload of {n} bytes, expected 0, 8 or at least 12",
    }


def decode_update_ready(msg: CoapMessage) -> dict[str, Any]:
    """UpdateReady: one flag byte, > 0 = fast OTA (absent on the 2014 Core). A coded refusal
    (ACK 5.03) is reported with its status."""
    if msg.code >> 5 != 2:
        return decode_status(msg) | {"ready": False}
    p = msg.payload
    if not p:
        return {"ready": True, "fast_ota": False, "flag": None}
    out: dict[str, Any] = {"ready": True, "fast_ota": p[0] > 0, "flag": p[0]}
    if len(p) > 1:
        out["error"] = f"UpdateReady payload of {len(p)} bytes, expected 1"
    return out


def decode_chunk(msg: CoapMessage) -> dict[str, Any]:
    """Chunk: CRC-32 (first Uri-Query, 4 bytes BE), index (second Uri-Query, 2 bytes BE, fast
    OTA only), data length and whether ``zlib.crc32(payload)`` matches the announced CRC."""
    queries = msg.queries
    data = msg.payload
    computed = zlib.crc32(data)
    out: dict[str, Any] = {"length": len(data), "crc_computed": computed}
    if len(queries) > 1:
        if len(queries[1]) == 2:
            out["index"] = int.from_bytes(queries[1], "big")
        else:
            out["error"] = f"chunk index of {len(queries[1])} bytes, expected 2"
    out["fast_ota"] = len(queries) > 1
    if not queries or len(queries[0]) != 4:
        got = len(queries[0]) if queries else 0
        out["crc_ok"] = None
        out["error"] = f"chunk CRC query of {got} bytes, expected 4"
        return out
    announced = int.from_bytes(queries[0], "big")
    out["crc"] = announced
    out["crc_ok"] = announced == computed
    return out


def decode_chunk_received(msg: CoapMessage) -> dict[str, Any]:
    """ChunkReceived: 2.04 = CRC ok, 4.00 = bad (re-send)."""
    return {"ok": msg.code == 0x44, "status": code_str(msg.code)}


def decode_chunk_missed(payload: bytes) -> dict[str, Any]:
    """ChunkMissed: list of 16-bit BE chunk indexes."""
    n = len(payload)
    chunks = [payload[i] << 8 | payload[i + 1] for i in range(0, n - 1, 2)]
    out: dict[str, Any] = {"chunks": chunks}
    if n == 0 or n % 2:
        out["error"] = f"missed-chunk list of {n} bytes (expected a non-zero even length)"
    return out


def decode_update_done_ack(msg: CoapMessage) -> dict[str, Any]:
    """UpdateDone answer: 2.04 complete (optional validation text), 4.00 chunks missing."""
    out: dict[str, Any] = {"complete": msg.code == 0x44, "status": code_str(msg.code)}
    if msg.payload:
        out |= data_repr(msg.payload)
    return out


def decode_ota_options(msg: CoapMessage) -> dict[str, Any]:
    """OTA v3 options present in ``msg`` (index, window, sizes, SHA-256, flags)."""
    out: dict[str, Any] = {}
    for opt in msg.options:
        n = opt.number
        if n < CHUNK_INDEX:
            continue
        v = opt.value
        if n == CHUNK_INDEX:
            out["chunk_index"] = int.from_bytes(v, "big")
        elif n == WINDOW_SIZE:
            out["window_size"] = int.from_bytes(v, "big")
        elif n == FILE_SIZE:
            out["file_size"] = int.from_bytes(v, "big")
        elif n == FILE_SHA256:
            out["file_sha256"] = v.hex()
        elif n == CHUNK_SIZE:
            out["chunk_size"] = int.from_bytes(v, "big")
        elif n == DISCARD_DATA:
            out["discard_data"] = True
        elif n == CANCEL_UPDATE:
            out["cancel_update"] = True
        elif n == MODULE_FUNCTION:
            out["module_function"] = int.from_bytes(v, "big")
    return out


def decode_update_start(msg: CoapMessage) -> dict[str, Any]:
    """OTA v3 UpdateStart: file size and chunk size are required, SHA-256 is 32 bytes."""
    out = decode_ota_options(msg)
    missing = [k for k in ("file_size", "chunk_size") if k not in out]
    if missing:
        out["error"] = "UpdateStart without " + " and ".join(missing)
    elif "file_sha256" in out and len(out["file_sha256"]) != 64:
        out["error"] = "UpdateStart SHA-256 option is not 32 bytes"
    out["resumable"] = "file_sha256" in out
    return out


def decode_update_start_return(msg: CoapMessage) -> dict[str, Any]:
    """OTA v3 start answer: 2.01 with window size (chunks) and bytes already stored."""
    if msg.code >> 5 != 2:
        return decode_status(msg)
    out = decode_ota_options(msg) | {"status": code_str(msg.code)}
    if "file_size" in out:
        out["resume_offset"] = out.pop("file_size")
    return out


def decode_update_chunk(msg: CoapMessage) -> dict[str, Any]:
    """OTA v3 chunk: 1-based index (option 2049) and data length."""
    out = decode_ota_options(msg)
    out["length"] = len(msg.payload)
    if "chunk_index" not in out:
        out["error"] = "UpdateChunk without a chunk index option"
    return out


def decode_update_ack(msg: CoapMessage) -> dict[str, Any]:
    """OTA v3 ack: option 2049 = chunks received contiguously; payload = little-endian uint32
    bitmap words, bit ``i`` = chunk ``contiguous + 1 + i`` received."""
    opts = decode_ota_options(msg)
    out: dict[str, Any] = {"contiguous": opts.get("chunk_index")}
    payload = msg.payload
    if out["contiguous"] is None:
        out["error"] = "UpdateAck without a chunk index option"
        return out
    if len(payload) % 4:
        out["error"] = f"UpdateAck bitmap of {len(payload)} bytes is not whole uint32 words"
        return out
    base = out["contiguous"] + 1
    received = []
    for w in range(len(payload) // 4):
        word = int.from_bytes(payload[4 * w : 4 * w + 4], "little")
        bit = 0
        while word:
            if word & 1:
                received.append(base + 32 * w + bit)
            word >>= 1
            bit += 1
    out["received"] = received
    return out


def decode_update_finish(msg: CoapMessage) -> dict[str, Any]:
    """OTA v3 finish: cancel and discard flags."""
    opts = decode_ota_options(msg)
    return {
        "cancel_update": opts.get("cancel_update", False),
        "discard_data": opts.get("discard_data", False),
    }


def decode_update_finish_return(msg: CoapMessage) -> dict[str, Any]:
    """OTA v3 finish answer: 2.04 with JSON statistics, or an error code + diagnostic."""
    out = decode_status(msg)
    if "json" in out:
        out["stats"] = out.pop("json")
    return out
