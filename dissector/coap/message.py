"""CoAP message value types (RFC 7252 §3) and the codec's error type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from dissector.coap.options import URI_PATH, URI_QUERY, option_name, option_value_repr

CON: Final = 0
NON: Final = 1
ACK: Final = 2
RST: Final = 3

TYPE_NAMES: Final = ("CON", "NON", "ACK", "RST")

#: Method and response code names (RFC 7252 §12.1, RFC 7959 2.31/4.08).
CODE_NAMES: Final[dict[int, str]] = {
    0x00: "Empty",
    0x01: "GET",
    0x02: "POST",
    0x03: "PUT",
    0x04: "DELETE",
    0x41: "Created",
    0x42: "Deleted",
    0x43: "Valid",
    0x44: "Changed",
    0x45: "Content",
    0x5F: "Continue",
    0x80: "Bad Request",
    0x81: "Unauthorized",
    0x82: "Bad Option",
    0x83: "Forbidden",
    0x84: "Not Found",
    0x85: "Method Not Allowed",
    0x86: "Not Acceptable",
    0x88: "Request Entity Incomplete",
    0x8C: "Precondition Failed",
    0x8D: "Request Entity Too Large",
    0x8F: "Unsupported Content-Format",
    0xA0: "Internal Server Error",
    0xA1: "Not Implemented",
    0xA2: "Bad Gateway",
    0xA3: "Service Unavailable",
    0xA4: "Gateway Timeout",
    0xA5: "Proxying Not Supported",
}


class CoapError(ValueError):
    """Bytes that are not a well-formed CoAP message, or a message that cannot be encoded.

    ``offset`` is the byte offset of the problem in the input (``None`` when encoding).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


def code_str(code: int) -> str:
    """``class.detail`` form of a code byte, e.g. ``0x45`` -> ``"2.05"``."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def parse_code(text: str) -> int:
    """Inverse of :func:`code_str`: ``"2.05"`` -> ``0x45``. Raises ``ValueError``."""
    cls, _, detail = text.partition(".")
    c, d = int(cls), int(detail)
    if not (0 <= c <= 7 and 0 <= d <= 31):
        raise ValueError(f"not a CoAP code: {text!r}")
    return c << 5 | d


@dataclass(slots=True)
class CoapOption:
    """One option as it appears on the wire: absolute number and raw value."""

    number: int
    value: bytes

    @property
    def name(self) -> str:
        """Registered name (``Uri-Path``) or ``Unknown-<n>``."""
        return option_name(self.number)

    def value_repr(self) -> Any:
        """JSON-friendly value (see :func:`dissector.coap.options.option_value_repr`)."""
        return option_value_repr(self.number, self.value)


@dataclass(slots=True)
class CoapMessage:
    """A decoded CoAP message. Options are kept in wire order.

    ``violations`` lists RFC 7252 deviations the decoder tolerated (e.g. ``"empty message
    with token"``); it is derived data and does not take part in equality.
    """

    version: int = 1
    type: int = CON
    code: int = 0
    mid: int = 0
    token: bytes = b""
    options: list[CoapOption] = field(default_factory=list)
    payload: bytes = b""
    violations: list[str] = field(default_factory=list, compare=False)

    @property
    def type_name(self) -> str:
        """``CON``, ``NON``, ``ACK`` or ``RST``."""
        return TYPE_NAMES[self.type & 3]

    @property
    def code_str(self) -> str:
        """``class.detail`` with a two-digit detail, e.g. ``"0.02"``, ``"2.05"``."""
        return code_str(self.code)

    @property
    def code_class(self) -> int:
        return self.code >> 5

    @property
    def code_name(self) -> str:
        """Method or response name (``POST``, ``Content``), ``""`` when unregistered."""
        return CODE_NAMES.get(self.code, "")

    @property
    def is_empty(self) -> bool:
        """Code 0.00 (ping, empty ACK, RST)."""
        return self.code == 0

    @property
    def is_request(self) -> bool:
        """Code class 0 with a method (0.01..0.31)."""
        return 0 < self.code < 0x20

    @property
    def is_response(self) -> bool:
        """Code class 2, 4 or 5."""
        return (self.code >> 5) in (2, 4, 5)

    @property
    def uri_path(self) -> list[bytes]:
        """Raw Uri-Path values in order."""
        return [o.value for o in self.options if o.number == URI_PATH]

    @property
    def uri(self) -> str:
        """``"/" + "/".join(Uri-Path values)``; ``""`` without Uri-Path.

        Values are decoded as UTF-8 with ``errors="backslashreplace"`` (JSON-safe, lossless for
        text, visible escapes for raw bytes). No percent-encoding, no query part.
        """
        parts = [
            o.value.decode("utf-8", "backslashreplace")
            for o in self.options
            if o.number == URI_PATH
        ]
        return "/" + "/".join(parts) if parts else ""

    @property
    def queries(self) -> list[bytes]:
        """Raw Uri-Query values in order."""
        return [o.value for o in self.options if o.number == URI_QUERY]

    def option_values(self, number: int) -> list[bytes]:
        """Values of every option with ``number``, in order."""
        return [o.value for o in self.options if o.number == number]

    def first_option(self, number: int) -> bytes | None:
        """Value of the first option with ``number``, or ``None``."""
        for o in self.options:
            if o.number == number:
                return o.value
        return None
