"""Number, time and status formatting shared by the report renderers (plain text out;
each renderer escapes for its format)."""

from __future__ import annotations

from datetime import UTC, datetime

from dissector.report.model import OtaTransfer, SessionReport

#: Check status -> (symbol, words).
CHECK_SYMBOLS = {
    "passed": ("✓", "passed"),
    "failed": ("✗", "failed"),
    "not_checkable": ("?", "not checkable"),
    "not_seen": ("–", "not seen"),
}


def fmt_time(ts: float | None) -> str:
    """``2026-11-25 21:11:10.123 UTC`` (empty for None)."""
    if ts is None:
        return ""
    try:
        dt = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ts:.3f}"
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d} UTC"


def fmt_rel(ts: float | None, t0: float | None) -> str:
    """``+12.345 s`` relative to ``t0``."""
    if ts is None or t0 is None:
        return ""
    return f"+{ts - t0:.3f} s"


def fmt_duration(seconds: float | None) -> str:
    """``45 ms``, ``12.3 s``, ``2 min 03 s``, ``1 h 02 min``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def fmt_latency(seconds: float | None) -> str:
    """``0.3 ms``, ``300 ms``, ``1.20 s``."""
    if seconds is None:
        return ""
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: int | None) -> str:
    """``512 B``, ``8.1 KiB``, ``1.4 MiB``."""
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def fmt_size(n: int | None) -> str:
    """Exact size: ``1,000 B``."""
    return "" if n is None else f"{n:,} B"


def fmt_rate(bytes_per_second: float | None) -> str:
    """``12.3 KiB/s``."""
    if bytes_per_second is None:
        return ""
    return fmt_bytes(int(bytes_per_second)) + "/s"


def outcome_class(outcome: str) -> str:
    """``ok``, ``bad`` or ``warn`` for colouring a session outcome."""
    if outcome in ("established", "resumed", "mid-session"):
        return "ok"
    if outcome in ("handshake failed", "failed"):
        return "bad"
    return "warn"


def device_label(s: SessionReport) -> str:
    """The device ID, or what is known instead."""
    if s.device_id:
        return s.device_id
    if s.device_key_fingerprint:
        return f"key {s.device_key_fingerprint[:16]}"
    return "unknown"


def handshake_summary(s: SessionReport) -> str:
    """``9/9 passed``, ``FAILED: identity message decrypted`` (the handshake failed) or
    ``check failed: session key recovered`` (a check failed, the session went on)."""
    if not s.handshake:
        return ""
    failed = [c for c in s.handshake if c.status == "failed"]
    if failed and s.outcome in ("handshake failed", "failed"):
        return f"FAILED: {failed[0].label}"
    if failed:
        return f"check failed: {failed[0].label}"
    passed = sum(1 for c in s.handshake if c.status == "passed")
    if passed == 0:
        return "no handshake seen"
    return f"{passed}/{len(s.handshake)} passed"


def crc_text(t: OtaTransfer) -> str:
    """``1/1``: chunks with a bad CRC on the wire / chunks the device rejected."""
    return f"{t.crc_failures}/{t.crc_rejected}"


def ota_result(t: OtaTransfer) -> str:
    """One line: complete or not, and the image check."""
    text = "complete" if t.complete else "incomplete"
    if t.sha256_match is True:
        text += ", SHA-256 matches"
    elif t.sha256_match is False:
        text += ", SHA-256 MISMATCH"
    return text


def chunk_text(t: OtaTransfer) -> str:
    """``128/128 (+3 re-sent)``."""
    expected = t.chunks_expected if t.chunks_expected is not None else "?"
    text = f"{t.chunks_unique}/{expected}"
    if t.resent:
        text += f" (+{t.resent} re-sent)"
    return text


def sparkline(values: list[int], width: int = 60) -> str:
    """Unicode block sparkline of ``values`` squeezed to at most ``width`` characters."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            sum(values[int(i * step) : max(int(i * step) + 1, int((i + 1) * step))])
            for i in range(width)
        ]
    top = max(values)
    blocks = " ▁▂▃▄▅▆▇█"
    if top == 0:
        return blocks[0] * len(values)
    return "".join(blocks[0 if v == 0 else max(1, round(v / top * 8))] for v in values)
