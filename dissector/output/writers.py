"""Record writers for ``particle-dissect dissect --format``.

``ndjson`` and ``csv`` stream (one line per record as it comes); ``json``, ``table``
and ``markdown`` collect and print at the end.

NDJSON lines are encoded with ``orjson`` and are byte for byte what
``json.dumps(rec, ensure_ascii=False, separators=(",", ":"))`` gives (with U+0085, U+2028
and U+2029 escaped, see :func:`ndjson_line`): the two differ only for floats of magnitude
below 1e-4 (``1e-05`` against ``0.00001``), non-finite floats (``NaN`` against ``null``),
integers beyond 64 bits, non-string keys and unpaired surrogates, and records holding any
of these are encoded with :mod:`json` instead.
"""

from __future__ import annotations

import csv
import json
import math
from typing import Any, TextIO

import orjson

from dissector.output.text import markdown_text, payload_preview, safe_text

_LINE_BREAKERS_UTF8 = (
    ("\x85".encode(), b"\\u0085"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
_ORJSON_OPTS = (
    orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)
_INF = math.inf
_SCALARS = frozenset({str, int, bool, type(None)})

FORMATS = ("table", "json", "ndjson", "csv", "markdown")

_COLUMNS = ("time", "session", "dir", "kind", "type", "code", "mid", "token", "uri", "summary")
_SEVERITY_COLOUR = {"error": "red", "warning": "yellow", "info": "blue"}


def _compact(value: Any, limit: int = 60) -> str:
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
            parts.append(f"{key}={item}")
        text = " ".join(parts)
    elif isinstance(value, list):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    return safe_text(text, limit)


def summary_of(rec: dict[str, Any]) -> str:
    """A one-line human summary of a message or handshake record."""
    if rec["record"] == "handshake" and rec.get("transport") == "dtls":
        info = {
            k: v
            for k, v in (rec.get("info") or {}).items()
            if v not in (None, "", [], {})
            and not isinstance(v, list | dict)
            and not (isinstance(v, str) and len(v) > 32)
        }
        return _compact(info, 90)
    if rec["record"] == "handshake":
        info = rec.get("info") or {}
        bits = [f"{rec['length']} bytes"]
        for key in ("device_id", "decrypted_with", "nonce_echo_ok", "signature_valid"):
            if key in info:
                bits.append(f"{key}={info[key]}")
        return safe_text(" ".join(bits), 90)
    if rec.get("coap") is None:
        enc = rec.get("encrypted") or {}
        return safe_text(f"[{enc.get('length')} B encrypted] {enc.get('reason', '')}", 90)
    decoded = rec.get("decoded")
    if decoded:
        text = _compact(decoded, 100)
    else:
        text = payload_preview(bytes.fromhex(rec["coap"]["payload"]))
    if "latency" in rec and rec["latency"] is not None:
        text = f"{text} ({rec['latency'] * 1000:.1f} ms)"
    return text


def _row(rec: dict[str, Any], t0: float | None) -> list[str]:
    ts = rec.get("ts")
    rel = f"{ts - t0:.3f}" if ts is not None and t0 is not None else ""
    direction = "D->C" if rec.get("direction") == "device->cloud" else "C->D"
    if rec["record"] == "handshake":
        return [
            rel,
            rec["session"],
            direction,
            f"handshake:{rec['step']}",
            "",
            "",
            "",
            "",
            "",
            summary_of(rec),
        ]
    coap = rec.get("coap") or {}
    return [
        rel,
        rec["session"],
        direction,
        safe_text(rec.get("kind")),
        coap.get("type", ""),
        coap.get("code", ""),
        str(coap.get("mid", "")),
        coap.get("token", ""),
        safe_text(coap.get("uri", ""), 40),
        summary_of(rec),
    ]


class Writer:
    """Base writer: ``write(record)`` for each record, then ``close()``."""

    def __init__(self, out: TextIO, *, colour: bool = False) -> None:
        self.out = out
        self.colour = colour

    def write(self, rec: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Print anything collected."""

    def write_text(self, text: str) -> None:
        """Write other text (e.g. ``--verbose`` trees) in order with the records."""
        self.out.write(text)

    def flush(self) -> None:
        """Write out what has been written so far (collecting writers print at close)."""
        self.out.flush()


def _odd_float(obj: Any) -> bool:
    """True when a float inside ``obj`` (dicts, lists and tuples walked) is non-finite or
    non-zero with a magnitude below 1e-4: the floats orjson and :mod:`json` write
    differently."""
    if isinstance(obj, dict):
        items: Any = obj.values()
    elif isinstance(obj, list | tuple):
        items = obj
    elif isinstance(obj, float):
        return not (1e-4 <= abs(obj) < _INF or obj == 0.0)
    else:
        return False
    for v in items:
        cls = v.__class__
        if cls is float:
            if not (1e-4 <= abs(v) < _INF or v == 0.0):
                return True
        elif cls not in _SCALARS and _odd_float(v):
            return True
    return False


def _needs_json(rec: dict[str, Any]) -> bool:
    """Whether orjson could write ``rec`` differently from :mod:`json`. Message records are
    checked where :mod:`dissector.output.records` puts floats (``ts``, ``latency``, the
    request's ``ts`` and anywhere in ``decoded``; its ``coap`` and ``encrypted`` objects
    hold none); any other record is walked whole."""
    if rec.__class__ is not dict or rec.get("record") != "message":
        return _odd_float(rec)
    x = rec.get("ts")
    if x.__class__ is float and not (1e-4 <= x < _INF or x == 0.0 or -_INF < x <= -1e-4):
        return True
    if "request" in rec:
        x = rec.get("latency")
        if x.__class__ is float and not (1e-4 <= x < _INF or x == 0.0 or -_INF < x <= -1e-4):
            return True
        request = rec["request"]
        if request.__class__ is dict:
            x = request.get("ts")
            if x.__class__ is float and not (1e-4 <= x < _INF or x == 0.0 or -_INF < x <= -1e-4):
                return True
        elif _odd_float(request):
            return True
    elif "latency" in rec and _odd_float(rec["latency"]):
        return True
    decoded = rec.get("decoded")
    if decoded.__class__ is dict:
        for v in decoded.values():
            cls = v.__class__
            if cls is str or cls is int or cls is bool or v is None:
                continue
            if cls is float:
                if not (1e-4 <= v < _INF or v == 0.0 or -_INF < v <= -1e-4):
                    return True
            elif _odd_float(v):
                return True
        return False
    return decoded is not None and _odd_float(decoded)


def ndjson_bytes(rec: dict[str, Any]) -> bytes:
    """One record as a UTF-8 NDJSON line with its newline: the text of
    ``json.dumps(rec, ensure_ascii=False, separators=(",", ":"))`` with U+0085, U+2028
    and U+2029 written as ``\\u`` escapes (valid JSON either way, but many line splitters
    break lines on them). Encoded by orjson; by :mod:`json` when orjson would write it
    differently or cannot (integers beyond 64 bits, non-string keys, surrogates)."""
    try:
        line = orjson.dumps(rec, option=_ORJSON_OPTS)
    except TypeError:
        line = _json_line(rec)
    else:
        if _needs_json(rec):
            line = _json_line(rec)
    if not line.isascii():
        for char, escape in _LINE_BREAKERS_UTF8:
            if char in line:
                line = line.replace(char, escape)
    return line


def _json_line(rec: dict[str, Any]) -> bytes:
    text = json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"
    # A lone surrogate cannot be UTF-8: written as its JSON escape (``\\ud800``).
    return text.encode("utf-8", "backslashreplace")


def ndjson_line(rec: dict[str, Any]) -> str:
    """:func:`ndjson_bytes` as text."""
    return ndjson_bytes(rec).decode()


class NdjsonWriter(Writer):
    """One JSON object per line (see :func:`ndjson_bytes`).

    Lines go as bytes straight to the binary buffer under a text stream when there is
    one (no decode and re-encode per record); :meth:`write_text` keeps other text in
    order with them. Lines are gathered and written ``BATCH_BYTES`` at a time (one
    system call per batch even where ``PYTHONUNBUFFERED`` is set); on a terminal each
    line goes at once. :meth:`flush` and :meth:`close` write what is gathered.
    """

    BATCH_BYTES = 1 << 16

    def __init__(self, out: TextIO, *, colour: bool = False) -> None:
        super().__init__(out, colour=colour)
        raw = getattr(out, "buffer", None)
        if raw is not None and getattr(out, "encoding", "").lower().replace("-", "") == "utf8":
            out.flush()
            self._write = raw.write
        else:
            self._write = lambda line: out.write(line.decode())
        isatty = getattr(out, "isatty", None)
        self._batch = 0 if isatty is not None and isatty() else self.BATCH_BYTES
        self._lines: list[bytes] = []
        self._pending = 0

    def write(self, rec: dict[str, Any]) -> None:
        line = ndjson_bytes(rec)
        self._lines.append(line)
        self._pending += len(line)
        if self._pending >= self._batch:
            self._drain()

    def write_text(self, text: str) -> None:
        self._lines.append(text.encode("utf-8", "backslashreplace"))
        self._drain()

    def _drain(self) -> None:
        lines = self._lines
        if lines:
            self._lines = []
            self._pending = 0
            self._write(lines[0] if len(lines) == 1 else b"".join(lines))

    def flush(self) -> None:
        self._drain()
        self.out.flush()

    def close(self) -> None:
        self.flush()


class JsonWriter(Writer):
    """One JSON document: ``{"schema_version": 1, "records": [...]}``."""

    def __init__(self, out: TextIO, *, colour: bool = False) -> None:
        super().__init__(out, colour=colour)
        self.records: list[dict[str, Any]] = []

    def write(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)

    def close(self) -> None:
        json.dump({"schema_version": 1, "records": self.records}, self.out, indent=1)
        self.out.write("\n")


class CsvWriter(Writer):
    """Messages and handshake blobs as CSV rows (findings and sessions as rows too)."""

    def __init__(self, out: TextIO, *, colour: bool = False) -> None:
        super().__init__(out, colour=colour)
        self._csv = csv.writer(out)
        self._csv.writerow(("record", "ts", *_COLUMNS[1:], "device_id", "length"))

    def write(self, rec: dict[str, Any]) -> None:
        kind = rec["record"]
        if kind in ("message", "handshake"):
            row = _row(rec, None)
            self._csv.writerow(
                [kind, rec.get("ts"), *row[1:], rec.get("device_id") or "", rec.get("length")]
            )
        elif kind == "finding":
            self._csv.writerow(
                [
                    kind,
                    rec.get("ts"),
                    rec.get("session") or "",
                    "",
                    rec["severity"],
                    "",
                    "",
                    "",
                    "",
                    rec["code"],
                    safe_text(rec["message"]),
                    "",
                    "",
                ]
            )
        elif kind == "session":
            self._csv.writerow(
                [
                    kind,
                    rec.get("start"),
                    rec["session"],
                    "",
                    rec["outcome"],
                    "",
                    "",
                    "",
                    "",
                    "",
                    safe_text(rec.get("key_source") or ""),
                    rec.get("device_id") or "",
                    "",
                ]
            )


class TableWriter(Writer):
    """Human tables: messages, then sessions, then findings."""

    def __init__(self, out: TextIO, *, colour: bool = False, markdown: bool = False) -> None:
        super().__init__(out, colour=colour and not markdown)
        self.markdown = markdown
        self.rows: list[list[str]] = []
        self.sessions: list[dict[str, Any]] = []
        self.findings: list[dict[str, Any]] = []
        self.t0: float | None = None

    def write(self, rec: dict[str, Any]) -> None:
        kind = rec["record"]
        if kind in ("message", "handshake"):
            if self.t0 is None and rec.get("ts") is not None:
                self.t0 = rec["ts"]
            self.rows.append(_row(rec, self.t0))
        elif kind == "session":
            self.sessions.append(rec)
        elif kind == "finding":
            self.findings.append(rec)

    def _cell(self, value: Any) -> str:
        return markdown_text(value) if self.markdown else safe_text(value)

    def _table(
        self, rows: list[list[Any]], headers: tuple[str, ...] | list[str], *, escape: bool = True
    ) -> str:
        from tabulate import tabulate  # imported on use: it costs start-up time otherwise

        fmt = "github" if self.markdown else "simple"
        cleaned = [[self._cell(c) for c in row] for row in rows] if escape else rows
        return tabulate(cleaned, headers=list(headers), tablefmt=fmt, disable_numparse=True)

    def _style(self, text: str, colour: str) -> str:
        if not self.colour:
            return text
        import click

        return click.style(text, fg=colour)

    def close(self) -> None:
        out = self.out
        heading = "### " if self.markdown else "== "
        out.write(f"{heading}Messages ({len(self.rows)})\n\n")
        if self.rows:
            out.write(self._table(self.rows, _COLUMNS) + "\n\n")
        if self.sessions:
            out.write(f"{heading}Sessions ({len(self.sessions)})\n\n")
            rows = []
            for s in self.sessions:
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
            out.write(
                self._table(
                    rows,
                    (
                        "session",
                        "device",
                        "device addr",
                        "cloud addr",
                        "outcome",
                        "key",
                        "msgs D->C/C->D",
                        "failed checks",
                    ),
                )
                + "\n\n"
            )
        if self.findings:
            out.write(f"{heading}Findings ({len(self.findings)})\n\n")
            rows = []
            for f in self.findings:
                sev = f["severity"]
                cells = [
                    self._cell(sev),
                    self._cell(f.get("session") or ""),
                    self._cell(f["code"]),
                    self._cell(safe_text(f["message"], None if self.markdown else 160)),
                ]
                cells[0] = self._style(cells[0], _SEVERITY_COLOUR.get(sev, "white"))
                rows.append(cells)
            out.write(
                self._table(rows, ("severity", "session", "code", "message"), escape=False) + "\n"
            )


def _endpoint(ep: dict[str, Any] | None) -> str:
    if not ep:
        return ""
    ip = ep["ip"]
    return f"[{ip}]:{ep['port']}" if ":" in ip else f"{ip}:{ep['port']}"


def make_writer(fmt: str, out: TextIO, *, colour: bool = False) -> Writer:
    """The writer for ``--format fmt``."""
    if fmt == "ndjson":
        return NdjsonWriter(out)
    if fmt == "json":
        return JsonWriter(out)
    if fmt == "csv":
        return CsvWriter(out)
    if fmt == "markdown":
        return TableWriter(out, markdown=True)
    if fmt == "table":
        return TableWriter(out, colour=colour)
    raise ValueError(f"unknown format {fmt!r}")
