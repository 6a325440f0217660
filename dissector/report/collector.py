"""Build the report model from pipeline events, one event at a time.

:class:`ReportCollector` is fed every event :class:`~dissector.pipeline.Dissector` yields
(``feed``), then ``finish`` returns the :class:`~dissector.report.model.Report`. Per session
it keeps aggregates only (counts, a few samples, time bins, reservoirs for quantiles), all
capped, and turns them into a :class:`~dissector.report.model.SessionReport` when the
session ends, dropping the working state: memory stays bounded however long the capture.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from dissector import __version__
from dissector.model import Direction, Severity
from dissector.particle.hello import platform_name
from dissector.pipeline import PipelineEvent, SessionEnded, SessionStarted
from dissector.protocol.events import FindingEvent, HandshakeBlob, MessageEvent
from dissector.protocol.session import SessionInfo
from dissector.report.discovery import CaptureTap
from dissector.report.model import (
    CaptureSummary,
    CheckItem,
    Command,
    DescribeInfo,
    DeviceSighting,
    EventStat,
    FindingEntry,
    FindingGroup,
    FlowStep,
    FunctionCallSample,
    FunctionStat,
    KindCount,
    LatencyStat,
    PingStat,
    Report,
    SessionReport,
    Subscription,
    Timeline,
    TimeSync,
    VariableStat,
    clip,
)
from dissector.report.ota import OTA_KINDS, ImageSink, OtaTracker
from dissector.report.stats import Reservoir, TimeBins

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

MAX_EVENT_NAMES = 100
MAX_FUNCTIONS = 64
MAX_CALL_SAMPLES = 10
MAX_VARIABLES = 64
MAX_VALUES = 8
MAX_COMMANDS = 50
MAX_FLOW = 40
MAX_MARKERS = 100
MAX_SUBSCRIPTIONS = 32
MAX_DESCRIBES = 8
MAX_PENDING = 256
MAX_FINDINGS = 2000
MAX_GROUP_SESSIONS = 50
#: Messages after the handshake shown in the auth-flow diagram at most.
FLOW_MESSAGES = 8

#: Hello flag names in words.
FLAG_WORDS = {
    "ota_upgrade_successful": "OTA update just succeeded",
    "diagnostics_support": "diagnostics supported",
    "immediate_updates_support": "immediate updates supported",
    "handshake_complete": "handshake-complete (reserved)",
    "goodbye_support": "Goodbye supported",
    "device_initiated_describe": "device-initiated describe",
    "compressed_ota": "compressed OTA supported",
    "ota_protocol_v3": "OTA protocol v3",
}

_EVENT_KINDS = frozenset({"PublicEvent", "PrivateEvent"})
_COMMAND_KINDS = frozenset(
    {"SignalStart", "SignalStop", "Signal", "KeyChange", "ServerMoved", "Goodbye"}
)
_SIDE = {D2C: "device", C2D: "cloud"}
#: Findings that say why a handshake failed, in plain words (preferred over the checklist).
_VERDICT_CODES = (
    "handshake.closed_after",
    "handshake.no_",
    "dtls.alert.",
    "dtls.handshake.",
)


def _endpoint(ep: tuple[str, int] | None) -> str | None:
    if ep is None:
        return None
    ip, port = ep
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _status(decoded: dict[str, Any]) -> str:
    status = decoded.get("status")
    if status is None:
        return ""
    return f"{status} {decoded.get('status_name', '')}".strip()


def value_text(decoded: dict[str, Any]) -> str:
    """A variable value in words: the typed value, every interpretation, or the error."""
    if "value" in decoded:
        value = decoded["value"]
        if isinstance(value, str):
            return value
        return json.dumps(value)
    if "interpretations" in decoded:
        guesses = decoded["interpretations"]
        if guesses:
            return " | ".join(f"{k}: {v}" for k, v in guesses.items())
        return f"0x{decoded.get('hex', '')}"
    if "status" in decoded:
        return f"error {_status(decoded)}"
    return str(decoded.get("error", ""))


@dataclass(slots=True)
class _Pings:
    count: int = 0
    acked: int = 0
    last_ts: float | None = None
    intervals: Reservoir = field(default_factory=lambda: Reservoir(512))
    rtts: Reservoir = field(default_factory=lambda: Reservoir(512))


class _SessionState:
    """Working state of one session (dropped when it ends)."""

    def __init__(self, info: SessionInfo, sink: ImageSink | None) -> None:
        self.info = info
        self.flow: list[FlowStep] = []
        self.flow_messages = 0
        self.flow_closed = False
        self.flow_encrypted = 0
        self.more_step: FlowStep | None = None
        self.more_count = 0
        self.flow_more = 0
        self.bins = TimeBins()
        self.markers: list[list[Any]] = []
        self.kinds: dict[str, KindCount] = {}
        self.events: dict[tuple[str, str, str], EventStat] = {}
        self.events_dropped = 0
        self.subscriptions: dict[str, Subscription] = {}
        self.functions: dict[str, FunctionStat] = {}
        self.variables: dict[str, VariableStat] = {}
        self.describes: dict[str, DescribeInfo] = {}
        self.time_sync = TimeSync()
        self.pings = {D2C: _Pings(), C2D: _Pings()}
        self.commands: list[Command] = []
        self.commands_dropped = 0
        self.pending: OrderedDict[tuple[float, int], Any] = OrderedDict()
        self.ota = OtaTracker(info.id, sink)
        self.retransmissions = 0
        self.findings: dict[str, int] = {}
        self.last_ref: tuple[float, str] | None = None
        self.hello_ts: dict[Direction, float] = {}
        self.blob_ts: dict[tuple[Direction, str], float] = {}
        self.identity_fingerprint: str | None = None
        self.handshake_verdict: str | None = None

    def remember(self, ts: float, mid: int, target: Any) -> None:
        self.pending[(ts, mid)] = target
        if len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)

    def recall(self, ev: MessageEvent) -> Any:
        obs = ev.observation
        req = obs.request if obs is not None else None
        if req is None:
            return None
        return self.pending.get((req.ts, req.mid))


class ReportCollector:
    """Feed pipeline events with :meth:`feed`; :meth:`finish` returns the report.

    ``tap``: the :class:`~dissector.report.discovery.CaptureTap` the packets went through
    (devices seen in DNS and presence announcements, DTLS datagram sizes); ``image_sink``
    receives every completely reassembled firmware image.
    """

    def __init__(self, *, tap: CaptureTap | None = None, image_sink: ImageSink | None = None):
        self.tap = tap
        self.image_sink = image_sink
        self._active: dict[str, _SessionState] = {}
        self._order: list[str] = []
        self._done: dict[str, SessionReport] = {}
        self._latency: dict[tuple[str, str, str], Reservoir] = {}
        self.findings: list[FindingEntry] = []
        self.findings_dropped = 0
        self._groups: dict[tuple[str, str], FindingGroup] = {}
        self._missing: list[str] = []

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, event: PipelineEvent) -> None:
        """Take one pipeline event into account."""
        if isinstance(event, MessageEvent):
            self._message(event)
        elif isinstance(event, FindingEvent):
            self._finding(event)
        elif isinstance(event, HandshakeBlob):
            self._blob(event)
        elif isinstance(event, SessionStarted):
            state = self._state(event.info)
            if state.bins.start is None:
                state.bins.start = event.info.start if event.info.start is not None else event.ts
        elif isinstance(event, SessionEnded):
            self._end(event.info, event.ts)

    def _state(self, info: SessionInfo) -> _SessionState:
        state = self._active.get(info.id)
        if state is None:
            state = _SessionState(info, self.image_sink)
            self._active[info.id] = state
            if info.id not in self._done:
                self._order.append(info.id)
        return state

    def _get(self, session: str | None) -> _SessionState | None:
        return self._active.get(session) if session is not None else None

    # -- messages --------------------------------------------------------------------------

    def _message(self, ev: MessageEvent) -> None:
        state = self._get(ev.session)
        if state is None:
            return
        obs = ev.observation
        kind = obs.kind if (obs is not None and ev.coap is not None) else "Encrypted"
        d2c = ev.direction is D2C
        counter = state.kinds.get(kind)
        if counter is None:
            counter = state.kinds[kind] = KindCount(kind)
        if d2c:
            counter.d2c += 1
        else:
            counter.c2d += 1
        state.bins.add(ev.ts, d2c)
        mid = ev.coap.mid if ev.coap is not None else None
        ref = kind if mid is None else f"{kind} mid {mid}"
        arrow = "D→C" if d2c else "C→D"
        state.last_ref = (ev.ts, f"{ref} ({arrow})")
        if kind == "Hello" and not ev.retransmission:
            state.hello_ts.setdefault(ev.direction, ev.ts)
        self._flow_message(state, ev, kind)
        if ev.retransmission:
            state.retransmissions += 1
            return
        if obs is None or ev.coap is None:
            return
        if obs.latency is not None and obs.request is not None:
            key = (obs.request.kind, kind, _SIDE[ev.direction])
            res = self._latency.get(key)
            if res is None:
                res = self._latency[key] = Reservoir()
            res.add(obs.latency)
        decoded = obs.decoded or {}
        if kind in OTA_KINDS:
            state.ota.observe(kind, decoded, ev.coap.payload, ev.ts, ev.retransmission)
        elif kind in _EVENT_KINDS:
            self._event(state, ev, decoded)
        elif kind == "Subscribe":
            self._subscribe(state, ev, decoded)
        elif kind == "FunctionCall":
            self._function_call(state, ev, decoded)
        elif kind == "FunctionReturn":
            self._function_return(state, ev, decoded)
        elif kind == "VariableRequest":
            self._variable(state, str(decoded.get("name", ""))).reads += 1
        elif kind == "VariableValue":
            self._variable_value(state, decoded)
        elif kind in ("DescribeReturn", "DeviceDescribe"):
            self._describe(state, ev, decoded)
        elif kind == "GetTime":
            state.time_sync.requests += 1
        elif kind == "GetTimeReturn":
            self._time(state, ev, decoded)
        elif kind == "Ping":
            self._ping(state, ev)
        elif kind in _COMMAND_KINDS:
            self._command(state, ev, kind, decoded)
        elif kind == "Hello":
            if ev.direction is C2D and D2C in state.hello_ts and state.info.transport == "tcp":
                self._latency_add("Hello", "Hello", "cloud", ev.ts - state.hello_ts[D2C])
        else:
            self._answer(state, ev, kind, decoded)

    def _latency_add(self, request: str, response: str, side: str, value: float) -> None:
        key = (request, response, side)
        res = self._latency.get(key)
        if res is None:
            res = self._latency[key] = Reservoir()
        res.add(value)

    def _event(self, state: _SessionState, ev: MessageEvent, d: dict[str, Any]) -> None:
        name = str(d.get("name", ""))
        visibility = str(d.get("visibility", ""))
        key = (ev.direction.value, name, visibility)
        stat = state.events.get(key)
        if stat is None:
            if len(state.events) >= MAX_EVENT_NAMES:
                state.events_dropped += 1
                return
            stat = state.events[key] = EventStat(
                clip(name), _SIDE[ev.direction], visibility, first_ts=ev.ts
            )
            stat.sample_data = clip(str(d.get("data", "")))
            stat.data_format = str(d.get("data_format", "text"))
        stat.count += 1
        stat.last_ts = ev.ts
        ttl = d.get("ttl")
        if isinstance(ttl, int):
            stat.ttl = ttl
        assert ev.coap is not None
        stat.bytes += len(ev.coap.payload)
        state.remember(ev.ts, ev.coap.mid, stat)

    def _subscribe(self, state: _SessionState, ev: MessageEvent, d: dict[str, Any]) -> None:
        name = clip(str(d.get("filter", "")))
        sub = state.subscriptions.get(name)
        if sub is None:
            if len(state.subscriptions) >= MAX_SUBSCRIPTIONS:
                return
            sub = state.subscriptions[name] = Subscription(name, bool(d.get("my_devices")))
        sub.count += 1
        assert ev.coap is not None
        state.remember(ev.ts, ev.coap.mid, sub)

    def _function_call(self, state: _SessionState, ev: MessageEvent, d: dict[str, Any]) -> None:
        name = clip(str(d.get("name", "")))
        stat = state.functions.get(name)
        if stat is None:
            if len(state.functions) >= MAX_FUNCTIONS:
                return
            stat = state.functions[name] = FunctionStat(name)
        stat.calls += 1
        sample = FunctionCallSample(ev.ts, clip(str(d.get("argument", ""))))
        if len(stat.samples) < MAX_CALL_SAMPLES:
            stat.samples.append(sample)
        assert ev.coap is not None
        state.remember(ev.ts, ev.coap.mid, (stat, sample))

    def _function_return(self, state: _SessionState, ev: MessageEvent, d: dict[str, Any]) -> None:
        found = state.recall(ev)
        if not isinstance(found, tuple):
            return
        stat, sample = found
        assert ev.observation is not None
        sample.latency = ev.observation.latency
        result = d.get("result")
        if isinstance(result, int):
            sample.result = result
        else:
            stat.errors += 1
            sample.status = _status(d) or str(d.get("error", "error"))

    def _variable(self, state: _SessionState, name: str) -> VariableStat:
        name = clip(name)
        stat = state.variables.get(name)
        if stat is None:
            stat = VariableStat(name)
            if len(state.variables) < MAX_VARIABLES:
                state.variables[name] = stat
        return stat

    def _variable_value(self, state: _SessionState, d: dict[str, Any]) -> None:
        stat = self._variable(state, str(d.get("name") or ""))
        if "type" in d:
            stat.type = str(d["type"])
        if "status" in d or "error" in d:
            stat.errors += 1
        text = clip(value_text(d), 256)
        stat.last_value = text
        if text not in stat.values and len(stat.values) < MAX_VALUES:
            stat.values.append(text)

    def _describe(self, state: _SessionState, ev: MessageEvent, d: dict[str, Any]) -> None:
        if d.get("partial") or "status" in d:
            return
        types = [str(t) for t in d.get("types") or []]
        key = ",".join(types) or "description"
        if key not in state.describes and len(state.describes) >= MAX_DESCRIBES:
            return
        info = DescribeInfo(ev.ts, ev.direction.value, types or ["description"])
        info.functions = [clip(str(f), 256) for f in d.get("functions") or []][:100]
        variables = d.get("variables") or {}
        info.variables = {clip(str(k), 256): str(v) for k, v in list(variables.items())[:100]}
        if isinstance(d.get("platform_id"), int):
            info.platform_id = d["platform_id"]
        if isinstance(d.get("module_count"), int):
            info.module_count = d["module_count"]
        info.format = str(d.get("format", "json"))
        if "json" in d:
            info.json = clip(json.dumps(d["json"], ensure_ascii=False, separators=(",", ":")), 2048)
        elif "hex" in d:
            info.json = clip(str(d["hex"]), 512)
        elif "error" in d:
            info.json = clip(str(d["error"]), 512)
        state.describes[key] = info

    def _time(self, state: _SessionState, ev: MessageEvent, d: dict[str, Any]) -> None:
        sync = state.time_sync
        sync.responses += 1
        unix = d.get("unix_time")
        if isinstance(unix, int):
            sync.last_unix_time = unix
            offset = unix - ev.ts
            if sync.first_offset is None:
                sync.first_offset = offset
            sync.last_offset = offset

    def _ping(self, state: _SessionState, ev: MessageEvent) -> None:
        p = state.pings[ev.direction]
        p.count += 1
        if p.last_ts is not None:
            p.intervals.add(ev.ts - p.last_ts)
        p.last_ts = ev.ts
        assert ev.coap is not None
        state.remember(ev.ts, ev.coap.mid, p)

    def _command(
        self, state: _SessionState, ev: MessageEvent, kind: str, d: dict[str, Any]
    ) -> None:
        if len(state.commands) >= MAX_COMMANDS:
            state.commands_dropped += 1
            return
        if kind in ("SignalStart", "SignalStop", "Signal"):
            detail = {True: "start", False: "stop"}.get(d.get("start"), "unreadable")  # type: ignore[arg-type]
        elif kind == "KeyChange":
            detail = (
                "discard the DTLS session"
                if d.get("discard_session")
                else (f"value {d.get('value')}")
            )
        elif kind == "Goodbye":
            bits = [
                f"{name.split('_')[0]}: {d[name]}"
                for name in ("cloud_reason_name", "reset_reason_name", "network_reason_name")
                if d.get(name)
            ]
            if "sleep_duration" in d:
                bits.append(f"sleep {d['sleep_duration']} s")
            detail = ", ".join(bits)
        elif kind == "ServerMoved":
            detail = f"to {d.get('server_addr', '?')}:{d.get('server_port', '?')}"
        else:
            detail = ""
        cmd = Command(ev.ts, kind, ev.direction.value, clip(detail, 256))
        state.commands.append(cmd)
        assert ev.coap is not None
        state.remember(ev.ts, ev.coap.mid, cmd)

    def _answer(self, state: _SessionState, ev: MessageEvent, kind: str, d: dict[str, Any]) -> None:
        target = state.recall(ev)
        if target is None:
            return
        obs = ev.observation
        assert obs is not None
        text = "empty ACK" if kind in ("EmptyAck", "Reset") and not d.get("status") else _status(d)
        if kind == "Reset":
            text = "RST"
        if isinstance(target, EventStat):
            target.answers[text] = target.answers.get(text, 0) + 1
        elif isinstance(target, Subscription):
            target.answer = text
        elif isinstance(target, Command):
            latency = f" after {obs.latency * 1000:.1f} ms" if obs.latency is not None else ""
            target.answer = f"{text}{latency}"
        elif isinstance(target, _Pings):
            target.acked += 1
            if obs.latency is not None:
                target.rtts.add(obs.latency)
        elif isinstance(target, tuple) and kind == "EmptyAck":
            return  # a function call's empty ACK; the result follows

    # -- handshake and flow ----------------------------------------------------------------

    def _blob(self, ev: HandshakeBlob) -> None:
        state = self._get(ev.session)
        if state is None:
            return
        info = ev.info
        size: int | None = len(ev.raw) or None
        if ev.transport == "dtls" and self.tap is not None:
            ep = state.info.device_endpoint if ev.direction is D2C else state.info.cloud_endpoint
            if ep is not None:
                size = self.tap.datagram_size(ev.ts, ep[0], ep[1])
        step = ev.step
        note = ""
        status = "ok"
        if step == "identity":
            fp = info.get("device_public_key_fingerprint")
            if isinstance(fp, str):
                state.identity_fingerprint = fp
            bits = []
            if info.get("device_id"):
                bits.append(f"device ID {info['device_id']}")
            if info.get("decrypted") is False:
                bits.append("not decrypted (no matching server key)")
            if info.get("nonce_echo_ok") is False:
                bits.append("nonce echo wrong")
                status = "failed"
            note = "; ".join(bits)
            self._handshake_latency(state, "nonce", "identity", "device", ev.ts)
        elif step == "session_key":
            bits = []
            if info.get("session_key_recovered"):
                bits.append("session key recovered")
            if info.get("signature_valid") is True:
                bits.append("signature valid")
            elif info.get("signature_valid") is False:
                bits.append("signature INVALID")
                status = "failed"
            note = "; ".join(bits)
            self._handshake_latency(state, "identity", "session key", "cloud", ev.ts)
        elif step == "nonce":
            note = "in clear"
        if step == "session_key":
            step = "session key"
        elif step == "Alert":
            step = f"Alert: {info.get('description', '?')}"
            if info.get("level") == 2:
                status = "failed"
            elif info.get("description") not in ("close_notify", "encrypted alert"):
                status = "warning"
        elif step == "ClientHello" and info.get("cookie"):
            step = "ClientHello (with cookie)"
        elif step == "ServerHello":
            self._handshake_latency(state, "ClientHello", "ServerHello", "cloud", ev.ts)
        elif step == "Certificate" and ev.direction is D2C:
            fp = info.get("device_public_key_fingerprint")
            if isinstance(fp, str):
                note = f"device key {fp[:16]}"
        elif step == "Finished" and ev.direction is C2D:
            self._handshake_latency(state, "Finished", "Finished", "cloud", ev.ts)
        if info.get("retransmission"):
            note = (note + "; " if note else "") + "retransmission"
            status = "warning"
        if ev.step == "EncryptedHandshake":
            status = "warning"
        elif info.get("error"):
            note = (note + "; " if note else "") + clip(str(info["error"]), 120)
            status = "failed"
        state.blob_ts[(ev.direction, ev.step)] = ev.ts
        last = state.flow[-1] if state.flow else None
        if (
            ev.transport == "dtls"
            and last is not None
            and last.direction == ev.direction.value
            and last.ts == ev.ts
            and not step.startswith("Alert")
        ):
            last.label = f"{last.label}, {step}"
            if note:
                last.note = f"{last.note}; {note}" if last.note else note
            if status != "ok":
                last.status = status
            return
        self._add_flow(state, FlowStep(ev.ts, ev.direction.value, step, size, note, status))

    def _handshake_latency(
        self, state: _SessionState, request: str, response: str, side: str, ts: float
    ) -> None:
        asker = C2D if side == "device" else D2C
        start = state.blob_ts.get((asker, request))
        if start is not None:
            self._latency_add(request, response, side, ts - start)

    def _add_flow(self, state: _SessionState, step: FlowStep) -> None:
        if len(state.flow) >= MAX_FLOW:
            state.flow_more += 1
            return
        state.flow.append(step)

    def _flow_message(self, state: _SessionState, ev: MessageEvent, kind: str) -> None:
        if state.flow_closed:
            state.flow_more += 1
            more = state.more_step
            if more is None or not state.flow or state.flow[-1] is not more:
                if len(state.flow) >= MAX_FLOW:
                    return
                more = state.more_step = FlowStep(ev.ts, None, "", status="more")
                state.flow.append(more)
                state.more_count = 0
            state.more_count += 1
            more.label = f"{state.more_count} more message" + ("s" if state.more_count > 1 else "")
            return
        note = ""
        status = "ok"
        if ev.coap is None:
            if not state.flow_encrypted:
                reason = ev.encrypted.reason if ev.encrypted is not None else "not decrypted"
                note = clip(reason, 120)
            state.flow_encrypted += 1
            status = "warning"
        elif kind == "Hello" and ev.direction is D2C:
            d = (ev.observation.decoded if ev.observation else None) or {}
            bits = []
            if d.get("platform"):
                bits.append(str(d["platform"]))
            if d.get("device_id"):
                bits.append(f"ID {d['device_id']}")
            note = ", ".join(bits)
        if ev.retransmission:
            note = (note + "; " if note else "") + "retransmission"
            status = "warning"
        self._add_flow(
            state, FlowStep(ev.ts, ev.direction.value, kind, ev.wire_length, note, status)
        )
        state.flow_messages += 1
        hellos = state.info.transport == "tcp" and len(state.hello_ts) == 2
        if (
            hellos
            or state.flow_messages >= FLOW_MESSAGES
            or state.flow_encrypted >= 4
            or (state.info.transport == "dtls" and kind in ("EmptyAck",) and D2C in state.hello_ts)
        ):
            state.flow_closed = True

    # -- findings --------------------------------------------------------------------------

    def _finding(self, ev: FindingEvent) -> None:
        f = ev.finding
        state = self._get(f.session)
        ref: str | None = None
        if state is not None:
            sev = f.severity.value
            state.findings[sev] = state.findings.get(sev, 0) + 1
            if (
                f.ts is not None
                and f.severity is not Severity.INFO
                and len(state.markers) < MAX_MARKERS
            ):
                state.markers.append([f.ts, sev])
            if state.last_ref is not None and f.ts is not None and state.last_ref[0] == f.ts:
                ref = state.last_ref[1]
        if ref is None and isinstance(f.details.get("mid"), int):
            ref = f"message ID {f.details['mid']}"
        if (
            state is not None
            and state.handshake_verdict is None
            and f.severity is Severity.ERROR
            and f.code.startswith(_VERDICT_CODES)
        ):
            state.handshake_verdict = clip(f.message, 600)
        if f.code == "decrypt.missing_key" or f.code == "dtls.session.unknown_resume":
            text = clip(f.message, 400)
            if text not in self._missing and len(self._missing) < 20:
                self._missing.append(text)
        self.add_finding(
            FindingEntry(
                f.severity.value,
                f.code,
                clip(f.message, 2048),
                f.session,
                f.ts,
                f.direction.value if f.direction else None,
                ref,
                _clip_details(f.details),
            )
        )

    def add_finding(self, entry: FindingEntry) -> None:
        """Record one finding (kept up to :data:`MAX_FINDINGS`; always counted)."""
        key = (entry.severity, entry.code)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = FindingGroup(
                entry.severity, entry.code, 0, [], clip(entry.message, 300)
            )
        group.count += 1
        if (
            entry.session is not None
            and entry.session not in group.sessions
            and len(group.sessions) < MAX_GROUP_SESSIONS
        ):
            group.sessions.append(entry.session)
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(entry)
        else:
            self.findings_dropped += 1

    # -- session end -----------------------------------------------------------------------

    def _end(self, info: SessionInfo, ts: float) -> None:
        state = self._active.pop(info.id, None)
        if state is None:
            state = _SessionState(info, self.image_sink)
            if info.id not in self._order:
                self._order.append(info.id)
        state.ota.finish(ts)
        self._done[info.id] = self._session_report(state, info)

    def _session_report(self, state: _SessionState, info: SessionInfo) -> SessionReport:
        rep = SessionReport(info.id, info.transport)
        rep.device_endpoint = _endpoint(info.device_endpoint)
        rep.cloud_endpoint = _endpoint(info.cloud_endpoint)
        rep.start, rep.end = info.start, info.end
        if info.start is not None and info.end is not None:
            rep.duration = info.end - info.start
        rep.device_id = info.device_id or None
        rep.device_id_source = info.device_id_source
        hello = info.hello or {}
        if isinstance(hello.get("platform_id"), int):
            rep.platform_id = hello["platform_id"]
            rep.platform = platform_name(rep.platform_id) or f"unknown platform {rep.platform_id}"
        elif hello.get("variant") == "A":
            rep.platform = "Core (2014 Hello)"  # only the Core's firmware sent variant A
        for name in ("product_id", "product_version", "system_version"):
            value = hello.get(name)
            if isinstance(value, int):
                setattr(rep, name, value)
        rep.hello_variant = hello.get("variant") if info.hello else None
        if isinstance(hello.get("flags"), int):
            rep.hello_flags = hello["flags"]
            rep.hello_flag_words = [
                FLAG_WORDS.get(str(n), str(n)) for n in hello.get("flag_names") or []
            ]
        rep.outcome = info.outcome
        rep.closed_by = info.closed_by
        rep.key_source = info.key_source
        rep.salt_convention = info.salt_convention
        rep.device_key_fingerprint = info.device_key_fingerprint or state.identity_fingerprint
        d2c, c2d = info.stats[D2C], info.stats[C2D]
        rep.bytes_d2c, rep.bytes_c2d = d2c.bytes, c2d.bytes
        rep.messages_d2c, rep.messages_c2d = d2c.messages, c2d.messages
        rep.decrypted_d2c, rep.decrypted_c2d = d2c.decrypted, c2d.decrypted
        rep.retransmissions = state.retransmissions
        failed_check: str | None = None
        for key, label in info.checklist:
            check = info.checks.get(key)
            if check is None:
                continue
            rep.handshake.append(CheckItem(key, label, check.status.value, check.detail))
            if check.status.value == "failed" and failed_check is None:
                failed_check = f"{label}: {check.detail}" if check.detail else label
        if info.outcome in ("handshake failed", "failed"):
            rep.handshake_failure = state.handshake_verdict or failed_check or info.outcome
        rep.flow = state.flow
        if info.outcome == "resumed" and not info.handshake_seen and rep.flow:
            rep.flow.insert(
                0,
                FlowStep(
                    rep.flow[0].ts,
                    None,
                    "resumed session: no handshake on the wire",
                    note=clip(f"keys: {info.key_source}" if info.key_source else "no keys", 120),
                    status="info",
                ),
            )
        end_note = f"session {info.outcome}"
        if info.closed_by:
            end_note += f", closed by {info.closed_by}"
        failed = info.outcome in ("handshake failed", "failed")
        detail = rep.handshake_failure or ""
        if len(rep.flow) < MAX_FLOW + 1 and info.end is not None:
            rep.flow.append(
                FlowStep(info.end, None, end_note, None, detail, "failed" if failed else "info")
            )
        rep.flow_more = state.flow_more
        bins = state.bins
        bins.extend_to(info.end if info.end is not None else (bins.start or 0.0))
        used = bins.used(info.end)
        rep.timeline = Timeline(bins.start, bins.width, bins.d2c[:used], bins.c2d[:used])
        rep.timeline.markers = state.markers
        rep.kinds = sorted(state.kinds.values(), key=lambda k: (-(k.d2c + k.c2d), k.kind))
        rep.events = list(state.events.values())
        rep.events_dropped = state.events_dropped
        rep.subscriptions = list(state.subscriptions.values())
        rep.functions = list(state.functions.values())
        rep.variables = list(state.variables.values())
        rep.describes = list(state.describes.values())
        rep.time_sync = state.time_sync
        for direction, p in state.pings.items():
            if p.count:
                rep.pings.append(
                    PingStat(
                        _SIDE[direction],
                        p.count,
                        p.acked,
                        p.intervals.median(),
                        p.intervals.max,
                        p.rtts.median(),
                    )
                )
        rep.commands = state.commands
        rep.commands_dropped = state.commands_dropped
        rep.ota = state.ota.transfers
        rep.findings = dict(state.findings)
        return rep

    # -- the end ---------------------------------------------------------------------------

    def finish(self, capture: CaptureSummary | None = None) -> Report:
        """The report (sessions still open are closed as they are)."""
        for sid in list(self._active):
            state = self._active[sid]
            self._end(state.info, state.info.end or 0.0)
        report = Report(generator=f"particle-dissect {__version__}")
        report.capture = capture or CaptureSummary()
        report.sessions = [self._done[sid] for sid in self._order if sid in self._done]
        report.ota = [t for s in report.sessions for t in s.ota]
        self._weaknesses(report)
        report.devices = self._devices(report)
        report.latency = self._latency_stats()
        report.findings = sorted(
            self.findings, key=lambda f: (f.ts is None, f.ts if f.ts is not None else 0.0)
        )
        report.findings_dropped = self.findings_dropped
        order = {"error": 0, "warning": 1, "info": 2}
        report.finding_groups = sorted(
            self._groups.values(), key=lambda g: (order.get(g.severity, 3), -g.count, g.code)
        )
        counts: dict[str, int] = {"error": 0, "warning": 0, "info": 0}
        for group in self._groups.values():
            counts[group.severity] = counts.get(group.severity, 0) + group.count
        report.severity_counts = counts
        self._capture_counts(report)
        return report

    def _capture_counts(self, report: Report) -> None:
        cap = report.capture
        cap.sessions = len(report.sessions)
        cap.sessions_tcp = sum(1 for s in report.sessions if s.transport == "tcp")
        cap.sessions_dtls = cap.sessions - cap.sessions_tcp
        dec = cap.decryption
        for s in report.sessions:
            total = s.messages_d2c + s.messages_c2d
            done = s.decrypted_d2c + s.decrypted_c2d
            dec.messages += total
            dec.decrypted += done
            if total == 0:
                continue
            if done == total:
                dec.sessions_decrypted += 1
            elif done:
                dec.sessions_partial += 1
            else:
                dec.sessions_encrypted += 1
        dec.missing = list(self._missing)

    def _latency_stats(self) -> list[LatencyStat]:
        out = []
        for (request, response, side), res in self._latency.items():
            median = res.median()
            p95 = res.quantile(0.95)
            if median is None or p95 is None or res.max is None:
                continue
            out.append(LatencyStat(request, response, side, res.count, median, p95, res.max))
        out.sort(key=lambda s: (-s.count, s.request, s.response))
        return out

    def _weaknesses(self, report: Report) -> None:
        tcp = [s for s in report.sessions if s.transport == "tcp"]
        if tcp:
            ids = sorted({s.device_id for s in tcp if s.device_id})
            who = ", ".join(ids[:10]) + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")
            first = tcp[0]
            self.add_finding(
                FindingEntry(
                    "warning",
                    "report.weakness.rsa1024",
                    "TCP devices authenticate with RSA-1024 keys (the firmware fixes the size): "
                    "below current recommendations, and one device key decrypts every "
                    "recorded session of that device (no forward secrecy)"
                    + (f"; devices: {who}" if who else ""),
                    first.id,
                    first.start,
                    details={"sessions": len(tcp), "devices": ids[:50]},
                )
            )
            self.add_finding(
                FindingEntry(
                    "info",
                    "report.weakness.no_frame_integrity",
                    "TCP frames are AES-128-CBC without a MAC and the device strips padding "
                    "without checking it: an attacker on the path can alter frames "
                    "undetected (bit flips in the next block of plaintext)",
                    first.id,
                    first.start,
                    details={"sessions": len(tcp)},
                )
            )
        for s in report.sessions:
            if s.retransmissions:
                self.add_finding(
                    FindingEntry(
                        "info",
                        "report.retransmissions",
                        f"{_n(s.retransmissions, 'CoAP message')} retransmitted (lost or late "
                        "acknowledgements)",
                        s.id,
                        s.start,
                        details={"count": s.retransmissions},
                    )
                )
        for t in report.ota:
            ref = f"OTA transfer {t.index}"
            if t.crc_failures or t.crc_rejected:
                self.add_finding(
                    FindingEntry(
                        "warning",
                        "report.ota.crc_failures",
                        f"{_n(t.crc_failures, 'chunk')} with a bad CRC-32 on the wire, "
                        f"{_n(t.crc_rejected, 'chunk')} rejected by the device (4.00)",
                        t.session,
                        t.start_ts,
                        message_ref=ref,
                        details={"crc_failures": t.crc_failures, "rejected": t.crc_rejected},
                    )
                )
            if t.sha256_match is False:
                self.add_finding(
                    FindingEntry(
                        "error",
                        "report.ota.sha256_mismatch",
                        f"the reassembled image's SHA-256 {t.sha256} differs from the "
                        f"announced {t.announced_sha256}",
                        t.session,
                        t.end_ts,
                        message_ref=ref,
                    )
                )
            if not t.complete:
                self.add_finding(
                    FindingEntry(
                        "warning",
                        "report.ota.incomplete",
                        f"firmware transfer not completed: {t.result or 'no result seen'}",
                        t.session,
                        t.end_ts or t.start_ts,
                        message_ref=ref,
                    )
                )
        dns = [s for s in (self.tap.sightings.values() if self.tap else ()) if "DNS" in s.source]
        if dns:
            ids = sorted({s.device_id for s in dns})
            self.add_finding(
                FindingEntry(
                    "info",
                    "report.weakness.device_id_in_dns",
                    f"{_n(len(ids), 'device ID')} in clear in DNS queries for "
                    "<ID>.udp.particle.io: anyone on the path learns which devices talk",
                    None,
                    min(s.first_ts for s in dns),
                    details={"devices": ids[:50]},
                )
            )

    def _devices(self, report: Report) -> list[DeviceSighting]:
        by_id: dict[str, DeviceSighting] = {}
        by_fp: dict[str, DeviceSighting] = {}
        ordered: list[DeviceSighting] = []

        def touch(dev: DeviceSighting, ts: float | None, end: float | None = None) -> None:
            for t in (ts, end):
                if t is None:
                    continue
                if dev.first_ts is None or t < dev.first_ts:
                    dev.first_ts = t
                if dev.last_ts is None or t > dev.last_ts:
                    dev.last_ts = t

        def add(lst: list[str], value: str | None, cap: int = 20) -> None:
            if value and value not in lst and len(lst) < cap:
                lst.append(value)

        for s in report.sessions:
            dev: DeviceSighting | None = None
            if s.device_id:
                dev = by_id.get(s.device_id)
            if dev is None and s.device_key_fingerprint:
                dev = by_fp.get(s.device_key_fingerprint)
                if dev is not None and s.device_id and dev.device_id is None:
                    dev.device_id = s.device_id
                    by_id[s.device_id] = dev
            if dev is None:
                if not s.device_id and not s.device_key_fingerprint:
                    continue
                dev = DeviceSighting(s.device_id)
                ordered.append(dev)
                if s.device_id:
                    by_id[s.device_id] = dev
            if s.device_key_fingerprint:
                dev.key_fingerprint = dev.key_fingerprint or s.device_key_fingerprint
                by_fp[s.device_key_fingerprint] = dev
                if s.transport == "dtls":
                    add(dev.sources, "DTLS certificate (public key)")
            if s.device_id:
                add(dev.sources, s.device_id_source or "session")
            if s.platform and not dev.platform:
                dev.platform = s.platform
            if s.device_endpoint:
                add(dev.addresses, s.device_endpoint.rsplit(":", 1)[0].strip("[]"))
            add(dev.sessions, s.id, 200)
            if s.decrypted_d2c + s.decrypted_c2d:
                dev.decrypted = True
            touch(dev, s.start, s.end)
        if self.tap is not None:
            for sight in self.tap.sightings.values():
                dev = by_id.get(sight.device_id)
                if dev is None:
                    dev = by_id[sight.device_id] = DeviceSighting(sight.device_id)
                    ordered.append(dev)
                source = f"{sight.source} {sight.detail}"
                if sight.resolved:
                    source += f" → {', '.join(sight.resolved)}"
                if sight.count > 1:
                    source += f" (×{sight.count})"
                add(dev.sources, clip(source, 300))
                add(dev.addresses, sight.address)
                touch(dev, sight.first_ts, sight.last_ts)
        return ordered


def _n(count: int, noun: str) -> str:
    """``1 chunk``, ``3 chunks``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _clip_details(details: dict[str, Any]) -> dict[str, Any]:
    """Finding details, with long strings and big lists cut (the model stays small)."""
    out: dict[str, Any] = {}
    for key, value in list(details.items())[:30]:
        if isinstance(value, str):
            out[str(key)] = clip(value, 512)
        elif isinstance(value, list | tuple):
            out[str(key)] = [clip(v, 512) if isinstance(v, str) else v for v in value[:50]]
        elif isinstance(value, dict):
            out[str(key)] = clip(json.dumps(value, default=str, ensure_ascii=False), 512)
        elif isinstance(value, bytes):
            out[str(key)] = clip(value.hex(), 512)
        elif value is None or isinstance(value, bool | int | float):
            out[str(key)] = value
        else:
            out[str(key)] = clip(str(value), 512)
    return out
