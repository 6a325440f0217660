"""Particle's AES-128-CBC session encryption (spec §2.3, §3).

Both directions start with IV = credentials[16:32]; after each frame, that direction's
next IV is the FIRST 16 bytes of the frame's ciphertext (not the last block). Frames are
PKCS#7 padded (a full block when already aligned) and carry no MAC.

Hot path: one reusable CBC decryption context per direction, fed ``iv || ct``: the IV
block goes in as a ciphertext block whose output is dropped, which sets the context's
chaining value to the frame's IV (the Particle rule is not CBC's). The slow, diagnostic
path does ``ECB_dec(ct) XOR (iv || ct[:-16])`` with one big-int XOR over the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "BLOCK",
    "CREDENTIALS_LEN",
    "CbcDirection",
    "CbcEncryptor",
    "DecryptResult",
    "SessionCredentials",
    "coap_header_plausible",
    "parse_credentials",
    "pkcs7_pad",
    "score_session_key",
    "strip_pkcs7",
    "trial_decrypt_score",
]

BLOCK = 16
CREDENTIALS_LEN = 40
_KEY_LEN = 16
#: pad length -> the PKCS#7 padding bytes it stands for (index 0 unused)
_PADS = tuple(bytes((n,)) * n for n in range(BLOCK + 1))


@dataclass(frozen=True, slots=True, repr=False)
class SessionCredentials:
    """The 40 session bytes from H3: AES key(16) ‖ initial IV(16) ‖ salt(8).

    ``repr`` never shows the key or IV.
    """

    key: bytes
    iv: bytes
    salt: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionCredentials:
        """Split 40 credential bytes; raises ValueError on any other length."""
        return parse_credentials(data)

    @property
    def raw(self) -> bytes:
        """The 40 bytes again (key ‖ iv ‖ salt)."""
        return self.key + self.iv + self.salt

    @property
    def message_id_seed_be(self) -> int:
        """Core / SparkProtocol seed: salt[0..1] big-endian (first message carries seed+1)."""
        return int.from_bytes(self.salt[0:2], "big")

    @property
    def message_id_seed_le(self) -> int:
        """LightSSL channel seed (Photon ≥ 0.8, virtual device): salt[0..1] little-endian."""
        return int.from_bytes(self.salt[0:2], "little")

    @property
    def token_seed(self) -> int:
        """Core / SparkProtocol token seed salt[2] (first token is salt[2]+1)."""
        return self.salt[2]

    def __repr__(self) -> str:
        return (
            f"SessionCredentials(key=<hidden>, iv=<hidden>, "
            f"mid_seed_be=0x{self.message_id_seed_be:04x}, "
            f"mid_seed_le=0x{self.message_id_seed_le:04x})"
        )

    __str__ = __repr__


def parse_credentials(data: bytes) -> SessionCredentials:
    """Split 40 credential bytes into key, IV and salt; raises ValueError otherwise."""
    if len(data) != CREDENTIALS_LEN:
        raise ValueError(f"session credentials are {len(data)} bytes, expected 40")
    data = bytes(data)
    return SessionCredentials(data[0:16], data[16:32], data[32:40])


@dataclass(slots=True)
class DecryptResult:
    """Outcome of decrypting one frame.

    ``plaintext``: the message with padding removed, or None (bad length, bad padding, or
    nothing decryptable). When ``first_block_known`` is False the IV was unknown and both
    ``plaintext`` and ``raw`` start at message byte 16. ``raw`` is everything decrypted
    before padding removal (kept so callers can show bad-padding output). ``reason`` is
    ``"ok"`` or a plain-words explanation.
    """

    plaintext: bytes | None
    raw: bytes
    padding_ok: bool
    reason: str
    first_block_known: bool

    @property
    def ok(self) -> bool:
        """True when a plaintext with valid padding was obtained."""
        return self.plaintext is not None and self.padding_ok


def strip_pkcs7(raw: bytes) -> tuple[bytes | None, str]:
    """Strictly remove PKCS#7 padding (1..16, all pad bytes equal): ``(plaintext, "ok")`` or
    ``(None, reason)``."""
    if not raw:
        return None, "nothing to unpad"
    pad = raw[-1]
    if pad == 0 or pad > BLOCK:
        return None, f"bad padding: last byte 0x{pad:02x} (must be 0x01..0x10)"
    if pad > len(raw):
        return None, f"bad padding: {pad} pad bytes but only {len(raw)} bytes decrypted"
    if raw[-pad:] != _PADS[pad]:
        return None, f"bad padding: the last {pad} bytes are not all 0x{pad:02x}"
    return raw[:-pad], "ok"


def pkcs7_pad(plaintext: bytes) -> bytes:
    """PKCS#7 pad to a 16-byte multiple (a full block when already aligned)."""
    pad = BLOCK - (len(plaintext) % BLOCK)
    return plaintext + bytes((pad,)) * pad


def _check_key(key: bytes) -> None:
    if len(key) != _KEY_LEN:
        raise ValueError(f"AES-128 key is {len(key)} bytes, expected 16")


def _check_iv(iv: bytes | None) -> None:
    if iv is not None and len(iv) != BLOCK:
        raise ValueError(f"IV is {len(iv)} bytes, expected 16")


class CbcDirection:
    """Stateful decryptor for one direction of a TCP session (Particle IV rule).

    ``iv=None`` means "unknown" (capture started mid-session): the first frame's first
    block is reported unknown, the rest decrypts; the IV is then known from that frame on.
    :meth:`decrypt` never raises.
    """

    __slots__ = ("_cbc", "_ecb", "frames", "iv")

    def __init__(self, key: bytes, iv: bytes | None) -> None:
        _check_key(key)
        _check_iv(iv)
        self._ecb = Cipher(algorithms.AES(bytes(key)), modes.ECB()).decryptor()
        self._cbc = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(BLOCK))).decryptor()
        self.iv: bytes | None = bytes(iv) if iv is not None else None
        self.frames = 0

    def decrypt_plaintext(self, frame_ct: bytes) -> bytes | None:
        """Fast path of :meth:`decrypt` for the common case: the plaintext when the IV is
        known, the length a positive multiple of 16 and the padding valid (the IV then
        advances as in :meth:`decrypt`). Otherwise None and nothing changes: call
        :meth:`decrypt` for the full result."""
        iv = self.iv
        n = len(frame_ct)
        if iv is None or n < BLOCK or n & 15:
            return None
        ct = bytes(frame_ct)
        raw = self._cbc.update(iv + ct)
        pad = raw[-1]
        if pad == 0 or pad > BLOCK or not raw.endswith(_PADS[pad]):
            return None
        self.iv = ct[:BLOCK]
        self.frames += 1
        return raw[BLOCK:-pad]

    def decrypt(self, frame_ct: bytes) -> DecryptResult:
        """Decrypt one frame's ciphertext (without the length prefix), then advance the IV."""
        ct = bytes(frame_ct)
        n = len(ct)
        self.frames += 1
        if n < BLOCK or n % BLOCK:
            if n >= BLOCK:
                self.iv = ct[:BLOCK]
            return DecryptResult(
                None, b"", False, f"ciphertext length {n} is not a positive multiple of 16", False
            )
        iv = self.iv
        self.iv = ct[:BLOCK]
        if iv is not None:
            x = int.from_bytes(self._ecb.update(ct), "big") ^ int.from_bytes(
                iv + ct[:-BLOCK], "big"
            )
            raw = x.to_bytes(n, "big")
            known = True
        elif n == BLOCK:
            return DecryptResult(
                None,
                b"",
                False,
                "IV unknown (capture started mid-session): the only block cannot be decrypted",
                False,
            )
        else:
            x = int.from_bytes(self._ecb.update(ct[BLOCK:]), "big") ^ int.from_bytes(
                ct[:-BLOCK], "big"
            )
            raw = x.to_bytes(n - BLOCK, "big")
            known = False
        plaintext, reason = strip_pkcs7(raw)
        if plaintext is None:
            return DecryptResult(None, raw, False, reason, known)
        if not known:
            reason = "IV unknown (capture started mid-session): first 16 bytes not decrypted"
        return DecryptResult(plaintext, raw, True, reason, known)

    def __repr__(self) -> str:
        state = "known" if self.iv is not None else "unknown"
        return f"CbcDirection(key=<hidden>, iv={state}, frames={self.frames})"

    __str__ = __repr__


class CbcEncryptor:
    """Encrypts one direction's frames with the Particle IV rule (for simulators/notebooks)."""

    __slots__ = ("_ecb", "iv")

    def __init__(self, key: bytes, iv: bytes) -> None:
        _check_key(key)
        _check_iv(iv)
        self._ecb = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
        self.iv = bytes(iv)

    def encrypt(self, plaintext: bytes) -> bytes:
        """PKCS#7-pad and CBC-encrypt one message; the next IV is its first ciphertext block."""
        padded = pkcs7_pad(bytes(plaintext))
        prev = int.from_bytes(self.iv, "big")
        out = []
        for i in range(0, len(padded), BLOCK):
            x = int.from_bytes(padded[i : i + BLOCK], "big") ^ prev
            block = self._ecb.update(x.to_bytes(BLOCK, "big"))
            out.append(block)
            prev = int.from_bytes(block, "big")
        ct = b"".join(out)
        self.iv = ct[:BLOCK]
        return ct

    @staticmethod
    def frame(ct: bytes) -> bytes:
        """Prefix a ciphertext with its u16 big-endian length (the TCP frame format)."""
        if len(ct) > 0xFFFF:
            raise ValueError(f"frame of {len(ct)} bytes exceeds the 16-bit length prefix")
        return len(ct).to_bytes(2, "big") + ct

    def encrypt_frame(self, plaintext: bytes) -> bytes:
        """:meth:`encrypt` then :meth:`frame`."""
        return self.frame(self.encrypt(plaintext))

    def __repr__(self) -> str:
        return "CbcEncryptor(key=<hidden>)"

    __str__ = __repr__


def coap_header_plausible(pt: bytes) -> bool:
    """Cheap CoAP sanity check: version 1, token length ≤ 8, code class 0/2/4/5."""
    if len(pt) < 4:
        return False
    b0 = pt[0]
    tkl = b0 & 0x0F
    return b0 >> 6 == 1 and tkl <= 8 and len(pt) >= 4 + tkl and pt[1] >> 5 in (0, 2, 4, 5)


def trial_decrypt_score(key: bytes, frame_ct: bytes, prev_first_block: bytes | None) -> bool:
    """Does ``key`` plausibly fit this frame?

    With the previous frame's first ciphertext block (= this frame's IV): full decrypt,
    strict PKCS#7 and CoAP header plausibility. Without: only the last block's PKCS#7,
    using the preceding ciphertext block (frames ≥ 32 bytes; shorter frames give False).
    Never raises on bad input (a wrong-size key gives False).
    """
    if len(key) != _KEY_LEN or len(frame_ct) < BLOCK or len(frame_ct) % BLOCK:
        return False
    if prev_first_block is not None:
        if len(prev_first_block) != BLOCK:
            return False
        result = CbcDirection(key, prev_first_block).decrypt(frame_ct)
        return (
            result.ok and result.plaintext is not None and coap_header_plausible(result.plaintext)
        )
    if len(frame_ct) < 2 * BLOCK:
        return False
    result = CbcDirection(key, None).decrypt(frame_ct[-2 * BLOCK :])
    return result.padding_ok


def score_session_key(key: bytes, frames: Sequence[bytes]) -> int:
    """Count frames of ONE direction (consecutive, in order) that ``key`` plausibly decrypts.

    The first frame is tried without IV, each later one with the previous frame's first
    block. Used to pick the logged session key that fits a mid-session capture.
    """
    score = 0
    prev: bytes | None = None
    for ct in frames:
        if trial_decrypt_score(key, ct, prev):
            score += 1
        prev = ct[:BLOCK] if len(ct) >= BLOCK else None
    return score
