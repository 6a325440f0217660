"""Live capture: sniff an interface and dissect Particle traffic as it happens.

* :mod:`.capture` – :class:`LiveCapture`: raw frames from a Linux interface (Scapy opens
  the socket and attaches the BPF filter; frames are read as bytes), loopback duplicates
  dropped.
* :mod:`.rotate` – :class:`RotatingCaptureWriter`: ``--write`` files, optionally rotating.
* :mod:`.sniffer` – :class:`Sniffer`: the signal-safe loop feeding the pipeline.
* :mod:`.output` – line-by-line table and NDJSON output.
"""

from __future__ import annotations

from dissector.live.capture import (
    DEFAULT_SNAPLEN,
    CaptureCounts,
    LiveCapture,
    LiveCaptureError,
    default_bpf,
    interface_names,
)
from dissector.live.output import LiveNdjsonWriter, LiveTableWriter, sessions_table
from dissector.live.rotate import RotatingCaptureWriter
from dissector.live.sniffer import PacketSource, Sniffer, SniffStats, swap_keyring

__all__ = [
    "DEFAULT_SNAPLEN",
    "CaptureCounts",
    "LiveCapture",
    "LiveCaptureError",
    "LiveNdjsonWriter",
    "LiveTableWriter",
    "PacketSource",
    "RotatingCaptureWriter",
    "SniffStats",
    "Sniffer",
    "default_bpf",
    "interface_names",
    "sessions_table",
    "swap_keyring",
]
