"""The simulators' one error type."""

from __future__ import annotations

__all__ = ["SimulationError"]


class SimulationError(ValueError):
    """A simulator was asked for something it cannot build (bad key, length or option)."""
