"""IP fragment reassembly (IPv4 and IPv6) with capture-time timeouts and bounded memory.

Fragments are keyed by the caller (``(4, src, dst, proto, id)`` for IPv4,
``(6, src, dst, id)`` for IPv6). Out-of-order fragments are fine; where fragments overlap the
data that arrived first wins (and the overlap is counted). Incomplete datagrams expire after
``timeout`` seconds of capture time; when more than ``max_pending`` datagrams or
``max_bytes`` bytes are pending, the oldest datagram is evicted and counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["DefragStats", "IpDefragmenter", "Ipv4Defragmenter"]

_MAX_DATAGRAM = 65535


@dataclass(slots=True)
class DefragStats:
    """Counters the caller can turn into findings."""

    fragments: int = 0
    reassembled: int = 0
    timed_out: int = 0
    evicted: int = 0
    overlaps: int = 0
    malformed: int = 0


class _Pending:
    __slots__ = ("first_ts", "frags", "proto", "size", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.frags: list[tuple[int, bytes]] = []
        self.proto = -1
        self.total = -1
        self.size = 0


class IpDefragmenter:
    """Reassembles fragmented IP datagrams; see the module docstring for the policy."""

    def __init__(
        self,
        timeout: float = 60.0,
        max_pending: int = 1024,
        max_bytes: int = 16 * 1024 * 1024,
        max_fragments: int = 1024,
    ) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments
        self.stats = DefragStats()
        self._pending: OrderedDict[Hashable, _Pending] = OrderedDict()
        self._bytes = 0

    @property
    def pending(self) -> int:
        """Number of datagrams still waiting for fragments."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def _drop(self, key: Hashable) -> None:
        p = self._pending.pop(key)
        self._bytes -= p.size

    def expire(self, now: float) -> int:
        """Drop datagrams whose first fragment is older than ``timeout``; return how many."""
        limit = now - self.timeout
        pending = self._pending
        dropped = 0
        while pending:
            key, p = next(iter(pending.items()))
            if p.first_ts >= limit:
                break
            self._drop(key)
            dropped += 1
        self.stats.timed_out += dropped
        return dropped

    def add(
        self, key: Hashable, offset: int, more: bool, data: bytes, ts: float, proto: int
    ) -> tuple[int, bytes] | None:
        """Add one fragment (``offset`` in bytes, ``more`` = more-fragments flag).

        Returns ``(protocol, datagram payload)`` once the datagram is complete, else None.
        ``proto`` is the upper-layer protocol this fragment announces; the one of the
        offset-0 fragment is returned.
        """
        stats = self.stats
        stats.fragments += 1
        pending = self._pending
        if pending:
            self.expire(ts)
        end = offset + len(data)
        if end > _MAX_DATAGRAM:
            stats.malformed += 1
            if key in pending:
                self._drop(key)
            return None
        p = pending.get(key)
        if p is None:
            if len(pending) >= self.max_pending:
                self._drop(next(iter(pending)))
                stats.evicted += 1
            p = pending[key] = _Pending(ts)
        if offset == 0:
            p.proto = proto
        if not more:
            if p.total >= 0 and p.total != end:
                stats.malformed += 1
                self._drop(key)
                return None
            p.total = end
        p.frags.append((offset, data))
        p.size += len(data)
        self._bytes += len(data)
        if len(p.frags) > self.max_fragments:
            stats.malformed += 1
            self._drop(key)
            return None
        while self._bytes > self.max_bytes and pending:
            oldest = next(iter(pending))
            self._drop(oldest)
            stats.evicted += 1
            if oldest == key:
                return None
        if p.total < 0 or p.proto < 0:
            return None
        return self._complete(key, p)

    def _complete(self, key: Hashable, p: _Pending) -> tuple[int, bytes] | None:
        total = p.total
        covered = 0
        overlap = False
        for off, chunk in sorted(p.frags, key=_offset):
            if off > covered:
                return None
            if off < covered:
                overlap = True
            covered = max(covered, off + len(chunk))
        if covered < total:
            return None
        buf = bytearray(total)
        for off, chunk in reversed(p.frags):  # earlier arrivals written last: they win
            if off < total:
                piece = chunk[: total - off]
                buf[off : off + len(piece)] = piece
        self._drop(key)
        self.stats.reassembled += 1
        if overlap:
            self.stats.overlaps += 1
        return p.proto, bytes(buf)


def _offset(item: tuple[int, bytes]) -> int:
    return item[0]


Ipv4Defragmenter = IpDefragmenter
"""Alias: the defragmenter handles IPv4 and IPv6 fragments alike."""
