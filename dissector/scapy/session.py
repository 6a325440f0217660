"""Scapy integration: :class:`ParticleSession` decodes captured packets with the real core.

Every packet goes through the same data path as the fast decoder (link decoding, TCP
reassembly, one :class:`~dissector.protocol.tcp.TcpConnection` per connection, the
:class:`~dissector.udp_flows.DtlsFlowTracker` for UDP, holding the session's
:class:`~dissector.keys.KeyRing`); the core's events become layers stacked on the TCP header
of the packet that completed them:

* ``... / TCP / ParticleNonce``, ``/ ParticleIdentity [/ ParticleIdentityPlaintext]``,
  ``/ ParticleSessionKey [/ ParticleSessionCredentials]`` for the handshake;
* ``... / TCP / ParticleFrame [/ CoAP [/ ParticleHello ...]]`` for each frame; a frame the
  core could not decrypt has no payload and its ``event.encrypted.reason`` says why.

A UDP datagram to or from a cloud DTLS port (5684) keeps its headers and becomes
``... / UDP / ParticleDtlsDatagram``: its records, each with its handshake messages,
ChangeCipherSpec, alert or :class:`~dissector.scapy.dtls.DtlsCiphertext`, and, where the
core decrypted a record, its CoAP message (see :mod:`dissector.scapy.dtls_session`).

Packets that are neither pass through unchanged; a Particle TCP segment is replaced by the
units it completes (zero, one or several), like Scapy's ``TCPSession``. The top Particle
layer's ``event`` attribute is the core event (session, direction, timestamp, device ID,
exchange observation); on DTLS, each matched layer's.

Nothing is global: all state, keys included, belongs to the session object.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from scapy.config import conf
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet
from scapy.sessions import DefaultSession

from dissector.capture.linklayer import SUPPORTED_LINKTYPES, LinkDecoder
from dissector.capture.packets import RawPacket, TcpSegment, UdpDatagram
from dissector.capture.tcp_reassembly import (
    Connection,
    ConnectionClosed,
    ConnectionOpened,
    StreamData,
    StreamGap,
    TcpReassembler,
)
from dissector.crypto import (
    IdentityPlaintextError,
    RsaError,
    parse_identity_plaintext,
    rsa_decrypt_pkcs1v15,
)
from dissector.keys import KeyRing
from dissector.model import Direction, Finding
from dissector.pipeline import DEFAULT_TCP_PORTS
from dissector.protocol.events import Event, FindingEvent, HandshakeBlob, MessageEvent
from dissector.protocol.session import SessionInfo
from dissector.protocol.tcp import IDENTITY_LEN, NONCE_LEN, SESSION_KEY_LEN, TcpConnection
from dissector.scapy.dtls_session import DtlsDecoder
from dissector.scapy.show import handshake_layers, message_layers
from dissector.udp_flows import DEFAULT_UDP_PORTS

__all__ = ["ParticleSession"]

#: Stream bytes kept per direction for slicing out frames (oldest dropped beyond this).
MAX_LOG_BYTES = 1 << 20

#: Stream byte range of each handshake message: (start, end).
_BLOB_RANGES = {
    "nonce": (0, NONCE_LEN),
    "identity": (0, IDENTITY_LEN),
    "session_key": (NONCE_LEN, NONCE_LEN + SESSION_KEY_LEN),
}


class _SideLog:
    """The recent stream bytes of one direction with the packet that delivered each chunk."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: deque[tuple[int, bytes, Packet]] = deque()
        self.size = 0

    def add(self, offset: int, data: bytes, pkt: Packet) -> None:
        self.chunks.append((offset, data, pkt))
        self.size += len(data)
        while self.size > MAX_LOG_BYTES and len(self.chunks) > 1:
            self.size -= len(self.chunks.popleft()[1])

    def bytes_at(self, start: int, end: int) -> bytes | None:
        """The captured bytes of ``[start, end)`` up to the first hole; None if none."""
        parts: list[bytes] = []
        pos = start
        for off, data, _ in self.chunks:
            if off + len(data) <= pos:
                continue
            if off > pos or pos >= end:
                break
            piece = data[pos - off : end - off]
            parts.append(piece)
            pos += len(piece)
        return b"".join(parts) if parts else None

    def packet_for(self, end: int) -> Packet | None:
        """The packet that delivered byte ``end - 1`` (or the last one before it)."""
        last: Packet | None = None
        for off, data, pkt in self.chunks:
            if off >= end:
                break
            last = pkt
            if off + len(data) >= end:
                break
        return last

    def trim(self, upto: int) -> None:
        """Forget chunks that end at or before ``upto``."""
        chunks = self.chunks
        while chunks and chunks[0][0] + len(chunks[0][1]) <= upto:
            self.size -= len(chunks.popleft()[1])


@dataclass(slots=True)
class _Tracked:
    conn: Connection
    session: TcpConnection | None
    cloud_side: int | None
    pending: list[StreamData | StreamGap] = field(default_factory=list)
    logs: tuple[_SideLog, _SideLog] = field(default_factory=lambda: (_SideLog(), _SideLog()))


class ParticleSession(DefaultSession):
    """A Scapy session that decodes (and, with keys, decrypts) Particle traffic: TCP and
    DTLS.

    ``keyring`` holds the keys of this session only (an empty ring when None: the handshake,
    frame and record structure are still shown). ``tcp_ports`` and ``udp_ports`` are the
    cloud's ports.

    Use it with ``sniff(offline=..., session=ParticleSession(keyring=ring), prn=...)``, or
    directly: ``for pkt in ParticleSession(keyring=ring).decode(PcapReader(f))``. When
    feeding packets by hand, :meth:`feed` each one and call :meth:`finish` at the end (it
    releases what the core still holds). Findings go to :attr:`findings`, session summaries
    to :attr:`sessions`. Needs Scapy ≥ 2.6 (the ``recv`` session API) for ``sniff``.
    """

    def __init__(
        self,
        keyring: KeyRing | None = None,
        *,
        tcp_ports: Iterable[int] = DEFAULT_TCP_PORTS,
        udp_ports: Iterable[int] = DEFAULT_UDP_PORTS,
    ) -> None:
        super().__init__()
        self.keyring = keyring if keyring is not None else KeyRing()
        self.tcp_ports = frozenset(tcp_ports)
        self.udp_ports = frozenset(udp_ports)
        self._dtls = DtlsDecoder(self.keyring, self.udp_ports)
        self.findings: list[Finding] = []
        self.sessions: list[SessionInfo] = []
        self._link = LinkDecoder()
        self._reassembler = TcpReassembler()
        self._tracked: dict[int, _Tracked] = {}
        self._session_no = 0
        self._index = 0
        self._last_ts: float | None = None
        self._live: set[int] = set()

    def __repr__(self) -> str:
        return (
            f"<ParticleSession ports={sorted(self.tcp_ports)} udp_ports={sorted(self.udp_ports)} "
            f"sessions={len(self.sessions)} "
            f"keyring={len(self.keyring)} entries>"
        )

    # -- Scapy session API -----------------------------------------------------------------

    def recv(self, sock: Any) -> Iterator[Packet]:
        """Called by ``sniff()``: read one packet and yield what it decodes to. When the
        last offline source ends, the session is finished and the rest is yielded."""
        key = id(sock)
        try:
            pkt = sock.recv()
        except EOFError:
            self._live.discard(key)
            if not self._live:
                yield from self.finish()
            raise
        self._live.add(key)
        if pkt is None:
            return
        yield from self.feed(pkt)

    # -- direct use ----------------------------------------------------------------------

    def decode(self, packets: Iterable[Packet]) -> Iterator[Packet]:
        """Feed every packet, then finish: the equivalent of iterating a capture."""
        for pkt in packets:
            yield from self.feed(pkt)
        yield from self.finish()

    def feed(self, pkt: Packet) -> list[Packet]:
        """Process one captured packet; return it unchanged when it is not Particle TCP or
        DTLS, the decoded datagram for DTLS, else the Particle units it completed (possibly
        none)."""
        self._index += 1
        ts = float(pkt.time)
        self._last_ts = ts
        seg = self._segment(pkt, ts)
        if isinstance(seg, UdpDatagram):
            return [self._datagram_packet(pkt, seg)] if self._dtls.wants(seg) else [pkt]
        if seg is None or (
            seg.src_port not in self.tcp_ports and seg.dst_port not in self.tcp_ports
        ):
            return [pkt]
        out: list[Packet] = []
        for sev in self._reassembler.feed(seg):
            out += self._on_stream_event(sev, pkt)
        return out

    def finish(self) -> list[Packet]:
        """End of input: close every connection and return what the core released."""
        ts = self._last_ts if self._last_ts is not None else 0.0
        out: list[Packet] = []
        for sev in self._reassembler.close_all(ts):
            out += self._on_stream_event(sev, None)
        for conn_id in list(self._tracked):
            out += self._end(conn_id, ts)
        for _, events in self._dtls.finish(ts):
            self.findings += [e.finding for e in events if isinstance(e, FindingEvent)]
        return out

    # -- DTLS ----------------------------------------------------------------------------

    def _datagram_packet(self, pkt: Packet, dgram: UdpDatagram) -> Packet:
        layer, events, new = self._dtls.feed(dgram)
        if new is not None:
            self.sessions.append(new.info)
        self.findings += [e.finding for e in events if isinstance(e, FindingEvent)]
        return _stack(pkt, layer)

    # -- packets to segments ---------------------------------------------------------------

    def _segment(self, pkt: Packet, ts: float) -> TcpSegment | UdpDatagram | None:
        linktype = conf.l2types.layer2num.get(type(pkt))
        if linktype in SUPPORTED_LINKTYPES:
            data = bytes(pkt)
            wirelen = pkt.wirelen if isinstance(pkt.wirelen, int) else len(data)
            unit = self._link.decode(
                RawPacket(ts, linktype, data, max(wirelen, len(data)), self._index, "scapy")
            )
            return unit if isinstance(unit, TcpSegment | UdpDatagram) else None
        return _segment_from_layers(pkt, ts, self._index)

    # -- connections (the same rules as dissector.pipeline.Dissector) -------------------------

    def _on_stream_event(
        self,
        sev: ConnectionOpened | StreamData | StreamGap | ConnectionClosed,
        pkt: Packet | None,
    ) -> list[Packet]:
        conn = sev.conn
        tracked = self._tracked.get(conn.id)
        if isinstance(sev, ConnectionOpened):
            if tracked is None:
                self._track(conn, sev.syn_seen)
            return []
        if tracked is None:
            tracked = self._track(conn, conn.syn_seen)
        if isinstance(sev, StreamData) and pkt is not None:
            tracked.logs[sev.side].add(sev.offset, sev.data, pkt)
        out: list[Packet] = []
        if tracked.session is None:
            if isinstance(sev, StreamData | StreamGap):
                tracked.pending.append(sev)
                if isinstance(sev, StreamData):
                    tracked.cloud_side = sev.side  # the cloud speaks first (the nonce)
                    self._start_session(tracked, conn.syn_seen)
                    pending, tracked.pending = tracked.pending, []
                    for item in pending:
                        out += self._deliver(tracked, item, pkt)
                return out
            return self._maybe_end(tracked, sev, pkt)
        if isinstance(sev, ConnectionClosed):
            return self._maybe_end(tracked, sev, pkt)
        return self._deliver(tracked, sev, pkt)

    def _track(self, conn: Connection, syn_seen: bool) -> _Tracked:
        tracked = _Tracked(conn, None, self._cloud_side(conn))
        self._tracked[conn.id] = tracked
        if tracked.cloud_side is not None:
            self._start_session(tracked, syn_seen)
        return tracked

    def _cloud_side(self, conn: Connection) -> int | None:
        a_is = conn.endpoints[0][1] in self.tcp_ports
        b_is = conn.endpoints[1][1] in self.tcp_ports
        if a_is and not b_is:
            return 0
        if b_is and not a_is:
            return 1
        if conn.syn_seen:
            return 1
        return None

    def _start_session(self, tracked: _Tracked, syn_seen: bool) -> None:
        self._session_no += 1
        session = TcpConnection(
            f"tcp-{self._session_no}",
            self.keyring,
            handshake_expected=True if syn_seen else None,
        )
        cloud = tracked.cloud_side if tracked.cloud_side is not None else 1
        session.info.cloud_endpoint = tracked.conn.endpoints[cloud]
        session.info.device_endpoint = tracked.conn.endpoints[1 - cloud]
        tracked.session = session
        self.sessions.append(session.info)

    def _side(self, tracked: _Tracked, direction: Direction) -> int:
        cloud = tracked.cloud_side if tracked.cloud_side is not None else 1
        return cloud if direction is Direction.CLOUD_TO_DEVICE else 1 - cloud

    def _direction(self, tracked: _Tracked, side: int) -> Direction:
        if side == tracked.cloud_side:
            return Direction.CLOUD_TO_DEVICE
        return Direction.DEVICE_TO_CLOUD

    def _deliver(
        self, tracked: _Tracked, sev: StreamData | StreamGap, pkt: Packet | None
    ) -> list[Packet]:
        session = tracked.session
        assert session is not None
        direction = self._direction(tracked, sev.side)
        if isinstance(sev, StreamData):
            events = session.receive_data(direction, sev.data, sev.ts)
        else:
            events = session.receive_gap(direction, sev.nbytes, sev.ts)
        return self._render(tracked, events, pkt)

    def _maybe_end(
        self, tracked: _Tracked, sev: ConnectionClosed, pkt: Packet | None
    ) -> list[Packet]:
        session = tracked.session
        if session is None:
            return []
        direction = None if sev.side is None else self._direction(tracked, sev.side)
        events = session.receive_close(direction, sev.ts, sev.reason)
        out = self._render(tracked, events, pkt)
        ending = ("rst", "timeout", "end_of_capture", "reused", "evicted")
        if sev.reason in ending or session.closed_both_ways:
            out += self._end(tracked.conn.id, sev.ts)
        return out

    def _end(self, conn_id: int, ts: float) -> list[Packet]:
        tracked = self._tracked.pop(conn_id, None)
        if tracked is None or tracked.session is None:
            return []
        return self._render(tracked, tracked.session.end(ts), None)

    # -- events to packets ---------------------------------------------------------------

    def _render(self, tracked: _Tracked, events: list[Event], pkt: Packet | None) -> list[Packet]:
        out: list[Packet] = []
        for event in events:
            if isinstance(event, FindingEvent):
                self.findings.append(event.finding)
            elif isinstance(event, MessageEvent):
                out.append(self._message_packet(tracked, event, pkt))
            elif isinstance(event, HandshakeBlob):
                out.append(self._blob_packet(tracked, event, pkt))
        return out

    def _message_packet(self, tracked: _Tracked, event: MessageEvent, pkt: Packet | None) -> Packet:
        log = tracked.logs[self._side(tracked, event.direction)]
        wire: bytes | None = None
        base = pkt
        if event.stream_offset >= 0:
            start = event.stream_offset
            end = start + event.wire_length
            wire = log.bytes_at(start, end)
            if wire is not None and int.from_bytes(wire[:2], "big") != event.wire_length - 2:
                wire = None
            base = log.packet_for(end) or pkt
            log.trim(end)
        if wire is None:
            wire = (event.wire_length - 2).to_bytes(2, "big")
        layer = message_layers(event, wire)
        assert layer is not None
        return _stack(base, layer)

    def _blob_packet(self, tracked: _Tracked, blob: HandshakeBlob, pkt: Packet | None) -> Packet:
        log = tracked.logs[self._side(tracked, blob.direction)]
        start, end = _BLOB_RANGES.get(blob.step, (0, len(blob.raw)))
        end = min(end, start + len(blob.raw)) if blob.raw else end
        base = log.packet_for(end) or pkt
        layer = handshake_layers(blob, self._blob_plaintext(tracked, blob))
        return _stack(base, layer)

    def _blob_plaintext(self, tracked: _Tracked, blob: HandshakeBlob) -> bytes | None:
        """The decrypted view of a handshake message, as far as the core recovered it."""
        hooked = getattr(blob, "plaintext", None)
        if isinstance(hooked, bytes):
            return hooked
        if blob.step == "session_key" and blob.info.get("session_key_recovered"):
            keys = tracked.session.session_keys() if tracked.session is not None else None
            return keys.secret if keys is not None else None
        if blob.step == "identity" and blob.info.get("decrypted"):
            # Stopgap until HandshakeBlob carries the plaintext: the core decrypted this
            # message with one of these keys; redo that with the same primitive.
            for key in self.keyring.server_private_keys():
                try:
                    pt = rsa_decrypt_pkcs1v15(key, blob.raw)
                    parse_identity_plaintext(pt)
                except (RsaError, IdentityPlaintextError):
                    continue
                return pt
        return None


def _stack(base: Packet | None, layer: Packet) -> Packet:
    """``layer`` on the link/IP/TCP (or UDP) headers of ``base`` (lengths and checksums
    recomputed on build); ``layer`` alone when there is no such header to put it on (e.g.
    the last fragment of a fragmented datagram)."""
    if base is None:
        return layer
    out = base.copy()
    tcp = out.getlayer(TCP) or out.getlayer(UDP)
    if tcp is None:
        layer.time = base.time
        return layer
    tcp.remove_payload()
    ip = out.getlayer(IP)
    if ip is not None:
        ip.len = None
        ip.chksum = None
    ip6 = out.getlayer(IPv6)
    if ip6 is not None:
        ip6.plen = None
    tcp.chksum = None
    if isinstance(tcp, UDP):
        tcp.len = None
    tcp.add_payload(layer)
    out.wirelen = None
    return out


def _segment_from_layers(pkt: Packet, ts: float, index: int) -> TcpSegment | UdpDatagram | None:
    """A segment (or datagram) from Scapy's own IP/IPv6 and TCP (UDP) layers (link types
    the fast decoder does not know)."""
    tcp = pkt.getlayer(TCP)
    if tcp is None:
        return _datagram_from_layers(pkt, ts, index)
    ip = tcp.underlayer
    if isinstance(ip, IP):
        version = 4
    elif isinstance(ip, IPv6):
        version = 6
    else:
        return None
    payload = bytes(tcp.payload)
    pad = tcp.getlayer(conf.padding_layer)
    if pad is not None:
        payload = payload[: len(payload) - len(bytes(pad.load))]
    return TcpSegment(
        ts,
        index,
        str(ip.src),
        int(tcp.sport),
        str(ip.dst),
        int(tcp.dport),
        int(tcp.seq),
        int(tcp.ack),
        int(tcp.flags),
        payload,
        version,
    )


def _datagram_from_layers(pkt: Packet, ts: float, index: int) -> UdpDatagram | None:
    udp = pkt.getlayer(UDP)
    if udp is None:
        return None
    ip = udp.underlayer
    if isinstance(ip, IP):
        version = 4
    elif isinstance(ip, IPv6):
        version = 6
    else:
        return None
    payload = bytes(udp.payload)
    pad = udp.getlayer(conf.padding_layer)
    if pad is not None:
        payload = payload[: len(payload) - len(bytes(pad.load))]
    return UdpDatagram(
        ts, index, str(ip.src), int(udp.sport), str(ip.dst), int(udp.dport), payload, version
    )
