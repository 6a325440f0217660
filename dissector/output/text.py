"""Making device-controlled strings safe to show.

Event names, data, function names and describe JSON come from the device: they are
hostile input. In human-oriented formats every control character (C0, DEL, C1, so ESC
too) and every byte that is not valid UTF-8 is shown as ``\\xNN``, never raw.
"""

from __future__ import annotations

import re

# C0, DEL and C1 controls, plus Unicode line/paragraph separators and bidi overrides
# (they break lines or reorder text on a terminal: "Trojan source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_MD_SPECIAL = re.compile(r"([\\|\[\]()*_`])")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: object, limit: int | None = None) -> str:
    """``value`` as printable text: control characters and invalid UTF-8 as ``\\xNN``.

    ``limit`` truncates long strings with a ``…(+N)`` marker.
    """
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="backslashreplace")
    else:
        text = str(value)
        # Lone surrogates from surrogateescape decoding stand for raw bytes: show them as
        # \xNN like any other invalid UTF-8; other lone surrogates as \udXXX.
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    text = _UNSAFE.sub(_escape_char, text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}…(+{len(text) - limit})"
    return text


def markdown_text(value: object, limit: int | None = None) -> str:
    """Safe text for a Markdown table cell: entity-escape ``< > &``, backslash-escape
    ``| [ ] ( ) * _`` and backticks."""
    text = safe_text(value, limit)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def payload_preview(data: bytes, limit: int = 48) -> str:
    """Printable text when the payload is (mostly) text, else hex; truncated."""
    if not data:
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and sum(ch.isprintable() for ch in text) >= 0.9 * len(text):
        return safe_text(text, limit)
    hexed = data.hex()
    return hexed if len(hexed) <= limit else f"{hexed[:limit]}…(+{len(data) - limit // 2}B)"
