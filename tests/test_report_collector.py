"""The report collector on hand-made pipeline events: aggregates, caps (bounded memory),
latency, flow diagram steps, finding references, and the small building blocks."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from dissector.coap import ACK, CON, NON, CoapMessage, CoapOption
from dissector.coap.options import URI_PATH, URI_QUERY
from dissector.model import Direction, Finding, Severity
from dissector.particle import ExchangeTracker
from dissector.pipeline import SessionEnded, SessionStarted
from dissector.protocol.events import FindingEvent, HandshakeBlob, MessageEvent
from dissector.protocol.session import CheckStatus, SessionInfo
from dissector.report import ReportCollector
from dissector.report import collector as collector_module
from dissector.report.model import FlowStep, Report, SessionReport, clip, map_strings, to_jsonable
from dissector.report.stats import Reservoir, TimeBins

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


class Session:
    """Drive a collector with messages of one session through a real ExchangeTracker."""

    def __init__(self, collector: ReportCollector, sid: str = "tcp-1", transport: str = "tcp"):
        self.c = collector
        self.info = SessionInfo(sid, transport, ("10.0.0.2", 40000), ("10.0.0.1", 5683))
        self.tracker = ExchangeTracker("tcp" if transport == "tcp" else "udp", sid)
        self.mid = {D2C: 100, C2D: 5000}
        self.c.feed(SessionStarted(self.info, 0.0))

    def send(self, direction: Direction, msg: CoapMessage, ts: float) -> MessageEvent:
        self.info.touch(ts)
        obs = self.tracker.observe(msg, direction, ts)
        ev = MessageEvent(self.info.id, direction, ts, 40, coap=msg, observation=obs)
        self.info.stats[direction].messages += 1
        self.info.stats[direction].decrypted += 1
        self.c.feed(ev)
        for f in obs.findings:
            self.c.feed(FindingEvent(f))
        return ev

    def next_mid(self, direction: Direction) -> int:
        self.mid[direction] += 1
        return self.mid[direction]

    def request(
        self,
        direction: Direction,
        code: int,
        path: list[bytes],
        ts: float,
        *,
        token: bytes = b"",
        queries: tuple[bytes, ...] = (),
        payload: bytes = b"",
        mtype: int = CON,
    ) -> CoapMessage:
        opts = [CoapOption(URI_PATH, p) for p in path] + [CoapOption(URI_QUERY, q) for q in queries]
        msg = CoapMessage(
            type=mtype,
            code=code,
            mid=self.next_mid(direction),
            token=token,
            options=opts,
            payload=payload,
        )
        self.send(direction, msg, ts)
        return msg

    def end(self, ts: float) -> None:
        self.info.touch(ts)
        self.c.feed(SessionEnded(self.info, ts))


def _report(build: Callable[[Session], None]) -> tuple[Report, SessionReport]:
    c = ReportCollector()
    s = Session(c)
    build(s)
    s.end(100.0)
    report = c.finish()
    return report, report.sessions[0]


def test_events_are_aggregated_and_capped() -> None:
    def build(s: Session) -> None:
        for i in range(collector_module.MAX_EVENT_NAMES + 50):
            s.request(
                D2C, 0x02, [b"E", f"name{i % 150}".encode()], 1.0 + i, payload=b"x" * 3, mtype=NON
            )
        s.request(D2C, 0x02, [b"E", b"name0"], 500.0, payload=b"late", mtype=NON)

    _, session = _report(build)
    assert len(session.events) == collector_module.MAX_EVENT_NAMES
    first = session.events[0]
    assert (first.name, first.count, first.visibility, first.direction) == (
        "name0",
        2,
        "private",
        "device",
    )
    assert (first.first_ts, first.last_ts, first.sample_data, first.ttl) == (1.0, 500.0, "xxx", 60)
    assert session.events_dropped == 50


def test_function_calls_variables_and_answers() -> None:
    def build(s: Session) -> None:
        call = s.request(C2D, 0x02, [b"f", b"led"], 1.0, token=b"\x01", queries=(b"on",))
        s.send(D2C, CoapMessage(type=ACK, code=0, mid=call.mid), 1.001)
        s.send(
            D2C,
            CoapMessage(
                type=NON,
                code=0x44,
                mid=s.next_mid(D2C),
                token=b"\x01",
                payload=struct.pack(">i", -3),
            ),
            1.010,
        )
        bad = s.request(C2D, 0x02, [b"f", b"led"], 2.0, token=b"\x02", queries=(b"x",))
        s.send(D2C, CoapMessage(type=ACK, code=0x84, mid=bad.mid, token=b"\x02"), 2.002)
        for i, value in enumerate([b"\x00\x00\x00\x01", b"\x00\x00\x00\x02", b"\x00\x00\x00\x01"]):
            req = s.request(C2D, 0x01, [b"v", b"n"], 3.0 + i, token=bytes((10 + i,)))
            s.send(
                D2C,
                CoapMessage(type=ACK, code=0x45, mid=req.mid, token=req.token, payload=value),
                3.0 + i + 0.0005,
            )

    report, session = _report(build)
    (fn,) = session.functions
    assert (fn.name, fn.calls, fn.errors) == ("led", 2, 1)
    ok, err = fn.samples
    assert (ok.argument, ok.result, ok.latency) == ("on", -3, pytest.approx(0.010))
    assert err.result is None and err.status == "4.04 Not Found"
    (var,) = session.variables
    assert var.reads == 3 and var.values == ["int32: 1", "int32: 2"]
    pairs = {(x.request, x.response, x.answered_by): x for x in report.latency}
    ret = pairs[("FunctionCall", "FunctionReturn", "device")]
    assert ret.count == 2 and ret.max == pytest.approx(0.010)  # the 4.04 answer too
    value = pairs[("VariableRequest", "VariableValue", "device")]
    assert value.count == 3 and value.median == pytest.approx(0.0005)


def test_pings_time_signal_and_subscriptions() -> None:
    def build(s: Session) -> None:
        for i in range(4):
            ping = CoapMessage(type=CON, code=0, mid=s.next_mid(D2C))
            s.send(D2C, ping, 10.0 + 15 * i)
            s.send(C2D, CoapMessage(type=ACK, code=0, mid=ping.mid), 10.004 + 15 * i)
        t = s.request(D2C, 0x01, [b"t"], 70.0, token=b"\x05")
        s.send(
            C2D,
            CoapMessage(
                type=ACK, code=0x45, mid=t.mid, token=b"\x05", payload=struct.pack(">I", 1072)
            ),
            70.01,
        )
        sig = s.request(C2D, 0x03, [b"s"], 80.0, token=b"\x07", queries=(b"\x01",))
        s.send(D2C, CoapMessage(type=ACK, code=0x44, mid=sig.mid, token=b"\x07"), 80.001)
        sub = s.request(D2C, 0x01, [b"e", b"peer/"], 81.0, queries=(b"u",))
        s.send(C2D, CoapMessage(type=ACK, code=0, mid=sub.mid), 81.02)

    _, session = _report(build)
    (ping,) = session.pings
    assert (ping.sender, ping.count, ping.acked) == ("device", 4, 4)
    assert ping.interval_median == pytest.approx(15.0) and ping.rtt_median == pytest.approx(0.004)
    sync = session.time_sync
    assert (sync.requests, sync.responses, sync.last_unix_time) == (1, 1, 1072)
    assert sync.last_offset == pytest.approx(1072 - 70.01)
    (cmd,) = session.commands
    assert (cmd.kind, cmd.detail) == ("SignalStart", "start")
    assert cmd.answer.startswith("2.04 Changed after 1.0 ms")
    (sub,) = session.subscriptions
    assert (sub.filter, sub.my_devices, sub.count, sub.answer) == ("peer/", True, 1, "empty ACK")


def test_commands_are_capped() -> None:
    def build(s: Session) -> None:
        for i in range(collector_module.MAX_COMMANDS + 5):
            s.request(C2D, 0x03, [b"s"], 1.0 + i, token=bytes((i % 250 + 1,)), queries=(b"\x00",))

    _, session = _report(build)
    assert len(session.commands) == collector_module.MAX_COMMANDS
    assert session.commands_dropped == 5


def test_finding_points_to_its_message() -> None:
    def build(s: Session) -> None:
        s.request(D2C, 0x02, [b"E", b"a"], 1.0, mtype=NON)
        s.mid[D2C] += 5  # a message-ID jump: the tracker reports coap.mid_jump
        s.request(D2C, 0x02, [b"E", b"b"], 2.0, mtype=NON)
        s.c.feed(
            FindingEvent(
                Finding(Severity.INFO, "x.y", "about mid 7", 3.0, "tcp-1", details={"mid": 7})
            )
        )

    report, session = _report(build)
    jump = next(f for f in report.findings if f.code == "coap.mid_jump")
    assert jump.message_ref == "PrivateEvent mid 107 (D→C)"
    assert jump.severity == "warning" and jump.ts == 2.0
    other = next(f for f in report.findings if f.code == "x.y")
    assert other.message_ref == "message ID 7"
    assert session.findings == {"warning": 1, "info": 1}
    assert session.timeline.markers == [[2.0, "warning"]]


def test_findings_are_capped_but_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "MAX_FINDINGS", 10)
    c = ReportCollector()
    for i in range(25):
        c.feed(FindingEvent(Finding(Severity.WARNING, "tcp.gap", f"gap {i}", float(i))))
    report = c.finish()
    assert len(report.findings) == 10 and report.findings_dropped == 15
    (group,) = report.finding_groups
    assert (group.code, group.count, group.example) == ("tcp.gap", 25, "gap 0")
    assert report.severity_counts["warning"] == 25


def test_tcp_handshake_flow_and_end_note() -> None:
    c = ReportCollector()
    s = Session(c)
    c.feed(HandshakeBlob("tcp-1", C2D, 0.0, "nonce", bytes(40)))
    c.feed(
        HandshakeBlob(
            "tcp-1",
            D2C,
            0.01,
            "identity",
            bytes(256),
            {"device_id": "ab" * 12, "decrypted": True, "nonce_echo_ok": True},
        )
    )
    c.feed(
        HandshakeBlob(
            "tcp-1",
            C2D,
            0.03,
            "session_key",
            bytes(384),
            {"session_key_recovered": True, "signature_valid": False},
        )
    )
    s.info.checks["signature"].set(CheckStatus.FAILED, "not signed by the server key given")
    s.info.outcome = "handshake failed"
    s.end(0.05)
    report = c.finish()
    flow = report.sessions[0].flow
    assert [(f.label, f.direction, f.size, f.status) for f in flow] == [
        ("nonce", "cloud->device", 40, "ok"),
        ("identity", "device->cloud", 256, "ok"),
        ("session key", "cloud->device", 384, "failed"),
        ("session handshake failed", None, None, "failed"),
    ]
    assert flow[1].note == f"device ID {'ab' * 12}"
    assert "signature INVALID" in flow[2].note
    assert report.sessions[0].handshake_failure == (
        "server signature valid: not signed by the server key given"
    )
    pairs = {(x.request, x.response) for x in report.latency}
    assert {("nonce", "identity"), ("identity", "session key")} <= pairs


def test_dtls_flights_merge_into_one_arrow() -> None:
    c = ReportCollector()
    s = Session(c, "dtls-1", "dtls")
    for step in ("ServerHello", "ServerKeyExchange", "ServerHelloDone"):
        c.feed(HandshakeBlob("dtls-1", C2D, 1.0, step, b"", transport="dtls"))
    c.feed(
        HandshakeBlob(
            "dtls-1",
            C2D,
            2.0,
            "Alert",
            b"",
            {"level": 2, "description": "bad_record_mac"},
            transport="dtls",
        )
    )
    s.end(3.0)
    flow = c.finish().sessions[0].flow
    assert flow[0].label == "ServerHello, ServerKeyExchange, ServerHelloDone"
    assert (flow[1].label, flow[1].status) == ("Alert: bad_record_mac", "failed")


def test_flow_folds_later_messages() -> None:
    def build(s: Session) -> None:
        for i in range(collector_module.FLOW_MESSAGES + 7):
            s.request(D2C, 0x02, [b"E", b"e"], 1.0 + i, mtype=NON)

    _, session = _report(build)
    more = [f for f in session.flow if f.status == "more"]
    assert [m.label for m in more] == ["7 more messages"]
    assert session.flow_more == 7
    assert session.flow[-1].direction is None and session.flow[-1].label.startswith("session")


def test_unknown_sessions_are_ignored_and_open_ones_closed() -> None:
    c = ReportCollector()
    c.feed(MessageEvent("nope", D2C, 1.0, 10))
    info = SessionInfo("tcp-9", "tcp")
    info.touch(5.0)
    c.feed(SessionStarted(info, 5.0))
    report = c.finish()
    assert [s.id for s in report.sessions] == ["tcp-9"]


def test_reservoir_quantiles() -> None:
    r = Reservoir(size=1000)
    for v in range(1, 101):
        r.add(float(v))
    assert (r.median(), r.quantile(0.95), r.max, r.count) == (50.5, 95.0, 100.0, 100)
    big = Reservoir(size=100)
    for v in range(10_000):
        big.add(float(v))
    assert len(big.samples) == 100 and big.count == 10_000 and big.max == 9999.0
    assert 2000 < (big.median() or 0) < 8000
    assert Reservoir().median() is None and Reservoir().quantile(0.5) is None


def test_time_bins_double_and_keep_counts() -> None:
    bins = TimeBins(nbins=10, width=1.0)
    for ts in range(100):
        bins.add(float(ts), ts % 2 == 0)
    assert bins.width == 16.0
    assert sum(bins.d2c) == 50 and sum(bins.c2d) == 50
    assert bins.used(None) == 7
    bins.extend_to(200.0)
    assert bins.width == 32.0 and sum(bins.d2c) == 50


def test_model_helpers() -> None:
    assert clip("abc", 5) == "abc" and clip("abcdefgh", 3) == "abc…(+5)"
    step = FlowStep(1.0, None, "x", note="n")
    data = to_jsonable({"k": (step, float("nan"), b"\x01")})
    assert data == {
        "k": [
            {"ts": 1.0, "direction": None, "label": "x", "size": None, "note": "n", "status": "ok"},
            None,
            "01",
        ]
    }
    upper = map_strings({"a": [step]}, str.upper)
    assert upper["A"][0].label == "X" and upper["A"][0].ts == 1.0
