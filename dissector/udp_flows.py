"""Follow Particle DTLS sessions across UDP flows.

UDP is connectionless and Particle devices move: a session persisted by the device is
resumed from a new address or port with no handshake on the wire. A datagram from an
unknown flow is attached to a session by, in order:

1. a ClientHello (epoch 0): a new session with a full handshake;
2. its connection ID (record types 25/253): the session that negotiated it, or a
   persisted session in the key ring with that CID;
3. its 254 move-session trailer (device ID): the session of that device;
4. trial decryption with every known session's keys and every persisted session;
5. otherwise: a new session whose records stay encrypted, with a finding saying that
   the device's persisted session is what is missing.

A flow whose datagrams hold no DTLS record at all (a scan, another protocol on the
port, keepalives of a session not otherwise seen) does not become a session: its first
datagram gets a finding, and the end of the capture one total of what was skipped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dissector.capture.packets import UdpDatagram
from dissector.dtls.keys import PersistedSession
from dissector.dtls.records import (
    CT_APPLICATION_DATA,
    CT_HANDSHAKE,
    CT_MOVED_APPLICATION_DATA,
    CT_MOVED_CID,
    CT_TLS12_CID,
    parse_datagram,
)
from dissector.dtls.session import SessionCache
from dissector.model import Direction, Finding, Severity
from dissector.protocol.dtls import DtlsSession, trial_decrypt
from dissector.protocol.events import Event, FindingEvent

if TYPE_CHECKING:
    from dissector.keys import KeyRing

DEFAULT_UDP_PORTS = frozenset({5684})
_CLIENT_HELLO = 1
#: Epoch-0 handshake messages only the cloud (DTLS server) sends: ServerHello,
#: HelloVerifyRequest, ServerKeyExchange, CertificateRequest, ServerHelloDone.
_CLOUD_HANDSHAKES = frozenset({2, 3, 12, 13, 14})
#: First record bytes only the device sends (CID records, the move-session markings).
_DEVICE_ONLY_TYPES = frozenset({CT_TLS12_CID, CT_MOVED_CID, CT_MOVED_APPLICATION_DATA})
#: Flows without a DTLS record remembered one by one (beyond: only counted).
MAX_STRAY_FLOWS = 4096

FlowKey = tuple[str, int, str, int]


class DtlsFlowTracker:
    """Map UDP flows to :class:`DtlsSession` objects and feed them datagrams."""

    def __init__(
        self,
        keyring: KeyRing,
        ports: Iterable[int] = DEFAULT_UDP_PORTS,
        *,
        hold_handshake: bool = True,
    ) -> None:
        self.keyring = keyring
        self.ports = frozenset(ports)
        #: New sessions hold their handshake's events until the device ID can be known
        #: (off for a per-datagram view such as the Scapy decoder).
        self.hold_handshake = hold_handshake
        self.sessions: list[DtlsSession] = []
        self._flows: dict[FlowKey, DtlsSession] = {}
        self._by_cid: dict[bytes, DtlsSession] = {}
        self._by_device: dict[str, DtlsSession] = {}
        self._superseded: dict[FlowKey, DtlsSession] = {}
        #: Cloud endpoints of the flows seen (to orient datagrams between two cloud ports).
        self._clouds: set[tuple[str, int]] = set()
        self._count = 0
        #: Sessions holding events back (the pipeline keeps output in order around them).
        self.holding: dict[str, DtlsSession] = {}
        #: Flows seen with no DTLS record yet (never a session), and what they sent.
        self._stray: set[FlowKey] = set()
        self.stray_datagrams = 0
        self.stray_bytes = 0
        self._stray_flows = 0
        # Session ID -> master secret, shared by every session of the capture, so that an
        # abbreviated handshake (session-ID resumption) decrypts with the master secret of
        # the session that created the ID (its handshake seen earlier, or a persisted
        # session that carries the ID).
        self.session_cache = SessionCache()
        for persisted in keyring.persisted_sessions():
            self.session_cache.add_persisted(persisted)

    def wants(self, dgram: UdpDatagram) -> bool:
        return dgram.dst_port in self.ports or dgram.src_port in self.ports

    def feed(self, dgram: UdpDatagram) -> tuple[list[Event], DtlsSession | None]:
        """Process one datagram; returns its events and the session if it is new."""
        to_cloud = dgram.dst_port in self.ports
        if to_cloud and dgram.src_port in self.ports:
            to_cloud = not self._sent_by_cloud(dgram)  # both ends on the cloud port
        if to_cloud:
            direction = Direction.DEVICE_TO_CLOUD
            key: FlowKey = (dgram.src_ip, dgram.src_port, dgram.dst_ip, dgram.dst_port)
        else:
            direction = Direction.CLOUD_TO_DEVICE
            key = (dgram.dst_ip, dgram.dst_port, dgram.src_ip, dgram.src_port)
        events: list[Event] = []
        session = self._flows.get(key)
        new: DtlsSession | None = None
        if session is None:
            parsed = parse_datagram(dgram.payload)
            if not parsed.records:
                return self._not_dtls(key, direction, dgram, parsed.errors), None
        if session is None or _starts_handshake(dgram.payload, session):
            if session is not None:
                self._superseded[key] = session
            session, new, note = self._attach(key, direction, dgram)
            if note is not None:
                events.append(FindingEvent(note))
            self._flows[key] = session
            self._clouds.add((key[2], key[3]))
        elif key in self._superseded:
            session = self._route_superseded(key, session, direction, dgram.payload)
        events += session.receive_datagram(direction, dgram.payload, dgram.ts)
        self._index(session)
        if session.holding_since is not None:
            self.holding[session.session_id] = session
        elif self.holding:
            self.holding.pop(session.session_id, None)
        return events, new

    def _sent_by_cloud(self, dgram: UdpDatagram) -> bool:
        """Who sent a datagram whose two ports are both cloud ports (Device OS binds its
        own UDP socket to 5684: Electron/Gen2 always, Gen3 over IPv6). In order: a flow
        already known in either orientation, what the records say (ClientHello and CID or
        moved records come from the device; HelloVerifyRequest and the server's flight from
        the cloud), an endpoint known as a cloud; else the device."""
        src = (dgram.src_ip, dgram.src_port)
        dst = (dgram.dst_ip, dgram.dst_port)
        if src + dst in self._flows or src + dst in self._stray:
            return False
        if dst + src in self._flows or dst + src in self._stray:
            return True
        data = dgram.payload
        if data:
            first = data[0]
            if first in _DEVICE_ONLY_TYPES:
                return False
            if first == CT_HANDSHAKE and len(data) > 13 and data[3:5] == b"\x00\x00":
                if data[13] == _CLIENT_HELLO:
                    return False
                if data[13] in _CLOUD_HANDSHAKES:
                    return True
        if src in self._clouds and dst not in self._clouds:
            return True
        if dst in self._clouds:
            return False
        return self._trial_orientation(data, dgram.src_ip, dgram.dst_ip)

    def _trial_orientation(self, data: bytes, src_ip: str, dst_ip: str) -> bool:
        """Whether the cloud sent ``data`` (both ports are cloud ports and nothing else
        tells): the keys of a known or persisted session that open its first protected
        record in one direction decide; else a private address is the device's."""
        record = next((r for r in parse_datagram(data).records if r.epoch > 0), None)
        if record is not None:
            candidates: list[PersistedSession] = list(self.keyring.persisted_sessions())
            candidates += [s for s in (x.conn.export_session() for x in self.sessions) if s]
            for persisted in candidates:
                if trial_decrypt(persisted, Direction.CLOUD_TO_DEVICE, record):
                    return True
                if trial_decrypt(persisted, Direction.DEVICE_TO_CLOUD, record):
                    return False
        try:
            src_private = ipaddress.ip_address(src_ip).is_private
            dst_private = ipaddress.ip_address(dst_ip).is_private
        except ValueError:
            return False
        return dst_private and not src_private

    def finish(self, ts: float) -> list[tuple[DtlsSession, list[Event]]]:
        """End every session (capture end)."""
        ended = [(s, s.end(ts)) for s in self.sessions]
        self.holding.clear()
        return ended

    def stray_summary(self, ts: float) -> list[Finding]:
        """One finding totalling the datagrams skipped because they held no DTLS record."""
        if not self.stray_datagrams:
            return []
        ports = ", ".join(str(p) for p in sorted(self.ports))
        return [
            Finding(
                Severity.WARNING,
                "udp.not_dtls.total",
                f"{self.stray_datagrams} datagrams ({self.stray_bytes} bytes) in "
                f"{self._stray_flows} flows on UDP port {ports} held no DTLS record and were "
                "skipped",
                ts,
                details={
                    "datagrams": self.stray_datagrams,
                    "bytes": self.stray_bytes,
                    "flows": self._stray_flows,
                },
            )
        ]

    def _not_dtls(
        self, key: FlowKey, direction: Direction, dgram: UdpDatagram, errors: list[str]
    ) -> list[Event]:
        """A datagram with no DTLS record on a flow that is no session: skip, say so once."""
        self.stray_datagrams += 1
        self.stray_bytes += len(dgram.payload)
        if key in self._stray:
            return []
        self._stray_flows += 1
        if len(self._stray) >= MAX_STRAY_FLOWS:
            self._stray.clear()  # bounded: a flow seen again may be reported again
        self._stray.add(key)
        if len(dgram.payload) <= 1:
            what = f"a {len(dgram.payload)}-byte keepalive (Device OS ignores these)"
        else:
            what = f"not DTLS ({errors[0] if errors else 'no record'})"
        return [
            FindingEvent(
                Finding(
                    Severity.WARNING if len(dgram.payload) > 1 else Severity.INFO,
                    "udp.not_dtls",
                    f"datagram from {key[0]}:{key[1]} to {key[2]}:{key[3]} is {what}; this "
                    "flow is no DTLS session until a DTLS record appears on it",
                    dgram.ts,
                    None,
                    direction,
                    {"device": f"{key[0]}:{key[1]}", "length": len(dgram.payload)},
                )
            )
        ]

    def _route_superseded(
        self, key: FlowKey, session: DtlsSession, direction: Direction, payload: bytes
    ) -> DtlsSession:
        """A new ClientHello took this flow. Until the new session opens a record, records
        that the session it replaced opens stay with that one: a stray or spoofed
        ClientHello, or a new handshake that never completes, does not take them."""
        record = next((r for r in parse_datagram(payload).records if r.epoch > 0), None)
        if record is None:
            return session
        if session.trial(direction, record):
            del self._superseded[key]
            return session
        previous = self._superseded[key]
        return previous if previous.trial(direction, record) else session

    # -- attaching a flow --------------------------------------------------------------

    def _new(self, key: FlowKey, **kwargs: object) -> DtlsSession:
        self._count += 1
        session = DtlsSession(
            f"dtls-{self._count}",
            self.keyring,
            session_cache=self.session_cache,
            hold_handshake=self.hold_handshake,
            **kwargs,  # type: ignore[arg-type]
        )
        session.info.device_endpoint = (key[0], key[1])
        session.info.cloud_endpoint = (key[2], key[3])
        self.sessions.append(session)
        return session

    def _attach(
        self, key: FlowKey, direction: Direction, dgram: UdpDatagram
    ) -> tuple[DtlsSession, DtlsSession | None, Finding | None]:
        parsed = parse_datagram(dgram.payload)
        if any(r.content_type == CT_HANDSHAKE and r.epoch == 0 for r in parsed.records):
            session = self._new(key)
            return session, session, None
        protected = [
            r
            for r in parsed.records
            if r.content_type in (CT_APPLICATION_DATA, CT_TLS12_CID) and r.epoch > 0
        ]
        cid = next((r.cid for r in protected if r.cid), None)
        found: DtlsSession | None = None
        how = ""
        if cid is not None and cid in self._by_cid:
            found, how = self._by_cid[cid], f"its connection ID {cid.hex()}"
        device_id = parsed.device_id.hex() if parsed.device_id else None
        if found is None and device_id and device_id in self._by_device:
            found, how = self._by_device[device_id], f"its device ID {device_id}"
        if found is None and protected:
            for candidate in reversed(self.sessions):
                if candidate.trial(direction, protected[0]):
                    found, how = candidate, "trial decryption"
                    break
        if found is not None:
            moved = Finding(
                Severity.INFO,
                "dtls.session.moved",
                f"session {found.session_id} continues from a new address "
                f"{key[0]}:{key[1]} (matched by {how})",
                dgram.ts,
                found.session_id,
                direction,
                {"device": f"{key[0]}:{key[1]}"},
            )
            found.info.device_endpoint = (key[0], key[1])
            return found, None, moved
        for persisted in self.keyring.persisted_sessions():
            match = cid is not None and persisted.cid == cid
            if match or (protected and trial_decrypt(persisted, direction, protected[0])):
                session = self._new(key, persisted=persisted)
                return session, session, None
        session = self._new(key, resumed_from="unknown")
        if cid is not None:
            # Later moves of this session carry the same CID: they join it.
            self._by_cid.setdefault(cid, session)
        note: Finding | None = None
        if protected:
            note = Finding(
                Severity.WARNING,
                "dtls.session.unknown_resume",
                "datagrams of a session whose handshake is not in the capture (a resumed or "
                "moved session) and no persisted session or known session matches them: "
                "the device's persisted session (master secret and randoms) is needed",
                dgram.ts,
                session.session_id,
                direction,
            )
        return session, session, note

    def _index(self, session: DtlsSession) -> None:
        cid = session.device_cid
        if cid:
            self._by_cid[cid] = session
        if session.device_id:
            self._by_device[session.device_id] = session


def _starts_handshake(payload: bytes, session: DtlsSession) -> bool:
    """A ClientHello on a known flow starts a new session when its client random is new, or
    when the flow's session so far had no handshake at all (a resumption the cloud did not
    answer, after which the device falls back to a full handshake). Only the first fragment
    of a ClientHello carries the random."""
    if len(payload) < 13 + 12 + 2 + 32 or payload[0] != CT_HANDSHAKE:
        return False
    if payload[3:5] != b"\x00\x00" or payload[13] != _CLIENT_HELLO:
        return False
    if payload[19:22] != b"\x00\x00\x00":  # fragment_offset
        return False
    body = 13 + 12
    random = payload[body + 2 : body + 34]
    current = session.conn.client_random
    if current is None:
        return not session.handshake_started
    return random != current
