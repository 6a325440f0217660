"""The four renderings of real reference captures (TCP with keys, DTLS with key logs,
DTLS without keys): every section is there, the JSON follows its documented schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dissector.keys import KeyRing
from dissector.report import Report, run_report
from dissector.report.render_html import render_html
from dissector.report.render_json import render_json
from dissector.report.render_markdown import render_markdown
from dissector.report.render_text import render_text
from tests.helpers import BREWSKEY, DEVICE_ID, SPARK, TCP_KEYS
from tests.test_report_fixtures import fleet_capture, ring

DATA = Path(__file__).parent / "data"
DTLS = DATA / "dtls"
SCHEMA = DATA / "report" / "schema_keys.json"


def _ring(*paths: Path) -> KeyRing:
    ring = KeyRing()
    for p in paths:
        ring.load(str(p))
    return ring


@pytest.fixture(scope="module")
def spark() -> Report:
    return run_report([f"{SPARK}.pcap"], _ring(TCP_KEYS))


@pytest.fixture(scope="module")
def udp() -> Report:
    name = "deviceos-1.0.1_udp_full"
    return run_report([DTLS / f"{name}.pcap"], _ring(DTLS / f"{name}.keylog"))


@pytest.fixture(scope="module")
def nokeys() -> Report:
    return run_report([DTLS / "particle_mbedtls_ccm8_full.pcap"], KeyRing())


def test_spark_session_content(spark: Report) -> None:
    (s,) = spark.sessions
    assert (s.device_id, s.platform, s.platform_id, s.product_id) == (
        DEVICE_ID,
        "Virtual device (gcc)",
        3,
        3,
    )
    assert s.outcome == "established" and s.handshake_failure is None
    assert [c.status for c in s.handshake] == ["passed"] * 9
    assert [f.label for f in s.flow[:5]] == ["nonce", "identity", "session key", "Hello", "Hello"]
    assert [f.size for f in s.flow[:5]] == [40, 256, 384, 18, 18]
    assert s.messages_d2c + s.messages_c2d == 45 == s.decrypted_d2c + s.decrypted_c2d
    assert sum(s.timeline.d2c) == s.messages_d2c and sum(s.timeline.c2d) == s.messages_c2d
    events = {(e.direction, e.name): e for e in s.events}
    hello = events[("device", "peer/hello")]
    assert (hello.count, hello.sample_data, hello.answers) == (3, "msg 1", {"4.00 Bad Request": 3})
    assert {f.name: [c.result for c in f.samples] for f in s.functions} == {
        "led": [0],
        "add": [47],
    }
    assert {v.name: v.values for v in s.variables} == {
        "counter": ["42", "47"],
        "temp": ["21.5"],
        "status": ["led:o", "got:peer/fromserver"],
    }
    (describe,) = s.describes
    assert describe.functions == ["led", "add"] and describe.variables["temp"] == "double"
    assert [(c.kind, c.detail) for c in s.commands] == [
        ("SignalStart", "start"),
        ("SignalStop", "stop"),
    ]
    (ping,) = s.pings
    assert ping.count == 2 and ping.interval_median == pytest.approx(15.0, abs=0.1)
    assert s.time_sync.responses == 1 and s.time_sync.last_offset is not None
    cap = spark.capture
    assert cap.files[0].linktypes == ["Ethernet (1)"] and cap.files[0].format == "pcap"
    assert cap.decryption.decrypted == cap.decryption.messages == 45


def test_udp_session_content(udp: Report) -> None:
    (s,) = udp.sessions
    assert s.transport == "dtls" and s.device_id_source == "Hello"
    assert s.hello_flag_words == ["diagnostics supported"]
    labels = [f.label for f in s.flow]
    assert labels[:4] == [
        "ClientHello",
        "HelloVerifyRequest",
        "ClientHello (with cookie)",
        "ServerHello, ServerKeyExchange, CertificateRequest, ServerHelloDone",
    ]
    assert all(f.size for f in s.flow if f.direction is not None and f.status != "more")
    assert "Hello" in labels and s.key_source == "key log"


def test_no_keys_report_says_what_is_missing(nokeys: Report) -> None:
    (s,) = nokeys.sessions
    assert s.decrypted_d2c + s.decrypted_c2d == 0
    keys = next(c for c in s.handshake if c.key == "keys")
    assert keys.status == "failed" and "no key log entry for client random" in keys.detail
    assert nokeys.capture.decryption.sessions_encrypted == 1
    assert any("client random" in m for m in nokeys.capture.decryption.missing)


@pytest.mark.parametrize("which", ["spark", "udp", "nokeys"])
def test_text_summary(which: str, request: pytest.FixtureRequest) -> None:
    report: Report = request.getfixturevalue(which)
    text = render_text(report)
    for heading in ("== Capture", "== Devices", "== Sessions", "== Findings"):
        assert heading in text
    assert "\x1b" not in text
    coloured = render_text(report, colour=True)
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == text


@pytest.mark.parametrize("which", ["spark", "udp", "nokeys"])
def test_html_sections(which: str, request: pytest.FixtureRequest) -> None:
    report: Report = request.getfixturevalue(which)
    html = render_html(report)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for anchor in ("summary", "capture", "devices", "sessions", "latency", "findings"):
        assert f'<section id="{anchor}">' in html
    assert "default-src 'none'" in html
    assert not re.search(r"https?://", html) and " src=" not in html
    assert html.count('<svg class="seq"') == len(report.sessions)
    assert html.count('<svg class="timeline"') == len(report.sessions)
    assert '<details class="session" id="s-' in html


def test_html_folds_details_when_there_are_many_sessions(spark: Report) -> None:
    many = Report(sessions=[spark.sessions[0]] * 4, capture=spark.capture)
    html = render_html(many)
    assert '<details class="session" id="s-tcp-1">' in html  # closed
    assert '<details class="session" id="s-tcp-1" open>' in render_html(spark)


@pytest.mark.parametrize("which", ["spark", "udp", "nokeys"])
def test_markdown_sections(which: str, request: pytest.FixtureRequest) -> None:
    report: Report = request.getfixturevalue(which)
    md = render_markdown(report)
    for heading in (
        "## Summary",
        "## Capture",
        "## Devices",
        "## Sessions",
        "## Latency",
        "## Findings",
    ):
        assert heading in md
    assert "```mermaid\nsequenceDiagram" in md
    assert md.count("<details") == md.count("</details>")


#: JSON objects that hold data (names as keys), not fields.
DATA_OBJECTS = (".answers", ".describes[].variables", "].findings", ".details", ".severity_counts")


def _keys(value: Any, path: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, dict):
        if path.endswith(DATA_OBJECTS):
            return
        out.setdefault(path, list(value))
        for k, v in value.items():
            _keys(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for item in value:
            _keys(item, f"{path}[]", out)


def test_json_follows_the_documented_schema(
    spark: Report, udp: Report, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The JSON's object shapes are fixed (``tests/data/report/schema_keys.json``): a
    field added to the model must be added there and to the README schema."""
    fleet = run_report([fleet_capture(tmp_path_factory.mktemp("schema"))], ring())
    shapes: dict[str, list[str]] = {}
    for report in (spark, udp, fleet):
        data = json.loads(render_json(report))
        assert data["report_schema_version"] == 1
        _keys(data, "", shapes)
    assert shapes == json.loads(SCHEMA.read_text())
    top = [
        "report_schema_version",
        "generator",
        "redacted",
        "capture",
        "devices",
        "sessions",
        "ota",
        "latency",
        "findings",
        "findings_dropped",
        "finding_groups",
        "severity_counts",
    ]
    assert list(json.loads(render_json(spark))) == top


def test_json_round_trips_numbers_and_nulls(spark: Report) -> None:
    data = json.loads(render_json(spark))
    s = data["sessions"][0]
    assert s["device_id"] == DEVICE_ID and isinstance(s["start"], float)
    assert s["hello_flags"] == 0 and s["system_version"] is None
    assert data["capture"]["decryption"]["missing"] == []


def test_brewskey_reports_both_directions_of_peer_events() -> None:
    report = run_report([f"{BREWSKEY}.pcap"], _ring(TCP_KEYS))
    (s,) = report.sessions
    names = {(e.direction, e.name) for e in s.events}
    assert ("device", "peer/hello") in names and ("cloud", "peer/hello") in names
    codes = {f.code for f in report.findings}
    assert "coap.ack_mid_mismatch" in codes and "report.weakness.rsa1024" in codes
