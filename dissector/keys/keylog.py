"""Key logs: our ``PARTICLE_TCP <nonce> <credentials>`` lines and NSS key log lines.

Format: one ``LABEL hex hex`` entry per line; ``#`` comments and blank lines allowed.
``PARTICLE_TCP``: 40-byte nonce, 40-byte credentials. ``CLIENT_RANDOM``: 32-byte client
random, 48-byte master secret. Other NSS labels (TLS 1.3 traffic secrets...) are kept too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = [
    "NSS_LABELS",
    "PARTICLE_TCP",
    "KeyLogParse",
    "KeyLogWriter",
    "parse_keylog",
]

PARTICLE_TCP = "PARTICLE_TCP"
CLIENT_RANDOM = "CLIENT_RANDOM"
#: Labels written by NSS/OpenSSL/mbedTLS key loggers (SSLKEYLOGFILE).
NSS_LABELS = frozenset(
    {
        "CLIENT_RANDOM",
        "RSA",
        "CLIENT_EARLY_TRAFFIC_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EARLY_EXPORTER_SECRET",
        "EXPORTER_SECRET",
    }
)
_LABEL_RE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
# label -> (first field length, second field length or None for "1..64")
_LENGTHS: dict[str, tuple[int, int | None]] = {
    PARTICLE_TCP: (40, 40),
    CLIENT_RANDOM: (32, 48),
    "RSA": (8, 48),
}
_DEFAULT_LENGTHS: tuple[int, int | None] = (32, None)


@dataclass(slots=True)
class KeyLogParse:
    """What :func:`parse_keylog` found: TCP sessions, NSS entries, and bad lines."""

    tcp: list[tuple[bytes, bytes]] = field(default_factory=list)
    nss: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    labels_seen: set[str] = field(default_factory=set)

    @property
    def entries(self) -> int:
        """Number of valid entries."""
        return len(self.tcp) + len(self.nss)

    def __repr__(self) -> str:
        return (
            f"KeyLogParse(tcp={len(self.tcp)}, nss={len(self.nss)}, problems={len(self.problems)})"
        )


def _parse_line(line: str) -> tuple[str, bytes, bytes]:
    parts = line.split()
    if len(parts) != 3:
        raise ValueError(f"expected 3 fields (LABEL hex hex), found {len(parts)}")
    label, a, b = parts
    if not _LABEL_RE.match(label):
        raise ValueError(f"{label[:24]!r} is not a key log label")
    try:
        first, second = bytes.fromhex(a), bytes.fromhex(b)
    except ValueError:
        raise ValueError(f"{label}: the values are not hex") from None
    want_first, want_second = _LENGTHS.get(label, _DEFAULT_LENGTHS)
    if len(first) != want_first:
        raise ValueError(f"{label}: first value is {len(first)} bytes, expected {want_first}")
    if want_second is not None and len(second) != want_second:
        raise ValueError(f"{label}: second value is {len(second)} bytes, expected {want_second}")
    if want_second is None and not 1 <= len(second) <= 64:
        raise ValueError(f"{label}: secret is {len(second)} bytes, expected 1..64")
    return label, first, second


def parse_keylog(text: str) -> KeyLogParse:
    """Parse key log text; malformed lines land in ``problems`` as (line number, reason)."""
    result = KeyLogParse()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first_token = line.split(None, 1)[0]
        if first_token == PARTICLE_TCP or first_token in NSS_LABELS:
            result.labels_seen.add(first_token)
        try:
            label, first, second = _parse_line(line)
        except ValueError as exc:
            result.problems.append((number, str(exc)))
            continue
        if label == PARTICLE_TCP:
            result.tcp.append((first, second))
        else:
            result.nss.append((label, first, second))
    return result


class KeyLogWriter:
    """Appends key log lines to a path or an open text file, never the same line twice.

    Each line is flushed at once (a crash loses nothing). When given a path that exists,
    its lines count as already written.
    """

    __slots__ = ("_file", "_name", "_owned", "_seen")

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        self._seen: set[str] = set()
        if isinstance(target, (str, os.PathLike)):
            path = Path(target)
            if path.exists():
                with path.open(encoding="ascii", errors="replace") as existing:
                    self._seen.update(line.strip() for line in existing if line.strip())
            self._file: IO[str] = path.open("a", encoding="ascii")
            self._owned = True
            self._name = str(path)
        else:
            self._file = target
            self._owned = False
            self._name = str(getattr(target, "name", "<stream>"))

    def _write(self, line: str) -> bool:
        if line in self._seen:
            return False
        self._seen.add(line)
        self._file.write(line + "\n")
        self._file.flush()
        return True

    def write_tcp_session(self, nonce: bytes, credentials: bytes) -> bool:
        """Write ``PARTICLE_TCP <nonce> <credentials>``; False if already written."""
        if len(nonce) != 40 or len(credentials) != 40:
            raise ValueError("PARTICLE_TCP needs a 40-byte nonce and 40-byte credentials")
        return self._write(f"{PARTICLE_TCP} {bytes(nonce).hex()} {bytes(credentials).hex()}")

    def write_nss(self, label: str, client_random: bytes, secret: bytes) -> bool:
        """Write an NSS key log line (``CLIENT_RANDOM <random> <master>``...); False if a
        duplicate. Raises ValueError when the line would not parse back."""
        line = f"{label} {bytes(client_random).hex()} {bytes(secret).hex()}"
        _parse_line(line)
        return self._write(line)

    def close(self) -> None:
        """Close the file if this writer opened it."""
        if self._owned and not self._file.closed:
            self._file.close()

    def __enter__(self) -> KeyLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KeyLogWriter({self._name!r}, lines={len(self._seen)})"
