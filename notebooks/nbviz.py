"""Pictures for the notebooks: byte maps, sequence diagrams, IV chains and bar charts.

Every picture is an :class:`Svg`: Jupyter shows its inline SVG (``image/svg+xml``, which
code hosts render as an image, so no script and no external reference is needed) and
falls back to a plain-text rendering (``text/plain``) everywhere else. Both are
deterministic: the same input gives the same bytes, so stored notebook outputs can be
compared with a fresh run.
"""

from __future__ import annotations

import html
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PALETTE",
    "ROOT",
    "Field",
    "Step",
    "Svg",
    "at_repository_root",
    "bars",
    "byte_map",
    "iv_chain",
    "report_figure",
    "sequence",
]

#: Fill colours of byte-map fields, in order (light, readable with dark text).
PALETTE = (
    "#cfe2ff",
    "#ffe1b3",
    "#d3f2d5",
    "#f6d0e4",
    "#e3d7ff",
    "#fff3b0",
    "#cdeff2",
    "#f2d6c9",
    "#dde3ea",
    "#c9f0dc",
    "#ffd6a5",
    "#d7e3fc",
    "#f9dcc4",
    "#e2ece9",
)
_CHANGED = "#ff8a80"
_FONT = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace"
_SANS = "font-family:system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif"
_STYLE = (
    f"<style>text{{{_SANS};fill:#1d2330}}.mono{{{_FONT}}}.hex{{{_FONT};font-size:11px}}"
    ".small{font-size:11px;fill:#667085}.title{font-size:14px;font-weight:700}"
    ".lbl{font-size:12px}.arrow{stroke:#2f6fde;stroke-width:1.6}.head{fill:#2f6fde}"
    ".arrow.bad{stroke:#c62828}.head.bad{fill:#c62828}"
    ".arrow.warn{stroke:#b26a00;stroke-dasharray:5 3}.head.warn{fill:#b26a00}"
    ".life{stroke:#98a2b3;stroke-dasharray:4 4}.actor{fill:#f0f2f5;stroke:#c9ced6}"
    ".note{fill:#fffbe6;stroke:#e0c36a}.cell{stroke:#ffffff;stroke-width:1}</style>"
)


def esc(value: object) -> str:
    """Text safe inside SVG elements and attributes."""
    return html.escape(str(value), quote=True)


class Svg:
    """An inline SVG picture with a plain-text twin (what ``repr`` prints)."""

    __slots__ = ("svg", "text")

    def __init__(self, svg: str, text: str) -> None:
        self.svg = svg
        self.text = text

    def _repr_svg_(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return self.text


def _document(width: float, height: float, body: Iterable[str], label: str) -> str:
    w, h = _n(width), _n(height)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{esc(label)}">'
        f"<title>{esc(label)}</title>{_STYLE}"
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


# -- byte maps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """Bytes ``start``..``end`` (exclusive) of a byte map, with a label."""

    start: int
    end: int
    label: str


def byte_map(
    data: bytes,
    fields: Sequence[Field | tuple[int, int, str]] = (),
    *,
    title: str = "",
    per_row: int = 16,
    changed: Iterable[int] = (),
    elide: tuple[int, int] | None = None,
) -> Svg:
    """Every byte of ``data`` as a coloured hex cell, one colour per field, a legend below.

    ``changed``: offsets drawn in red (e.g. bytes a bit flip altered). ``elide``: a
    ``(start, end)`` range of whole rows replaced by one "…" row (long blobs).
    """
    data = bytes(data)
    spans = [f if isinstance(f, Field) else Field(*f) for f in fields]
    colour: dict[int, str] = {}
    for i, f in enumerate(spans):
        for pos in range(max(0, f.start), min(len(data), f.end)):
            colour[pos] = PALETTE[i % len(PALETTE)]
    hot = set(changed)
    cell = 22 if per_row <= 16 else 21
    left, top = 54, 30 if title else 8
    rows = _rows(len(data), per_row, elide)
    body: list[str] = []
    if title:
        body.append(f'<text class="title" x="8" y="19">{esc(title)}</text>')
    y = top
    grid: list[str] = []
    for row in rows:
        if row is None:
            body.append(f'<text class="small" x="{left}" y="{y + 14}">⋮ (rows elided)</text>')
            y += cell
            continue
        body.append(f'<text class="hex small" x="8" y="{y + 15}">{row:04x}</text>')
        end = min(row + per_row, len(data))
        fills = [_CHANGED if p in hot else colour.get(p, "#ffffff") for p in range(row, end)]
        start = 0
        for i in range(1, len(fills) + 1):  # one rectangle per run of equal colour
            if i == len(fills) or fills[i] != fills[start]:
                body.append(
                    f'<rect x="{left + start * cell}" y="{y}" width="{(i - start) * cell}" '
                    f'height="{cell}" fill="{fills[start]}"/>'
                )
                start = i
        grid.append(f"M{left} {y}h{len(fills) * cell}")
        grid.extend(f"M{left + i * cell} {y}v{cell}" for i in range(1, len(fills)))
        # one text element per row, each hex digit placed by its own x coordinate
        xs = " ".join(
            f"{_n(left + i * cell + cell / 2 + d)}" for i in range(len(fills)) for d in (-3.4, 3.4)
        )
        body.append(
            f'<text class="hex" x="{xs}" y="{y + 15}" text-anchor="middle">'
            f"{data[row:end].hex()}</text>"
        )
        y += cell
    body.append(f'<path d="{"".join(grid)}" stroke="#ffffff" stroke-width="1.5" fill="none"/>')
    y += 8
    items = [
        (PALETTE[i % len(PALETTE)], f"{f.label} [{f.start}:{f.end}] {f.end - f.start} B")
        for i, f in enumerate(spans)
    ]
    if hot:
        items.append((_CHANGED, "changed"))
    limit = max(left + per_row * cell, 420)
    legend_x, widest = 8.0, 0.0
    for fill, text in items:
        width = 22 + 6.6 * len(text)
        if legend_x + width > limit and legend_x > 8:
            legend_x = 8
            y += 20
        body.append(
            f'<rect x="{_n(legend_x)}" y="{y}" width="14" height="14" fill="{fill}" '
            f'stroke="#c9ced6"/><text class="lbl" x="{_n(legend_x + 19)}" y="{y + 12}">'
            f"{esc(text)}</text>"
        )
        legend_x += width + 14
        widest = max(widest, legend_x)
    height = y + (26 if items else 4)
    width = max(left + per_row * cell + 10, widest, 300, 16 + 8.4 * len(title))
    return Svg(_document(width, height, body, title or "byte map"), _byte_text(data, spans, title))


def _rows(length: int, per_row: int, elide: tuple[int, int] | None) -> list[int | None]:
    rows: list[int | None] = []
    skipped = False
    for row in range(0, max(length, 1), per_row):
        if elide is not None and elide[0] <= row and row + per_row <= elide[1]:
            if not skipped:
                rows.append(None)
                skipped = True
            continue
        rows.append(row)
    return rows


def _byte_text(data: bytes, spans: Sequence[Field], title: str) -> str:
    lines = [title] if title else []
    for f in spans:
        chunk = data[f.start : f.end]
        shown = chunk[:24].hex(" ") + (" …" if len(chunk) > 24 else "")
        lines.append(f"{f.label:<28} [{f.start:>3}:{f.end:<3}] {shown}")
    if not spans:
        lines.append(data[:48].hex(" ") + (" …" if len(data) > 48 else ""))
    return "\n".join(lines)


# -- sequence diagrams ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One row of a sequence diagram.

    ``src``/``dst``: actor names (equal, or ``dst`` None, for a note on ``src``'s
    lifeline: something that actor computes). ``style``: ``ok``, ``bad`` or ``warn``.
    """

    src: str
    dst: str | None
    label: str
    detail: str = ""
    style: str = "ok"


def sequence(steps: Sequence[Step], actors: Sequence[str], *, title: str = "") -> Svg:
    """A sequence diagram: actors across the top, one arrow or note per step."""
    gap = 420 if len(actors) == 2 else 300
    xs = {a: 150 + i * gap for i, a in enumerate(actors)}
    width = max(150 + (len(actors) - 1) * gap + 150, 16 + 8.4 * len(title))
    top = 34 if title else 8
    body: list[str] = []
    if title:
        body.append(f'<text class="title" x="8" y="20">{esc(title)}</text>')
    y = top + 62
    rows: list[str] = []
    text_lines = [title] if title else []
    for step in steps:
        if step.dst is None or step.dst == step.src:
            x = xs[step.src]
            w = max(200, 7.0 * max(len(step.label), len(step.detail)) + 20)
            lx = min(max(x - w / 2, 4), width - w - 4)
            h = 34 if step.detail else 22
            rows.append(
                f'<rect class="note" x="{_n(lx)}" y="{y - 14}" width="{_n(w)}" height="{h}" '
                f'rx="4"/><text class="lbl" x="{_n(lx + w / 2)}" y="{y + 1}" '
                f'text-anchor="middle">{esc(step.label)}</text>'
            )
            if step.detail:
                rows.append(
                    f'<text class="small" x="{_n(lx + w / 2)}" y="{y + 14}" '
                    f'text-anchor="middle">{esc(step.detail)}</text>'
                )
            text_lines.append(f"  [{step.src}] {step.label}" + _tail(step.detail))
            y += h + 16
            continue
        x1, x2 = xs[step.src], xs[step.dst]
        tip = 8 if x2 > x1 else -8
        cls = "" if step.style == "ok" else f" {step.style}"
        mid = (x1 + x2) / 2
        rows.append(
            f'<text class="lbl" x="{mid}" y="{y}" text-anchor="middle">{esc(step.label)}</text>'
            f'<line class="arrow{cls}" x1="{x1}" y1="{y + 7}" x2="{x2 - tip}" y2="{y + 7}"/>'
            f'<path class="head{cls}" d="M{x2} {y + 7} l{-tip} -4.5 v9 z"/>'
        )
        if step.detail:
            rows.append(
                f'<text class="small" x="{mid}" y="{y + 21}" text-anchor="middle">'
                f"{esc(step.detail)}</text>"
            )
        arrow = "→"
        text_lines.append(f"  {step.src} {arrow} {step.dst}: {step.label}" + _tail(step.detail))
        y += 44 if step.detail else 32
    height = y + 4
    for a, x in xs.items():
        body.append(f'<line class="life" x1="{x}" y1="{top + 44}" x2="{x}" y2="{height - 4}"/>')
        body.append(
            f'<rect class="actor" x="{x - 70}" y="{top}" width="140" height="40" rx="6"/>'
            f'<text class="lbl" x="{x}" y="{top + 25}" text-anchor="middle" '
            f'font-weight="700">{esc(a)}</text>'
        )
    body.extend(rows)
    return Svg(_document(width, height, body, title or "sequence"), "\n".join(text_lines))


def _tail(detail: str) -> str:
    return f" ({detail})" if detail else ""


# -- the IV chain ---------------------------------------------------------------------------


def iv_chain(frames: Sequence[bytes], first_iv: bytes, *, title: str = "", label: str = "") -> Svg:
    """Each frame's ciphertext as 16-byte blocks; an arrow from its first block to the
    next frame's IV (Particle's rule), the first frame's IV being ``first_iv``."""
    block_w, block_h, gap = 74, 26, 40
    left, top = 120, 30 if title else 8
    body: list[str] = []
    text = [title] if title else []
    if title:
        body.append(f'<text class="title" x="8" y="19">{esc(title)}</text>')
    max_blocks = max((len(f) // 16 for f in frames), default=1)
    shown_blocks = min(max_blocks, 6)
    y = top
    iv = first_iv
    for i, ct in enumerate(frames):
        name = f"{label} frame {i + 1}".strip()
        body.append(f'<text class="lbl" x="8" y="{y + 17}">{esc(name)}</text>')
        body.append(
            f'<rect x="{left - 2}" y="{y}" width="{block_w}" height="{block_h}" rx="3" '
            f'fill="#fff3b0" stroke="#e0c36a"/><text class="hex" x="{left + block_w / 2 - 2}" '
            f'y="{y + 17}" text-anchor="middle">IV {iv[:3].hex()}…</text>'
        )
        n = len(ct) // 16
        for b in range(min(n, shown_blocks)):
            x = left + (b + 1) * (block_w + 6) + 10
            fill = "#cfe2ff" if b == 0 else "#eef1f5"
            body.append(
                f'<rect x="{x}" y="{y}" width="{block_w}" height="{block_h}" rx="3" '
                f'fill="{fill}" stroke="#9bb8e8"/><text class="hex" x="{x + block_w / 2}" '
                f'y="{y + 17}" text-anchor="middle">{ct[16 * b : 16 * b + 3].hex()}…</text>'
            )
        if n > shown_blocks:
            x = left + (shown_blocks + 1) * (block_w + 6) + 14
            body.append(f'<text class="small" x="{x}" y="{y + 17}">+{n - shown_blocks}</text>')
        text.append(
            f"{name}: IV {iv.hex()} -> {n} block(s), first block {ct[:16].hex()} is the next IV"
        )
        if i + 1 < len(frames):
            fx = left + (block_w + 6) + 10 + block_w / 2
            tx = left + block_w / 2 - 2
            y1, y2 = y + block_h, y + block_h + gap
            body.append(
                f'<path d="M{_n(fx)} {y1} C{_n(fx)} {y1 + 24} {_n(tx)} {y2 - 24} {_n(tx)} '
                f'{y2 - 8}" fill="none" class="arrow"/>'
                f'<path class="head" d="M{_n(tx)} {y2} l-4.5 -8 h9 z"/>'
            )
            body.append(
                f'<text class="small" x="{_n((fx + tx) / 2 + 40)}" y="{y1 + gap / 2 + 4}">'
                "first ciphertext block becomes the next IV</text>"
            )
        iv = ct[:16]
        y += block_h + gap
    width = max(left + (shown_blocks + 1) * (block_w + 6) + 60, 500, 16 + 8.4 * len(title))
    return Svg(_document(width, y - gap + 12, body, title or "IV chain"), "\n".join(text))


# -- bar charts -----------------------------------------------------------------------------


def bars(items: Sequence[tuple[str, float]], *, title: str = "", unit: str = "") -> Svg:
    """A horizontal bar chart of ``(label, value)``, in the order given."""
    label_w = max((len(label) for label, _ in items), default=4) * 7 + 16
    bar_max = 360
    top = 30 if title else 8
    peak = max((v for _, v in items), default=1) or 1
    body: list[str] = []
    text = [title] if title else []
    if title:
        body.append(f'<text class="title" x="8" y="19">{esc(title)}</text>')
    y = top
    for i, (label, value) in enumerate(items):
        w = max(1.0, value / peak * bar_max)
        shown = f"{value:g}{(' ' + unit) if unit else ''}"
        body.append(
            f'<text class="lbl" x="{label_w - 8}" y="{y + 14}" text-anchor="end">'
            f"{esc(label)}</text>"
            f'<rect x="{label_w}" y="{y + 2}" width="{_n(w)}" height="16" rx="2" '
            f'fill="{PALETTE[i % len(PALETTE)]}" stroke="#9bb8e8"/>'
            f'<text class="small" x="{_n(label_w + w + 6)}" y="{y + 15}">{esc(shown)}</text>'
        )
        text.append(f"{label:<{label_w // 7}} {shown}")
        y += 22
    return Svg(_document(label_w + bar_max + 90, y + 8, body, title or "bars"), "\n".join(text))


# -- the report's own drawings --------------------------------------------------------------

_DARK = re.compile(r"@media[^{]*\{(?:[^{}]*\{[^}]*\})*\s*\}")
_ROOT = re.compile(r":root\{[^}]*\}")
_SVG_RULE = re.compile(r"(?<![\w-])svg [^{}]+\{[^}]*\}")


def report_figure(svg: str, text: str = "") -> Svg:
    """A drawing of :mod:`dissector.report.svg` (made for the HTML report, styled by its
    CSS) as a standalone SVG: the report's light-theme rules are put inside it."""
    from dissector.report.render_html import CSS

    light = _DARK.sub("", CSS)
    root = _ROOT.search(light)
    style = (root.group(0).replace(":root", "svg") if root else "") + "".join(
        m.group(0) for m in _SVG_RULE.finditer(light)
    )
    head, _, rest = svg.partition(">")
    if "xmlns=" not in head:
        head = head.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
    size = re.search(r'width="([\d.]+)" height="([\d.]+)"', head)
    bg = (
        f'<rect x="0" y="0" width="{size.group(1)}" height="{size.group(2)}" fill="#ffffff"/>'
        if size
        else ""
    )
    return Svg(f"{head}><style>{style}</style>{bg}{rest}", text or "(drawing)")


# -- where the notebooks run ----------------------------------------------------------------

#: The repository: the folder above this file's.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the dissector package, even when it is not installed


def at_repository_root() -> Path:
    """Make the repository root the working directory (notebook paths are relative to it)
    and return it."""
    os.chdir(ROOT)
    return ROOT
