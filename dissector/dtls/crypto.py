"""TLS 1.2 key derivation and DTLS record protection (spec §6.3, §6.7).

* :func:`prf` — the RFC 5246 PRF (P_SHA256, or P_SHA384 for ``*_SHA384`` suites).
* :func:`derive_master` / :func:`key_block` — master secret and per-direction keys.
* :class:`RecordProtection` — decrypts/encrypts the records of one direction: AES-CCM(-8),
  AES-GCM, ChaCha20-Poly1305 (RFC 7905) and AES-CBC with HMAC (MAC-then-encrypt or
  encrypt-then-MAC), including the draft-05 connection-ID form Particle devices use (type
  25: CID in the AAD, inner plaintext ``content ‖ real type ‖ zero padding``); a CID record
  whose tag fails with the draft-05 additional data is tried with the RFC 9146 form.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from .records import CT_TLS12_CID, VERSION_DTLS_1_2, DtlsRecord, build_record


class RecordDecryptError(Exception):
    """A protected record could not be opened (tag/MAC failure, bad padding, too short)."""


CipherKind = Literal["ccm", "gcm", "cbc", "chacha"]


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """What the record layer and key expansion need to know about a cipher suite."""

    code: int
    name: str
    kind: CipherKind
    key_len: int
    fixed_iv_len: int  # implicit IV bytes from the key block (AEAD salt); 0 for CBC
    mac_hash: str | None  # HMAC hash for CBC suites
    mac_len: int  # MAC length (CBC) / MAC key length
    tag_len: int  # AEAD tag length
    prf_hash: str = "sha256"

    @property
    def explicit_nonce_len(self) -> int:
        """Per-record explicit nonce (AEAD) or IV (CBC) at the start of the fragment
        (none for ChaCha20-Poly1305: its nonce is the IV XOR the sequence number)."""
        if self.kind == "chacha":
            return 0
        return 16 if self.kind == "cbc" else 8


def _aead(code: int, name: str, kind: CipherKind, key: int, tag: int, prf: str) -> CipherSuite:
    return CipherSuite(code, name, kind, key, 4, None, 0, tag, prf)


def _chacha(code: int, name: str) -> CipherSuite:
    return CipherSuite(code, name, "chacha", 32, 12, None, 0, 16, "sha256")


def _cbc(code: int, name: str, key: int, mac: str) -> CipherSuite:
    mac_len = hashlib.new(mac).digest_size
    return CipherSuite(code, name, "cbc", key, 0, mac, mac_len, 0, "sha256")


SUITES: dict[int, CipherSuite] = {
    s.code: s
    for s in (
        _aead(0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", "ccm", 16, 8, "sha256"),
        _aead(0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", "ccm", 32, 8, "sha256"),
        _aead(0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ccm", 16, 16, "sha256"),
        _aead(0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM", "ccm", 32, 16, "sha256"),
        _aead(0xC0A8, "TLS_PSK_WITH_AES_128_CCM_8", "ccm", 16, 8, "sha256"),
        _aead(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "gcm", 16, 16, "sha256"),
        _aead(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "gcm", 16, 16, "sha256"),
        _aead(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "gcm", 32, 16, "sha384"),
        _aead(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "gcm", 32, 16, "sha384"),
        _chacha(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        _chacha(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        _cbc(0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        _cbc(0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        _cbc(0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
        _cbc(0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
        _cbc(0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
        _cbc(0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    )
}
"""Cipher suites this module can decrypt, by IANA code."""


def get_suite(suite: int | CipherSuite) -> CipherSuite:
    """Look a suite up by code; ``KeyError`` for unsupported suites."""
    return suite if isinstance(suite, CipherSuite) else SUITES[suite]


def suite_name(code: int) -> str:
    """IANA name of a supported suite, else ``0xXXXX``."""
    s = SUITES.get(code)
    return s.name if s else f"0x{code:04X}"


# --------------------------------------------------------------------------- PRF


def p_hash(secret: bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """RFC 5246 §5 ``P_hash(secret, seed)`` truncated to ``length`` bytes."""
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return bytes(out[:length])


def prf(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """TLS 1.2 PRF: ``P_<hash>(secret, label ‖ seed)``."""
    return p_hash(secret, label + seed, length, hash_name)


def derive_master(
    pre_master: bytes, client_random: bytes, server_random: bytes, hash_name: str = "sha256"
) -> bytes:
    """48-byte master secret (no extended master secret)."""
    return prf(pre_master, b"master secret", client_random + server_random, 48, hash_name)


def derive_extended_master(
    pre_master: bytes, session_hash: bytes, hash_name: str = "sha256"
) -> bytes:
    """48-byte master secret with the RFC 7627 extended master secret (extension 23)."""
    return prf(pre_master, b"extended master secret", session_hash, 48, hash_name)


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """The key material of both directions (client = device, server = cloud)."""

    suite: CipherSuite
    client_mac_key: bytes
    server_mac_key: bytes
    client_key: bytes
    server_key: bytes
    client_iv: bytes
    server_iv: bytes


def key_block(
    master: bytes, client_random: bytes, server_random: bytes, suite: int | CipherSuite
) -> KeyBlock:
    """Expand the master secret into write keys, IVs and MAC keys for ``suite``.

    ``KeyError`` if the suite is not supported.
    """
    s = get_suite(suite)
    mac, key, iv = s.mac_len, s.key_len, s.fixed_iv_len
    block = prf(
        master, b"key expansion", server_random + client_random, 2 * (mac + key + iv), s.prf_hash
    )
    parts = []
    pos = 0
    for n in (mac, mac, key, key, iv, iv):
        parts.append(block[pos : pos + n])
        pos += n
    return KeyBlock(s, *parts)


# ------------------------------------------------------------------ record protection


_AAD_TAIL = struct.Struct(">BHH")
_AAD_CID_HEAD = struct.Struct(">BH")


def _additional_data(
    seq_num: bytes, content_type: int, version: int, cid: bytes | None, length: int
) -> bytes:
    """AEAD additional data / MAC header; draft-05 CID form when ``cid`` is given."""
    if cid is None:
        return seq_num + _AAD_TAIL.pack(content_type, version, length)
    return (
        seq_num
        + _AAD_CID_HEAD.pack(CT_TLS12_CID, version)
        + cid
        + _AAD_CID_HEAD.pack(len(cid), length)
    )


_RFC9146_PLACEHOLDER = b"\xff" * 8


def _additional_data_rfc9146(seq_num: bytes, version: int, cid: bytes, length: int) -> bytes:
    """RFC 9146 §5 additional data of a CID record (mbedTLS 3.x without the draft compat):
    ``ff×8 ‖ 25 ‖ cid_len ‖ 25 ‖ version ‖ epoch‖seq ‖ cid ‖ length``."""
    return (
        _RFC9146_PLACEHOLDER
        + bytes((CT_TLS12_CID, len(cid), CT_TLS12_CID))
        + version.to_bytes(2, "big")
        + seq_num
        + cid
        + length.to_bytes(2, "big")
    )


def _candidate_aads(
    seq_num: bytes, content_type: int, version: int, cid: bytes | None, length: int
) -> tuple[bytes, ...]:
    """Additional data to try: the draft-05 form Particle's fork uses, then RFC 9146."""
    first = _additional_data(seq_num, content_type, version, cid, length)
    if cid is None:
        return (first,)
    return first, _additional_data_rfc9146(seq_num, version, cid, length)


def split_inner_plaintext(inner: bytes) -> tuple[int, bytes]:
    """Split a CID record's inner plaintext into (real content type, content).

    Raises :class:`RecordDecryptError` when it is all zero (no content type).
    """
    end = len(inner.rstrip(b"\x00"))
    if end == 0:
        raise RecordDecryptError("inner plaintext has no content type")
    return inner[end - 1], inner[: end - 1]


def build_inner_plaintext(content_type: int, content: bytes, granularity: int = 16) -> bytes:
    """``content ‖ type ‖ zeros`` padded to a multiple of ``granularity`` (mbedTLS default)."""
    pad = (-(len(content) + 1)) % granularity if granularity > 1 else 0
    return content + bytes((content_type,)) + bytes(pad)


class RecordProtection:
    """Protection state of one direction: open and seal records with one write key.

    ``key``/``iv``/``mac_key`` are the sender's write key, implicit IV (4 bytes for
    AEAD suites, empty for CBC) and MAC key (CBC only). The cipher objects are created
    once here, not per record.
    """

    __slots__ = ("_aead", "_key", "encrypt_then_mac", "iv", "mac_key", "suite")

    def __init__(
        self,
        suite: int | CipherSuite,
        key: bytes,
        iv: bytes = b"",
        mac_key: bytes = b"",
        encrypt_then_mac: bool = False,
    ) -> None:
        self.suite = get_suite(suite)
        if len(key) != self.suite.key_len:
            raise ValueError(f"{self.suite.name} needs a {self.suite.key_len}-byte key")
        if len(iv) != self.suite.fixed_iv_len:
            raise ValueError(f"{self.suite.name} needs a {self.suite.fixed_iv_len}-byte IV")
        if self.suite.kind == "cbc" and len(mac_key) != self.suite.mac_len:
            raise ValueError(f"{self.suite.name} needs a {self.suite.mac_len}-byte MAC key")
        self._key = key
        self.iv = iv
        self.mac_key = mac_key
        self.encrypt_then_mac = encrypt_then_mac
        self._aead: AESCCM | AESGCM | ChaCha20Poly1305 | None
        if self.suite.kind == "ccm":
            self._aead = AESCCM(key, tag_length=self.suite.tag_len)
        elif self.suite.kind == "gcm":
            self._aead = AESGCM(key)
        elif self.suite.kind == "chacha":
            self._aead = ChaCha20Poly1305(key)
        else:
            self._aead = None

    @classmethod
    def for_client(cls, kb: KeyBlock, encrypt_then_mac: bool = False) -> RecordProtection:
        """Protection of client→server (device→cloud) records."""
        return cls(kb.suite, kb.client_key, kb.client_iv, kb.client_mac_key, encrypt_then_mac)

    @classmethod
    def for_server(cls, kb: KeyBlock, encrypt_then_mac: bool = False) -> RecordProtection:
        """Protection of server→client (cloud→device) records."""
        return cls(kb.suite, kb.server_key, kb.server_iv, kb.server_mac_key, encrypt_then_mac)

    # ------------------------------------------------------------------ decrypt

    def decrypt(self, record: DtlsRecord, cid: bytes | None = None) -> bytes:
        """Open ``record`` and return its content (inner plaintext unwrapped for CID records).

        ``cid`` overrides the record's CID in the additional data. Raises
        :class:`RecordDecryptError`.
        """
        return self.decrypt_typed(record, cid)[1]

    def decrypt_typed(self, record: DtlsRecord, cid: bytes | None = None) -> tuple[int, bytes]:
        """Open ``record``; return ``(real content type, content)``.

        For type-25 (and 253) records the draft-05 CID additional data is used and the
        real content type is taken from the inner plaintext.
        """
        is_cid = record.content_type == CT_TLS12_CID
        use_cid = (cid if cid is not None else (record.cid or b"")) if is_cid else None
        if self._aead is not None:
            inner = self._open_aead(record, use_cid)
        else:
            inner = self._open_cbc(record, use_cid)
        if is_cid:
            return split_inner_plaintext(inner)
        return record.content_type, inner

    def _nonce(self, seq_num: bytes, explicit: bytes) -> bytes:
        if self.suite.kind == "chacha":  # RFC 7905: IV XOR (0000 ‖ epoch‖seq)
            return (int.from_bytes(self.iv, "big") ^ int.from_bytes(seq_num, "big")).to_bytes(
                12, "big"
            )
        return self.iv + explicit

    def _open_aead(self, record: DtlsRecord, cid: bytes | None) -> bytes:
        frag = record.fragment
        tag_len = self.suite.tag_len
        explicit = self.suite.explicit_nonce_len
        plain_len = len(frag) - explicit - tag_len
        if plain_len < 0:
            raise RecordDecryptError(f"record too short for {self.suite.name}: {len(frag)} bytes")
        assert self._aead is not None
        seq_num = record.seq_num
        nonce, body = self._nonce(seq_num, frag[:explicit]), frag[explicit:]
        aad = _additional_data(seq_num, record.content_type, record.version, cid, plain_len)
        try:
            return self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            if cid is None:
                raise RecordDecryptError("tag check failed") from None
        try:  # a CID record of an RFC 9146 peer (not Particle's draft-05 fork)
            aad = _additional_data_rfc9146(seq_num, record.version, cid, plain_len)
            return self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise RecordDecryptError("tag check failed") from None

    def _open_cbc(self, record: DtlsRecord, cid: bytes | None) -> bytes:
        frag = record.fragment
        mac_len = self.suite.mac_len
        assert self.suite.mac_hash is not None
        if self.encrypt_then_mac:
            body_len = len(frag) - mac_len
            if body_len < 32 or (body_len - 16) % 16:
                raise RecordDecryptError(f"bad CBC record length {len(frag)}")
            body, mac = frag[:body_len], frag[body_len:]
            aads = _candidate_aads(
                record.seq_num, record.content_type, record.version, cid, body_len
            )
            if not self._mac_matches(aads, body, mac):
                raise RecordDecryptError("MAC check failed")
            plain = self._cbc_decrypt(body)
            return _strip_padding(plain)
        if len(frag) < 32 or len(frag) % 16:
            raise RecordDecryptError(f"bad CBC record length {len(frag)}")
        plain = _strip_padding(self._cbc_decrypt(frag))
        if len(plain) < mac_len:
            raise RecordDecryptError("record shorter than its MAC")
        content, mac = plain[: len(plain) - mac_len], plain[len(plain) - mac_len :]
        aads = _candidate_aads(
            record.seq_num, record.content_type, record.version, cid, len(content)
        )
        if not self._mac_matches(aads, content, mac):
            raise RecordDecryptError("MAC check failed")
        return content

    def _mac_matches(self, aads: tuple[bytes, ...], data: bytes, mac: bytes) -> bool:
        assert self.suite.mac_hash is not None
        return any(
            hmac.compare_digest(hmac.digest(self.mac_key, aad + data, self.suite.mac_hash), mac)
            for aad in aads
        )

    def _cbc_decrypt(self, iv_and_ct: bytes) -> bytes:
        dec = Cipher(algorithms.AES(self._key), modes.CBC(iv_and_ct[:16])).decryptor()
        return dec.update(iv_and_ct[16:]) + dec.finalize()

    # ------------------------------------------------------------------ encrypt

    def encrypt(
        self,
        content_type: int,
        epoch: int,
        seq: int,
        plaintext: bytes,
        cid: bytes | None = None,
        *,
        version: int = VERSION_DTLS_1_2,
        explicit_nonce: bytes | None = None,
        rfc9146: bool = False,
    ) -> bytes:
        """Seal ``plaintext`` into a complete wire record.

        With ``cid`` the record is a type-25 record whose inner plaintext carries
        ``content_type``; its additional data is the draft-05 form (Particle's fork), or
        the RFC 9146 one with ``rfc9146``. ``explicit_nonce`` defaults to ``epoch ‖ seq``
        for AEAD suites (as mbedTLS does) and to 16 random bytes (the IV) for CBC suites.
        """
        seq_num = ((epoch << 48) | seq).to_bytes(8, "big")
        if cid is not None:
            inner = build_inner_plaintext(content_type, plaintext)
            wire_type = CT_TLS12_CID
        else:
            inner = plaintext
            wire_type = content_type
        if self._aead is not None:
            if self.suite.kind == "chacha":
                nonce = b""
            else:
                nonce = explicit_nonce if explicit_nonce is not None else seq_num
                if len(nonce) != 8:
                    raise ValueError("explicit nonce must be 8 bytes")
            aad = _aad_for(seq_num, wire_type, version, cid, len(inner), rfc9146)
            frag = nonce + self._aead.encrypt(self._nonce(seq_num, nonce), inner, aad)
        else:
            frag = self._seal_cbc(seq_num, wire_type, version, cid, inner, explicit_nonce, rfc9146)
        return build_record(wire_type, epoch, seq, frag, version=version, cid=cid)

    def _seal_cbc(
        self,
        seq_num: bytes,
        wire_type: int,
        version: int,
        cid: bytes | None,
        inner: bytes,
        iv: bytes | None,
        rfc9146: bool = False,
    ) -> bytes:
        assert self.suite.mac_hash is not None
        iv = iv if iv is not None else os.urandom(16)
        if len(iv) != 16:
            raise ValueError("CBC IV must be 16 bytes")
        enc = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        if self.encrypt_then_mac:
            padded = _pad(inner)
            body = iv + enc.update(padded) + enc.finalize()
            aad = _aad_for(seq_num, wire_type, version, cid, len(body), rfc9146)
            return body + hmac.digest(self.mac_key, aad + body, self.suite.mac_hash)
        aad = _aad_for(seq_num, wire_type, version, cid, len(inner), rfc9146)
        mac = hmac.digest(self.mac_key, aad + inner, self.suite.mac_hash)
        return iv + enc.update(_pad(inner + mac)) + enc.finalize()


def _aad_for(
    seq_num: bytes, content_type: int, version: int, cid: bytes | None, length: int, rfc: bool
) -> bytes:
    if rfc and cid is not None:
        return _additional_data_rfc9146(seq_num, version, cid, length)
    return _additional_data(seq_num, content_type, version, cid, length)


def _pad(data: bytes) -> bytes:
    p = 15 - len(data) % 16
    return data + bytes((p,)) * (p + 1)


def _strip_padding(plain: bytes) -> bytes:
    if not plain:
        raise RecordDecryptError("empty CBC plaintext")
    p = plain[-1]
    if p + 1 > len(plain) or plain[-(p + 1) :] != bytes((p,)) * (p + 1):
        raise RecordDecryptError("bad CBC padding")
    return plain[: len(plain) - p - 1]
