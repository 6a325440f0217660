"""``--format table|json|ndjson|csv|markdown`` and colour: only on a terminal, never with
NO_COLOR, never in pipes or files."""

from __future__ import annotations

import csv
import io
import os
import pty
import select
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_common import (
    DEVICE_KEY,
    ENTRY_POINT,
    ESC,
    ROOT,
    SERVER_KEY,
    SPARK_PCAP,
    clean_env,
    invoke,
    messages,
    of_kind,
    records_of,
    run_entry_point,
)

FORMATS = ["table", "json", "ndjson", "csv", "markdown"]
KEY_ARGS = ("--keys", str(SERVER_KEY), "--keys", str(DEVICE_KEY))


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    return records_of(SPARK_PCAP, *KEY_ARGS)


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    """The spark capture with both keys in every format (CliRunner: not a terminal)."""
    out = {}
    for fmt in FORMATS:
        result = invoke(SPARK_PCAP, *KEY_ARGS, "--format", fmt)
        assert result.exit_code == 0, (fmt, result.stderr)
        assert result.stderr == ""
        out[fmt] = result.stdout
    return out


def test_table_is_the_default_format(outputs: dict[str, str]) -> None:
    result = invoke(SPARK_PCAP, *KEY_ARGS)
    assert result.exit_code == 0
    assert result.stdout == outputs["table"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_colour_when_not_a_terminal(outputs: dict[str, str], fmt: str) -> None:
    assert ESC not in outputs[fmt]


def test_table_lists_messages_sessions_and_findings(
    outputs: dict[str, str], reference: list[dict[str, Any]]
) -> None:
    table = outputs["table"]
    rows = len(messages(reference)) + len(of_kind(reference, "handshake"))
    assert f"Messages ({rows})" in table
    assert "Sessions (1)" in table
    assert f"Findings ({len(of_kind(reference, 'finding'))})" in table
    for kind in {m["kind"] for m in messages(reference)}:
        assert kind in table
    for f in of_kind(reference, "finding"):
        assert f["code"] in table


def test_csv_has_a_row_per_record(outputs: dict[str, str], reference: list[dict[str, Any]]) -> None:
    rows = list(csv.reader(io.StringIO(outputs["csv"])))
    header, body = rows[0], rows[1:]
    assert header[0] == "record" and "ts" in header
    assert all(len(r) == len(header) for r in body)
    assert [r[0] for r in body] == [r["record"] for r in reference]
    msg_rows = [r for r in body if r[0] == "message"]
    kind_col = header.index("kind")
    assert [r[kind_col] for r in msg_rows] == [m["kind"] for m in messages(reference)]


def test_markdown_is_github_tables(
    outputs: dict[str, str], reference: list[dict[str, Any]]
) -> None:
    md = outputs["markdown"]
    assert md.startswith("#")
    table_lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    rows = len(messages(reference)) + len(of_kind(reference, "handshake"))
    sessions = len(of_kind(reference, "session"))
    found = len(of_kind(reference, "finding"))
    # header + separator per table, plus one line per row
    assert len(table_lines) == rows + sessions + found + 3 * 2
    assert all(ln.rstrip().endswith("|") for ln in table_lines)


# -- colour on a real terminal ------------------------------------------------------------------


def _run_on_tty(args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run the installed command with stdout on a pseudo-terminal, stderr on a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(ENTRY_POINT), *args], stdout=slave, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            proc.kill()
            raise AssertionError("timeout reading the terminal")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    return proc.wait(timeout=30), b"".join(chunks), err


TTY_ARGS = ["dissect", str(SPARK_PCAP), *KEY_ARGS]


def test_table_on_a_terminal_is_coloured() -> None:
    status, out, _err = _run_on_tty(TTY_ARGS, clean_env())
    assert status == 0
    assert b"Findings" in out
    assert ESC.encode() in out


@pytest.mark.parametrize("value", ["1", "true"])
def test_no_color_turns_colour_off_on_a_terminal(value: str) -> None:
    status, out, _err = _run_on_tty(TTY_ARGS, clean_env(NO_COLOR=value))
    assert status == 0
    assert b"Findings" in out
    assert ESC.encode() not in out


def test_no_colour_in_a_pipe_or_a_file(tmp_path: Path) -> None:
    proc = run_entry_point(TTY_ARGS)
    assert proc.returncode == 0
    assert b"Findings" in proc.stdout and ESC.encode() not in proc.stdout
    target = tmp_path / "out.txt"
    status, out, _err = _run_on_tty([*TTY_ARGS, "-o", str(target)], clean_env())
    assert status == 0 and out == b""
    text = target.read_text(encoding="utf-8")
    assert "Findings" in text and ESC not in text
