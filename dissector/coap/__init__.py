"""A strict RFC 7252 CoAP codec (no Scapy), as Particle devices and clouds use it.

``decode(bytes) -> CoapMessage`` raises only :class:`CoapError`; tolerated RFC deviations
are listed in ``CoapMessage.violations``. ``encode(CoapMessage) -> bytes`` is its inverse
(options written in number order).
"""

from __future__ import annotations

from dissector.coap.codec import decode, encode
from dissector.coap.message import (
    ACK,
    CODE_NAMES,
    CON,
    NON,
    RST,
    TYPE_NAMES,
    CoapError,
    CoapMessage,
    CoapOption,
    code_str,
    parse_code,
)
from dissector.coap.options import (
    CONTENT_FORMATS,
    OPTIONS,
    option_format,
    option_name,
    option_value_repr,
)

__all__ = [
    "ACK",
    "CODE_NAMES",
    "CON",
    "CONTENT_FORMATS",
    "NON",
    "OPTIONS",
    "RST",
    "TYPE_NAMES",
    "CoapError",
    "CoapMessage",
    "CoapOption",
    "code_str",
    "decode",
    "encode",
    "option_format",
    "option_name",
    "option_value_repr",
    "parse_code",
]
