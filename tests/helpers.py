"""Shared test helpers: run the real pipeline on a capture with a given key ring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dissector.capture.reader import CaptureReader
from dissector.keys import KeyRing
from dissector.output.records import to_record
from dissector.pipeline import Dissector

DATA = Path(__file__).parent / "data"
TCP = DATA / "tcp"
TCP_KEYS = TCP / "keys"
SPARK = TCP / "sparkprotocol-0.1.6__deviceos-0.7.0_full"
BREWSKEY = TCP / "brewskey-1.0.21__deviceos-0.7.0_full"
DEVICE_ID = "5190c68b84cc2643c6b052a7"


def ring_with(*paths: Path | str, role: str | None = None) -> KeyRing:
    """A key ring loaded from the given files or directories."""
    ring = KeyRing()
    for path in paths:
        ring.load(str(path), role=role)
    return ring


def dissect(captures: list[Path | str], ring: KeyRing, **kwargs: Any) -> list[dict[str, Any]]:
    """All records the pipeline yields for the captures, in order."""
    reader = CaptureReader([str(c) for c in captures])
    out = []
    for event in Dissector(ring, **kwargs).run(iter(reader)):
        rec = to_record(event)
        if rec is not None:
            out.append(rec)
    return out


def expected_messages(base: Path) -> list[dict[str, Any]]:
    """The reference message list shipped next to a capture."""
    with open(f"{base}.messages.ndjson", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def comparable(rec: dict[str, Any]) -> dict[str, Any]:
    """The fields the reference lists carry (works on theirs and on our records)."""
    coap = rec["coap"]
    return {
        "direction": rec["direction"],
        "type": coap["type"],
        "code": coap["code"],
        "mid": coap["mid"],
        "token": coap["token"],
        "uri": coap["uri"],
        "payload": coap["payload"],
    }


def messages(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["record"] == "message"]


def findings(records: list[dict[str, Any]], code_prefix: str = "") -> list[dict[str, Any]]:
    return [r for r in records if r["record"] == "finding" and r["code"].startswith(code_prefix)]
