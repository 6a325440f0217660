"""TCP stream reassembly: captured segments in, ordered stream bytes per direction out.

Sans-IO and clock-free: the only notion of time is each segment's ``ts``. Feed segments in
capture order with :meth:`TcpReassembler.feed`; each call returns the :data:`StreamEvent` values
it caused (connection opened, contiguous data, gap, connection closed). Call
:meth:`TcpReassembler.close_all` at the end of the capture.

Rules, in short:

* Offsets are per side and count stream bytes: 0 is the first byte after the SYN, or, for a
  connection whose SYN was not captured, the first byte seen for that side.
* Retransmitted and overlapping bytes are delivered once; on conflicting overlaps the bytes
  received first win and the conflict is counted (``Connection.conflicting_overlaps``).
  Conflicts with already delivered bytes are detected against the most recently delivered chunk
  only (the usual retransmission case); conflicts among buffered bytes are always detected.
* Missing bytes are never invented: a hole that will not be filled is reported once as a
  :class:`StreamGap` with its exact size and the stream goes on after it. A hole is declared
  lost when the buffered data beyond it is released: at the side's FIN, at RST, when the peer
  has acknowledged bytes of the hole (the peer got them, the capture did not) and data beyond
  it is buffered, when the buffer exceeds ``max_buffer_per_direction``, at idle timeout or at
  :meth:`~TcpReassembler.close_all`. At RST, timeout and end of capture, bytes the peer
  acknowledged beyond the last captured byte are reported as a trailing gap too.
* SYN-less sides (capture started mid-connection): the start is the first data-bearing segment
  seen for the side. If the peer's latest ACK shows that nothing earlier is outstanding (ACK at
  or beyond that start) the side is delivered at once. Otherwise its bytes are held until the
  peer acknowledges the start, the side has sent :data:`SYNLESS_HOLD_SEGMENTS` segments, the
  held bytes exceed the buffer limit, or the side ends (FIN, RST, timeout, end of capture).
  Held bytes are delivered with the capture time of their own segment (they arrived in
  order), so they are stamped earlier than the packet that releases them: the connection's
  :attr:`Connection.held_since` says from when bytes are held, and ``on_hold`` is called
  whenever it changes, so a consumer that orders output by time can wait for them.
  While held, a data segment up to :data:`SYNLESS_BACKFILL_WINDOW` bytes before the start moves
  the start back (capture reordering around the capture start); once delivery began, earlier
  bytes are duplicates.
* A 1-byte segment just before the next expected byte is a keep-alive probe (as in Wireshark):
  counted in ``keepalive_probes``, never delivered, never a conflict.
* A segment with SYN on a known tuple starts a new connection (new id) when the old one is
  finished, or when its ISN differs from the one known (or none is known); a retransmitted
  SYN/SYN-ACK is ignored. Finished connections are remembered for ``time_wait`` seconds so that
  their trailing ACKs/retransmissions do not open phantom connections.

Known limits: a FIN that overtakes data segments in the capture releases the hole at once, so
the late segments count as duplicates and their bytes as a gap; a peer ACK of a FIN the capture
missed is reported as a 1-byte trailing gap at timeout/end of capture; a 1-byte retransmission of
exactly the last delivered byte is taken for a keep-alive probe.

Close reasons: ``"fin"`` (per side, after all its data), ``"rst"`` (side = sender of the RST),
``"timeout"``, ``"end_of_capture"``, ``"reused"`` (a new SYN replaced a still-open connection)
and ``"evicted"`` (table full, least recently active connection dropped); all but ``"fin"``
and ``"rst"`` have ``side=None``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Callable

    from dissector.capture.packets import TcpSegment

__all__ = [
    "REASON_END_OF_CAPTURE",
    "REASON_EVICTED",
    "REASON_FIN",
    "REASON_REUSED",
    "REASON_RST",
    "REASON_TIMEOUT",
    "SYNLESS_BACKFILL_WINDOW",
    "SYNLESS_HOLD_SEGMENTS",
    "Connection",
    "ConnectionClosed",
    "ConnectionOpened",
    "StreamData",
    "StreamEvent",
    "StreamGap",
    "TcpReassembler",
]

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

REASON_FIN: Final = "fin"
REASON_RST: Final = "rst"
REASON_TIMEOUT: Final = "timeout"
REASON_END_OF_CAPTURE: Final = "end_of_capture"
REASON_REUSED: Final = "reused"
REASON_EVICTED: Final = "evicted"

SYNLESS_HOLD_SEGMENTS: Final = 8
"""Segments of a SYN-less side after which its held start is accepted without peer ACK."""
SYNLESS_BACKFILL_WINDOW: Final = 65536
"""How far before a held SYN-less start an earlier segment may begin and still be accepted."""
MAX_AHEAD: Final = 1 << 30
"""Segments starting further than this beyond the next expected byte are ignored (bogus)."""

_MOD = 1 << 32
_MASK = _MOD - 1
_HALF = 1 << 31
_LAST_KEEP = 65536  # keep a released run for conflict checks only up to this size

# half-connection states
_NEW, _HOLD, _OPEN, _DONE = 0, 1, 2, 3


def _sdiff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in 32-bit sequence space."""
    d = (a - b) & _MASK
    return d - _MOD if d >= _HALF else d


@dataclass(slots=True, eq=False)
class ConnectionOpened:
    """A connection was seen for the first time (by its SYN, SYN-ACK or mid-stream)."""

    conn: Connection
    ts: float
    syn_seen: bool


@dataclass(slots=True, eq=False)
class StreamData:
    """New contiguous bytes of one side's stream; ``offset`` is the stream offset of data[0]."""

    conn: Connection
    side: int
    data: bytes
    ts: float
    offset: int


@dataclass(slots=True, eq=False)
class StreamGap:
    """``nbytes`` bytes at ``offset`` of one side's stream were never captured."""

    conn: Connection
    side: int
    nbytes: int
    ts: float
    offset: int


@dataclass(slots=True, eq=False)
class ConnectionClosed:
    """One side finished (``fin``) or the whole connection ended (``side`` None or ``rst``)."""

    conn: Connection
    side: int | None
    ts: float
    reason: str


StreamEvent: TypeAlias = ConnectionOpened | StreamData | StreamGap | ConnectionClosed


class _Half:
    """State and counters of one direction (the bytes sent by one side)."""

    __slots__ = (
        "acked",
        "conflicts",
        "conn",
        "fast",
        "fin_off",
        "gap_bytes",
        "gaps",
        "hint",
        "hold_left",
        "isn",
        "keepalives",
        "last",
        "nxt",
        "off",
        "ooo_segments",
        "peer",
        "pend_bytes",
        "pend_data",
        "pend_offs",
        "pend_ts",
        "retrans_bytes",
        "retrans_segments",
        "segments",
        "side",
        "sq",
        "state",
    )

    def __init__(self, conn: Connection, side: int) -> None:
        self.conn = conn
        self.side = side
        self.peer: _Half = self
        self.state = _NEW
        self.fast = False  # OPEN and nothing buffered: the feed() fast path applies
        self.sq = 0  # sequence number of stream offset `off`
        self.nxt = -1  # fast-path ACK comparand: sq when OPEN, ACK hint when NEW, -1 when HOLD
        self.off = 0  # next stream offset to deliver
        self.hint = -1  # latest peer ACK seen before this side was OPEN
        self.acked = 0  # highest stream offset the peer acknowledged
        self.isn: int | None = None
        self.hold_left = 0
        self.fin_off: int | None = None
        self.last = b""  # most recent delivered bytes, ending exactly at `off`
        self.pend_offs: list[int] = []  # buffered out-of-order data, sorted, non-overlapping
        self.pend_data: list[bytes] = []
        self.pend_ts: list[float] = []  # capture time of each buffered piece
        self.pend_bytes = 0
        self.segments = 0
        self.retrans_bytes = 0
        self.retrans_segments = 0
        self.ooo_segments = 0
        self.conflicts = 0
        self.gap_bytes = 0
        self.gaps = 0
        self.keepalives = 0


class Connection:
    """One TCP connection; side 0 is the initiator (or, SYN-less, the first sender seen).

    Per-side counters are ``(side0, side1)`` tuples. ``data_bytes`` counts delivered bytes,
    ``gap_bytes``/``gaps`` the bytes/holes reported lost, ``retransmitted_bytes`` the duplicate
    bytes received again (``retransmitted_segments`` the segments carrying any),
    ``conflicting_overlaps`` the segments whose overlap disagreed with earlier bytes.
    """

    __slots__ = (
        "_halves",
        "close_reason",
        "endpoints",
        "finished",
        "first_ts",
        "held_since",
        "id",
        "ignored_segments",
        "ip_version",
        "last_ts",
        "syn_seen",
    )

    def __init__(
        self,
        conn_id: int,
        endpoints: tuple[tuple[str, int], tuple[str, int]],
        ip_version: int,
        syn_seen: bool,
        ts: float,
    ) -> None:
        self.id = conn_id
        self.endpoints = endpoints
        self.ip_version = ip_version
        self.syn_seen = syn_seen
        self.first_ts = ts
        self.last_ts = ts
        #: Capture time of the oldest byte held at a SYN-less start (not yet delivered).
        self.held_since: float | None = None
        self.finished = False
        self.close_reason: str | None = None
        self.ignored_segments = 0  # segments after close, beyond FIN, or absurdly far ahead
        self._halves = (_Half(self, 0), _Half(self, 1))
        self._halves[0].peer = self._halves[1]
        self._halves[1].peer = self._halves[0]

    def __repr__(self) -> str:
        (a, pa), (b, pb) = self.endpoints
        return f"<Connection #{self.id} {a}:{pa} -> {b}:{pb} syn={self.syn_seen}>"

    def side_of(self, ip: str, port: int) -> int | None:
        """Side number of the endpoint ``(ip, port)``, or None if it is not in this connection."""
        if self.endpoints[0] == (ip, port):
            return 0
        if self.endpoints[1] == (ip, port):
            return 1
        return None

    @property
    def data_bytes(self) -> tuple[int, int]:
        """Bytes delivered as StreamData per side."""
        h0, h1 = self._halves
        return (h0.off - h0.gap_bytes, h1.off - h1.gap_bytes)

    @property
    def gap_bytes(self) -> tuple[int, int]:
        """Bytes reported as StreamGap per side."""
        return (self._halves[0].gap_bytes, self._halves[1].gap_bytes)

    @property
    def gaps(self) -> tuple[int, int]:
        """Number of StreamGap events per side."""
        return (self._halves[0].gaps, self._halves[1].gaps)

    @property
    def segments(self) -> tuple[int, int]:
        """Segments seen per side."""
        return (self._halves[0].segments, self._halves[1].segments)

    @property
    def retransmitted_bytes(self) -> tuple[int, int]:
        """Duplicate bytes received again (already delivered or already buffered) per side."""
        return (self._halves[0].retrans_bytes, self._halves[1].retrans_bytes)

    @property
    def retransmitted_segments(self) -> tuple[int, int]:
        """Segments carrying duplicate bytes per side."""
        return (self._halves[0].retrans_segments, self._halves[1].retrans_segments)

    @property
    def out_of_order_segments(self) -> tuple[int, int]:
        """Segments that arrived ahead of a hole and were buffered, per side."""
        return (self._halves[0].ooo_segments, self._halves[1].ooo_segments)

    @property
    def conflicting_overlaps(self) -> tuple[int, int]:
        """Segments whose overlapping bytes differed from those received first, per side."""
        return (self._halves[0].conflicts, self._halves[1].conflicts)

    @property
    def keepalive_probes(self) -> tuple[int, int]:
        """Keep-alive probes (1 byte just before the next expected byte) per side."""
        return (self._halves[0].keepalives, self._halves[1].keepalives)

    @property
    def fin_seen(self) -> tuple[bool, bool]:
        """Whether each side's FIN was processed."""
        return (self._halves[0].fin_off is not None, self._halves[1].fin_off is not None)


class TcpReassembler:
    """Reassembles TCP segments into per-connection, per-side ordered byte streams.

    Memory per direction is bounded by ``max_buffer_per_direction`` buffered bytes; the table
    holds at most ``max_connections`` connections (the least recently active is evicted).
    Connections idle for ``idle_timeout`` seconds of capture time are closed (``"timeout"``);
    finished ones are forgotten after ``time_wait`` seconds. ``on_hold(conn)`` is called when
    ``conn.held_since`` changes (bytes held at a SYN-less start, delivered later with their
    own, earlier, capture times).
    """

    __slots__ = (
        "_conns",
        "_expire_at",
        "_halves",
        "_idle",
        "_max_buf",
        "_max_conns",
        "_next_id",
        "_on_hold",
        "_scan",
        "_time_wait",
        "ignored_segments",
    )

    def __init__(
        self,
        max_buffer_per_direction: int = 1 << 20,
        max_connections: int = 100_000,
        idle_timeout: float = 3600.0,
        time_wait: float = 240.0,
        on_hold: Callable[[Connection], None] | None = None,
    ) -> None:
        self._max_buf = max_buffer_per_direction
        self._on_hold = on_hold
        self._max_conns = max(1, max_connections)
        self._idle = idle_timeout
        self._time_wait = time_wait
        self._scan = max(min(idle_timeout, time_wait) / 8.0, 0.0)
        self._halves: dict[tuple[str, int, str, int], _Half] = {}
        self._conns: dict[int, Connection] = {}
        self._next_id = 1
        self._expire_at = float("-inf")
        self.ignored_segments = 0  # segments that belong to no connection (stray RST)

    @property
    def connection_count(self) -> int:
        """Connections currently tracked (open ones and recently finished ones)."""
        return len(self._conns)

    # ------------------------------------------------------------------ public API

    def feed(self, seg: TcpSegment) -> list[StreamEvent]:
        """Process one segment (capture order) and return the events it caused."""
        ts = seg.ts
        if ts >= self._expire_at:
            ev = self.expire(ts)
            return self._process(
                seg, self._halves.get((seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port)), ev
            )
        h = self._halves.get((seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port))
        # Fast path: established side, nothing buffered, no SYN/FIN/RST, nothing new acked.
        if (
            h is not None
            and h.fast
            and not seg.flags & 0x07
            and (not seg.flags & ACK or seg.ack == h.peer.nxt)
        ):
            payload = seg.payload
            if not payload:
                h.conn.last_ts = ts
                h.segments += 1
                return []
            if seg.seq == h.sq:
                conn = h.conn
                conn.last_ts = ts
                h.segments += 1
                off = h.off
                n = len(payload)
                h.off = off + n
                h.sq = h.nxt = (h.sq + n) & _MASK
                h.last = payload
                return [StreamData(conn, h.side, payload, ts, off)]
        return self._process(seg, h, [])

    def expire(self, ts: float) -> list[StreamEvent]:
        """Close connections idle for longer than ``idle_timeout``; forget old finished ones.

        ``feed`` calls this by itself at most every ``min(idle_timeout, time_wait) / 8``
        seconds of capture time, so the per-segment cost stays a single comparison.
        """
        ev: list[StreamEvent] = []
        for conn in list(self._conns.values()):
            age = ts - conn.last_ts
            if conn.finished:
                if age > self._time_wait:
                    self._forget(conn)
            elif age > self._idle:
                self._finish(conn, ts, REASON_TIMEOUT, None, ev)
                self._forget(conn)
        self._expire_at = ts + self._scan
        return ev

    def release_held(self, conn: Connection, ts: float) -> list[StreamEvent]:
        """Accept the held SYN-less start of ``conn``'s sides now (their bytes, with their
        own times), without waiting for the peer's ACK or more segments."""
        ev: list[StreamEvent] = []
        for h in conn._halves:
            if h.state == _HOLD:
                self._confirm(h, ts, ev)
        return ev

    def close_all(self, ts: float) -> list[StreamEvent]:
        """End of capture: release buffered data (gaps, then data) and close every connection."""
        ev: list[StreamEvent] = []
        for conn in self._conns.values():
            if not conn.finished:
                self._finish(conn, ts, REASON_END_OF_CAPTURE, None, ev)
        self._conns.clear()
        self._halves.clear()
        self._expire_at = float("-inf")
        return ev

    # ------------------------------------------------------------------ connection table

    def _process(
        self, seg: TcpSegment, h: _Half | None, ev: list[StreamEvent]
    ) -> list[StreamEvent]:
        ts = seg.ts
        flags = seg.flags
        if h is not None:
            conn = h.conn
            if flags & SYN:
                if self._new_incarnation(h, seg):
                    if not conn.finished:
                        self._finish(conn, ts, REASON_REUSED, None, ev)
                    self._forget(conn)
                    h = None
            elif conn.finished:
                conn.last_ts = ts
                h.segments += 1
                if seg.payload or flags & (FIN | RST):
                    conn.ignored_segments += 1
                return ev
        if h is None:
            if flags & RST:
                self.ignored_segments += 1
                return ev
            h = self._open(seg, ev)
        elif flags & SYN and flags & ACK and h.state == _NEW:
            h.isn = seg.seq
            self._set_open(h, (seg.seq + 1) & _MASK)
        conn = h.conn
        conn.last_ts = ts
        h.segments += 1
        if flags & RST:
            self._finish(conn, ts, REASON_RST, h.side, ev)
            return ev
        p = h.peer
        if flags & ACK and p.state != _DONE:
            self._on_ack(p, seg.ack, ts, ev)
        seq = (seg.seq + 1) & _MASK if flags & SYN else seg.seq
        if h.state == _DONE:
            self._after_fin(h, seq, seg.payload)
        else:
            self._on_data(h, seq, seg.payload, bool(flags & FIN), ts, ev)
        return ev

    def _new_incarnation(self, h: _Half, seg: TcpSegment) -> bool:
        """Whether a SYN/SYN-ACK on a known tuple starts a new connection."""
        if h.conn.finished:
            return True
        if seg.flags & ACK:
            return h.isn is not None and h.isn != seg.seq
        return h.isn != seg.seq

    def _open(self, seg: TcpSegment, ev: list[StreamEvent]) -> _Half:
        if len(self._conns) >= self._max_conns:
            self._evict(seg.ts, ev)
        flags = seg.flags
        src = (seg.src_ip, seg.src_port)
        dst = (seg.dst_ip, seg.dst_port)
        synack = flags & SYN and flags & ACK
        ends = (dst, src) if synack else (src, dst)
        conn = Connection(self._next_id, ends, seg.ip_version, bool(flags & SYN), seg.ts)
        self._next_id += 1
        h0, h1 = conn._halves
        (a_ip, a_port), (b_ip, b_port) = ends
        self._halves[(a_ip, a_port, b_ip, b_port)] = h0
        self._halves[(b_ip, b_port, a_ip, a_port)] = h1
        self._conns[conn.id] = conn
        ev.append(ConnectionOpened(conn, seg.ts, conn.syn_seen))
        if synack:
            h1.isn = seg.seq
            self._set_open(h1, (seg.seq + 1) & _MASK)
            h0.isn = (seg.ack - 1) & _MASK
            self._set_open(h0, seg.ack)
            return h1
        if flags & SYN:
            h0.isn = seg.seq
            self._set_open(h0, (seg.seq + 1) & _MASK)
        return h0

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.id, None)
        for h in conn._halves:
            (a_ip, a_port), (b_ip, b_port) = conn.endpoints
            key = (a_ip, a_port, b_ip, b_port) if h.side == 0 else (b_ip, b_port, a_ip, a_port)
            if self._halves.get(key) is h:
                del self._halves[key]

    def _evict(self, ts: float, ev: list[StreamEvent]) -> None:
        for conn in [c for c in self._conns.values() if c.finished]:
            self._forget(conn)
        if len(self._conns) < self._max_conns:
            return
        victims = sorted(self._conns.values(), key=lambda c: c.last_ts)
        for conn in victims[: max(1, self._max_conns // 16)]:
            self._finish(conn, ts, REASON_EVICTED, None, ev)
            self._forget(conn)

    def _finish(
        self, conn: Connection, ts: float, reason: str, side: int | None, ev: list[StreamEvent]
    ) -> None:
        """Release what can be released on both sides, then close the whole connection."""
        for h in conn._halves:
            self._drain(h, ts, ev)
        conn.finished = True
        conn.close_reason = reason
        ev.append(ConnectionClosed(conn, side, ts, reason))

    # ------------------------------------------------------------------ per-direction logic

    @staticmethod
    def _set_open(h: _Half, sq: int) -> None:
        h.state = _OPEN
        h.sq = h.nxt = sq
        h.off = 0
        h.fast = not h.pend_offs

    def _on_ack(self, p: _Half, ack: int, ts: float, ev: list[StreamEvent]) -> None:
        """The peer of ``p`` acknowledged ``ack`` in ``p``'s sequence space."""
        st = p.state
        if st == _NEW:
            p.hint = p.nxt = ack
            return
        if st == _HOLD:
            p.hint = ack
            if _sdiff(ack, p.sq) >= 0:
                self._confirm(p, ts, ev)
            return
        d = (ack - p.sq) & _MASK
        if d == 0 or d >= _HALF:
            return
        a_off = p.off + d
        if a_off > p.acked:
            p.acked = a_off
        if p.pend_offs:
            self._release_upto(p, p.acked, ts, ev)

    def _on_data(
        self, h: _Half, seq: int, payload: bytes, fin: bool, ts: float, ev: list[StreamEvent]
    ) -> None:
        n = len(payload)
        if h.state == _NEW:
            if not n and not fin:
                return
            h.state = _HOLD
            h.fast = False
            h.sq = seq
            h.nxt = -1
            h.off = 0
            h.hold_left = SYNLESS_HOLD_SEGMENTS
            if h.hint >= 0 and _sdiff(seq, h.hint) <= 0:
                self._confirm(h, ts, ev)  # the peer already has everything before `seq`
        off = h.off + _sdiff(seq, h.sq)
        if h.state == _HOLD:
            h.hold_left -= 1
            if off < 0 and -off <= SYNLESS_BACKFILL_WINDOW and n and not (n == 1 and off == -1):
                shift = -off
                h.pend_offs = [o + shift for o in h.pend_offs]
                h.sq = seq
                off = 0
                h.ooo_segments += 1
        end = off + n
        if fin and end < h.off:
            fin = False  # a FIN behind delivered data is bogus
        dup = 0
        conflict = False
        if n and off < h.off:
            if n == 1 and end == h.off and not fin:
                h.keepalives += 1
                return
            k = min(end, h.off) - off
            dup = k
            conflict = self._conflicts_delivered(h, off, payload if k == n else payload[:k])
            if end <= h.off:
                n = 0
            else:
                payload = payload[k:]
                off = h.off
                n -= k
        if n:
            if off - h.off > MAX_AHEAD:
                h.conn.ignored_segments += 1
                return
            if off == h.off and h.state == _OPEN and not h.pend_offs:
                self._deliver(h, payload, ts, ev)
            else:
                if off > h.off and h.state == _OPEN:
                    h.ooo_segments += 1
                d2, c2 = self._insert(h, off, payload, ts)
                dup += d2
                conflict = conflict or c2
                if h.state == _OPEN:
                    self._flush(h, ts, ev)
        if dup:
            h.retrans_bytes += dup
            h.retrans_segments += 1
        if conflict:
            h.conflicts += 1
        if h.state == _HOLD and (
            fin
            or h.hold_left <= 0
            or h.pend_bytes > self._max_buf
            or (h.hint >= 0 and _sdiff(h.hint, h.sq) >= 0)
        ):
            self._confirm(h, ts, ev)
        if h.state != _OPEN:
            if h.state == _HOLD and h.pend_ts:
                conn = h.conn
                if conn.held_since is None or ts < conn.held_since:
                    self._held_changed(conn)
            return
        if fin:
            self._close_fin(h, end, ts, ev)
            return
        if h.pend_offs:
            if h.acked > h.off:
                self._release_upto(h, h.acked, ts, ev)
            while h.pend_bytes > self._max_buf:
                self._gap(h, h.pend_offs[0] - h.off, ts, ev)
                self._flush(h, ts, ev)

    def _after_fin(self, h: _Half, seq: int, payload: bytes) -> None:
        """A segment from a side whose FIN was processed: retransmission or junk."""
        if not payload:
            return
        off = h.off + _sdiff(seq, h.sq)
        if off + len(payload) <= h.off:
            h.retrans_bytes += len(payload)
            h.retrans_segments += 1
        else:
            h.conn.ignored_segments += 1

    def _confirm(self, h: _Half, ts: float, ev: list[StreamEvent]) -> None:
        """Accept a held SYN-less start: the side becomes OPEN at its current start."""
        h.state = _OPEN
        h.nxt = h.sq
        if h.hint >= 0:
            d = _sdiff(h.hint, h.sq)
            if d > h.acked:
                h.acked = d
        # The held bytes came in order before now: each keeps its own capture time.
        self._flush(h, ts, ev, keep_ts=True)
        if h.pend_offs and h.acked > h.off:
            self._release_upto(h, h.acked, ts, ev)
        h.fast = not h.pend_offs
        if h.conn.held_since is not None:
            self._held_changed(h.conn)

    def _held_changed(self, conn: Connection) -> None:
        """Recompute ``conn.held_since`` from its halves still held; tell ``on_hold``."""
        stamps = [min(x.pend_ts) for x in conn._halves if x.state == _HOLD and x.pend_ts]
        since = min(stamps) if stamps else None
        if since != conn.held_since:
            conn.held_since = since
            if self._on_hold is not None:
                self._on_hold(conn)

    def _close_fin(self, h: _Half, fin_off: int, ts: float, ev: list[StreamEvent]) -> None:
        offs, datas = h.pend_offs, h.pend_data
        while offs and offs[-1] >= fin_off:
            offs.pop()
            h.pend_ts.pop()
            h.pend_bytes -= len(datas.pop())
            h.conn.ignored_segments += 1
        if offs and offs[-1] + len(datas[-1]) > fin_off:
            cut = fin_off - offs[-1]
            h.pend_bytes -= len(datas[-1]) - cut
            datas[-1] = datas[-1][:cut]
        self._release_all(h, ts, ev)
        if h.off < fin_off:
            self._gap(h, fin_off - h.off, ts, ev)
        h.state = _DONE
        h.fast = False
        h.fin_off = h.off
        h.nxt = (h.sq + 1) & _MASK
        conn = h.conn
        ev.append(ConnectionClosed(conn, h.side, ts, REASON_FIN))
        if h.peer.state == _DONE and not conn.finished:
            conn.finished = True
            conn.close_reason = REASON_FIN

    def _drain(self, h: _Half, ts: float, ev: list[StreamEvent]) -> None:
        """Connection ends: deliver everything buffered, declaring holes and acked tails lost."""
        if h.state == _HOLD:
            self._confirm(h, ts, ev)
        if h.state == _OPEN:
            self._release_all(h, ts, ev)
            if h.acked > h.off:
                self._gap(h, h.acked - h.off, ts, ev)
        h.state = _DONE
        h.fast = False

    # ------------------------------------------------------------------ buffer primitives

    def _deliver(self, h: _Half, data: bytes, ts: float, ev: list[StreamEvent]) -> None:
        n = len(data)
        ev.append(StreamData(h.conn, h.side, data, ts, h.off))
        h.off += n
        h.sq = h.nxt = (h.sq + n) & _MASK
        h.last = data

    def _gap(self, h: _Half, n: int, ts: float, ev: list[StreamEvent]) -> None:
        ev.append(StreamGap(h.conn, h.side, n, ts, h.off))
        h.off += n
        h.sq = h.nxt = (h.sq + n) & _MASK
        h.last = b""
        h.gap_bytes += n
        h.gaps += 1

    def _flush(self, h: _Half, ts: float, ev: list[StreamEvent], *, keep_ts: bool = False) -> None:
        """Deliver the buffered run that starts exactly at the next expected offset, if any,
        at ``ts``; with ``keep_ts`` (bytes that were held, not missing) each piece at its
        own capture time, never earlier than a piece before it in the stream."""
        offs = h.pend_offs
        if offs and offs[0] == h.off:
            datas = h.pend_data
            cur = h.off
            k = 0
            count = len(offs)
            while k < count and offs[k] == cur:
                cur += len(datas[k])
                k += 1
            chunks = datas[:k]
            stamps = h.pend_ts[:k]
            del offs[:k]
            del datas[:k]
            del h.pend_ts[:k]
            if keep_ts and min(stamps) < ts:
                self._deliver_stamped(h, chunks, stamps, ev)
                h.fast = h.state == _OPEN and not offs
                return
            data = chunks[0] if k == 1 else b"".join(chunks)
            h.pend_bytes -= len(data)
            self._deliver(h, data, ts, ev)
            if len(data) > _LAST_KEEP:
                h.last = chunks[-1]
        h.fast = h.state == _OPEN and not offs

    def _deliver_stamped(
        self, h: _Half, chunks: list[bytes], stamps: list[float], ev: list[StreamEvent]
    ) -> None:
        """Deliver contiguous ``chunks`` in runs of equal time (the running maximum of
        ``stamps``, so that times never go back within the stream)."""
        start = 0
        latest = stamps[0]
        for i in range(1, len(chunks) + 1):
            t = stamps[i] if i < len(chunks) else None
            if t is not None and t <= latest:
                continue
            data = b"".join(chunks[start:i])
            h.pend_bytes -= len(data)
            self._deliver(h, data, latest, ev)
            if t is not None:
                start, latest = i, t
        if len(h.last) > _LAST_KEEP:
            h.last = chunks[-1]

    def _release_upto(self, h: _Half, limit: int, ts: float, ev: list[StreamEvent]) -> None:
        """Declare lost the holes below ``limit`` that have buffered data beyond them."""
        offs = h.pend_offs
        while offs and h.off < limit:
            first = offs[0]
            if first > h.off:
                stop = min(first, limit)
                self._gap(h, stop - h.off, ts, ev)
                if stop < first:
                    break
            self._flush(h, ts, ev)
        h.fast = h.state == _OPEN and not offs

    def _release_all(self, h: _Half, ts: float, ev: list[StreamEvent]) -> None:
        offs = h.pend_offs
        while offs:
            if offs[0] > h.off:
                self._gap(h, offs[0] - h.off, ts, ev)
            self._flush(h, ts, ev)

    @staticmethod
    def _conflicts_delivered(h: _Half, off: int, data: bytes) -> bool:
        """Whether ``data`` at ``off`` (all before ``h.off``) differs from what was delivered."""
        last = h.last
        if not last:
            return False
        lo = h.off - len(last)
        a = max(off, lo)
        b = min(off + len(data), h.off)
        return b > a and data[a - off : b - off] != last[a - lo : b - lo]

    @staticmethod
    def _insert(h: _Half, off: int, data: bytes, ts: float) -> tuple[int, bool]:
        """Buffer ``data`` at ``off`` keeping bytes already buffered; return (dup, conflict)."""
        offs, datas = h.pend_offs, h.pend_data
        end = off + len(data)
        i = bisect_right(offs, off)
        if i and offs[i - 1] + len(datas[i - 1]) > off:
            i -= 1
        cur = off
        dup = 0
        conflict = False
        pieces: list[tuple[int, bytes]] = []
        count = len(offs)
        while i < count and offs[i] < end:
            eo = offs[i]
            ed = datas[i]
            ee = eo + len(ed)
            if eo > cur:
                pieces.append((cur, data[cur - off : eo - off]))
            lo = max(cur, eo)
            hi = min(end, ee)
            if hi > lo:
                dup += hi - lo
                if not conflict and data[lo - off : hi - off] != ed[lo - eo : hi - eo]:
                    conflict = True
            cur = max(cur, ee)
            i += 1
        if cur < end:
            pieces.append((cur, data if cur == off else data[cur - off :]))
        for o, d in pieces:
            j = bisect_left(offs, o)
            offs.insert(j, o)
            datas.insert(j, d)
            h.pend_ts.insert(j, ts)
            h.pend_bytes += len(d)
        return dup, conflict
