"""Live record output: one line per record as it completes, flushed at once.

``table``: an aligned line per message and handshake step, findings inline, and at the
end the closing summary (the session report when available, else a sessions table).
``ndjson``: exactly the records of ``dissect --format ndjson``, one per line; the closing
summary is the ``session`` records. Human text never goes to an NDJSON stream.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from tabulate import tabulate

from dissector.output.text import safe_text
from dissector.output.writers import NdjsonWriter, summary_of

__all__ = ["LiveNdjsonWriter", "LiveTableWriter", "sessions_table"]

_WIDTHS = (12, 8, 4, 26, 4, 4, 5, 8, 30)
_HEADERS = ("time", "session", "dir", "kind", "type", "code", "mid", "token", "uri", "summary")
_SEVERITY_COLOUR = {"error": "red", "warning": "yellow", "info": "blue"}


def _clock(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def _cells(cells: list[str]) -> str:
    out = []
    for text, width in zip(cells, _WIDTHS, strict=False):
        if len(text) > width:
            text = text[: width - 1] + "…"
        out.append(text.ljust(width))
    out.extend(cells[len(_WIDTHS) :])
    return " ".join(out).rstrip()


class LiveNdjsonWriter(NdjsonWriter):
    """NDJSON, flushed after every record (a reader sees each record as it happens)."""

    def write(self, rec: dict[str, Any]) -> None:
        super().write(rec)
        self.flush()


class LiveTableWriter:
    """One aligned line per message / handshake step / finding; sessions at the end."""

    def __init__(self, out: TextIO, *, colour: bool = False) -> None:
        self.out = out
        self.colour = colour
        self.sessions: list[dict[str, Any]] = []
        self.lines = 0

    def _emit(self, line: str) -> None:
        if self.lines == 0:
            self.out.write(_cells(list(_HEADERS)) + "\n")
        self.out.write(line + "\n")
        self.out.flush()
        self.lines += 1

    def write(self, rec: dict[str, Any]) -> None:
        kind = rec["record"]
        if kind == "session":
            self.sessions.append(rec)
            return
        direction = "D->C" if rec.get("direction") == "device->cloud" else "C->D"
        if kind == "finding":
            sev = rec["severity"]
            label = sev.upper()
            if self.colour:
                import click

                label = click.style(label, fg=_SEVERITY_COLOUR.get(sev, "white"))
            text = f"{safe_text(rec['code'])}: {safe_text(rec['message'], 200)}"
            session = safe_text(rec.get("session") or "-")
            self._emit(f"{_clock(rec.get('ts')).ljust(12)} {session:8} {label} {text}")
            return
        if kind == "handshake":
            cells = [_clock(rec["ts"]), safe_text(rec["session"]), direction,
                     f"handshake:{rec['step']}", "", "", "", "", "", summary_of(rec)]  # fmt: skip
        else:
            coap = rec.get("coap") or {}
            cells = [
                _clock(rec["ts"]),
                safe_text(rec["session"]),
                direction,
                safe_text(rec.get("kind")),
                coap.get("type", ""),
                coap.get("code", ""),
                str(coap.get("mid", "")),
                coap.get("token", ""),
                safe_text(coap.get("uri", "")),
                summary_of(rec),
            ]
        self._emit(_cells(cells))

    def close(self, report_text: str | None = None) -> None:
        """Print the closing summary: ``report_text`` when given, else a sessions table."""
        self.out.write("\n")
        if report_text is not None:
            self.out.write(report_text.rstrip("\n") + "\n")
        else:
            self.out.write(sessions_table(self.sessions))
        self.out.flush()


def sessions_table(sessions: list[dict[str, Any]]) -> str:
    """The ``== Sessions (N)`` table of ``session`` records."""
    rows = []
    for s in sessions:
        stats = s["stats"]
        failed = [c["check"] for c in s["handshake"] if c["status"] == "failed"]
        rows.append(
            [
                s["session"],
                s.get("device_id") or "?",
                _endpoint(s.get("device")),
                _endpoint(s.get("cloud")),
                s["outcome"],
                s.get("key_source") or "none",
                f"{stats['device->cloud']['messages']}/{stats['cloud->device']['messages']}",
                ",".join(failed) or "-",
            ]
        )
    headers = ["session", "device", "device addr", "cloud addr", "outcome", "key",
               "msgs D->C/C->D", "failed checks"]  # fmt: skip
    rows = [[safe_text(c) for c in row] for row in rows]
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    return f"== Sessions ({len(sessions)})\n\n" + (table + "\n" if rows else "")


def _endpoint(ep: dict[str, Any] | None) -> str:
    if not ep:
        return ""
    ip = ep["ip"]
    return f"[{ip}]:{ep['port']}" if ":" in ip else f"{ip}:{ep['port']}"
