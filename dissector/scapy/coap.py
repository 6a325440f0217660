"""The project's own Scapy CoAP layer (RFC 7252, as Particle uses it) - not scapy.contrib.coap.

:class:`CoAP` is validated like :func:`dissector.coap.decode`: dissecting malformed bytes
raises :class:`~dissector.coap.CoapError` (the same messages and byte offsets), and the
messages the codec tolerates (an empty ACK with a token, ...) dissect as sent. Options are
:class:`CoAPOption` packets holding the absolute option number (shown by name, Particle's OTA
options 2049-2077 included) and the raw value (shown by the option's format); the delta and
length nibbles are derived on build, in number order like :func:`dissector.coap.encode`.
Every valid message has exactly one encoding, so dissect and build round-trip byte for byte.

The payload becomes a Particle payload layer when the request itself says what it is (Hello,
UpdateBegin, ChunkMissed, Goodbye); a response needs its request to be typed (time, function
return), which :func:`attach_payload_layer` does given the kind the exchange tracker found.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from scapy.config import conf
from scapy.fields import BitEnumField, BitField, PacketListField, ShortField, XStrLenField
from scapy.packet import Packet, Raw

from dissector.coap import CoapError, CoapMessage, CoapOption, decode, encode
from dissector.coap.message import CODE_NAMES, TYPE_NAMES, code_str
from dissector.coap.options import URI_PATH, URI_QUERY, option_name
from dissector.model import Direction
from dissector.particle.kinds import classify
from dissector.scapy.fields import (
    CoapCodeField,
    CoapOptionNumberField,
    CoapOptionValueField,
    option_number_from,
)
from dissector.scapy.payloads import payload_layer_class

__all__ = ["CoAP", "CoAPOption", "attach_payload_layer", "coap_layer"]

_MAX_EXT = 65535 + 269
PAYLOAD_MARKER = 0xFF


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    v = value - 269
    return 14, bytes((v >> 8, v & 0xFF))


def encode_option(prev: int, number: int, value: bytes) -> bytes:
    """One option's wire form after an option numbered ``prev``. Raises :class:`CoapError`."""
    delta = number - prev
    length = len(value)
    if number < 0 or delta < 0:
        raise CoapError(f"negative option number {number}")
    if delta > _MAX_EXT:
        raise CoapError(f"option delta {delta} too large to encode")
    if length > _MAX_EXT:
        raise CoapError(f"option value of {length} bytes too long to encode")
    dn, dx = _ext(delta)
    ln, lx = _ext(length)
    return bytes((dn << 4 | ln,)) + dx + lx + value


def decode_option(data: bytes, pos: int, prev: int, base: int = 0) -> tuple[int, bytes, int]:
    """Parse the option at ``data[pos]`` (not the payload marker) following option ``prev``.

    Returns ``(number, value, next_pos)``. ``base`` is added to the offsets in errors
    (the position of ``data`` in the whole message). Raises :class:`CoapError`.
    """
    n = len(data)
    start = pos
    byte = data[pos]
    pos += 1
    delta = byte >> 4
    length = byte & 0x0F
    if delta > 12:
        if delta == 13:
            if pos >= n:
                raise CoapError("truncated 1-byte extended option delta", base + pos)
            delta = data[pos] + 13
            pos += 1
        elif delta == 14:
            if pos + 2 > n:
                raise CoapError("truncated 2-byte extended option delta", base + pos)
            delta = (data[pos] << 8 | data[pos + 1]) + 269
            pos += 2
        else:
            raise CoapError(
                "option delta nibble 15 is reserved (not a payload marker)", base + start
            )
    if length > 12:
        if length == 13:
            if pos >= n:
                raise CoapError("truncated 1-byte extended option length", base + pos)
            length = data[pos] + 13
            pos += 1
        elif length == 14:
            if pos + 2 > n:
                raise CoapError("truncated 2-byte extended option length", base + pos)
            length = (data[pos] << 8 | data[pos + 1]) + 269
            pos += 2
        else:
            raise CoapError("option length nibble 15 is reserved", base + start)
    end = pos + length
    if end > n:
        raise CoapError(
            f"option value of {length} bytes truncated: only {n - pos} bytes left", base + pos
        )
    return prev + delta, data[pos:end], end


class CoAPOption(Packet):
    """One CoAP option: ``number`` (by name, e.g. ``Uri-Path``) and raw ``value``.

    ``value`` may be given as bytes, text (UTF-8) or an int (shortest big-endian uint).
    On its own an option encodes its number as the delta from 0; inside :class:`CoAP` the
    delta is taken from the previous option.
    """

    name = "CoAP Option"
    fields_desc: ClassVar[list[Any]] = [
        CoapOptionNumberField("number", URI_PATH),
        CoapOptionValueField("value", b""),
    ]

    def do_dissect(self, s: bytes) -> bytes:
        if not s or s[0] == PAYLOAD_MARKER:
            raise CoapError("no option here (empty input or payload marker)", 0)
        number, value, end = decode_option(s, 0, 0)
        self.fields["number"] = number
        self.fields["value"] = value
        self.raw_packet_cache = s[:end]
        self.raw_packet_cache_fields = {}
        self.explicit = 1
        return s[end:]

    def self_build(self, *args: Any, **kwargs: Any) -> bytes:
        if self.raw_packet_cache is not None:
            return self.raw_packet_cache
        return encode_option(0, int(self.number), bytes(self.value))

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return b"", s

    def mysummary(self) -> str:
        return f"{option_name(self.number)}={self.get_field('value').i2repr(self, self.value)}"


def _to_option(item: Any) -> Packet:
    if isinstance(item, CoAPOption):
        return item
    if isinstance(item, CoapOption):
        return CoAPOption(number=item.number, value=item.value)
    if isinstance(item, tuple | list) and len(item) == 2:
        return CoAPOption(number=item[0], value=item[1])
    raise TypeError(f"not a CoAP option: {item!r} (use CoAPOption or (name, value))")


class CoAPOptionsField(PacketListField):
    """The option list: :class:`CoAPOption` packets, delta-encoded in number order.

    Also accepts ``(name or number, value)`` tuples and :class:`dissector.coap.CoapOption`.
    Dissection stops at the payload marker (which the :class:`CoAP` layer consumes).
    """

    def __init__(self, name: str, default: list[Any] | None) -> None:
        super().__init__(name, default, CoAPOption)

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        if x is None:
            return None
        if not isinstance(x, list):
            x = [x]
        return [_to_option(item) for item in x]

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        tkl = pkt.getfieldval("token_length") or 0
        base = 4 + tkl
        options: list[Packet] = []
        pos = 0
        number = 0
        n = len(s)
        while pos < n and s[pos] != PAYLOAD_MARKER:
            number, value, pos = decode_option(s, pos, number, base)
            opt = CoAPOption(number=number, value=value)
            opt.parent = pkt
            options.append(opt)
        return s[pos:], options

    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        if not val:
            return s
        out = bytearray(s)
        prev = 0
        for opt in sorted(val, key=lambda o: int(o.number)):
            number = int(opt.number)
            out += encode_option(prev, number, bytes(opt.value))
            prev = number
        return bytes(out)


class CoAP(Packet):
    """A CoAP message (RFC 7252 §3), validated like :func:`dissector.coap.decode`.

    Fields: ``version`` (always 1), ``type`` (CON/NON/ACK/RST), ``token_length`` (derived
    from ``token`` when left None), ``code`` (``"POST"``, ``"2.05"``...), ``message_id``,
    ``token``, ``options``. The payload (after the 0xFF marker, written only when there is
    one) is the Scapy payload: a Particle payload layer or Raw.
    """

    name = "CoAP"
    fields_desc: ClassVar[list[Any]] = [
        BitField("version", 1, 2),
        BitEnumField("type", 0, 2, dict(enumerate(TYPE_NAMES))),
        BitField("token_length", None, 4),
        CoapCodeField("code", 0),
        ShortField("message_id", 0),
        XStrLenField("token", b"", length_from=lambda pkt: pkt.token_length),
        CoAPOptionsField("options", []),
    ]

    def pre_dissect(self, s: bytes) -> bytes:
        n = len(s)
        if n < 4:
            raise CoapError(f"message of {n} bytes is shorter than the 4-byte CoAP header", 0)
        if s[0] >> 6 != 1:
            raise CoapError(f"CoAP version {s[0] >> 6}, expected 1", 0)
        tkl = s[0] & 0x0F
        if tkl > 8:
            raise CoapError(f"reserved token length {tkl}", 0)
        if 4 + tkl > n:
            raise CoapError(f"token of {tkl} bytes truncated: only {n - 4} bytes left", 4)
        return s

    def post_dissect(self, s: bytes) -> bytes:
        # The layer always re-encodes (canonical, so identical for valid input): the
        # payload marker is written by post_build, which a raw cache would bypass.
        self.raw_packet_cache = None
        self.raw_packet_cache_fields = None
        if s[:1] == bytes((PAYLOAD_MARKER,)):
            # A marker with nothing after it (Device OS sends one for an empty string
            # value) is read as an empty payload, as the session cores read it; building
            # the layer again writes no marker.
            return s[1:]
        return s

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.token_length is None:
            tkl = len(self.token or b"")
            if tkl > 8:
                raise CoapError(f"token of {tkl} bytes is longer than 8")
            pkt = bytes((pkt[0] & 0xF0 | tkl,)) + pkt[1:]
        if pay:
            return pkt + bytes((PAYLOAD_MARKER,)) + pay
        return pkt

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        try:
            kind = classify(self._header_message(), Direction.DEVICE_TO_CLOUD)
        except (TypeError, ValueError):
            return Raw
        cls = payload_layer_class(kind, int(self.code or 0), payload)
        return cls if cls is not None else conf.raw_layer

    def _header_message(self) -> CoapMessage:
        return CoapMessage(
            1,
            int(self.type or 0),
            int(self.code or 0),
            int(self.message_id or 0),
            bytes(self.token or b""),
            [CoapOption(int(o.number), bytes(o.value)) for o in self.options or []],
        )

    def to_message(self) -> CoapMessage:
        """This layer as a :class:`dissector.coap.CoapMessage` (payload = the payload bytes)."""
        msg = self._header_message()
        msg.version = int(self.version)
        msg.payload = bytes(self.payload)
        return msg

    @property
    def uri(self) -> str:
        """``/`` + the Uri-Path values joined with ``/`` (``""`` without Uri-Path)."""
        parts = [
            bytes(o.value).decode("utf-8", "backslashreplace")
            for o in self.options or []
            if o.number == URI_PATH
        ]
        return "/" + "/".join(parts) if parts else ""

    def option_values(self, number: int | str) -> list[bytes]:
        """Raw values of every option with ``number`` (or name), in order."""
        wanted = option_number_from(number)
        return [bytes(o.value) for o in self.options or [] if o.number == wanted]

    def mysummary(self) -> str:
        mtype = TYPE_NAMES[int(self.type or 0) & 3]
        code = int(self.code or 0)
        name = CODE_NAMES.get(code, "")
        out = f"CoAP {mtype} {code_str(code)}{' ' + name if name else ''} mid={self.message_id}"
        if self.token:
            out += f" token={bytes(self.token).hex()}"
        options = self.options or []
        paths = [_printable(bytes(o.value)) for o in options if o.number == URI_PATH]
        if paths:
            out += " /" + "/".join(paths)
        queries = [_printable(bytes(o.value)) for o in options if o.number == URI_QUERY]
        if queries:
            out += " ?" + "&".join(queries)
        return out

    def violations(self) -> list[str]:
        """RFC 7252 deviations this message shows (as the codec lists them)."""
        return decode(bytes(self)).violations


def _printable(value: bytes) -> str:
    """UTF-8 text with control and undecodable characters escaped (for one-line summaries)."""
    text = value.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def coap_layer(data: bytes | CoapMessage, kind: str | None = None) -> CoAP:
    """Dissect a CoAP message (bytes or a :class:`~dissector.coap.CoapMessage`) into a layer.

    ``kind`` (a Particle kind such as ``"GetTimeReturn"``) types a payload whose meaning
    depends on the request. Raises :class:`~dissector.coap.CoapError` for malformed bytes.
    """
    raw = encode(data) if isinstance(data, CoapMessage) else bytes(data)
    layer = CoAP(raw)
    if kind is not None:
        attach_payload_layer(layer, kind)
    return layer


def attach_payload_layer(layer: CoAP, kind: str) -> CoAP:
    """Re-dissect ``layer``'s payload as the Particle layer of ``kind`` when the payload
    fits that layer exactly (it must build back to the same bytes); else leave it alone."""
    payload = bytes(layer.payload)
    if not payload:
        return layer
    cls = payload_layer_class(kind, int(layer.code or 0), payload)
    if cls is None or isinstance(layer.payload, cls):
        return layer
    try:
        typed = cls(payload)
    except (ValueError, TypeError, IndexError, struct.error):
        return layer
    if bytes(typed) != payload:
        return layer
    layer.remove_payload()
    layer.add_payload(typed)
    return layer
