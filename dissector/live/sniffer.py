"""The live loop: packets from a source → (optional) capture files → the pipeline → output.

The loop is signal-safe: :meth:`Sniffer.request_stop` and :meth:`Sniffer.request_reload`
only set flags (call them from signal handlers); the loop acts on them between batches of
packets, so a packet is never half-processed. It ends on a stop request, after ``count``
packets or after ``duration`` seconds (reading what is already queued first, except at
``count``), and then always runs the pipeline's ``finish``: every open session is closed
and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dissector.capture.packets import RawPacket
from dissector.keys import KeyRing
from dissector.live.capture import LiveCaptureError
from dissector.live.rotate import RotatingCaptureWriter
from dissector.pipeline import Dissector, PipelineEvent

__all__ = ["PacketSource", "SniffStats", "Sniffer", "swap_keyring"]


class PacketSource(Protocol):
    """Where packets come from (:class:`~dissector.live.capture.LiveCapture`, or a test's)."""

    def read(self, timeout: float) -> list[RawPacket]:
        """The packets that arrived, waiting up to ``timeout`` seconds for the first."""
        ...


@dataclass(slots=True)
class SniffStats:
    """How a live capture went: packets, events, why it stopped, and a fatal error if any."""

    packets: int = 0
    events: int = 0
    stopped_by: str = ""
    reloads: int = 0
    error: LiveCaptureError | None = None
    seconds: float = 0.0


def swap_keyring(dissector: Dissector, keyring: KeyRing) -> None:
    """Give sessions that start from now on ``keyring``; running sessions keep theirs."""
    setter = getattr(dissector, "set_keyring", None)
    if callable(setter):
        setter(keyring)
        return
    dissector.keyring = keyring
    dissector.dtls.keyring = keyring


class Sniffer:
    """Run ``source`` through ``dissector`` until stopped; see the module docstring."""

    def __init__(
        self,
        source: PacketSource,
        dissector: Dissector,
        *,
        count: int | None = None,
        duration: float | None = None,
        writer: RotatingCaptureWriter | None = None,
        poll: float = 0.2,
        drain: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.dissector = dissector
        self.count = count
        self.duration = duration
        self.writer = writer
        self.poll = poll
        self.drain = drain
        self.clock = clock
        self.stats = SniffStats()
        self._stop: str | None = None
        self._reload = False

    def request_stop(self, reason: str = "signal") -> None:
        """Stop after the current batch (safe to call from a signal handler)."""
        if self._stop is None:
            self._stop = reason

    def request_reload(self) -> None:
        """Call the ``reload`` callback before the next batch (signal-safe)."""
        self._reload = True

    def run(
        self,
        emit: Callable[[PipelineEvent], None],
        reload: Callable[[], None] | None = None,
    ) -> SniffStats:
        """Capture and dissect until a limit or a stop request; ``emit`` gets every event.

        After a stop request or the duration, the packets already queued are still read
        (for at most ``drain`` seconds): what arrived before Ctrl-C is not lost.
        """
        stats = self.stats
        start = self.clock()
        deadline = None if self.duration is None else start + self.duration
        try:
            while self._stop is None:
                if self._reload:
                    self._reload = False
                    stats.reloads += 1
                    if reload is not None:
                        reload()
                timeout = self.poll
                if deadline is not None:
                    left = deadline - self.clock()
                    if left <= 0:
                        self.request_stop("duration")
                        break
                    timeout = min(timeout, left)
                if self._process(self.source.read(timeout), emit):
                    self.request_stop("count")
            if self._stop != "count":
                drain_until = self.clock() + self.drain
                while self.clock() < drain_until:
                    batch = self.source.read(0.0)
                    if not batch or self._process(batch, emit):
                        break
        except LiveCaptureError as exc:
            stats.error = exc
            self._stop = "error"
        finally:
            stats.seconds = self.clock() - start
        stats.stopped_by = self._stop or "signal"
        for event in self.dissector.finish():
            stats.events += 1
            emit(event)
        if self.writer is not None:
            self.writer.flush()
        return stats

    def _process(self, batch: list[RawPacket], emit: Callable[[PipelineEvent], None]) -> bool:
        """Write and dissect ``batch``; True when ``count`` packets have been reached."""
        stats = self.stats
        writer = self.writer
        feed = self.dissector.feed_packet
        reached = False
        for pkt in batch:
            if writer is not None:
                writer.write(pkt)
            for event in feed(pkt):
                stats.events += 1
                emit(event)
            stats.packets += 1
            if self.count is not None and stats.packets >= self.count:
                reached = True
                break
        if batch and writer is not None:
            writer.flush()
        return reached
