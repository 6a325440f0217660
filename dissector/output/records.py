"""Turn pipeline events into the stable record schema (NDJSON/JSON/CSV/table rows).

Schema version 1. Every record is a JSON object with ``record`` (``message``,
``handshake``, ``session``, ``finding``) and ``schema_version``. Byte strings are lower
case hex (``""`` when empty, never null). See README "NDJSON schema".
"""

from __future__ import annotations

from typing import Any, Final

from dissector.coap import CoapMessage
from dissector.coap.options import (
    BLOCK,
    EMPTY,
    OPTIONS,
    STRING,
    UINT,
    URI_PATH,
    decode_block,
    option_name,
    option_value_repr,
)
from dissector.particle.tracker import RequestRef
from dissector.pipeline import PipelineEvent, SessionEnded, SessionStarted
from dissector.protocol.events import FindingEvent, HandshakeBlob, MessageEvent, SessionKeys
from dissector.protocol.session import SessionInfo

SCHEMA_VERSION = 1
_TYPES = ("CON", "NON", "ACK", "RST")
#: code byte -> ``"class.detail"``
_CODES: Final = tuple(f"{c >> 5}.{c & 0x1F:02d}" for c in range(256))
# Option number -> (name, value renderer); 0 opaque, 1 uint, 2 string, 3 block, 4 empty.
_KIND_CODE: Final = {UINT: 1, STRING: 2, BLOCK: 3, EMPTY: 4}
_OPTION_KINDS: Final = {n: (name, _KIND_CODE.get(fmt, 0)) for n, (name, fmt) in OPTIONS.items()}


def _options(msg: CoapMessage) -> tuple[list[dict[str, Any]], str]:
    """The ``options`` list and the ``uri`` of a message (one pass over its options)."""
    out: list[dict[str, Any]] = []
    path: list[str] | None = None
    for o in msg.options:
        n = o.number
        v = o.value
        entry = _OPTION_KINDS.get(n)
        if entry is None:
            out.append({"number": n, "name": option_name(n), "value": option_value_repr(n, v)})
            continue
        name, kind = entry
        value: Any
        if kind == 2:
            value = v.decode("utf-8", "backslashreplace")
            if n == URI_PATH:
                if path is None:
                    path = [value]
                else:
                    path.append(value)
        elif kind == 1:
            value = int.from_bytes(v, "big")
        elif kind == 0:
            value = v.hex()
        elif kind == 3:
            value = decode_block(v)
        else:
            value = None if not v else v.hex()
        out.append({"number": n, "name": name, "value": value})
    return out, "" if path is None else "/" + "/".join(path)


def coap_record(msg: CoapMessage) -> dict[str, Any]:
    """The ``coap`` object of a message record."""
    if msg.options:
        options, uri = _options(msg)
    else:
        options, uri = [], ""
    return {
        "type": _TYPES[msg.type],
        "code": _CODES[msg.code],
        "mid": msg.mid,
        "token": msg.token.hex(),
        "uri": uri,
        "options": options,
        "payload": msg.payload.hex(),
    }


def message_record(ev: MessageEvent) -> dict[str, Any]:
    """One ``message`` record: a CoAP message, or an encrypted frame and why."""
    obs = ev.observation
    coap = ev.coap
    rec: dict[str, Any] = {
        "record": "message",
        "schema_version": SCHEMA_VERSION,
        "session": ev.session,
        "transport": ev.transport,
        "direction": ev.direction._value_,
        "ts": ev.ts,
        "device_id": ev.device_id or None,
        "length": ev.wire_length,
    }
    if coap is not None:
        rec["kind"] = obs.kind if obs is not None else "Unknown"
        rec["coap"] = coap_record(coap)
        if coap.violations:
            rec["violations"] = list(coap.violations)
        if obs is not None:
            if obs.decoded is not None:
                rec["decoded"] = obs.decoded
            if obs.request is not None:
                rec["request"] = _request_ref(obs.request)
            if obs.latency is not None:
                rec["latency"] = obs.latency
        rec["retransmission"] = ev.retransmission
    else:
        enc = ev.encrypted
        rec["kind"] = "Encrypted"
        rec["coap"] = None
        rec["encrypted"] = {
            "length": enc.length if enc else ev.wire_length,
            "reason": enc.reason if enc else "unknown",
            "known_plaintext": (
                enc.known_plaintext.hex() if enc and enc.known_plaintext is not None else None
            ),
            "known_offset": enc.known_offset if enc else 0,
        }
    return rec


def _request_ref(req: RequestRef) -> dict[str, Any]:
    """The request a response answers: kind, time, message ID, token."""
    return {"kind": req.kind, "ts": req.ts, "mid": req.mid, "token": req.token.hex()}


def handshake_record(ev: HandshakeBlob) -> dict[str, Any]:
    """One ``handshake`` record (a TCP handshake blob)."""
    info = {k: v for k, v in ev.info.items()}
    return {
        "record": "handshake",
        "schema_version": SCHEMA_VERSION,
        "session": ev.session,
        "transport": ev.transport,
        "direction": ev.direction.value,
        "ts": ev.ts,
        "device_id": ev.device_id or info.get("device_id") or None,
        "step": ev.step,
        "length": len(ev.raw),
        "data": ev.raw.hex(),
        "info": info,
    }


def session_record(info: SessionInfo) -> dict[str, Any]:
    """One ``session`` record: the summary of a whole session."""

    def endpoint(ep: tuple[str, int] | None) -> dict[str, Any] | None:
        return None if ep is None else {"ip": ep[0], "port": ep[1]}

    return {
        "record": "session",
        "schema_version": SCHEMA_VERSION,
        "session": info.id,
        "transport": info.transport,
        "device_id": info.device_id or None,
        "device_id_source": info.device_id_source,
        "device": endpoint(info.device_endpoint),
        "cloud": endpoint(info.cloud_endpoint),
        "start": info.start,
        "end": info.end,
        "duration": (info.end - info.start) if info.start is not None and info.end else None,
        "outcome": info.outcome,
        "closed_by": info.closed_by,
        "handshake_seen": info.handshake_seen,
        "key_source": info.key_source,
        "salt_convention": info.salt_convention,
        "device_key_fingerprint": info.device_key_fingerprint,
        "hello": info.hello,
        "cloud_hello": info.cloud_hello,
        "handshake": [
            {
                "check": key,
                "label": label,
                "status": info.checks[key].status.value,
                "detail": info.checks[key].detail,
            }
            for key, label in info.checklist
            if key in info.checks
        ],
        "stats": {
            d.value: {"bytes": s.bytes, "messages": s.messages, "decrypted": s.decrypted}
            for d, s in info.stats.items()
        },
    }


def finding_record(ev: FindingEvent) -> dict[str, Any]:
    """One ``finding`` record."""
    f = ev.finding
    return {
        "record": "finding",
        "schema_version": SCHEMA_VERSION,
        "session": f.session,
        "severity": f.severity.value,
        "code": f.code,
        "message": f.message,
        "ts": f.ts,
        "direction": f.direction.value if f.direction else None,
        "details": f.details,
    }


def to_record(ev: PipelineEvent) -> dict[str, Any] | None:
    """Any pipeline event as a record, or None for events that have no record."""
    if isinstance(ev, MessageEvent):
        return message_record(ev)
    if isinstance(ev, HandshakeBlob):
        return handshake_record(ev)
    if isinstance(ev, FindingEvent):
        return finding_record(ev)
    if isinstance(ev, SessionEnded):
        return session_record(ev.info)
    if isinstance(ev, SessionStarted | SessionKeys):
        return None
    return None
