"""``--device`` and ``--kind``: which records a user asked to see."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class RecordFilter:
    """Keep records of one device and/or messages of some kinds.

    Findings and handshake records follow their session: once any record revealed a
    session's device ID, that session's findings are kept or dropped with it. Findings
    of no session (a truncated capture, datagrams that are not DTLS) concern every
    device and are always kept.
    """

    def __init__(self, device: str | None = None, kinds: Iterable[str] = ()) -> None:
        self.device = device.lower() if device else None
        self.kinds = {k.lower() for k in kinds}
        self._session_device: dict[str, str] = {}

    def __call__(self, rec: dict[str, Any]) -> bool:
        session = rec.get("session")
        device_id = rec.get("device_id")
        if session and device_id:
            self._session_device[session] = device_id
        if self.device is not None:
            if not session and rec["record"] == "finding":
                return True
            if not device_id and session:
                device_id = self._session_device.get(session)
            if device_id != self.device:
                return False
        return not (
            self.kinds and rec["record"] == "message" and rec["kind"].lower() not in self.kinds
        )
