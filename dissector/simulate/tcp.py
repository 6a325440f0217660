"""A reference Particle TCP session (device and cloud), byte-exact and deterministic.

:class:`TcpSessionBuilder` produces both ends of a session with the real cryptography
(spec §2, §3): the cloud's 40-byte nonce, the device's RSA identity message, the cloud's
session key message (credentials encrypted to the device key ‖ raw type-1 "signature"
over HMAC-SHA1(credentials, ciphertext)), then AES-128-CBC frames with Particle's IV rule.
All randomness comes from one seeded :class:`~dissector.simulate.rng.ByteSource`, so a
fixed seed gives byte-identical output. The result is a list of stream writes
``(ts, direction, bytes)``; :mod:`dissector.simulate.pcap` turns them into packets.

Deliberate breakage, to see the dissector name the problem: ``device_encrypts_to`` (the
device holds a wrong server public key), ``cloud_encrypts_to`` (the cloud holds a stale
device public key), ``bad_signature`` (the signed HMAC is wrong), ``legacy_identity``
(the pre-0.4.2 52-byte identity without the device public key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dissector.coap import CoapError, CoapMessage
from dissector.coap import encode as coap_encode
from dissector.crypto import (
    CREDENTIALS_LEN,
    DEVICE_ID_LEN,
    NONCE_LEN,
    CbcEncryptor,
    IdentityPlaintextError,
    RsaError,
    SessionCredentials,
    build_identity_plaintext,
    hmac_sha1,
    parse_credentials,
    rsa_encrypt_pkcs1v15,
    rsa_sign_raw_type1,
)
from dissector.model import Direction
from dissector.simulate.conversation import Conversation
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource

__all__ = [
    "DEFAULT_START",
    "SALT_CONVENTIONS",
    "SentMessage",
    "SimulationError",
    "StreamWrite",
    "TcpSessionBuilder",
]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

#: Default capture time of a session's first write (2023-11-14T22:13:20Z).
DEFAULT_START = 1_700_000_000.0
#: ``"le"``: LightSSL channel (Photon/P1 ≥ 0.8, the virtual device): message-ID seed is
#: salt[0..1] little-endian, tokens start at 1. ``"be"``: SparkProtocol (Core, Photon ≤ 0.7):
#: seed big-endian, first token salt[2] + 1.
SALT_CONVENTIONS = ("le", "be")

RsaKey = rsa.RSAPrivateKey | rsa.RSAPublicKey


class StreamWrite(NamedTuple):
    """Bytes one side wrote to the TCP stream at capture time ``ts``."""

    ts: float
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One framed message as built: the CoAP (None for raw bytes), its plaintext and frame."""

    ts: float
    direction: Direction
    coap: CoapMessage | None
    plaintext: bytes
    frame: bytes


def _public(key: RsaKey) -> rsa.RSAPublicKey:
    return key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key


def _spki_der(key: RsaKey) -> bytes:
    return _public(key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _fixed(name: str, value: bytes | None, length: int, draw: ByteSource) -> bytes:
    if value is None:
        return draw(length)
    if len(value) != length:
        raise SimulationError(f"{name} is {len(value)} bytes, expected {length}")
    return bytes(value)


class TcpSessionBuilder(Conversation):
    """Both ends of one Particle TCP session, built write by write.

    ``device_key``: the device's RSA-1024 key (private or public: only its public half is
    used). ``server_key``: the cloud's RSA-2048 private key (a public key suffices when
    ``session_key_message`` is given). ``device_id``: 12 bytes or 24 hex characters.
    ``rng``: a :class:`ByteSource` or a seed. ``nonce`` / ``credentials`` fix those
    values (e.g. to reproduce a test vector); ``session_key_message`` replays a given
    384-byte H3 verbatim. ``salt_convention``: see :data:`SALT_CONVENTIONS`. The counter
    seeds (``device_token_seed``, ``cloud_mid_seed``, ``cloud_token_seed``) override the
    defaults (salt-derived, random cloud start); see :class:`Conversation`.
    ``keep_messages=False`` skips the :attr:`messages` record (for very long sessions).
    """

    def __init__(
        self,
        device_key: RsaKey,
        server_key: RsaKey,
        device_id: bytes | str,
        *,
        rng: ByteSource | int | None = 0,
        start: float = DEFAULT_START,
        step: float = 0.001,
        salt_convention: str = "le",
        nonce: bytes | None = None,
        credentials: bytes | None = None,
        session_key_message: bytes | None = None,
        legacy_identity: bool = False,
        device_encrypts_to: rsa.RSAPublicKey | None = None,
        cloud_encrypts_to: rsa.RSAPublicKey | None = None,
        bad_signature: bool = False,
        device_token_seed: int | None = None,
        cloud_mid_seed: int | None = None,
        cloud_token_seed: int = 0,
        cloud_hello_token: bool = True,
        cloud_ack_token: bytes = b"",
        keep_messages: bool = True,
    ) -> None:
        if isinstance(device_id, str):
            try:
                device_id = bytes.fromhex(device_id)
            except ValueError:
                raise SimulationError(f"device ID {device_id!r} is not hex") from None
        if len(device_id) != DEVICE_ID_LEN:
            raise SimulationError(f"device ID is {len(device_id)} bytes, expected 12")
        if salt_convention not in SALT_CONVENTIONS:
            raise SimulationError(f"salt_convention must be one of {SALT_CONVENTIONS}")
        if session_key_message is not None and len(session_key_message) != 384:
            raise SimulationError(
                f"session key message is {len(session_key_message)} bytes, expected 384"
            )
        self.rng = rng if isinstance(rng, ByteSource) else ByteSource(rng)
        self._rsa_rng = self.rng.fork("rsa-padding")
        self.device_id = bytes(device_id)
        self.device_key = device_key
        self.server_key = server_key
        self.salt_convention = salt_convention
        self.legacy_identity = legacy_identity
        self.device_encrypts_to = device_encrypts_to
        self.cloud_encrypts_to = cloud_encrypts_to
        self.bad_signature = bad_signature
        self.keep_messages = keep_messages
        self._session_key_message = session_key_message
        self.nonce: bytes = _fixed("nonce", nonce, NONCE_LEN, self.rng)
        #: The 40 session bytes: AES key ‖ IV ‖ salt.
        self.credentials: bytes = _fixed("credentials", credentials, CREDENTIALS_LEN, self.rng)
        creds = parse_credentials(self.credentials)
        cloud_seed = self.rng.uint(0, 0xFFFF)
        if cloud_mid_seed is not None:
            cloud_seed = cloud_mid_seed
        if salt_convention == "be":
            mid_seed = creds.message_id_seed_be
            token_seed = creds.token_seed if device_token_seed is None else device_token_seed
        else:
            mid_seed = creds.message_id_seed_le
            token_seed = 0 if device_token_seed is None else device_token_seed
        super().__init__(
            device_mid_seed=mid_seed,
            device_token_seed=token_seed,
            cloud_mid_seed=cloud_seed,
            cloud_token_seed=cloud_token_seed,
            start=start,
            step=step,
            cloud_hello_token=cloud_hello_token,
            cloud_ack_token=cloud_ack_token,
        )
        #: Per-direction frame encryptors (Particle IV rule), both starting at the creds IV.
        self.device_encryptor = CbcEncryptor(creds.key, creds.iv)
        self.cloud_encryptor = CbcEncryptor(creds.key, creds.iv)
        #: Every stream write, in the order made.
        self.writes: list[StreamWrite] = []
        #: Every framed message, in the order sent (when ``keep_messages``).
        self.messages: list[SentMessage] = []

    # -- keys and secrets ------------------------------------------------------------------

    @property
    def session_credentials(self) -> SessionCredentials:
        """The credentials split into key, IV and salt."""
        return parse_credentials(self.credentials)

    def keylog_line(self) -> str:
        """This session's ``PARTICLE_TCP <nonce> <credentials>`` key log line (no newline)."""
        return f"PARTICLE_TCP {self.nonce.hex()} {self.credentials.hex()}"

    @property
    def device_public_der(self) -> bytes:
        """The device public key as sent in the identity message (162-byte SPKI DER)."""
        return _spki_der(self.device_key)

    @property
    def identity_plaintext(self) -> bytes:
        """nonce ‖ device ID ‖ device public key (214 bytes), or 52 bytes when legacy."""
        key = None if self.legacy_identity else self.device_public_der
        try:
            return build_identity_plaintext(self.nonce, self.device_id, key)
        except IdentityPlaintextError as exc:
            raise SimulationError(f"cannot build the identity message: {exc.reason}") from None

    # -- handshake -------------------------------------------------------------------------

    def handshake(self, *, at: float | None = None) -> None:
        """H1 nonce, H2 identity, H3 session key, one after the other."""
        self.cloud_nonce(at=at)
        self.device_identity()
        self.cloud_session_key()

    def cloud_nonce(self, *, at: float | None = None) -> bytes:
        """H1: the cloud's 40-byte nonce, in clear."""
        return self.raw(C2D, self.nonce, at=at)

    def device_identity(self, *, at: float | None = None) -> bytes:
        """H2: the identity, RSA PKCS#1 v1.5 type-2 encrypted to the server key (256 bytes)."""
        target = self.device_encrypts_to or _public(self.server_key)
        try:
            blob = rsa_encrypt_pkcs1v15(target, self.identity_plaintext, self._rsa_rng)
        except RsaError as exc:
            raise SimulationError(f"cannot encrypt the identity: {exc.reason}") from None
        return self.raw(D2C, blob, at=at)

    def session_key_message(self) -> bytes:
        """H3 as the cloud builds it: RSA(device key, credentials) ‖ signature (384 bytes)."""
        if self._session_key_message is not None:
            return self._session_key_message
        target = self.cloud_encrypts_to or _public(self.device_key)
        if not isinstance(self.server_key, rsa.RSAPrivateKey):
            raise SimulationError("signing the session key needs the server private key")
        try:
            ciphertext = rsa_encrypt_pkcs1v15(target, self.credentials, self._rsa_rng)
            mac = hmac_sha1(self.credentials, ciphertext)
            if self.bad_signature:
                mac = bytes((mac[0] ^ 0xFF,)) + mac[1:]
            signature = rsa_sign_raw_type1(self.server_key, mac)
        except RsaError as exc:
            raise SimulationError(f"cannot build the session key message: {exc.reason}") from None
        return ciphertext + signature

    def cloud_session_key(self, *, at: float | None = None) -> bytes:
        """H3: send :meth:`session_key_message`."""
        return self.raw(C2D, self.session_key_message(), at=at)

    # -- frames ----------------------------------------------------------------------------

    def raw(self, direction: Direction, data: bytes, *, at: float | None = None) -> bytes:
        """Write ``data`` to the stream unchanged (handshake blobs, deliberate garbage)."""
        data = bytes(data)
        self.writes.append(StreamWrite(self._tick(at), direction, data))
        return data

    def device_sends(self, msg: CoapMessage | bytes, at: float | None = None) -> bytes:
        """Encrypt and frame one message device → cloud; returns the frame."""
        return self._frame(D2C, self.device_encryptor, msg, at)

    def cloud_sends(self, msg: CoapMessage | bytes, at: float | None = None) -> bytes:
        """Encrypt and frame one message cloud → device; returns the frame."""
        return self._frame(C2D, self.cloud_encryptor, msg, at)

    def _frame(
        self,
        direction: Direction,
        encryptor: CbcEncryptor,
        msg: CoapMessage | bytes,
        at: float | None,
    ) -> bytes:
        if isinstance(msg, CoapMessage):
            try:
                plaintext = coap_encode(msg)
            except CoapError as exc:
                raise SimulationError(f"cannot encode the CoAP message: {exc}") from None
            coap: CoapMessage | None = msg
        else:
            plaintext = bytes(msg)
            coap = None
        try:
            frame = encryptor.encrypt_frame(plaintext)
        except ValueError as exc:
            raise SimulationError(str(exc)) from None
        ts = self._tick(at)
        self.writes.append(StreamWrite(ts, direction, frame))
        if self.keep_messages:
            self.messages.append(SentMessage(ts, direction, coap, plaintext, frame))
        return frame

    def __repr__(self) -> str:
        return (
            f"TcpSessionBuilder(device_id={self.device_id.hex()}, writes={len(self.writes)}, "
            f"salt_convention={self.salt_convention!r})"
        )
