"""Build a scenario into a capture file: the one entry point of the CLI and the captures
script.

:func:`simulate` builds a :class:`~dissector.simulate.scenario.Scenario` with a seed and a
:class:`~dissector.simulate.scenario.KeySet`, applies
:class:`~dissector.simulate.impair.Impairments`, and returns the simulation with its final
packets; :func:`write_capture` writes packets as pcap or pcapng (chosen by the file name).
The same seed, keys and options give byte-identical files.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from dissector.capture.writer import PcapngWriter, PcapWriter
from dissector.simulate.errors import SimulationError
from dissector.simulate.impair import Impairments
from dissector.simulate.scenario import (
    DEFAULT_START,
    BuildContext,
    KeySet,
    Packet,
    Scenario,
    Simulation,
)

__all__ = ["SimulatedCapture", "capture_bytes", "simulate", "write_capture"]


@dataclass(slots=True)
class SimulatedCapture:
    """A built scenario: the simulation (clean packets, sessions, key files) and the
    packets after impairments."""

    simulation: Simulation
    packets: list[Packet]
    linktype: int


def simulate(
    scenario: Scenario,
    *,
    seed: int | str = 0,
    keys: KeySet | None = None,
    segment_size: int = 1460,
    impairments: Impairments | None = None,
    start: float = DEFAULT_START,
) -> SimulatedCapture:
    """Build ``scenario`` (keys generated from ``seed`` when ``keys`` is None)."""
    if segment_size < 1:
        raise SimulationError(f"segment size must be at least 1, not {segment_size}")
    keys = keys if keys is not None else KeySet(seed)
    ctx = BuildContext(keys, seed=seed, start=start, segment_size=segment_size)
    sim = scenario.build(ctx)
    packets = sim.packets
    if impairments is not None and impairments.active:
        packets = impairments.apply(packets, sim.linktype, ctx.rng("impairments"))
    return SimulatedCapture(sim, packets, sim.linktype)


def capture_bytes(packets: list[Packet], linktype: int = 1, *, pcapng: bool = False) -> bytes:
    """The packets as a pcap (microseconds) or pcapng file image."""
    buf = io.BytesIO()
    if pcapng:
        ng = PcapngWriter(buf)
        iface = ng.add_interface(linktype, name="sim0")
        for ts, frame in packets:
            ng.write(ts, frame, iface)
    else:
        writer = PcapWriter(buf, linktype)
        for ts, frame in packets:
            writer.write_packet(ts, frame)
    return buf.getvalue()


def write_capture(path: str | os.PathLike[str], packets: list[Packet], linktype: int = 1) -> int:
    """Write ``packets`` to ``path`` (pcapng when it ends in ``.pcapng``); returns the byte
    count. Raises :class:`SimulationError` when the file cannot be written."""
    data = capture_bytes(packets, linktype, pcapng=str(path).lower().endswith(".pcapng"))
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise SimulationError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return len(data)
