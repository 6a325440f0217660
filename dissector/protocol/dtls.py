"""The sans-IO core of the Particle UDP protocol (Electron, Gen3 and later; port 5684).

:class:`DtlsSession` is fed ``(direction, datagram, timestamp)``. It drives the DTLS
record/handshake follower of :mod:`dissector.dtls` with the key ring's secrets and hands
each decrypted CoAP message to the Particle exchange tracker, emitting the same events
as the TCP core (``transport`` ``"dtls"``).

What decrypts DTLS (the cryptographic truth): ECDHE gives forward secrecy, so neither
the device's nor the cloud's static EC key decrypts anything — they only sign. A key log
(``CLIENT_RANDOM``) entry for the session's client random, or the device's persisted
session (master secret and both randoms), does; the latter also decrypts resumed
connections that show no handshake at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from dissector.coap import CoapError
from dissector.coap import decode as coap_decode
from dissector.dtls.crypto import RecordDecryptError
from dissector.dtls.handshake import Certificate, ClientHello, ServerHello
from dissector.dtls.keys import PersistedSession
from dissector.dtls.records import CT_TLS12_CID, DtlsRecord
from dissector.dtls.session import (
    Alert,
    ApplicationData,
    ChangeCipherSpec,
    DtlsConnection,
    HandshakeMessage,
    KeepAlive,
    SessionCache,
    persisted_protection,
)
from dissector.model import Direction, Finding, Severity
from dissector.particle import ExchangeTracker
from dissector.protocol.events import (
    EncryptedInfo,
    Event,
    FindingEvent,
    HandshakeBlob,
    MessageEvent,
    SessionKeys,
)
from dissector.protocol.session import CheckStatus, SessionInfo

if TYPE_CHECKING:
    from dissector.keys import KeyRing

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

#: The DTLS handshake checklist, in protocol order (key, human label).
DTLS_CHECKS: tuple[tuple[str, str], ...] = (
    ("client_hello", "device sent ClientHello"),
    ("cookie", "cookie exchange (HelloVerifyRequest)"),
    ("server_hello", "cloud sent ServerHello"),
    ("device_certificate", "device sent its raw public key"),
    ("device_known", "device public key is in the key ring"),
    ("finished", "ChangeCipherSpec both ways"),
    ("keys", "session secrets known (key log or persisted session)"),
    ("device_hello", "device Hello (or a ping on a resumed session)"),
)

_ECDHE_TRUTH = (
    "the device's and the cloud's EC private keys cannot decrypt DTLS (ECDHE: they only "
    "sign); a key log (CLIENT_RANDOM) or the device's persisted session can"
)


#: Events a new session holds back at most while waiting for the device's first record.
MAX_HELD_EVENTS = 64


class DtlsSession:
    """One Particle DTLS session, possibly spread over several UDP flows (moves)."""

    def __init__(
        self,
        session_id: str,
        keyring: KeyRing,
        *,
        persisted: PersistedSession | None = None,
        resumed_from: str | None = None,
        session_cache: SessionCache | None = None,
        hold_handshake: bool = True,
    ) -> None:
        self.session_id = session_id
        self.keyring = keyring
        self.info = SessionInfo(id=session_id, transport="dtls", checklist=DTLS_CHECKS)
        self.conn = DtlsConnection(
            self._lookup,
            session=session_id,
            session_cache=session_cache,
            trial_secrets=self._trial_secrets,
            trial_persisted=keyring.persisted_sessions,
        )
        self.tracker = ExchangeTracker(transport="udp", session=session_id)
        self._missing_reported = False
        self._keys_event_sent = False
        self.handshake_started = False
        self._ccs_seen: set[Direction] = set()
        self._awaiting_finished: set[Direction] = set()
        self._early_finished: set[Direction] = set()
        if persisted is not None:
            self.conn.resume(persisted)
            self.info.outcome = "resumed"
            self.info.key_source = f"persisted session ({persisted.layout})"
            self.info.checks["keys"].set(CheckStatus.PASSED, "persisted session")
            for key in ("client_hello", "cookie", "server_hello", "device_certificate", "finished"):
                self.info.checks[key].set(CheckStatus.NOT_SEEN, "resumed without handshake")
        elif resumed_from is not None:
            self.info.outcome = "resumed"
        #: A new session's events wait until the device's first application record (its
        #: Hello, whose device ID the handshake records then carry too); see _held.
        new_session = persisted is None and resumed_from is None
        self._hold: list[Event] | None = [] if hold_handshake and new_session else None
        self._hold_since: float | None = None
        #: Called with this session whenever :attr:`holding_since` changes (the pipeline
        #: keeps its output watermark without scanning every session at each packet).
        self.on_hold_change: Callable[[DtlsSession], None] | None = None

    @property
    def holding_since(self) -> float | None:
        """Timestamp of the oldest event held back, if any."""
        return self._hold_since

    # -- public sans-IO interface ------------------------------------------------------

    @property
    def device_id(self) -> str | None:
        return self.info.device_id

    @property
    def device_cid(self) -> bytes | None:
        return self.conn.device_cid

    @property
    def has_keys(self) -> bool:
        return self.conn.export_session() is not None and self._secret_known()

    def receive_datagram(self, direction: Direction, data: bytes, ts: float) -> list[Event]:
        """Feed one UDP payload seen in ``direction`` at ``ts``."""
        self.info.touch(ts)
        self.info.stats[direction].bytes += len(data)
        events: list[Event] = []
        produced = self.conn.receive(direction, data, ts)
        if self.conn.device_id is not None and self.info.device_id is None:
            # before the datagram's messages, so that they carry the device ID too
            self._set_device_id(self.conn.device_id.hex(), "254 move-session trailer")
        for dev in produced:
            if isinstance(dev, ApplicationData):
                events += self._on_application(dev)
            elif isinstance(dev, HandshakeMessage):
                events += self._on_handshake(dev)
            elif isinstance(dev, Finding):
                dev.session = self.session_id
                if dev.code in ("keylog.trial_match", "dtls.persisted_match"):
                    self.info.key_source = self.conn.key_source
                events.append(FindingEvent(self._explain(dev)))
                self._on_decrypt_failure(dev)
            elif isinstance(dev, Alert):
                events += self._on_alert(dev)
            elif isinstance(dev, ChangeCipherSpec):
                events.append(self._blob(dev.direction, dev.ts, "ChangeCipherSpec", {}))
                self._ccs_seen.add(dev.direction)
                if dev.direction in self._early_finished:
                    self._early_finished.discard(dev.direction)  # its Finished came first
                else:
                    self._awaiting_finished.add(dev.direction)
                if len(self._ccs_seen) == 2:
                    self.info.checks["finished"].set(CheckStatus.PASSED)
            elif isinstance(dev, KeepAlive):
                continue
        entry = self.conn.cache_entry
        if entry is not None and entry.device_id is None and self.info.device_id is not None:
            entry.device_id = self.info.device_id  # for later resumptions of this session
        if self._hold is not None:
            return self._held(events, direction, produced)
        return events

    def _held(
        self, events: list[Event], direction: Direction, produced: Sequence[object]
    ) -> list[Event]:
        """Hold the handshake's events until the device's first application record has been
        read (a Hello names the device), so that every handshake record carries the device
        ID whenever anything revealed it; bounded by ``MAX_HELD_EVENTS``."""
        hold = self._hold
        assert hold is not None
        hold += events
        device_spoke = direction is Direction.DEVICE_TO_CLOUD and any(
            isinstance(p, ApplicationData) for p in produced
        )
        if device_spoke or len(hold) > MAX_HELD_EVENTS:
            return self._release_hold([])
        stamps = [t for t in (getattr(e, "ts", None) for e in events) if t is not None]
        if stamps:
            oldest = min(stamps)
            if self._hold_since is None or oldest < self._hold_since:
                self._hold_since = oldest
                if self.on_hold_change is not None:
                    self.on_hold_change(self)
        return []

    def release_hold(self) -> list[Event]:
        """Stop waiting for the device's first record and return the held events now (a
        handshake that never completes must not hold back the capture's output)."""
        if self._hold is None:
            return []
        return self._release_hold([])

    def _release_hold(self, more: list[Event]) -> list[Event]:
        events = self._hold or []
        self._hold = None
        if self._hold_since is not None:
            self._hold_since = None
            if self.on_hold_change is not None:
                self.on_hold_change(self)
        events += more
        device_id = self.info.device_id
        if device_id is not None:
            for event in events:
                if isinstance(event, HandshakeBlob | MessageEvent) and event.device_id is None:
                    event.device_id = device_id
        return events

    def end(self, ts: float) -> list[Event]:
        """End of capture: final checklist, and the session secrets for a key log."""
        events: list[Event] = []
        checks = self.info.checks
        if checks["keys"].status is CheckStatus.NOT_SEEN and not self._secret_known():
            checks["keys"].set(CheckStatus.FAILED, self._missing_text())
        if self.info.outcome == "open":
            self.info.outcome = "established" if self._secret_known() else "closed"
        exported = self.conn.export_session()
        if exported is not None and exported.master is not None:
            events.append(
                SessionKeys(
                    self.session_id,
                    "CLIENT_RANDOM",
                    exported.client_random,
                    exported.master,
                    self.info.key_source or "",
                )
            )
        if self._hold is not None:
            events = self._release_hold(events)
        return events

    def trial(self, direction: Direction, record: DtlsRecord) -> bool:
        """Whether this session's keys open ``record`` (to follow a moved session)."""
        exported = self.conn.export_session()
        return exported is not None and trial_decrypt(exported, direction, record)

    # -- events --------------------------------------------------------------------------

    def _on_application(self, dev: ApplicationData) -> list[Event]:
        if dev.duplicate:
            return []  # a byte-identical record (same epoch and sequence) is shown once
        direction = dev.direction
        rec = dev.record
        if direction in self._awaiting_finished:
            self._awaiting_finished.discard(direction)
            if dev.plaintext is None and rec.content_type == CT_TLS12_CID:
                # A CID record hides its real type; the first one after ChangeCipherSpec
                # is the sender's (encrypted) Finished.
                info = {"inferred": "first record after ChangeCipherSpec"}
                return [self._blob(direction, dev.ts, "EncryptedHandshake", info)]
        elif (
            dev.plaintext is None
            and rec.content_type == CT_TLS12_CID
            and rec.epoch == 1
            and rec.seq == 0
            and self.handshake_started
            and direction not in self._ccs_seen
        ):
            # The first record of epoch 1 overtook the ChangeCipherSpec: the Finished.
            self._early_finished.add(direction)
            info = {"inferred": "first record of epoch 1 (before its ChangeCipherSpec)"}
            return [self._blob(direction, dev.ts, "EncryptedHandshake", info)]
        stats = self.info.stats[direction]
        msg = MessageEvent(
            session=self.session_id,
            direction=direction,
            ts=dev.ts,
            wire_length=dev.record.wire_length,
            device_id=self.info.device_id,
            transport="dtls",
            ciphertext=dev.record.fragment,
            plaintext=dev.plaintext,
        )
        events: list[Event] = [msg]
        if dev.plaintext is None:
            stats.messages += 1
            reason = dev.reason or "not decrypted"
            if dev.record.content_type == CT_TLS12_CID:
                reason += " (a connection-ID record hides its real type: CoAP or an alert)"
            msg.encrypted = EncryptedInfo(len(dev.record.fragment), reason)
            if not self._missing_reported and not self._secret_known():
                self._missing_reported = True
                events.append(
                    self._finding(
                        Severity.WARNING,
                        "decrypt.missing_key",
                        self._missing_text(),
                        dev.ts,
                        direction,
                    )
                )
            return events
        if self.info.checks["keys"].status is not CheckStatus.PASSED:
            self.info.checks["keys"].set(CheckStatus.PASSED, self.info.key_source or "key log")
        try:
            coap = coap_decode(dev.plaintext, lenient=True)
        except CoapError as exc:
            stats.messages += 1
            msg.encrypted = EncryptedInfo(
                len(dev.record.fragment), f"decrypted but not valid CoAP: {exc}", dev.plaintext
            )
            events.append(
                self._finding(
                    Severity.ERROR,
                    "coap.malformed",
                    f"decrypted record is not valid CoAP: {exc}",
                    dev.ts,
                    direction,
                )
            )
            return events
        msg.coap = coap
        obs = self.tracker.observe(coap, direction, dev.ts)
        msg.observation = obs
        msg.retransmission = obs.retransmission
        if not obs.retransmission:  # a retransmitted CON is the same message: counted once
            stats.messages += 1
            stats.decrypted += 1
        for finding in obs.findings:
            finding.session = self.session_id
            if finding.direction is None:
                finding.direction = direction
            events.append(FindingEvent(finding))
        if direction is D2C and self.info.checks["device_hello"].status is CheckStatus.NOT_SEEN:
            if obs.kind == "Hello":
                self.info.hello = obs.decoded
                self.info.checks["device_hello"].set(CheckStatus.PASSED)
                device_id = (obs.decoded or {}).get("device_id")
                if isinstance(device_id, str) and len(device_id) == 24:
                    self._set_device_id(device_id, "Hello")
            elif obs.kind == "Ping" and self.info.outcome == "resumed":
                self.info.checks["device_hello"].set(
                    CheckStatus.PASSED, "resumed session: ping instead of Hello"
                )
        msg.device_id = self.info.device_id
        return events

    def _on_handshake(self, dev: HandshakeMessage) -> list[Event]:
        self.handshake_started = True
        if dev.encrypted or dev.msg_type == 20:
            self._awaiting_finished.discard(dev.direction)
        checks = self.info.checks
        info: dict[str, Any] = {}
        msg = dev.msg
        if dev.retransmission:
            info["retransmission"] = True
        if dev.error:
            info["error"] = dev.error
        if isinstance(msg, ClientHello):
            self.info.handshake_seen = True
            if msg.cookie:
                checks["cookie"].set(CheckStatus.PASSED, f"{len(msg.cookie)}-byte cookie")
            elif checks["cookie"].status is CheckStatus.NOT_SEEN:
                checks["cookie"].set(CheckStatus.NOT_SEEN, "no cookie round (yet)")
            checks["client_hello"].set(CheckStatus.PASSED)
        elif isinstance(msg, ServerHello):
            checks["server_hello"].set(CheckStatus.PASSED)
            if self.conn.abbreviated:
                self.info.outcome = "resumed"
                for key in ("device_certificate", "device_known"):
                    checks[key].set(
                        CheckStatus.NOT_SEEN,
                        "abbreviated handshake (session ID resumption): no certificates",
                    )
                resumed = self.conn.resumed_entry
                if resumed is not None and resumed.device_id:
                    self._set_device_id(
                        resumed.device_id,
                        f"session ID resumption of {resumed.owner or 'a session'}",
                    )
            if not self._secret_known():
                checks["keys"].set(CheckStatus.FAILED, self._missing_text())
            else:
                self.info.key_source = self.info.key_source or self.conn.key_source or "key log"
        elif isinstance(msg, Certificate) and dev.direction is D2C:
            der = self.conn.device_public_key
            if der is not None:
                fp = self.keyring.fingerprint(der)
                info["device_public_key_fingerprint"] = fp
                checks["device_certificate"].set(CheckStatus.PASSED, fp[:16])
                entry = self.keyring.entry_for(der)
                if entry is None:
                    checks["device_known"].set(
                        CheckStatus.NOT_CHECKABLE, "no matching EC key in the key ring"
                    )
                else:
                    checks["device_known"].set(CheckStatus.PASSED, _source(entry))
                    if entry.device_id:
                        self._set_device_id(entry.device_id, "device public key in key ring")
                self.info.device_key_fingerprint = fp
        if msg is not None:
            info.update(_jsonable(msg))
        return [self._blob(dev.direction, dev.ts, dev.name, info, dev.raw)]

    def _on_alert(self, dev: Alert) -> list[Event]:
        name = dev.description_name or "encrypted alert"
        severity = Severity.ERROR if dev.fatal else Severity.INFO
        who = "device" if dev.direction is D2C else "cloud"
        if dev.description == 0:
            self.info.closed_by = who
        elif dev.fatal:
            self.info.outcome = "handshake failed" if not self._secret_known() else "failed"
        return [
            self._blob(dev.direction, dev.ts, "Alert", {"level": dev.level, "description": name}),
            self._finding(
                severity,
                f"dtls.alert.{dev.description_name or 'encrypted'}",
                f"the {who} sent a DTLS alert: {name}",
                dev.ts,
                dev.direction,
            ),
        ]

    # -- helpers -------------------------------------------------------------------------

    def _lookup(self, client_random: bytes) -> bytes | None:
        master = self.keyring.nss_master(client_random)
        if master is not None and self.info.key_source is None:
            persisted = any(
                s.client_random == client_random for s in self.keyring.persisted_sessions()
            )
            self.info.key_source = "persisted session" if persisted else "key log"
        return master

    def _trial_secrets(self, server_random: bytes) -> list[tuple[bytes, bytes, str]]:
        """Candidates for a session whose ClientHello is not in the capture: persisted
        sessions with this server random first, then every key log entry."""
        out: list[tuple[bytes, bytes, str]] = []
        persisted = set()
        for s in self.keyring.persisted_sessions():
            if s.master is None:
                continue
            persisted.add(s.client_random)
            if s.server_random == server_random:
                out.append((s.client_random, s.master, f"persisted session ({s.layout})"))
        for client_random, master in self.keyring.nss_secrets("CLIENT_RANDOM").items():
            if client_random not in persisted:
                out.append((client_random, master, "key log"))
        return out

    def _secret_known(self) -> bool:
        exported = self.conn.export_session()
        return exported is not None and exported.master is not None

    def _missing_text(self) -> str:
        cr = self.conn.client_random
        if self.info.outcome == "resumed" and not self.info.handshake_seen:
            text = (
                "resumed session (no handshake on the wire) and no persisted session matches: "
                "the device's persisted session (master secret and randoms) is needed"
            )
            if self.keyring.nss_secrets("CLIENT_RANDOM"):
                text += (
                    "; the key log's CLIENT_RANDOM entries cannot help here: an entry is found "
                    "by the ClientHello's random and the keys derive from both hello randoms, "
                    "none of which is in the capture"
                )
        elif cr is not None and self.conn.server_random is None:
            text = (
                "the ServerHello is not in the capture: the keys derive from both hello "
                f"randoms, so a key log entry for client random {cr.hex()} cannot decrypt "
                "it; the device's persisted session (master secret and both randoms) can"
            )
        elif cr is not None:
            text = f"handshake seen, but no key log entry for client random {cr.hex()}"
            if self.conn.abbreviated:
                text += (
                    f" (abbreviated handshake resuming session ID {self.conn.session_id.hex()}:"
                    " the key log entry or persisted session of the session that created that"
                    " ID would also decrypt it)"
                )
        elif self.conn.server_random is not None:
            text = (
                "the ClientHello is not in the capture (the ServerHello is): a key log entry "
                "is found by the client random, and no entry opened the records by trial "
                f"decryption with server random {self.conn.server_random.hex()}; the key log "
                "entry of this session or the device's persisted session is needed"
            )
        else:
            text = "no handshake seen and no persisted session matches"
        if self.keyring.ec_private_keys():
            text += f"; note: {_ECDHE_TRUTH}"
        return text

    def _on_decrypt_failure(self, finding: Finding) -> None:
        """A tag/MAC failure before any record opened: the secret itself may be wrong."""
        if finding.code != "dtls.decrypt.failed" or "client_random" not in finding.details:
            return
        keys = self.info.checks["keys"]
        if keys.status is not CheckStatus.PASSED:
            keys.set(
                CheckStatus.FAILED,
                f"the master secret for client random {finding.details['client_random']} "
                f"({self.info.key_source or self.conn.key_source or 'key log'}) does not open "
                "the records: wrong key log entry or persisted session",
            )

    def _explain(self, finding: Finding) -> Finding:
        if finding.code == "dtls.decrypt.no_key":
            finding.code = "decrypt.missing_key"  # one code for "which key is missing"
            finding.message = self._missing_text()
            self._missing_reported = True
        return finding

    def _set_device_id(self, device_id: str, source: str) -> None:
        if self.info.device_id is None:
            self.info.device_id = device_id.lower()
            self.info.device_id_source = source

    def _blob(
        self, direction: Direction, ts: float, step: str, info: dict[str, Any], raw: bytes = b""
    ) -> HandshakeBlob:
        return HandshakeBlob(
            session=self.session_id,
            direction=direction,
            ts=ts,
            step=step,
            raw=raw,
            info=info,
            device_id=self.info.device_id,
            transport="dtls",
        )

    def _finding(
        self,
        severity: Severity,
        code: str,
        message: str,
        ts: float,
        direction: Direction | None,
        **details: Any,
    ) -> FindingEvent:
        return FindingEvent(
            Finding(severity, code, message, ts, self.session_id, direction, details)
        )


def trial_decrypt(session: PersistedSession, direction: Direction, record: DtlsRecord) -> bool:
    """Whether the keys of ``session`` open ``record`` sent in ``direction``."""
    pair = persisted_protection(session)
    if pair is None:
        return False
    try:
        (pair[0] if direction is D2C else pair[1]).decrypt(record, record.cid)
    except (RecordDecryptError, ValueError):
        return False
    return True


def _source(entry: Any) -> str:
    sources = getattr(entry, "sources", None) or ["key"]
    return str(sources[0]).rsplit("/", 1)[-1]


def _jsonable(obj: Any, depth: int = 0) -> Any:
    """Dataclass handshake messages as JSON-friendly dicts (bytes as hex)."""
    if depth > 4:
        return None
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).hex()
    if isinstance(obj, Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _jsonable(getattr(obj, f.name), depth + 1)
            for f in dataclasses.fields(obj)
            if not f.name.startswith("_")
        }
    if isinstance(obj, list | tuple):
        return [_jsonable(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return str(obj)
