"""The explicit :class:`KeyRing`: every key and session secret the dissector may use.

No process-global state: a ring is built (``ring.load(path)``) and handed to whoever
needs it. Key objects never show their secrets in ``repr``/``str``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.dtls.keys import (
    PersistedSession,
    SessionPersistError,
    looks_like_session_blob,
    parse_session_persist,
    parse_session_persist_text,
)
from dissector.keys.entries import KeyEntry, LoadProblem, PublicKey, SkippedFile, fingerprint
from dissector.keys.errors import KeyFileError
from dissector.keys.keylog import KeyLogParse, parse_keylog
from dissector.keys.serverfile import ServerAddress
from dissector.keys.sniff import KeyObject, SniffedKey, SniffResult, normalise_device_id, sniff

__all__ = [
    "ROLES",
    "KeyEntry",
    "KeyRing",
    "LoadProblem",
    "SkippedFile",
    "fingerprint",
]

ROLES = ("server", "device", "keylog", "session")
MAX_FILE_SIZE = 64 * 1024 * 1024
_EXPECTED = {
    "server": "a server key (RSA/EC private or public key in PEM or DER, "
    "or a 512/320-byte server key file)",
    "device": "a device key (RSA/EC private or public key, PEM or DER, PKCS#1/PKCS#8/SEC1/SPKI)",
    "keylog": "a key log (PARTICLE_TCP or NSS key log lines)",
    "session": "a persisted DTLS session (SessionPersistData blob or its text form)",
    None: "a key file (RSA/EC key in PEM or DER, server key file) or a key log",
}


class KeyRing:
    """All keys, session key logs and NSS secrets available to one dissection run.

    Load with :meth:`load` (file or directory, recognised by content); query with the
    lookup methods. ``skipped`` lists unusable files of directory loads, ``problems``
    the bad lines inside loaded files.
    """

    def __init__(self) -> None:
        self.entries: list[KeyEntry] = []
        self.skipped: list[SkippedFile] = []
        self.problems: list[LoadProblem] = []
        self._private_by_fp: dict[str, KeyEntry] = {}
        self._public_by_fp: dict[str, KeyEntry] = {}
        self._by_device: dict[str, list[KeyEntry]] = {}
        self._tcp_sessions: dict[bytes, bytes] = {}
        self._nss: dict[str, dict[bytes, bytes]] = {}
        self._keylogs: list[dict[str, Any]] = []
        self._sessions: list[tuple[str, PersistedSession]] = []

    # ------------------------------------------------------------------ loading

    def load(self, path: str | os.PathLike[str], role: str | None = None) -> int:
        """Load a file or (recursively) a directory; returns how many new items were added.

        A single file must be usable: otherwise :class:`KeyFileError` names the file, what
        was expected (by ``role``: ``"server"``, ``"device"``, ``"keylog"`` or None) and
        what was found. In a directory, unusable files are listed in ``skipped``.
        """
        if role not in _EXPECTED:
            raise ValueError(f"role must be one of {ROLES} or None, not {role!r}")
        p = Path(path)
        if p.is_dir():
            return self._load_dir(p, role)
        if not p.exists():
            raise KeyFileError("no such file or directory", str(p))
        return self._load_file(p, role, explicit=True)

    def load_bytes(self, data: bytes, name: str = "<memory>", role: str | None = None) -> int:
        """Like :meth:`load` for one file's content; raises :class:`KeyFileError` if unusable."""
        if role not in _EXPECTED:
            raise ValueError(f"role must be one of {ROLES} or None, not {role!r}")
        data = bytes(data)
        if self._add_session_blob(data, name, role, explicit=True):
            return 1
        return self._add_sniffed(sniff(data), name, role, explicit=True, device_id=None)

    def add_keylog_text(self, data: bytes, source: str) -> int:
        """Add the entries of key log text found inside a capture (a pcapng decryption
        secrets block); never raises: lines that cannot be read become ``problems``."""
        parsed = parse_keylog(bytes(data).decode("utf-8", "replace"))
        return self._add_keylog(parsed, source)

    def _load_dir(self, root: Path, role: str | None) -> int:
        added = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                added += self._load_file(Path(dirpath) / name, role, explicit=False)
        return added

    def _load_file(self, path: Path, role: str | None, explicit: bool) -> int:
        name = str(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_SIZE:
                raise KeyFileError(f"{size} bytes is too large for a key file or key log", name)
            data = path.read_bytes()
        except OSError as exc:
            err = KeyFileError(f"cannot read ({exc.strerror or exc})", name)
            if explicit:
                raise err from None
            self.skipped.append(SkippedFile(name, err.reason))
            return 0
        except KeyFileError as err:
            if explicit:
                raise
            self.skipped.append(SkippedFile(name, err.reason))
            return 0
        try:
            if self._add_session_blob(data, name, role, explicit):
                return 1
        except KeyFileError as err:
            if explicit:
                raise
            self.skipped.append(SkippedFile(name, err.reason))
            return 0
        result = sniff(data)
        if result.device_id_file is not None and not explicit:
            return 0  # device_id.txt: used through _device_id_for(), not a key
        try:
            return self._add_sniffed(
                result, name, role, explicit=explicit, device_id=_device_id_for(path)
            )
        except KeyFileError as err:
            if explicit:
                raise
            self.skipped.append(SkippedFile(name, err.reason))
            return 0

    def _add_sniffed(
        self,
        result: SniffResult,
        name: str,
        role: str | None,
        explicit: bool,
        device_id: str | None,
    ) -> int:
        expected = _EXPECTED[role]
        if not result.recognised:
            if not explicit:
                raise KeyFileError(f"not a key file or key log: {result.found}", name)
            raise KeyFileError(f"expected {expected}, found {result.found}", name)
        if explicit and role == "keylog" and result.keylog is None:
            raise KeyFileError(f"expected {expected}, found {_what(result)}", name)
        if explicit and role in ("server", "device") and not result.keys:
            raise KeyFileError(f"expected {expected}, found {_what(result)}", name)
        if explicit and role == "device" and all(k.transport for k in result.keys):
            raise KeyFileError(f"expected {expected}, found {_what(result)}", name)
        added = 0
        if result.keylog is not None:
            added += self._add_keylog(result.keylog, name)
        base = os.path.basename(name)
        for sniffed in result.keys:
            added += self._add_sniffed_key(sniffed, name, base, role, device_id)
        return added

    def _add_sniffed_key(
        self, sniffed: SniffedKey, name: str, base: str, role: str | None, device_id: str | None
    ) -> int:
        dev = sniffed.device_id or device_id
        if sniffed.transport is not None:
            key_role: str | None = "server"
        elif sniffed.role is not None:  # the storage said (a dump's device key slot)
            key_role = sniffed.role
        elif role in ("server", "device"):
            key_role = role
        else:
            key_role = _role_hint(base, dev, sniffed.key)
        before = len(self.entries)
        entry = self._add(sniffed.key, key_role, dev, name, sniffed.form)
        if sniffed.address is not None or sniffed.address_problem is not None:
            entry.address = entry.address or sniffed.address
            entry.address_problem = entry.address_problem or sniffed.address_problem
        if sniffed.transport is not None:
            entry.transport = sniffed.transport
        return len(self.entries) - before

    def _add_session_blob(self, data: bytes, name: str, role: str | None, explicit: bool) -> bool:
        """Recognise a persisted DTLS session (binary or text) by content; True if added.

        A session is also a key log entry: its client random maps to its master secret.
        """
        session = _parse_session(data)
        if session is None:
            if explicit and role == "session":
                raise KeyFileError(
                    f"expected {_EXPECTED['session']}, found {sniff(data).found}", name
                )
            return False
        if role not in (None, "session"):
            raise KeyFileError(f"expected {_EXPECTED[role]}, found a persisted DTLS session", name)
        self._sessions.append((name, session))
        if session.master is not None:
            self._nss.setdefault("CLIENT_RANDOM", {}).setdefault(
                session.client_random, session.master
            )
        return True

    def persisted_sessions(self) -> list[PersistedSession]:
        """Every persisted DTLS session loaded (for handshake-less resumptions)."""
        return [s for _, s in self._sessions]

    def _add_keylog(self, parsed: KeyLogParse, name: str) -> int:
        added = 0
        for line, reason in parsed.problems:
            self.problems.append(LoadProblem(name, line, reason))
        for nonce, creds in parsed.tcp:
            known = self._tcp_sessions.get(nonce)
            if known is None:
                self._tcp_sessions[nonce] = creds
                added += 1
            elif known != creds:
                self.problems.append(
                    LoadProblem(
                        name,
                        None,
                        f"nonce {nonce[:4].hex()}… logged twice with different credentials; "
                        "keeping the first",
                    )
                )
        for label, first, secret in parsed.nss:
            table = self._nss.setdefault(label, {})
            if first not in table:
                table[first] = secret
                added += 1
        self._keylogs.append({"source": name, "tcp": len(parsed.tcp), "nss": len(parsed.nss)})
        return added

    # ------------------------------------------------------------------ adding

    def _add(
        self, key: KeyObject, role: str | None, device_id: str | None, source: str, form: str
    ) -> KeyEntry:
        entry = KeyEntry(key, role, device_id, source, form)
        table = self._private_by_fp if entry.private else self._public_by_fp
        known = table.get(entry.fingerprint)
        if known is not None:
            if source not in known.sources:
                known.sources.append(source)
            if form and form not in known.forms:
                known.forms.append(form)
            known.role = known.role or role
            if device_id and not known.device_id:
                known.device_id = device_id
                self._by_device.setdefault(device_id, []).append(known)
            return known
        table[entry.fingerprint] = entry
        self.entries.append(entry)
        if device_id:
            self._by_device.setdefault(device_id, []).append(entry)
        return entry

    def add_key(
        self,
        key: KeyObject,
        role: str | None = None,
        device_id: str | None = None,
        source: str = "<memory>",
    ) -> KeyEntry:
        """Add an RSA/EC key object (private or public) programmatically; returns its entry.

        Without a role the key is classified like a loaded file (device ID → device,
        RSA ≥ 2048 bits → server, smaller RSA → device, EC → unknown).
        """
        dev = normalise_device_id(device_id) if device_id else None
        if device_id and dev is None:
            raise ValueError("device_id must be 24 hex characters")
        if role is None:
            role = _role_hint("", dev, key)
        return self._add(key, role, dev, source, "")

    def associate_device_id(self, public_der: bytes, device_id: str) -> bool:
        """Record that the key with this public DER belongs to ``device_id`` (e.g. learnt
        from a handshake); True if a loaded key matched."""
        dev = normalise_device_id(device_id)
        if dev is None:
            return False
        fp = fingerprint(public_der)
        matched = False
        for table in (self._private_by_fp, self._public_by_fp):
            entry = table.get(fp)
            if entry is not None and entry.device_id is None:
                entry.device_id = dev
                entry.role = entry.role or "device"
                self._by_device.setdefault(dev, []).append(entry)
            matched = matched or entry is not None
        return matched

    def add_tcp_session(self, nonce: bytes, credentials: bytes) -> None:
        """Remember the 40 credential bytes of the TCP session that started with ``nonce``."""
        if len(nonce) != 40 or len(credentials) != 40:
            raise ValueError("a TCP session needs a 40-byte nonce and 40-byte credentials")
        self._tcp_sessions[bytes(nonce)] = bytes(credentials)

    def add_nss_secret(self, label: str, client_random: bytes, secret: bytes) -> None:
        """Remember one NSS key log entry (``CLIENT_RANDOM`` → master secret, ...)."""
        self._nss.setdefault(label, {})[bytes(client_random)] = bytes(secret)

    # ------------------------------------------------------------------ lookups

    @staticmethod
    def fingerprint(public_der: bytes) -> str:
        """SHA-256 hex of the canonical SPKI DER (see :func:`fingerprint`)."""
        return fingerprint(public_der)

    def _private_rsa(self, entry: KeyEntry | None) -> rsa.RSAPrivateKey | None:
        if entry is not None and isinstance(entry.key, rsa.RSAPrivateKey):
            return entry.key
        return None

    def device_private_key(
        self, device_id: str | None = None, public_der: bytes | None = None
    ) -> rsa.RSAPrivateKey | None:
        """The device RSA private key for a device ID and/or its public key DER.

        Matching by public key works for any loaded RSA private key, whatever its size or
        role. With neither argument, the only device key if exactly one is loaded.
        """
        if device_id is not None:
            dev = normalise_device_id(device_id)
            for entry in self._by_device.get(dev or "", []):
                found = self._private_rsa(self._private_by_fp.get(entry.fingerprint))
                if found is not None:
                    return found
        if public_der is not None:
            found = self._private_rsa(self._private_by_fp.get(fingerprint(public_der)))
            if found is not None:
                return found
        if device_id is None and public_der is None:
            keys = self.device_private_keys()
            if len(keys) == 1:
                return keys[0]
        return None

    def device_private_keys(self) -> list[rsa.RSAPrivateKey]:
        """All RSA private keys classified as device keys (for trial decryption)."""
        return [
            e.key
            for e in self.entries
            if e.role == "device" and isinstance(e.key, rsa.RSAPrivateKey)
        ]

    def device_public_key(self, device_id: str | None = None) -> PublicKey | None:
        """The device's public key (from a public key file or its private key).

        With no ID, the only device key if exactly one is loaded.
        """
        if device_id is None:
            fps = {e.fingerprint for e in self.entries if e.role == "device"}
            if len(fps) != 1:
                return None
            entries = [e for e in self.entries if e.fingerprint in fps]
        else:
            entries = self._by_device.get(normalise_device_id(device_id) or "", [])
        return entries[0].public_key if entries else None

    def server_private_keys(self) -> list[rsa.RSAPrivateKey]:
        """RSA private keys classified as server keys (≥ 2048 bits or named so)."""
        return [
            e.key
            for e in self.entries
            if e.role == "server" and isinstance(e.key, rsa.RSAPrivateKey)
        ]

    def server_public_keys(self) -> list[rsa.RSAPublicKey]:
        """Server RSA public keys, including those of loaded server private keys (deduped)."""
        seen: set[str] = set()
        out: list[rsa.RSAPublicKey] = []
        for e in self.entries:
            if (
                e.role == "server"
                and isinstance(e.public_key, rsa.RSAPublicKey)
                and e.fingerprint not in seen
            ):
                seen.add(e.fingerprint)
                out.append(e.public_key)
        return out

    def server_entries(self) -> list[KeyEntry]:
        """Entries of all server keys (RSA and EC), with address blocks where loaded."""
        return [e for e in self.entries if e.role == "server"]

    def server_address(self, transport: str = "tcp") -> ServerAddress | None:
        """The address from the first loaded server key file of that transport."""
        for e in self.entries:
            if e.transport == transport and e.address is not None:
                return e.address
        return None

    def ec_private_keys(self) -> list[ec.EllipticCurvePrivateKey]:
        """All EC private keys (device or server)."""
        return [e.key for e in self.entries if isinstance(e.key, ec.EllipticCurvePrivateKey)]

    def ec_public_keys(self) -> list[ec.EllipticCurvePublicKey]:
        """All EC public keys, including those of EC private keys (deduped)."""
        seen: set[str] = set()
        out: list[ec.EllipticCurvePublicKey] = []
        for e in self.entries:
            if isinstance(e.public_key, ec.EllipticCurvePublicKey) and e.fingerprint not in seen:
                seen.add(e.fingerprint)
                out.append(e.public_key)
        return out

    def ec_private_key(self, public_der: bytes) -> ec.EllipticCurvePrivateKey | None:
        """The EC private key whose public key is ``public_der``."""
        entry = self._private_by_fp.get(fingerprint(public_der))
        if entry is not None and isinstance(entry.key, ec.EllipticCurvePrivateKey):
            return entry.key
        return None

    def entry_for(self, public_der: bytes) -> KeyEntry | None:
        """The entry (private preferred) for a public key, or None."""
        fp = fingerprint(public_der)
        return self._private_by_fp.get(fp) or self._public_by_fp.get(fp)

    def tcp_session(self, nonce: bytes) -> bytes | None:
        """The 40 credential bytes logged for the session with this nonce."""
        return self._tcp_sessions.get(bytes(nonce))

    def tcp_sessions(self) -> list[tuple[bytes, bytes]]:
        """All logged ``(nonce, credentials)`` (for trial decryption of mid-session captures)."""
        return list(self._tcp_sessions.items())

    def nss_master(self, client_random: bytes) -> bytes | None:
        """The ``CLIENT_RANDOM`` master secret for this client random."""
        return self._nss.get("CLIENT_RANDOM", {}).get(bytes(client_random))

    def nss_secrets(self, label: str) -> dict[bytes, bytes]:
        """All NSS entries of one label (client random → secret); a copy."""
        return dict(self._nss.get(label, {}))

    @property
    def nss_labels(self) -> list[str]:
        """Labels present in the loaded NSS key logs."""
        return sorted(self._nss)

    # ------------------------------------------------------------------ reporting

    def describe(self) -> list[dict[str, Any]]:
        """What was loaded, one dict per key / key log (no secrets), for ``--verbose``."""
        out = [e.describe() for e in self.entries]
        for log in self._keylogs:
            out.append(
                {
                    "kind": "keylog",
                    "tcp_sessions": log["tcp"],
                    "nss_entries": log["nss"],
                    "source": log["source"],
                }
            )
        return out

    def __len__(self) -> int:
        return len(self.entries) + len(self._tcp_sessions) + sum(map(len, self._nss.values()))

    def __repr__(self) -> str:
        private = sum(1 for e in self.entries if e.private)
        return (
            f"KeyRing(private_keys={private}, public_keys={len(self.entries) - private}, "
            f"tcp_sessions={len(self._tcp_sessions)}, "
            f"nss_secrets={sum(map(len, self._nss.values()))}, skipped={len(self.skipped)})"
        )

    __str__ = __repr__


def _what(result: SniffResult) -> str:
    if result.keylog is not None and not result.keys:
        return "a key log"
    if any(k.transport for k in result.keys):
        return f"a {result.keys[0].form}"
    if result.keys:
        return "an " + result.keys[0].form.split(",")[0]  # "an RSA/EC ... key"
    return result.found


def _device_id_for(path: Path) -> str | None:
    """Device ID from ``<24 hex>.der/.pem/.pub.pem`` names or a ``device_id.txt`` beside
    a ``device_key*`` file."""
    stem = path.name.split(".", 1)[0]
    dev = normalise_device_id(stem)
    if dev is not None:
        return dev
    if path.name.startswith("device_key"):
        sibling = path.parent / "device_id.txt"
        try:
            if sibling.is_file() and sibling.stat().st_size < 256:
                return normalise_device_id(sibling.read_text("ascii", errors="replace"))
        except OSError:
            return None
    return None


def _role_hint(base: str, device_id: str | None, key: KeyObject) -> str | None:
    """Classify a key without an explicit role: device ID → device, ``default_key`` and
    ``server*`` names → server, ``device*`` names → device, RSA by size (≥ 2048 server)."""
    lower = base.lower()
    if device_id:
        return "device"
    if lower.startswith(("default_key", "server")):
        return "server"
    if lower.startswith("device"):
        return "device"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "server" if key.key_size >= 2048 else "device"
    return None


_SESSION_TEXT = re.compile(r"^\s*client_random\s+[0-9A-Fa-f]{64}\s*$", re.MULTILINE)


def _parse_session(data: bytes) -> PersistedSession | None:
    """A persisted DTLS session in ``data`` (text form or binary blob), or None."""
    if len(data) > 1 << 16:
        return None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if not _SESSION_TEXT.search(text) or "master" not in text:
            return None
        try:
            return parse_session_persist_text(text)
        except SessionPersistError:
            return None
    if looks_like_session_blob(data):
        try:
            return parse_session_persist(data)
        except SessionPersistError:
            return None
    return None
