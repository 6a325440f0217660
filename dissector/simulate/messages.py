"""Pure builders of the CoAP messages Particle devices and clouds exchange (spec §4).

Each function returns a :class:`~dissector.coap.CoapMessage`; message IDs and tokens are
the caller's (see :class:`~dissector.simulate.conversation.Conversation`, which keeps the
counters). Conventions follow the firmware and the reference captures: the device sends an
event name as one Uri-Path option and a legacy 3-byte Max-Age; the cloud splits names on
``/`` and writes Max-Age in as few bytes as needed.
"""

from __future__ import annotations

import struct
from typing import Any

from dissector.coap import ACK, CON, NON, CoapMessage, CoapOption
from dissector.coap.options import CONTENT_FORMAT, MAX_AGE, URI_PATH, URI_QUERY
from dissector.simulate.errors import SimulationError

__all__ = [
    "BAD_REQUEST",
    "CHANGED",
    "CHUNK_MISSED_MAX",
    "CONTENT",
    "DEFAULT_TTL",
    "GET",
    "NOT_FOUND",
    "POST",
    "PUT",
    "ack",
    "bool_value",
    "chunk",
    "chunk_missed",
    "chunk_received",
    "describe_request",
    "double_value",
    "empty_ack",
    "event",
    "function_call",
    "function_return",
    "hello",
    "hello_payload",
    "int32_value",
    "key_change",
    "ping",
    "signal",
    "subscribe",
    "time_request",
    "time_response",
    "update_begin",
    "update_begin_payload",
    "update_done",
    "update_done_ack",
    "update_ready",
    "variable_request",
    "variable_value",
]

GET = 0x01
POST = 0x02
PUT = 0x03
CHANGED = 0x44  # 2.04
CONTENT = 0x45  # 2.05
BAD_REQUEST = 0x80  # 4.00
NOT_FOUND = 0x84  # 4.04
DEFAULT_TTL = 60
#: Most chunk indexes one ChunkMissed message carries (spec §5.1).
CHUNK_MISSED_MAX = 40


def _uint(value: int, width: int | None = None) -> bytes:
    """Big-endian unsigned integer, ``width`` bytes or as few as needed (0 → empty)."""
    if width is None:
        width = (value.bit_length() + 7) // 8
    try:
        return value.to_bytes(width, "big")
    except OverflowError:
        raise SimulationError(f"{value} does not fit an unsigned {width}-byte field") from None


def _pack(fmt: str, *values: Any) -> bytes:
    try:
        return struct.pack(fmt, *values)
    except struct.error as exc:
        raise SimulationError(f"value out of range for {fmt!r}: {exc}") from None


def _text(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _path(*segments: str | bytes) -> list[CoapOption]:
    return [CoapOption(URI_PATH, _text(s)) for s in segments]


# -- values --------------------------------------------------------------------------------


def int32_value(value: int) -> bytes:
    """An int32 variable value or function result: 4 bytes big-endian, signed."""
    return _pack(">i", value)


def double_value(value: float) -> bytes:
    """A double variable value: 8 bytes IEEE-754 little-endian (the device's order)."""
    return _pack("<d", value)


def bool_value(value: bool) -> bytes:
    """A bool variable value: one byte 0/1."""
    return b"\x01" if value else b"\x00"


# -- hello ---------------------------------------------------------------------------------


def hello_payload(
    variant: str = "B",
    *,
    product_id: int = 0xFFFF,
    product_version: int = 0xFFFF,
    flags: int = 0,
    platform_id: int = 6,
    device_id: bytes = b"",
    system_version: int = 0,
    max_message_size: int = 1152,
    max_binary_size: int = 0,
    ota_chunk_size: int = 512,
) -> bytes:
    """A device Hello payload, spec §4.3.

    ``"A"`` (2014 Core, 6 bytes), ``"B"`` (0.4.2..2.x; 8 bytes on TCP, 22 with a
    ``device_id`` as on UDP) or ``"C"`` (3.0+; 20 bytes plus the device ID on UDP).
    Raises :class:`SimulationError` for an unknown variant or out-of-range fields.
    """
    if variant == "A":
        return _pack(">HHBB", product_id, product_version, 0, flags)
    if variant == "B":
        out = _pack(">HHBBH", product_id, product_version, 0, flags, platform_id)
        if device_id:
            out += _pack(">H", len(device_id)) + device_id
        return out
    if variant == "C":
        return (
            _pack(">HHHHBB", product_id, product_version, flags, platform_id, 0, len(device_id))
            + device_id
            + _pack(">HHIH", system_version, max_message_size, max_binary_size, ota_chunk_size)
        )
    raise SimulationError(f"unknown Hello variant {variant!r} (expected 'A', 'B' or 'C')")


def hello(
    mid: int, payload: bytes = b"", token: bytes = b"", *, confirmable: bool = False
) -> CoapMessage:
    """POST ``h``: NON on TCP (CON on UDP); the device's carries a payload, the cloud's none."""
    return CoapMessage(
        type=CON if confirmable else NON,
        code=POST,
        mid=mid,
        token=token,
        options=_path("h"),
        payload=payload,
    )


# -- events --------------------------------------------------------------------------------


def event(
    mid: int,
    name: str | bytes,
    data: bytes | str = b"",
    *,
    private: bool = True,
    ttl: int = DEFAULT_TTL,
    split_name: bool = False,
    ttl_width: int | None = 3,
    always_ttl: bool = False,
    content_format: int | None = None,
    confirmable: bool = False,
) -> CoapMessage:
    """POST ``E``/``e`` + name: an event (NON on TCP).

    Device style (defaults): the whole name in one Uri-Path option, Max-Age only when the
    TTL is not 60, written in 3 bytes. Cloud style: ``split_name=True`` (one option per
    ``/`` segment), ``ttl_width=None`` (minimal bytes), ``always_ttl=True``.
    """
    raw = _text(name)
    segments = [s for s in raw.split(b"/")] if split_name else [raw]
    options = _path("E" if private else "e", *segments)
    if always_ttl or ttl != DEFAULT_TTL:
        options.append(CoapOption(MAX_AGE, _uint(ttl, ttl_width)))
    if content_format is not None:
        options.append(CoapOption(CONTENT_FORMAT, _uint(content_format)))
    return CoapMessage(
        type=CON if confirmable else NON,
        code=POST,
        mid=mid,
        options=options,
        payload=_text(data),
    )


def subscribe(
    mid: int, name_filter: str | bytes, *, my_devices: bool = False, confirmable: bool = True
) -> CoapMessage:
    """GET ``e`` + filter: a subscription (CON from Device OS 0.7; ``u`` = only my devices)."""
    options = _path("e", name_filter)
    if my_devices:
        options.append(CoapOption(URI_QUERY, b"u"))
    return CoapMessage(type=CON if confirmable else NON, code=GET, mid=mid, options=options)


# -- requests of the cloud -----------------------------------------------------------------


def function_call(
    mid: int, token: bytes, name: str | bytes, argument: str | bytes = b""
) -> CoapMessage:
    """CON POST ``f/<name>`` with the argument as one Uri-Query option (none when empty)."""
    options = _path("f", name)
    arg = _text(argument)
    if arg:
        options.append(CoapOption(URI_QUERY, arg))
    return CoapMessage(type=CON, code=POST, mid=mid, token=token, options=options)


def variable_request(mid: int, token: bytes, name: str | bytes) -> CoapMessage:
    """CON GET ``v/<name>``."""
    return CoapMessage(type=CON, code=GET, mid=mid, token=token, options=_path("v", name))


def describe_request(mid: int, token: bytes, flags: int | None = None) -> CoapMessage:
    """CON GET ``d``, with the 1-byte describe flag set as Uri-Query when given."""
    options = _path("d")
    if flags is not None:
        options.append(CoapOption(URI_QUERY, bytes((flags,))))
    return CoapMessage(type=CON, code=GET, mid=mid, token=token, options=options)


def signal(mid: int, token: bytes, on: bool) -> CoapMessage:
    """CON PUT ``s`` with one raw Uri-Query byte: 1 = start the LED signal, 0 = stop."""
    options = [*_path("s"), CoapOption(URI_QUERY, b"\x01" if on else b"\x00")]
    return CoapMessage(type=CON, code=PUT, mid=mid, token=token, options=options)


def key_change(mid: int, token: bytes, value: int | None = None) -> CoapMessage:
    """CON PUT ``k``; ``value`` adds one Uri-Query byte (1 = discard the session, UDP)."""
    options = _path("k")
    if value is not None:
        options.append(CoapOption(URI_QUERY, _uint(value, 1)))
    return CoapMessage(type=CON, code=PUT, mid=mid, token=token, options=options)


# -- legacy OTA (spec §5.1) ---------------------------------------------------------------


def update_begin_payload(
    *,
    fast: bool = False,
    chunk_size: int = 256,
    file_size: int = 0,
    destination: int = 0,
    address: int = 0,
) -> bytes:
    """The 12-byte UpdateBegin parameters: flags, chunk size, file size, destination, address."""
    return _pack(">BHIBI", 1 if fast else 0, chunk_size, file_size, destination, address)


def update_begin(mid: int, token: bytes, payload: bytes = b"") -> CoapMessage:
    """CON POST ``u``: start a legacy OTA transfer (no payload on the 2014 Core)."""
    return CoapMessage(
        type=CON, code=POST, mid=mid, token=token, options=_path("u"), payload=payload
    )


def update_ready(mid: int, token: bytes, fast: bool | None = None) -> CoapMessage:
    """Separate NON 2.04 UpdateReady with the request token; one flag byte unless ``fast`` is
    None (the 2014 Core sends none)."""
    payload = b"" if fast is None else bool_value(fast)
    return CoapMessage(type=NON, code=CHANGED, mid=mid, token=token, payload=payload)


def chunk(mid: int, token: bytes, data: bytes, crc: int, index: int | None = None) -> CoapMessage:
    """CON POST ``c``: one chunk with its CRC-32 (Uri-Query, 4 bytes BE) and, in fast OTA,
    its index (second Uri-Query, 2 bytes BE)."""
    options = [*_path("c"), CoapOption(URI_QUERY, _uint(crc, 4))]
    if index is not None:
        options.append(CoapOption(URI_QUERY, _uint(index, 2)))
    return CoapMessage(type=CON, code=POST, mid=mid, token=token, options=options, payload=data)


def chunk_received(mid: int, token: bytes, ok: bool) -> CoapMessage:
    """Separate NON ChunkReceived: 2.04 when the CRC matched, 4.00 when not."""
    return CoapMessage(type=NON, code=CHANGED if ok else BAD_REQUEST, mid=mid, token=token)


def update_done(mid: int, token: bytes) -> CoapMessage:
    """CON PUT ``u``: the cloud has sent every chunk."""
    return CoapMessage(type=CON, code=PUT, mid=mid, token=token, options=_path("u"))


def update_done_ack(mid: int, token: bytes, complete: bool, payload: bytes = b"") -> CoapMessage:
    """ACK 2.04 (every chunk received; optional validation text) or ACK 4.00 (chunks missing)."""
    return ack(mid, CHANGED if complete else BAD_REQUEST, token, payload)


def chunk_missed(mid: int, indexes: list[int], *, confirmable: bool = True) -> CoapMessage:
    """GET ``c`` listing missing chunk indexes as u16 BE (CON on the 2014 Core and
    SparkProtocol, NON from LightSSL firmware on TCP); at most :data:`CHUNK_MISSED_MAX`."""
    if not indexes or len(indexes) > CHUNK_MISSED_MAX:
        raise SimulationError(f"ChunkMissed lists 1..{CHUNK_MISSED_MAX} chunks, not {len(indexes)}")
    payload = b"".join(_uint(i, 2) for i in indexes)
    return CoapMessage(
        type=CON if confirmable else NON, code=GET, mid=mid, options=_path("c"), payload=payload
    )


# -- requests of the device ----------------------------------------------------------------


def time_request(mid: int, token: bytes) -> CoapMessage:
    """CON GET ``t`` with a 1-byte token."""
    return CoapMessage(type=CON, code=GET, mid=mid, token=token, options=_path("t"))


def ping(mid: int) -> CoapMessage:
    """CON 0.00: keep-alive ping."""
    return CoapMessage(type=CON, code=0, mid=mid)


# -- responses -----------------------------------------------------------------------------


def empty_ack(mid: int, token: bytes = b"") -> CoapMessage:
    """ACK 0.00 (spark-protocol adds a ``00`` token, an RFC 7252 violation)."""
    return CoapMessage(type=ACK, code=0, mid=mid, token=token)


def ack(mid: int, code: int, token: bytes = b"", payload: bytes = b"") -> CoapMessage:
    """A piggybacked (ACK) response with ``code`` (e.g. 0x45 = 2.05)."""
    return CoapMessage(type=ACK, code=code, mid=mid, token=token, payload=payload)


def function_return(
    mid: int, token: bytes, result: int, *, confirmable: bool = False
) -> CoapMessage:
    """Separate 2.04 response with the 4-byte big-endian result (NON on TCP)."""
    return CoapMessage(
        type=CON if confirmable else NON,
        code=CHANGED,
        mid=mid,
        token=token,
        payload=int32_value(result),
    )


def variable_value(
    mid: int, token: bytes, value: bytes, *, piggybacked: bool = True
) -> CoapMessage:
    """The 2.05 answer to a variable request: piggybacked ACK (request's ID) or separate NON."""
    return CoapMessage(
        type=ACK if piggybacked else NON, code=CONTENT, mid=mid, token=token, payload=value
    )


def time_response(mid: int, token: bytes, unix_time: int) -> CoapMessage:
    """ACK 2.05 with the 4-byte big-endian Unix time."""
    return ack(mid, CONTENT, token, _pack(">I", unix_time))
