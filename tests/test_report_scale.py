"""Reports on captures with hundreds of sessions stay readable (summaries first, details
folded) and the collector's memory stays bounded however long a session runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dissector.coap import NON, CoapMessage, CoapOption
from dissector.coap.options import URI_PATH
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.protocol.events import MessageEvent
from dissector.report import Report, ReportCollector, run_report
from dissector.report import collector as collector_module
from dissector.report.render_html import render_html
from dissector.report.render_markdown import render_markdown
from dissector.report.render_text import render_text
from dissector.simulate import TcpFlow
from tests.test_report_collector import Session
from tests.test_report_fixtures import START, _builder, write_capture

SESSIONS = 250


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """250 sessions seen mid-stream (no handshake), no keys: all stay encrypted."""
    flows = []
    for i in range(SESSIONS):
        b = _builder(START + i)
        b.device_sends(bytes(30))
        b.cloud_sends(bytes(10))
        flows.append(
            TcpFlow(b.writes, device=(f"10.1.{i // 200}.{i % 200 + 1}", 40000 + i), syn=False)
        )
    path = write_capture(tmp_path_factory.mktemp("many") / "many.pcap", flows, [])
    return run_report([path], KeyRing())


def test_every_session_is_in_the_report(many: Report) -> None:
    assert len(many.sessions) == SESSIONS
    assert {s.outcome for s in many.sessions} == {"mid-session"}
    assert many.capture.decryption.sessions_encrypted == SESSIONS
    # one missing-key reason per session at most, but the capture lists a bounded few
    assert 1 <= len(many.capture.decryption.missing) <= 20


def test_html_keeps_summaries_first_and_details_folded(many: Report) -> None:
    html = render_html(many)
    sessions_table = re.search(r'<table class="sessions">.*?</table>', html, flags=re.S)
    assert sessions_table and sessions_table.group().count("<tr>") == SESSIONS + 1
    assert html.index('<table class="sessions">') < html.index('<details class="session"')
    assert html.count('<details class="session"') == SESSIONS
    assert '<details class="session" id="s-tcp-1" open>' not in html
    assert len(html) < 8000 * SESSIONS


def test_markdown_and_text_stay_one_line_per_session(many: Report) -> None:
    md = render_markdown(many)
    assert md.count("<details><summary><b>tcp-") == SESSIONS  # all folded
    text = render_text(many)
    rows = [line for line in text.splitlines() if re.match(r"tcp-\d+ ", line)]
    assert len(rows) == SESSIONS


def test_a_long_session_keeps_bounded_state() -> None:
    collector = ReportCollector()
    s = Session(collector)
    state = collector._active["tcp-1"]
    d2c = Direction.DEVICE_TO_CLOUD
    for i in range(20_000):
        msg = CoapMessage(
            type=NON,
            code=0x02,
            mid=i & 0xFFFF,
            options=[CoapOption(URI_PATH, b"E"), CoapOption(URI_PATH, b"n%d" % i)],
            payload=b"x",
        )
        s.send(d2c, msg, 1.0 + i * 0.5)
    assert len(state.events) == collector_module.MAX_EVENT_NAMES
    assert len(state.pending) <= collector_module.MAX_PENDING
    assert len(state.flow) <= collector_module.MAX_FLOW + 1
    assert len(state.markers) <= collector_module.MAX_MARKERS
    assert len(state.bins.d2c) == state.bins.nbins
    assert len(collector.findings) <= collector_module.MAX_FINDINGS
    collector.feed(
        MessageEvent("tcp-1", d2c, 10_001.0, 10)  # an undecrypted frame at the end
    )
    s.end(10_002.0)
    assert collector._active == {}
    report = collector.finish()
    (session,) = report.sessions
    assert sum(session.timeline.d2c) == 20_001
    assert session.events_dropped == 20_000 - collector_module.MAX_EVENT_NAMES


def test_report_of_an_empty_capture(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "empty.pcap", [], [])
    report = run_report([path], KeyRing())
    assert report.sessions == [] and report.devices == [] and report.capture.packets == 0
    for text in (render_html(report), render_markdown(report), render_text(report)):
        assert "Sessions (0)" in text
