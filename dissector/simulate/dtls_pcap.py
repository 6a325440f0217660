"""Datagrams of simulated DTLS sessions → UDP/IP/Ethernet packets → pcap / pcapng files.

One :class:`UdpFlow` per connection: its datagrams plus the device and cloud endpoints
(the cloud on UDP 5684). A resumed session that moved to a new port is simply another
flow. Packets are built with :mod:`dissector.capture.writer`; IP identifications and
default device ports are drawn from the seed, so output is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from dissector.capture.writer import ip_udp
from dissector.model import Direction
from dissector.simulate.errors import SimulationError
from dissector.simulate.pcap import (
    Endpoint,
    Packet,
    ephemeral_port,
    link_frame,
    merge_packets,
    normalise_flows,
    write_packets_pcap,
    write_packets_pcapng,
)
from dissector.simulate.rng import ByteSource

__all__ = [
    "DEFAULT_DTLS_DEVICE_IP",
    "HasDatagrams",
    "UdpFlow",
    "build_udp_packets",
    "write_udp_pcap",
    "write_udp_pcapng",
]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

DatagramTuple = tuple[float, Direction, bytes]

DEFAULT_DTLS_CLOUD: Endpoint = ("10.0.0.1", 5684)
DEFAULT_DTLS_DEVICE_IP = "10.0.0.2"


class HasDatagrams(Protocol):
    """Anything with datagrams, e.g. a :class:`~dissector.simulate.dtls.DtlsSessionBuilder`."""

    @property
    def datagrams(self) -> Sequence[DatagramTuple]: ...


@dataclass(slots=True)
class UdpFlow:
    """One UDP flow to synthesise: ``datagrams`` between ``device`` (None: 10.0.0.2 and a
    seeded ephemeral port) and ``cloud``."""

    datagrams: Sequence[DatagramTuple]
    device: Endpoint | None = None
    cloud: Endpoint = DEFAULT_DTLS_CLOUD


def _flows(flows: UdpFlow | HasDatagrams | Iterable[UdpFlow | HasDatagrams]) -> list[UdpFlow]:
    return normalise_flows(flows, UdpFlow, "datagrams")


def _flow_packets(
    flow: UdpFlow, device: Endpoint, rng: ByteSource, linktype: int, checksum: bool
) -> list[Packet]:
    ident = {D2C: rng.uint(0, 0xFFFF), C2D: rng.uint(0, 0xFFFF)}
    ends = {D2C: (device, flow.cloud), C2D: (flow.cloud, device)}
    out: list[Packet] = []
    last = float("-inf")
    for ts, direction, data in flow.datagrams:
        if ts < last:
            raise SimulationError(f"datagrams go back in time ({ts} after {last})")
        last = ts
        (sip, sport), (dip, dport) = ends[direction]
        try:
            ip = ip_udp(sip, sport, dip, dport, data, checksum=checksum, ident=ident[direction])
            frame = link_frame(ip, direction, linktype)
        except (ValueError, OSError) as exc:
            raise SimulationError(f"cannot build packets: {exc}") from None
        ident[direction] = (ident[direction] + 1) & 0xFFFF
        out.append((ts, frame))
    return out


def build_udp_packets(
    flows: UdpFlow | HasDatagrams | Iterable[UdpFlow | HasDatagrams],
    *,
    seed: int | str | None = 0,
    linktype: int = 1,
    checksum: bool = True,
) -> list[Packet]:
    """Packets of one or several flows, merged by time (ties keep flow order).

    Flows without a device endpoint get distinct seeded ephemeral ports.
    """
    rng = ByteSource(seed)
    per_flow: list[list[Packet]] = []
    used: set[int] = set()
    for flow in _flows(flows):
        device = flow.device
        if device is None:
            device = (DEFAULT_DTLS_DEVICE_IP, ephemeral_port(rng, used))
        used.add(device[1])
        per_flow.append(_flow_packets(flow, device, rng, linktype, checksum))
    return merge_packets(per_flow)


def write_udp_pcap(
    dest: str | os.PathLike[str] | IO[bytes],
    flows: UdpFlow | HasDatagrams | Iterable[UdpFlow | HasDatagrams],
    *,
    seed: int | str | None = 0,
    linktype: int = 1,
    checksum: bool = True,
    nanosecond: bool = False,
) -> int:
    """Write the flows as a classic pcap file (path or binary file); returns the count."""
    packets = build_udp_packets(flows, seed=seed, linktype=linktype, checksum=checksum)
    return write_packets_pcap(dest, packets, linktype, nanosecond=nanosecond)


def write_udp_pcapng(
    dest: str | os.PathLike[str] | IO[bytes],
    flows: UdpFlow | HasDatagrams | Iterable[UdpFlow | HasDatagrams],
    *,
    seed: int | str | None = 0,
    linktype: int = 1,
    checksum: bool = True,
    interface_name: str | None = "sim0",
) -> int:
    """Write the flows as a pcapng file (one interface); returns the packet count."""
    packets = build_udp_packets(flows, seed=seed, linktype=linktype, checksum=checksum)
    return write_packets_pcapng(dest, packets, linktype, interface_name=interface_name)
