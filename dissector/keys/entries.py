"""Loaded key entries, their fingerprints, and load notes (skipped files, bad lines)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.keys.serverfile import ServerAddress
from dissector.keys.sniff import KeyObject

__all__ = ["KeyEntry", "LoadProblem", "PublicKey", "SkippedFile", "fingerprint"]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(public_der: bytes) -> str:
    """SHA-256 (hex) of the canonical SubjectPublicKeyInfo DER of a public key.

    Any DER public key form (SPKI, PKCS#1) is re-encoded first so equal keys match; bytes
    that do not parse are hashed as they are.
    """
    try:
        key = serialization.load_der_public_key(bytes(public_der))
        canonical = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except Exception:  # not a parsable key: hash the raw bytes
        canonical = bytes(public_der)
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file a directory load did not use, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """A problem inside a loaded file (e.g. a malformed key log line)."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


class KeyEntry:
    """One loaded key (private or public) with what is known about it.

    ``role`` is ``"server"``, ``"device"`` or None (unknown). ``repr``/``str`` show only
    type, size, fingerprint, device ID and source file names.
    """

    __slots__ = (
        "address",
        "address_problem",
        "bits",
        "curve",
        "device_id",
        "fingerprint",
        "forms",
        "key",
        "private",
        "public_der",
        "public_key",
        "role",
        "sources",
        "transport",
    )

    def __init__(
        self,
        key: KeyObject,
        role: str | None = None,
        device_id: str | None = None,
        source: str = "<memory>",
        form: str = "",
    ) -> None:
        self.key = key
        self.private = isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        public: PublicKey = (
            key.public_key()
            if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
            else key
        )
        self.public_key: PublicKey = public
        self.public_der = _spki(public)
        self.fingerprint = hashlib.sha256(self.public_der).hexdigest()
        self.bits: int = public.key_size
        self.curve: str | None = (
            public.curve.name if isinstance(public, ec.EllipticCurvePublicKey) else None
        )
        self.role = role
        self.device_id = device_id
        self.sources: list[str] = [source]
        self.forms: list[str] = [form] if form else []
        self.address: ServerAddress | None = None
        self.address_problem: str | None = None
        self.transport: str | None = None

    @property
    def algorithm(self) -> str:
        """``"rsa"`` or ``"ec"``."""
        return "rsa" if isinstance(self.public_key, rsa.RSAPublicKey) else "ec"

    @property
    def kind(self) -> str:
        """``rsa-private``, ``rsa-public``, ``ec-private`` or ``ec-public``."""
        return f"{self.algorithm}-{'private' if self.private else 'public'}"

    def describe(self) -> dict[str, Any]:
        """Plain facts for users (no secrets)."""
        return {
            "kind": self.kind,
            "role": self.role or "unknown",
            "bits": self.bits,
            "curve": self.curve,
            "fingerprint": self.fingerprint,
            "device_id": self.device_id,
            "host": self.address.host if self.address else None,
            "port": self.address.port if self.address else None,
            "address_problem": self.address_problem,
            "form": "; ".join(self.forms) or None,
            "source": ", ".join(self.sources),
        }

    def __repr__(self) -> str:
        size = self.curve or f"{self.bits} bits"
        parts = [self.kind, size, f"role={self.role or 'unknown'}", f"fp={self.fingerprint[:16]}"]
        if self.device_id:
            parts.append(f"device={self.device_id}")
        if self.address:
            parts.append(f"address={self.address}")
        parts.append("source=" + ",".join(os.path.basename(s) for s in self.sources))
        return f"KeyEntry({', '.join(parts)})"

    __str__ = __repr__
