"""Bounded-memory aggregates: a sample reservoir for quantiles, adaptive time bins."""

from __future__ import annotations

import math
import random


class Reservoir:
    """Count, maximum and a uniform sample of at most ``size`` values (exact quantiles
    while fewer values than ``size`` were added). Deterministic for a given input."""

    __slots__ = ("_rng", "count", "max", "samples", "size")

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.count = 0
        self.max: float | None = None
        self.samples: list[float] = []
        self._rng = random.Random(0x5EED)

    def add(self, value: float) -> None:
        self.count += 1
        if self.max is None or value > self.max:
            self.max = value
        if len(self.samples) < self.size:
            self.samples.append(value)
            return
        slot = self._rng.randrange(self.count)
        if slot < self.size:
            self.samples[slot] = value

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) by the nearest-rank method; None when empty."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        rank = max(1, min(len(ordered), math.ceil(q * len(ordered) - 1e-9)))
        return ordered[rank - 1]

    def median(self) -> float | None:
        """The median (the mean of the middle two for an even count)."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        n = len(ordered)
        mid = n // 2
        return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class TimeBins:
    """Per-direction message counts in at most ``nbins`` bins: the bin width starts at
    ``width`` seconds and doubles (merging neighbours) whenever the span outgrows it."""

    __slots__ = ("c2d", "d2c", "nbins", "start", "width")

    def __init__(self, nbins: int = 120, width: float = 0.001) -> None:
        self.nbins = nbins
        self.width = width
        self.start: float | None = None
        self.d2c = [0] * nbins
        self.c2d = [0] * nbins

    def add(self, ts: float, device_to_cloud: bool) -> None:
        if self.start is None:
            self.start = ts
        offset = ts - self.start
        if offset < 0:
            offset = 0.0
        index = int(offset / self.width)
        while index >= self.nbins:
            self._halve()
            index = int(offset / self.width)
        if device_to_cloud:
            self.d2c[index] += 1
        else:
            self.c2d[index] += 1

    def extend_to(self, ts: float) -> None:
        """Make sure the bins cover ``ts`` (the session end)."""
        if self.start is None:
            self.start = ts
        while ts - self.start >= self.nbins * self.width:
            self._halve()

    def _halve(self) -> None:
        n = self.nbins
        self.d2c = [self.d2c[i] + self.d2c[i + 1] for i in range(0, n, 2)] + [0] * (n // 2)
        self.c2d = [self.c2d[i] + self.c2d[i + 1] for i in range(0, n, 2)] + [0] * (n // 2)
        self.width *= 2

    def used(self, end: float | None) -> int:
        """Number of bins up to ``end`` (or up to the last non-empty bin)."""
        last = 0
        for i in range(self.nbins):
            if self.d2c[i] or self.c2d[i]:
                last = i + 1
        if end is not None and self.start is not None:
            last = max(last, min(self.nbins, int((end - self.start) / self.width) + 1))
        return last
