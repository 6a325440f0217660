"""RSA primitives of the Particle TCP handshake (spec §1.2, §2.2), done by hand.

Why not ``cryptography``'s PKCS#1 v1.5 decrypt: OpenSSL >= 3.2 implements *implicit
rejection*, so a wrong key silently returns random bytes instead of failing. A dissector
must know whether a key fits, so the private operation is done here with Python integers
(CRT, precomputed per key) and the type-2 block is parsed strictly.

The Particle "signature" is no standard signature either: the server applies its private
key to ``00 01 FF.. 00 || HMAC-SHA1(credentials, ciphertext)`` with no DigestInfo.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

__all__ = [
    "DEVICE_ID_LEN",
    "DEVICE_PUBLIC_KEY_LEN",
    "FIRMWARE_PRIVATE_KEY_PREFIX",
    "FIRMWARE_PUBLIC_KEY_HEADER",
    "IDENTITY_PLAINTEXT_LEN",
    "LEGACY_IDENTITY_PLAINTEXT_LEN",
    "NONCE_LEN",
    "IdentityPlaintext",
    "IdentityPlaintextError",
    "RsaDecryptError",
    "RsaError",
    "RsaPrivate",
    "SignatureCheck",
    "build_identity_plaintext",
    "extract_firmware_public_key",
    "firmware_can_read_private_key",
    "hmac_sha1",
    "open_type1_block",
    "parse_identity_plaintext",
    "prepare_private_key",
    "rsa_decrypt_pkcs1v15",
    "rsa_encrypt_pkcs1v15",
    "rsa_private_raw",
    "rsa_public_raw",
    "rsa_sign_raw_type1",
    "verify_server_signature",
]

NONCE_LEN = 40
DEVICE_ID_LEN = 12
DEVICE_PUBLIC_KEY_LEN = 162
LEGACY_IDENTITY_PLAINTEXT_LEN = NONCE_LEN + DEVICE_ID_LEN  # 52, firmware before 0.4.2
IDENTITY_PLAINTEXT_LEN = LEGACY_IDENTITY_PLAINTEXT_LEN + DEVICE_PUBLIC_KEY_LEN  # 214

HMAC_LEN = 20
MIN_PADDING = 8  # PKCS#1 v1.5: at least 8 padding bytes

#: Fixed 29-byte SPKI header the firmware prepends to the modulus (``extract_public_rsa_key``).
FIRMWARE_PUBLIC_KEY_HEADER = bytes.fromhex(
    "30819f300d06092a864886f70d010101050003818d0030818902818100"
)
_FIRMWARE_PUBLIC_KEY_TRAILER = bytes.fromhex("0203010001")
#: Bytes 4..10 a device private key DER must hold for the firmware's fixed offsets to work
#: (it starts ``30 82 xx xx``, then version 0 and a 129-byte modulus INTEGER).
FIRMWARE_PRIVATE_KEY_PREFIX = bytes.fromhex("02010002818100")
_FIRMWARE_MODULUS_OFFSET = 11
_FIRMWARE_MODULUS_LEN = 128


class RsaError(ValueError):
    """An RSA operation could not be done on this input; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RsaDecryptError(RsaError):
    """PKCS#1 v1.5 decryption failed: wrong key, wrong length or corrupt block."""


class IdentityPlaintextError(ValueError):
    """The handshake identity plaintext (nonce ‖ ID ‖ key) has an impossible layout."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RsaPrivate:
    """An RSA private key prepared for fast raw private operations (CRT with Python ints).

    Holds private numbers: its ``repr`` shows only the size and public modulus prefix.
    """

    __slots__ = ("_dp", "_dq", "_p", "_q", "_qinv", "d", "e", "n", "size")

    def __init__(self, key: RSAPrivateKey) -> None:
        numbers = key.private_numbers()
        pub = numbers.public_numbers
        self.n: int = pub.n
        self.e: int = pub.e
        self.d: int = numbers.d
        self._p = numbers.p
        self._q = numbers.q
        self._dp = numbers.dmp1
        self._dq = numbers.dmq1
        self._qinv = numbers.iqmp
        self.size: int = (self.n.bit_length() + 7) // 8

    def private_op(self, c: int) -> int:
        """Return ``c^d mod n`` (``c`` must be < n), via the Chinese remainder theorem."""
        m1 = pow(c % self._p, self._dp, self._p)
        m2 = pow(c % self._q, self._dq, self._q)
        h = (self._qinv * (m1 - m2)) % self._p
        return m2 + h * self._q

    def __repr__(self) -> str:
        head = self.n.to_bytes(self.size, "big")[:4].hex()
        return f"RsaPrivate(bits={self.n.bit_length()}, n={head}…)"

    __str__ = __repr__


_PREPARED: dict[RSAPrivateKey, RsaPrivate] = {}
_PREPARED_MAX = 256


def prepare_private_key(key: RSAPrivateKey | RsaPrivate) -> RsaPrivate:
    """Return the cached :class:`RsaPrivate` for ``key`` (computed once per key object)."""
    if isinstance(key, RsaPrivate):
        return key
    prepared = _PREPARED.get(key)
    if prepared is None:
        prepared = RsaPrivate(key)
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = prepared
    return prepared


def _modulus_size(key: RSAPublicKey) -> tuple[int, int, int]:
    nums = key.public_numbers()
    return nums.n, nums.e, (nums.n.bit_length() + 7) // 8


def rsa_private_raw(key: RSAPrivateKey | RsaPrivate, block: bytes) -> bytes:
    """Raw private operation ``block^d mod n``, left-padded to the modulus size.

    Raises :class:`RsaError` if ``block`` is not exactly modulus-sized or is >= n.
    """
    prep = prepare_private_key(key)
    if len(block) != prep.size:
        raise RsaError(f"input is {len(block)} bytes, the key's modulus is {prep.size} bytes")
    c = int.from_bytes(block, "big")
    if c >= prep.n:
        raise RsaError("input integer is not smaller than the modulus")
    return prep.private_op(c).to_bytes(prep.size, "big")


def rsa_public_raw(key: RSAPublicKey, block: bytes) -> bytes:
    """Raw public operation ``block^e mod n``, left-padded to the modulus size.

    Raises :class:`RsaError` if ``block`` is not exactly modulus-sized or is >= n.
    """
    n, e, size = _modulus_size(key)
    if len(block) != size:
        raise RsaError(f"input is {len(block)} bytes, the key's modulus is {size} bytes")
    s = int.from_bytes(block, "big")
    if s >= n:
        raise RsaError("input integer is not smaller than the modulus")
    return pow(s, e, n).to_bytes(size, "big")


def rsa_decrypt_pkcs1v15(key: RSAPrivateKey | RsaPrivate, ciphertext: bytes) -> bytes:
    """Decrypt a PKCS#1 v1.5 type-2 block strictly; a wrong key raises, never returns junk.

    Checks: ciphertext length equals the modulus size, integer < n, block
    ``00 02 PS(>= 8 non-zero bytes) 00 M``. Raises :class:`RsaDecryptError` with a reason.
    """
    prep = prepare_private_key(key)
    if len(ciphertext) != prep.size:
        raise RsaDecryptError(
            f"ciphertext is {len(ciphertext)} bytes, the key's modulus is {prep.size} bytes"
        )
    c = int.from_bytes(ciphertext, "big")
    if c >= prep.n:
        raise RsaDecryptError("ciphertext integer is not smaller than the modulus: wrong key?")
    em = prep.private_op(c).to_bytes(prep.size, "big")
    if em[0] != 0 or em[1] != 2:
        raise RsaDecryptError(f"not a type-2 block (starts {em[:2].hex(' ')}): wrong key?")
    sep = em.find(b"\x00", 2)
    if sep < 0:
        raise RsaDecryptError("type-2 block has no 00 separator: wrong key?")
    if sep - 2 < MIN_PADDING:
        raise RsaDecryptError(
            f"type-2 padding is {sep - 2} bytes, at least {MIN_PADDING} required: wrong key?"
        )
    return em[sep + 1 :]


def rsa_encrypt_pkcs1v15(
    key: RSAPublicKey, message: bytes, rng: Callable[[int], bytes] | None = None
) -> bytes:
    """PKCS#1 v1.5 type-2 encryption; ``rng(n) -> bytes`` supplies padding randomness.

    Zero bytes from ``rng`` are dropped (padding must be non-zero), so it is called until
    enough non-zero bytes were drawn. Defaults to :func:`os.urandom`.
    """
    n, e, size = _modulus_size(key)
    if len(message) > size - 3 - MIN_PADDING:
        raise RsaError(f"message of {len(message)} bytes too long for a {size}-byte modulus")
    draw = rng if rng is not None else os.urandom
    pad_len = size - 3 - len(message)
    padding = b""
    while len(padding) < pad_len:
        chunk = draw(pad_len - len(padding))
        if not chunk:
            raise RsaError("randomness source returned no bytes")
        padding += chunk.replace(b"\x00", b"")
    em = b"\x00\x02" + padding[:pad_len] + b"\x00" + message
    return pow(int.from_bytes(em, "big"), e, n).to_bytes(size, "big")


def rsa_sign_raw_type1(key: RSAPrivateKey | RsaPrivate, data: bytes) -> bytes:
    """Particle's server "signature": private op over ``00 01 FF.. 00 || data`` (no DigestInfo)."""
    prep = prepare_private_key(key)
    ff_len = prep.size - 3 - len(data)
    if ff_len < MIN_PADDING:
        raise RsaError(f"{len(data)} bytes too long for a {prep.size}-byte modulus")
    em = b"\x00\x01" + b"\xff" * ff_len + b"\x00" + data
    return prep.private_op(int.from_bytes(em, "big")).to_bytes(prep.size, "big")


def hmac_sha1(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA1 (the handshake's MAC over the credentials ciphertext)."""
    return _hmac.digest(key, msg, hashlib.sha1)


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Outcome of :func:`verify_server_signature`.

    ``reason`` is ``"ok"`` when valid; ``expected_hmac`` is HMAC-SHA1(credentials,
    ciphertext); ``signed_hmac`` is what the opened block carries (None if not a type-1 block).
    """

    valid: bool
    reason: str
    expected_hmac: bytes
    signed_hmac: bytes | None = None


def open_type1_block(server_public: RSAPublicKey, signature: bytes) -> tuple[bytes | None, str]:
    """Open a raw type-1 "signature"; return ``(payload, "ok")`` or ``(None, reason)``."""
    try:
        em = rsa_public_raw(server_public, signature)
    except RsaError as exc:
        return None, f"signature unusable with this server key: {exc.reason}"
    if em[0] != 0 or em[1] != 1:
        return None, "not a type-1 block: wrong server key?"
    i = 2
    while i < len(em) and em[i] == 0xFF:
        i += 1
    if i == len(em) or em[i] != 0:
        return None, "not a type-1 block (padding not FF…FF 00): wrong server key?"
    if i - 2 < MIN_PADDING:
        return None, f"type-1 padding is {i - 2} bytes, at least {MIN_PADDING} required"
    return em[i + 1 :], "ok"


def verify_server_signature(
    server_public: RSAPublicKey,
    credentials: bytes,
    credentials_ciphertext: bytes,
    signature: bytes,
) -> SignatureCheck:
    """Check the H3 signature: opens to ``00 01 FF…FF 00 || HMAC-SHA1(creds, ciphertext)``."""
    expected = hmac_sha1(credentials, credentials_ciphertext)
    payload, reason = open_type1_block(server_public, signature)
    if payload is None:
        return SignatureCheck(False, reason, expected)
    if len(payload) != HMAC_LEN:
        return SignatureCheck(
            False,
            f"type-1 block carries {len(payload)} bytes, not a bare 20-byte HMAC",
            expected,
            payload,
        )
    if not _hmac.compare_digest(payload, expected):
        return SignatureCheck(
            False, "hmac mismatch: credentials or ciphertext differ", expected, payload
        )
    return SignatureCheck(True, "ok", expected, payload)


@dataclass(frozen=True, slots=True)
class IdentityPlaintext:
    """Decrypted H2: the echoed nonce, the 12-byte device ID and the device public key DER.

    ``legacy`` is True for the 52-byte pre-0.4.2 form without a key (``public_key_der`` None).
    """

    nonce: bytes
    device_id: bytes
    public_key_der: bytes | None
    legacy: bool

    @property
    def device_id_hex(self) -> str:
        """The device ID as 24 lower-case hex characters."""
        return self.device_id.hex()


def build_identity_plaintext(
    nonce: bytes, device_id: bytes, device_public_der: bytes | None
) -> bytes:
    """Build the H2 plaintext ``nonce(40) ‖ id(12) ‖ key(162)``; ``None`` key → legacy 52 bytes."""
    if len(nonce) != NONCE_LEN:
        raise IdentityPlaintextError(f"nonce is {len(nonce)} bytes, expected {NONCE_LEN}")
    if len(device_id) != DEVICE_ID_LEN:
        raise IdentityPlaintextError(
            f"device ID is {len(device_id)} bytes, expected {DEVICE_ID_LEN}"
        )
    if device_public_der is None:
        return nonce + device_id
    if len(device_public_der) != DEVICE_PUBLIC_KEY_LEN:
        raise IdentityPlaintextError(
            f"device public key is {len(device_public_der)} bytes, "
            f"expected {DEVICE_PUBLIC_KEY_LEN} (RSA-1024 SPKI DER)"
        )
    return nonce + device_id + device_public_der


def parse_identity_plaintext(pt: bytes) -> IdentityPlaintext:
    """Split a decrypted H2 into nonce, device ID and key (52 or 214 bytes, nothing else)."""
    if len(pt) == IDENTITY_PLAINTEXT_LEN:
        return IdentityPlaintext(pt[:40], pt[40:52], pt[52:], legacy=False)
    if len(pt) == LEGACY_IDENTITY_PLAINTEXT_LEN:
        return IdentityPlaintext(pt[:40], pt[40:52], None, legacy=True)
    raise IdentityPlaintextError(
        f"identity plaintext is {len(pt)} bytes; expected {IDENTITY_PLAINTEXT_LEN} "
        f"(nonce ‖ device ID ‖ public key) or {LEGACY_IDENTITY_PLAINTEXT_LEN} (legacy, no key)"
    )


def firmware_can_read_private_key(private_der: bytes) -> bool:
    """True if the DER starts ``30 82 xx xx 02 01 00 02 81 81 00`` as the firmware assumes."""
    return (
        len(private_der) >= _FIRMWARE_MODULUS_OFFSET + _FIRMWARE_MODULUS_LEN
        and private_der[:2] == b"\x30\x82"
        and private_der[4:11] == FIRMWARE_PRIVATE_KEY_PREFIX
    )


def extract_firmware_public_key(private_der: bytes) -> bytes:
    """Rebuild the 162-byte public key exactly as the firmware does (spec §1.2).

    Fixed 29-byte header ‖ 128 bytes copied from private-key offset 11 ‖ ``02 03 01 00 01``.
    Like the firmware, this does not validate the DER; use
    :func:`firmware_can_read_private_key` for that. Raises ValueError if too short.
    """
    end = _FIRMWARE_MODULUS_OFFSET + _FIRMWARE_MODULUS_LEN
    if len(private_der) < end:
        raise ValueError(f"private key DER is {len(private_der)} bytes, at least {end} needed")
    modulus = private_der[_FIRMWARE_MODULUS_OFFSET:end]
    return FIRMWARE_PUBLIC_KEY_HEADER + modulus + _FIRMWARE_PUBLIC_KEY_TRAILER
