"""Recognise a key file by its content (never by its name).

Understands RSA/EC keys in PEM or DER (PKCS#1, PKCS#8, SEC1, SPKI), DER followed by slot
fill, 512/320-byte server key files, JSON files holding a PEM key, key logs, and device
memory dumps holding key slots (a DCT or a Spark Core's external flash, spec §1.4).
Never raises: what is not understood comes back with a description of what was found.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from dissector.keys.dump import extract_keys_from_dump
from dissector.keys.errors import KeyFileError
from dissector.keys.keylog import KeyLogParse, parse_keylog
from dissector.keys.serverfile import (
    TCP_SERVER_KEY_FILE_LEN,
    UDP_SERVER_KEY_FILE_LEN,
    ServerAddress,
    der_total_length,
    parse_server_key_file,
)

__all__ = ["SniffResult", "SniffedKey", "normalise_device_id", "sniff"]

_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_HEX24_RE = re.compile(r"[0-9A-Fa-f]{24}\Z")
_JSON_ID_FIELDS = ("deviceID", "deviceId", "device_id", "coreID", "coreId", "id")

KeyObject = (
    rsa.RSAPrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey
)


@dataclass(slots=True, repr=False)
class SniffedKey:
    """One key found in a file, with how it was stored."""

    key: KeyObject
    private: bool
    form: str
    device_id: str | None = None
    address: ServerAddress | None = None
    address_problem: str | None = None
    transport: str | None = None  # set for server key files
    role: str | None = None  # set when the storage says whose key it is (dump slots)

    def __repr__(self) -> str:
        kind = "private" if self.private else "public"
        return f"SniffedKey({type(self.key).__name__} {kind}, form={self.form!r})"


@dataclass(slots=True)
class SniffResult:
    """Keys and/or key log entries found, or ``found``: what the content looked like."""

    keys: list[SniffedKey] = field(default_factory=list)
    keylog: KeyLogParse | None = None
    found: str = ""
    device_id_file: str | None = None

    @property
    def recognised(self) -> bool:
        return bool(self.keys) or self.keylog is not None


def normalise_device_id(value: str) -> str | None:
    """24 hex characters (any case) → lower case; anything else → None."""
    value = value.strip()
    return value.lower() if _HEX24_RE.match(value) else None


def _as_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.lstrip("\ufeff")
    if any(ord(c) < 0x20 and c not in "\t\r\n\f" for c in text):
        return None
    return text


def _accept(key: PrivateKeyTypes | PublicKeyTypes) -> KeyObject | str:
    if isinstance(
        key,
        (
            rsa.RSAPrivateKey,
            rsa.RSAPublicKey,
            ec.EllipticCurvePrivateKey,
            ec.EllipticCurvePublicKey,
        ),
    ):
        return key
    return f"an unsupported {type(key).__name__} key (only RSA and EC are used by Particle)"


def _sniff_der(der: bytes, label: str = "") -> SniffedKey | str:
    """Parse one DER structure (already trimmed); key or a description of what it is."""
    encrypted = False
    if label in ("", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"):
        try:
            priv = serialization.load_der_private_key(der, password=None)
        except TypeError:
            encrypted = True
        except Exception:  # not a private key
            pass
        else:
            accepted = _accept(priv)
            return SniffedKey(accepted, True, "") if not isinstance(accepted, str) else accepted
    if encrypted or label == "ENCRYPTED PRIVATE KEY":
        return "an encrypted private key (passphrase-protected keys are not supported)"
    if label in ("", "PUBLIC KEY", "RSA PUBLIC KEY"):
        try:
            pub = serialization.load_der_public_key(der)
        except Exception:  # not a public key
            pass
        else:
            accepted = _accept(pub)
            return SniffedKey(accepted, False, "") if not isinstance(accepted, str) else accepted
    if label in ("", "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"):
        from cryptography import x509  # only here: x509 costs ~30 ms to import

        try:
            x509.load_der_x509_certificate(der)
        except Exception:  # not a certificate
            pass
        else:
            return "an X.509 certificate"
    if label:
        return f"a PEM {label} block that does not parse"
    return f"DER data that is not an RSA or EC key ({len(der)} bytes)"


def _describe_form(key: KeyObject, encoding: str, extra: str = "") -> str:
    algo = "RSA" if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) else "EC"
    kind = (
        "private key"
        if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        else "public key"
    )
    return f"{algo} {kind}, {encoding}{extra}"


def _sniff_pem(text: str, device_id: str | None = None) -> SniffResult:
    result = SniffResult()
    notes: list[str] = []
    for match in _PEM_RE.finditer(text):
        label, body = match.group(1).strip(), match.group(2)
        if label == "EC PARAMETERS":
            continue
        if "Proc-Type:" in body and "ENCRYPTED" in body:
            notes.append("an encrypted private key (passphrase-protected keys are not supported)")
            continue
        b64 = "".join(line.strip() for line in body.splitlines() if ":" not in line)
        try:
            der = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            notes.append(f"a damaged PEM {label} block")
            continue
        got = _sniff_der(der, label)
        if isinstance(got, str):
            notes.append(got)
            continue
        got.form = _describe_form(got.key, "PEM")
        got.device_id = device_id
        result.keys.append(got)
    if not result.keys:
        result.found = notes[0] if notes else "text with a broken PEM block"
    return result


def _json_pems(obj: Any, depth: int = 0) -> list[str]:
    if depth > 3:
        return []
    if isinstance(obj, str):
        return [obj] if "-----BEGIN" in obj else []
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in _json_pems(v, depth + 1)]
    if isinstance(obj, list):
        return [p for v in obj for p in _json_pems(v, depth + 1)]
    return []


def _sniff_json(text: str) -> SniffResult:
    try:
        obj = json.loads(text)
    except Exception:  # ValueError, RecursionError
        return SniffResult(found="text that is neither PEM, JSON nor a key log")
    device_id = None
    if isinstance(obj, dict):
        for name in _JSON_ID_FIELDS:
            value = obj.get(name)
            if isinstance(value, str) and normalise_device_id(value):
                device_id = normalise_device_id(value)
                break
    result = SniffResult()
    for pem in _json_pems(obj):
        sub = _sniff_pem(pem, device_id)
        for key in sub.keys:
            key.form = key.form.replace("PEM", "PEM in JSON")
        result.keys.extend(sub.keys)
    if not result.keys:
        result.found = "a JSON file without a PEM key"
    return result


def _sniff_text(text: str) -> SniffResult:
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return _sniff_json(text)
    if "-----BEGIN" in text:
        return _sniff_pem(text)
    device_id = normalise_device_id(stripped)
    if device_id is not None:
        return SniffResult(found="a device ID file", device_id_file=device_id)
    parsed = parse_keylog(text)
    if parsed.entries:
        return SniffResult(keylog=parsed)
    if parsed.labels_seen and parsed.problems:
        line, reason = parsed.problems[0]
        return SniffResult(found=f"a key log without a valid line (line {line}: {reason})")
    if not stripped:
        return SniffResult(found="an empty text file")
    return SniffResult(found="text that is neither PEM, JSON nor a key log")


def _sniff_binary(data: bytes, *, dumps: bool = True) -> SniffResult:
    if len(data) in (TCP_SERVER_KEY_FILE_LEN, UDP_SERVER_KEY_FILE_LEN):
        try:
            skf = parse_server_key_file(data)
        except KeyFileError:
            pass
        else:
            pub = _accept(skf.public_key)
            if not isinstance(pub, str):
                form = f"{len(data)}-byte {skf.transport.upper()} server key file"
                return SniffResult(
                    keys=[
                        SniffedKey(
                            pub, False, form, None, skf.address, skf.address_problem, skf.transport
                        )
                    ]
                )
    total = der_total_length(data)
    got = _sniff_der(bytes(data[:total])) if total is not None else None
    if got is None or isinstance(got, str):
        if dumps:
            dump = _sniff_dump(data)
            if dump is not None:
                return dump
        return SniffResult(found=got or f"unrecognised binary data ({len(data)} bytes)")
    assert total is not None
    extra = f" + {len(data) - total} fill bytes" if total < len(data) else ""
    got.form = _describe_form(got.key, "DER", extra)
    return SniffResult(keys=[got])


#: Key slots of memory dumps: file name from :func:`extract_keys_from_dump` → (label, role).
_DUMP_SLOTS = {
    "device_rsa_key.der": ("device RSA key slot", "device"),
    "tcp_server_key.der": ("TCP server key slot", "server"),
    "device_ec_key.der": ("device EC key slot", "device"),
    "udp_server_key.der": ("UDP server key slot", "server"),
}
#: Smallest dump worth searching: the DCT's device RSA key slot ends at 34 + 612.
_MIN_DUMP_LEN = 646


def _sniff_dump(data: bytes) -> SniffResult | None:
    """The keys in a DCT or Spark Core external-flash dump, or None if it is not one."""
    if len(data) < _MIN_DUMP_LEN:
        return None
    result = SniffResult()
    for name, blob in extract_keys_from_dump(data):
        label, role = _DUMP_SLOTS.get(name, (name, None))
        for key in _sniff_binary(blob, dumps=False).keys:
            key.form = f"{key.form}, {label} of a {len(data)}-byte memory dump"
            key.role = role
            result.keys.append(key)
    return result if result.keys else None


def sniff(data: bytes) -> SniffResult:
    """Recognise key material in ``data``; never raises."""
    if not data:
        return SniffResult(found="an empty file")
    text = _as_text(data)
    if text is not None:
        return _sniff_text(text)
    return _sniff_binary(data)
