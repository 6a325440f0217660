"""Strict RFC 7252 wire codec: :func:`decode` bytes -> :class:`CoapMessage`, :func:`encode` back.

Hard errors (:class:`CoapError`, with the byte offset): fewer than 4 bytes, version != 1,
token length 9-15, truncated token, option delta/length nibble 15 other than the 0xFF payload
marker, truncated extended delta/length or value, payload marker with no payload after it.

Tolerated deviations (decoded as sent, described in ``CoapMessage.violations``): empty
messages (code 0.00) carrying a token, options or payload, or sent as NON; RST with a code;
ACK carrying a request method; reserved code classes 1, 3, 6, 7; option numbers above 65535.
Real clouds produce some of these (spark-protocol acknowledges with ``61 00 mid mid 00``).

``decode(data, lenient=True)`` also accepts a payload marker with nothing after it (an
empty payload, violation ``"payload marker followed by no payload"``): Device OS writes the
marker unconditionally for a string variable value and for an event whose data is an empty
string (``Messages::content``/``variable_value``, ``Messages::event`` in
``communication/src/messages.cpp``), so real devices send it for every empty String.
"""

from __future__ import annotations

from dissector.coap.message import CoapError, CoapMessage, CoapOption

_MAX_EXT = 65535 + 269  # largest delta/length expressible with the 14 extension


#: Violation text of a payload marker with no payload after it (accepted when ``lenient``).
BARE_PAYLOAD_MARKER = "payload marker followed by no payload"


def decode(data: bytes | bytearray | memoryview, *, lenient: bool = False) -> CoapMessage:
    """Decode one CoAP message. Raises :class:`CoapError` for malformed input.

    ``lenient`` accepts a trailing payload marker with no payload (as Device OS sends an empty
    string value) as an empty payload, listed in ``violations``; strict RFC 7252 rejects it.
    """
    if data.__class__ is not bytes:
        data = bytes(data)
    n = len(data)
    if n < 4:
        raise CoapError(f"message of {n} bytes is shorter than the 4-byte CoAP header", 0)
    b0 = data[0]
    if b0 >> 6 != 1:
        raise CoapError(f"CoAP version {b0 >> 6}, expected 1", 0)
    tkl = b0 & 0x0F
    if tkl > 8:
        raise CoapError(f"reserved token length {tkl}", 0)
    pos = 4 + tkl
    if pos > n:
        raise CoapError(f"token of {tkl} bytes truncated: only {n - 4} bytes left", 4)
    token = data[4:pos]
    options: list[CoapOption] = []
    payload = b""
    number = 0
    bare_marker = False
    while pos < n:
        byte = data[pos]
        if byte == 0xFF:
            if pos + 1 == n:
                if not lenient:
                    raise CoapError(BARE_PAYLOAD_MARKER, pos)
                bare_marker = True
                break
            payload = data[pos + 1 :]
            break
        start = pos
        pos += 1
        length = byte & 0x0F
        if byte < 0xD0 and length < 13:
            # Common case: delta and length in the header byte itself.
            number += byte >> 4
        else:
            delta = byte >> 4
            if delta > 12:
                if delta == 13:
                    if pos >= n:
                        raise CoapError("truncated 1-byte extended option delta", pos)
                    delta = data[pos] + 13
                    pos += 1
                elif delta == 14:
                    if pos + 2 > n:
                        raise CoapError("truncated 2-byte extended option delta", pos)
                    delta = (data[pos] << 8 | data[pos + 1]) + 269
                    pos += 2
                else:
                    raise CoapError(
                        "option delta nibble 15 is reserved (not a payload marker)", start
                    )
            if length > 12:
                if length == 13:
                    if pos >= n:
                        raise CoapError("truncated 1-byte extended option length", pos)
                    length = data[pos] + 13
                    pos += 1
                elif length == 14:
                    if pos + 2 > n:
                        raise CoapError("truncated 2-byte extended option length", pos)
                    length = (data[pos] << 8 | data[pos + 1]) + 269
                    pos += 2
                else:
                    raise CoapError("option length nibble 15 is reserved", start)
            number += delta
        end = pos + length
        if end > n:
            raise CoapError(
                f"option value of {length} bytes truncated: only {n - pos} bytes left", pos
            )
        options.append(CoapOption(number, data[pos:end]))
        pos = end
    mtype = (b0 >> 4) & 3
    code = data[1]
    violations: list[str] = []
    if (
        code == 0
        or mtype == 3
        or (code >> 5) not in (0, 2, 4, 5)
        or number > 65535
        or (options and options[0].number == 0)
    ):
        _check(mtype, code, tkl, options, payload, number, violations)
    elif mtype == 2 and code < 0x20:
        violations.append(f"ACK carrying request method 0.{code:02d}")
    if bare_marker:
        violations.append(BARE_PAYLOAD_MARKER)
    return CoapMessage(
        1, mtype, code, (data[2] << 8) | data[3], token, options, payload, violations
    )


def _check(
    mtype: int,
    code: int,
    tkl: int,
    options: list[CoapOption],
    payload: bytes,
    number: int,
    out: list[str],
) -> None:
    """Slow path: describe the tolerated RFC deviations of an unusual message."""
    if code == 0:
        if mtype == 1:
            out.append("empty message sent as NON")
        if tkl:
            out.append("empty message with token")
        if options:
            out.append("empty message with options")
        if payload:
            out.append("empty message with payload")
    else:
        cls = code >> 5
        if cls not in (0, 2, 4, 5):
            out.append(f"reserved code class {cls}")
        if mtype == 3:
            out.append(f"RST with non-empty code {cls}.{code & 0x1F:02d}")
        elif mtype == 2 and cls == 0:
            out.append(f"ACK carrying request method 0.{code:02d}")
    if number > 65535:
        out.append(f"option number {number} above 65535")
    if options and options[0].number == 0:
        out.append("option number 0 is reserved")


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    v = value - 269
    return 14, bytes((v >> 8, v & 0xFF))


def encode(msg: CoapMessage) -> bytes:
    """Serialise ``msg``. Options are written sorted by number (stable for repeats); the
    payload marker is written only for a non-empty payload. Raises :class:`CoapError` for
    values that cannot be represented."""
    if msg.version != 1:
        raise CoapError(f"cannot encode CoAP version {msg.version}")
    if not 0 <= msg.type <= 3:
        raise CoapError(f"message type {msg.type} out of range 0..3")
    if not 0 <= msg.code <= 255:
        raise CoapError(f"code {msg.code} out of range 0..255")
    if not 0 <= msg.mid <= 0xFFFF:
        raise CoapError(f"message ID {msg.mid} out of range 0..65535")
    token = msg.token
    if len(token) > 8:
        raise CoapError(f"token of {len(token)} bytes is longer than 8")
    out = bytearray((0x40 | msg.type << 4 | len(token), msg.code, msg.mid >> 8, msg.mid & 0xFF))
    out += token
    prev = 0
    for opt in sorted(msg.options, key=_number):
        delta = opt.number - prev
        length = len(opt.value)
        if delta < 0 or opt.number < 0:
            raise CoapError(f"negative option number {opt.number}")
        if delta > _MAX_EXT:
            raise CoapError(f"option delta {delta} too large to encode")
        if length > _MAX_EXT:
            raise CoapError(f"option value of {length} bytes too long to encode")
        if delta < 13 and length < 13:
            out.append(delta << 4 | length)
        else:
            dn, dx = _ext(delta)
            ln, lx = _ext(length)
            out.append(dn << 4 | ln)
            out += dx
            out += lx
        out += opt.value
        prev = opt.number
    if msg.payload:
        out.append(0xFF)
        out += msg.payload
    return bytes(out)


def _number(opt: CoapOption) -> int:
    return opt.number
