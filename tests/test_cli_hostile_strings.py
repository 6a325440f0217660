"""Device strings are hostile input: in ``table``, ``csv`` and ``markdown`` output control
characters (C0 with ESC, DEL, C1) and invalid UTF-8 show as ``\\xNN``, never raw; Markdown
cells escape ``|``. Tested on the writers directly and end to end on a simulated, really
encrypted session carrying hostile names, arguments and data."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from dissector.output.writers import make_writer
from dissector.simulate import TcpSessionBuilder, write_pcap
from tests.helpers import DEVICE_ID, TCP_KEYS
from tests.test_cli_common import invoke, messages, ndjson

HUMAN = ["table", "csv", "markdown"]
# C0 (tab, CR and LF included), DEL and C1 never appear raw in a human format; nor does
# U+FFFD (invalid UTF-8 must stay visible as \xNN, not be replaced).
RAW_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffd\ud800-\udfff]")


def _raw_controls(text: str, fmt: str) -> list[str]:
    """Forbidden characters in ``text`` (the format's own line ends allowed)."""
    body = text.replace("\r\n", "\n") if fmt == "csv" else text
    return sorted({f"U+{ord(c):04X}" for c in RAW_FORBIDDEN.findall(body.replace("\n", ""))})


def _unescaped_pipes(line: str) -> int:
    count = 0
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == "|":
            count += 1
        i += 1
    return count


def _check_markdown_tables(md: str) -> None:
    """Every row of every table has as many cell separators as its header."""
    width: int | None = None
    for line in md.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        if width is None:
            width = _unescaped_pipes(line)
        assert _unescaped_pipes(line) == width, f"a '|' in a cell broke the row: {line}"
    assert "<script>" not in md


# -- the writers on their own --------------------------------------------------------------------

ESC_RED = "\x1b[31mred"
HOSTILE = f"<script>|a|b|{ESC_RED}|nul\x00|del\x7f|c1\x85\x9b|nl\nx|cr\rx|tab\tx|bell\x07"
# How the pipeline renders the invalid UTF-8 bytes ff fe (UTF-8 with backslashreplace).
INVALID = b"bad\xff\xfe".decode("utf-8", "backslashreplace")
ESCAPES = ["\\x1b", "\\x00", "\\x7f", "\\x85", "\\x9b", "\\x0a", "\\x0d", "\\x09", "\\x07"]


def _message(uri_tail: str, name: str, data: str) -> dict[str, Any]:
    return {
        "record": "message",
        "schema_version": 1,
        "session": "tcp-1",
        "transport": "tcp",
        "direction": "device->cloud",
        "ts": 1700000000.5,
        "device_id": DEVICE_ID,
        "length": 50,
        "kind": "PrivateEvent",
        "coap": {
            "type": "NON",
            "code": "0.02",
            "mid": 7,
            "token": "",
            "uri": f"/E/{uri_tail}",
            "options": [
                {"number": 11, "name": "Uri-Path", "value": "E"},
                {"number": 11, "name": "Uri-Path", "value": uri_tail},
            ],
            "payload": data.encode("utf-8", "surrogateescape").hex(),
        },
        "decoded": {"name": name, "data": data, "data_format": "text"},
        "retransmission": False,
    }


def _finding(message: str) -> dict[str, Any]:
    return {
        "record": "finding",
        "schema_version": 1,
        "session": "tcp-1",
        "severity": "warning",
        "code": "particle.decode_error",
        "message": message,
        "ts": 1700000000.6,
        "direction": "device->cloud",
        "details": {"name": message},
    }


def _session(key_source: str) -> dict[str, Any]:
    both = {"bytes": 1, "messages": 1, "decrypted": 1}
    return {
        "record": "session",
        "schema_version": 1,
        "session": "tcp-1",
        "transport": "tcp",
        "device_id": DEVICE_ID,
        "device": {"ip": "10.0.0.2", "port": 40000},
        "cloud": {"ip": "10.0.0.1", "port": 5683},
        "start": 1700000000.0,
        "end": 1700000001.0,
        "outcome": "established",
        "key_source": key_source,
        "handshake": [],
        "stats": {"device->cloud": both, "cloud->device": both},
    }


def _render(fmt: str, records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = make_writer(fmt, out, colour=False)
    for rec in records:
        writer.write(rec)
    writer.close()
    return out.getvalue()


# Short pieces, one record each, so that no column limit truncates an escape away.
PIECES = ["<script>|a|b", ESC_RED, "nul\x00 del\x7f", "c1\x85\x9b", "nl\nx cr\rx", "tab\tx\x07"]
PLACES = {
    "uri": [_message(p, "n", "d") for p in PIECES],
    "event-name": [_message("x", p, "d") for p in PIECES],
    "event-data": [_message("x", "n", p) for p in PIECES],
    "finding": [_finding(p) for p in PIECES],
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("fmt", HUMAN)
def test_writers_escape_control_characters(fmt: str, place: str) -> None:
    text = _render(fmt, PLACES[place])
    assert _raw_controls(text, fmt) == []
    for esc in ESCAPES:
        assert esc in text, (esc, text)
    if fmt == "markdown":
        _check_markdown_tables(text)
        assert "\\|a\\|b" in text


@pytest.mark.parametrize("fmt", HUMAN)
def test_writers_keep_one_line_per_row(fmt: str) -> None:
    records = [
        _message(HOSTILE[:40], HOSTILE[:20], "x"),
        _message("y\n\n", "z\r\n", "\n"),
        _finding(HOSTILE),
        _session("key\nlog\x1b"),
    ]
    text = _render(fmt, records)
    assert _raw_controls(text, fmt) == []
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert len(rows) == 1 + len(records)
        assert len(text.strip().split("\r\n")) == 1 + len(records)
    elif fmt == "markdown":
        _check_markdown_tables(text)
        assert len([ln for ln in text.splitlines() if ln.startswith("|")]) == 2 * 3 + 4
    else:
        # 3 headings, a header and a rule per table, and one line per row: no cell broke
        assert len([ln for ln in text.splitlines() if ln.strip()]) == 3 + 2 * 3 + 4


@pytest.mark.parametrize("fmt", HUMAN)
def test_writers_show_invalid_utf8_as_hex_escapes(fmt: str) -> None:
    text = _render(fmt, [_message(INVALID, INVALID, "x"), _finding(f"name {INVALID}")])
    assert "\\xff" in text and "\\xfe" in text
    assert _raw_controls(text, fmt) == []


@pytest.mark.parametrize("fmt", HUMAN)
def test_writers_show_surrogate_escaped_bytes_as_hex(fmt: str) -> None:
    """A string decoded with ``surrogateescape`` carries the invalid bytes as lone
    surrogates: they are invalid UTF-8 from the device and must show as ``\\xNN``."""
    raw = b"ev\xff\xfe".decode("utf-8", "surrogateescape")
    text = _render(fmt, [_message(raw, raw, "x"), _finding(f"name {raw}")])
    assert "\\xff" in text and "\\xfe" in text, text
    assert _raw_controls(text, fmt) == []


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_machine_formats_keep_strings_exactly(fmt: str) -> None:
    records = [_message("x", HOSTILE, "d"), _finding(HOSTILE)]
    text = _render(fmt, records)
    back = json.loads(text)["records"] if fmt == "json" else ndjson(text)
    assert back == records


# -- end to end: a simulated encrypted session with hostile strings ------------------------------

EVENT_NAME = b"\x1b[31mred|<script>\xff\xfe\x85"
EVENT_DATA = "a|b\tc\u0085d\u2028e"
PUBLIC_NAME = "a|b\x7f<script>"
FUNCTION = b"fn\x9b\x1b]0;pwn\x07"
ARGUMENT = "arg|\x1b[1m"
VARIABLE = b"var\x00\x01"
DESCRIBE = json.dumps({"f": ["led\x1b[2J|x"], "v": {"t\x85": 1}})
CLOUD_EVENT = "peer/\x1b[5mblink|x"

E2E_ESCAPES = ["\\x1b", "\\xff", "\\xfe", "\\x85", "\\x7f", "\\x9b", "\\x07", "\\x00", "\\x01"]


@pytest.fixture(scope="module")
def hostile_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    device = serialization.load_der_private_key((TCP_KEYS / f"{DEVICE_ID}.der").read_bytes(), None)
    server = serialization.load_pem_private_key((TCP_KEYS / "default_key.pem").read_bytes(), None)
    b = TcpSessionBuilder(device, server, DEVICE_ID, rng=7)  # type: ignore[arg-type]
    b.handshake()
    b.device_hello(platform_id=6)
    b.cloud_hello()
    b.device_event(EVENT_NAME, EVENT_DATA)
    b.device_event(PUBLIC_NAME, b"\xff\xfe\x9b[2J", private=False)
    b.function_call(FUNCTION, ARGUMENT)
    b.variable_read(VARIABLE, b"val\x1b\x85|")
    b.describe(DESCRIBE)
    b.cloud_event(CLOUD_EVENT, "da\u0085ta")
    path = tmp_path_factory.mktemp("hostile") / "hostile.pcap"
    write_pcap(path, b)
    return path


@pytest.fixture(scope="module")
def hostile_outputs(hostile_capture: Path) -> dict[str, str]:
    out = {}
    for fmt in [*HUMAN, "ndjson"]:
        result = invoke(hostile_capture, "--keys", TCP_KEYS, "--format", fmt)
        assert result.exit_code == 0, result.stderr
        out[fmt] = result.stdout
    return out


def test_simulated_hostile_session_is_fully_decrypted(hostile_outputs: dict[str, str]) -> None:
    msgs = messages(ndjson(hostile_outputs["ndjson"]))
    assert len(msgs) == 12
    assert all(m["coap"] is not None for m in msgs)
    names = [m["decoded"].get("name") for m in msgs if m["kind"].endswith("Event")]
    assert any(n and n.startswith("\x1b[31mred|<script>") for n in names)


@pytest.mark.parametrize("fmt", HUMAN)
def test_end_to_end_human_formats_escape_device_strings(
    hostile_outputs: dict[str, str], fmt: str
) -> None:
    text = hostile_outputs[fmt]
    assert _raw_controls(text, fmt) == []
    for esc in E2E_ESCAPES:
        assert esc in text, esc
    if fmt == "markdown":
        _check_markdown_tables(text)
        assert "a\\|b" in text
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert len(rows) == 1 + len(ndjson(hostile_outputs["ndjson"]))
    if fmt == "table":
        section = text.split("\n\n")[1]
        assert len(section.splitlines()) == 2 + 15  # header, rule, 3 handshake + 12 messages


def test_end_to_end_ndjson_is_one_object_per_line_for_any_line_splitter(
    hostile_outputs: dict[str, str],
) -> None:
    """Device data with U+0085 (NEL) and U+2028 (LINE SEPARATOR): line splitters such as
    str.splitlines, JavaScript or many log tools break lines there, so NDJSON must not
    carry them raw (JSON's \\uXXXX escapes keep the value exact)."""
    text = hostile_outputs["ndjson"]
    lines = text.splitlines()
    assert len(lines) == len(ndjson(text))
    for line in lines:
        json.loads(line)
