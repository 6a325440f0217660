"""``particle-dissect report``: formats by suffix, errors, --redact, --extract-firmware,
--write-keylog, stdin and several captures (the click command driven in process)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dissector.cli.report import format_for, report
from tests.helpers import DEVICE_ID, SPARK, TCP_KEYS
from tests.test_report_fixtures import (
    FIRMWARE_FAST,
    FIRMWARE_LEGACY,
    FIRMWARE_V3,
    GHOST_ID,
    OTHER_ID,
    fleet_capture,
)

DTLS = Path(__file__).parent / "data" / "dtls"
SPARK_PCAP = f"{SPARK}.pcap"
FLEET_KEYS = ["--keys", str(TCP_KEYS / "default_key.pem")]
FLEET_KEYS += ["--keys", str(TCP_KEYS / f"{DEVICE_ID}.der")]


def run(*args: object, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(report, [str(a) for a in args], input=stdin, catch_exceptions=False)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fleet_capture(tmp_path_factory.mktemp("cli"))


def test_terminal_summary_by_default() -> None:
    result = run(SPARK_PCAP, "--keys", TCP_KEYS)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert "== Sessions (1)" in result.stdout and DEVICE_ID in result.stdout
    assert "\x1b" not in result.stdout  # not a TTY: no colour


@pytest.mark.parametrize(
    ("suffix", "marker"),
    [
        (".html", "<!DOCTYPE html>"),
        (".htm", "<!DOCTYPE html>"),
        (".md", "# Particle capture report"),
        (".json", '"report_schema_version": 1'),
        (".txt", "== Capture"),
    ],
)
def test_output_format_follows_the_suffix(tmp_path: Path, suffix: str, marker: str) -> None:
    out = tmp_path / f"report{suffix}"
    result = run(SPARK_PCAP, "--keys", TCP_KEYS, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert out.read_text(encoding="utf-8").startswith(marker) or marker in out.read_text()


def test_format_option_writes_json_to_stdout() -> None:
    result = run(SPARK_PCAP, "--keys", TCP_KEYS, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["sessions"][0]["device_id"] == DEVICE_ID


def test_format_for() -> None:
    assert format_for(None, None) == "text"
    assert format_for("x.HTML", None) == "html"
    assert format_for("x.pdf", "markdown") == "markdown"


def test_unknown_suffix_is_bad_usage(tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    result = run(SPARK_PCAP, "-o", out)
    assert result.exit_code == 2
    assert "cannot tell the report format" in result.stderr and ".html" in result.stderr
    assert not out.exists()


def test_unreadable_capture_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    out = tmp_path / "r.html"
    result = run(bad, "-o", out)
    assert result.exit_code == 2
    assert result.stderr.startswith("particle-dissect: error:") and "not a pcap" in result.stderr
    assert not out.exists()
    missing = run(tmp_path / "nope.pcap")
    assert missing.exit_code == 2 and missing.stdout == ""


def test_missing_key_file_is_fatal() -> None:
    result = run(SPARK_PCAP, "--keys", "/nonexistent/keys")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_stdin_and_several_captures() -> None:
    data = Path(SPARK_PCAP).read_bytes()
    result = run("-", "--keys", TCP_KEYS, "--format", "json", stdin=data)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["capture"]["files"][0]["name"] == "<stdin>"
    both = run(
        SPARK_PCAP,
        DTLS / "deviceos-1.0.1_udp_full.pcap",
        "--keys",
        TCP_KEYS,
        "--keylog",
        DTLS / "deviceos-1.0.1_udp_full.keylog",
        "--format",
        "json",
    )
    sessions = json.loads(both.stdout)["sessions"]
    assert sorted(s["id"] for s in sessions) == ["dtls-1", "tcp-1"]
    assert all(s["decrypted_d2c"] == s["messages_d2c"] for s in sessions)


def test_extract_firmware(tmp_path: Path, fleet: Path) -> None:
    out = tmp_path / "fw"
    result = run(fleet, *FLEET_KEYS, "--extract-firmware", out, "--format", "json")
    assert result.exit_code == 0, result.stderr
    written = sorted(out.iterdir())
    assert [p.read_bytes() for p in written] == [FIRMWARE_LEGACY, FIRMWARE_FAST, FIRMWARE_V3]
    for p in written:
        assert hashlib.sha256(p.read_bytes()).hexdigest()[:12] in p.name
    ota = json.loads(result.stdout)["ota"]
    assert [Path(t["extracted"]).name for t in ota] == [p.name for p in written]


def test_write_keylog(tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    result = run(SPARK_PCAP, "--keys", TCP_KEYS, "--write-keylog", keylog)
    assert result.exit_code == 0
    lines = keylog.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("PARTICLE_TCP ")
    assert lines[0] in Path(f"{SPARK}.keylog").read_text()


SECRETS = [DEVICE_ID, OTHER_ID, GHOST_ID, GHOST_ID.upper()]
SECRETS += ["10.0.0.", "52.1.2.3", "224.0.1.187", "ab5176ad11f0"]


@pytest.mark.parametrize("fmt", ["html", "markdown", "json", "text"])
def test_redact_replaces_identifiers(fmt: str, fleet: Path) -> None:
    result = run(fleet, *FLEET_KEYS, "--redact", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    for secret in SECRETS:
        assert secret not in text, secret
    assert "device-1" in text and "ip-1" in text
    if fmt == "json":
        data = json.loads(text)
        assert data["redacted"] is True
        devices = [d["device_id"] for d in data["devices"]]
        assert devices == ["device-1", "device-2", "device-3"]
        first = [s["device_id"] for s in data["sessions"]]
        assert first[:3] == ["device-1"] * 3  # the same device keeps its pseudonym
        assert all(re.fullmatch(r"ip-\d+:\d+", s["device_endpoint"]) for s in data["sessions"])
        # firmware digests are not identifiers
        assert data["ota"][0]["sha256"] == hashlib.sha256(FIRMWARE_LEGACY).hexdigest()


def test_redact_replaces_dtls_key_fingerprints() -> None:
    plain = json.loads(run(DTLS / "particle_mbedtls_ccm8_full.pcap", "--format", "json").stdout)
    fingerprint = plain["devices"][0]["key_fingerprint"]
    result = run(DTLS / "particle_mbedtls_ccm8_full.pcap", "--redact", "--format", "html")
    assert fingerprint[:16] not in result.stdout and fingerprint[:8] not in result.stdout
    assert "key-1" in result.stdout and "127.0.0.1" not in result.stdout
