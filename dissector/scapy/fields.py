"""Scapy fields the Particle layers need and Scapy lacks.

* :class:`CoapCodeField` – the CoAP code byte, shown ``2.05 Content``; set with ``"POST"``,
  ``"2.05"``, ``"2.05 Content"``, ``"Content"`` or an int.
* :class:`CoapOptionNumberField` / :class:`CoapOptionValueField` – one option's number
  (shown by name, e.g. ``Uri-Path``) and value (shown according to the option's format).
* :class:`VarIntField` – an unsigned LEB128 varint (Goodbye payload), with named values or
  named flag bits.
* :class:`DeviceIdField` – 12 raw bytes shown as 24 hex characters; also set from hex text.
"""

from __future__ import annotations

from typing import Any

from scapy.fields import ByteField, Field, StrField, XStrFixedLenField
from scapy.packet import Packet

from dissector.coap.message import CODE_NAMES, code_str, parse_code
from dissector.coap.options import (
    BLOCK,
    EMPTY,
    OPTIONS,
    STRING,
    UINT,
    decode_block,
    option_format,
    option_name,
)

_CODE_BY_NAME = {name.lower(): code for code, name in CODE_NAMES.items()}
_OPTION_BY_NAME = {name.lower(): number for number, (name, _) in OPTIONS.items()}


def code_from_text(text: str) -> int:
    """``"POST"``, ``"2.05"``, ``"2.05 Content"`` or ``"Content"`` -> code byte.

    Raises ``ValueError`` for anything else.
    """
    words = text.strip().split(None, 1)
    if not words:
        raise ValueError("empty CoAP code")
    first = words[0]
    if "." in first:
        code = parse_code(first)
        if len(words) == 2 and CODE_NAMES.get(code, "").lower() != words[1].lower():
            raise ValueError(f"CoAP code {first} is not {words[1]!r}")
        return code
    code_by_name = _CODE_BY_NAME.get(text.strip().lower())
    if code_by_name is None:
        raise ValueError(f"unknown CoAP code {text!r}")
    return code_by_name


def option_number_from(value: int | str) -> int:
    """An option number from an int, a registered name (``"Uri-Path"``) or ``Unknown-<n>``."""
    if isinstance(value, int):
        return value
    key = value.strip().lower()
    if key in _OPTION_BY_NAME:
        return _OPTION_BY_NAME[key]
    if key.startswith("unknown-") and key[8:].isdigit():
        return int(key[8:])
    if key.isdigit():
        return int(key)
    raise ValueError(f"unknown CoAP option {value!r}")


def uint_bytes(value: int) -> bytes:
    """Shortest big-endian encoding of a non-negative int (0 -> empty, RFC 7252 §3.2)."""
    if value < 0:
        raise ValueError(f"option uint value {value} is negative")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class CoapCodeField(ByteField):
    """The code byte: shown ``c.dd Name`` (``0.02 POST``, ``2.05 Content``)."""

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        if isinstance(x, str):
            return code_from_text(x)
        return super().any2i(pkt, x)

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if x is None:
            return repr(x)
        name = CODE_NAMES.get(x, "")
        return f"{code_str(x)} {name}".rstrip()


class CoapOptionNumberField(Field[int, int]):
    """An option's absolute number, shown by its registered name.

    It has no wire form of its own: the owning packet encodes number deltas (see
    :class:`~dissector.scapy.coap.CoAPOption`).
    """

    def __init__(self, name: str, default: int) -> None:
        super().__init__(name, default, fmt="I")

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        if isinstance(x, str):
            return option_number_from(x)
        return x

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if x is None:
            return repr(x)
        return option_name(x) if x in OPTIONS else f"Unknown-{x}"

    def addfield(self, pkt: Packet, s: bytes, val: int | None) -> bytes:
        return s

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int]:
        return s, 0


class CoapOptionValueField(StrField):
    """An option value (raw bytes), shown by the option's format: text, uint, block, hex.

    Set from bytes, ``str`` (UTF-8) or ``int`` (shortest big-endian uint).
    """

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        if isinstance(x, bool):
            x = int(x)
        if isinstance(x, int):
            return uint_bytes(x)
        if isinstance(x, str):
            return x.encode("utf-8")
        if isinstance(x, bytearray | memoryview):
            return bytes(x)
        return x

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if not isinstance(x, bytes):
            return repr(x)
        number = pkt.getfieldval("number") if pkt is not None else None
        fmt = option_format(number) if isinstance(number, int) else "opaque"
        if fmt == STRING:
            return repr(x.decode("utf-8", "backslashreplace"))
        if fmt == UINT:
            return f"{int.from_bytes(x, 'big')} (0x{x.hex()})" if x else "0 (empty)"
        if fmt == BLOCK:
            b = decode_block(x)
            size = b["size"] if b["size"] is not None else "reserved"
            return f"num={b['num']} more={b['m']} size={size} (0x{x.hex()})"
        if fmt == EMPTY and not x:
            return "(empty)"
        return x.hex() if x else "(empty)"


class VarIntField(Field[int, int]):
    """Unsigned LEB128 varint (7 bits per byte, least significant group first).

    ``names`` labels values; ``flags`` labels bits (shown ``a+b``). Dissecting a truncated
    or over-long varint raises ``ValueError``.
    """

    __slots__ = ["flags", "names"]

    def __init__(
        self,
        name: str,
        default: int,
        names: dict[int, str] | None = None,
        flags: dict[int, str] | None = None,
    ) -> None:
        super().__init__(name, default, fmt="Q")
        self.names = names or {}
        self.flags = flags or {}

    def addfield(self, pkt: Packet, s: bytes, val: int | None) -> bytes:
        value = 0 if val is None else int(val)
        if value < 0:
            raise ValueError(f"varint {self.name} cannot be negative ({value})")
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                return s + bytes(out)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int]:
        result = 0
        shift = 0
        for pos, byte in enumerate(s):
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return s[pos + 1 :], result
            shift += 7
            if shift > 63:
                raise ValueError(f"varint {self.name} longer than 10 bytes")
        raise ValueError(f"truncated varint {self.name}")

    def i2len(self, pkt: Packet, x: Any) -> int:
        return len(self.addfield(pkt, b"", x))

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if x is None:
            return repr(x)
        if self.flags:
            names = [self.flags.get(bit, f"0x{bit:x}") for bit in _bits(x)]
            return "+".join(names) if names else "0"
        name = self.names.get(x)
        return f"{name} ({x})" if name is not None else str(x)


def _bits(value: int) -> list[int]:
    out = []
    bit = 1
    while bit <= value:
        if value & bit:
            out.append(bit)
        bit <<= 1
    return out


class DeviceIdField(XStrFixedLenField):
    """A 12-byte device ID, shown as 24 hex characters; also accepts that hex text."""

    def __init__(self, name: str, default: bytes | None = None) -> None:
        super().__init__(name, default if default is not None else bytes(12), length=12)

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        if isinstance(x, str):
            return bytes.fromhex(x)
        return super().any2i(pkt, x)
