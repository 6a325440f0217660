"""The Markdown report (GitHub-flavoured): tables, a Mermaid sequence diagram of each
session's auth flow, a sparkline of its messages over time, details folded in
``<details>``.

Every string from the capture goes through :func:`~dissector.output.text.markdown_text`
(``< > &`` entity-escaped, ``| [ ] ( ) * _`` and backticks backslash-escaped, control
characters and invalid UTF-8 as ``\\xNN``); Mermaid labels and code spans only ever hold
text this module builds from a fixed character set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from dissector.output.text import markdown_text
from dissector.report.fmt import (
    CHECK_SYMBOLS,
    chunk_text,
    crc_text,
    device_label,
    fmt_bytes,
    fmt_duration,
    fmt_latency,
    fmt_rate,
    fmt_rel,
    fmt_size,
    fmt_time,
    handshake_summary,
    ota_result,
    sparkline,
)
from dissector.report.model import FindingEntry, OtaTransfer, Report, SessionReport
from dissector.report.sections import (
    COMMAND_HEADERS,
    DEVICE_HEADERS_START,
    EVENT_HEADERS,
    FINDING_GROUP_HEADERS,
    FUNCTION_HEADERS,
    LATENCY_HEADERS,
    OTA_PROGRESS_HEADERS,
    PING_HEADERS,
    SESSION_HEADERS_START,
    SUBSCRIPTION_HEADERS,
    VARIABLE_HEADERS,
    decryption_counts,
    finding_headers,
    findings_by_severity,
    handshake_failures,
    latency_rows,
    packet_counts,
    ping_rows,
    session_findings,
    session_span,
    session_traffic,
    time_sync_offset,
)

MAX_FINDING_ROWS = 500
OPEN_DETAILS = 3
_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 .,+/()_\-→]")


def md(value: object, limit: int | None = 200) -> str:
    """Escaped Markdown text of any value (one line: safe in a table cell)."""
    return markdown_text(value, limit)


def _mermaid(text: str, limit: int = 70) -> str:
    """Text reduced to a character set with no meaning in Mermaid or Markdown."""
    text = _MERMAID_UNSAFE.sub(" ", text.replace(";", ","))
    return text[:limit]


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table; cells are already escaped."""
    body = [f"| {' | '.join(cells)} |" for cells in rows]
    if not body:
        return ["_None._", ""]
    return [f"| {' | '.join(headers)} |", "|" + "---|" * len(headers), *body, ""]


class _Md:
    def __init__(self, report: Report) -> None:
        self.r = report
        self.t0 = report.capture.first_ts
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def render(self) -> str:
        r = self.r
        cap = r.capture
        self.add("# Particle capture report", "")
        names = ", ".join(md(f.name, 200) for f in cap.files)
        self.add(f"{md(r.generator)} · {names}" + (" · **redacted**" if r.redacted else ""), "")
        dec = cap.decryption
        counts = r.severity_counts
        self.add("## Summary", "")
        self.add(
            *_table(
                [
                    "sessions",
                    "devices",
                    "messages decrypted",
                    "time span",
                    "errors",
                    "warnings",
                    "firmware transfers",
                ],
                [
                    [
                        f"{cap.sessions} (TCP {cap.sessions_tcp}, DTLS {cap.sessions_dtls})",
                        str(len(r.devices)),
                        f"{dec.decrypted}/{dec.messages}",
                        md(fmt_duration(cap.duration)),
                        str(counts.get("error", 0)),
                        str(counts.get("warning", 0)),
                        str(len(r.ota)),
                    ]
                ],
            )
        )
        failed = handshake_failures(r.sessions)
        if failed:
            self.add("**Handshake failures**", "")
            for s in failed[:50]:
                self.add(f"- {md(s.id)}: {md(s.handshake_failure or s.outcome, 500)}")
            self.add("")
        self.capture()
        self.devices()
        self.sessions()
        if r.ota:
            self.add("## Firmware transfers", "")
            self.add(*self.ota_table(r.ota))
        self.latency()
        self.findings()
        return "\n".join(self.lines).rstrip("\n") + "\n"

    def capture(self) -> None:
        cap = self.r.capture
        self.add("## Capture", "")
        self.add(
            *_table(
                ["file", "format", "size", "link type", "packets", "first", "last"],
                (
                    [
                        md(f.name),
                        md(f.format + (" (gzip)" if f.compressed else "")),
                        md(fmt_bytes(f.size)),
                        md(", ".join(f.linktypes)),
                        str(f.packets),
                        md(fmt_time(f.first_ts)),
                        md(fmt_time(f.last_ts)),
                    ]
                    for f in cap.files
                ),
            )
        )
        dec = cap.decryption
        self.add(
            f"- Time span: {md(fmt_time(cap.first_ts))} → {md(fmt_time(cap.last_ts))} "
            f"({md(fmt_duration(cap.duration))})",
            f"- Packets: {packet_counts(cap)}",
            f"- Decrypted: {decryption_counts(dec)}",
        )
        for text in dec.missing:
            self.add(f"- Missing key: {md(text, 600)}")
        for note in cap.notes:
            self.add(f"- Note: {md(note, 600)}")
        self.add("")

    def devices(self) -> None:
        r = self.r
        self.add(f"## Devices ({len(r.devices)})", "")
        self.add(
            *_table(
                [*DEVICE_HEADERS_START, "decrypted"],
                (
                    [
                        md(d.device_id or "(ID unknown)"),
                        md((d.key_fingerprint or "")[:16]),
                        md(d.platform or ""),
                        "<br>".join(md(src, 300) for src in d.sources),
                        md(", ".join(d.addresses), 300),
                        md(", ".join(d.sessions[:20]) + (" …" if len(d.sessions) > 20 else "")),
                        "yes" if d.decrypted else "no",
                    ]
                    for d in r.devices
                ),
            )
        )

    def sessions(self) -> None:
        r = self.r
        self.add(f"## Sessions ({len(r.sessions)})", "")
        self.add(
            *_table(
                [
                    *SESSION_HEADERS_START,
                    "msgs ↑/↓",
                    "handshake",
                    "errors/warnings",
                ],
                (
                    [
                        md(s.id),
                        md(s.transport.upper()),
                        md(device_label(s)),
                        md(s.platform or ""),
                        md(s.device_endpoint or ""),
                        md(fmt_rel(s.start, self.t0)),
                        md(fmt_duration(s.duration)),
                        md(s.outcome),
                        f"{s.messages_d2c}/{s.messages_c2d}",
                        md(handshake_summary(s)),
                        f"{s.findings.get('error', 0)}/{s.findings.get('warning', 0)}",
                    ]
                    for s in r.sessions
                ),
            )
        )
        opened = len(r.sessions) <= OPEN_DETAILS
        for s in r.sessions:
            self.session(s, opened)

    def session(self, s: SessionReport, opened: bool) -> None:
        self.add(
            f"<details{' open' if opened else ''}><summary><b>{md(s.id)}</b> · "
            f"{md(device_label(s))} · {md(s.platform or s.transport.upper())} · {md(s.outcome)}"
            f" · {md(fmt_duration(s.duration))}</summary>",
            "",
        )
        self.add(f"### Session {md(s.id)}", "")
        rows: list[list[str]] = [["Transport", md(s.transport.upper())]]
        if s.device_id:
            rows.append(
                [
                    "Device ID",
                    md(s.device_id)
                    + (f" (from {md(s.device_id_source)})" if s.device_id_source else ""),
                ]
            )
        if s.platform is not None:
            rows.append(["Platform", f"{md(s.platform)} (ID {s.platform_id})"])
        if s.product_id is not None:
            rows.append(["Product", f"ID {s.product_id}, firmware version {s.product_version}"])
        if s.system_version is not None:
            rows.append(["System firmware", f"module version {s.system_version}"])
        if s.hello_flags is not None:
            words = ", ".join(s.hello_flag_words) or "none"
            rows.append(["Hello flags", f"{md(words)} (0x{s.hello_flags:02x})"])
        rows += [
            ["Device address", md(s.device_endpoint or "")],
            ["Cloud address", md(s.cloud_endpoint or "")],
            ["Time", md(session_span(s))],
            ["Outcome", md(s.outcome + (f", closed by {s.closed_by}" if s.closed_by else ""))],
            ["Keys", md(s.key_source or "none: not decrypted", 300)],
            ["Traffic", md(session_traffic(s))],
        ]
        if s.device_key_fingerprint:
            rows.append(["Device key fingerprint", md(s.device_key_fingerprint)])
        if s.retransmissions:
            rows.append(["Retransmissions", str(s.retransmissions)])
        self.add(*_table(["", ""], rows))
        self.add("#### Handshake", "")
        for c in s.handshake:
            sym, words = CHECK_SYMBOLS.get(c.status, ("·", c.status))
            detail = f" — {md(c.detail, 600)}" if c.detail else ""
            self.add(f"- {sym} {md(c.label)} ({md(words)}){detail}")
        self.add("")
        self.flow(s)
        if s.timeline.d2c or s.timeline.c2d:
            self.add(
                "#### Messages over time",
                "",
                f"bin {md(fmt_duration(s.timeline.bin_width))}, "
                f"span {md(fmt_duration(s.timeline.bin_width * len(s.timeline.d2c)))}",
                "",
                f"    device→cloud  {sparkline(s.timeline.d2c)}",
                f"    cloud→device  {sparkline(s.timeline.c2d)}",
                "",
            )
        self.add("#### Message kinds", "")
        self.add(
            *_table(["kind", "D→C", "C→D"], ([md(k.kind), str(k.d2c), str(k.c2d)] for k in s.kinds))
        )
        self.traffic(s)
        if s.ota:
            self.add("#### Firmware transfers", "")
            self.add(*self.ota_table(s.ota))
        mine = session_findings(self.r.findings, s.id)
        if mine:
            self.add(f"#### Findings ({len(mine)})", "")
            self.add(*self.finding_table(mine[:100], with_session=False))
        self.add("</details>", "")

    def flow(self, s: SessionReport) -> None:
        if not s.flow:
            return
        t0 = s.flow[0].ts
        self.add(
            "#### Auth flow",
            "",
            "```mermaid",
            "sequenceDiagram",
            "    participant D as Device",
            "    participant C as Cloud",
        )
        for step in s.flow:
            rel = f"+{step.ts - t0:.3f} s"
            label = step.label + (f" {step.size} B" if step.size else "")
            text = _mermaid(f"{label} ({rel})" if step.status != "more" else label)
            if step.direction is None:
                self.add(f"    Note over D,C: {text or 'more'}")
                if step.note:
                    self.add(f"    Note over D,C: {_mermaid(step.note, 90)}")
                continue
            arrow = "-x" if step.status == "failed" else "->>"
            if step.status == "warning":
                arrow = "--)"
            src, dst = ("D", "C") if step.direction == "device->cloud" else ("C", "D")
            self.add(f"    {src}{arrow}{dst}: {text}")
            if step.note:
                self.add(f"    Note over D,C: {_mermaid(step.note, 90)}")
        self.add("```", "")

    def traffic(self, s: SessionReport) -> None:
        if s.events:
            self.add("#### Events", "")
            self.add(
                *_table(
                    EVENT_HEADERS,
                    (
                        [
                            md(e.direction),
                            md(e.name, 120),
                            md(e.visibility),
                            str(e.count),
                            md(fmt_rel(e.first_ts, self.t0)),
                            md(fmt_rel(e.last_ts, self.t0)),
                            md(e.ttl if e.ttl is not None else ""),
                            md(e.sample_data, 200) + (" (hex)" if e.data_format == "hex" else ""),
                            md(", ".join(f"{k} ×{v}" for k, v in e.answers.items())),
                        ]
                        for e in s.events
                    ),
                )
            )
        if s.subscriptions:
            self.add("#### Subscriptions", "")
            self.add(
                *_table(
                    SUBSCRIPTION_HEADERS,
                    (
                        [
                            md(x.filter, 120),
                            "my devices" if x.my_devices else "all",
                            str(x.count),
                            md(x.answer),
                        ]
                        for x in s.subscriptions
                    ),
                )
            )
        if s.functions:
            self.add("#### Function calls", "")
            rows = []
            for f in s.functions:
                calls = "<br>".join(
                    f"{md(fmt_rel(c.ts, self.t0))} {md(c.argument, 120)} → "
                    + (md(c.result) if c.result is not None else md(c.status or "no result"))
                    + (f" ({md(fmt_latency(c.latency))})" if c.latency is not None else "")
                    for c in f.samples
                )
                rows.append([md(f.name, 120), str(f.calls), str(f.errors), calls])
            self.add(*_table(FUNCTION_HEADERS, rows))
        if s.variables:
            self.add("#### Variable reads", "")
            self.add(
                *_table(
                    VARIABLE_HEADERS,
                    (
                        [
                            md(v.name, 120),
                            md(v.type),
                            str(v.reads),
                            str(v.errors),
                            "<br>".join(md(x, 200) for x in v.values),
                        ]
                        for v in s.variables
                    ),
                )
            )
        for d in s.describes:
            self.add(f"#### Describe ({md(', '.join(d.types))})", "")
            bits = [f"received {md(fmt_rel(d.ts, self.t0))} ({md(d.direction)})"]
            if d.platform_id is not None:
                bits.append(f"platform ID {d.platform_id}")
            if d.module_count is not None:
                bits.append(f"{d.module_count} modules")
            self.add("- " + ", ".join(bits))
            if d.functions:
                self.add("- functions: " + ", ".join(md(f, 100) for f in d.functions))
            if d.variables:
                self.add(
                    "- variables: "
                    + ", ".join(f"{md(k, 100)} ({md(v)})" for k, v in d.variables.items())
                )
            if d.json:
                self.add(f"- raw: {md(d.json, 2000)}")
            self.add("")
        ts = s.time_sync
        if ts.requests or ts.responses:
            offset = time_sync_offset(ts)
            self.add(
                "#### Time sync",
                "",
                f"{ts.requests} requests, {ts.responses} answers{md(offset)}",
                "",
            )
        if s.pings:
            self.add("#### Keep-alive pings", "")
            self.add(*_table(PING_HEADERS, ping_rows(s.pings, md)))
        if s.commands:
            self.add("#### Control messages", "")
            self.add(
                *_table(
                    COMMAND_HEADERS,
                    (
                        [
                            md(fmt_rel(c.ts, self.t0)),
                            md(c.kind),
                            md(c.direction),
                            md(c.detail, 200),
                            md(c.answer),
                        ]
                        for c in s.commands
                    ),
                )
            )

    def ota_table(self, transfers: list[OtaTransfer]) -> list[str]:
        return _table(
            [
                "transfer",
                "mode",
                "size",
                *OTA_PROGRESS_HEADERS,
                "image",
            ],
            (
                [
                    f"{md(t.session)} #{t.index}",
                    md(t.mode),
                    md(fmt_size(t.file_size)),
                    md(chunk_text(t)),
                    md(crc_text(t)),
                    str(t.missed),
                    md(fmt_duration(t.duration)),
                    md(fmt_rate(t.throughput)),
                    md(f"{ota_result(t)}: {t.result}", 300),
                    (
                        md(f"SHA-256 {t.sha256}, {fmt_size(t.size)}")
                        if t.sha256
                        else md(t.image_note, 300)
                    )
                    + (f"<br>written to {md(t.extracted, 300)}" if t.extracted else ""),
                ]
                for t in transfers
            ),
        )

    def latency(self) -> None:
        self.add("## Latency", "")
        self.add(*_table(LATENCY_HEADERS, latency_rows(self.r.latency, md)))

    def finding_table(
        self, findings: list[FindingEntry], *, with_session: bool = True
    ) -> list[str]:
        headers = finding_headers(with_session)
        rows = []
        for f in findings:
            ref = f.message_ref or ""
            if f.direction and not ref.endswith(")"):
                ref = f"{ref} ({f.direction})".strip()
            row = [md(fmt_rel(f.ts, self.t0)), md(f.code), md(f.message, 1000), md(ref)]
            if with_session:
                row.insert(1, md(f.session or ""))
            rows.append(row)
        return _table(headers, rows)

    def findings(self) -> None:
        r = self.r
        counts = r.severity_counts
        self.add(
            "## Findings",
            "",
            f"{counts.get('error', 0)} errors · {counts.get('warning', 0)} warnings · "
            f"{counts.get('info', 0)} info",
            "",
        )
        self.add(
            *_table(
                FINDING_GROUP_HEADERS,
                (
                    [
                        md(g.severity),
                        md(g.code),
                        str(g.count),
                        md(", ".join(g.sessions[:10]) + (" …" if len(g.sessions) > 10 else "")),
                        md(g.example, 300),
                    ]
                    for g in r.finding_groups
                ),
            )
        )
        for severity, items, opened in findings_by_severity(r.findings):
            self.add(
                f"<details{opened}><summary>{severity.capitalize()} ({len(items)})</summary>", ""
            )
            self.add(*self.finding_table(items[:MAX_FINDING_ROWS]))
            if len(items) > MAX_FINDING_ROWS:
                self.add(f"… {len(items) - MAX_FINDING_ROWS} more.", "")
            self.add("</details>", "")


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown."""
    return _Md(report).render()
