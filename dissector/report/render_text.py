"""The terminal summary: tabulate tables, colour only when asked (on a TTY).

Summaries only (capture, devices, sessions, handshake failures, OTA, latency, findings by
code); the per-session details are in the HTML and Markdown reports. Every device string
goes through :func:`~dissector.output.text.safe_text`.
"""

from __future__ import annotations

from typing import Any

import click
from tabulate import tabulate

from dissector.output.text import safe_text
from dissector.report.fmt import (
    chunk_text,
    crc_text,
    device_label,
    fmt_bytes,
    fmt_duration,
    fmt_latency,
    fmt_rate,
    fmt_rel,
    fmt_size,
    handshake_summary,
    ota_result,
    outcome_class,
)
from dissector.report.model import Report
from dissector.report.sections import (
    FINDING_GROUP_HEADERS,
    OTA_PROGRESS_HEADERS,
    capture_span,
    packet_counts,
)

#: Session rows shown at most (the HTML report has them all).
MAX_SESSION_ROWS = 500
_COLOURS = {"error": "red", "warning": "yellow", "info": "blue", "ok": "green", "bad": "red"}
_COLOURS["warn"] = "yellow"


class _Out:
    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.lines: list[str] = []

    def style(self, text: str, key: str, bold: bool = False) -> str:
        colour = _COLOURS.get(key)
        if not self.colour or (colour is None and not bold):
            return text
        return click.style(text, fg=colour, bold=bold)

    def heading(self, text: str) -> None:
        self.lines.append("")
        self.lines.append(self.style(f"== {text}", "", bold=True))
        self.lines.append("")

    def line(self, text: str = "") -> None:
        self.lines.append(text)

    def table(self, rows: list[list[Any]], headers: list[str]) -> None:
        self.lines.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def _c(value: object, limit: int | None = 80) -> str:
    return safe_text(value, limit)


def render_text(report: Report, *, colour: bool = False) -> str:
    """The terminal summary of ``report``."""
    out = _Out(colour)
    cap = report.capture
    title = "Particle capture report"
    if report.redacted:
        title += " (redacted)"
    out.line(out.style(title, "", bold=True) + f" — {_c(report.generator)}")
    out.heading("Capture")
    rows = [
        [
            _c(f.name, 60),
            _c(f.format + (" (gzip)" if f.compressed else "")),
            fmt_bytes(f.size),
            _c(", ".join(f.linktypes)),
            f.packets,
            ("truncated " if f.truncated else "") + ("corrupt" if f.corrupt else ""),
        ]
        for f in cap.files
    ]
    out.table(rows, ["file", "format", "size", "link type", "packets", "problems"])
    out.line()
    out.line(f"Time span: {capture_span(cap)}")
    out.line(f"Packets: {packet_counts(cap)}")
    dec = cap.decryption
    out.line(
        f"Sessions: {cap.sessions} (TCP {cap.sessions_tcp}, DTLS {cap.sessions_dtls}); "
        f"messages decrypted: {dec.decrypted} of {dec.messages}; sessions fully decrypted "
        f"{dec.sessions_decrypted}, partly {dec.sessions_partial}, not at all "
        f"{dec.sessions_encrypted}"
    )
    for text in dec.missing:
        out.line(out.style("Missing key: ", "warning") + _c(text, 300))
    for note in cap.notes:
        out.line(f"Note: {_c(note, 300)}")

    out.heading(f"Devices ({len(report.devices)})")
    if report.devices:
        out.table(
            [
                [
                    _c(d.device_id or f"key {(d.key_fingerprint or '')[:16]}"),
                    _c(d.platform or ""),
                    _c("; ".join(d.sources), 100),
                    _c(", ".join(d.addresses), 40),
                    _c(", ".join(d.sessions), 30),
                    "yes" if d.decrypted else "no",
                ]
                for d in report.devices
            ],
            ["device", "platform", "seen via", "addresses", "sessions", "decrypted"],
        )
    else:
        out.line("No device identity was seen.")

    out.heading(f"Sessions ({len(report.sessions)})")
    t0 = cap.first_ts
    rows = []
    for s in report.sessions[:MAX_SESSION_ROWS]:
        failures = s.findings.get("error", 0)
        warnings = s.findings.get("warning", 0)
        rows.append(
            [
                _c(s.id),
                _c(device_label(s), 30),
                _c(s.platform or ""),
                _c(s.device_endpoint or ""),
                fmt_rel(s.start, t0),
                fmt_duration(s.duration),
                out.style(_c(s.outcome), outcome_class(s.outcome)),
                f"{s.messages_d2c}/{s.messages_c2d}",
                f"{s.decrypted_d2c + s.decrypted_c2d}/{s.messages_d2c + s.messages_c2d}",
                _c(handshake_summary(s), 40),
                f"{failures}/{warnings}",
            ]
        )
    if rows:
        out.table(
            rows,
            [
                "session",
                "device",
                "platform",
                "device addr",
                "start",
                "duration",
                "outcome",
                "msgs D->C/C->D",
                "decrypted",
                "handshake",
                "errors/warnings",
            ],
        )
    if len(report.sessions) > MAX_SESSION_ROWS:
        out.line(f"… {len(report.sessions) - MAX_SESSION_ROWS} more sessions (see -o FILE.html)")
    failed = [s for s in report.sessions if s.handshake_failure]
    if failed:
        out.line()
        out.line(out.style("Handshake failures:", "error", bold=True))
        for s in failed[:50]:
            out.line(f"  {_c(s.id)}: {_c(s.handshake_failure, 300)}")

    if report.ota:
        out.heading(f"Firmware transfers ({len(report.ota)})")
        out.table(
            [
                [
                    _c(t.session),
                    _c(t.mode),
                    _c(fmt_size(t.file_size)),
                    chunk_text(t),
                    crc_text(t),
                    t.missed,
                    fmt_duration(t.duration),
                    fmt_rate(t.throughput),
                    out.style(_c(ota_result(t)), "ok" if t.complete else "warn"),
                    _c((t.sha256 or "")[:16]) or _c(t.image_note, 60),
                ]
                for t in report.ota
            ],
            [
                "session",
                "mode",
                "size",
                *OTA_PROGRESS_HEADERS,
                "SHA-256",
            ],
        )

    if report.latency:
        out.heading("Latency (request → response)")
        out.table(
            [
                [
                    _c(f"{lat.request} → {lat.response}"),
                    _c(lat.answered_by),
                    lat.count,
                    fmt_latency(lat.median),
                    fmt_latency(lat.p95),
                    fmt_latency(lat.max),
                ]
                for lat in report.latency[:40]
            ],
            ["exchange", "answered by", "count", "median", "p95", "max"],
        )

    counts = report.severity_counts
    out.heading(
        f"Findings (errors {counts.get('error', 0)}, warnings {counts.get('warning', 0)}, "
        f"info {counts.get('info', 0)})"
    )
    if report.finding_groups:
        out.table(
            [
                [
                    out.style(_c(g.severity), g.severity),
                    _c(g.code),
                    g.count,
                    _c(", ".join(g.sessions[:5]) + (" …" if len(g.sessions) > 5 else ""), 40),
                    _c(g.example, 110),
                ]
                for g in report.finding_groups
            ],
            FINDING_GROUP_HEADERS,
        )
    else:
        out.line("No findings.")
    return "\n".join(out.lines).lstrip("\n") + "\n"
