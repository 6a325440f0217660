"""The sans-IO core of the Particle TCP protocol (Core, Photon, P1; port 5683).

:class:`TcpConnection` is fed ``(direction, bytes, timestamp)`` from any transport
adapter (pcap reassembly, live capture, a test) and returns events. It follows the
handshake (nonce 40 → identity 256 → session key 384), recovers the session key with
whatever the :class:`~dissector.keys.KeyRing` holds, decrypts frames with Particle's
IV rule and hands the CoAP to the Particle exchange tracker.

Which key does what (the cryptographic truth the findings keep visible):

* server private key → unwraps the identity message only (nonce, device ID, device
  public key); it can never decrypt frames;
* device private key → unwraps the session key, hence every frame in both directions;
* a session key log entry (``PARTICLE_TCP nonce creds``) → decrypts the frames without
  any RSA key, also for captures that start mid-session (found by trial decryption).

A connection whose SYN was not seen is judged by its first bytes
(:mod:`dissector.protocol.start_probe`): handshake or mid-session. The handshake's
events wait until the device has sent its first frame, so that every handshake record
carries the device ID whichever key revealed it (:attr:`TcpConnection.holding_since`
tells the caller how far back the held events go). When the nonce was not captured
whole, the key log entry (keyed by the nonce) is found by trial decryption of the first
frames. In a mid-session capture, a direction's frames wait while the other direction is
still finding its frame boundaries, so that the tracker sees both in capture order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import rsa

from dissector.coap import CoapError, CoapMessage
from dissector.coap import decode as coap_decode
from dissector.crypto import (
    LEGACY_IDENTITY_PLAINTEXT_LEN,
    CbcDirection,
    IdentityPlaintext,
    RsaDecryptError,
    SessionCredentials,
    parse_credentials,
    parse_identity_plaintext,
    rsa_decrypt_pkcs1v15,
    trial_decrypt_score,
    verify_server_signature,
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
from dissector.protocol.framing import FrameStream, StreamNote, Unit
from dissector.protocol.session import CheckStatus, SessionInfo
from dissector.protocol.start_probe import StartProbe

if TYPE_CHECKING:
    from dissector.keys import KeyEntry, KeyRing

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

NONCE_LEN = 40
IDENTITY_LEN = 256
SESSION_KEY_LEN = 384
#: Frames held per direction while the session key is still being looked for (or while
#: the other direction resynchronises).
MAX_HELD = 64

_CLOUD_BLOBS = [("nonce", NONCE_LEN), ("session_key", SESSION_KEY_LEN)]
_DEVICE_BLOBS = [("identity", IDENTITY_LEN)]
#: Layouts a SYN-less stream may start with: the whole handshake, or (cloud) the
#: session key alone when the capture began just after the nonce.
_START_LAYOUTS = {
    Direction.DEVICE_TO_CLOUD: [_DEVICE_BLOBS],
    Direction.CLOUD_TO_DEVICE: [_CLOUD_BLOBS, [("session_key", SESSION_KEY_LEN)]],
}


@dataclass(slots=True)
class _Held:
    """A frame waiting for the session key (in arrival order)."""

    seq: int
    direction: Direction
    unit: Unit


@dataclass(slots=True)
class _Side:
    """Per-direction decryption state."""

    stream: FrameStream
    cbc: CbcDirection | None = None
    #: First ciphertext block of the previous frame (the next IV), once known.
    prev_block: bytes | None = None
    #: True while the next frame still uses the credential IV (handshake seen).
    at_start: bool = False
    frames: int = 0
    held: list[_Held] = field(default_factory=list)


class TcpConnection:
    """One Particle TCP session, from the first byte each way to the close.

    ``handshake_expected`` is True when the transport saw the connection start (SYN),
    False when it knows the capture starts mid-session, None when unsure (then the
    streams are framed by resynchronisation and treated as mid-session).
    """

    def __init__(
        self,
        session_id: str,
        keyring: KeyRing,
        *,
        handshake_expected: bool | None = True,
    ) -> None:
        self.session_id = session_id
        self.keyring = keyring
        self.info = SessionInfo(id=session_id, transport="tcp")
        synced = handshake_expected is not None
        with_handshake = bool(handshake_expected)
        self._sides = {
            D2C: _Side(FrameStream(_DEVICE_BLOBS if with_handshake else [], synced=synced)),
            C2D: _Side(FrameStream(_CLOUD_BLOBS if with_handshake else [], synced=synced)),
        }
        self.info.handshake_seen = with_handshake
        if not with_handshake:
            self.info.outcome = "mid-session"
            for key in self.info.checks:
                if key not in ("device_hello", "cloud_hello"):
                    self.info.checks[key].set(
                        CheckStatus.NOT_SEEN, "capture starts after the handshake"
                    )
        self.tracker = ExchangeTracker()
        self._creds: SessionCredentials | None = None
        self._nonce: bytes | None = None
        self._identity_public: bytes | None = None
        self._keys_settled = False  # True once no more keys can turn up
        self._missing_reported = False
        self._mid_session = not with_handshake
        #: The session key message was seen but not the nonce (key log entries are found
        #: by it): the directions whose first frame the key log entries were tried on.
        self._trial_first: set[Direction] | None = None
        self._nonce_before_capture = False  # SYN-less start judged at the session key
        #: Frames held so that the request tracker sees both directions in capture order
        #: while the other direction is still finding its frame boundaries (resync).
        self._order_held = False
        self._held_seq = 0
        self._closed: set[Direction] = set()
        self._ended = False
        self._last_ts = 0.0
        if self._mid_session and not self.keyring.tcp_sessions():
            self._keys_settled = True
        #: No SYN seen: the first bytes wait here until the start is judged.
        self._probe = StartProbe(_START_LAYOUTS) if handshake_expected is None else None
        #: Events of the handshake, held until the device ID can be known (see _held).
        self._hold: list[Event] | None = [] if with_handshake else None

    # -- public sans-IO interface ------------------------------------------------------

    @property
    def device_id(self) -> str | None:
        return self.info.device_id

    @property
    def holding_since(self) -> float | None:
        """Timestamp of the oldest message not yet emitted (waiting for keys or framing)."""
        if self._probe is not None:
            return self._probe.since
        if self._hold:
            stamps = [t for t in (getattr(e, "ts", None) for e in self._hold) if t is not None]
            if stamps:
                return min(stamps)
        d2c = self._sides[D2C]
        c2d = self._sides[C2D]
        if not d2c.held and not c2d.held and d2c.stream.synced and c2d.stream.synced:
            return None
        stamps = [h.unit.ts for side in self._sides.values() for h in side.held[:1]]
        for side in self._sides.values():
            if not side.stream.synced:
                pending = side.stream.pending_since
                if pending is not None:
                    stamps.append(pending)
        return min(stamps) if stamps else None

    @property
    def closed_both_ways(self) -> bool:
        """True once both directions were closed (FIN each way)."""
        return len(self._closed) == 2

    def receive_data(self, direction: Direction, data: bytes, ts: float) -> list[Event]:
        """Feed stream bytes seen in ``direction`` at ``ts``."""
        self._last_ts = ts
        info = self.info
        if info.end is None or ts > info.end or info.start is None or ts < info.start:
            info.touch(ts)
        if self._probe is not None:
            self._probe.add(direction, data, ts)
            return self._judge_start(final=False)
        side = self._sides[direction]
        units, notes = side.stream.feed(data, ts)
        if notes or self._hold is not None:
            events = self._handle(direction, units, notes, ts)
            if self._order_held:
                events += self._order_release()
            return events if self._hold is None else self._held(events)
        events = []
        # The other direction still resynchronising (mid-session start): frames may wait.
        ordered = self._order_held or not self._sides[direction.reverse].stream.synced
        for unit in units:
            if unit.kind != "frame":
                events += self._handle(direction, [unit], notes, ts)
            elif side.frames and self._creds is not None:
                if ordered and self._order_hold(direction, unit, events):
                    continue
                self._frame_into(direction, side, unit, events)  # the steady state
            else:
                events += self._on_frame(direction, unit)
        if self._order_held:
            events += self._order_release()
        return events

    def receive_gap(self, direction: Direction, nbytes: int, ts: float) -> list[Event]:
        """Tell the connection that ``nbytes`` of the stream were never captured."""
        self._last_ts = ts
        if self._probe is not None:
            self._probe.add_gap(direction, nbytes, ts)
            return self._judge_start(final=True)
        events: list[Event] = [
            self._finding(
                Severity.WARNING,
                "tcp.gap",
                f"{nbytes} bytes of the {direction.value} stream were not captured",
                ts,
                direction,
                nbytes=nbytes,
            )
        ]
        side = self._sides[direction]
        self.tracker.skip(direction)
        units, notes = side.stream.gap(nbytes, ts)
        events += self._handle(direction, units, notes, ts)
        if self._order_held:
            events += self._order_release()
        if self._hold is not None:
            events = self._held(events)
        if not side.stream.synced and not side.stream.in_handshake:
            # Whole frames were lost: the next frame's IV (the first block of the frame
            # before it) is unknown, as at a mid-session start.
            side.prev_block = None
            side.at_start = False
            if side.cbc is not None:
                side.cbc.iv = None
        return events

    def receive_close(self, direction: Direction | None, ts: float, reason: str) -> list[Event]:
        """The transport saw ``direction`` close (FIN) or the connection reset (RST)."""
        self._last_ts = ts
        self.info.touch(ts)
        if reason == "rst":
            self.info.closed_by = f"reset ({direction.value})" if direction else "reset"
        elif direction is not None and self.info.closed_by is None:
            sender = "device" if direction is D2C else "cloud"
            self.info.closed_by = sender
        if direction is not None:
            self._closed.add(direction)
        return []

    def release_hold(self, ts: float) -> list[Event]:
        """Stop waiting and return every held event now, as far as can be decided without
        more bytes: the start is judged, held frames are decrypted with what is known (or
        shown encrypted), order holds are given up. For a caller that bounds how long one
        quiet connection may hold back the output of others."""
        events: list[Event] = []
        if self._probe is not None:
            events += self._judge_start(final=True)
        held = any(side.held for side in self._sides.values())
        if held and self._creds is None and not self._keys_settled:
            self._keys_settled = True
            self._trial_first = None
            events += self._settle_without_key(ts, final=True)
        if self._order_held or any(side.held for side in self._sides.values()):
            self._order_held = False
            events += self._release_held(keep_order=False)
        if self._hold is not None:
            events = self._release_hold(events)
        return events

    def end(self, ts: float | None = None) -> list[Event]:
        """End of input: flush everything buffered, judge the handshake, close the session."""
        if self._ended:
            return []
        self._ended = True
        ts = self._last_ts if ts is None else ts
        events: list[Event] = self._judge_start(final=True) if self._probe else []
        for direction, side in self._sides.items():
            units, notes = side.stream.finish(ts)
            events += self._handle(direction, units, notes, ts)
        if not self._keys_settled:
            self._keys_settled = True
            events += self._settle_without_key(ts, final=True)
        if self._order_held:
            self._order_held = False
            events += self._release_held()
        events += self._judge_handshake(ts)
        if self.info.outcome == "open":
            self.info.outcome = "established" if self._creds else "closed"
        if self._hold is not None:
            events = self._release_hold(events)
        return events

    # -- the handshake's records wait for the device ID ----------------------------------

    def _held(self, events: list[Event]) -> list[Event]:
        """Keep the handshake's events until the device has spoken (its identity, the
        device key that opens the session key, or its Hello may reveal the device ID), so
        that every handshake record carries the ID whenever any key revealed it."""
        hold = self._hold
        assert hold is not None
        hold += events
        if self._sides[D2C].frames or len(hold) > MAX_HELD:
            return self._release_hold([])
        return []

    def _release_hold(self, more: list[Event]) -> list[Event]:
        events = self._hold or []
        self._hold = None
        events += more
        device_id = self.info.device_id
        if device_id is not None:
            for event in events:
                if isinstance(event, HandshakeBlob | MessageEvent) and event.device_id is None:
                    event.device_id = device_id
        return events

    # -- start of a SYN-less connection -------------------------------------------------

    def _judge_start(self, *, final: bool) -> list[Event]:
        """Once the probe can tell, set the streams up and replay what it buffered."""
        probe = self._probe
        assert probe is not None
        layout = probe.decide(final=final)
        if layout is None:
            return []
        self._probe = None
        events: list[Event] = []
        if layout.handshake:
            note = self._enter_handshake(layout.blobs, probe.feeds[0].ts)
            # Held with the handshake's records, so that it comes out before them.
            assert self._hold is not None
            self._hold.append(note)
        for feed in probe.feeds:
            if feed.data is None:
                events += self.receive_gap(feed.direction, feed.nbytes, feed.ts)
            else:
                events += self.receive_data(feed.direction, feed.data, feed.ts)
        return events

    def _enter_handshake(self, blobs: dict[Direction, list[tuple[str, int]]], ts: float) -> Event:
        """The SYN-less streams start at the handshake: frame and judge them as such."""
        for direction, side in self._sides.items():
            side.stream = FrameStream(blobs.get(direction, []), synced=True)
        self._mid_session = False
        self._hold = []
        info = self.info
        if "nonce" not in [name for name, _ in blobs.get(C2D, [])]:
            # The capture began after the nonce: it was sent, just not captured.
            self._nonce_before_capture = True
        info.handshake_seen = True
        info.outcome = "open"
        for check in info.checks.values():
            if check.status is CheckStatus.NOT_SEEN:
                check.set(CheckStatus.NOT_SEEN)
        if self._creds is None:
            self._keys_settled = False
        steps = " + ".join(
            f"{name} ({size} bytes)" for d in (C2D, D2C) for name, size in blobs.get(d, [])
        )
        return self._finding(
            Severity.INFO,
            "tcp.handshake_without_syn",
            "the connection's SYN was not captured, but both streams start at the handshake "
            f"({steps}, judged by the blob sizes and the frame headers after them): decoded "
            "as a full session",
            ts,
            None,
        )

    # -- unit dispatch -------------------------------------------------------------------

    def _handle(
        self, direction: Direction, units: list[Unit], notes: list[StreamNote], ts: float
    ) -> list[Event]:
        events: list[Event] = []
        for note in notes:
            severity = Severity.INFO if note.code == "resync.skipped" else Severity.WARNING
            events.append(
                self._finding(
                    severity,
                    f"tcp.{note.code}",
                    note.message,
                    ts,
                    direction,
                    offset=note.offset,
                    nbytes=note.nbytes,
                )
            )
        for unit in units:
            if unit.kind == "frame":
                events += self._on_frame(direction, unit)
            elif unit.kind == "nonce":
                events += self._on_nonce(unit)
            elif unit.kind == "identity":
                events += self._on_identity(unit)
            elif unit.kind == "session_key":
                events += self._on_session_key(unit)
        return events

    # -- handshake -----------------------------------------------------------------------

    def _blob_damaged(self, unit: Unit, label: str) -> FindingEvent | None:
        if not unit.lost:
            return None
        return self._finding(
            Severity.ERROR,
            f"handshake.{unit.kind}.incomplete",
            f"the {label} is incomplete: {unit.lost} of {unit.declared} bytes are missing "
            "from the capture",
            unit.ts,
            D2C if unit.kind == "identity" else C2D,
            missing=unit.lost,
        )

    def _on_nonce(self, unit: Unit) -> list[Event]:
        events: list[Event] = []
        info: dict[str, Any] = {"length": len(unit.payload)}
        checks = self.info.checks
        damaged = self._blob_damaged(unit, "nonce")
        if damaged:
            events.append(damaged)
            checks["nonce"].set(CheckStatus.FAILED, "nonce incomplete in the capture")
        else:
            self._nonce = unit.payload
            checks["nonce"].set(CheckStatus.PASSED)
            creds = self.keyring.tcp_session(unit.payload)
            if creds is not None:
                self._install(parse_credentials(creds), "key log")
                info["key_log_entry"] = True
        events.insert(0, self._blob(C2D, unit, "nonce", info))
        return events

    def _on_identity(self, unit: Unit) -> list[Event]:
        events: list[Event] = []
        info: dict[str, Any] = {"length": len(unit.payload)}
        checks = self.info.checks
        damaged = self._blob_damaged(unit, "identity message")
        if damaged:
            events.append(damaged)
            checks["identity_decrypted"].set(CheckStatus.FAILED, "identity incomplete")
            events.insert(0, self._blob(D2C, unit, "identity", info))
            return events
        servers = _server_private_entries(self.keyring)
        if not servers:
            checks["identity_decrypted"].set(
                CheckStatus.NOT_CHECKABLE, "no server private key given"
            )
            for key in ("nonce_echo", "device_id", "device_key_match"):
                checks[key].set(CheckStatus.NOT_CHECKABLE, "needs the server private key")
            info["decrypted"] = False
            events.insert(0, self._blob(D2C, unit, "identity", info))
            return events
        identity = None
        reasons: list[str] = []
        for server in servers:
            try:
                plaintext = rsa_decrypt_pkcs1v15(_rsa_private(server), unit.payload)
                identity = _parse_identity(plaintext, self._nonce)
            except (RsaDecryptError, ValueError) as exc:
                reasons.append(f"{_label(server)}: {exc}")
                continue
            info["decrypted_with"] = _label(server)
            break
        if identity is None:
            info["decrypted"] = False
            checks["identity_decrypted"].set(
                CheckStatus.FAILED,
                "the device encrypted its identity to a server key other than the one(s) given",
            )
            for key in ("nonce_echo", "device_id", "device_key_match"):
                checks[key].set(CheckStatus.NOT_CHECKABLE, "identity not decrypted")
            events.append(
                self._finding(
                    Severity.ERROR,
                    "handshake.identity.wrong_server_key",
                    "the identity message does not decrypt with the server private key(s) "
                    "given: the device encrypted to a different server public key "
                    f"({'; '.join(reasons)})",
                    unit.ts,
                    D2C,
                )
            )
            events.insert(0, self._blob(D2C, unit, "identity", info))
            return events
        info["decrypted"] = True
        checks["identity_decrypted"].set(CheckStatus.PASSED, f"with {info['decrypted_with']}")
        device_id = identity.device_id.hex()
        info["device_id"] = device_id
        info["legacy"] = identity.legacy
        if identity.public_key_der is not None and len(identity.public_key_der) != 162:
            info["plaintext_length"] = len(plaintext)
            events.append(
                self._finding(
                    Severity.INFO,
                    "handshake.identity.unusual_length",
                    f"the identity plaintext is {len(plaintext)} bytes, not 214 (or 52): read "
                    "as the reference cloud does, bytes 52 onwards as the device public key",
                    unit.ts,
                    D2C,
                )
            )
        self._set_device_id(device_id, "identity message")
        checks["device_id"].set(CheckStatus.PASSED, device_id)
        if self._nonce is None:
            checks["nonce_echo"].set(CheckStatus.NOT_CHECKABLE, "nonce not captured")
        elif identity.nonce == self._nonce:
            info["nonce_echo_ok"] = True
            checks["nonce_echo"].set(CheckStatus.PASSED)
        else:
            info["nonce_echo_ok"] = False
            checks["nonce_echo"].set(
                CheckStatus.FAILED, "the nonce inside the identity differs from the cloud's"
            )
            events.append(
                self._finding(
                    Severity.ERROR,
                    "handshake.identity.nonce_mismatch",
                    "the device echoed a different nonce than the cloud sent (a replayed or "
                    "misrouted identity message); the reference cloud closes here",
                    unit.ts,
                    D2C,
                )
            )
        if identity.public_key_der is not None:
            self._identity_public = identity.public_key_der
            info["device_public_key_fingerprint"] = self.keyring.fingerprint(
                identity.public_key_der
            )
            on_file = {e.fingerprint for e in self.keyring.entries if e.device_id == device_id}
            sent = info["device_public_key_fingerprint"]
            if not on_file:
                checks["device_key_match"].set(
                    CheckStatus.NOT_CHECKABLE, "no key on file for this device ID"
                )
            elif sent in on_file:
                checks["device_key_match"].set(CheckStatus.PASSED)
            else:
                checks["device_key_match"].set(
                    CheckStatus.FAILED,
                    "the public key the device sent differs from the key on file for it",
                )
                events.append(
                    self._finding(
                        Severity.WARNING,
                        "handshake.identity.key_mismatch",
                        f"device {device_id} sent a public key that differs from the key on "
                        "file for it (Brewskey-based clouds reject such a device)",
                        unit.ts,
                        D2C,
                    )
                )
        else:
            checks["device_key_match"].set(
                CheckStatus.NOT_CHECKABLE, "legacy 52-byte identity carries no public key"
            )
        events.insert(0, self._blob(D2C, unit, "identity", info, plaintext))
        return events

    def _on_session_key(self, unit: Unit) -> list[Event]:
        events: list[Event] = []
        info: dict[str, Any] = {"length": len(unit.payload)}
        checks = self.info.checks
        damaged = self._blob_damaged(unit, "session key message")
        if damaged or len(unit.payload) < SESSION_KEY_LEN:
            if damaged:
                events.append(damaged)
            checks["session_key"].set(CheckStatus.FAILED, "session key message incomplete")
            checks["signature"].set(CheckStatus.NOT_CHECKABLE, "session key message incomplete")
            events.insert(0, self._blob(C2D, unit, "session_key", info))
            return events + self._after_session_key(unit.ts)
        ciphertext, signature = unit.payload[:128], unit.payload[128:]
        creds_bytes: bytes | None = self._creds.raw if self._creds else None
        candidates = _device_candidates(
            self.keyring, self.info.device_id, self._identity_public, len(ciphertext)
        )
        tried: list[str] = []
        # Keys on file for *this* device (by ID or by the public key it sent): if those
        # fail, the key is wrong; if only other devices' keys fail, it is just missing.
        own = [
            e
            for e in candidates
            if (self.info.device_id is not None and e.device_id == self.info.device_id)
            or (
                self._identity_public is not None
                and e.fingerprint == self.keyring.fingerprint(self._identity_public)
            )
        ]
        for device_key in candidates:
            try:
                plaintext = rsa_decrypt_pkcs1v15(_rsa_private(device_key), ciphertext)
            except RsaDecryptError as exc:
                tried.append(f"{_label(device_key)}: {exc}")
                continue
            if len(plaintext) != 40:
                tried.append(f"{_label(device_key)}: plaintext is {len(plaintext)} bytes, not 40")
                continue
            info["decrypted_with"] = _label(device_key)
            if device_key.device_id and not self.info.device_id:
                self._set_device_id(device_key.device_id, "device key that decrypts the session")
            if creds_bytes is not None and creds_bytes != plaintext:
                events.append(
                    self._finding(
                        Severity.WARNING,
                        "keylog.mismatch",
                        "the key log entry for this nonce differs from the session key the "
                        "device key unwraps; using the unwrapped one",
                        unit.ts,
                        C2D,
                    )
                )
            creds_bytes = plaintext
            self._install(parse_credentials(plaintext), f"device key {_label(device_key)}")
            break
        if creds_bytes is None:
            # Wrong when this device's own key failed, or (device unknown) every key did.
            wrong = bool(own) or (bool(tried) and self.info.device_id is None)
            checks["session_key"].set(
                CheckStatus.FAILED if wrong else CheckStatus.NOT_CHECKABLE,
                self._missing_session_key_text(tried if wrong else []),
            )
            if wrong:
                events.append(
                    self._finding(
                        Severity.ERROR,
                        "handshake.session_key.wrong_device_key",
                        "the session key does not decrypt with the device private key(s) given: "
                        "the cloud encrypted it to a different device key (stale key on the "
                        f"cloud, or the wrong key file) ({'; '.join(tried)})",
                        unit.ts,
                        C2D,
                    )
                )
        else:
            detail = info.get("decrypted_with", "key log")
            checks["session_key"].set(CheckStatus.PASSED, f"with {detail}")
            info["session_key_recovered"] = True
        # Signature: needs the credentials and a server public key.
        if creds_bytes is None:
            checks["signature"].set(CheckStatus.NOT_CHECKABLE, "needs the session key")
        else:
            publics = _server_public_entries(self.keyring)
            if not publics:
                checks["signature"].set(CheckStatus.NOT_CHECKABLE, "no server key given")
            else:
                results = [
                    (
                        pub,
                        verify_server_signature(
                            _rsa_public(pub), creds_bytes, ciphertext, signature
                        ),
                    )
                    for pub in publics
                ]
                good = [pub for pub, res in results if res.valid]
                if good:
                    info["signature_valid"] = True
                    checks["signature"].set(CheckStatus.PASSED, f"by {_label(good[0])}")
                else:
                    info["signature_valid"] = False
                    why = "; ".join(f"{_label(pub)}: {res.reason}" for pub, res in results)
                    checks["signature"].set(
                        CheckStatus.FAILED,
                        "not signed by the server key(s) given: the device would reject it "
                        "if it holds the same server key",
                    )
                    events.append(
                        self._finding(
                            Severity.ERROR,
                            "handshake.signature.invalid",
                            f"the session key message is not signed by the server key(s) given "
                            f"({why})",
                            unit.ts,
                            C2D,
                        )
                    )
        events.insert(0, self._blob(C2D, unit, "session_key", info, creds_bytes))
        return events + self._after_session_key(unit.ts)

    def _after_session_key(self, ts: float) -> list[Event]:
        """The handshake is over: decrypt the held frames, or say no key will come, or
        (no whole nonce to look the key log up by) let the first frames find the entry."""
        if self._creds is None and self._nonce is None and self.keyring.tcp_sessions():
            self._trial_first = set()
            return []
        self._keys_settled = True
        if self._creds is None:
            return self._settle_without_key(ts)
        return self._release_held()

    def _missing_session_key_text(self, tried: list[str]) -> str:
        who = f"device {self.info.device_id}" if self.info.device_id else "this device"
        if tried:
            return f"the device key(s) given are not {who}'s key"
        return (
            f"needs the private key of {who} or a session key log entry: the server key "
            "only unwraps the identity message"
        )

    # -- keys and decryption -------------------------------------------------------------

    def _install(self, creds: SessionCredentials, source: str) -> None:
        if self._creds is not None:
            return
        self._creds = creds
        self.info.key_source = source
        for side in self._sides.values():
            if side.at_start or (self.info.handshake_seen and side.frames == 0):
                side.cbc = CbcDirection(creds.key, creds.iv)
            else:
                side.cbc = CbcDirection(creds.key, side.prev_block)

    def _set_device_id(self, device_id: str, source: str) -> None:
        if self.info.device_id is None:
            self.info.device_id = device_id.lower()
            self.info.device_id_source = source

    def _order_blocked_until(self) -> float | None:
        """Time of the oldest byte a resynchronising direction still buffers: frames of
        the other direction completed after it wait, so that the request tracker sees
        both directions in capture order (an answer after its request)."""
        stamps = [
            since
            for side in self._sides.values()
            if not side.stream.synced and (since := side.stream.pending_since) is not None
        ]
        return min(stamps) if stamps else None

    def _order_hold(self, direction: Direction, unit: Unit, events: list[Event]) -> bool:
        """Hold ``unit`` if an older frame of the other direction may still come; True
        when held. Bounded by ``MAX_HELD`` frames a direction (then order is given up
        for what is held, and the held frames go out)."""
        if not self._order_held:
            limit = self._order_blocked_until()
            if limit is None or unit.ts < limit:
                return False
            self._order_held = True
        side = self._sides[direction]
        self._held_seq += 1
        side.held.append(_Held(self._held_seq, direction, unit))
        if len(side.held) > MAX_HELD and (self._creds is not None or self._keys_settled):
            self._order_held = False
            events += self._release_held(keep_order=False)
        return True

    def _order_release(self) -> list[Event]:
        """Release the frames held for order once no direction is resynchronising."""
        if self._order_blocked_until() is not None:
            return []
        if self._creds is None and not self._keys_settled:
            return []  # held for the key too: released when it is found or settled
        self._order_held = False
        return self._release_held()

    def _on_frame(self, direction: Direction, unit: Unit) -> list[Event]:
        side = self._sides[direction]
        if side.frames == 0 and side.cbc is None and self.info.handshake_seen:
            side.at_start = True
        if self._creds is None and not self._keys_settled:
            self._held_seq += 1
            side.held.append(_Held(self._held_seq, direction, unit))
            events: list[Event] = []
            if self._mid_session:
                events += self._try_identify(unit.ts)
            elif self._trial_first is not None and len(side.held) == 1:
                events += self._try_first_frame(direction, unit)
            if self._creds is None and len(side.held) > MAX_HELD:
                self._keys_settled = True
                events += self._settle_without_key(unit.ts)
            return events
        if self._order_held or not self._sides[direction.reverse].stream.synced:
            events = []
            if self._order_hold(direction, unit, events):
                return events
        return self._emit_frame(direction, unit)

    def _emit_frame(self, direction: Direction, unit: Unit) -> list[Event]:
        events: list[Event] = []
        self._frame_into(direction, self._sides[direction], unit, events)
        return events

    def _frame_into(
        self, direction: Direction, side: _Side, unit: Unit, events: list[Event]
    ) -> None:
        """Turn one frame into its message event (and findings), appended to ``events``."""
        side.frames += 1
        stats = self.info.stats[direction]
        stats.bytes += unit.wire_length
        stats.messages += 1
        ct = unit.payload
        msg = MessageEvent(
            session=self.session_id,
            direction=direction,
            ts=unit.ts,
            wire_length=unit.wire_length,
            device_id=self.info.device_id,
            stream_offset=unit.offset,
            ciphertext=ct,
        )
        events.append(msg)
        cbc = side.cbc
        if cbc is not None and not unit.lost:
            # Fast path: a whole frame that decrypts with valid padding.
            plaintext = cbc.decrypt_plaintext(ct)
            if plaintext is not None:
                side.at_start = False
                side.prev_block = ct[:16]
                msg.plaintext = plaintext
                try:
                    coap = coap_decode(plaintext, lenient=True)
                except CoapError as exc:
                    self._not_coap(direction, unit, msg, events, plaintext, exc)
                    return
                stats.decrypted += 1
                self._on_coap(direction, msg, coap, events)
                return
        # From here on the frame yields no CoAP: its message ID is unknown to the tracker.
        self.tracker.skip(direction)
        if side.cbc is None:
            side.prev_block = ct[:16] if len(ct) >= 16 else None
            side.at_start = False
            reason = self._no_key_reason()
            if unit.lost:
                reason = f"{unit.lost} of its {unit.declared} bytes were not captured; {reason}"
            msg.encrypted = EncryptedInfo(unit.declared or len(ct), reason)
            if not self._missing_reported:
                self._missing_reported = True
                events.append(
                    self._finding(
                        Severity.WARNING, "decrypt.missing_key", reason, unit.ts, direction
                    )
                )
            return
        side.at_start = False
        side.prev_block = ct[:16] if len(ct) >= 16 else None
        if unit.lost:
            side.cbc.iv = side.prev_block
            msg.encrypted = EncryptedInfo(
                unit.declared,
                f"{unit.lost} of its {unit.declared} bytes were not captured",
            )
            if side.prev_block is None:
                events.append(self._iv_lost(direction, unit))
            return
        result = side.cbc.decrypt(ct)
        if not result.first_block_known:
            msg.encrypted = EncryptedInfo(
                len(ct),
                "first frame of this direction after the capture start or a gap: its first "
                "16 bytes need the previous frame's first ciphertext block as IV",
                (result.plaintext if result.plaintext is not None else result.raw) or None,
                16,
            )
            return
        if not result.padding_ok or result.plaintext is None:
            msg.encrypted = EncryptedInfo(len(ct), f"decryption failed: {result.reason}")
            events.append(
                self._finding(
                    Severity.ERROR,
                    "frame.bad_padding",
                    f"frame does not decrypt to valid PKCS#7 padding ({result.reason}): wrong "
                    "session key, corrupted or tampered frame (TCP frames carry no integrity "
                    "check)",
                    unit.ts,
                    direction,
                    offset=unit.offset,
                )
            )
            return
        msg.plaintext = result.plaintext
        try:
            coap = coap_decode(result.plaintext, lenient=True)
        except CoapError as exc:
            self._not_coap(direction, unit, msg, events, result.plaintext, exc)
            return
        stats.decrypted += 1
        self._on_coap(direction, msg, coap, events)

    def _not_coap(
        self,
        direction: Direction,
        unit: Unit,
        msg: MessageEvent,
        events: list[Event],
        plaintext: bytes,
        exc: CoapError,
    ) -> None:
        self.tracker.skip(direction)
        msg.encrypted = EncryptedInfo(
            len(unit.payload), f"decrypted but not valid CoAP: {exc}", plaintext
        )
        events.append(
            self._finding(
                Severity.ERROR,
                "coap.malformed",
                f"decrypted frame is not valid CoAP: {exc}",
                unit.ts,
                direction,
                offset=unit.offset,
            )
        )

    def _on_coap(
        self, direction: Direction, msg: MessageEvent, coap: CoapMessage, events: list[Event]
    ) -> None:
        """Track a decoded message; its findings are appended to ``events``."""
        msg.coap = coap
        obs = self.tracker.observe(coap, direction, msg.ts)
        msg.observation = obs
        if obs.findings:
            for finding in obs.findings:
                finding.session = self.session_id
                if finding.direction is None:
                    finding.direction = direction
                events.append(FindingEvent(finding))
        if obs.kind == "Hello":
            decoded = obs.decoded or {}
            if direction is D2C:
                if self.info.hello is None:
                    self.info.hello = decoded
                    self.info.checks["device_hello"].set(CheckStatus.PASSED)
                    self._check_salt(coap.mid)
                device_id = decoded.get("device_id") if isinstance(decoded, dict) else None
                if isinstance(device_id, str) and len(device_id) == 24:
                    self._set_device_id(device_id, "Hello")
            elif self.info.cloud_hello is None:
                self.info.cloud_hello = decoded
                self.info.checks["cloud_hello"].set(CheckStatus.PASSED)
            msg.device_id = self.info.device_id

    def _check_salt(self, mid: int) -> None:
        creds = self._creds
        if creds is None or not self.info.handshake_seen:
            return
        le = (creds.message_id_seed_le + 1) & 0xFFFF
        be = (creds.message_id_seed_be + 1) & 0xFFFF
        if mid == le and mid == be:
            self.info.salt_convention = "both (salt bytes 0 and 1 are equal)"
        elif mid == le:
            self.info.salt_convention = "little-endian (LightSSL channel)"
        elif mid == be:
            self.info.salt_convention = "big-endian (SparkProtocol/CoreProtocol)"
        else:
            self.info.salt_convention = "neither (message ID not seeded from the salt)"

    def _no_key_reason(self) -> str:
        who = f"device {self.info.device_id}" if self.info.device_id else "the device"
        if self._mid_session:
            if self.keyring.tcp_sessions():
                return (
                    "capture starts mid-session and no logged session key fits; only this "
                    "session's key (a PARTICLE_TCP key log entry) can decrypt it"
                )
            return (
                "capture starts mid-session: no handshake to unwrap a key from; only this "
                "session's key (a PARTICLE_TCP key log entry) can decrypt it"
            )
        if self.info.handshake_seen and self._nonce is None and self.keyring.tcp_sessions():
            return (
                "session key unknown: the nonce was not captured whole and no logged session "
                f"key decrypts the first frames; needs the private key of {who} or this "
                "session's PARTICLE_TCP key log entry (the server private key cannot decrypt "
                "frames)"
            )
        return (
            f"session key unknown: needs the private key of {who} or a PARTICLE_TCP key log "
            "entry for this nonce (the server private key cannot decrypt frames)"
        )

    def _settle_without_key(self, ts: float, *, final: bool = False) -> list[Event]:
        """No key will come: say which one is missing and release held frames."""
        events: list[Event] = []
        if self._creds is None and self._mid_session and final:
            events += self._try_identify(ts, final=True)
        if self._creds is None:
            self._keys_settled = True
        events += self._release_held()
        return events

    def _release_held(self, *, keep_order: bool = True) -> list[Event]:
        # In capture order: by time (a SYN-less start's held bytes arrive late but keep
        # their own times), ties in arrival order.
        held = sorted(
            (h for side in self._sides.values() for h in side.held),
            key=lambda h: (h.unit.ts, h.seq),
        )
        for side in self._sides.values():
            side.held.clear()
        limit = self._order_blocked_until() if keep_order else None
        if limit is not None:
            # A direction is still resynchronising: what came after its oldest byte waits.
            later = [h for h in held if h.unit.ts >= limit]
            if later:
                held = held[: len(held) - len(later)]
                for h in later:
                    self._sides[h.direction].held.append(h)
                self._order_held = True
        events: list[Event] = []
        for item in held:
            events += self._emit_frame(item.direction, item.unit)
        return events

    def _try_first_frame(self, direction: Direction, unit: Unit) -> list[Event]:
        """The handshake was captured without its nonce: the key log entry whose
        credentials decrypt this direction's first frame (IV from the credentials) to valid
        CoAP is this session's. When neither direction's first frame opens, no key will."""
        tried = self._trial_first
        assert tried is not None
        tried.add(direction)
        if not unit.lost:
            for nonce, raw in self.keyring.tcp_sessions():
                creds = parse_credentials(raw)
                if not trial_decrypt_score(creds.key, unit.payload, creds.iv):
                    continue
                self._trial_first = None
                self._install(creds, "key log (trial decryption)")
                self._keys_settled = True
                self.info.checks["session_key"].set(
                    CheckStatus.PASSED, f"key log entry for nonce {nonce.hex()[:16]}… by trial"
                )
                found = self._finding(
                    Severity.INFO,
                    "keylog.trial_match",
                    f"the handshake's nonce was not captured whole; the key log entry for nonce "
                    f"{nonce.hex()} decrypts the first {direction.value} frame to CoAP (found "
                    "by trial decryption)",
                    unit.ts,
                    direction,
                )
                return [found, *self._release_held()]
        if len(tried) < 2:
            return []
        self._trial_first = None
        return self._settle_without_key(unit.ts)

    def _try_identify(self, ts: float, *, final: bool = False) -> list[Event]:
        """Find which logged session key decrypts this mid-session capture."""
        candidates = self.keyring.tcp_sessions()
        if not candidates:
            return []
        strong, weak = _score_candidates(candidates, self._sides)
        chosen: tuple[bytes, bytes] | None = None
        how = ""
        if len(strong) >= 1:
            chosen = strong[0]
            how = "a fully decrypted frame"
        elif final and len(weak) == 1:
            chosen = weak[0]
            how = "the padding of the first frame only"
        if chosen is None:
            return []
        nonce, creds_raw = chosen
        creds = parse_credentials(creds_raw)
        self._creds = creds
        self.info.key_source = "key log (trial decryption)"
        self.info.checks["session_key"].set(
            CheckStatus.PASSED, f"key log entry for nonce {nonce.hex()[:16]}… by {how}"
        )
        for side in self._sides.values():
            side.cbc = CbcDirection(creds.key, side.prev_block)
        self._keys_settled = True
        events: list[Event] = [
            self._finding(
                Severity.INFO,
                "keylog.trial_match",
                f"capture starts mid-session; the key log entry for nonce {nonce.hex()} "
                f"decrypts it (matched by {how}). The first frame of each direction loses "
                "its first 16 bytes (its IV was in the previous, uncaptured frame)",
                ts,
                None,
            )
        ]
        events += self._release_held()
        return events

    # -- failure analysis ----------------------------------------------------------------

    def _judge_handshake(self, ts: float) -> list[Event]:
        if not self.info.handshake_seen:
            return []
        checks = self.info.checks
        device_stream = self._sides[D2C]
        cloud_stream = self._sides[C2D]
        events: list[Event] = []

        def fail(code: str, text: str) -> None:
            self.info.outcome = "handshake failed"
            events.append(self._finding(Severity.ERROR, code, text, ts, None))

        nonce_seen = checks["nonce"].status is CheckStatus.PASSED
        identity_seen = not device_stream.stream.in_handshake
        session_key_seen = cloud_stream.stream.in_handshake is False
        if not nonce_seen and self._nonce_before_capture:
            checks["nonce"].set(CheckStatus.NOT_SEEN, "sent before the capture began")
        elif not nonce_seen:
            fail("handshake.no_nonce", "the cloud never sent its 40-byte nonce")
            return events
        if not identity_seen:
            fail(
                "handshake.no_identity",
                "the device never sent its 256-byte identity message (wrong protocol, or the "
                "device gave up: e.g. no server public key)",
            )
            return events
        if not session_key_seen:
            cause = "the cloud rejected the device"
            if checks["identity_decrypted"].status is CheckStatus.FAILED:
                cause += (
                    ": the identity does not decrypt with the server key given, so the device "
                    "probably holds a different server public key"
                )
            elif checks["nonce_echo"].status is CheckStatus.FAILED:
                cause += ": the nonce echo is wrong"
            else:
                cause += " (unknown device ID, decryption failure or nonce mismatch)"
            fail("handshake.closed_after_identity", f"no session key message: {cause}")
            return events
        if device_stream.frames == 0 and not device_stream.held:
            sig = checks["signature"]
            key = checks["session_key"]
            if sig.status is CheckStatus.FAILED:
                cause = (
                    "the server signature does not verify with the server key given: a device "
                    "holding that key rejects it (AUTHENTICATION_ERROR)"
                )
            elif key.status is CheckStatus.FAILED:
                cause = (
                    "the session key was encrypted to a different device key than the one "
                    "given: the device cannot decrypt it (DECRYPTION_ERROR)"
                )
            else:
                cause = (
                    "the device could not decrypt the session key (the cloud holds a stale "
                    "device public key) or rejected the server signature (the device holds "
                    "another server public key)"
                )
            fail("handshake.closed_after_session_key", f"the device sent no frames: {cause}")
            return events
        if (
            checks["cloud_hello"].status is CheckStatus.NOT_SEEN
            and self._creds is not None
            and cloud_stream.frames == 0
        ):
            fail(
                "handshake.no_cloud_hello",
                "the cloud never answered the device Hello (the device gives up after 2–4 s)",
            )
        if self.info.outcome == "open":
            self.info.outcome = "established"
        return events

    # -- helpers -----------------------------------------------------------------------

    def _iv_lost(self, direction: Direction, unit: Unit) -> FindingEvent:
        return self._finding(
            Severity.INFO,
            "frame.iv_lost",
            "the next frame's first 16 bytes cannot be decrypted: its IV was in a frame "
            "that was not captured",
            unit.ts,
            direction,
        )

    def _blob(
        self,
        direction: Direction,
        unit: Unit,
        step: str,
        info: dict[str, Any],
        plaintext: bytes | None = None,
    ) -> HandshakeBlob:
        return HandshakeBlob(
            session=self.session_id,
            direction=direction,
            ts=unit.ts,
            step=step,
            raw=unit.payload,
            info=info,
            device_id=self.info.device_id,
            plaintext=plaintext,
        )

    def _finding(
        self,
        severity: Severity,
        code: str,
        message: str,
        ts: float | None,
        direction: Direction | None,
        **details: Any,
    ) -> FindingEvent:
        return FindingEvent(
            Finding(
                severity=severity,
                code=code,
                message=message,
                ts=ts,
                session=self.session_id,
                direction=direction,
                details=details,
            )
        )

    def session_keys(self) -> SessionKeys | None:
        """The recovered session key as a key log event, when the nonce is known."""
        if self._creds is None or self._nonce is None:
            return None
        return SessionKeys(
            self.session_id,
            "PARTICLE_TCP",
            self._nonce,
            self._creds.raw,
            self.info.key_source or "",
        )


def _parse_identity(plaintext: bytes, nonce: bytes | None) -> IdentityPlaintext:
    """The identity plaintext: 214 or 52 bytes. The reference cloud (spec §2.1,
    ``read_coreid``) reads any length ≥ 52 as nonce ‖ device ID ‖ public key (bytes 52
    onwards); such a length is accepted only when the plaintext echoes the captured nonce,
    since the length check is what tells a wrong server key from the right one (a wrong
    key passes the PKCS#1 padding check about once in 65,000 tries). Raises
    ``ValueError`` otherwise."""
    try:
        return parse_identity_plaintext(plaintext)
    except ValueError:
        if (
            len(plaintext) <= LEGACY_IDENTITY_PLAINTEXT_LEN
            or nonce is None
            or plaintext[:40] != nonce
        ):
            raise
        return IdentityPlaintext(plaintext[:40], plaintext[40:52], plaintext[52:], legacy=False)


def _score_candidates(
    candidates: list[tuple[bytes, bytes]], sides: dict[Direction, _Side]
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Split key log entries into strong matches (a frame fully decrypts to CoAP) and weak
    ones (only the padding of a first frame checks out)."""
    strong: list[tuple[bytes, bytes]] = []
    weak: list[tuple[bytes, bytes]] = []
    for nonce, raw in candidates:
        creds = parse_credentials(raw)
        full = False
        partial_ok = True
        partial_tested = False
        for side in sides.values():
            prev = side.prev_block
            for item in side.held:
                ct = item.unit.payload
                if item.unit.lost or len(ct) < 16 or len(ct) % 16:
                    prev = ct[:16] if len(ct) >= 16 else None
                    continue
                trial = CbcDirection(creds.key, prev)
                result = trial.decrypt(ct)
                if result.first_block_known:
                    if result.padding_ok and result.plaintext is not None:
                        try:
                            coap_decode(result.plaintext, lenient=True)
                            full = True
                        except CoapError:
                            partial_ok = False
                    else:
                        partial_ok = False
                elif len(ct) >= 32:
                    partial_tested = True
                    if not result.padding_ok:
                        partial_ok = False
                prev = ct[:16]
                if full or not partial_ok:
                    break
            if full or not partial_ok:
                break
        if full and partial_ok:
            strong.append((nonce, raw))
        elif partial_ok and partial_tested:
            weak.append((nonce, raw))
    return strong, weak


def _label(entry: KeyEntry) -> str:
    """A key's name for findings: its file name and fingerprint prefix (never the key)."""
    source = os.path.basename(entry.sources[0]) if entry.sources else "key"
    return f"{source} ({entry.fingerprint[:12]})"


def _rsa_private(entry: KeyEntry) -> rsa.RSAPrivateKey:
    key = entry.key
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _rsa_public(entry: KeyEntry) -> rsa.RSAPublicKey:
    key = entry.public_key
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _server_private_entries(ring: KeyRing) -> list[KeyEntry]:
    return [e for e in ring.server_entries() if isinstance(e.key, rsa.RSAPrivateKey)]


def _server_public_entries(ring: KeyRing) -> list[KeyEntry]:
    seen: set[str] = set()
    out: list[KeyEntry] = []
    for entry in ring.server_entries():
        if isinstance(entry.public_key, rsa.RSAPublicKey) and entry.fingerprint not in seen:
            seen.add(entry.fingerprint)
            out.append(entry)
    return out


def _device_candidates(
    ring: KeyRing, device_id: str | None, public_der: bytes | None, size: int
) -> list[KeyEntry]:
    """RSA private keys to try on the session key: the matching device key first, then
    every other device key, then any other RSA private key of the right size that is
    not a server key (a strict PKCS#1 check rejects wrong ones)."""
    fp = ring.fingerprint(public_der) if public_der is not None else None
    keys = [
        e
        for e in ring.entries
        if isinstance(e.key, rsa.RSAPrivateKey)
        and e.key.key_size == size * 8
        and (e.role != "server" or e.fingerprint == fp)
    ]

    def rank(entry: KeyEntry) -> int:
        if fp is not None and entry.fingerprint == fp:
            return 0
        if device_id is not None and entry.device_id == device_id:
            return 1
        if entry.role == "device":
            return 2
        return 3 if entry.role != "server" else 4

    return sorted(keys, key=rank)
