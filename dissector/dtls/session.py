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
connection has no handshake on the wire (spec §6.5). An abbreviated handshake (session-ID
resumption: the ServerHello echoes the ClientHello's session ID, then the server's
ChangeCipherSpec and Finished come first) reuses the master secret of the session that
created the ID: from the key log (by the new client random) or from a :class:`SessionCache`
shared by the connections of one capture. When the ClientHello is not in the capture but
the ServerHello is, ``trial_secrets(server_random)`` candidates (key log entries, persisted
sessions) are tried on the first records. ``receive`` never raises on bad input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
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
TrialSecrets = Callable[[bytes], Iterable[tuple[bytes, bytes, str]]]
"""``server_random -> (client_random, master, source)`` candidates to try when the
ClientHello is not in the capture (a key log entry is found by the client random)."""
MAX_TRIAL_RECORDS = 3
"""Records of one session tried against every candidate secret before giving up."""

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
    (see ``error``); ``msg_type`` is None when the record could not be decrypted.
    ``raw`` is the reassembled message as one unfragmented handshake message (12-byte
    header with offset 0 and fragment length = length, then the body); ``b""`` when the
    record could not be decrypted."""

    direction: Direction
    ts: float
    msg: ParsedHandshake | None
    msg_type: int | None
    message_seq: int | None
    retransmission: bool = False
    encrypted: bool = False
    error: str | None = None
    raw: bytes = b""

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


# --------------------------------------------------------------------------- session cache


@dataclass(slots=True)
class CachedSession:
    """A session known by its session ID: what an abbreviated handshake resumes.

    ``owner`` labels the connection (or persisted session) that created it; ``device_id``
    (24 hex characters) may be filled in later by whoever learns the device's ID, so that
    a resumption can name the device before any Hello.
    """

    session_id: bytes
    master: bytes
    cipher_suite: int
    owner: str | None = None
    device_id: str | None = None


class SessionCache:
    """Session ID → master secret of the sessions of one capture (RFC 5246 §7.3 resumption).

    Share one cache between the :class:`DtlsConnection` objects of a capture: a full
    handshake whose master secret is known stores its session ID here, and a later
    abbreviated handshake that resumes the ID decrypts with it even when the key log has no
    line for its own client random. Bounded: the oldest entries go first.
    """

    __slots__ = ("_entries", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._entries: OrderedDict[bytes, CachedSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: bytes) -> CachedSession | None:
        """The entry for ``session_id`` (empty IDs are never cached)."""
        return self._entries.get(session_id) if session_id else None

    def put(self, entry: CachedSession) -> CachedSession:
        """Store ``entry`` and return the cached one (an existing entry with the same
        master secret is kept, with what it already knows)."""
        if not entry.session_id:
            return entry
        old = self._entries.get(entry.session_id)
        if old is not None and old.master == entry.master:
            return old
        self._entries[entry.session_id] = entry
        self._entries.move_to_end(entry.session_id)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)
        return entry

    def add_persisted(self, persisted: PersistedSession, owner: str | None = None) -> None:
        """Cache a persisted session's master under its session ID (if it has both)."""
        if persisted.session_id and persisted.master is not None:
            label = owner or f"persisted session ({persisted.layout})"
            self.put(
                CachedSession(persisted.session_id, persisted.master, persisted.ciphersuite, label)
            )


# --------------------------------------------------------------------------- state


class _Params:
    """Security parameters of one handshake (or persisted session) and their keys."""

    __slots__ = (
        "abbreviated",
        "client_random",
        "cloud_cid",
        "device_cid",
        "encrypt_then_mac",
        "extended_master_secret",
        "master",
        "missing_reported",
        "opened",
        "prot",
        "server_random",
        "session_id",
        "source",
        "suite",
        "trials",
    )

    def __init__(self) -> None:
        self.session_id = b""
        self.abbreviated = False
        self.source: str | None = None  # where the master secret came from
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
        self.opened = False  # a record opened with these keys (the secret is right)
        self.trials = 0  # records tried against candidate secrets (no ClientHello seen)


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


class _Recent:
    """The last records of one direction by (epoch, sequence number), to drop network
    duplicates: a byte-identical record with the same epoch and sequence number. (A DTLS
    retransmission always gets a new sequence number, so it is never dropped here.)"""

    __slots__ = ("_seen",)

    LIMIT = 256

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[int, int], int] = OrderedDict()

    def duplicate(self, rec: DtlsRecord) -> bool:
        key = (rec.epoch, rec.seq)
        digest = hash((rec.header, rec.fragment))
        seen = self._seen
        if seen.get(key) == digest:
            return True
        seen[key] = digest
        if len(seen) > self.LIMIT:
            seen.popitem(last=False)
        return False


_D2C = Direction.DEVICE_TO_CLOUD
_C2D = Direction.CLOUD_TO_DEVICE


class DtlsConnection:
    """Follows one DTLS flow (both directions) and decrypts what it can.

    ``secrets_lookup(client_random)`` returns the 48-byte master secret or None.
    ``session`` labels the findings. Public attributes after the handshake:
    :attr:`client_random`, :attr:`server_random`, :attr:`cipher_suite`,
    :attr:`device_cid`, :attr:`cookie`, :attr:`device_public_key`, :attr:`device_id`
    (from a type-254 trailer), :attr:`resumed` (started from a persisted session),
    :attr:`abbreviated` (session-ID resumption on the wire), :attr:`session_id`,
    :attr:`key_source` and :attr:`resumed_entry`. ``session_cache`` (shared by the
    connections of a capture) lets an abbreviated handshake decrypt with the master secret
    of the session that created its session ID.
    """

    def __init__(
        self,
        secrets_lookup: SecretsLookup | None = None,
        *,
        session: str | None = None,
        default_cid_len: int = DEFAULT_CID_LEN,
        session_cache: SessionCache | None = None,
        trial_secrets: TrialSecrets | None = None,
        trial_persisted: Callable[[], Iterable[PersistedSession]] | None = None,
    ) -> None:
        self._lookup = secrets_lookup
        self._trial_secrets = trial_secrets
        self._trial_persisted = trial_persisted
        self.session = session
        self.session_cache = session_cache
        self._default_cid_len = default_cid_len
        self._hs = _Params()
        self._epochs: dict[Direction, dict[int, _Params]] = {_D2C: {}, _C2D: {}}
        self._reasm = {_D2C: HandshakeReassembler(), _C2D: HandshakeReassembler()}
        self._replay = {_D2C: _Replay(), _C2D: _Replay()}
        self._recent = {_D2C: _Recent(), _C2D: _Recent()}
        self._client_dir = _D2C
        self._last_out: tuple[int, int] | None = None
        self._moved_reported = False
        self.cookie: bytes | None = None
        self.device_public_key: bytes | None = None
        self.device_id: bytes | None = None
        self.resumed = False
        self.client_hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.cache_entry: CachedSession | None = None
        self.resumed_entry: CachedSession | None = None

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

    @property
    def session_id(self) -> bytes:
        """The session ID the ServerHello (or the persisted session) gave, ``b""`` if none."""
        return self._hs.session_id

    @property
    def abbreviated(self) -> bool:
        """True when the ServerHello resumed the ClientHello's session ID (no key exchange,
        no certificates: the master secret is the one of the session that created the ID)."""
        return self._hs.abbreviated

    @property
    def key_source(self) -> str | None:
        """Where the master secret came from: ``"key log"``, ``"persisted session"`` or
        ``"session ID resumption of <owner>"``; None while it is unknown."""
        return self._hs.source

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
        p.session_id = persisted.session_id
        p.source = "persisted session" if persisted.master is not None else None
        self._hs = p
        self._client_dir = _D2C
        self._epochs[_D2C][max(persisted.out_epoch, 1)] = p
        self._epochs[_C2D][max(persisted.in_epoch, 1)] = p
        self.resumed = True
        self._remember(p)

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
            session_id=p.session_id,
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

    def _duplicate(self, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]) -> bool:
        """A byte-identical repeat of a recent record (a duplicated datagram) is processed
        once. Application data (and CID records, whose type is hidden) still yield an event
        marked duplicate; the rest nothing. Decrypted application data skips this (the
        replay window flags it, cheaper on the hot path)."""
        if not self._recent[d].duplicate(rec):
            return False
        if rec.content_type in (CT_APPLICATION_DATA, CT_TLS12_CID):
            events.append(ApplicationData(d, ts, None, rec, "duplicate record", True))
        return True

    def _record(self, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]) -> None:
        app = rec.content_type in (CT_APPLICATION_DATA, CT_TLS12_CID) and rec.epoch > 0
        if not app and self._duplicate(d, rec, ts, events):
            return
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
        # Application and CID records are checked for duplicates here, not in _record:
        # decrypted application data has the (cheaper) replay window.
        app = rec.content_type in (CT_APPLICATION_DATA, CT_TLS12_CID)
        hs = self._hs
        if (
            hs.client_random is None
            and hs.server_random is None
            and self._trial_persisted is not None
            and hs.trials < MAX_TRIAL_RECORDS
        ):
            self._trial_resume(hs, d, rec, ts, events)
        if (
            hs.client_random is None
            and hs.server_random is not None
            and self._trial_secrets is not None
            and hs.trials < MAX_TRIAL_RECORDS
            and rec.epoch not in self._epochs[d]
        ):
            self._trial_client_random(hs, d, rec, ts, events)
        prot, reason, params = self._protection(d, rec.epoch, ts, events)
        if prot is None:
            if not (app and self._duplicate(d, rec, ts, events)):
                self._undecryptable(d, rec, ts, reason, events)
            return
        try:
            ctype, content = prot.decrypt_typed(rec)
        except RecordDecryptError as exc:
            if app and self._duplicate(d, rec, ts, events):
                return
            reason = str(exc)
            message = f"record epoch {rec.epoch} seq {rec.seq}: {reason}"
            details: dict[str, object] = {"epoch": rec.epoch, "seq": rec.seq}
            if not params.opened and params.client_random is not None:
                # Nothing of this session has opened yet: the secret itself may be wrong.
                cr = params.client_random.hex()
                message += (
                    f" (no record has opened with the master secret for client random {cr}"
                    f" from the {params.source or 'key log'}: if none does, that secret is"
                    " wrong)"
                )
                details["client_random"] = cr
            events.append(
                self._finding(Severity.ERROR, "dtls.decrypt.failed", message, ts, d, **details)
            )
            self._undecryptable(d, rec, ts, reason, events)
            return
        params.opened = True
        if ctype == CT_APPLICATION_DATA:
            dup = self._replay[d].seen(rec.epoch, rec.seq)
            events.append(ApplicationData(d, ts, content, rec, None, dup))
        elif rec.content_type == CT_TLS12_CID and self._duplicate(d, rec, ts, events):
            return  # (other record types were checked before decryption)
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

    def _trial_client_random(
        self, p: _Params, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]
    ) -> None:
        """The ClientHello is not in the capture but the ServerHello is: find the secret
        (and the client random) whose keys open ``rec`` among the candidates."""
        p.trials += 1
        assert self._trial_secrets is not None and p.server_random is not None
        if p.suite not in SUITES:
            return
        client = d is self._client_dir
        for client_random, master, source in self._trial_secrets(p.server_random):
            if len(client_random) != 32 or len(master) != 48:
                continue
            kb = key_block(master, client_random, p.server_random, p.suite)
            pair = (
                RecordProtection.for_client(kb, p.encrypt_then_mac),
                RecordProtection.for_server(kb, p.encrypt_then_mac),
            )
            try:
                (pair[0] if client else pair[1]).decrypt_typed(rec)
            except RecordDecryptError:
                continue
            p.client_random, p.master, p.prot, p.source = client_random, master, pair, source
            self._remember(p)
            events.append(
                self._finding(
                    Severity.INFO,
                    "keylog.trial_match",
                    f"the ClientHello is not in the capture: the {source} entry for client "
                    f"random {client_random.hex()} opens the records (found by trial "
                    "decryption with the ServerHello's random)",
                    ts,
                    d,
                    client_random=client_random.hex(),
                )
            )
            return

    def _trial_resume(
        self, p: _Params, d: Direction, rec: DtlsRecord, ts: float, events: list[DtlsEvent]
    ) -> None:
        """Neither hello is in the capture (it starts inside the handshake, after the
        ServerHello): the persisted session whose keys open ``rec`` is this session."""
        p.trials += 1
        assert self._trial_persisted is not None
        client = d is self._client_dir
        for persisted in self._trial_persisted():
            pair = persisted_protection(persisted)
            if pair is None:
                continue
            try:
                (pair[0] if client else pair[1]).decrypt_typed(rec)
            except (RecordDecryptError, ValueError):
                continue
            p.client_random, p.server_random = persisted.client_random, persisted.server_random
            p.suite, p.master, p.prot = persisted.ciphersuite, persisted.master, pair
            p.encrypt_then_mac, p.device_cid = persisted.encrypt_then_mac, persisted.cid
            p.session_id, p.source = persisted.session_id, "persisted session"
            self._remember(p)
            events.append(
                self._finding(
                    Severity.INFO,
                    "dtls.persisted_match",
                    "the capture starts inside the handshake (no ClientHello or ServerHello):"
                    f" the persisted session ({persisted.layout}) opens its records",
                    ts,
                    d,
                    client_random=persisted.client_random.hex(),
                )
            )
            return

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
        if p.master is not None or p.client_random is None:
            return p.master
        if self._lookup is not None:
            p.master = self._lookup(p.client_random)
            if p.master is not None:
                p.source = "key log"
        if p.master is None and p.abbreviated and self.session_cache is not None:
            entry = self.session_cache.get(p.session_id)
            if entry is not None:
                p.master = entry.master
                p.source = f"session ID resumption of {entry.owner or 'an earlier session'}"
        if p.master is not None:
            self._remember(p)
        return p.master

    def _remember(self, p: _Params) -> None:
        """Put a session with a known master secret in the session cache."""
        if self.session_cache is None or p.master is None or not p.session_id:
            return
        if p is not self._hs:
            return
        entry = CachedSession(p.session_id, p.master, p.suite or 0, self.session)
        self.cache_entry = self.session_cache.put(entry)

    def _protection(
        self, d: Direction, epoch: int, ts: float, events: list[DtlsEvent]
    ) -> tuple[RecordProtection | None, str, _Params]:
        p = self._epochs[d].get(epoch)
        if p is None:
            # CCS not in the capture (or a resumed flow): use the newest parameters.
            p = self._hs
            if p.client_random is not None:
                self._epochs[d][epoch] = p
        if p.prot is None:
            if p.client_random is None or p.server_random is None or p.suite is None:
                if p.server_random is not None:
                    reason = (
                        "the ClientHello is not in the capture and no key log entry or "
                        "persisted session opens the records with the ServerHello's random"
                    )
                elif p.client_random is not None:
                    reason = (
                        "the ServerHello is not in the capture: the keys derive from both "
                        "hello randoms"
                    )
                else:
                    reason = "no handshake or persisted session for this connection"
                return None, reason, p
            if p.suite not in SUITES:
                return None, f"unsupported cipher suite 0x{p.suite:04X}", p
            master = self._master(p)
            if master is None:
                reason = f"no key log entry for client random {p.client_random.hex()}"
                if p.abbreviated:
                    reason += (
                        f" (abbreviated handshake resuming session ID {p.session_id.hex()}: "
                        "the key log entry of the session that created it would also do)"
                    )
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
                return None, reason, p
            kb: KeyBlock = key_block(master, p.client_random, p.server_random, p.suite)
            p.prot = (
                RecordProtection.for_client(kb, p.encrypt_then_mac),
                RecordProtection.for_server(kb, p.encrypt_then_mac),
            )
        return (p.prot[0] if d is self._client_dir else p.prot[1]), "", p

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
            length = len(raw.body).to_bytes(3, "big")
            header = bytes((raw.msg_type,)) + length + raw.message_seq.to_bytes(2, "big") + bytes(3)
            events.append(
                HandshakeMessage(
                    d,
                    ts,
                    msg,
                    raw.msg_type,
                    raw.message_seq,
                    raw.retransmission,
                    encrypted,
                    error,
                    header + length + raw.body,
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
            ch = self.client_hello
            p = self._hs
            if p.server_random != msg.random:
                p.master = None  # a new ServerHello: a new (or resumed) master secret
                p.source = None
            p.server_random = msg.random
            p.suite = msg.cipher_suite
            p.session_id = msg.session_id
            p.abbreviated = bool(ch and ch.session_id and ch.session_id == msg.session_id)
            self.resumed_entry = None
            if p.abbreviated and self.session_cache is not None:
                self.resumed_entry = self.session_cache.get(msg.session_id)
            p.device_cid = msg.ext.connection_id
            # RFC 7366: a server echoes encrypt_then_mac only when the client offered it, so
            # the ServerHello alone decides when the ClientHello is not in the capture.
            p.encrypt_then_mac = bool(
                msg.ext.encrypt_then_mac and (ch is None or ch.ext.encrypt_then_mac)
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
        elif isinstance(msg, Certificate) and d is self._client_dir:
            if msg.raw_public_key is not None:
                self.device_public_key = msg.raw_public_key
            elif msg.certificates:
                self.device_public_key = _certificate_public_key(msg.certificates[0])


def persisted_protection(
    persisted: PersistedSession,
) -> tuple[RecordProtection, RecordProtection] | None:
    """The (client, server) record protection a persisted session's keys give; None when it
    has no master secret or its cipher suite is not supported."""
    if persisted.master is None or persisted.ciphersuite not in SUITES:
        return None
    kb = key_block(
        persisted.master, persisted.client_random, persisted.server_random, persisted.ciphersuite
    )
    etm = persisted.encrypt_then_mac
    return RecordProtection.for_client(kb, etm), RecordProtection.for_server(kb, etm)


def _certificate_public_key(der: bytes) -> bytes | None:
    """The SubjectPublicKeyInfo (DER) of an X.509 certificate (peers other than Particle
    devices authenticate with certificates instead of raw public keys); None if unparsable."""
    from cryptography import x509  # only here: x509 costs ~30 ms to import
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        key = x509.load_der_x509_certificate(der).public_key()
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # a certificate whose key algorithm cryptography does not know (or garbled)
        return None
