"""Stream writes of simulated sessions → TCP/IP packets → pcap / pcapng files.

One :class:`TcpFlow` per session: its stream writes plus the device and cloud endpoints.
:class:`TcpPacketizer` gives every write correct sequence and acknowledgement numbers,
cuts it into segments of at most ``segment_size`` bytes, and adds the SYN / SYN-ACK / ACK
opening and the FIN exchange at the end. Packets are built with
:mod:`dissector.capture.writer` (Ethernet or any link type it knows; IPv4 or IPv6 by the
address text) and are deterministic for a seed (initial sequence numbers, IP IDs and
default ephemeral ports are drawn from it).
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar

from dissector.capture.writer import (
    PcapngWriter,
    PcapWriter,
    ethernet_frame,
    frame_for_linktype,
    ip_tcp,
)
from dissector.model import Direction
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource

__all__ = [
    "DEFAULT_CLOUD",
    "DEFAULT_DEVICE_IP",
    "Endpoint",
    "HasWrites",
    "Packet",
    "TcpFlow",
    "TcpPacketizer",
    "build_packets",
    "ephemeral_port",
    "flow_packets",
    "link_frame",
    "merge_packets",
    "normalise_flows",
    "open_output",
    "write_packets_pcap",
    "write_packets_pcapng",
    "write_pcap",
    "write_pcapng",
]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

Endpoint = tuple[str, int]
Packet = tuple[float, bytes]
"""``(capture time, link-layer frame)``."""
Write = tuple[float, Direction, bytes]

DEFAULT_CLOUD: Endpoint = ("10.0.0.1", 5683)
DEFAULT_DEVICE_IP = "10.0.0.2"
_MACS = {D2C: (b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01")}  # (src, dst)
_MACS[C2D] = (_MACS[D2C][1], _MACS[D2C][0])
_GAP = 0.0001  # spacing of the synthetic SYN and FIN packets, seconds

F = TypeVar("F")


def link_frame(ip: bytes, direction: Direction, linktype: int) -> bytes:
    """``ip`` in a frame of ``linktype``: Ethernet (1) with the device / cloud MACs for
    ``direction``, else whatever :func:`frame_for_linktype` builds."""
    if linktype == 1:
        src, dst = _MACS[direction]
        return ethernet_frame(ip, src_mac=src, dst_mac=dst)
    return frame_for_linktype(linktype, ip)


def ephemeral_port(rng: ByteSource, used: set[int]) -> int:
    """A seeded ephemeral port (49152–65535) not in ``used`` (the caller records it)."""
    port = rng.uint(49152, 65535)
    while port in used:
        port = 49152 + (port - 49152 + 1) % 16384
    return port


def normalise_flows(flows: Any, flow_type: type[F], attr: str, hint: str = "") -> list[F]:
    """``flows`` as a list of ``flow_type``: one flow, one object with ``attr`` (its
    ``.writes`` / ``.datagrams``, wrapped), or an iterable of those."""
    if isinstance(flows, flow_type):
        return [flows]
    if hasattr(flows, attr):
        return [flow_type(getattr(flows, attr))]  # type: ignore[call-arg]
    out: list[F] = []
    for item in flows:
        if isinstance(item, flow_type):
            out.append(item)
        elif hasattr(item, attr):
            out.append(flow_type(getattr(item, attr)))  # type: ignore[call-arg]
        else:
            raise SimulationError(
                f"expected a {flow_type.__name__} or an object with .{attr}, "
                f"not {type(item).__name__}{hint}"
            )
    return out


def merge_packets(per_flow: Iterable[list[Packet]]) -> list[Packet]:
    """Packets of several flows merged by time (ties keep flow order)."""
    return list(heapq.merge(*per_flow, key=lambda p: p[0]))


class HasWrites(Protocol):
    """Anything with stream writes, e.g. a :class:`~dissector.simulate.tcp.TcpSessionBuilder`."""

    @property
    def writes(self) -> Sequence[Write]: ...


@dataclass(slots=True)
class TcpFlow:
    """One TCP connection to synthesise.

    ``device``: the device endpoint (None: ``10.0.0.2`` and a seeded ephemeral port).
    ``syn``: start with the three-way handshake (False: the capture starts mid-stream).
    ``close``: who sends the first FIN (``"device"``, ``"cloud"``), ``"rst"`` for a reset
    by the device, or None to leave the connection open.
    """

    writes: Sequence[Write]
    device: Endpoint | None = None
    cloud: Endpoint = DEFAULT_CLOUD
    syn: bool = True
    close: str | None = "device"


class TcpPacketizer:
    """Stateful packet maker for one connection (usable stream-wise for huge captures)."""

    def __init__(
        self,
        device: Endpoint,
        cloud: Endpoint,
        *,
        rng: ByteSource,
        segment_size: int = 1460,
        linktype: int = 1,
        checksum: bool = True,
    ) -> None:
        if segment_size < 1:
            raise SimulationError(f"segment size must be at least 1, not {segment_size}")
        self.ends = {D2C: (device, cloud), C2D: (cloud, device)}
        self.segment_size = segment_size
        self.linktype = linktype
        self.checksum = checksum
        self.isn = {D2C: rng.uint(0, 0xFFFFFFFF), C2D: rng.uint(0, 0xFFFFFFFF)}
        self.next_seq = {d: isn + 1 for d, isn in self.isn.items()}
        self._ident = {D2C: rng.uint(0, 0xFFFF), C2D: rng.uint(0, 0xFFFF)}
        try:  # validate the addresses and the link type once
            frame_for_linktype(
                linktype, ip_tcp(device[0], device[1], cloud[0], cloud[1], 0, 0, "S")
            )
        except ValueError as exc:
            raise SimulationError(f"cannot build packets: {exc}") from None

    def packet(
        self, ts: float, direction: Direction, seq: int, ack: int, flags: str, payload: bytes = b""
    ) -> Packet:
        """One link-layer frame from ``direction``'s endpoint to the other."""
        (sip, sport), (dip, dport) = self.ends[direction]
        ident = self._ident[direction]
        self._ident[direction] = (ident + 1) & 0xFFFF
        ip = ip_tcp(
            sip, sport, dip, dport, seq, ack, flags, payload, checksum=self.checksum, ident=ident
        )
        return ts, link_frame(ip, direction, self.linktype)

    def open(self, ts: float) -> list[Packet]:
        """SYN, SYN-ACK, ACK, ending just before ``ts``."""
        dev, cld = self.isn[D2C], self.isn[C2D]
        return [
            self.packet(ts - 3 * _GAP, D2C, dev, 0, "S"),
            self.packet(ts - 2 * _GAP, C2D, cld, dev + 1, "SA"),
            self.packet(ts - _GAP, D2C, dev + 1, cld + 1, "A"),
        ]

    def data(self, ts: float, direction: Direction, data: bytes) -> list[Packet]:
        """``data`` written by ``direction`` at ``ts``, in segments of ``segment_size``."""
        out = []
        size = self.segment_size
        ack = self.next_seq[direction.reverse]
        seq = self.next_seq[direction]
        for i in range(0, len(data), size):
            chunk = data[i : i + size]
            out.append(self.packet(ts, direction, seq, ack, "PA", chunk))
            seq += len(chunk)
        self.next_seq[direction] = seq
        return out

    def close(self, ts: float, by: Direction) -> list[Packet]:
        """FIN from ``by``, FIN from the peer, final ACK, from ``ts`` on."""
        other = by.reverse
        a, b = self.next_seq[by], self.next_seq[other]
        self.next_seq[by] = a + 1
        self.next_seq[other] = b + 1
        return [
            self.packet(ts, by, a, b, "FA"),
            self.packet(ts + _GAP, other, b, a + 1, "FA"),
            self.packet(ts + 2 * _GAP, by, a + 1, b + 1, "A"),
        ]

    def reset(self, ts: float, by: Direction) -> list[Packet]:
        """An RST from ``by`` at ``ts``."""
        return [self.packet(ts, by, self.next_seq[by], self.next_seq[by.reverse], "RA")]


def _flows(flows: TcpFlow | HasWrites | Iterable[TcpFlow | HasWrites]) -> list[TcpFlow]:
    return normalise_flows(flows, TcpFlow, "writes", " (wrap a list of stream writes in TcpFlow)")


def _coalesced(writes: Sequence[Write]) -> list[Write]:
    """Merge consecutive writes of one direction with the same timestamp (as loopback does)."""
    out: list[Write] = []
    for ts, direction, data in writes:
        if out and out[-1][0] == ts and out[-1][1] == direction:
            out[-1] = (ts, direction, out[-1][2] + data)
        else:
            out.append((ts, direction, data))
    return out


def flow_packets(
    flow: TcpFlow,
    *,
    rng: ByteSource,
    segment_size: int = 1460,
    linktype: int = 1,
    checksum: bool = True,
    coalesce: bool = False,
) -> list[Packet]:
    """All packets of one flow, in time order (raises :class:`SimulationError` if the
    writes go back in time)."""
    device = flow.device or (DEFAULT_DEVICE_IP, rng.uint(49152, 65535))
    pk = TcpPacketizer(
        device,
        flow.cloud,
        rng=rng,
        segment_size=segment_size,
        linktype=linktype,
        checksum=checksum,
    )
    writes = _coalesced(flow.writes) if coalesce else list(flow.writes)
    last = writes[0][0] if writes else 1.0  # an empty flow still opens and closes
    out: list[Packet] = pk.open(last) if flow.syn else []
    for ts, direction, data in writes:
        if ts < last:
            raise SimulationError(f"stream writes go back in time ({ts} after {last})")
        last = ts
        out += pk.data(ts, direction, data)
    if flow.close == "rst":
        out += pk.reset(last + _GAP, D2C)
    elif flow.close in ("device", "cloud"):
        out += pk.close(last + _GAP, D2C if flow.close == "device" else C2D)
    elif flow.close is not None:
        raise SimulationError(f"close must be 'device', 'cloud', 'rst' or None: {flow.close!r}")
    return out


def build_packets(
    flows: TcpFlow | HasWrites | Iterable[TcpFlow | HasWrites],
    *,
    seed: int | None = 0,
    segment_size: int = 1460,
    linktype: int = 1,
    checksum: bool = True,
    coalesce: bool = False,
) -> list[Packet]:
    """Packets of one or several flows, merged by time (ties keep flow order).

    Flows without a device endpoint get distinct seeded ephemeral ports.
    """
    rng = ByteSource(seed)
    per_flow: list[list[Packet]] = []
    used: set[int] = set()
    for flow in _flows(flows):
        if flow.device is None:
            port = ephemeral_port(rng, used)
            used.add(port)
            flow = TcpFlow(flow.writes, (DEFAULT_DEVICE_IP, port), flow.cloud, flow.syn, flow.close)
        per_flow.append(
            flow_packets(
                flow,
                rng=rng,
                segment_size=segment_size,
                linktype=linktype,
                checksum=checksum,
                coalesce=coalesce,
            )
        )
    return merge_packets(per_flow)


@contextmanager
def open_output(dest: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    """A binary output: a path opened for writing (and closed), or a file object as is."""
    if isinstance(dest, str | os.PathLike):
        with open(dest, "wb") as fh:
            yield fh
    else:
        yield dest


def write_packets_pcap(
    dest: str | os.PathLike[str] | IO[bytes],
    packets: Sequence[Packet],
    linktype: int,
    *,
    nanosecond: bool = False,
) -> int:
    """Write ``packets`` as a classic pcap file (path or binary file); returns the count."""
    with open_output(dest) as fh:
        writer = PcapWriter(fh, linktype, nanosecond=nanosecond)
        for ts, frame in packets:
            writer.write_packet(ts, frame)
    return len(packets)


def write_packets_pcapng(
    dest: str | os.PathLike[str] | IO[bytes],
    packets: Sequence[Packet],
    linktype: int,
    *,
    interface_name: str | None = "sim0",
) -> int:
    """Write ``packets`` as a pcapng file (one interface); returns the count."""
    with open_output(dest) as fh:
        writer = PcapngWriter(fh)
        iface = writer.add_interface(linktype, name=interface_name)
        for ts, frame in packets:
            writer.write(ts, frame, iface)
    return len(packets)


def write_pcap(
    dest: str | os.PathLike[str] | IO[bytes],
    flows: TcpFlow | HasWrites | Iterable[TcpFlow | HasWrites],
    *,
    nanosecond: bool = False,
    seed: int | None = 0,
    segment_size: int = 1460,
    linktype: int = 1,
    checksum: bool = True,
    coalesce: bool = False,
) -> int:
    """Write the flows as a classic pcap file (path or binary file); returns the packet count."""
    packets = build_packets(
        flows,
        seed=seed,
        segment_size=segment_size,
        linktype=linktype,
        checksum=checksum,
        coalesce=coalesce,
    )
    return write_packets_pcap(dest, packets, linktype, nanosecond=nanosecond)


def write_pcapng(
    dest: str | os.PathLike[str] | IO[bytes],
    flows: TcpFlow | HasWrites | Iterable[TcpFlow | HasWrites],
    *,
    seed: int | None = 0,
    segment_size: int = 1460,
    linktype: int = 1,
    checksum: bool = True,
    coalesce: bool = False,
    interface_name: str | None = "sim0",
) -> int:
    """Write the flows as a pcapng file (one interface, microseconds); returns the count."""
    packets = build_packets(
        flows,
        seed=seed,
        segment_size=segment_size,
        linktype=linktype,
        checksum=checksum,
        coalesce=coalesce,
    )
    return write_packets_pcapng(dest, packets, linktype, interface_name=interface_name)
