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
256 a few times in a hundred, and real streams (many 18-byte frames) put both directions
at their layout offsets about once in three thousand cuts. So the bytes must also have
arrived in the handshake's causal order: the identity only after the whole nonce, the
session key only after the whole identity, no device frame before the whole session
key. That also decides at once a connection captured one way only.

The caller replays the buffered feeds, in arrival order, through framing set up for the
decided layout, so the handshake is judged exactly as with a SYN.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Literal

from dissector.model import Direction
from dissector.protocol.framing import RESYNC_WINDOW, frames_chain

Blobs = list[tuple[str, int]]
Verdict = Literal["handshake", "frames", "unknown", "wait"]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
NONCE = 40
IDENTITY = 256


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
        #: Per direction: the stream end offset after each feed, and that feed's index
        #: (what arrived when, for the handshake's causal order).
        self._ends: dict[Direction, list[int]] = {d: [] for d in layouts}
        self._index: dict[Direction, list[int]] = {d: [] for d in layouts}
        #: Directions with a gap: their bytes after it say nothing about the start.
        self._gapped: set[Direction] = set()

    @property
    def since(self) -> float | None:
        """Timestamp of the oldest buffered feed."""
        return self.feeds[0].ts if self.feeds else None

    def add(self, direction: Direction, data: bytes, ts: float) -> None:
        self.feeds.append(Feed(direction, data, len(data), ts))
        if direction in self._gapped or not data:
            return
        buf = self._bufs[direction]
        buf += data
        self._ends[direction].append(len(buf))
        self._index[direction].append(len(self.feeds) - 1)

    def add_gap(self, direction: Direction, nbytes: int, ts: float) -> None:
        """A gap: the structure after it says nothing about the start; decide now."""
        self.feeds.append(Feed(direction, None, nbytes, ts))
        self._gapped.add(direction)

    def _arrival(self, direction: Direction, offset: int) -> int | None:
        """Index of the feed that brought byte ``offset`` of ``direction``, if it came."""
        ends = self._ends[direction]
        i = bisect_right(ends, offset)
        return self._index[direction][i] if i < len(ends) else None

    def _causal(self, cloud_blobs: Blobs) -> bool:
        """Whether what arrived so far respects the handshake's order with the cloud
        starting at ``cloud_blobs``: the device sends its identity only once it has the
        nonce, and the cloud its session key only once it has the whole identity (both
        need what the other sent)."""
        names = [name for name, _ in cloud_blobs]
        key_start = NONCE if "nonce" in names else 0
        first = self._arrival(D2C, 0)
        if key_start and first is not None:
            nonce_end = self._arrival(C2D, key_start - 1)
            if nonce_end is None or nonce_end > first:
                return False
        key_first = self._arrival(C2D, key_start)
        if key_first is not None:
            identity_end = self._arrival(D2C, IDENTITY - 1)
            if identity_end is None or identity_end > key_first:
                return False
        # The device frames only with the session key: frames beyond its identity while
        # the cloud's blobs are still incomplete rule the handshake out (this also ends
        # the wait on a connection captured one way only).
        blobs_end = sum(size for _, size in cloud_blobs)
        return len(self._bufs[D2C]) <= IDENTITY or len(self._bufs[C2D]) >= blobs_end

    def decide(self, *, final: bool = False) -> StartLayout | None:
        """The layout, or None while more bytes are needed (never None when ``final``)."""
        if self._gapped:
            final = True
        if any(len(buf) > RESYNC_WINDOW for buf in self._bufs.values()):
            final = True
        layouts_now = dict(self.layouts)
        if C2D in layouts_now and D2C in layouts_now:
            layouts_now[C2D] = [b for b in layouts_now[C2D] if self._causal(b)]
            if not layouts_now[C2D]:
                return StartLayout(False)  # what arrived is out of the handshake's order
        verdicts: dict[Direction, tuple[Verdict, Blobs | None]] = {
            d: _judge(self._bufs[d], layouts, final) for d, layouts in layouts_now.items()
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
