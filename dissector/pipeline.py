"""From capture packets to protocol events: the straight line of the data path.

``packets → link decode → TCP reassembly → TcpConnection (sans-IO) → events``

:class:`Dissector` owns the per-capture state (reassembler, connections, key ring) and
nothing global: two captures decoded in one process with different key rings never
see each other's keys. It yields events in capture order: a message at the packet that
completes its frame, ties in stream order. Connections and DTLS sessions that hold
events back (while they look for a session key, a frame boundary, where a SYN-less
stream starts, or the device ID of a handshake) delay the output just enough to keep
that order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import cast

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, UdpDatagram
from dissector.capture.reader import CaptureReader, DecryptionSecrets
from dissector.capture.tcp_reassembly import (
    Connection,
    ConnectionClosed,
    ConnectionOpened,
    StreamData,
    StreamEvent,
    StreamGap,
    TcpReassembler,
)
from dissector.keys import KeyRing
from dissector.model import Direction, Finding, Severity
from dissector.protocol.dtls import DtlsSession
from dissector.protocol.events import Event, FindingEvent, SessionKeys
from dissector.protocol.session import SessionInfo
from dissector.protocol.tcp import TcpConnection
from dissector.udp_flows import DEFAULT_UDP_PORTS, DtlsFlowTracker

DEFAULT_TCP_PORTS = frozenset({5683})
C2D = Direction.CLOUD_TO_DEVICE
D2C = Direction.DEVICE_TO_CLOUD
#: Findings of one code in one session shown individually; the rest are counted and
#: reported once when the session ends (memory and output stay bounded).
FINDINGS_PER_CODE = 20
#: Capture seconds a connection or DTLS session may hold its events back (waiting for the
#: device's first record, a key, its other direction, or the judgement of a SYN-less
#: start) before it is made to release them: one quiet session must not hold back every
#: other session's output (a live sniff) nor keep it all in memory (a long capture).
MAX_HOLD_SECONDS = 60.0


@dataclass(slots=True)
class SessionStarted:
    """A new Particle session was recognised (its info fills in as it goes)."""

    info: SessionInfo
    ts: float


@dataclass(slots=True)
class SessionEnded:
    """A session is over; ``info`` is final."""

    info: SessionInfo
    ts: float


PipelineEvent = Event | SessionStarted | SessionEnded


@dataclass(slots=True)
class _Tracked:
    conn: Connection
    session: TcpConnection | None
    cloud_side: int | None
    pending: list[StreamData | StreamGap] = field(default_factory=list)


class Dissector:
    """Run captures through the protocol cores with one explicit key ring."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        tcp_ports: Iterable[int] = DEFAULT_TCP_PORTS,
        udp_ports: Iterable[int] = DEFAULT_UDP_PORTS,
    ) -> None:
        self.keyring = keyring
        self.tcp_ports = frozenset(tcp_ports)
        self.dtls = DtlsFlowTracker(keyring, udp_ports)
        self.reassembler = TcpReassembler(on_hold=self._stream_hold_changed)
        self.link = LinkDecoder()
        self.sessions: list[SessionInfo] = []
        self.packets = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._tracked: dict[int, _Tracked] = {}
        #: Connections holding events back -> the timestamp their oldest one has, and the
        #: same as a lazy min-heap (stale entries are dropped when they reach the top), so
        #: that the output watermark costs O(log n) per packet, not a scan of them all.
        self._holding: dict[int, float] = {}
        self._holding_heap: list[tuple[float, int]] = []
        #: The same for DTLS sessions (kept up to date by their ``on_hold_change``).
        self._dtls_holding: dict[str, float] = {}
        self._dtls_heap: list[tuple[float, str]] = []
        self._out: list[tuple[float, int, PipelineEvent]] = []
        self._stale_check_at = float("-inf")
        #: pcapng decryption secrets blocks: TLS key logs read (blocks, entries added), and
        #: the types of the others (not used).
        self._secrets_read = [0, 0]
        self._secrets_other: dict[int, int] = {}
        self._seq = 0
        self._session_no = 0
        #: session -> code -> findings seen (per session, so that a session's end does
        #: not scan the counts of every other open session).
        self._finding_counts: dict[str | None, dict[str, int]] = {}

    def set_keyring(self, keyring: KeyRing) -> None:
        """Use ``keyring`` for sessions that start from now on (a live capture reloading
        its keys); TCP connections and DTLS sessions already running keep their ring."""
        self.keyring = keyring
        self.dtls.keyring = keyring

    def use_capture_secrets(self, reader: CaptureReader) -> None:
        """Take the key logs that ``reader``'s pcapng files carry (decryption secrets
        blocks, as ``editcap --inject-secrets`` writes them) into the key ring, each as it
        is read: the packets after it decrypt with it as with ``--keylog``."""
        for secret in reader.secrets:
            self.add_secrets(secret)
        reader.on_secrets = self.add_secrets

    def add_secrets(self, secret: DecryptionSecrets) -> None:
        """Add a decryption secrets block: a TLS key log (NSS lines, and this tool's own
        ``PARTICLE_TCP`` lines) goes into the key ring; other types are counted."""
        if secret.secrets_type == DecryptionSecrets.TLS_KEY_LOG:
            source = f"{secret.source}: decryption secrets block"
            self._secrets_read[0] += 1
            self._secrets_read[1] += self.keyring.add_keylog_text(secret.data, source)
        else:
            kind = secret.secrets_type
            self._secrets_other[kind] = self._secrets_other.get(kind, 0) + 1

    # -- driving -----------------------------------------------------------------------

    def run(self, items: Iterable[RawPacket | Finding]) -> Iterator[PipelineEvent]:
        """Process a capture (packets and reader findings) and yield events in order."""
        packet = self._packet
        for item in items:
            if item.__class__ is RawPacket:
                events = packet(item)
                if events is None:
                    continue
                if events and not self._holding and not self.dtls.holding and not self._out:
                    # Fast path of _emit: nothing held back, nothing queued.
                    yield from self._aggregate(events)
                elif events or self._out:
                    yield from self._emit(events, item.ts)
            elif isinstance(item, Finding):
                yield from self._emit([FindingEvent(item)], item.ts or self.last_ts or 0.0)
            else:
                yield from self.feed_packet(item)
        yield from self.finish()

    def feed_packet(self, pkt: RawPacket) -> Iterator[PipelineEvent]:
        """Process one captured packet."""
        events = self._packet(pkt)
        if events is not None:
            yield from self._emit(events, pkt.ts)

    def _packet(self, pkt: RawPacket) -> list[PipelineEvent] | None:
        """The events of one packet, or None when it has nothing to do with us."""
        self.packets += 1
        ts = pkt.ts
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        unit = self.link.decode(pkt)
        if unit is None:
            return None
        if isinstance(unit, UdpDatagram):
            if self.dtls.wants(unit):
                return self._on_datagram(unit)
            return None
        ports = self.tcp_ports
        if unit.src_port not in ports and unit.dst_port not in ports:
            return None
        events: list[PipelineEvent] = []
        sevs = self.reassembler.feed(unit)
        if len(sevs) > 1 and any(a.ts > b.ts for a, b in pairwise(sevs)):
            # Held SYN-less starts released together keep their own times: in time order.
            sevs.sort(key=_stream_ts)
        for sev in sevs:
            if sev.__class__ is StreamData:
                # Fast path of _on_stream_event: data for a session whose roles are known.
                tracked = self._tracked.get(sev.conn.id)
                if tracked is not None and tracked.session is not None:
                    events += self._deliver(tracked, sev)
                    continue
            events += self._on_stream_event(sev)
        return events

    def finish(self) -> Iterator[PipelineEvent]:
        """End of capture: close every connection and flush all output."""
        ts = self.last_ts or 0.0
        events: list[PipelineEvent] = []
        for sev in self.reassembler.close_all(ts):
            events += self._on_stream_event(sev)
        for conn_id in list(self._tracked):
            events += self._end(conn_id, ts)
        for session, ending in self.dtls.finish(ts):
            events += ending
            events.append(SessionEnded(session.info, ts))
        events += self._link_findings(ts)
        events += self._secrets_findings(ts)
        events += [FindingEvent(f) for f in self.dtls.stray_summary(ts)]
        events += self._suppressed(None, ts)
        self._holding.clear()
        self._holding_heap.clear()
        self._dtls_holding.clear()
        self._dtls_heap.clear()
        # What the ends release (frames held for a key or for framing) may predate what
        # was already generated in this batch: keep capture order (stable, by time).
        events.sort(key=lambda e: _event_ts(e, ts))
        yield from self._emit(events, ts)
        yield from self._flush(None)

    # -- connection handling -----------------------------------------------------------

    def _on_datagram(self, dgram: UdpDatagram) -> list[PipelineEvent]:
        events, new = self.dtls.feed(dgram)
        if new is None:
            return list(events)
        new.on_hold_change = self._dtls_hold_changed
        self._dtls_hold_changed(new)
        self.sessions.append(new.info)
        return [SessionStarted(new.info, dgram.ts), *events]

    def _dtls_hold_changed(self, session: DtlsSession) -> None:
        since = session.holding_since
        key = session.session_id
        if since is None:
            self._dtls_holding.pop(key, None)
            return
        holding = self._dtls_holding
        heap = self._dtls_heap
        holding[key] = since
        heapq.heappush(heap, (since, key))
        if len(heap) > 2 * len(holding) + 64:
            heap[:] = [(t, k) for k, t in holding.items()]
            heapq.heapify(heap)

    def _on_stream_event(
        self, sev: ConnectionOpened | StreamData | StreamGap | ConnectionClosed
    ) -> list[PipelineEvent]:
        conn = sev.conn
        tracked = self._tracked.get(conn.id)
        if isinstance(sev, ConnectionOpened):
            if tracked is None:
                tracked = self._track(conn, sev.syn_seen)
            return [] if tracked.session is None else [SessionStarted(tracked.session.info, sev.ts)]
        if tracked is None:
            tracked = self._track(conn, conn.syn_seen)
        if isinstance(sev, ConnectionClosed):
            return self._maybe_end(tracked, sev)
        if tracked.session is not None:
            return self._deliver(tracked, sev)
        # Roles still unknown (ambiguous ports, no SYN): the cloud speaks first.
        tracked.pending.append(sev)
        if not isinstance(sev, StreamData):
            return []
        self._decide_roles(tracked, sev.side)
        assert tracked.session is not None
        events: list[PipelineEvent] = [SessionStarted(tracked.session.info, sev.ts)]
        pending, tracked.pending = tracked.pending, []
        for item in pending:
            events += self._deliver(tracked, item)
        return events

    def _track(self, conn: Connection, syn_seen: bool) -> _Tracked:
        cloud_side = self._cloud_side(conn)
        tracked = _Tracked(conn, None, cloud_side)
        self._tracked[conn.id] = tracked
        if cloud_side is not None:
            self._start_session(tracked, syn_seen)
        return tracked

    def _cloud_side(self, conn: Connection) -> int | None:
        a_port = conn.endpoints[0][1]
        b_port = conn.endpoints[1][1]
        a_is = a_port in self.tcp_ports
        b_is = b_port in self.tcp_ports
        if a_is and not b_is:
            return 0
        if b_is and not a_is:
            return 1
        if conn.syn_seen:
            return 1  # the side that answered the SYN is the server
        return None

    def _decide_roles(self, tracked: _Tracked, first_side: int) -> None:
        """Ambiguous ports and no SYN: the cloud speaks first (the 40-byte nonce)."""
        tracked.cloud_side = first_side
        self._start_session(tracked, tracked.conn.syn_seen)

    def _start_session(self, tracked: _Tracked, syn_seen: bool) -> None:
        self._session_no += 1
        session_id = f"tcp-{self._session_no}"
        conn = tracked.conn
        session = TcpConnection(
            session_id, self.keyring, handshake_expected=True if syn_seen else None
        )
        cloud = tracked.cloud_side if tracked.cloud_side is not None else 1
        session.info.cloud_endpoint = conn.endpoints[cloud]
        session.info.device_endpoint = conn.endpoints[1 - cloud]
        tracked.session = session
        self.sessions.append(session.info)

    def _direction(self, tracked: _Tracked, side: int) -> Direction:
        return (
            Direction.CLOUD_TO_DEVICE if side == tracked.cloud_side else Direction.DEVICE_TO_CLOUD
        )

    def _deliver(self, tracked: _Tracked, sev: StreamData | StreamGap) -> list[PipelineEvent]:
        session = tracked.session
        assert session is not None
        direction = C2D if sev.side == tracked.cloud_side else D2C
        out: list[PipelineEvent]
        if isinstance(sev, StreamData):
            out = cast("list[PipelineEvent]", session.receive_data(direction, sev.data, sev.ts))
        else:
            out = cast("list[PipelineEvent]", session.receive_gap(direction, sev.nbytes, sev.ts))
        since = session.holding_since
        held = tracked.conn.held_since
        if held is not None and (since is None or held < since):
            since = held
        if since is not None:
            conn_id = tracked.conn.id
            if self._holding.get(conn_id) != since:
                self._hold_from(conn_id, since)
        elif self._holding:
            self._holding.pop(tracked.conn.id, None)
        return out

    def _stream_hold_changed(self, conn: Connection) -> None:
        """The reassembler holds (or stopped holding) bytes of a SYN-less start, to be
        delivered with their own earlier times: output waits for them."""
        since = conn.held_since
        tracked = self._tracked.get(conn.id)
        if tracked is not None and tracked.session is not None:
            own = tracked.session.holding_since
            if own is not None and (since is None or own < since):
                since = own
        if since is None:
            self._holding.pop(conn.id, None)
        elif self._holding.get(conn.id) != since:
            self._hold_from(conn.id, since)

    def _hold_from(self, conn_id: int, since: float) -> None:
        holding = self._holding
        heap = self._holding_heap
        holding[conn_id] = since
        heapq.heappush(heap, (since, conn_id))
        if len(heap) > 2 * len(holding) + 64:
            # Too many stale entries behind a long hold: rebuild from the live ones.
            heap[:] = [(t, c) for c, t in holding.items()]
            heapq.heapify(heap)

    def _maybe_end(self, tracked: _Tracked, sev: ConnectionClosed) -> list[PipelineEvent]:
        session = tracked.session
        if session is None:
            return []
        direction = None if sev.side is None else self._direction(tracked, sev.side)
        events: list[PipelineEvent] = list(session.receive_close(direction, sev.ts, sev.reason))
        finished = (
            sev.reason in ("rst", "timeout", "end_of_capture", "reused", "evicted")
            or session.closed_both_ways
        )
        if finished:
            events += self._end(tracked.conn.id, sev.ts)
        return events

    def _end(self, conn_id: int, ts: float) -> list[PipelineEvent]:
        tracked = self._tracked.pop(conn_id, None)
        self._holding.pop(conn_id, None)
        if tracked is None or tracked.session is None:
            return []
        session = tracked.session
        events: list[PipelineEvent] = list(session.end(ts))
        # Frames the end releases (held for a key, or for framing) interleave by time.
        events.sort(key=lambda e: _event_ts(e, ts))
        keys = session.session_keys()
        if keys is not None:
            events.append(keys)
        events.append(SessionEnded(session.info, ts))
        return events

    def _link_findings(self, ts: float) -> list[PipelineEvent]:
        """Say what the link decoder could not decode (nothing is lost silently)."""
        stats = self.link.stats
        defrag = self.link.defrag
        notes = [
            (
                stats.truncated,
                "capture.packets_truncated",
                "packets were cut short by the capture's snap length and could not be decoded",
            ),
            (
                stats.truncated_kept,
                "capture.segments_truncated",
                "TCP segments were cut short by the capture's snap length: their captured "
                "bytes were used and the missing ones are reported as stream gaps",
            ),
            (
                stats.malformed,
                "capture.packets_malformed",
                "packets had malformed link, IP or transport headers and were skipped",
            ),
            (
                stats.unknown_linktype,
                "capture.unknown_linktype",
                f"packets had an unsupported link type {sorted(stats.unknown_linktypes)}",
            ),
            (
                defrag.pending,
                "capture.fragments_incomplete",
                "IP datagrams were still missing fragments at the end of the capture",
            ),
            (
                defrag.stats.timed_out + defrag.stats.evicted,
                "capture.fragments_dropped",
                "fragmented IP datagrams timed out or were evicted before completing",
            ),
        ]
        if stats.packets and stats.non_ip == stats.packets:
            notes.append(
                (
                    stats.non_ip,
                    "capture.no_ip_packets",
                    "packets were read and none held IPv4 or IPv6 (no Particle traffic, or a "
                    "file whose link type does not match its packets)",
                )
            )
        out: list[PipelineEvent] = []
        for count, code, text in notes:
            if count:
                out.append(
                    FindingEvent(
                        Finding(
                            Severity.WARNING, code, f"{count} {text}", ts, details={"count": count}
                        )
                    )
                )
        return out

    def _secrets_findings(self, ts: float) -> list[PipelineEvent]:
        """Say which key logs the capture itself carried, and which secrets it skipped."""
        out: list[PipelineEvent] = []
        blocks, added = self._secrets_read
        if blocks:
            text = (
                f"{blocks} pcapng decryption secrets block{'s' if blocks != 1 else ''} held "
                f"a TLS key log: {added} entries added to the key ring"
            )
            details = {"blocks": blocks, "entries": added}
            code = "capture.decryption_secrets"
            out.append(FindingEvent(Finding(Severity.INFO, code, text, ts, details=details)))
        if self._secrets_other:
            kinds = ", ".join(f"0x{k:08x}" for k in sorted(self._secrets_other))
            count = sum(self._secrets_other.values())
            text = (
                f"{count} pcapng decryption secrets blocks of types {kinds} (not TLS key "
                "logs) were not used"
            )
            other: dict[str, object] = {"blocks": count, "types": sorted(self._secrets_other)}
            code = "capture.decryption_secrets.unused"
            out.append(FindingEvent(Finding(Severity.INFO, code, text, ts, details=other)))
        return out

    # -- ordered output ----------------------------------------------------------------

    def _aggregate(self, events: list[PipelineEvent]) -> list[PipelineEvent]:
        """Pass the first findings of each (session, code); count the rest."""
        for e in events:
            if isinstance(e, _AGGREGATED):
                break
        else:
            return events
        out: list[PipelineEvent] = []
        counts = self._finding_counts
        for event in events:
            if isinstance(event, FindingEvent):
                per_code = counts.get(event.finding.session)
                if per_code is None:
                    per_code = counts[event.finding.session] = {}
                code = event.finding.code
                n = per_code.get(code, 0) + 1
                per_code[code] = n
                if n > FINDINGS_PER_CODE:
                    continue
            elif isinstance(event, SessionEnded):
                out += self._suppressed(event.info.id, event.ts)
            out.append(event)
        return out

    def _suppressed(self, session: str | None, ts: float) -> list[PipelineEvent]:
        out: list[PipelineEvent] = []
        for code, n in self._finding_counts.pop(session, {}).items():
            if n > FINDINGS_PER_CODE:
                out.append(
                    FindingEvent(
                        Finding(
                            Severity.INFO,
                            "findings.suppressed",
                            f"{n - FINDINGS_PER_CODE} more findings {code!r} in this session "
                            f"(first {FINDINGS_PER_CODE} shown; {n} in all)",
                            ts,
                            session,
                            details={"code": code, "count": n, "shown": FINDINGS_PER_CODE},
                        )
                    )
                )
        return out

    def _emit(self, events: list[PipelineEvent], now: float) -> Iterator[PipelineEvent]:
        if not events and not self._out:
            return
        events = self._aggregate(events)
        if not self._holding and not self.dtls.holding and not self._out:
            yield from events
            return
        self._queue(events, now)
        watermark = self._watermark()
        if watermark is not None and watermark < now - MAX_HOLD_SECONDS:
            cutoff = now - MAX_HOLD_SECONDS
            if now >= self._stale_check_at:  # at most once a second of capture time
                self._stale_check_at = now + 1.0
                self._release_stale(cutoff, now)
                watermark = self._watermark()
            if watermark is not None and watermark < cutoff:
                # Bytes not framed yet cannot be released: what they turn into later
                # comes out then, late, rather than hold everything else back.
                watermark = cutoff
        yield from self._flush(watermark)

    def _queue(self, events: list[PipelineEvent], now: float) -> None:
        for event in events:
            self._seq += 1
            heapq.heappush(self._out, (_event_ts(event, now), self._seq, event))

    def _watermark(self) -> float | None:
        """The time of the oldest event a connection or DTLS session still holds back."""
        watermark: float | None = None
        heap = self._holding_heap
        holding = self._holding
        while heap and holding.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            watermark = heap[0][0]
        dtls_heap = self._dtls_heap
        dtls_holding = self._dtls_holding
        while dtls_heap and dtls_holding.get(dtls_heap[0][1]) != dtls_heap[0][0]:
            heapq.heappop(dtls_heap)
        if dtls_heap and (watermark is None or dtls_heap[0][0] < watermark):
            watermark = dtls_heap[0][0]
        return watermark

    def _release_stale(self, cutoff: float, now: float) -> None:
        """Make every connection and DTLS session that has held events back since before
        ``cutoff`` release them (into the ordered queue)."""
        stale = [c for c, since in self._holding.items() if since < cutoff]
        for conn_id in stale:
            tracked = self._tracked.get(conn_id)
            if tracked is None:
                self._holding.pop(conn_id, None)
                continue
            events: list[PipelineEvent] = []
            for sev in self.reassembler.release_held(tracked.conn, now):
                events += self._on_stream_event(sev)
            if tracked.session is not None:
                events += tracked.session.release_hold(now)
            self._holding.pop(conn_id, None)
            self._queue(self._aggregate(events), now)
        for key in [k for k, since in self._dtls_holding.items() if since < cutoff]:
            del self._dtls_holding[key]
            session = self.dtls.holding.pop(key, None)
            if session is not None:
                self._queue(self._aggregate(list(session.release_hold())), now)

    def _flush(self, watermark: float | None) -> Iterator[PipelineEvent]:
        out = self._out
        while out and (watermark is None or out[0][0] < watermark):
            yield heapq.heappop(out)[2]


_AGGREGATED = (FindingEvent, SessionEnded)


def _stream_ts(sev: StreamEvent) -> float:
    return sev.ts


def _event_ts(event: PipelineEvent, default: float) -> float:
    ts = getattr(event, "ts", None)
    if ts is None and isinstance(event, FindingEvent):
        ts = event.finding.ts
    return default if ts is None else float(ts)


__all__ = [
    "DEFAULT_TCP_PORTS",
    "Dissector",
    "PipelineEvent",
    "SessionEnded",
    "SessionKeys",
    "SessionStarted",
]
