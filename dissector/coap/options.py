"""CoAP option registry: number -> name and value format, plus JSON-friendly value rendering.

Covers every RFC 7252 option, Observe (RFC 7641), Block1/Block2/Size2 (RFC 7959),
No-Response (RFC 7967) and Particle's private OTA v3 options 2049-2077
(spec §5.3, ``communication/src/firmware_update.cpp``).

Value formats (RFC 7252 §3.2):

* ``empty``  – zero-length value; rendered as ``None`` (presence is the information).
* ``opaque`` – raw bytes; rendered as a lower-case hex string.
* ``uint``   – big-endian unsigned integer of 0..n bytes; rendered as ``int``.
* ``string`` – UTF-8 text; rendered as ``str`` decoded with ``errors="backslashreplace"``
  (Particle puts raw bytes such as a CRC or a flag byte in Uri-Query, which then show as
  ``"\\x01"`` escapes instead of failing).
* ``block``  – RFC 7959 block value; rendered as ``{"num", "m", "szx", "size"}``
  (``size`` is ``None`` for the reserved SZX 7).
"""

from __future__ import annotations

from typing import Any, Final

EMPTY: Final = "empty"
OPAQUE: Final = "opaque"
UINT: Final = "uint"
STRING: Final = "string"
BLOCK: Final = "block"

IF_MATCH: Final = 1
URI_HOST: Final = 3
ETAG: Final = 4
IF_NONE_MATCH: Final = 5
OBSERVE: Final = 6
URI_PORT: Final = 7
LOCATION_PATH: Final = 8
URI_PATH: Final = 11
CONTENT_FORMAT: Final = 12
MAX_AGE: Final = 14
URI_QUERY: Final = 15
ACCEPT: Final = 17
LOCATION_QUERY: Final = 20
BLOCK2: Final = 23
BLOCK1: Final = 27
SIZE2: Final = 28
PROXY_URI: Final = 35
PROXY_SCHEME: Final = 39
SIZE1: Final = 60
NO_RESPONSE: Final = 258
# Particle OTA protocol v3 (private, spec §5.3).
CHUNK_INDEX: Final = 2049
WINDOW_SIZE: Final = 2053
FILE_SIZE: Final = 2057
FILE_SHA256: Final = 2061
CHUNK_SIZE: Final = 2065
DISCARD_DATA: Final = 2069
CANCEL_UPDATE: Final = 2073
MODULE_FUNCTION: Final = 2077

#: number -> (name, value format)
OPTIONS: Final[dict[int, tuple[str, str]]] = {
    IF_MATCH: ("If-Match", OPAQUE),
    URI_HOST: ("Uri-Host", STRING),
    ETAG: ("ETag", OPAQUE),
    IF_NONE_MATCH: ("If-None-Match", EMPTY),
    OBSERVE: ("Observe", UINT),
    URI_PORT: ("Uri-Port", UINT),
    LOCATION_PATH: ("Location-Path", STRING),
    URI_PATH: ("Uri-Path", STRING),
    CONTENT_FORMAT: ("Content-Format", UINT),
    MAX_AGE: ("Max-Age", UINT),
    URI_QUERY: ("Uri-Query", STRING),
    ACCEPT: ("Accept", UINT),
    LOCATION_QUERY: ("Location-Query", STRING),
    BLOCK2: ("Block2", BLOCK),
    BLOCK1: ("Block1", BLOCK),
    SIZE2: ("Size2", UINT),
    PROXY_URI: ("Proxy-Uri", STRING),
    PROXY_SCHEME: ("Proxy-Scheme", STRING),
    SIZE1: ("Size1", UINT),
    NO_RESPONSE: ("No-Response", UINT),
    CHUNK_INDEX: ("Particle-Chunk-Index", UINT),
    WINDOW_SIZE: ("Particle-Window-Size", UINT),
    FILE_SIZE: ("Particle-File-Size", UINT),
    FILE_SHA256: ("Particle-File-SHA-256", OPAQUE),
    CHUNK_SIZE: ("Particle-Chunk-Size", UINT),
    DISCARD_DATA: ("Particle-Discard-Data", EMPTY),
    CANCEL_UPDATE: ("Particle-Cancel-Update", EMPTY),
    MODULE_FUNCTION: ("Particle-Module-Function", UINT),
}

#: Content-Format registry entries Particle traffic may carry.
CONTENT_FORMATS: Final[dict[int, str]] = {
    0: "text/plain; charset=utf-8",
    40: "application/link-format",
    41: "application/xml",
    42: "application/octet-stream",
    47: "application/exi",
    50: "application/json",
    60: "application/cbor",
}


def option_name(number: int) -> str:
    """Registered name of option ``number``, or ``Unknown-<n>``."""
    entry = OPTIONS.get(number)
    return entry[0] if entry is not None else f"Unknown-{number}"


def option_format(number: int) -> str:
    """Value format of option ``number`` (``opaque`` for unknown options)."""
    entry = OPTIONS.get(number)
    return entry[1] if entry is not None else OPAQUE


def decode_uint(value: bytes) -> int:
    """Big-endian unsigned integer of any length (empty -> 0, RFC 7252 §3.2)."""
    return int.from_bytes(value, "big")


def decode_block(value: bytes) -> dict[str, Any]:
    """RFC 7959 block option value -> ``{"num", "m", "szx", "size"}``."""
    v = int.from_bytes(value, "big")
    szx = v & 0x07
    return {"num": v >> 4, "m": bool(v & 0x08), "szx": szx, "size": 16 << szx if szx < 7 else None}


def option_value_repr(number: int, value: bytes) -> Any:
    """JSON-friendly rendering of an option value according to its registered format."""
    fmt = option_format(number)
    if fmt == UINT:
        return int.from_bytes(value, "big")
    if fmt == STRING:
        return value.decode("utf-8", "backslashreplace")
    if fmt == BLOCK:
        return decode_block(value)
    if fmt == EMPTY and not value:
        return None
    return value.hex()
