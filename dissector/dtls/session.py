"""A minimal sans-IO DTLS 1.2 connection that follows a capture and decrypts it.

Feed every UDP payload of one flow to :meth:`DtlsConnection.receive` with its direction
and timestamp; it returns the events it found, in record order:

* :class:`HandshakeMessage` — each reassembled handshake message (the encrypted Finished
  too, once keys are known), with its parsed body;
* :class:`ChangeCipherSpec`, :class:`Alert`, :class:`KeepAlive` (0/1-byte datagrams);
* :class:`ApplicationData` — one per application-data record; ``plaintext`` is the CoAP
  message, or None with a plain-words ``reason``;
* :class:`dissector.model.Finding` — malformed records, tag failures, missing keys,
  session moves (types 253/254), CID mismatches.

The device is the DTLS client: ``Direction.DEVICE_TO_CLOUD`` is client→server. Keys come
from ``secrets_lookup(client_random) -> master | None`` (e.g. an NSS key log) once both
hellos are seen, or from :meth:`DtlsConnection.resume` with a persisted session when the
connection has no handshake on the wire (spec §6.5). ``receive`` never raises on bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dissector.model import Direction, Finding, Severity

from .crypto import SUITES, KeyBlock, RecordDecryptError, RecordProtection, key_block
from .handshake import (
    CERT_TYPE_RAW_PUBLIC_KEY,
    HANDSHAKE_TYPE_NAMES,
    HT_CERTIFICATE,
    Certificate,
    ClientHello,
    HandshakeError,
    HandshakeReassembler,
    HelloVerifyRequest,
    ParsedHandshake,
    ServerHello,
    parse_handshake_body,
    split_handshake_fragments,
)
from .keys import PersistedSession
from .records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CT_MOVED_APPLICATION_DATA,
    CT_MOVED_CID,
    CT_TLS12_CID,
    DEFAULT_CID_LEN,
    DtlsRecord,
    parse_datagram,
)

SecretsLookup = Callable[[bytes], bytes | None]

ALERT_DESCRIPTIONS: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    90: "user_canceled",
    100: "no_renegotiation",
    110: "unsupported_extension",
}


# --------------------------------------------------------------------------- events


@dataclass(slots=True)
class HandshakeMessage:
    """A complete handshake message. ``msg`` is None when undecryptable or malformed
    (see ``error``); ``msg_type`` is None when the record could not be decrypted."""

    direction: Direction
    ts: float
    msg: ParsedHandshake | None
    msg_type: int | None
    message_seq: int | None
    retransmission: bool = False
    encrypted: bool = False
    error: str | None = None

    @property
    def name(self) -> str:
        if self.msg_type is None:
            return "EncryptedHandshake"
        return HANDSHAKE_TYPE_NAMES.get(self.msg_type, f"handshake_{self.msg_type}")


@dataclass(slots=True)
class ApplicationData:
    """One application-data record: ``plaintext`` (one CoAP message) or None + ``reason``.

    ``duplicate`` marks a record whose (epoch, sequence number) was already seen in this
    direction (a duplicated datagram, not a CoAP retransmission).
    """

    direction: Direction
    ts: float
    plaintext: bytes | None
    record: DtlsRecord
    reason: str | None = None
    duplicate: bool = False


@dataclass(slots=True)
class Alert:
    """A DTLS alert; level/description None when it could not be decrypted or parsed."""

    direction: Direction
    ts: float
    level: int | None
    description: int | None
    record: DtlsRecord
    encrypted: bool = False
    reason: str | None = None

    @property
    def description_name(self) -> str | None:
        if self.description is None:
            return None
        return ALERT_DESCRIPTIONS.get(self.description, f"alert_{self.description}")

    @property
    def fatal(self) -> bool:
        return self.level == 2


@dataclass(slots=True)
class ChangeCipherSpec:
    """ChangeCipherSpec: the sender's following records use the next epoch."""

    direction: Direction
    ts: float
    record: DtlsRecord


@dataclass(slots=True)
class KeepAlive:
    """A 0- or 1-byte datagram (Device OS ignores these; spec §6.9)."""

    direction: Direction
    ts: float
    data: bytes


DtlsEvent = HandshakeMessage | ApplicationData | Alert | ChangeCipherSpec | KeepAlive | Finding


# --------------------------------------------------------------------------- state


class _Params:
    """Security parameters of one handshake (or persisted session) and their keys."""

    __slots__ = (
        "client_random",
        "cloud_cid",
        "device_cid",
        "encrypt_then_mac",
        "extended_master_secret",
        "master",
        "missing_reported",
        "prot",
        "server_random",
        "suite",
    )

    def __init__(self) -> None:
        self.client_random: bytes | None = None
        self.server_random: bytes | None = None
        self.suite: int | None = None
        self.device_cid: bytes | None = None  # CID in device->cloud records
        self.cloud_cid: bytes | None = None  # CID in cloud->device records
        self.encrypt_then_mac = False
        self.extended_master_secret = False
        self.master: bytes | None = None
        self.prot: tuple[RecordProtection, RecordProtection] | None = None
        self.missing_reported = False


class _Replay:
    """64-record sliding window per direction to flag duplicated records."""

    __slots__ = ("epoch", "mask", "top")

    def __init__(self) -> None:
        self.epoch = -1
        self.top = -1
        self.mask = 0

    def seen(self, epoch: int, seq: int) -> bool:
        """Record (epoch, seq); True if it was already seen."""
        if epoch != self.epoch:
            if epoch < self.epoch:
                return False
            self.epoch, self.top, self.mask = epoch, seq, 1
            return False
        if seq > self.top:
            shift = seq - self.top
            self.mask = ((self.mask << shift) | 1) & 0xFFFFFFFFFFFFFFFF if shift < 64 else 1
            self.top = seq
            return False
        back = self.top - seq
        if back >= 64:
            return False
        bit = 1 << back
        if self.mask & bit:
            return True
        self.mask |= bit
        return False


_D2C = Direction.DEVICE_TO_CLOUD
_C2D = Direction.CLOUD_TO_DEVICE


class DtlsConnection:
    """Follows one DTLS flow (both directions) and decrypts what it can.

    ``secrets_lookup(client_random)`` returns the 48-byte master secret or None.
    ``session`` labels the findings. Public attributes after the handshake:
    :attr:`client_random`, :attr:`server_random`, :attr:`cipher_suite`,
    :attr:`device_cid`, :attr:`cookie`, :attr:`device_public_key`, :attr:`device_id`
    (from a type-254 trailer) and :attr:`resumed`.
    """

    def __init__(
        self,
        secrets_lookup: SecretsLookup | None = None,
        *,
        session: str | None = None,
        default_cid_len: int = DEFAULT_CID_LEN,
    ) -> None:
        self._lookup = secrets_lookup
        self.session = session
        self._default_cid_len = default_cid_len
        self._hs = _Params()
        self._epochs: dict[Direction, dict[int, _Params]] = {_D2C: {}, _C2D: {}}
        self._reasm = {_D2C: HandshakeReassembler(), _C2D: HandshakeReassembler()}
        self._replay = {_D2C: _Replay(), _C2D: _Replay()}
        self._client_dir = _D2C
        self._last_out: tuple[int, int] | None = None
        self._moved_reported = False
        self.cookie: bytes | None = None
        self.device_public_key: bytes | None = None
        self.device_id: bytes | None = None
        self.resumed = False
        self.client_hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None

    # ------------------------------------------------------------------ public state

    @property
    def client_random(self) -> bytes | None:
        return self._hs.client_random

    @property
    def server_random(self) -> bytes | None:
        return self._hs.server_random

    @property
    def cipher_suite(self) -> int | None:
        return self._hs.suite

    @property
    def device_cid(self) -> bytes | None:
        """CID the device puts in its records (assigned by the cloud's ServerHello)."""
        return self._hs.device_cid

    # ------------------------------------------------------------------ entry points

    def resume(self, persisted: PersistedSession) -> None:
        """Start from a persisted session (no handshake on the wire).

        Uses its randoms, suite, CID and master; when ``persisted.master`` is None the
        master comes from ``secrets_lookup(client_random)``.
        """
        p = _Params()
        p.client_random = persisted.client_random
        p.server_random = persisted.server_random
        p.suite = persisted.ciphersuite
        p.device_cid = persisted.cid
        p.encrypt_then_mac = persisted.encrypt_then_mac
        p.master = persisted.master
        self._hs = p
        self._client_dir = _D2C
        self._epochs[_D2C][max(persisted.out_epoch, 1)] = p
        self._epochs[_C2D][max(persisted.in_epoch, 1)] = p
        self.resumed = True

    def export_session(self) -> PersistedSession | None:
        """The current session as a :class:`PersistedSession` (to resume a moved flow),
        or None before both hellos were seen."""
        p = self._hs
        if p.client_random is None or p.server_random is None or p.suite is None:
            return None
        master = self._master(p)
        out_epoch, out_seq = self._last_out if self._last_out else (1, 0)
        return PersistedSession(
            client_random=p.client_random,
            server_random=p.server_random,
            master=master,
            ciphersuite=p.suite,
            cid=p.device_cid,
            out_epoch=out_epoch,
            out_seq=out_seq,
            encrypt_then_mac=p.encrypt_then_mac,
            layout="live",
        )

    def receive(self, direction: Direction, datagram: bytes, ts: float) -> list[DtlsEvent]:
        """Process one UDP payload; return the events it produced (never raises)."""
        events: list[DtlsEvent] = []
        parsed = parse_datagram(datagram, self._cid_len(direction))
        if parsed.keepalive:
            events.append(KeepAlive(direction, ts, bytes(datagram)))
            return events
        if parsed.trailer is not None:
            self.device_id = parsed.device_id
        for rec in parsed.records:
            self._record(direction, rec, ts, events)
        for err in parsed.errors:
            events.append(
                self._finding(Severity.WARNING, "dtls.record.malformed", err, ts, direction)
            )
        return events

    # ------------------------------------------------------------------ internals

    def _finding(
        self,
        severity: Severity,
        code: str,
        message: str,
        ts: float,
        direction: Direction,
        **details: object,
    ) -> Finding:
        return Finding(severity, code, message, ts, self.session, direction, dict(details))

    def _cid_len(self, direction: Direction) -> int:
        p = self._hs
        cid = p.device_cid if direction is self._client_dir else p.cloud_cid
        return len(cid) if cid else self._default_cid_len

    def _record(self, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]) -> None:
        if rec.moved and not self._moved_reported:
            self._moved_reported = True
            kind = "253 (CID)" if rec.wire_type == CT_MOVED_CID else "254 (device ID trailer)"
            msg = f"record type {kind}: the device moved a resumed session"
            if self.device_id is not None and rec.wire_type == CT_MOVED_APPLICATION_DATA:
                msg += f" (device ID {self.device_id.hex()})"
            events.append(self._finding(Severity.INFO, "dtls.session.moved", msg, ts, d))
        if rec.epoch == 0 and rec.content_type != CT_TLS12_CID:
            self._plain_record(d, rec, ts, events)
        else:
            self._protected_record(d, rec, ts, events)

    def _plain_record(
        self, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]
    ) -> None:
        ct = rec.content_type
        if ct == CT_HANDSHAKE:
            self._handshake(d, rec.fragment, ts, False, events)
        elif ct == CT_CHANGE_CIPHER_SPEC:
            self._ccs(d, rec, ts, events)
        elif ct == CT_ALERT:
            self._alert(d, rec, rec.fragment, ts, False, events)
        else:
            reason = "application data in epoch 0 (unprotected)"
            events.append(ApplicationData(d, ts, None, rec, reason))
            events.append(self._finding(Severity.WARNING, "dtls.record.unprotected", reason, ts, d))

    def _protected_record(
        self, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]
    ) -> None:
        if rec.epoch == 0:
            self._undecryptable(d, rec, ts, "CID record in epoch 0", events)
            return
        if rec.cid is not None:
            self._check_cid(d, rec, ts, events)
        if d is self._client_dir:
            self._last_out = (rec.epoch, rec.seq + 1)
        prot, reason = self._protection(d, rec.epoch, ts, events)
        if prot is None:
            self._undecryptable(d, rec, ts, reason, events)
            return
        try:
            ctype, content = prot.decrypt_typed(rec)
        except RecordDecryptError as exc:
            reason = str(exc)
            events.append(
                self._finding(
                    Severity.ERROR,
                    "dtls.decrypt.failed",
                    f"record epoch {rec.epoch} seq {rec.seq}: {reason}",
                    ts,
                    d,
                    epoch=rec.epoch,
                    seq=rec.seq,
                )
            )
            self._undecryptable(d, rec, ts, reason, events)
            return
        if ctype == CT_APPLICATION_DATA:
            dup = self._replay[d].seen(rec.epoch, rec.seq)
            events.append(ApplicationData(d, ts, content, rec, None, dup))
        elif ctype == CT_HANDSHAKE:
            self._handshake(d, content, ts, True, events)
        elif ctype == CT_ALERT:
            self._alert(d, rec, content, ts, True, events)
        elif ctype == CT_CHANGE_CIPHER_SPEC:
            self._ccs(d, rec, ts, events)
        else:
            events.append(
                self._finding(
                    Severity.WARNING,
                    "dtls.record.unknown_inner_type",
                    f"decrypted record carries unknown content type {ctype}",
                    ts,
                    d,
                )
            )

    def _undecryptable(
        self, d: Direction, rec: DtlsRecord, ts: float, reason: str, events: list[DtlsEvent]
    ) -> None:
        ct = rec.content_type
        if ct == CT_ALERT:
            events.append(Alert(d, ts, None, None, rec, True, reason))
        elif ct == CT_HANDSHAKE:
            events.append(HandshakeMessage(d, ts, None, None, None, False, True, reason))
        elif ct == CT_CHANGE_CIPHER_SPEC:
            events.append(ChangeCipherSpec(d, ts, rec))
        else:  # application data and CID records (their real type is hidden)
            events.append(ApplicationData(d, ts, None, rec, reason))

    def _check_cid(self, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]) -> None:
        p = self._hs
        expected = p.device_cid if d is self._client_dir else p.cloud_cid
        if expected is not None and rec.cid != expected:
            events.append(
                self._finding(
                    Severity.WARNING,
                    "dtls.cid.mismatch",
                    f"record CID {rec.cid.hex() if rec.cid else ''} differs from the "
                    f"negotiated {expected.hex()}",
                    ts,
                    d,
                )
            )

    def _master(self, p: _Params) -> bytes | None:
        if p.master is None and p.client_random is not None and self._lookup is not None:
            p.master = self._lookup(p.client_random)
        return p.master

    def _protection(
        self, d: Direction, epoch: int, ts: float, events: list[DtlsEvent]
    ) -> tuple[RecordProtection | None, str]:
        p = self._epochs[d].get(epoch)
        if p is None:
            # CCS not in the capture (or a resumed flow): use the newest parameters.
            p = self._hs
            if p.client_random is not None:
                self._epochs[d][epoch] = p
        if p.prot is None:
            if p.client_random is None or p.server_random is None or p.suite is None:
                return None, "no handshake or persisted session for this connection"
            if p.suite not in SUITES:
                return None, f"unsupported cipher suite 0x{p.suite:04X}"
            master = self._master(p)
            if master is None:
                reason = f"no key log entry for client random {p.client_random.hex()}"
                if not p.missing_reported:
                    p.missing_reported = True
                    events.append(
                        self._finding(
                            Severity.WARNING,
                            "dtls.decrypt.no_key",
                            reason,
                            ts,
                            d,
                            client_random=p.client_random.hex(),
                        )
                    )
                return None, reason
            kb: KeyBlock = key_block(master, p.client_random, p.server_random, p.suite)
            p.prot = (
                RecordProtection.for_client(kb, p.encrypt_then_mac),
                RecordProtection.for_server(kb, p.encrypt_then_mac),
            )
        return (p.prot[0] if d is self._client_dir else p.prot[1]), ""

    def _ccs(self, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]) -> None:
        events.append(ChangeCipherSpec(d, ts, rec))
        if self._hs.client_random is not None:
            self._epochs[d][rec.epoch + 1] = self._hs

    def _alert(
        self,
        d: Direction,
        rec: DtlsRecord,
        content: bytes,
        ts: float,
        encrypted: bool,
        events: list[DtlsEvent],
    ) -> None:
        if len(content) != 2:
            reason = f"alert of {len(content)} bytes (expected 2)"
            events.append(Alert(d, ts, None, None, rec, encrypted, reason))
            events.append(self._finding(Severity.WARNING, "dtls.alert.malformed", reason, ts, d))
            return
        events.append(Alert(d, ts, content[0], content[1], rec, encrypted))

    def _handshake(
        self, d: Direction, content: bytes, ts: float, encrypted: bool, events: list[DtlsEvent]
    ) -> None:
        frags, split_error = split_handshake_fragments(content)
        reasm = self._reasm[d]
        for frag in frags:
            try:
                raw = reasm.add(frag)
            except HandshakeError as exc:
                events.append(
                    self._finding(Severity.WARNING, "dtls.handshake.malformed", str(exc), ts, d)
                )
                continue
            if raw is None:
                continue
            msg: ParsedHandshake | None = None
            error: str | None = None
            try:
                msg = parse_handshake_body(raw.msg_type, raw.body, self._rpk(d, raw.msg_type))
            except HandshakeError as exc:
                error = f"{raw.name}: {exc}"
                events.append(
                    self._finding(Severity.WARNING, "dtls.handshake.malformed", error, ts, d)
                )
            events.append(
                HandshakeMessage(
                    d, ts, msg, raw.msg_type, raw.message_seq, raw.retransmission, encrypted, error
                )
            )
            if msg is not None and not raw.retransmission:
                self._track(d, msg, ts, events)
        if split_error is not None:
            events.append(
                self._finding(Severity.WARNING, "dtls.handshake.malformed", split_error, ts, d)
            )

    def _rpk(self, d: Direction, msg_type: int) -> bool | None:
        if msg_type != HT_CERTIFICATE or self.server_hello is None:
            return None
        ext = self.server_hello.ext
        types = (
            ext.client_certificate_types if d is self._client_dir else ext.server_certificate_types
        )
        if types is None:
            return False
        return types == [CERT_TYPE_RAW_PUBLIC_KEY]

    def _track(
        self, d: Direction, msg: ParsedHandshake, ts: float, events: list[DtlsEvent]
    ) -> None:
        if isinstance(msg, ClientHello):
            if d is not _D2C:
                events.append(
                    self._finding(
                        Severity.WARNING,
                        "dtls.handshake.roles",
                        "ClientHello sent cloud->device: treating the cloud side as the client",
                        ts,
                        d,
                    )
                )
            self._client_dir = d
            if self._hs.client_random != msg.random:
                self._hs = _Params()
                self.server_hello = None
                self.resumed = False
            if msg.cookie and self.cookie is not None and msg.cookie != self.cookie:
                events.append(
                    self._finding(
                        Severity.WARNING,
                        "dtls.handshake.cookie_mismatch",
                        "ClientHello cookie differs from the HelloVerifyRequest cookie",
                        ts,
                        d,
                    )
                )
            self.client_hello = msg
            p = self._hs
            p.client_random = msg.random
            p.cloud_cid = msg.ext.connection_id
        elif isinstance(msg, HelloVerifyRequest):
            self.cookie = msg.cookie
        elif isinstance(msg, ServerHello):
            self.server_hello = msg
            p = self._hs
            p.server_random = msg.random
            p.suite = msg.cipher_suite
            p.device_cid = msg.ext.connection_id
            ch = self.client_hello
            p.encrypt_then_mac = bool(
                msg.ext.encrypt_then_mac and ch is not None and ch.ext.encrypt_then_mac
            )
            p.extended_master_secret = msg.ext.extended_master_secret
            p.prot = None
            if msg.ext.connection_id is None or (ch is not None and ch.ext.connection_id is None):
                # CID only in use when both hellos carry the extension.
                p.device_cid = None
                p.cloud_cid = None
            if p.suite not in SUITES:
                events.append(
                    self._finding(
                        Severity.WARNING,
                        "dtls.suite.unsupported",
                        f"cipher suite 0x{p.suite:04X} cannot be decrypted",
                        ts,
                        d,
                    )
                )
        elif (
            isinstance(msg, Certificate)
            and d is self._client_dir
            and msg.raw_public_key is not None
        ):
            self.device_public_key = msg.raw_public_key
