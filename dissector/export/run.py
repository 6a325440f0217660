"""Drive the pipeline's events into a :class:`CoapPacketWriter` (and a key log).

Each packet carries the decrypted message re-encoded from its decoded form: the codec's
encoding is canonical and keeps options in wire order, so the bytes are exactly the
plaintext that was on the wire (``encode(decode(data)) == data`` for every message the
decoder accepts; see ``tests/test_coap_properties.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from dissector.coap import encode
from dissector.export.packets import ExportError
from dissector.export.writer import CoapPacketWriter
from dissector.keys import KeyLogWriter
from dissector.pipeline import PipelineEvent, SessionEnded, SessionStarted
from dissector.protocol.events import MessageEvent, SessionKeys
from dissector.protocol.session import SessionInfo

_UNKNOWN_ENDPOINT = ("0.0.0.0", 0)


@dataclass(slots=True)
class ExportStats:
    """What an export wrote and what it had to leave out (and why)."""

    exported: int = 0
    sessions: int = 0
    #: messages that could not be decrypted or parsed, by reason
    not_decoded: Counter[str] = field(default_factory=Counter)
    #: messages that could not be encapsulated (e.g. too large for UDP), by reason
    not_written: Counter[str] = field(default_factory=Counter)
    key_lines: int = 0


def write_session_keys(keylog: KeyLogWriter, event: SessionKeys) -> bool:
    """Write one recovered secret as a key log line (``PARTICLE_TCP`` or NSS); False when
    the line was already written."""
    if event.label == "PARTICLE_TCP":
        return keylog.write_tcp_session(event.lookup, event.secret)
    return keylog.write_nss(event.label, event.lookup, event.secret)


def export_events(
    events: Iterable[PipelineEvent],
    writer: CoapPacketWriter,
    *,
    keylog: KeyLogWriter | None = None,
    stats: ExportStats | None = None,
) -> ExportStats:
    """Write one packet per decoded CoAP message of ``events``, in event order.

    Messages that were not decrypted are counted in ``stats.not_decoded``, never written.
    Addresses are the session's endpoints when the message completed (a DTLS session that
    moved shows its new address from then on).
    """
    stats = stats if stats is not None else ExportStats()
    sessions: dict[str, SessionInfo] = {}
    for event in events:
        if isinstance(event, MessageEvent):
            _message(event, sessions, writer, stats)
        elif isinstance(event, SessionStarted):
            sessions[event.info.id] = event.info
            stats.sessions += 1
        elif isinstance(event, SessionEnded):
            sessions.setdefault(event.info.id, event.info)
        elif isinstance(event, SessionKeys) and keylog is not None:
            try:
                if write_session_keys(keylog, event):
                    stats.key_lines += 1
            except ValueError:
                stats.not_written["key log line would not parse"] += 1
    return stats


def _message(
    event: MessageEvent,
    sessions: dict[str, SessionInfo],
    writer: CoapPacketWriter,
    stats: ExportStats,
) -> None:
    if event.coap is None:
        reason = event.encrypted.reason if event.encrypted is not None else "unknown"
        stats.not_decoded[reason] += 1
        return
    info = sessions.get(event.session)
    device = (info.device_endpoint if info else None) or _UNKNOWN_ENDPOINT
    cloud = (info.cloud_endpoint if info else None) or _UNKNOWN_ENDPOINT
    kind = event.observation.kind if event.observation is not None else "Unknown"
    comment = f"{event.session} {event.direction.value} {kind}"
    try:
        writer.write(event.ts, device, cloud, event.direction, encode(event.coap), comment)
    except ExportError as exc:
        stats.not_written[str(exc)] += 1
        return
    stats.exported += 1
