"""Capture impairments: what real networks and capture points do to a clean packet list.

:class:`Impairments` applies, in this order and from one seeded byte source:

* ``start_after`` — the capture begins that many seconds after the first packet
  (mid-session: the handshake and first frames are missing);
* ``loss`` — each data-bearing packet is missing from the capture with this probability
  (the dissector reports the hole, e.g. ``tcp.gap``);
* ``duplicate`` — each data-bearing packet is seen a second time shortly after, as a
  retransmission, with this probability;
* ``reorder`` — each pair of neighbouring data-bearing packets is swapped with this
  probability (timestamps stay in capture order: the later one is captured first).

Small segments are not an impairment of the packet list: pass ``segment_size`` to the
build (:class:`~dissector.simulate.scenario.BuildContext`). SYN, FIN and RST packets are
never dropped, duplicated or moved, so connections still open and close. Works on TCP and
UDP alike (packets are decoded with :class:`~dissector.capture.linklayer.LinkDecoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import TCP_FIN, TCP_RST, TCP_SYN, RawPacket, TcpSegment
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import Packet

__all__ = ["Impairments"]

#: Delay of a duplicated (retransmitted) packet after the original, seconds.
RETRANSMIT_DELAY = 0.0003
_SCALE = 1_000_000


@dataclass(frozen=True, slots=True)
class Impairments:
    """Rates in 0..1 and a capture start offset in seconds (all 0: no impairment)."""

    reorder: float = 0.0
    duplicate: float = 0.0
    loss: float = 0.0
    start_after: float = 0.0

    def __post_init__(self) -> None:
        for name in ("reorder", "duplicate", "loss"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SimulationError(f"{name} rate must be between 0 and 1, not {value}")
        if self.start_after < 0:
            raise SimulationError(f"start_after must not be negative ({self.start_after})")

    @property
    def active(self) -> bool:
        """True if anything would change."""
        return bool(self.reorder or self.duplicate or self.loss or self.start_after)

    def apply(self, packets: list[Packet], linktype: int, rng: ByteSource) -> list[Packet]:
        """The impaired copy of ``packets`` (time-ordered ``(ts, frame)`` of ``linktype``)."""
        if not self.active or not packets:
            return list(packets)
        out = list(packets)
        if self.start_after:
            first = out[0][0]
            out = [p for p in out if p[0] >= first + self.start_after]
        movable = _movable(out, linktype)

        def chance(rate: float) -> bool:
            return rate > 0 and rng.uint(0, _SCALE - 1) < rate * _SCALE

        if self.loss:
            kept = []
            kept_movable = []
            for packet, ok in zip(out, movable, strict=True):
                if ok and chance(self.loss):
                    continue
                kept.append(packet)
                kept_movable.append(ok)
            out, movable = kept, kept_movable
        if self.duplicate:
            dup: list[Packet] = []
            dup_movable: list[bool] = []
            for packet, ok in zip(out, movable, strict=True):
                dup.append(packet)
                dup_movable.append(ok)
                if ok and chance(self.duplicate):
                    dup.append((packet[0] + RETRANSMIT_DELAY, packet[1]))
                    dup_movable.append(False)
            order = sorted(range(len(dup)), key=lambda i: dup[i][0])
            out = [dup[i] for i in order]
            movable = [dup_movable[i] for i in order]
        if self.reorder:
            i = 0
            while i + 1 < len(out):
                if movable[i] and movable[i + 1] and chance(self.reorder):
                    (t1, f1), (t2, f2) = out[i], out[i + 1]
                    out[i], out[i + 1] = (t1, f2), (t2, f1)
                    i += 2
                else:
                    i += 1
        return out


def _movable(packets: list[Packet], linktype: int) -> list[bool]:
    """Which packets carry data (and no SYN/FIN/RST): those may be lost, doubled, swapped."""
    decoder = LinkDecoder()
    flags = TCP_SYN | TCP_FIN | TCP_RST
    out = []
    for ts, frame in packets:
        unit = decoder.decode(RawPacket(ts, linktype, frame, len(frame), 0, ""))
        if isinstance(unit, TcpSegment):
            out.append(bool(unit.payload) and not unit.flags & flags)
        else:
            out.append(unit is not None and bool(getattr(unit, "payload", b"")))
    return out
