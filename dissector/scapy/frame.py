"""The encrypted TCP frame (spec §3.1) and the build-side helpers.

:class:`ParticleFrame` is ``u16 length ‖ AES-128-CBC ciphertext``; once decrypted its payload
is the :class:`~dissector.scapy.coap.CoAP` message (never written by ``bytes(frame)``).

:func:`encrypt_frame` turns a CoAP layer and session credentials into a frame ready to send;
:func:`decrypt_frame` is its inverse. Both use the project's AES primitives
(:mod:`dissector.crypto.aes`) and Particle's IV rule: a direction's first frame uses the
credential IV, every later one the first ciphertext block of the previous frame in that
direction (:attr:`ParticleFrame.next_iv`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import FieldLenField, XStrLenField
from scapy.packet import Packet, Raw

from dissector.coap import CoapError
from dissector.crypto.aes import (
    BLOCK,
    CbcDirection,
    CbcEncryptor,
    SessionCredentials,
    parse_credentials,
)
from dissector.scapy.coap import coap_layer
from dissector.scapy.handshake import EncryptedLayer, ParticleSessionCredentials

__all__ = ["FrameError", "ParticleFrame", "decrypt_frame", "encrypt_frame", "session_credentials"]


class FrameError(ValueError):
    """A frame that cannot be built or decrypted with the credentials given."""


class ParticleFrame(EncryptedLayer):
    """One encrypted frame: ``length`` (ciphertext bytes, derived when None) and
    ``ciphertext``. The payload, when present, is the decrypted CoAP message."""

    name = "Particle Frame"
    fields_desc: ClassVar[list[Any]] = [
        FieldLenField("length", None, length_of="ciphertext", fmt="H"),
        XStrLenField("ciphertext", b"", length_from=lambda pkt: pkt.length),
    ]

    @property
    def next_iv(self) -> bytes:
        """The IV of the next frame in the same direction: this frame's first block."""
        return bytes(self.ciphertext)[:BLOCK]

    def mysummary(self) -> str:
        length = self.length if self.length is not None else len(self.ciphertext)
        state = "" if self.decrypted else " (encrypted)"
        return f"Particle Frame {length} bytes{state}"


def session_credentials(credentials: Any) -> SessionCredentials:
    """Credentials from a :class:`~dissector.crypto.SessionCredentials`, a
    :class:`ParticleSessionCredentials` layer (or a packet holding one) or 40 raw bytes.
    Raises :class:`FrameError`."""
    if isinstance(credentials, SessionCredentials):
        return credentials
    if isinstance(credentials, Packet):
        layer = credentials.getlayer(ParticleSessionCredentials)
        if layer is None:
            raise FrameError("packet carries no ParticleSessionCredentials layer")
        raw = bytes(layer.key) + bytes(layer.iv) + bytes(layer.salt)
    elif isinstance(credentials, bytes | bytearray | memoryview):
        raw = bytes(credentials)
    else:
        raise FrameError(f"not session credentials: {type(credentials).__name__}")
    try:
        return parse_credentials(raw)
    except ValueError as exc:
        raise FrameError(str(exc)) from exc


def _iv(creds: SessionCredentials, iv: bytes | None) -> bytes:
    value = creds.iv if iv is None else bytes(iv)
    if len(value) != BLOCK:
        raise FrameError(f"IV is {len(value)} bytes, expected {BLOCK}")
    return value


def encrypt_frame(coap: Packet | bytes, credentials: Any, iv: bytes | None = None) -> ParticleFrame:
    """Encrypt one CoAP message into a :class:`ParticleFrame` (its payload is a copy of it).

    ``iv`` defaults to the credential IV (a direction's first frame); pass the previous
    frame's :attr:`~ParticleFrame.next_iv` for the following ones. Raises
    :class:`FrameError`.
    """
    creds = session_credentials(credentials)
    key_iv = _iv(creds, iv)
    try:
        plaintext = bytes(coap)
    except (CoapError, ValueError, TypeError) as exc:
        raise FrameError(f"cannot build the message: {exc}") from exc
    ct = CbcEncryptor(creds.key, key_iv).encrypt(plaintext)
    if len(ct) > 0xFFFF:
        raise FrameError(f"frame of {len(ct)} bytes exceeds the 16-bit length prefix")
    frame = ParticleFrame(ciphertext=ct)
    inner: Packet = coap.copy() if isinstance(coap, Packet) else _plaintext_layer(plaintext)
    frame.add_payload(inner)
    return frame


def decrypt_frame(
    frame: ParticleFrame | bytes,
    credentials: Any,
    iv: bytes | None = None,
    *,
    kind: str | None = None,
) -> ParticleFrame:
    """Decrypt a frame (layer or wire bytes): a new :class:`ParticleFrame` with the
    :class:`~dissector.scapy.coap.CoAP` message as payload. ``kind`` (a Particle kind such
    as ``"GetTimeReturn"``) types a response payload. Raises :class:`FrameError` for a short
    frame, bad padding (wrong key or IV) or bytes that are not CoAP."""
    creds = session_credentials(credentials)
    key_iv = _iv(creds, iv)
    if not isinstance(frame, ParticleFrame):
        data = bytes(frame)
        if len(data) < 2:
            raise FrameError(f"frame of {len(data)} bytes has no length prefix")
        frame = ParticleFrame(data)
    ct = bytes(frame.ciphertext)
    declared = frame.length if frame.length is not None else len(ct)
    if declared != len(ct):
        raise FrameError(f"frame announces {declared} bytes but holds {len(ct)}")
    result = CbcDirection(creds.key, key_iv).decrypt(ct)
    if not result.ok or result.plaintext is None:
        raise FrameError(f"frame does not decrypt: {result.reason}")
    try:
        inner = coap_layer(result.plaintext, kind)
    except CoapError as exc:
        raise FrameError(f"decrypted but not valid CoAP: {exc}") from exc
    out = ParticleFrame(length=declared, ciphertext=ct)
    out.add_payload(inner)
    return out


def _plaintext_layer(plaintext: bytes) -> Packet:
    try:
        return coap_layer(plaintext)
    except CoapError:
        return Raw(plaintext)
