"""Inline SVG drawings for the HTML report: the auth-flow sequence diagram and the
messages-over-time plot. Every text goes through :func:`esc` (HTML/SVG escaping of
``& < > " '`` after :func:`~dissector.output.text.safe_text`)."""

from __future__ import annotations

import html
import textwrap

from dissector.output.text import safe_text
from dissector.report.fmt import fmt_duration
from dissector.report.model import FlowStep, SessionReport

_D2C = "device->cloud"


def esc(value: object, limit: int | None = None) -> str:
    """Text safe inside HTML and SVG elements and quoted attributes."""
    return html.escape(safe_text(value, limit), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


# -- sequence diagram ----------------------------------------------------------------------

SEQ_WIDTH = 780
_DEV_X = 170
_CLOUD_X = 700
_HEAD = 58


def _arrow(y: float, x1: float, x2: float, cls: str) -> str:
    tip = 8 if x2 > x1 else -8
    return (
        f'<line class="seq-arrow {cls}" x1="{x1}" y1="{y}" x2="{x2 - tip}" y2="{y}"/>'
        f'<path class="seq-head {cls}" d="M{x2} {y} l{-tip} -4.5 v9 z"/>'
    )


def sequence_svg(s: SessionReport) -> str:
    """The session's auth flow: device and cloud lifelines, one arrow per handshake
    message (DTLS: per flight) and per early message, with sizes and times."""
    steps = list(s.flow)
    t0 = steps[0].ts if steps else (s.start or 0.0)
    rows: list[str] = []
    y = _HEAD + 14
    final = steps.pop() if steps and steps[-1].direction is None else None
    for step in steps:
        rows.append(_row(step, y, t0))
        y += _row_height(step)
    if final is not None:
        rows.append(_row(final, y, t0))
        y += 40 if final.note else 30
    height = y + 10
    device = esc(s.device_id or "device", 40)
    cloud = esc(s.cloud_endpoint or "cloud", 40)
    device_sub = esc(s.device_endpoint or "", 48)
    title = esc(f"Auth flow of session {s.id}")
    parts = [
        f'<svg class="seq" width="{SEQ_WIDTH}" '
        f'height="{height}" viewBox="0 0 {SEQ_WIDTH} {height}" role="img" '
        f'aria-label="{title}"><title>{title}</title>',
        f'<line class="lifeline" x1="{_DEV_X}" y1="{_HEAD}" x2="{_DEV_X}" y2="{height - 6}"/>',
        f'<line class="lifeline" x1="{_CLOUD_X}" y1="{_HEAD}" x2="{_CLOUD_X}" y2="{height - 6}"/>',
        _actor(_DEV_X, "Device", device_sub or device),
        _actor(_CLOUD_X, "Cloud", cloud),
        *rows,
        "</svg>",
    ]
    return "".join(parts)


def _actor(x: float, name: str, sub: str) -> str:
    return (
        f'<rect class="actor" x="{x - 80}" y="6" width="160" height="44" rx="6"/>'
        f'<text class="actor-name" x="{x}" y="24" text-anchor="middle">{name}</text>'
        f'<text class="actor-sub" x="{x}" y="41" text-anchor="middle">{sub}</text>'
    )


def _lines(label: str, limit: int = 66) -> list[str]:
    """One line, or two split at a comma near the middle when the label is long."""
    if len(label) <= limit:
        return [label]
    cut = label.rfind(", ", 0, len(label) // 2 + 12)
    if cut <= 0:
        return [label]
    return [label[: cut + 1], label[cut + 2 :]]


def _note_lines(note: str) -> list[str]:
    """A note row's detail, word-wrapped to at most three lines."""
    if not note:
        return []
    return textwrap.wrap(safe_text(note), 100, max_lines=3, placeholder=" …") or [""]


def _row_height(step: FlowStep) -> int:
    if step.status == "more":
        return 24
    if step.direction is None:
        return 30 + 13 * len(_note_lines(step.note))
    return 30 + (10 if step.note else 0) + 14 * (len(_lines(_label(step))) - 1)


def _label(step: FlowStep) -> str:
    return step.label + (f" · {step.size} B" if step.size else "")


def _row(step: FlowStep, y: float, t0: float) -> str:
    rel = f"+{step.ts - t0:.3f} s"
    if step.status == "more":
        return (
            f'<text class="seq-more" x="{(_DEV_X + _CLOUD_X) / 2}" y="{y + 2}" '
            f'text-anchor="middle">⋮ {esc(step.label)} ⋮</text>'
        )
    cls = {"failed": "bad", "warning": "warn", "info": "info"}.get(step.status, "ok")
    label = _label(step)
    lines = _lines(label)
    extra = 14 * (len(lines) - 1)
    mid = (_DEV_X + _CLOUD_X) / 2
    mark = "✗ " if cls == "bad" else ""
    out = [f'<g class="seq-row {cls}"><title>{esc(f"{rel}  {label}  {step.note}")}</title>']
    out.append(f'<text class="seq-time" x="8" y="{y + 4 + extra}">{esc(rel)}</text>')
    if step.direction is None:
        lines = _note_lines(step.note)
        out.append(
            f'<rect class="seq-note {cls}" x="{_DEV_X - 40}" y="{y - 12}" '
            f'width="{_CLOUD_X - _DEV_X + 80}" height="{22 + 13 * len(lines)}" rx="5"/>'
        )
        out.append(
            f'<text class="seq-label" x="{mid}" y="{y + 4}" text-anchor="middle">'
            f"{mark}{esc(label, 90)}</text>"
        )
        for i, line in enumerate(lines):
            out.append(
                f'<text class="seq-detail" x="{mid}" y="{y + 17 + 13 * i}" '
                f'text-anchor="middle">{esc(line)}</text>'
            )
        out.append("</g>")
        return "".join(out)
    x1, x2 = (_DEV_X, _CLOUD_X) if step.direction == _D2C else (_CLOUD_X, _DEV_X)
    out.append(_arrow(y + 6 + extra, x1, x2, cls))
    for i, line in enumerate(lines):
        out.append(
            f'<text class="seq-label" x="{mid}" y="{y + 14 * i}" text-anchor="middle">'
            f"{mark if i == 0 else ''}{esc(line, 84)}</text>"
        )
    if step.note:
        out.append(
            f'<text class="seq-detail" x="{mid}" y="{y + 21 + extra}" text-anchor="middle">'
            f"{esc(step.note, 92)}</text>"
        )
    out.append("</g>")
    return "".join(out)


# -- timeline ------------------------------------------------------------------------------

TL_WIDTH = 780
TL_HEIGHT = 170
_LEFT = 46
_RIGHT = 14
_MID = 88
_HALF = 58


def timeline_svg(s: SessionReport) -> str:
    """Messages over time: device→cloud bars up, cloud→device bars down, finding markers."""
    tl = s.timeline
    n = max(len(tl.d2c), len(tl.c2d))
    title = esc(f"Messages over time in session {s.id}")
    head = (
        f'<svg class="timeline" width="{TL_WIDTH}" '
        f'height="{TL_HEIGHT}" viewBox="0 0 {TL_WIDTH} {TL_HEIGHT}" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
    )
    if n == 0 or tl.start is None or not (any(tl.d2c) or any(tl.c2d)):
        return (
            head + f'<text class="axis" x="{TL_WIDTH / 2}" y="{_MID}" text-anchor="middle">'
            "no messages</text></svg>"
        )
    plot = TL_WIDTH - _LEFT - _RIGHT
    bar = plot / n
    top = max(max(tl.d2c, default=0), max(tl.c2d, default=0), 1)
    parts = [head]
    parts.append(
        f'<line class="baseline" x1="{_LEFT}" y1="{_MID}" x2="{TL_WIDTH - _RIGHT}" y2="{_MID}"/>'
    )
    for i in range(n):
        x = _LEFT + i * bar
        t_from = i * tl.bin_width
        for values, up, cls, words in (
            (tl.d2c, True, "up", "device→cloud"),
            (tl.c2d, False, "down", "cloud→device"),
        ):
            count = values[i] if i < len(values) else 0
            if not count:
                continue
            h = max(1.5, count / top * _HALF)
            y = _MID - h if up else _MID
            tip = esc(f"+{t_from:.2f} s: {count} {words}")
            parts.append(
                f'<rect class="bar {cls}" x="{_num(x + 0.5)}" y="{_num(y)}" '
                f'width="{_num(max(bar - 1, 1))}" height="{_num(h)}"><title>{tip}</title></rect>'
            )
    span = n * tl.bin_width
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = _LEFT + frac * plot
        parts.append(
            f'<line class="tick" x1="{_num(x)}" y1="{_MID + _HALF + 2}" '
            f'x2="{_num(x)}" y2="{_MID + _HALF + 6}"/>'
        )
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        parts.append(
            f'<text class="axis" x="{_num(x)}" y="{_MID + _HALF + 18}" text-anchor="{anchor}">'
            f"{esc('+' + fmt_duration(frac * span) if frac else '0')}</text>"
        )
    parts.append(
        f'<text class="axis" x="{_LEFT - 6}" y="{_MID - _HALF + 4}" text-anchor="end">{top}</text>'
    )
    parts.append(
        f'<text class="axis" x="{_LEFT - 6}" y="{_MID + _HALF}" text-anchor="end">{top}</text>'
    )
    parts.append(f'<text class="legend up" x="{_LEFT + 4}" y="12">▲ device→cloud</text>')
    parts.append(f'<text class="legend down" x="{_LEFT + 120}" y="12">▼ cloud→device</text>')
    parts.append(
        f'<text class="axis" x="{TL_WIDTH - _RIGHT}" y="12" text-anchor="end">'
        f"{esc(f'bin {fmt_duration(tl.bin_width)}')}</text>"
    )
    for marker in tl.markers[:100]:
        ts, severity = marker[0], str(marker[1])
        if not isinstance(ts, int | float) or span <= 0:
            continue
        x = _LEFT + min(max((ts - tl.start) / span, 0.0), 1.0) * plot
        cls = "error" if severity == "error" else "warning"
        tip = esc(f"{severity} at +{ts - tl.start:.3f} s")
        parts.append(
            f'<path class="marker {cls}" d="M{_num(x)} {_MID - _HALF - 2} l-4 -7 h8 z">'
            f"<title>{tip}</title></path>"
        )
    parts.append("</svg>")
    return "".join(parts)
