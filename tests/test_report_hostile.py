"""Device-controlled strings are hostile: every format of the report must neutralise
script tags, attribute breakouts, Markdown syntax, terminal escape sequences, invalid
UTF-8 and huge strings, in every field.

Two sources: a really encrypted simulated session whose device sends hostile names and
data everywhere (events, functions, variables, describe, subscriptions, DNS), and a real
report in which *every* string of the model is made hostile.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dissector.report import Report, run_report
from dissector.report.model import map_strings
from dissector.report.render_html import render_html
from dissector.report.render_json import render_json
from dissector.report.render_markdown import render_markdown
from dissector.report.render_text import render_text
from dissector.simulate import TcpFlow
from tests.test_report_fixtures import (
    START,
    _builder,
    _open,
    dns_query,
    fleet_capture,
    ring,
    write_capture,
)

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = "\"><svg onload=alert(1)>' onmouseover='x"
MD_LINK = "[click](javascript:alert(1)) *b* _i_ `code` |pipe|"
ESCAPES = "\x1b[31mred\x1b[0m\x1b]0;title\x07\x00\x7f\x85\x9b"
INVALID = b"\xff\xfe"
HUGE = "A" * 3000

RAW_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufffd\ud800-\udfff]")

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "nav", "a", "main",
    "section", "h1", "h2", "h3", "h4", "div", "span", "table", "thead", "tbody", "tr", "th",
    "td", "p", "ul", "li", "dl", "dt", "dd", "details", "summary", "br", "pre", "footer",
    "svg", "g", "line", "path", "rect", "text",
}  # fmt: skip
ALLOWED_ATTRS = {
    "class", "id", "href", "title", "lang", "charset", "name", "content", "http-equiv",
    "open", "x", "y", "x1", "x2", "y1", "y2", "width", "height", "viewbox", "role",
    "aria-label", "d", "rx", "text-anchor",
}  # fmt: skip


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.bad.append(f"tag {tag}")
        for name, value in attrs:
            if name not in ALLOWED_ATTRS:
                self.bad.append(f"attribute {name} on {tag}")
            if name == "href" and not (value or "").startswith("#"):
                self.bad.append(f"href {value}")


def check_html(html: str) -> None:
    audit = _Audit()
    audit.feed(html)
    audit.close()
    assert audit.bad == []
    assert not re.search(r"https?://", html)
    assert " src=" not in html
    assert RAW_CONTROLS.findall(html) == []
    assert "A" * 2100 not in html


def check_markdown(md: str) -> None:
    assert "<script" not in md and "<svg" not in md and "<img" not in md
    assert "](javascript" not in md
    assert RAW_CONTROLS.findall(md) == []
    width: int | None = None
    for line in md.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        if width is None:
            width = cells
        assert cells == width, line
    assert "A" * 2100 not in md


def check_text(text: str) -> None:
    assert RAW_CONTROLS.findall(text) == []
    assert "\x1b" not in text


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    tmp = tmp_path_factory.mktemp("hostile")
    b = _builder(START + 5)
    _open(b)
    for name in (SCRIPT, BREAKOUT, MD_LINK, ESCAPES, INVALID, HUGE[:60]):
        b.device_event(name, name, ack=0)
    b.device_event("big", HUGE)
    b.device_event(b"bin", b"\x00\x01" + INVALID, private=False)
    b.subscribe(SCRIPT + "|" + ESCAPES)
    b.function_call(BREAKOUT + ESCAPES, SCRIPT + MD_LINK, result=7)
    b.variable_read(SCRIPT, (BREAKOUT + ESCAPES).encode() + INVALID)
    description = {"f": [SCRIPT, ESCAPES, MD_LINK], "v": {BREAKOUT: 4, HUGE: 2}, "p": 6}
    b.describe(description)
    b.cloud_event(ESCAPES + SCRIPT, MD_LINK)
    flows = [TcpFlow(b.writes, device=("10.0.0.2", 40010), cloud=("10.0.0.1", 5683))]
    dns = dns_query("0123456789abcdef01234567.<script>\x1b[2J.udp.particle.io")
    from dissector.capture.writer import build_udp_frame

    udp = [(START + 1, build_udp_frame(1, "10.0.0.9", 5353, "10.0.0.53", 53, dns))]
    path = write_capture(tmp / "hostile.pcap", flows, udp)
    return run_report([path], ring())


@pytest.fixture(scope="module")
def all_hostile(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A real report where every string of the model starts with hostile text."""
    tmp = tmp_path_factory.mktemp("all")
    report = run_report([fleet_capture(tmp)], ring())
    prefix = SCRIPT + BREAKOUT + "|" + ESCAPES + "\udcff"
    hostile: Report = map_strings(report, lambda s: prefix + s)
    return hostile


def test_simulated_hostile_session_is_decrypted(hostile_report: Report) -> None:
    (session,) = hostile_report.sessions
    assert session.decrypted_d2c == session.messages_d2c > 10
    names = {e.name for e in session.events}
    assert SCRIPT in names and BREAKOUT in names and ESCAPES in names
    assert any("\\xff" in n for n in names)
    assert {f.name for f in session.functions} == {BREAKOUT + ESCAPES}
    assert any(d.device_id == "0123456789abcdef01234567" for d in hostile_report.devices)


def test_model_truncates_huge_strings(hostile_report: Report) -> None:
    (session,) = hostile_report.sessions
    big = next(e for e in session.events if e.name == "big")
    assert len(big.sample_data) < 1100 and big.sample_data.endswith("…(+1976)")
    (describe,) = session.describes
    assert all(len(k) < 300 for k in describe.variables)


@pytest.mark.parametrize("which", ["hostile_report", "all_hostile"])
def test_html_neutralises_hostile_strings(which: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(which)
    html = render_html(report)
    check_html(html)
    assert "&lt;script&gt;" in html
    assert "\\x1b" in html
    assert "&quot;&gt;&lt;svg onload=alert(1)&gt;&#x27;" in html
    if which == "hostile_report":
        assert "\\xff\\xfe" in html
    else:
        assert "\\xff" in html


def test_svg_text_is_escaped(all_hostile: Report) -> None:
    html = render_html(all_hostile)
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) == 2 * len(all_hostile.sessions)
    joined = "".join(svgs)
    assert "&lt;script&gt;" in joined and "<script" not in joined
    assert "&#x27;" in joined


@pytest.mark.parametrize("which", ["hostile_report", "all_hostile"])
def test_markdown_neutralises_hostile_strings(which: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(which)
    md = render_markdown(report)
    check_markdown(md)
    assert "&lt;script&gt;" in md
    assert "\\x1b" in md
    if which == "hostile_report":
        assert (
            "\\[click\\]\\(javascript:alert\\(1\\)\\) \\*b\\* \\_i\\_ \\`code\\` \\|pipe\\|" in md
        )
        assert "\\\\xff\\\\xfe" in md  # the backslash itself is escaped
    mermaid = re.findall(r"```mermaid\n(.*?)```", md, flags=re.S)
    assert mermaid
    for block in mermaid:
        assert re.fullmatch(r"[A-Za-z0-9 .,+/()_\-→:>\n]*", block), block


@pytest.mark.parametrize("which", ["hostile_report", "all_hostile"])
@pytest.mark.parametrize("colour", [False, True])
def test_terminal_summary_neutralises_hostile_strings(
    which: str, colour: bool, request: pytest.FixtureRequest
) -> None:
    report = request.getfixturevalue(which)
    text = render_text(report, colour=colour)
    if colour:
        # the only escape sequences are the renderer's own SGR colours
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    check_text(text)
    assert "\\x1b" in text


def test_json_keeps_hostile_strings_as_data(hostile_report: Report) -> None:
    text = render_json(hostile_report)
    assert RAW_CONTROLS.findall(text) == []
    data: Any = json.loads(text)
    names = {e["name"] for e in data["sessions"][0]["events"]}
    assert SCRIPT in names and BREAKOUT in names and ESCAPES in names


def test_json_survives_lone_surrogates(all_hostile: Report) -> None:
    text = render_json(all_hostile)
    text.encode("utf-8")  # no lone surrogate left
    data = json.loads(text)
    assert data["sessions"][0]["id"].startswith(SCRIPT)
    assert "\\xff" in data["sessions"][0]["id"]


def test_capture_file_names_are_escaped(tmp_path: Path) -> None:
    weird = tmp_path / "a<b>&'\"|x.pcap"
    weird.write_bytes(fleet_capture(tmp_path).read_bytes())
    report = run_report([weird], ring())
    html = render_html(report)
    check_html(html)
    assert "a&lt;b&gt;&amp;&#x27;&quot;|x.pcap" in html
    check_markdown(render_markdown(report))
