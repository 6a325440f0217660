"""The report model: pure data, built by :class:`~dissector.report.collector.ReportCollector`
and turned into text, Markdown, HTML or JSON by the renderers.

Every class is a plain dataclass of JSON-friendly values (str, int, float, bool, None,
lists, dicts and nested model classes); :func:`to_jsonable` turns a :class:`Report` into the
``.json`` report (``report_schema_version`` 1, documented field by field below and in the
README). Times are capture epoch seconds (float); durations and latencies are seconds.
Strings that came from the device (event names and data, function names and arguments,
variable values, describe JSON) are kept as received, at most :data:`SAMPLE_LIMIT`
characters (longer ones end with a ``…(+N)`` marker): renderers escape them.

Schema stability: within ``report_schema_version`` 1, fields are only ever added, never
renamed, removed or given another type.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

REPORT_SCHEMA_VERSION = 1
#: Longest device-controlled string the model keeps (characters).
SAMPLE_LIMIT = 1024


def clip(text: str, limit: int = SAMPLE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters with a ``…(+N)`` marker."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit})"


@dataclass(slots=True)
class CaptureFile:
    """One capture file: ``format`` ``pcap``/``pcapng``, ``linktypes`` as names."""

    name: str
    size: int | None
    format: str
    compressed: bool
    linktypes: list[str]
    packets: int
    first_ts: float | None
    last_ts: float | None
    truncated: bool
    corrupt: bool


@dataclass(slots=True)
class Decryption:
    """What was and was not decrypted, capture-wide.

    ``sessions_decrypted``: every message decrypted; ``sessions_partial``: some;
    ``sessions_encrypted``: none (sessions without any message are not counted).
    ``missing``: distinct plain-words reasons (which key is missing), at most 20.
    """

    messages: int = 0
    decrypted: int = 0
    sessions_decrypted: int = 0
    sessions_partial: int = 0
    sessions_encrypted: int = 0
    missing: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CaptureSummary:
    """The capture as a whole: files, packets, time span, traffic decoded, decryption."""

    files: list[CaptureFile] = field(default_factory=list)
    packets: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    duration: float | None = None
    tcp_packets: int = 0
    udp_packets: int = 0
    undecoded_packets: int = 0
    sessions: int = 0
    sessions_tcp: int = 0
    sessions_dtls: int = 0
    decryption: Decryption = field(default_factory=Decryption)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CheckItem:
    """One handshake checklist step: ``status`` ``passed``/``failed``/``not_checkable``/
    ``not_seen``; ``detail`` says why (the likely cause for a failure)."""

    key: str
    label: str
    status: str
    detail: str


@dataclass(slots=True)
class FlowStep:
    """One arrow of the auth-flow sequence diagram (or a note when ``direction`` is None).

    ``label``: what went over (``nonce``, ``ServerHello, ServerKeyExchange``, ``Hello``);
    ``size``: bytes on the wire when known (DTLS: the whole datagram of a flight);
    ``note``: what it revealed or why it failed; ``status``: ``ok``, ``failed``,
    ``warning``, ``info`` (notes), or ``more`` (a fold: ``label`` says how many messages).
    """

    ts: float
    direction: str | None
    label: str
    size: int | None = None
    note: str = ""
    status: str = "ok"


@dataclass(slots=True)
class Timeline:
    """Messages over time: ``d2c[i]``/``c2d[i]`` messages in ``[start + i*bin_width, …)``;
    ``markers``: ``[ts, severity]`` of warning and error findings (at most 100)."""

    start: float | None = None
    bin_width: float = 0.0
    d2c: list[int] = field(default_factory=list)
    c2d: list[int] = field(default_factory=list)
    markers: list[list[Any]] = field(default_factory=list)


@dataclass(slots=True)
class KindCount:
    """How many messages of one kind went each way."""

    kind: str
    d2c: int = 0
    c2d: int = 0


@dataclass(slots=True)
class EventStat:
    """One event name in one direction: ``direction`` is who published it."""

    name: str
    direction: str
    visibility: str
    count: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    ttl: int | None = None
    sample_data: str = ""
    data_format: str = "text"
    bytes: int = 0
    answers: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Subscription:
    """A subscription the device made: filter, scope, how often, the cloud's answer."""

    filter: str
    my_devices: bool = False
    count: int = 0
    answer: str = ""


@dataclass(slots=True)
class FunctionCallSample:
    """One function call: argument, result (or error status) and its latency."""

    ts: float
    argument: str
    result: int | None = None
    status: str = ""
    latency: float | None = None


@dataclass(slots=True)
class FunctionStat:
    """A function the cloud called: call count, failures and the first calls."""

    name: str
    calls: int = 0
    errors: int = 0
    samples: list[FunctionCallSample] = field(default_factory=list)


@dataclass(slots=True)
class VariableStat:
    """A variable the cloud read: its type, distinct values seen (at most 8), errors."""

    name: str
    type: str = ""
    reads: int = 0
    errors: int = 0
    values: list[str] = field(default_factory=list)
    last_value: str = ""


@dataclass(slots=True)
class DescribeInfo:
    """The last describe of one kind (``system``, ``application``, …)."""

    ts: float
    direction: str
    types: list[str]
    functions: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    platform_id: int | None = None
    module_count: int | None = None
    format: str = "json"
    json: str = ""


@dataclass(slots=True)
class TimeSync:
    """Time requests: ``offset`` = cloud time minus capture time (s), first and last."""

    requests: int = 0
    responses: int = 0
    last_unix_time: int | None = None
    first_offset: float | None = None
    last_offset: float | None = None


@dataclass(slots=True)
class PingStat:
    """Keep-alive pings sent by one side (``sender`` ``device`` or ``cloud``)."""

    sender: str
    count: int = 0
    acked: int = 0
    interval_median: float | None = None
    interval_max: float | None = None
    rtt_median: float | None = None


@dataclass(slots=True)
class Command:
    """A control request (signal, key change, server moved, goodbye, update) and answer."""

    ts: float
    kind: str
    direction: str
    detail: str = ""
    answer: str = ""


@dataclass(slots=True)
class OtaTransfer:
    """One firmware transfer.

    ``mode``: ``legacy``, ``legacy fast`` or ``v3``. ``chunks_sent`` counts every chunk
    message (re-sends included), ``chunks_unique`` distinct chunk positions,
    ``chunks_expected`` what the announced file size needs. ``crc_failures``: chunks whose
    data does not match their CRC-32 on the wire; ``crc_rejected``: chunks the device
    answered 4.00; ``missed``: distinct chunks the device reported missing (legacy
    ChunkMissed) or never acknowledged (v3); ``resent``: chunks sent again.
    ``size`` and ``sha256``: the reassembled image trimmed to ``file_size`` (None when
    chunks are missing; ``image_note`` says why). ``announced_sha256`` (v3) and
    ``sha256_match`` compare it. ``extracted``: file written by ``--extract-firmware``.
    """

    session: str
    index: int
    mode: str
    start_ts: float
    end_ts: float | None = None
    duration: float | None = None
    file_size: int | None = None
    chunk_size: int | None = None
    destination: str | None = None
    chunks_sent: int = 0
    chunks_unique: int = 0
    chunks_expected: int | None = None
    crc_failures: int = 0
    crc_rejected: int = 0
    missed: int = 0
    resent: int = 0
    bytes_sent: int = 0
    throughput: float | None = None
    complete: bool = False
    result: str = ""
    size: int | None = None
    sha256: str | None = None
    announced_sha256: str | None = None
    sha256_match: bool | None = None
    image_note: str = ""
    extracted: str | None = None


@dataclass(slots=True)
class SessionReport:
    """Everything the report says about one session (see README "session" records for the
    fields shared with ``dissect``)."""

    id: str
    transport: str
    device_endpoint: str | None = None
    cloud_endpoint: str | None = None
    start: float | None = None
    end: float | None = None
    duration: float | None = None
    device_id: str | None = None
    device_id_source: str | None = None
    platform_id: int | None = None
    platform: str | None = None
    product_id: int | None = None
    product_version: int | None = None
    system_version: int | None = None
    hello_variant: str | None = None
    hello_flags: int | None = None
    hello_flag_words: list[str] = field(default_factory=list)
    outcome: str = "open"
    closed_by: str | None = None
    key_source: str | None = None
    salt_convention: str | None = None
    device_key_fingerprint: str | None = None
    bytes_d2c: int = 0
    bytes_c2d: int = 0
    messages_d2c: int = 0
    messages_c2d: int = 0
    decrypted_d2c: int = 0
    decrypted_c2d: int = 0
    retransmissions: int = 0
    handshake: list[CheckItem] = field(default_factory=list)
    handshake_failure: str | None = None
    flow: list[FlowStep] = field(default_factory=list)
    flow_more: int = 0
    timeline: Timeline = field(default_factory=Timeline)
    kinds: list[KindCount] = field(default_factory=list)
    events: list[EventStat] = field(default_factory=list)
    events_dropped: int = 0
    subscriptions: list[Subscription] = field(default_factory=list)
    functions: list[FunctionStat] = field(default_factory=list)
    variables: list[VariableStat] = field(default_factory=list)
    describes: list[DescribeInfo] = field(default_factory=list)
    time_sync: TimeSync = field(default_factory=TimeSync)
    pings: list[PingStat] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    commands_dropped: int = 0
    ota: list[OtaTransfer] = field(default_factory=list)
    findings: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class DeviceSighting:
    """A device seen in the capture, with or without keys.

    ``device_id`` (24 hex) or None when only its DTLS public key was seen
    (``key_fingerprint``). ``sources``: how it was seen (``Hello``, ``identity message``,
    ``DNS query …``, ``presence announcement``, ``254 move-session trailer``,
    ``DTLS certificate``, ``key ring``). ``addresses``: IPs it used. ``decrypted``: some
    session of it was decrypted.
    """

    device_id: str | None
    key_fingerprint: str | None = None
    platform: str | None = None
    sources: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    decrypted: bool = False


@dataclass(slots=True)
class LatencyStat:
    """Request → response times of one pairing; ``answered_by`` ``cloud``/``device``."""

    request: str
    response: str
    answered_by: str
    count: int
    median: float
    p95: float
    max: float


@dataclass(slots=True)
class FindingEntry:
    """One finding: from the pipeline, or the report's own (codes ``report.*``).

    ``message_ref``: the message it points to (``PrivateEvent mid 19932``), when known.
    """

    severity: str
    code: str
    message: str
    session: str | None = None
    ts: float | None = None
    direction: str | None = None
    message_ref: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FindingGroup:
    """All findings of one code: severity, count, the sessions concerned (at most 50)."""

    severity: str
    code: str
    count: int
    sessions: list[str]
    example: str


@dataclass(slots=True)
class Report:
    """The whole report."""

    report_schema_version: int = REPORT_SCHEMA_VERSION
    generator: str = ""
    redacted: bool = False
    capture: CaptureSummary = field(default_factory=CaptureSummary)
    devices: list[DeviceSighting] = field(default_factory=list)
    sessions: list[SessionReport] = field(default_factory=list)
    ota: list[OtaTransfer] = field(default_factory=list)
    latency: list[LatencyStat] = field(default_factory=list)
    findings: list[FindingEntry] = field(default_factory=list)
    findings_dropped: int = 0
    finding_groups: list[FindingGroup] = field(default_factory=list)
    severity_counts: dict[str, int] = field(default_factory=dict)


def to_jsonable(obj: Any) -> Any:
    """A model object as JSON-ready data: dataclasses as dicts in field order, tuples as
    lists, non-finite floats as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


def map_strings(obj: Any, fn: Any) -> Any:
    """A copy of a model object with ``fn`` applied to every string (keys included)."""
    if isinstance(obj, str):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: map_strings(getattr(obj, f.name), fn) for f in dataclasses.fields(obj)}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, dict):
        return {map_strings(k, fn): map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [map_strings(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(map_strings(v, fn) for v in obj)
    return obj
