"""Per-session exchange tracking: pair responses with requests, type variable values,
spot retransmissions, message-ID jumps and token reuse.

Matching rules (spec §4.1, §4.2, §10, §11):

* Empty ACK / RST: by message ID to a pending request sent the other way.
* Piggybacked response (ACK with a code): by message ID and token. Two real-world quirks are
  still matched, with a finding: same ID but another token (spark-protocol answers tokenless
  events with token ``00``: ``coap.ack_token_mismatch``, info) and same token but another ID
  (Device OS 0.7/1.0 answers signal requests with its own next ID: ``coap.ack_mid_mismatch``,
  warning).
* Separate response (CON/NON with a code): by token to a pending request sent the other way.

A request stays pending until its response, until an empty ACK when it has no token (a
separate response could not be matched anyway), for ``pending_timeout`` seconds, or until
more than ``max_pending`` requests are pending (oldest dropped first). Requests that are
never answered are not kept at all: OTA v3 chunks and their acknowledgements, legacy
fast-OTA chunks (those carrying a chunk index: the device answers them neither with an ACK
nor with ChunkReceived, spec §5.1; kept, hundreds of them would hold every 1-byte token),
and a NON Hello (on TCP each side's Hello is a request of its own, never a response to the
other's, spec §3.5; the device acknowledges only a CON Hello, §4.2), so a cloud Hello's
token is free again for later requests. Nothing else is kept per message, so memory stays
bounded however long the session.

Findings (``Finding.code``, severity):

==================================  ========  ==================================================
Code                                Severity  Meaning
==================================  ========  ==================================================
``coap.rfc_violation``              info      the codec tolerated an RFC 7252 deviation
``coap.mid_jump``                   warning   TCP device message ID is not previous + 1 (ACKs
                                              exempt; not checked across a message the
                                              transport could not decode, see :meth:`skip`);
                                              the Node cloud disconnects ("Bad Counter")
``coap.token_reuse``                warning   token reused while a request carrying it is
                                              unanswered (info once that request was ACKed)
``coap.ack_token_mismatch``         info      piggybacked answer with the request's ID but
                                              another token
``coap.ack_mid_mismatch``           warning   piggybacked answer with the request's token but
                                              another message ID
``particle.decode_error``           warning   payload does not match its kind's format
``particle.ota.chunk_crc_mismatch`` warning   legacy OTA chunk data does not match its CRC-32
``particle.unknown_request``        info      request with no Particle meaning
``particle.unknown_message``        info      reserved code class (not request/response)
==================================  ========  ==================================================
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from dissector.coap.message import CoapMessage
from dissector.coap.options import CONTENT_FORMAT
from dissector.model import Direction, Finding, Severity
from dissector.particle.decode import decode_payload
from dissector.particle.kinds import classify, response_kind
from dissector.particle.payloads import decode_describe, variable_types_from_describe

#: RFC 7252 EXCHANGE_LIFETIME: a CON with the same ID inside it is a retransmission.
EXCHANGE_LIFETIME: Final = 247.0

#: Requests that never get an answer; not kept pending.
_UNANSWERED: Final = frozenset({"UpdateChunk", "UpdateAck"})
#: Kinds whose decoded payload the tracker looks into (besides any ``error``).
_DECODE_CHECKS: Final = frozenset(
    {"VariableValue", "FunctionReturn", "DescribeReturn", "DeviceDescribe", "Chunk"}
)
#: Requests never answered when sent NON (type 1): a NON Hello (spec §3.5, §4.2).
_UNANSWERED_NON: Final = frozenset({"Hello"})

_D2C: Final = Direction.DEVICE_TO_CLOUD
# Index keys use a side number (0 device->cloud, 1 cloud->device): mid keys are
# ``side << 16 | mid`` (one int), token keys ``(side, token)``.

#: Retransmission memory: CON message IDs kept at most this many (and EXCHANGE_LIFETIME s).
_MAX_SENT: Final = 4096


@dataclass(slots=True)
class RequestRef:
    """The request a response or acknowledgement was matched to."""

    kind: str
    ts: float
    mid: int
    token: bytes
    direction: Direction

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (token as hex)."""
        return {
            "kind": self.kind,
            "ts": self.ts,
            "mid": self.mid,
            "token": self.token.hex(),
            "direction": self.direction.value,
        }


@dataclass(slots=True)
class Observation:
    """What the tracker concluded about one message."""

    kind: str
    decoded: dict[str, Any] | None = None
    request: RequestRef | None = None
    latency: float | None = None
    retransmission: bool = False
    findings: list[Finding] = field(default_factory=list)


class _Pending:
    """A request (or CON response) awaiting its answer. Its :class:`RequestRef` is only
    made when something is matched to it (most events are never answered)."""

    __slots__ = (
        "_ref",
        "acked",
        "detail",
        "direction",
        "kind",
        "mid",
        "serial",
        "side",
        "token",
        "ts",
    )

    def __init__(
        self,
        serial: int,
        side: int,
        kind: str,
        ts: float,
        mid: int,
        token: bytes,
        direction: Direction,
        detail: Any,
    ) -> None:
        self.serial = serial
        self.side = side
        self.kind = kind
        self.ts = ts
        self.mid = mid
        self.token = token
        self.direction = direction
        self.detail = detail  # variable/function name, describe flags
        self.acked = False
        self._ref: RequestRef | None = None

    @property
    def ref(self) -> RequestRef:
        ref = self._ref
        if ref is None:
            ref = self._ref = RequestRef(self.kind, self.ts, self.mid, self.token, self.direction)
        return ref


#: Kinds whose bodies may come block-wise (a large describe, spec §4.2).
_BLOCKWISE: Final = frozenset({"DeviceDescribe", "DescribeReturn"})
#: Largest block-wise body reassembled (bytes).
MAX_BODY: Final = 1 << 16


@dataclass(slots=True)
class _Body:
    """A block-wise body being reassembled."""

    content_format: bytes | None
    data: bytearray = field(default_factory=bytearray)
    blocks: int = 0


class ExchangeTracker:
    """Stateful per-session tracker; feed every CoAP message of a session in capture order.

    ``transport`` (``"tcp"`` or ``"udp"``) enables the TCP-only message-ID sequence check
    (the Node cloud's "Bad Counter" rule, spec §3.5). ``session`` is copied into findings.
    """

    def __init__(
        self,
        transport: str = "tcp",
        session: str | None = None,
        *,
        pending_timeout: float = 300.0,
        max_pending: int = 1024,
    ) -> None:
        self.transport = transport
        self.session = session
        self.pending_timeout = pending_timeout
        self.max_pending = max_pending
        #: variable name -> describe type digit, learnt from DescribeReturn payloads
        self.variable_types: dict[str, int] = {}
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._by_mid: dict[int, _Pending] = {}
        self._by_token: dict[tuple[int, bytes], _Pending] = {}
        self._serial = 0
        #: CON message key -> (ts, kind, request) for retransmission detection
        self._sent_con: OrderedDict[int, tuple[float, str, RequestRef | None]] = OrderedDict()
        self._last_device_mid: int | None = None
        self._check_mids = transport == "tcp"
        self._expired_at = float("-inf")
        #: Block-wise bodies being reassembled: (direction, kind) -> _Body.
        self._bodies: dict[tuple[Direction, str, Any], _Body] = {}
        # The last body completed per key: a block of it sent again is not a lone block.
        self._completed: dict[tuple[Direction, str, Any], bytes] = {}

    @property
    def pending_count(self) -> int:
        """Number of requests still waiting for an answer."""
        return len(self._pending)

    # --- public entry point --------------------------------------------------------------

    def observe(self, msg: CoapMessage, direction: Direction, ts: float) -> Observation:
        """Classify ``msg``, match it with its request, decode it and report findings."""
        findings: list[Finding] = []
        if msg.violations:
            for v in msg.violations:
                findings.append(
                    self._finding(
                        Severity.INFO,
                        "coap.rfc_violation",
                        f"{msg.type_name} {msg.code_str} mid {msg.mid}: {v}",
                        ts,
                        direction,
                        {"violation": v, "mid": msg.mid},
                    )
                )
        if ts - self._expired_at >= 1.0 or ts < self._expired_at:
            self._expire(ts)
        mtype = msg.type
        if mtype != 2 and direction is _D2C and self._check_mids:
            last = self._last_device_mid
            if last is None or msg.mid != (last + 1) & 0xFFFF:
                self._check_mid(msg.mid, ts, direction, findings)
            else:
                self._last_device_mid = msg.mid

        obs = Observation(classify(msg, direction), None, None, None, False, findings)
        if mtype == 0:
            first = self._sent_con.get((0 if direction is _D2C else 0x10000) | msg.mid)
            if first is not None and 0 <= ts - first[0] <= EXCHANGE_LIFETIME:
                obs.retransmission = True
                obs.kind = first[1]
                obs.request = first[2]
                obs.decoded = self._decode(
                    obs.kind, msg, None, direction, ts, findings, blockwise=False
                )
                return obs

        code = msg.code
        if code == 0 or mtype == 3:
            self._observe_empty(msg, direction, ts, obs)
        elif 0 < code < 0x20:
            self._observe_request(msg, direction, ts, obs)
        elif (code >> 5) in (2, 4, 5):
            self._observe_response(msg, direction, ts, obs)
        else:
            obs.decoded = None
            findings.append(
                self._finding(
                    Severity.INFO,
                    "particle.unknown_message",
                    f"{msg.type_name} {msg.code_str} has no CoAP/Particle meaning",
                    ts,
                    direction,
                    {"code": msg.code_str, "mid": msg.mid},
                )
            )
        if mtype == 0:
            self._remember_con(direction, msg.mid, ts, obs)
        return obs

    def skip(self, direction: Direction) -> None:
        """A message in ``direction`` went by undecoded (or stream bytes were lost): the next
        device message ID is not held against the last one seen (no ``coap.mid_jump``)."""
        if direction is _D2C:
            self._last_device_mid = None

    # --- message families ----------------------------------------------------------------

    def _observe_empty(
        self, msg: CoapMessage, direction: Direction, ts: float, obs: Observation
    ) -> None:
        kind = obs.kind
        if kind == "Ping":
            self._add_pending(msg, direction, ts, kind, None, obs.findings)
            return
        if kind not in ("EmptyAck", "Reset"):
            return
        pending = self._by_mid.get((0x10000 if direction is _D2C else 0) | msg.mid)
        label = "acks" if kind == "EmptyAck" else "resets"
        if pending is None:
            obs.decoded = {label: None}
            return
        self._link(obs, pending, ts)
        obs.decoded = {label: pending.kind}
        if kind == "EmptyAck" and pending.token:
            # A separate response may follow, matched by token.
            pending.acked = True
            self._by_mid.pop(pending.side << 16 | pending.mid, None)
        else:
            self._remove(pending)

    def _observe_request(
        self, msg: CoapMessage, direction: Direction, ts: float, obs: Observation
    ) -> None:
        kind = obs.kind
        decoded = self._decode(kind, msg, None, direction, ts, obs.findings)
        obs.decoded = decoded
        detail: Any = None
        if decoded is not None:
            if kind in ("VariableRequest", "FunctionCall"):
                detail = decoded.get("name")
            elif kind == "Describe":
                detail = decoded.get("flags")
        if kind == "Unknown":
            obs.findings.append(
                self._finding(
                    Severity.INFO,
                    "particle.unknown_request",
                    f"{msg.type_name} {msg.code_str} {msg.uri or '(no path)'} is not a known "
                    "Particle request",
                    ts,
                    direction,
                    {"code": msg.code_str, "uri": msg.uri, "mid": msg.mid},
                )
            )
        if kind in _UNANSWERED or (msg.type == 1 and kind in _UNANSWERED_NON):
            return
        if kind == "Chunk" and decoded is not None and decoded.get("fast_ota"):
            # Fast OTA (chunk index present): the device sends neither an ACK nor a
            # ChunkReceived (``ChunkedTransfer::handle_chunk``); kept pending, hundreds of
            # chunks would hold every token and wrap into false ``coap.token_reuse``.
            return
        self._add_pending(msg, direction, ts, kind, detail, obs.findings)

    def _observe_response(
        self, msg: CoapMessage, direction: Direction, ts: float, obs: Observation
    ) -> None:
        rev = 1 if direction is _D2C else 0
        pending: _Pending | None = None
        if msg.type == 2:
            pending = self._by_mid.get(rev << 16 | msg.mid)
            if pending is not None and pending.token != msg.token:
                obs.findings.append(
                    self._finding(
                        Severity.INFO,
                        "coap.ack_token_mismatch",
                        f"ACK {msg.code_str} for mid {msg.mid} carries token "
                        f"{msg.token.hex() or '(none)'}, request had "
                        f"{pending.token.hex() or '(none)'}",
                        ts,
                        direction,
                        {
                            "mid": msg.mid,
                            "token": msg.token.hex(),
                            "request_token": pending.token.hex(),
                        },
                    )
                )
            elif pending is None and msg.token:
                pending = self._by_token.get((rev, msg.token))
                if pending is not None:
                    obs.findings.append(
                        self._finding(
                            Severity.WARNING,
                            "coap.ack_mid_mismatch",
                            f"ACK {msg.code_str} with token {msg.token.hex()} answers the "
                            f"{pending.kind} with mid {pending.mid} but carries mid "
                            f"{msg.mid} (strict servers drop the session)",
                            ts,
                            direction,
                            {"mid": msg.mid, "request_mid": pending.mid},
                        )
                    )
        elif msg.token:
            pending = self._by_token.get((rev, msg.token))
        if pending is None:
            obs.kind = "Response"
            obs.decoded = self._decode("Response", msg, None, direction, ts, obs.findings)
            if msg.type == 0:
                self._add_pending(msg, direction, ts, "Response", None, None, request=False)
            return
        kind = response_kind(pending.kind, msg.code)
        obs.kind = kind
        self._link(obs, pending, ts)
        self._remove(pending)
        obs.decoded = self._decode(kind, msg, pending, direction, ts, obs.findings)
        if msg.type == 0:
            # A CON separate response is itself acknowledged by an empty ACK.
            self._add_pending(msg, direction, ts, kind, None, None, request=False)

    # --- decoding and findings -----------------------------------------------------------

    def _decode(
        self,
        kind: str,
        msg: CoapMessage,
        pending: _Pending | None,
        direction: Direction,
        ts: float,
        findings: list[Finding],
        *,
        blockwise: bool = True,
    ) -> dict[str, Any] | None:
        vtype: int | None = None
        flags: int | None = None
        if pending is not None:
            if kind == "VariableValue" and isinstance(pending.detail, str):
                vtype = self.variable_types.get(pending.detail)
            elif kind == "DescribeReturn" and isinstance(pending.detail, int):
                flags = pending.detail
            decoded = decode_payload(kind, msg, variable_type=vtype, describe_flags=flags)
        else:
            decoded = decode_payload(kind, msg)
        if decoded is None:
            return None
        if blockwise and "block" in decoded and kind in _BLOCKWISE:
            decoded = self._blockwise(kind, msg, decoded, direction, ts, findings)
        if kind not in _DECODE_CHECKS and "error" not in decoded:
            return decoded
        if pending is not None and kind in ("VariableValue", "FunctionReturn"):
            decoded["name"] = pending.detail
        if kind in ("DescribeReturn", "DeviceDescribe") and "json" in decoded:
            self.variable_types.update(variable_types_from_describe(decoded))
        error = decoded.get("error")
        if error is not None:
            findings.append(
                self._finding(
                    Severity.WARNING,
                    "particle.decode_error",
                    f"{kind} payload could not be decoded: {error}",
                    ts,
                    direction,
                    {"kind": kind, "error": error, "mid": msg.mid},
                )
            )
        if kind == "Chunk" and decoded.get("crc_ok") is False:
            findings.append(
                self._finding(
                    Severity.WARNING,
                    "particle.ota.chunk_crc_mismatch",
                    f"chunk announces CRC-32 {decoded['crc']:08x} but its data has "
                    f"{decoded['crc_computed']:08x}",
                    ts,
                    direction,
                    {
                        "announced": decoded["crc"],
                        "computed": decoded["crc_computed"],
                        "index": decoded.get("index"),
                        "mid": msg.mid,
                    },
                )
            )
        return decoded

    def _blockwise(
        self,
        kind: str,
        msg: CoapMessage,
        decoded: dict[str, Any],
        direction: Direction,
        ts: float,
        findings: list[Finding],
    ) -> dict[str, Any]:
        """Join a describe sent block-wise (Block1 from the device, Block2 in answers,
        RFC 7959) and decode the whole body with its last block."""
        block = decoded["block"]
        num, more, size = block["num"], block["m"], block["size"]
        if size is None:
            # SZX 7 is reserved (RFC 7959 §2.2): no block size, nothing to join.
            findings.append(
                self._finding(
                    Severity.WARNING,
                    "coap.block.reserved_size",
                    f"block-wise {kind} block {num} uses the reserved block size SZX 7: "
                    "not reassembled",
                    ts,
                    direction,
                    {"kind": kind, "num": num},
                )
            )
            decoded["reassembly"] = "reserved block size (SZX 7): not joined"
            return decoded
        # Per describe flags too: answers to two describe requests may interleave.
        key = (direction, kind, decoded.get("flags"))
        body = self._bodies.get(key)
        if num == 0:
            body = self._bodies[key] = _Body(msg.first_option(CONTENT_FORMAT))
        start = num * size
        if (
            body is not None
            and num
            and start + len(msg.payload) <= len(body.data)
            and body.data[start : start + len(msg.payload)] == msg.payload
        ):
            # A block sent again (the cloud asked for it twice, a retransmission with a
            # new message ID): already joined, keep going.
            decoded["reassembly"] = "block already received: not joined twice"
            return decoded
        if body is None and num:
            done = self._completed.get(key)
            if done is not None and done[start : start + len(msg.payload)] == msg.payload:
                # A block of the describe just completed, sent again (a duplicate or a
                # retransmission with a new message ID after the last block).
                decoded["reassembly"] = "block of a completed body sent again: not joined"
                return decoded
        if body is None or len(body.data) != start:
            self._bodies.pop(key, None)
            if num:  # a lone later block: its start was not seen (or a block was lost)
                decoded["reassembly"] = "earlier blocks not seen: body not reassembled"
            return decoded
        body.data += msg.payload
        body.blocks += 1
        if len(body.data) > MAX_BODY:
            del self._bodies[key]
            findings.append(
                self._finding(
                    Severity.WARNING,
                    "coap.block.too_large",
                    f"block-wise {kind} body exceeds {MAX_BODY} bytes: not reassembled",
                    ts,
                    direction,
                    {"kind": kind, "length": len(body.data)},
                )
            )
            return decoded
        if more:
            return decoded
        del self._bodies[key]
        self._completed[key] = bytes(body.data)
        cf = int.from_bytes(body.content_format, "big") if body.content_format else None
        whole = decode_describe(bytes(body.data), cf, decoded.get("flags"))
        whole["block"] = block
        whole["reassembled"] = {"blocks": body.blocks, "length": len(body.data)}
        return whole

    def _finding(
        self,
        severity: Severity,
        code: str,
        message: str,
        ts: float,
        direction: Direction,
        details: dict[str, Any],
    ) -> Finding:
        return Finding(severity, code, message, ts, self.session, direction, details)

    def _check_mid(
        self, mid: int, ts: float, direction: Direction, findings: list[Finding]
    ) -> None:
        last = self._last_device_mid
        self._last_device_mid = mid
        if last is None:
            return
        expected = (last + 1) & 0xFFFF
        if mid != expected:
            findings.append(
                self._finding(
                    Severity.WARNING,
                    "coap.mid_jump",
                    f"device message ID {mid} where {expected} was expected (the Node cloud "
                    "disconnects on this: 'Bad Counter')",
                    ts,
                    direction,
                    {"expected": expected, "seen": mid},
                )
            )

    # --- pending-request bookkeeping -----------------------------------------------------

    def _add_pending(
        self,
        msg: CoapMessage,
        direction: Direction,
        ts: float,
        kind: str,
        detail: Any,
        findings: list[Finding] | None,
        *,
        request: bool = True,
    ) -> None:
        """Remember a message awaiting an answer. Requests are indexed by message ID and
        token; CON responses (``request=False``) only by message ID, for their empty ACK."""
        token = msg.token if request else b""
        side = 0 if direction is _D2C else 1
        if token and findings is not None:
            old = self._by_token.get((side, token))
            if old is not None:
                findings.append(
                    self._finding(
                        Severity.INFO if old.acked else Severity.WARNING,
                        "coap.token_reuse",
                        f"token {token.hex()} reused while the {old.kind} (mid "
                        f"{old.mid}) that carries it is still "
                        + ("awaiting its separate response" if old.acked else "unanswered"),
                        ts,
                        direction,
                        {"token": token.hex(), "pending_kind": old.kind, "mid": msg.mid},
                    )
                )
                self._remove(old)
        mid_key = side << 16 | msg.mid
        old_mid = self._by_mid.get(mid_key)
        if old_mid is not None:
            self._remove(old_mid)
        self._serial += 1
        p = _Pending(self._serial, side, kind, ts, msg.mid, msg.token, direction, detail)
        self._pending[p.serial] = p
        self._by_mid[mid_key] = p
        if token:
            self._by_token[(side, token)] = p
        if len(self._pending) > self.max_pending:
            self._remove(next(iter(self._pending.values())))

    def _remove(self, p: _Pending) -> None:
        self._pending.pop(p.serial, None)
        key_mid = p.side << 16 | p.mid
        if self._by_mid.get(key_mid) is p:
            del self._by_mid[key_mid]
        if p.token:
            key_tok = (p.side, p.token)
            if self._by_token.get(key_tok) is p:
                del self._by_token[key_tok]

    def _expire(self, ts: float) -> None:
        """Drop pending requests older than the timeout and stale retransmission memory
        (run at most once per second of capture time)."""
        self._expired_at = ts
        limit = ts - self.pending_timeout
        pending = self._pending
        while pending:
            oldest = next(iter(pending.values()))
            if oldest.ts >= limit:
                break
            self._remove(oldest)
        sent = self._sent_con
        limit = ts - EXCHANGE_LIFETIME
        while sent:
            key, first = next(iter(sent.items()))
            if first[0] >= limit and len(sent) <= _MAX_SENT:
                break
            del sent[key]

    def _link(self, obs: Observation, pending: _Pending, ts: float) -> None:
        obs.request = pending.ref
        obs.latency = ts - pending.ts

    def _remember_con(self, direction: Direction, mid: int, ts: float, obs: Observation) -> None:
        key = (0 if direction is _D2C else 0x10000) | mid
        sent = self._sent_con
        if key in sent:
            del sent[key]
        sent[key] = (ts, obs.kind, obs.request)
        if len(sent) > _MAX_SENT:
            sent.popitem(last=False)
