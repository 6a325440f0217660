"""Byte-stream framing for one direction of a Particle TCP session.

A :class:`FrameStream` is fed stream bytes (and gap notices from the reassembler) and
yields *units*: fixed-size handshake blobs first, then ``u16 length ‖ ciphertext``
frames. It owns buffering and resynchronisation and nothing else: no crypto.

Frame boundaries are only known while every length header has been seen. After a gap
that swallowed a header, or in a stream that starts mid-frame (a capture that began
mid-session), the stream *resynchronises*: it looks for an offset from which several
consecutive headers chain consistently (length a positive multiple of 16, not absurdly
large) and reports the bytes it had to skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Largest ciphertext length accepted as a frame. Device buffers are ≤ 1152 bytes
#: (spec §3.1, §6.1); the Node cloud sends OTA chunks of ≤ 594 bytes plus headers.
MAX_FRAME = 4096
#: Consecutive consistent headers needed to trust a resynchronisation point.
RESYNC_CHAIN = 3
#: Bytes buffered while looking for a resynchronisation point before giving up on them.
RESYNC_WINDOW = 1 << 16


@dataclass(slots=True)
class Unit:
    """One piece of the stream: a handshake blob or a frame.

    ``kind`` is the handshake step name or ``"frame"``. For frames ``payload`` is the
    ciphertext without the 2-byte length. ``lost`` counts bytes of this unit that were
    never captured (``payload`` then holds only the bytes before the hole).
    """

    kind: str
    payload: bytes
    offset: int
    wire_length: int
    lost: int = 0
    declared: int = 0
    ts: float = 0.0


@dataclass(slots=True)
class StreamNote:
    """Something the framing layer wants to tell the user (turned into a finding)."""

    code: str
    message: str
    offset: int
    nbytes: int = 0


class FrameStream:
    """Split one direction's byte stream into handshake blobs and frames.

    ``blobs`` lists the fixed-size handshake units that come first, e.g.
    ``[("nonce", 40), ("session_key", 384)]`` for the cloud side. ``synced`` says whether
    the first byte fed is known to be a unit boundary (a SYN was seen, or the caller
    believes so); otherwise the stream starts in resynchronisation mode.
    """

    __slots__ = ("_blobs", "_buf", "_discard", "_marks", "_now", "_offset", "_scan", "synced")

    def __init__(self, blobs: list[tuple[str, int]], *, synced: bool = True) -> None:
        self._blobs = list(blobs)
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]
        self._discard = 0  # bytes still to drop (rest of a unit damaged by a gap)
        self._marks: list[tuple[int, float]] = []  # (stream end offset, ts) per feed
        self._now = 0.0
        # Stream offset before which every resync start is known not to chain (the stream
        # never changes behind us): a resync resumes there instead of rescanning the buffer.
        self._scan = 0
        self.synced = synced

    @property
    def in_handshake(self) -> bool:
        """True while fixed-size handshake blobs are still expected."""
        return bool(self._blobs)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def skip_handshake(self) -> None:
        """Forget the expected handshake blobs (the stream is known to start at frames)."""
        self._blobs.clear()

    @property
    def pending_since(self) -> float | None:
        """Timestamp of the oldest buffered byte, if any are buffered."""
        if not self._buf or not self._marks:
            return None
        return self._marks[0][1]

    def feed(self, data: bytes, ts: float) -> tuple[list[Unit], list[StreamNote]]:
        """Add stream bytes seen at ``ts``; return the completed units and framing notes."""
        units: list[Unit] = []
        notes: list[StreamNote] = []
        self._now = ts
        if not self._buf and self.synced and not self._blobs and not self._discard:
            # Fast path: nothing buffered, at a frame boundary: cut whole frames straight
            # from ``data`` (each completed by this feed, so stamped ``ts``).
            n = len(data)
            pos = 0
            offset = self._offset
            while n - pos >= 2:
                length = (data[pos] << 8) | data[pos + 1]
                end = pos + 2 + length
                if end > n or length == 0 or length & 15 or length > MAX_FRAME:
                    break
                units.append(Unit("frame", data[pos + 2 : end], offset + pos, length + 2, 0, 0, ts))
                pos = end
            if pos == n:
                self._offset = offset + n
                return units, notes
            if pos:
                self._offset = offset + pos
                data = data[pos:]
            done = len(units)
            self._buf += data
            self._marks.append((self._offset + len(self._buf), ts))
            self._drain(units, notes)
            if len(units) > done:
                self._stamp(units[done:])
            else:
                self._stamp(())
            return units, notes
        if self._discard:
            n = min(self._discard, len(data))
            self._discard -= n
            self._offset += n
            data = data[n:]
        if data:
            self._buf += data
            self._marks.append((self._offset + len(self._buf), ts))
        self._drain(units, notes)
        self._stamp(units)
        return units, notes

    def gap(self, nbytes: int, ts: float) -> tuple[list[Unit], list[StreamNote]]:
        """Record ``nbytes`` of the stream that were never captured at this point."""
        self._now = ts
        units, notes = self._gap(nbytes)
        self._stamp(units)
        return units, notes

    def _stamp(self, units: Sequence[Unit]) -> None:
        """Give each unit the timestamp of the feed that completed it."""
        marks = self._marks
        for unit in units:
            end = unit.offset + unit.wire_length - unit.lost
            ts = self._now
            for mark_end, mark_ts in marks:
                if mark_end >= end:
                    ts = mark_ts
                    break
            unit.ts = ts
        consumed = self._offset
        i = 0
        while i < len(marks) and marks[i][0] <= consumed:
            i += 1
        if i:
            del marks[:i]

    def _gap(self, nbytes: int) -> tuple[list[Unit], list[StreamNote]]:
        units: list[Unit] = []
        notes: list[StreamNote] = []
        if nbytes <= 0:
            return units, notes
        if self._discard:
            # Inside a unit already damaged: the hole eats into what we meant to drop.
            eaten = min(self._discard, nbytes)
            self._discard -= eaten
            self._offset += eaten
            nbytes -= eaten
            if not nbytes:
                return units, notes
        buf = self._buf
        start = self._offset
        if not self.synced:
            # Nothing known about boundaries: drop what we had and keep searching.
            if buf:
                notes.append(
                    StreamNote(
                        "resync.dropped",
                        f"{len(buf)} bytes before a capture gap could not be framed",
                        start,
                        len(buf),
                    )
                )
            self._offset += len(buf) + nbytes
            buf.clear()
            return units, notes
        size = self._current_unit_size()
        if size is not None and len(buf) + nbytes <= size:
            # The hole lies inside the current unit (or ends exactly at its end): it is
            # damaged, the next one is intact.
            kind = self._blobs[0][0] if self._blobs else "frame"
            head = 0 if self._blobs else 2
            payload = bytes(buf[head:])
            declared = size - head
            units.append(Unit(kind, payload, start, size, lost=nbytes, declared=declared))
            if self._blobs:
                self._blobs.pop(0)
            self._discard = size - len(buf) - nbytes
            self._offset += len(buf) + nbytes
            buf.clear()
            return units, notes
        # The hole swallowed a unit boundary (or a length header): boundaries are lost.
        if size is not None and buf:
            kind = self._blobs[0][0] if self._blobs else "frame"
            head = 0 if self._blobs else 2
            units.append(
                Unit(
                    kind,
                    bytes(buf[head:]),
                    start,
                    size,
                    lost=size - len(buf),
                    declared=size - head,
                )
            )
            if self._blobs:
                self._blobs.pop(0)
        elif buf:
            notes.append(
                StreamNote(
                    "resync.dropped",
                    f"{len(buf)} bytes (a partial frame header) lost their frame to a gap",
                    start,
                    len(buf),
                )
            )
        self._blobs.clear()
        self._offset += len(buf) + nbytes
        buf.clear()
        self.synced = False
        return units, notes

    def finish(self, ts: float) -> tuple[list[Unit], list[StreamNote]]:
        """End of stream: flush resync candidates and report an incomplete last unit."""
        self._now = ts
        units, notes = self._finish()
        self._stamp(units)
        return units, notes

    def _finish(self) -> tuple[list[Unit], list[StreamNote]]:
        units: list[Unit] = []
        notes: list[StreamNote] = []
        if not self.synced and self._buf:
            self._resync(units, notes, final=True)
            if self.synced:
                self._drain(units, notes)
        buf = self._buf
        if buf:
            size = self._current_unit_size()
            if self.synced and self._blobs:
                kind = self._blobs[0][0]
                want = self._blobs[0][1]
                units.append(
                    Unit(kind, bytes(buf), self._offset, want, lost=want - len(buf), declared=want)
                )
                self._blobs.pop(0)
            elif self.synced and size is not None:
                notes.append(
                    StreamNote(
                        "frame.truncated",
                        f"the stream ended inside a frame: its header announced {size - 2} "
                        f"bytes, only {len(buf) - 2} were captured",
                        self._offset,
                        size - len(buf),
                    )
                )
                units.append(
                    Unit(
                        "frame",
                        bytes(buf[2:]),
                        self._offset,
                        size,
                        lost=size - len(buf),
                        declared=size - 2,
                    )
                )
            else:
                notes.append(
                    StreamNote(
                        "stream.trailing",
                        f"{len(buf)} trailing bytes do not form a complete frame header"
                        if self.synced
                        else f"{len(buf)} bytes could not be framed",
                        self._offset,
                        len(buf),
                    )
                )
            self._offset += len(buf)
            buf.clear()
        return units, notes

    # -- internals -------------------------------------------------------------------

    def _current_unit_size(self) -> int | None:
        """Total size (header included) of the unit at the buffer start, if known."""
        if self._blobs:
            return self._blobs[0][1]
        if len(self._buf) < 2:
            return None
        return 2 + ((self._buf[0] << 8) | self._buf[1])

    def _drain(self, units: list[Unit], notes: list[StreamNote]) -> None:
        buf = self._buf
        pos = 0
        while True:
            if not self.synced:
                if pos:
                    del buf[:pos]
                    self._offset += pos
                    pos = 0
                if not self._resync(units, notes, final=False):
                    return
                continue
            if self._blobs:
                kind, size = self._blobs[0]
                if len(buf) - pos < size:
                    break
                units.append(Unit(kind, bytes(buf[pos : pos + size]), self._offset + pos, size))
                self._blobs.pop(0)
                pos += size
                continue
            if len(buf) - pos < 2:
                break
            length = (buf[pos] << 8) | buf[pos + 1]
            if length == 0:
                notes.append(
                    StreamNote("frame.zero_length", "zero-length frame", self._offset + pos, 2)
                )
                pos += 2
                continue
            if length % 16 or length > MAX_FRAME:
                notes.append(
                    StreamNote(
                        "frame.bad_length",
                        f"frame length {length} is not a multiple of 16 between 16 and "
                        f"{MAX_FRAME}: the stream is out of sync or not Particle framing",
                        self._offset + pos,
                    )
                )
                self.synced = False
                continue
            end = pos + 2 + length
            if len(buf) < end:
                break
            units.append(Unit("frame", bytes(buf[pos + 2 : end]), self._offset + pos, length + 2))
            pos = end
        if pos:
            del buf[:pos]
            self._offset += pos

    def _resync(self, units: list[Unit], notes: list[StreamNote], *, final: bool) -> bool:
        """Find a frame boundary in the buffer; True when synced again."""
        buf = self._buf
        n = len(buf)
        first = max(0, self._scan - self._offset)
        for start in range(first, n - 1):
            chain = 0
            pos = start
            while chain < RESYNC_CHAIN and pos + 2 <= n:
                length = (buf[pos] << 8) | buf[pos + 1]
                if length == 0 or length % 16 or length > MAX_FRAME:
                    break
                pos += 2 + length
                chain += 1
                if pos == n and final:
                    break
            ok = chain >= RESYNC_CHAIN or (final and chain >= 1 and pos == n)
            if ok:
                if start:
                    notes.append(
                        StreamNote(
                            "resync.skipped",
                            f"skipped {start} bytes to find the next frame boundary",
                            self._offset,
                            start,
                        )
                    )
                    del buf[:start]
                    self._offset += start
                self.synced = True
                self._scan = self._offset
                return True
            if pos + 2 > n and not final:
                self._scan = self._offset + start
                break  # this start might still chain once more bytes arrive: wait
        else:
            self._scan = self._offset + max(first, n - 1)
        if (n > RESYNC_WINDOW or final) and n:
            notes.append(
                StreamNote(
                    "resync.dropped",
                    f"{n} bytes could not be framed (no consistent frame headers)",
                    self._offset,
                    n,
                )
            )
            self._offset += n
            buf.clear()
        return False


def frames_chain(
    buf: bytes | bytearray, start: int, *, final: bool, relaxed: bool = False
) -> bool | None:
    """Do frame headers chain from ``start`` in ``buf``? None when more bytes would tell.

    Proof is ``RESYNC_CHAIN`` consistent headers, or headers that reach exactly the end
    of a stream that has ended (``final``). ``relaxed`` (for an offset that something
    else already makes likely) accepts two headers, or one whose frame ends exactly
    where the data ends.
    """
    n = len(buf)
    pos = start
    chain = 0
    want = 2 if relaxed else RESYNC_CHAIN
    while chain < want:
        if pos + 2 > n:
            if pos == n and chain and (final or relaxed):
                return True
            return False if final else None
        length = (buf[pos] << 8) | buf[pos + 1]
        if length == 0 or length % 16 or length > MAX_FRAME:
            return False
        pos += 2 + length
        chain += 1
    return True
