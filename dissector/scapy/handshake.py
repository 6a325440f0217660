"""Scapy layers for the Particle TCP handshake (spec §2.1-§2.3).

Wire layers (what travels on TCP):

* :class:`ParticleNonce` – H1, the cloud's 40 clear-text bytes.
* :class:`ParticleIdentity` – H2, 256 bytes RSA-encrypted to the cloud key.
* :class:`ParticleSessionKey` – H3, 128 bytes RSA-encrypted to the device key + a 256-byte
  signature.

Decrypted views, stacked as the payload of the wire layer they come from:

* :class:`ParticleIdentityPlaintext` – nonce, device ID, device public key DER (214 bytes,
  or the legacy 52-byte form without a key).
* :class:`ParticleSessionCredentials` – AES key, initial IV, salt (40 bytes).

Encrypted layers (these and :class:`~dissector.scapy.frame.ParticleFrame`) never write their
payload: ``bytes(layer)`` is the wire form; the payload is what the ciphertext decrypts to.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import XStrField, XStrFixedLenField
from scapy.packet import Packet

from dissector.crypto.rsa import NONCE_LEN
from dissector.scapy.fields import DeviceIdField

__all__ = [
    "EncryptedLayer",
    "ParticleIdentity",
    "ParticleIdentityPlaintext",
    "ParticleLayer",
    "ParticleNonce",
    "ParticleSessionCredentials",
    "ParticleSessionKey",
]


class ParticleLayer(Packet):
    """Base of the layers a :class:`~dissector.scapy.session.ParticleSession` puts on a TCP
    packet. ``event`` is the core event the layer was built from (None when built by hand):
    session, direction, timestamp, device ID, the exchange observation; ``copy()`` keeps
    it."""

    event: Any = None

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return b"", s

    def copy(self) -> Any:
        clone = super().copy()
        clone.event = self.event
        return clone


class EncryptedLayer(ParticleLayer):
    """A ciphertext on the wire whose payload (if any) is the decrypted view.

    Building writes only the wire fields (plus trailing padding): the decrypted payload is
    shown and searchable (``pkt[CoAP]``) but never serialised, so ``bytes(pkt)`` is what
    was (or will be) sent.
    """

    def do_build_payload(self) -> bytes:
        return b""

    @property
    def decrypted(self) -> bool:
        """True when a decrypted view is attached as payload."""
        return bool(self.payload) and not isinstance(self.payload, _padding())


def _padding() -> type[Packet]:
    from scapy.config import conf

    cls: type[Packet] = conf.padding_layer
    return cls


class ParticleNonce(ParticleLayer):
    """H1: the cloud's random 40-byte nonce, sent in clear."""

    name = "Particle Nonce"
    fields_desc: ClassVar[list[Any]] = [XStrFixedLenField("nonce", bytes(NONCE_LEN), NONCE_LEN)]

    def mysummary(self) -> str:
        return f"Particle Nonce {bytes(self.nonce)[:4].hex()}…"


class ParticleIdentity(EncryptedLayer):
    """H2: the device identity, RSA-2048 PKCS#1 v1.5 encrypted to the cloud's public key.

    Decrypted (with the cloud private key) its payload is :class:`ParticleIdentityPlaintext`.
    """

    name = "Particle Identity"
    fields_desc: ClassVar[list[Any]] = [XStrFixedLenField("ciphertext", bytes(256), 256)]

    def mysummary(self) -> str:
        if isinstance(self.payload, ParticleIdentityPlaintext):
            return self.payload.mysummary()
        return "Particle Identity (encrypted)"


class ParticleIdentityPlaintext(Packet):
    """Decrypted H2: the echoed nonce, the 12-byte device ID and the device's RSA public key
    (162-byte SPKI DER; empty in the legacy 52-byte form of firmware before 0.4.2)."""

    name = "Particle Identity Plaintext"
    fields_desc: ClassVar[list[Any]] = [
        XStrFixedLenField("nonce", bytes(NONCE_LEN), NONCE_LEN),
        DeviceIdField("device_id"),
        XStrField("public_key", b""),
    ]

    @property
    def legacy(self) -> bool:
        """True for the 52-byte form without a public key."""
        return not self.public_key

    @property
    def device_id_hex(self) -> str:
        """The device ID as 24 lower-case hex characters."""
        return bytes(self.device_id).hex()

    def mysummary(self) -> str:
        legacy = " (legacy, no key)" if self.legacy else ""
        return f"Particle Identity device {self.device_id_hex}{legacy}"


class ParticleSessionKey(EncryptedLayer):
    """H3: 40 session bytes RSA-1024 encrypted to the device key, then the cloud's 256-byte
    raw PKCS#1 type-1 "signature" of their HMAC-SHA1.

    Decrypted (with the device private key or a key log) its payload is
    :class:`ParticleSessionCredentials`.
    """

    name = "Particle Session Key"
    fields_desc: ClassVar[list[Any]] = [
        XStrFixedLenField("ciphertext", bytes(128), 128),
        XStrFixedLenField("signature", bytes(256), 256),
    ]

    def mysummary(self) -> str:
        state = "decrypted" if self.decrypted else "encrypted"
        return f"Particle Session Key ({state})"


class ParticleSessionCredentials(Packet):
    """Decrypted H3: AES-128 key, the initial CBC IV of both directions, and the salt
    (seeds the message-ID counter, spec §2.3)."""

    name = "Particle Session Credentials"
    fields_desc: ClassVar[list[Any]] = [
        XStrFixedLenField("key", bytes(16), 16),
        XStrFixedLenField("iv", bytes(16), 16),
        XStrFixedLenField("salt", bytes(8), 8),
    ]

    def mysummary(self) -> str:
        return "Particle Session Credentials"
