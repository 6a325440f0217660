"""DTLS for :class:`~dissector.scapy.ParticleSession`: the real core's events on the layers.

:class:`DtlsDecoder` feeds each UDP datagram to the same
:class:`~dissector.udp_flows.DtlsFlowTracker` the ``dissect`` pipeline uses (sessions
followed across address changes, key log, persisted sessions, trial decryption), dissects
the datagram into a :class:`~dissector.scapy.dtls.ParticleDtlsDatagram`, and matches the
core's events to its layers, in record order:

* a handshake message's :class:`~dissector.protocol.events.HandshakeBlob` goes to the
  :class:`~dissector.scapy.dtls_handshake.DtlsHandshake` that completed it (a fragmented
  message gets its reassembled view), a ChangeCipherSpec or alert blob to its layer;
* a :class:`~dissector.protocol.events.MessageEvent` goes to the
  :class:`~dissector.scapy.dtls.DtlsCiphertext` of the record it came from (same fragment
  bytes); the decrypted CoAP becomes its payload, behind a
  :class:`~dissector.scapy.dtls.DtlsInnerPlaintext` for a connection-ID record; the
  decrypted Finished or alert of an encrypted handshake or alert record likewise.

Each matched layer's ``event`` is its event; the datagram's ``events`` are all the events
of the datagram, findings included. Undecryptable records keep a bare ``DtlsCiphertext``
whose event says why (``event.encrypted.reason``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from scapy.packet import Packet

from dissector.capture.packets import UdpDatagram
from dissector.dtls.handshake import (
    HANDSHAKE_TYPE_NAMES,
    HandshakeError,
    HandshakeFragment,
    HandshakeReassembler,
)
from dissector.dtls.records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CT_TLS12_CID,
    DEFAULT_CID_LEN,
)
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.protocol.dtls import DtlsSession
from dissector.protocol.events import Event, FindingEvent, HandshakeBlob, MessageEvent
from dissector.scapy.dtls import (
    DtlsCiphertext,
    DtlsInnerPlaintext,
    ParticleDtlsDatagram,
    ParticleDtlsRecord,
)
from dissector.scapy.dtls_handshake import (
    DtlsAlert,
    DtlsChangeCipherSpec,
    DtlsHandshake,
    DtlsHandshakeFragment,
    DtlsLayerError,
)
from dissector.scapy.dtls_view import handshake_view, inner_padding, message_view
from dissector.udp_flows import DEFAULT_UDP_PORTS, DtlsFlowTracker

__all__ = ["DtlsDecoder", "event_layers"]

_HANDSHAKE_STEPS = frozenset(HANDSHAKE_TYPE_NAMES.values()) | {"EncryptedHandshake"}
_INNER_TYPE = {"Alert": CT_ALERT, "ChangeCipherSpec": CT_CHANGE_CIPHER_SPEC}

FlowKey = tuple[str, int, str, int]


class DtlsDecoder:
    """Decode Particle DTLS datagrams into layers with the core (see the module doc).

    ``keyring`` is used by this decoder only; ``ports`` are the cloud's UDP ports."""

    def __init__(self, keyring: KeyRing, ports: Iterable[int] = DEFAULT_UDP_PORTS) -> None:
        # Events belong to the datagram that produced them: nothing is held back.
        self.tracker = DtlsFlowTracker(keyring, ports, hold_handshake=False)
        self._flows: dict[FlowKey, DtlsSession] = {}
        self._reasm: dict[tuple[str, Direction], HandshakeReassembler] = {}

    def wants(self, dgram: UdpDatagram) -> bool:
        """Whether the datagram is to or from a cloud UDP port."""
        return self.tracker.wants(dgram)

    def feed(self, dgram: UdpDatagram) -> tuple[ParticleDtlsDatagram, list[Event], Any]:
        """Process one datagram: its layer (events attached), its events, and the
        :class:`~dissector.protocol.dtls.DtlsSession` it started (or None)."""
        events, new = self.tracker.feed(dgram)
        if dgram.dst_port in self.tracker.ports:
            direction = Direction.DEVICE_TO_CLOUD
            key: FlowKey = (dgram.src_ip, dgram.src_port, dgram.dst_ip, dgram.dst_port)
        else:
            direction = Direction.CLOUD_TO_DEVICE
            key = (dgram.dst_ip, dgram.dst_port, dgram.src_ip, dgram.src_port)
        session = self._session_of(events) or self._flows.get(key)
        if session is not None:
            self._flows[key] = session
        layer = ParticleDtlsDatagram(dgram.payload, cid_len=_cid_len(session, direction))
        layer.events = events
        self._attach(layer, events, session, direction)
        return layer, events, new

    def finish(self, ts: float) -> list[tuple[DtlsSession, list[Event]]]:
        """End every session (end of input)."""
        return self.tracker.finish(ts)

    # -- matching ------------------------------------------------------------------------

    def _session_of(self, events: list[Event]) -> DtlsSession | None:
        ids: set[str] = set()
        for ev in events:
            if isinstance(ev, FindingEvent):
                sid = ev.finding.session
            else:
                sid = getattr(ev, "session", None)
            if sid:
                ids.add(sid)
        for session in reversed(self.tracker.sessions):
            if session.session_id in ids:
                return session
        return None

    def _attach(
        self,
        datagram: ParticleDtlsDatagram,
        events: list[Event],
        session: DtlsSession | None,
        direction: Direction,
    ) -> None:
        units = _units(datagram)
        queue = deque(e for e in events if isinstance(e, MessageEvent | HandshakeBlob))
        for i, (rec, layer) in enumerate(units):
            full = self._reassemble(session, direction, layer)
            if not queue:
                continue
            head = queue[0]
            if isinstance(layer, DtlsHandshake):
                if not (isinstance(head, HandshakeBlob) and _completes(units, i)):
                    continue
                if not _same_message(head, layer):
                    continue
                queue.popleft()
                layer.event = head
                frag = layer.payload
                if isinstance(frag, DtlsHandshakeFragment):
                    view = handshake_view(head) if head.raw else full
                    if isinstance(view, DtlsHandshake):
                        frag.reassembled = view
            elif isinstance(layer, DtlsChangeCipherSpec | DtlsAlert):
                step = "ChangeCipherSpec" if isinstance(layer, DtlsChangeCipherSpec) else "Alert"
                if isinstance(head, HandshakeBlob) and head.step == step:
                    queue.popleft()
                    layer.event = head
            elif isinstance(layer, DtlsCiphertext):
                if isinstance(head, MessageEvent):
                    if head.ciphertext != bytes(layer.ciphertext):
                        continue
                    view = message_view(head)
                    inner_type = CT_APPLICATION_DATA
                elif _blob_fits(rec, head):
                    view = None if head.step == "EncryptedHandshake" else handshake_view(head)
                    inner_type = _INNER_TYPE.get(head.step, CT_HANDSHAKE)
                else:
                    continue
                queue.popleft()
                layer.event = head
                if view is not None:
                    if rec.effective_type == CT_TLS12_CID:
                        view = _inner(session, layer, view, inner_type)
                    layer.add_payload(view)
            else:
                continue
            if rec.event is None:
                rec.event = head

    def _reassemble(
        self, session: DtlsSession | None, direction: Direction, layer: Packet
    ) -> DtlsHandshake | None:
        """Mirror the core's reassembly of fragmented clear handshake messages (for the
        reassembled view when the blob does not carry the message bytes)."""
        if not isinstance(layer, DtlsHandshake) or not layer.fragmented or session is None:
            return None
        frag = layer.payload
        data = bytes(frag.data) if isinstance(frag, DtlsHandshakeFragment) else b""
        key = (session.session_id, direction)
        reasm = self._reasm.setdefault(key, HandshakeReassembler())
        try:
            done = reasm.add(
                HandshakeFragment(
                    layer.msg_type,
                    layer.length,
                    layer.message_seq,
                    layer.fragment_offset,
                    layer.fragment_length,
                    data,
                )
            )
        except HandshakeError:
            return None
        if done is None:
            return None
        n = len(done.body).to_bytes(3, "big")
        head = bytes((done.msg_type,)) + n + done.message_seq.to_bytes(2, "big") + bytes(3) + n
        try:
            return DtlsHandshake(head + done.body)
        except DtlsLayerError:
            return None


def _units(datagram: ParticleDtlsDatagram) -> list[tuple[ParticleDtlsRecord, Packet]]:
    """The record-level units of a datagram in order: each clear handshake message, each
    ChangeCipherSpec and alert, each protected fragment."""
    out: list[tuple[ParticleDtlsRecord, Packet]] = []
    for rec in datagram.records:
        layer = rec.payload
        while layer:
            if isinstance(layer, DtlsHandshake | DtlsChangeCipherSpec | DtlsAlert | DtlsCiphertext):
                out.append((rec, layer))
            if isinstance(layer, DtlsCiphertext):
                break
            layer = layer.payload
    return out


def _completes(units: list[tuple[ParticleDtlsRecord, Packet]], i: int) -> bool:
    """A fragment completes its message here only if no later fragment of the same message
    is in the datagram (the core completes a message on its last missing piece)."""
    layer = units[i][1]
    if not layer.fragmented:
        return True
    ident = (layer.msg_type, layer.message_seq, layer.length)
    return not any(
        isinstance(other, DtlsHandshake)
        and other.fragmented
        and (other.msg_type, other.message_seq, other.length) == ident
        for _, other in units[i + 1 :]
    )


def _same_message(blob: HandshakeBlob, layer: DtlsHandshake) -> bool:
    if blob.step != layer.message_name:
        return False
    raw = blob.raw
    if len(raw) >= 6:
        return raw[0] == layer.msg_type and int.from_bytes(raw[4:6], "big") == layer.message_seq
    return True


def _blob_fits(rec: ParticleDtlsRecord, event: Event) -> bool:
    """Whether a handshake/CCS/alert blob can come from this protected record."""
    if not isinstance(event, HandshakeBlob):
        return False
    eff = rec.effective_type
    if eff == CT_ALERT:
        return event.step == "Alert"
    if eff == CT_CHANGE_CIPHER_SPEC:
        return event.step == "ChangeCipherSpec"
    if eff == CT_HANDSHAKE:
        return event.step in _HANDSHAKE_STEPS
    if eff == CT_TLS12_CID:  # the real type is hidden inside
        return event.step in _HANDSHAKE_STEPS or event.step in _INNER_TYPE
    return False


def _inner(
    session: DtlsSession | None, ct: DtlsCiphertext, view: Packet, content_type: int
) -> Packet:
    content_len = len(bytes(view))
    if content_type == CT_HANDSHAKE and not isinstance(view, DtlsHandshake):
        content_len += 12  # the view is the body alone: the header is not known here
    suite = session.conn.cipher_suite if session is not None else None
    pad = inner_padding(suite, len(bytes(ct.ciphertext)), content_len)
    inner: Packet = DtlsInnerPlaintext(content_type=content_type, padding_length=pad) / view
    return inner


def _cid_len(session: DtlsSession | None, direction: Direction) -> int:
    """The CID length the core parses this direction's type-25/253 records with."""
    if session is None:
        return DEFAULT_CID_LEN
    conn = session.conn
    if direction is Direction.DEVICE_TO_CLOUD:
        cid = conn.device_cid
    else:
        ch, sh = conn.client_hello, conn.server_hello
        cid = ch.ext.connection_id if ch is not None else None
        if sh is not None and sh.ext.connection_id is None:
            cid = None
    return len(cid) if cid else DEFAULT_CID_LEN


def event_layers(pkt: Packet) -> list[tuple[Packet, Event]]:
    """The layers of a decoded DTLS packet that carry a core event, with the event, in
    record order (handshake messages, ChangeCipherSpec, alerts, protected records)."""
    datagram = pkt.getlayer(ParticleDtlsDatagram)
    if not isinstance(datagram, ParticleDtlsDatagram):
        return []
    out: list[tuple[Packet, Event]] = []
    for _, layer in _units(datagram):
        if layer.event is not None:
            out.append((layer, layer.event))
    return out
