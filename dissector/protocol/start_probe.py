"""Where does a TCP session whose SYN was not captured start: handshake or mid-session?

A capture started between a connection's SYN and its first data (or one whose SYN and
SYN-ACK were lost) still holds the whole handshake. Without the SYN nothing says so,
so :class:`StartProbe` buffers the first bytes of both directions and decides from the
stream structure alone:

* **handshake** when *both* directions fit a handshake layout: the device stream is
  the 256-byte identity followed by frame headers that chain, the cloud stream the
  40-byte nonce and 384-byte session key (or the session key alone, when the capture
  began right after the nonce) followed by chaining headers, or a stream that ends
  exactly after a handshake blob (a failed handshake);
* **mid-session** otherwise, in particular as soon as either stream is framed from its
  first byte.

One direction alone is not enough: a mid-session stream has a frame boundary at byte
256 a few times in a hundred, both directions at their layout offsets about once in
ten thousand. The caller replays the buffered feeds, in arrival order, through framing
set up for the decided layout, so the handshake is judged exactly as with a SYN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dissector.model import Direction
from dissector.protocol.framing import RESYNC_WINDOW, frames_chain

Blobs = list[tuple[str, int]]
Verdict = Literal["handshake", "frames", "unknown", "wait"]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


@dataclass(slots=True)
class StartLayout:
    """The probe's decision: the handshake blobs each direction starts with, if any."""

    handshake: bool
    blobs: dict[Direction, Blobs] = field(default_factory=dict)


@dataclass(slots=True)
class Feed:
    """One buffered call: stream bytes, or (``data`` None) a gap of ``nbytes``."""

    direction: Direction
    data: bytes | None
    nbytes: int
    ts: float


class StartProbe:
    """Buffer a SYN-less connection's first bytes until its start can be judged.

    ``layouts`` gives, per direction, the handshake layouts its stream may start with,
    most likely first.
    """

    def __init__(self, layouts: dict[Direction, list[Blobs]]) -> None:
        self.layouts = layouts
        self.feeds: list[Feed] = []
        self._bufs: dict[Direction, bytearray] = {d: bytearray() for d in layouts}

    @property
    def since(self) -> float | None:
        """Timestamp of the oldest buffered feed."""
        return self.feeds[0].ts if self.feeds else None

    def add(self, direction: Direction, data: bytes, ts: float) -> None:
        self.feeds.append(Feed(direction, data, len(data), ts))
        self._bufs[direction] += data

    def add_gap(self, direction: Direction, nbytes: int, ts: float) -> None:
        """A gap: the structure after it says nothing about the start; decide now."""
        self.feeds.append(Feed(direction, None, nbytes, ts))

    def decide(self, *, final: bool = False) -> StartLayout | None:
        """The layout, or None while more bytes are needed (never None when ``final``)."""
        if any(f.data is None for f in self.feeds):
            final = True
        if any(len(buf) > RESYNC_WINDOW for buf in self._bufs.values()):
            final = True
        verdicts: dict[Direction, tuple[Verdict, Blobs | None]] = {
            d: _judge(self._bufs[d], layouts, final) for d, layouts in self.layouts.items()
        }
        kinds = {v for v, _ in verdicts.values()}
        if "frames" in kinds or "unknown" in kinds:
            # One direction that cannot start at the handshake rules the handshake out:
            # decide now rather than wait for the other (perhaps quiet) direction.
            return StartLayout(False)
        if kinds == {"handshake"}:
            return StartLayout(True, {d: b for d, (_, b) in verdicts.items() if b is not None})
        if "wait" in kinds and not final:
            return None
        return StartLayout(False)


def _judge(buf: bytearray, layouts: list[Blobs], final: bool) -> tuple[Verdict, Blobs | None]:
    """One direction: framed from byte 0, a handshake layout, neither, or not yet known."""
    n = len(buf)
    at_zero = frames_chain(buf, 0, final=final)
    if at_zero:
        return "frames", None
    undecided = at_zero is None
    for blobs in layouts:
        ends = []
        prefix = 0
        for _, size in blobs:
            prefix += size
            ends.append(prefix)
        if n < prefix + 2:
            if final and n in ends:
                return "handshake", blobs  # the stream ends right after a blob
            if not final:
                undecided = True
            continue
        fits = frames_chain(buf, prefix, final=final, relaxed=True)
        if fits:
            return "handshake", blobs
        if fits is None:
            undecided = True
    return ("wait" if undecided and not final else "unknown"), None
