"""The HTML report: one self-contained file (inline CSS and SVG, no script, no external
reference of any kind; a Content-Security-Policy forbids fetching anything).

Summaries come first (cards, the sessions table), details are folded in ``<details>``
(open when there are few sessions). Every string goes through
:func:`~dissector.report.svg.esc`: ``& < > " '`` are escaped everywhere, control
characters and invalid UTF-8 show as ``\\xNN``, huge strings are truncated with a marker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

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
    outcome_class,
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
    capture_span,
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
from dissector.report.svg import esc, sequence_svg, timeline_svg

#: Sessions whose details are open by default when there are at most this many.
OPEN_DETAILS = 3
#: Findings listed per severity at most (all are counted).
MAX_FINDING_ROWS = 500
MAX_SESSION_FINDINGS = 100

_ANCHOR = re.compile(r"[^A-Za-z0-9_-]")

CSS = """
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#667085;--line:#dfe3ea;--accent:#2f6fde;
--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--info:#3b6fb6;--up:#2f6fde;--down:#e08a1e;
--code:#f0f2f5}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--card:#1c2027;--fg:#e4e7ec;
--muted:#98a2b3;--line:#313743;--accent:#6ea2ff;--ok:#4cc76a;--bad:#ff6b6b;--warn:#f0ad4e;
--info:#7fb0ff;--up:#6ea2ff;--down:#f0a04b;--code:#242a33}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header{padding:22px 32px 10px}
header h1{margin:0 0 4px;font-size:22px}
header .sub{color:var(--muted)}
nav{position:sticky;top:0;z-index:2;background:var(--bg);border-bottom:1px solid var(--line);
padding:8px 32px}
a{color:var(--accent)}
nav a{margin-right:18px;color:var(--accent);text-decoration:none;font-weight:600}
main{padding:8px 32px 40px;max-width:1400px}
section{margin-top:26px}
h2{font-size:18px;margin:0 0 10px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
h4{font-size:13px;margin:14px 0 4px;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:12px 16px;min-width:150px}
.card .n{font-size:24px;font-weight:700}
.card .l{color:var(--muted);font-size:12px}
table{border-collapse:collapse;background:var(--card);border:1px solid var(--line);
border-radius:8px;overflow:hidden;margin:4px 0 10px;max-width:100%}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;
vertical-align:top}
th{background:var(--code);font-size:12px;color:var(--muted);white-space:nowrap}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.tw{overflow-x:auto;max-width:100%}
.tw>table{margin:0}
.tw{margin:4px 0 10px}
.hash{word-break:break-all;display:inline-block;width:34ch}
.mono,code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:12.5px}
td.wrap{max-width:520px;overflow-wrap:anywhere}
pre{background:var(--code);padding:10px;border-radius:6px;overflow:auto;max-height:360px;
white-space:pre-wrap;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;
font-weight:600;border:1px solid currentColor;white-space:nowrap}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.info{color:var(--info)}
.error{color:var(--bad)}.warning{color:var(--warn)}
.muted{color:var(--muted)}
.nowrap{white-space:nowrap}
details.session{background:var(--card);border:1px solid var(--line);border-radius:10px;
margin:10px 0;padding:0 16px}
details.session>summary{cursor:pointer;padding:10px 0;font-weight:600}
details.session[open]>summary{border-bottom:1px solid var(--line);margin-bottom:8px}
details.sev{margin:8px 0}
details.sev>summary{cursor:pointer;font-weight:600;padding:4px 0}
dl.grid{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:6px 0}
dl.grid dt{color:var(--muted)}
dl.grid dd{margin:0;overflow-wrap:anywhere}
ul.checklist{list-style:none;padding:0;margin:4px 0}
ul.checklist li{padding:3px 0}
ul.checklist .sym{display:inline-block;width:20px;font-weight:700}
ul.checklist .detail{color:var(--muted)}
ul.checklist li.failed .detail{color:var(--bad)}
.figure{overflow-x:auto;background:var(--card);border:1px solid var(--line);
border-radius:8px;padding:6px;margin:6px 0;display:inline-block;max-width:100%}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
fill:var(--fg)}
svg .lifeline{stroke:var(--muted);stroke-dasharray:4 4}
svg .actor{fill:var(--code);stroke:var(--line)}
svg .actor-name{font-weight:700;font-size:13px}
svg .actor-sub,svg .seq-time,svg .axis{font-size:10.5px;fill:var(--muted)}
svg .seq-time{font-family:ui-monospace,Menlo,Consolas,monospace}
svg .seq-label{font-size:12px}
svg .seq-detail{font-size:10.5px;fill:var(--muted)}
svg .seq-more{font-size:11px;fill:var(--muted)}
svg .seq-arrow{stroke:var(--accent);stroke-width:1.6}
svg .seq-head{fill:var(--accent)}
svg .seq-arrow.bad{stroke:var(--bad)}svg .seq-head.bad{fill:var(--bad)}
svg .seq-arrow.warn{stroke:var(--warn);stroke-dasharray:5 3}svg .seq-head.warn{fill:var(--warn)}
svg .bad .seq-label{fill:var(--bad);font-weight:700}
svg .seq-note{fill:var(--code);stroke:var(--line)}
svg .seq-note.bad{stroke:var(--bad)}
svg .bar.up{fill:var(--up)}svg .bar.down{fill:var(--down)}
svg .baseline,svg .tick{stroke:var(--muted);stroke-width:1}
svg .legend{font-size:11px}svg .legend.up{fill:var(--up)}svg .legend.down{fill:var(--down)}
svg .marker.error{fill:var(--bad)}svg .marker.warning{fill:var(--warn)}
footer{color:var(--muted);padding:10px 32px 30px;font-size:12px}
"""


def _anchor(session_id: str) -> str:
    return "s-" + _ANCHOR.sub("_", session_id)


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Iterable[int] = (),
    cls: str = "",
) -> str:
    """A table; ``rows`` hold already escaped HTML cells."""
    nums = set(numeric)
    head = "".join(
        f'<th class="num">{h}</th>' if i in nums else f"<th>{h}</th>" for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i in nums else f"<td>{c}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return '<p class="muted">None.</p>'
    attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="tw"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {cls}">{esc(text)}</span>'


def _link(session_id: str | None) -> str:
    if not session_id:
        return ""
    return f'<a href="#{_anchor(session_id)}">{esc(session_id)}</a>'


def _points_to(f: FindingEntry) -> str:
    """The message a finding points to, with its direction."""
    ref = f.message_ref or ""
    if f.direction and not ref.endswith(")"):
        arrow = "D→C" if f.direction == "device->cloud" else "C→D"
        ref = f"{ref} ({arrow})" if ref else arrow
    return ref.replace("(D->C)", "(D→C)").replace("(C->D)", "(C→D)")


def _nowrap(value: object) -> str:
    return f'<span class="nowrap">{esc(value)}</span>'


def _dev(value: object, limit: int = 200) -> str:
    """A device-controlled string in a monospace cell."""
    return f'<span class="mono">{esc(value, limit)}</span>'


class _Html:
    def __init__(self, report: Report) -> None:
        self.r = report
        self.t0 = report.capture.first_ts
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    # -- page ------------------------------------------------------------------------------

    def page(self) -> str:
        r = self.r
        names = ", ".join(f.name for f in r.capture.files) or "capture"
        title = f"Particle capture report: {names}"
        self.add('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
        self.add('<meta name="viewport" content="width=device-width, initial-scale=1">')
        self.add(
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">"
        )
        self.add('<meta name="referrer" content="no-referrer">')
        self.add(f"<title>{esc(title, 200)}</title><style>{CSS}</style></head><body>")
        sub = f"{esc(r.generator)} · {esc(names, 300)}"
        if r.redacted:
            sub += " · " + _badge("redacted", "warn")
        self.add(f'<header><h1>Particle capture report</h1><div class="sub">{sub}</div></header>')
        links = [
            ("summary", "Summary"),
            ("capture", "Capture"),
            ("devices", "Devices"),
            ("sessions", "Sessions"),
        ]
        if r.ota:
            links.append(("ota", "Firmware"))
        links += [("latency", "Latency"), ("findings", "Findings")]
        self.add("<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav><main>")
        self.summary()
        self.capture()
        self.devices()
        self.sessions()
        if r.ota:
            self.add('<section id="ota"><h2>Firmware transfers</h2>')
            self.add(self.ota_table(r.ota))
            self.add("</section>")
        self.latency()
        self.findings()
        self.add(
            f"</main><footer>Generated by {esc(r.generator)}. Times are UTC; “+” times are "
            "relative to the start of the capture (tables) or of the session (diagrams)."
            "</footer></body></html>\n"
        )
        return "".join(self.parts)

    # -- sections --------------------------------------------------------------------------

    def summary(self) -> None:
        r = self.r
        cap = r.capture
        dec = cap.decryption
        counts = r.severity_counts
        pct = f"{100 * dec.decrypted / dec.messages:.0f}%" if dec.messages else "–"
        cards = [
            (str(cap.sessions), f"sessions (TCP {cap.sessions_tcp}, DTLS {cap.sessions_dtls})", ""),
            (str(len(r.devices)), "devices seen", ""),
            (f"{dec.decrypted}/{dec.messages}", f"messages decrypted ({pct})", ""),
            (fmt_duration(cap.duration) or "–", "time span", ""),
            (str(counts.get("error", 0)), "errors", "bad" if counts.get("error") else ""),
            (str(counts.get("warning", 0)), "warnings", "warn" if counts.get("warning") else ""),
            (str(len(r.ota)), "firmware transfers", ""),
        ]
        self.add('<section id="summary"><h2>Summary</h2><div class="cards">')
        for n, label, cls in cards:
            self.add(
                f'<div class="card"><div class="n {cls}">{esc(n)}</div>'
                f'<div class="l">{esc(label)}</div></div>'
            )
        self.add("</div>")
        failed = handshake_failures(r.sessions)
        if failed:
            self.add('<h3 class="bad">Handshake failures</h3><ul>')
            for s in failed[:50]:
                self.add(f"<li>{_link(s.id)}: {esc(s.handshake_failure or s.outcome, 500)}</li>")
            if len(failed) > 50:
                self.add(f"<li>… {len(failed) - 50} more</li>")
            self.add("</ul>")
        self.add("</section>")

    def capture(self) -> None:
        cap = self.r.capture
        self.add('<section id="capture"><h2>Capture</h2>')
        rows = [
            [
                _dev(f.name, 200),
                esc(f.format + (" (gzip)" if f.compressed else "")),
                esc(fmt_bytes(f.size)),
                esc(", ".join(f.linktypes)),
                str(f.packets),
                esc(fmt_time(f.first_ts)),
                esc(fmt_time(f.last_ts)),
                esc(("truncated " if f.truncated else "") + ("corrupt" if f.corrupt else "")),
            ]
            for f in cap.files
        ]
        self.add(
            _table(
                ["file", "format", "size", "link type", "packets", "first", "last", "problems"],
                rows,
                numeric=[4],
            )
        )
        dec = cap.decryption
        items = [
            ("Time span", capture_span(cap)),
            ("Packets", packet_counts(cap)),
            ("Sessions", f"{cap.sessions} (TCP {cap.sessions_tcp}, DTLS {cap.sessions_dtls})"),
            ("Decrypted", decryption_counts(dec)),
        ]
        self.add('<dl class="grid">')
        for k, v in items:
            self.add(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>")
        self.add("</dl>")
        if dec.missing:
            self.add("<h4>What could not be decrypted, and which key is missing</h4><ul>")
            for text in dec.missing:
                self.add(f'<li class="warn">{esc(text, 600)}</li>')
            self.add("</ul>")
        for note in cap.notes:
            self.add(f'<p class="muted">{esc(note, 600)}</p>')
        self.add("</section>")

    def devices(self) -> None:
        r = self.r
        self.add(f'<section id="devices"><h2>Devices ({len(r.devices)})</h2>')
        self.add(
            '<p class="muted">Every device identity seen: from decrypted Hellos and identity '
            "messages, and without keys from DNS queries for &lt;ID&gt;.udp.particle.io, "
            "presence announcements, the 254 move-session trailer and DTLS device public "
            "keys.</p>"
        )
        rows = [
            [
                _dev(d.device_id or "(ID unknown)"),
                _dev((d.key_fingerprint or "")[:16]),
                esc(d.platform or ""),
                "<br>".join(esc(src, 300) for src in d.sources),
                esc(", ".join(d.addresses), 300),
                ", ".join(_link(sid) for sid in d.sessions[:20])
                + (" …" if len(d.sessions) > 20 else ""),
                _nowrap(fmt_rel(d.first_ts, self.t0)),
                _badge("yes", "ok") if d.decrypted else _badge("no", "warn"),
            ]
            for d in r.devices
        ]
        self.add(
            _table(
                [*DEVICE_HEADERS_START, "first seen", "decrypted"],
                rows,
            )
        )
        self.add("</section>")

    def sessions(self) -> None:
        r = self.r
        self.add(f'<section id="sessions"><h2>Sessions ({len(r.sessions)})</h2>')
        rows = []
        for s in r.sessions:
            errors = s.findings.get("error", 0)
            warnings = s.findings.get("warning", 0)
            found = []
            if errors:
                found.append(f'<span class="error">{errors} E</span>')
            if warnings:
                found.append(f'<span class="warning">{warnings} W</span>')
            rows.append(
                [
                    _link(s.id),
                    esc(s.transport.upper()),
                    _dev(device_label(s), 40),
                    esc(s.platform or ""),
                    _dev(s.device_endpoint or ""),
                    _nowrap(fmt_rel(s.start, self.t0)),
                    _nowrap(fmt_duration(s.duration)),
                    _badge(s.outcome, outcome_class(s.outcome)),
                    f"{s.messages_d2c} / {s.messages_c2d}",
                    f"{s.decrypted_d2c + s.decrypted_c2d}/{s.messages_d2c + s.messages_c2d}",
                    esc(handshake_summary(s), 80),
                    " ".join(found),
                ]
            )
        self.add(
            _table(
                [
                    *SESSION_HEADERS_START,
                    "msgs ↑ / ↓",
                    "decrypted",
                    "handshake",
                    "findings",
                ],
                rows,
                numeric=[8, 9],
                cls="sessions",
            )
        )
        opened = len(r.sessions) <= OPEN_DETAILS
        for s in r.sessions:
            self.session(s, opened)
        self.add("</section>")

    def session(self, s: SessionReport, opened: bool) -> None:
        kind = s.platform or s.transport.upper()
        summary = (
            f"{esc(s.id)} · {_dev(device_label(s), 40)} · {esc(kind)} · "
            f"{_badge(s.outcome, outcome_class(s.outcome))} · {esc(fmt_duration(s.duration))} · "
            f"{s.messages_d2c + s.messages_c2d} messages"
        )
        self.add(
            f'<details class="session" id="{_anchor(s.id)}"{" open" if opened else ""}>'
            f"<summary>{summary}</summary>"
        )
        self.overview(s)
        self.add("<h3>Handshake</h3>")
        self.checklist(s)
        self.add("<h4>Auth flow</h4>")
        self.add(f'<div class="figure">{sequence_svg(s)}</div>')
        self.add("<h3>Messages over time</h3>")
        self.add(f'<div class="figure">{timeline_svg(s)}</div>')
        self.add("<h4>Message kinds</h4>")
        self.add(
            _table(
                ["kind", "device→cloud", "cloud→device"],
                ([esc(k.kind), str(k.d2c), str(k.c2d)] for k in s.kinds),
                numeric=[1, 2],
            )
        )
        self.traffic(s)
        if s.ota:
            self.add("<h3>Firmware transfers</h3>")
            self.add(self.ota_table(s.ota))
        mine = session_findings(self.r.findings, s.id)
        if mine:
            self.add(f"<h3>Findings ({len(mine)})</h3>")
            self.add(self.finding_table(mine[:MAX_SESSION_FINDINGS], with_session=False))
            if len(mine) > MAX_SESSION_FINDINGS:
                self.add(f'<p class="muted">… {len(mine) - MAX_SESSION_FINDINGS} more below.</p>')
        self.add("</details>")

    def overview(self, s: SessionReport) -> None:
        items: list[tuple[str, str]] = [("Transport", esc(s.transport.upper()))]
        if s.device_id:
            src = f" (from {esc(s.device_id_source)})" if s.device_id_source else ""
            items.append(("Device ID", _dev(s.device_id) + src))
        if s.platform is not None:
            items.append(("Platform", f"{esc(s.platform)} (ID {s.platform_id})"))
        if s.product_id is not None:
            items.append(("Product", f"ID {s.product_id}, firmware version {s.product_version}"))
        if s.system_version is not None:
            items.append(("System firmware", f"module version {s.system_version}"))
        if s.hello_flags is not None:
            words = ", ".join(s.hello_flag_words) or "none"
            items.append(
                (
                    "Hello flags",
                    f'{esc(words)} <span class="muted">(0x{s.hello_flags:02x}, '
                    f"variant {esc(s.hello_variant)})</span>",
                )
            )
        items.append(("Device address", _dev(s.device_endpoint or "")))
        items.append(("Cloud address", _dev(s.cloud_endpoint or "")))
        items.append(("Time", esc(session_span(s))))
        closed = f", closed by {esc(s.closed_by)}" if s.closed_by else ""
        items.append(("Outcome", _badge(s.outcome, outcome_class(s.outcome)) + closed))
        items.append(("Keys", esc(s.key_source or "none: not decrypted", 300)))
        if s.salt_convention:
            items.append(("Salt convention", esc(s.salt_convention)))
        if s.device_key_fingerprint:
            items.append(("Device key fingerprint", _dev(s.device_key_fingerprint)))
        items.append(("Traffic", esc(session_traffic(s))))
        if s.retransmissions:
            items.append(("Retransmissions", str(s.retransmissions)))
        self.add('<dl class="grid">')
        for k, v in items:
            self.add(f"<dt>{esc(k)}</dt><dd>{v}</dd>")
        self.add("</dl>")

    def checklist(self, s: SessionReport) -> None:
        if not s.handshake:
            self.add('<p class="muted">No handshake checklist.</p>')
            return
        self.add('<ul class="checklist">')
        for c in s.handshake:
            sym, words = CHECK_SYMBOLS.get(c.status, ("·", c.status))
            cls = {"passed": "ok", "failed": "bad", "not_checkable": "warn"}.get(c.status, "muted")
            detail = f' <span class="detail">— {esc(c.detail, 600)}</span>' if c.detail else ""
            self.add(
                f'<li class="{esc(c.status)}"><span class="sym {cls}" title="{esc(words)}">'
                f'{sym}</span>{esc(c.label)} <span class="muted">({esc(words)})</span>'
                f"{detail}</li>"
            )
        self.add("</ul>")

    def traffic(self, s: SessionReport) -> None:
        if s.events:
            self.add("<h3>Events</h3>")
            rows = []
            for e in s.events:
                answers = ", ".join(f"{esc(k)} ×{v}" for k, v in e.answers.items())
                rows.append(
                    [
                        esc(e.direction),
                        _dev(e.name, 120),
                        esc(e.visibility),
                        str(e.count),
                        _nowrap(fmt_rel(e.first_ts, self.t0)),
                        _nowrap(fmt_rel(e.last_ts, self.t0)),
                        esc(e.ttl if e.ttl is not None else ""),
                        f'<span class="mono">{esc(e.sample_data, 200)}</span>'
                        + (' <span class="muted">(hex)</span>' if e.data_format == "hex" else ""),
                        answers,
                    ]
                )
            self.add(
                _table(
                    EVENT_HEADERS,
                    rows,
                    numeric=[3],
                )
            )
            if s.events_dropped:
                self.add(f'<p class="muted">{s.events_dropped} more events of other names.</p>')
        if s.subscriptions:
            self.add("<h3>Subscriptions</h3>")
            self.add(
                _table(
                    SUBSCRIPTION_HEADERS,
                    (
                        [
                            _dev(sub.filter, 120),
                            esc("my devices" if sub.my_devices else "all"),
                            str(sub.count),
                            esc(sub.answer),
                        ]
                        for sub in s.subscriptions
                    ),
                    numeric=[2],
                )
            )
        if s.functions:
            self.add("<h3>Function calls</h3>")
            rows = []
            for f in s.functions:
                samples = "<br>".join(
                    f'{esc(fmt_rel(c.ts, self.t0))} <span class="mono">{esc(c.argument, 120)}'
                    f"</span> → "
                    + (
                        esc(c.result)
                        if c.result is not None
                        else f'<span class="bad">{esc(c.status or "no result")}</span>'
                    )
                    + (
                        f' <span class="muted">({esc(fmt_latency(c.latency))})</span>'
                        if c.latency is not None
                        else ""
                    )
                    for c in f.samples
                )
                rows.append([_dev(f.name, 120), str(f.calls), str(f.errors), samples])
            self.add(
                _table(
                    FUNCTION_HEADERS,
                    rows,
                    numeric=[1, 2],
                )
            )
        if s.variables:
            self.add("<h3>Variable reads</h3>")
            self.add(
                _table(
                    VARIABLE_HEADERS,
                    (
                        [
                            _dev(v.name, 120),
                            esc(v.type),
                            str(v.reads),
                            str(v.errors),
                            "<br>".join(
                                f'<span class="mono">{esc(x, 200)}</span>' for x in v.values
                            ),
                        ]
                        for v in s.variables
                    ),
                    numeric=[2, 3],
                )
            )
        for d in s.describes:
            self.add(f"<h3>Describe ({esc(', '.join(d.types))})</h3>")
            items = [("Received", f"{fmt_rel(d.ts, self.t0)} ({d.direction}), {d.format}")]
            if d.platform_id is not None:
                items.append(("Platform ID", str(d.platform_id)))
            if d.module_count is not None:
                items.append(("Modules", str(d.module_count)))
            self.add('<dl class="grid">')
            for k, v in items:
                self.add(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>")
            if d.functions:
                funcs = ", ".join(_dev(f, 100) for f in d.functions)
                self.add(f"<dt>Functions</dt><dd>{funcs}</dd>")
            if d.variables:
                vars_ = ", ".join(f"{_dev(k, 100)} ({esc(v)})" for k, v in d.variables.items())
                self.add(f"<dt>Variables</dt><dd>{vars_}</dd>")
            self.add("</dl>")
            if d.json:
                self.add(f"<details><summary>raw</summary><pre>{esc(d.json, 2048)}</pre></details>")
        ts = s.time_sync
        if ts.requests or ts.responses:
            self.add("<h3>Time sync</h3>")
            offset = time_sync_offset(ts)
            last = fmt_time(float(ts.last_unix_time)) if ts.last_unix_time is not None else ""
            self.add(
                f"<p>{ts.requests} requests, {ts.responses} answers"
                f"{esc(', last time given ' + last if last else '')}{esc(offset)}.</p>"
            )
        if s.pings:
            self.add("<h3>Keep-alive pings</h3>")
            self.add(_table(PING_HEADERS, ping_rows(s.pings, esc), numeric=[1, 2]))
        if s.commands:
            self.add("<h3>Control messages</h3>")
            self.add(
                _table(
                    COMMAND_HEADERS,
                    (
                        [
                            _nowrap(fmt_rel(c.ts, self.t0)),
                            esc(c.kind),
                            esc(c.direction),
                            _dev(c.detail, 200),
                            esc(c.answer),
                        ]
                        for c in s.commands
                    ),
                )
            )
            if s.commands_dropped:
                self.add(f'<p class="muted">… {s.commands_dropped} more.</p>')

    def ota_table(self, transfers: list[OtaTransfer]) -> str:
        rows = []
        for t in transfers:
            image = (
                f'<span class="mono hash">{esc(t.sha256)}</span><br>{esc(fmt_size(t.size))}'
                if t.sha256
                else f'<span class="warn">{esc(t.image_note, 300)}</span>'
            )
            if t.sha256 and t.image_note:
                image += f'<br><span class="muted">{esc(t.image_note, 300)}</span>'
            if t.extracted:
                image += f'<br>written to <span class="mono">{esc(t.extracted, 300)}</span>'
            rows.append(
                [
                    _link(t.session) + f" #{t.index}",
                    esc(t.mode),
                    _nowrap(fmt_rel(t.start_ts, self.t0)),
                    esc(fmt_size(t.file_size)),
                    esc(t.chunk_size or ""),
                    esc(chunk_text(t)),
                    esc(crc_text(t)),
                    str(t.missed),
                    esc(fmt_duration(t.duration)),
                    esc(fmt_rate(t.throughput)),
                    _badge(ota_result(t), "ok" if t.complete else "warn")
                    + f'<br><span class="muted">{esc(t.result, 300)}</span>',
                    image,
                ]
            )
        return _table(
            [
                "transfer",
                "mode",
                "start",
                "size",
                "chunk size",
                *OTA_PROGRESS_HEADERS,
                "image (SHA-256)",
            ],
            rows,
            numeric=[6, 7],
        )

    def latency(self) -> None:
        self.add('<section id="latency"><h2>Latency</h2>')
        self.add(
            '<p class="muted">Request → response times, per pairing. “answered by cloud” is how '
            "long the cloud took to answer the device.</p>"
        )
        self.add(_table(LATENCY_HEADERS, latency_rows(self.r.latency, esc), numeric=[3, 4, 5, 6]))
        self.add("</section>")

    def finding_table(self, findings: list[FindingEntry], *, with_session: bool = True) -> str:
        headers = finding_headers(with_session)
        rows: list[list[str]] = []
        for f in findings:
            row = [
                f'<span class="nowrap">{esc(fmt_rel(f.ts, self.t0))}</span>',
                f'<span class="mono">{esc(f.code)}</span>',
                f'<span class="{esc(f.severity)}">●</span> {esc(f.message, 1000)}',
                esc(_points_to(f)),
            ]
            if with_session:
                row.insert(1, _link(f.session))
            rows.append(row)
        return _table(headers, rows)

    def findings(self) -> None:
        r = self.r
        counts = r.severity_counts
        self.add(
            f'<section id="findings"><h2>Findings</h2><p>'
            f'<span class="error">{counts.get("error", 0)} errors</span> · '
            f'<span class="warning">{counts.get("warning", 0)} warnings</span> · '
            f'<span class="info">{counts.get("info", 0)} info</span></p>'
        )
        self.add(
            _table(
                FINDING_GROUP_HEADERS,
                (
                    [
                        f'<span class="{esc(g.severity)}">{esc(g.severity)}</span>',
                        f'<span class="mono">{esc(g.code)}</span>',
                        str(g.count),
                        ", ".join(_link(x) for x in g.sessions[:10])
                        + (" …" if len(g.sessions) > 10 else ""),
                        esc(g.example, 300),
                    ]
                    for g in r.finding_groups
                ),
                numeric=[2],
            )
        )
        for severity, items, opened in findings_by_severity(r.findings):
            self.add(
                f'<details class="sev"{opened}><summary class="{severity}">'
                f"{severity.capitalize()} ({len(items)})</summary>"
            )
            self.add(self.finding_table(items[:MAX_FINDING_ROWS]))
            if len(items) > MAX_FINDING_ROWS:
                self.add(f'<p class="muted">… {len(items) - MAX_FINDING_ROWS} more.</p>')
            self.add("</details>")
        if r.findings_dropped:
            self.add(
                f'<p class="muted">{r.findings_dropped} further findings were counted but not '
                "kept (see the counts above).</p>"
            )
        self.add("</section>")


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document."""
    return _Html(report).page()


__all__ = ["CSS", "render_html"]
