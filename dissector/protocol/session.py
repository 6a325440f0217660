"""What the core knows about one session, for ``session`` records and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dissector.model import Direction


class CheckStatus(StrEnum):
    """The outcome of one handshake step as the dissector could judge it."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_CHECKABLE = "not_checkable"
    NOT_SEEN = "not_seen"


#: The TCP handshake checklist, in protocol order (key, human label).
TCP_CHECKS: tuple[tuple[str, str], ...] = (
    ("nonce", "cloud sent the 40-byte nonce"),
    ("identity_decrypted", "identity message decrypted"),
    ("nonce_echo", "device echoed the nonce"),
    ("device_id", "device ID known"),
    ("device_key_match", "device key matches the key the device sent"),
    ("session_key", "session key recovered"),
    ("signature", "server signature valid"),
    ("device_hello", "device Hello"),
    ("cloud_hello", "cloud Hello"),
)


@dataclass(slots=True)
class Check:
    """One checklist entry: status plus a plain-words detail (the likely cause on failure)."""

    status: CheckStatus = CheckStatus.NOT_SEEN
    detail: str = ""

    def set(self, status: CheckStatus, detail: str = "") -> None:
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class DirectionStats:
    """Byte and message counters for one direction."""

    bytes: int = 0
    messages: int = 0
    decrypted: int = 0


@dataclass(slots=True)
class SessionInfo:
    """Everything a report needs to say about one session."""

    id: str
    transport: str
    device_endpoint: tuple[str, int] | None = None
    cloud_endpoint: tuple[str, int] | None = None
    start: float | None = None
    end: float | None = None
    device_id: str | None = None
    device_id_source: str | None = None
    handshake_seen: bool = False
    outcome: str = "open"
    closed_by: str | None = None
    hello: dict[str, Any] | None = None
    cloud_hello: dict[str, Any] | None = None
    salt_convention: str | None = None
    key_source: str | None = None
    device_key_fingerprint: str | None = None
    checklist: tuple[tuple[str, str], ...] = TCP_CHECKS
    checks: dict[str, Check] = field(default_factory=dict)
    stats: dict[Direction, DirectionStats] = field(
        default_factory=lambda: {d: DirectionStats() for d in Direction}
    )

    def __post_init__(self) -> None:
        if not self.checks:
            self.checks = {key: Check() for key, _ in self.checklist}

    def touch(self, ts: float) -> None:
        """Extend the session's time span to include ``ts``."""
        if self.start is None or ts < self.start:
            self.start = ts
        if self.end is None or ts > self.end:
            self.end = ts
