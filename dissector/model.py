"""Small value types shared by every layer: directions, severities, findings.

Errors are values the user sees: every layer reports problems as :class:`Finding`
objects (never as log lines), and processing goes on with the rest of the capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    """Which way bytes travel in a Particle session."""

    DEVICE_TO_CLOUD = "device->cloud"
    CLOUD_TO_DEVICE = "cloud->device"

    @property
    def reverse(self) -> Direction:
        if self is Direction.DEVICE_TO_CLOUD:
            return Direction.CLOUD_TO_DEVICE
        return Direction.DEVICE_TO_CLOUD

    @property
    def short(self) -> str:
        """``D->C`` / ``C->D`` for narrow tables."""
        return "D->C" if self is Direction.DEVICE_TO_CLOUD else "C->D"


class Severity(StrEnum):
    """How much a finding matters; ordered ``INFO < WARNING < ERROR``."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(slots=True)
class Finding:
    """Something the user should know about the capture.

    ``code`` is a stable dotted identifier (``tcp.gap``, ``handshake.identity.wrong_key``)
    that automation can match on; ``message`` is the plain-words explanation.
    """

    severity: Severity
    code: str
    message: str
    ts: float | None = None
    session: str | None = None
    direction: Direction | None = None
    details: dict[str, Any] = field(default_factory=dict)
