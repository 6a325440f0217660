"""Parts of the report that every renderer builds the same way from the report model.

Table headers, the plain-text wording of summary lines and the cells of tables whose
columns are the same in each format. Nothing here escapes on its own: a renderer passes
its own escaping function (``esc`` for HTML, ``md`` for Markdown), so format-specific
escaping stays with the renderer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from dissector.report.fmt import fmt_bytes, fmt_duration, fmt_latency, fmt_time
from dissector.report.model import (
    CaptureSummary,
    Decryption,
    FindingEntry,
    LatencyStat,
    PingStat,
    SessionReport,
    TimeSync,
)

#: An escaping function of a renderer: any value to safe text in its format.
Escape = Callable[[object], str]

EVENT_HEADERS = [
    "from",
    "name",
    "visibility",
    "count",
    "first seen",
    "last seen",
    "TTL (s)",
    "sample data",
    "cloud answers",
]
SUBSCRIPTION_HEADERS = ["filter", "scope", "count", "answer"]
FUNCTION_HEADERS = ["function", "calls", "errors", "argument → result (latency)"]
VARIABLE_HEADERS = ["variable", "type", "reads", "errors", "values seen"]
PING_HEADERS = [
    "sent by",
    "count",
    "acknowledged",
    "interval (median)",
    "interval (max)",
    "round trip (median)",
]
COMMAND_HEADERS = ["time", "kind", "from", "detail", "answer"]
LATENCY_HEADERS = ["request", "response", "answered by", "count", "median", "p95", "max"]
FINDING_GROUP_HEADERS = ["severity", "code", "count", "sessions", "example"]
DEVICE_HEADERS_START = [
    "device ID",
    "key fingerprint",
    "platform",
    "seen via",
    "addresses",
    "sessions",
]
#: The columns of a firmware transfer table from the chunk counts to the result.
OTA_PROGRESS_HEADERS = [
    "chunks",
    "CRC bad/rejected",
    "missed",
    "duration",
    "throughput",
    "result",
]
SESSION_HEADERS_START = [
    "session",
    "transport",
    "device",
    "platform",
    "device address",
    "start",
    "duration",
    "outcome",
]


def finding_headers(with_session: bool = True) -> list[str]:
    """Headers of a table of single findings (with a session column if asked)."""
    headers = ["time", "code", "message", "points to"]
    if with_session:
        headers.insert(1, "session")
    return headers


def handshake_failures(sessions: Iterable[SessionReport]) -> list[SessionReport]:
    """The sessions whose handshake (or whole session) failed."""
    return [s for s in sessions if s.outcome in ("handshake failed", "failed")]


def session_findings(findings: Iterable[FindingEntry], session_id: str) -> list[FindingEntry]:
    """The findings of one session, in report order."""
    return [f for f in findings if f.session == session_id]


def findings_by_severity(
    findings: list[FindingEntry],
) -> Iterator[tuple[str, list[FindingEntry], str]]:
    """Each severity that has findings, with them and ``" open"`` when its list starts open
    (errors and warnings, up to 200 of them), else ``""``."""
    for severity in ("error", "warning", "info"):
        items = [f for f in findings if f.severity == severity]
        if not items:
            continue
        opened = " open" if severity != "info" and len(items) <= 200 else ""
        yield severity, items, opened


def capture_span(cap: CaptureSummary) -> str:
    """First and last packet time of the capture, with its duration."""
    return f"{fmt_time(cap.first_ts)} → {fmt_time(cap.last_ts)} ({fmt_duration(cap.duration)})"


def packet_counts(cap: CaptureSummary) -> str:
    """Packets in the capture, by transport."""
    return (
        f"{cap.packets} (TCP {cap.tcp_packets}, UDP {cap.udp_packets}, "
        f"other {cap.undecoded_packets})"
    )


def decryption_counts(dec: Decryption) -> str:
    """Messages and sessions decrypted, as one sentence."""
    return (
        f"{dec.decrypted} of {dec.messages} messages; sessions fully "
        f"{dec.sessions_decrypted}, partly {dec.sessions_partial}, not at all "
        f"{dec.sessions_encrypted}"
    )


def session_span(s: SessionReport) -> str:
    """Start and end time of a session, with its duration."""
    return f"{fmt_time(s.start)} → {fmt_time(s.end)} ({fmt_duration(s.duration)})"


def session_traffic(s: SessionReport) -> str:
    """Messages and bytes of a session each way, and how many were decrypted."""
    return (
        f"device→cloud {s.messages_d2c} messages, {fmt_bytes(s.bytes_d2c)}; "
        f"cloud→device {s.messages_c2d} messages, {fmt_bytes(s.bytes_c2d)}; "
        f"decrypted {s.decrypted_d2c + s.decrypted_c2d}"
    )


def time_sync_offset(ts: TimeSync) -> str:
    """The clock offset clause of the time sync line (empty when unknown)."""
    if ts.last_offset is None:
        return ""
    return f"; cloud clock minus capture clock {ts.last_offset:+.1f} s"


def ping_rows(pings: Iterable[PingStat], e: Escape) -> Iterator[list[str]]:
    """Rows of the keep-alive ping table (:data:`PING_HEADERS`), escaped with ``e``."""
    for p in pings:
        yield [
            e(p.sender),
            str(p.count),
            str(p.acked),
            e(fmt_duration(p.interval_median)),
            e(fmt_duration(p.interval_max)),
            e(fmt_latency(p.rtt_median)),
        ]


def latency_rows(latency: Iterable[LatencyStat], e: Escape) -> Iterator[list[str]]:
    """Rows of the latency table (:data:`LATENCY_HEADERS`), escaped with ``e``."""
    for lat in latency:
        yield [
            e(lat.request),
            e(lat.response),
            e(lat.answered_by),
            str(lat.count),
            e(fmt_latency(lat.median)),
            e(fmt_latency(lat.p95)),
            e(fmt_latency(lat.max)),
        ]
