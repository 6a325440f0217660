"""The error type of the keys package."""

from __future__ import annotations

__all__ = ["KeyFileError"]


class KeyFileError(ValueError):
    """A key file or key log could not be used; the message names the file and the reason.

    ``path`` is the file (None for in-memory data), ``reason`` the bare explanation.
    Messages never contain key material.
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason
