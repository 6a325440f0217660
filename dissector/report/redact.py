"""``--redact``: replace device IDs, IP addresses and key fingerprints with pseudonyms.

Pseudonyms are stable within a report (the same device is ``device-1`` everywhere: in
tables, finding texts, key-file names, event data) and deterministic (numbered in the
order the report mentions them), so a redacted report can be shared and still read.

* device IDs: every run of exactly 24 hex digits (any case) -> ``device-N``;
* IPv4 addresses (dotted quads) and every IPv6 address the report knows -> ``ip-N``;
* DTLS/TCP device key fingerprints the report knows, whole or as a prefix of at least
  8 hex digits, and the 12-digit fingerprints key labels show in parentheses
  (``device.der (ab5176ad11f0)``, server keys included) -> ``key-N``.

Numbers follow the report: devices and their keys in the order of the Devices section,
addresses in session order, then anything else in the order it is met.

Firmware SHA-256 digests and other hex data are not identifiers and are kept.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from dissector.report.model import Report, map_strings

_DEVICE_ID = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{24}(?![0-9A-Fa-f])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8,64}(?![0-9A-Fa-f])")
#: How key labels show a key: ``default_key.pem (7c3bf6f2710f)``.
_KEY_LABEL = re.compile(r"(?<=\()[0-9a-f]{12}(?=\))")


class Redactor:
    """Replace identifiers in strings with numbered pseudonyms (see the module doc)."""

    def __init__(self, fingerprints: Iterable[str] = (), ipv6: Iterable[str] = ()) -> None:
        self.devices: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.fingerprints = sorted({f.lower() for f in fingerprints if len(f) >= 16})
        self._ipv6: re.Pattern[str] | None = None
        known6 = sorted({a for a in ipv6 if ":" in a}, key=len, reverse=True)
        if known6:
            alternatives = "|".join(re.escape(a) for a in known6)
            self._ipv6 = re.compile(f"(?<![0-9A-Fa-f:])(?:{alternatives})(?![0-9A-Fa-f:])")

    def _device(self, match: re.Match[str]) -> str:
        value = match.group().lower()
        name = self.devices.get(value)
        if name is None:
            name = self.devices[value] = f"device-{len(self.devices) + 1}"
        return name

    def _address(self, match: re.Match[str]) -> str:
        value = match.group().lower()
        name = self.addresses.get(value)
        if name is None:
            name = self.addresses[value] = f"ip-{len(self.addresses) + 1}"
        return name

    def _key_name(self, value: str) -> str:
        name = self.keys.get(value)
        if name is None:
            name = self.keys[value] = f"key-{len(self.keys) + 1}"
        return name

    def _key(self, match: re.Match[str]) -> str:
        value = match.group().lower()
        for fp in self.fingerprints:
            if fp.startswith(value):
                return self._key_name(fp)
        return match.group()

    def _label(self, match: re.Match[str]) -> str:
        value = match.group()
        for fp in self.fingerprints:
            if fp.startswith(value):
                return self._key_name(fp)
        return self._key_name(value)

    def seed(self, devices: Iterable[str], keys: Iterable[str], addresses: Iterable[str]) -> None:
        """Number these identifiers first, in this order."""
        for text in (*devices, *addresses):
            self(text)
        for fp in keys:
            self._key_name(fp.lower())

    def __call__(self, text: str) -> str:
        if self.fingerprints:
            text = _HEX_RUN.sub(self._key, text)
        text = _KEY_LABEL.sub(self._label, text)
        text = _DEVICE_ID.sub(self._device, text)
        if self._ipv6 is not None:
            text = self._ipv6.sub(self._address, text)
        return _IPV4.sub(self._address, text)


def _collect(obj: Any, fingerprints: set[str], addresses: set[str]) -> None:
    """Known fingerprints and IPv6 addresses anywhere in the model."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, str):
                if "fingerprint" in f.name:
                    fingerprints.add(value)
                elif f.name.endswith("endpoint") and value.startswith("["):
                    addresses.add(value[1:].split("]", 1)[0])
            elif f.name == "addresses" and isinstance(value, list):
                addresses.update(a for a in value if isinstance(a, str))
            else:
                _collect(value, fingerprints, addresses)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, str) and "fingerprint" in str(key):
                fingerprints.add(value)
            else:
                _collect(value, fingerprints, addresses)
    elif isinstance(obj, list):
        for value in obj:
            _collect(value, fingerprints, addresses)


def redact_report(report: Report) -> Report:
    """A copy of ``report`` with identifiers replaced by pseudonyms; ``redacted`` set."""
    fingerprints: set[str] = set()
    addresses: set[str] = set()
    _collect(report, fingerprints, addresses)
    redactor = Redactor(sorted(fingerprints), sorted(addresses))
    redactor.seed(
        [d.device_id for d in report.devices if d.device_id],
        [d.key_fingerprint for d in report.devices if d.key_fingerprint],
        [a for s in report.sessions for a in (s.device_endpoint, s.cloud_endpoint) if a],
    )
    out: Report = map_strings(report, redactor)
    out.redacted = True
    return out
