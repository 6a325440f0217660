"""Shared helpers for the ``particle-dissect`` CLI tests, and the bad-usage tests.

The helpers drive the real console entry point: in process through click's CliRunner on
``dissector.cli.main:main``, or as a subprocess through ``.venv/bin/particle-dissect``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dissector.cli.main import main
from tests.helpers import BREWSKEY, DEVICE_ID, SPARK, TCP_KEYS

SPARK_PCAP = Path(f"{SPARK}.pcap")
BREWSKEY_PCAP = Path(f"{BREWSKEY}.pcap")
SPARK_KEYLOG = Path(f"{SPARK}.keylog")
BREWSKEY_KEYLOG = Path(f"{BREWSKEY}.keylog")
SERVER_KEY = TCP_KEYS / "default_key.pem"
DEVICE_KEY = TCP_KEYS / f"{DEVICE_ID}.der"
CLI_DATA = Path(__file__).parent / "data" / "cli"

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = Path(sys.executable).parent / "particle-dissect"
if not ENTRY_POINT.exists():  # pragma: no cover - running outside the project venv
    ENTRY_POINT = ROOT / ".venv" / "bin" / "particle-dissect"

HEX24 = re.compile(r"^[0-9a-f]{24}$")
HEX = re.compile(r"^(?:[0-9a-f]{2})*$")
ESC = "\x1b"


def invoke(*args: str | os.PathLike[str], stdin: bytes | None = None) -> Result:
    """Run ``particle-dissect dissect ARGS`` in process; stdout and stderr kept apart."""
    runner = CliRunner()
    return runner.invoke(
        main, ["dissect", *map(str, args)], input=stdin, catch_exceptions=False, color=False
    )


def invoke_raw(*args: str | os.PathLike[str]) -> Result:
    """Run ``particle-dissect ARGS`` (no implied subcommand) in process."""
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def ndjson(text: str) -> list[dict[str, Any]]:
    """Parse NDJSON output strictly: every line one JSON object, no blank lines."""
    assert text == "" or text.endswith("\n"), "NDJSON output must end with a newline"
    records = []
    for line in text.split("\n")[:-1]:
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        records.append(obj)
    return records


def records_of(*args: str | os.PathLike[str], stdin: bytes | None = None) -> list[dict[str, Any]]:
    """``dissect ARGS --format ndjson``: exit 0, nothing on stderr, the records."""
    result = invoke(*args, "--format", "ndjson", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return ndjson(result.stdout)


def messages(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["record"] == "message"]


def of_kind(records: list[dict[str, Any]], record: str) -> list[dict[str, Any]]:
    return [r for r in records if r["record"] == record]


def run_entry_point(
    args: Sequence[str | os.PathLike[str]],
    *,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the installed ``particle-dissect`` console script as a subprocess."""
    full_env = clean_env() if env is None else env
    return subprocess.run(
        [str(ENTRY_POINT), *map(str, args)],
        input=stdin,
        capture_output=True,
        env=full_env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without NO_COLOR (and with ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(extra)
    return env


def assert_one_line_error(result: Result, *mentions: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr naming each of ``mentions``."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == "", f"stdout must stay empty on a fatal error: {result.stdout!r}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])


# -- pcap rewriting (classic little-endian pcap, Ethernet/IPv4/TCP, like the references) --


def pcap_records(data: bytes) -> list[tuple[int, float, int]]:
    """``(offset, ts, total length)`` of every record of a classic pcap."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out = []
    pos = 24
    while pos < len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, pos)
        out.append((pos, sec + usec / 1e6, 16 + incl))
        pos += 16 + incl
    assert pos == len(data)
    return out


def rewrite_tcp(data: bytes, edit: Callable[[bytearray, int], None]) -> bytes:
    """Apply ``edit(frame, tcp_offset)`` to every Ethernet/IPv4/TCP frame of a pcap."""
    out = bytearray(data)
    for offset, _ts, _length in pcap_records(data):
        frame = offset + 16
        ethertype = struct.unpack_from("!H", out, frame + 12)[0]
        if ethertype != 0x0800 or out[frame + 14 + 9] != 6:
            continue
        ihl = (out[frame + 14] & 0x0F) * 4
        edit(out, frame + 14 + ihl)
    return bytes(out)


def with_cloud_port(data: bytes, old: int, new: int) -> bytes:
    """A copy of the capture where the cloud's TCP port ``old`` is ``new`` (checksums stale)."""

    def edit(buf: bytearray, tcp: int) -> None:
        for at in (tcp, tcp + 2):
            if struct.unpack_from("!H", buf, at)[0] == old:
                struct.pack_into("!H", buf, at, new)

    return rewrite_tcp(data, edit)


# -- bad usage ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus-option"],
        ["--format", "xml"],
        ["--format"],
        ["--fail-on", "fatal"],
        ["--port", "http"],
    ],
    ids=["unknown-option", "unknown-format", "format-without-value", "bad-severity", "bad-port"],
)
def test_bad_usage_exits_2_with_usage_on_stderr(args: list[str]) -> None:
    result = invoke(SPARK_PCAP, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Usage:" in result.stderr or "Error" in result.stderr


def test_dissect_without_a_capture_is_bad_usage() -> None:
    result = invoke_raw("dissect")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "CAPTURE" in result.stderr


def test_unknown_command_is_bad_usage() -> None:
    result = invoke_raw("disect", str(SPARK_PCAP))
    assert result.exit_code == 2
    assert result.stdout == ""


def test_unknown_format_through_the_installed_entry_point() -> None:
    proc = run_entry_point(["dissect", SPARK_PCAP, "--format", "yaml"])
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"--format" in proc.stderr
    assert b"Traceback" not in proc.stderr
