"""The HTML report in a real headless browser (Debian's chromium, driven over the
DevTools protocol with a tiny built-in WebSocket client): it loads without console
errors, exceptions or network requests, and shows the sessions table and the diagrams."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dissector.report import run_report
from dissector.report.render_html import render_html
from tests.helpers import SPARK, TCP_KEYS
from tests.test_report_fixtures import fleet_capture, ring

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


class WebSocket:
    """Just enough RFC 6455 for the DevTools protocol (text frames, client masking)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        assert m, url
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("WebSocket handshake failed")
            buf += chunk
        head, self.rest = buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))

    def _read(self, n: int) -> bytes:
        while len(self.rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("WebSocket closed")
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("WebSocket closed by the browser")
            if opcode in (0x9, 0xA):
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()


class Browser:
    """One headless chromium; ``open`` loads a page in a new tab and records its events."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={self.tmp.name}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            url = found.group(1) if found else None
        if url is None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{CHROMIUM} did not start its DevTools endpoint")
        self.ws = WebSocket(url)
        self.ids = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.ids += 1
        msg: dict[str, Any] = {"id": self.ids, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.ids:
                assert "error" not in reply, (method, reply["error"])
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv()))

    def open(self, url: str) -> str:
        self.events.clear()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=1300,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired")
        return session

    def js(self, session: str, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, exceptions, and network requests that left the
        page (a request the Content-Security-Policy blocked is listed as ``blocked:``)."""
        blocked = {
            ev["params"]["requestId"]
            for ev in self.events
            if ev.get("method") == "Network.loadingFailed"
            and ev["params"].get("blockedReason") == "csp"
        }
        out = []
        for ev in self.events:
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(f"exception: {p}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning"):
                out.append(f"console: {p}")
            elif method == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                out.append(f"log: {p['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith(("file:", "data:", "about:")):
                    kind = "blocked" if p["requestId"] in blocked else "request"
                    out.append(f"{kind}: {url}")
        return out

    def screenshot(self, session: str) -> bytes:
        data = self.call("Page.captureScreenshot", session, format="png")["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        with contextlib.suppress(OSError, ConnectionError, AssertionError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.ws.sock.close()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        self.tmp.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    tmp = tmp_path_factory.mktemp("html")
    out = {}
    spark_ring = ring()
    spark_ring.load(str(TCP_KEYS))
    for name, capture, keys in (
        ("spark", Path(f"{SPARK}.pcap"), spark_ring),
        ("fleet", fleet_capture(tmp), ring()),
    ):
        report = run_report([capture], keys)
        path = tmp / f"{name}.html"
        path.write_text(render_html(report), encoding="utf-8")
        out[name] = (path, len(report.sessions))
    return out


@pytest.mark.parametrize("name", ["spark", "fleet"])
def test_report_loads_cleanly_and_shows_sessions_and_diagrams(
    browser: Browser, pages: dict[str, tuple[Path, int]], name: str
) -> None:
    path, sessions = pages[name]
    session = browser.open(path.as_uri())
    assert browser.problems() == []
    rows = browser.js(session, "document.querySelectorAll('table.sessions tbody tr').length")
    assert rows == sessions
    table = browser.js(
        session,
        "(() => { const r = document.querySelector('table.sessions').getBoundingClientRect();"
        " return [r.width, r.height]; })()",
    )
    assert table[0] > 600 and table[1] > 40 * sessions
    # open the first session's details: its diagrams render with a real size
    sizes = browser.js(
        session,
        "(() => { const d = document.querySelector('details.session'); d.open = true;"
        " return Array.from(d.querySelectorAll('svg')).map(s => {"
        " const r = s.getBoundingClientRect(); return [s.getAttribute('class'), r.width,"
        " r.height, s.querySelectorAll('text').length]; }); })()",
    )
    kinds = [s[0] for s in sizes]
    assert kinds == ["seq", "timeline"]
    for _cls, width, height, texts in sizes:
        assert width > 700 and height > 100 and texts > 5
    arrows = browser.js(session, "document.querySelectorAll('svg.seq .seq-arrow').length")
    assert arrows >= 3
    label = browser.js(session, "document.querySelector('svg.seq .seq-label').textContent")
    assert label.startswith("nonce")
    png = browser.screenshot(session)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert browser.problems() == []


def test_content_security_policy_blocks_any_fetch(
    browser: Browser, pages: dict[str, tuple[Path, int]], tmp_path: Path
) -> None:
    """Even markup that slipped through could not fetch anything: the page's CSP forbids
    every source (the report itself has no reference to fetch)."""
    path, _ = pages["spark"]
    html = path.read_text(encoding="utf-8").replace(
        "</main>", '<img src="http://192.0.2.1/x.png"></main>'
    )
    evil = tmp_path / "evil.html"
    evil.write_text(html, encoding="utf-8")
    session = browser.open(evil.as_uri())
    time.sleep(0.2)
    browser.js(session, "1")
    problems = browser.problems()
    assert "blocked: http://192.0.2.1/x.png" in problems
    assert not any(p.startswith("request:") for p in problems)
    assert any("Content Security Policy" in p for p in problems)
