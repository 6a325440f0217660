"""Derive impaired or re-encapsulated copies of a real capture for tests.

Everything works on the TCP segments of a capture (decoded with our own reader and
link decoder) and writes them back with the capture writers, so the derived files are
real pcap/pcapng files that go through the whole pipeline.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, TcpSegment, UdpDatagram
from dissector.capture.reader import CaptureReader
from dissector.capture.tcp_reassembly import StreamData, TcpReassembler
from dissector.capture.writer import PcapngWriter, PcapWriter, build_tcp_frame, build_udp_frame
from dissector.model import Direction

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_RAW = 101


def load_segments(path: Path | str) -> list[TcpSegment]:
    """Every TCP segment of a capture, in capture order."""
    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([str(path)]):
        if isinstance(item, RawPacket):
            unit = decoder.decode(item)
            if isinstance(unit, TcpSegment):
                out.append(unit)
    return out


def _frame(seg: TcpSegment, linktype: int) -> bytes:
    return build_tcp_frame(
        linktype,
        seg.src_ip,
        seg.src_port,
        seg.dst_ip,
        seg.dst_port,
        seg.seq,
        seg.ack,
        seg.flags,
        seg.payload,
    )


def write_pcap(segments: list[TcpSegment], linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """The segments as a classic pcap file (bytes)."""
    buf = io.BytesIO()
    writer = PcapWriter(buf, linktype)
    for seg in segments:
        writer.write_packet(seg.ts, _frame(seg, linktype))
    writer.flush()
    return buf.getvalue()


def write_pcapng(segments: list[TcpSegment]) -> bytes:
    """The segments as pcapng: two sections, each with an Ethernet and an SLL2 interface,
    packets alternating between the interfaces."""
    buf = io.BytesIO()
    writer = PcapngWriter(buf)
    half = len(segments) // 2
    for part in (segments[:half], segments[half:]):
        if part is not segments[:half]:
            writer.new_section()
        eth = writer.add_interface(LINKTYPE_ETHERNET, name="eth0", tsresol=9)
        sll2 = writer.add_interface(LINKTYPE_LINUX_SLL2, name="any", tsresol=6)
        for i, seg in enumerate(part):
            iface, lt = (eth, LINKTYPE_ETHERNET) if i % 2 == 0 else (sll2, LINKTYPE_LINUX_SLL2)
            writer.write(seg.ts, _frame(seg, lt), interface=iface)
    writer.flush()
    return buf.getvalue()


def to_ipv6(segments: list[TcpSegment]) -> list[TcpSegment]:
    """Map every IPv4 address to an IPv6 one (documentation prefix)."""

    def v6(ip: str) -> str:
        a, b, c, d = (int(x) for x in ip.split("."))
        return f"2001:db8::{a:x}{b:02x}:{c:x}{d:02x}"

    return [replace(s, src_ip=v6(s.src_ip), dst_ip=v6(s.dst_ip), ip_version=6) for s in segments]


def resegment(
    segments: list[TcpSegment],
    rng: random.Random,
    *,
    smallest: int = 1,
    largest: int = 48,
    swap: float = 0.15,
    duplicate: float = 0.1,
) -> list[TcpSegment]:
    """Split every data segment into 1–48-byte pieces, swap some neighbours of the same
    direction and duplicate some pieces (retransmissions). No byte is lost."""
    pieces: list[TcpSegment] = []
    for seg in segments:
        data = seg.payload
        if not data:
            pieces.append(seg)
            continue
        pos = 0
        while pos < len(data):
            size = rng.randint(smallest, largest)
            chunk = data[pos : pos + size]
            pieces.append(replace(seg, seq=(seg.seq + pos) & 0xFFFFFFFF, payload=chunk))
            pos += len(chunk)
    out: list[TcpSegment] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        if (
            i + 1 < len(pieces)
            and pieces[i + 1].payload
            and piece.payload
            and pieces[i + 1].src_port == piece.src_port
            and rng.random() < swap
        ):
            nxt = pieces[i + 1]
            out += [replace(nxt, ts=piece.ts), replace(piece, ts=nxt.ts)]
            i += 2
            continue
        out.append(piece)
        if piece.payload and rng.random() < duplicate:
            out.append(piece)
        i += 1
    return out


def frame_boundaries(stream: bytes, start: int) -> set[int]:
    """Offsets in a stream at which a Particle frame starts (from ``start`` on)."""
    offsets = set()
    pos = start
    while pos + 2 <= len(stream):
        offsets.add(pos)
        pos += 2 + int.from_bytes(stream[pos : pos + 2], "big")
    offsets.add(pos)
    return offsets


def cut_at_frame_boundary(
    segments: list[TcpSegment], fraction: float, cloud_port: int = 5683
) -> tuple[list[TcpSegment], float]:
    """Drop the first ``fraction`` of the capture, cutting where the next data segment of
    each direction starts at a frame boundary. Returns the rest and the cut time."""
    syn = [s for s in segments if s.syn]
    isn = {(s.src_ip, s.src_port): s.seq + 1 for s in syn}
    streams: dict[tuple[str, int], bytearray] = {}
    starts: dict[int, tuple[tuple[str, int], int]] = {}
    for i, seg in enumerate(segments):
        key = (seg.src_ip, seg.src_port)
        if not seg.payload or key not in isn:
            continue
        buf = streams.setdefault(key, bytearray())
        offset = (seg.seq - isn[key]) & 0xFFFFFFFF
        if offset == len(buf):
            buf += seg.payload
            starts[i] = (key, offset)
    bounds = {}
    for key, stream in streams.items():
        handshake = 424 if key[1] == cloud_port else 256
        bounds[key] = frame_boundaries(bytes(stream), handshake)
    first = int(len(segments) * fraction)
    for cut in range(first, len(segments)):
        ok = True
        seen: set[tuple[str, int]] = set()
        for j in range(cut, len(segments)):
            if j not in starts:
                continue
            key, offset = starts[j]
            if key in seen:
                continue
            seen.add(key)
            if offset not in bounds[key]:
                ok = False
                break
            if len(seen) == 2:
                break
        if ok and len(seen) == 2:
            return segments[cut:], segments[cut].ts
    raise AssertionError("no cut point at a frame boundary")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


Transform = Callable[[list[TcpSegment]], bytes]


def stream_writes(path: Path | str, cloud_port: int = 5683) -> list[tuple[Direction, bytes, float]]:
    """The stream bytes of the first TCP connection, as ``(direction, data, ts)`` in order:
    exactly what a transport adapter would feed the sans-IO core."""
    reassembler = TcpReassembler()
    out: list[tuple[Direction, bytes, float]] = []
    conn_id = None
    for seg in load_segments(path):
        for ev in reassembler.feed(seg):
            if isinstance(ev, StreamData):
                if conn_id is None:
                    conn_id = ev.conn.id
                if ev.conn.id != conn_id:
                    continue
                port = ev.conn.endpoints[ev.side][1]
                direction = (
                    Direction.CLOUD_TO_DEVICE if port == cloud_port else Direction.DEVICE_TO_CLOUD
                )
                out.append((direction, ev.data, ev.ts))
    return out


#: One UDP datagram as ``(ts, src_ip, src_port, dst_ip, dst_port, payload)``.
Datagram = tuple[float, str, int, str, int, bytes]


def load_datagrams(path: Path | str) -> list[Datagram]:
    """Every UDP datagram of a capture, in capture order."""
    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([str(path)]):
        if isinstance(item, RawPacket):
            unit = decoder.decode(item)
            if isinstance(unit, UdpDatagram):
                out.append(
                    (unit.ts, unit.src_ip, unit.src_port, unit.dst_ip, unit.dst_port, unit.payload)
                )
    return out


def write_udp_pcap(datagrams: list[Datagram]) -> bytes:
    """Datagrams (sorted by time) as an Ethernet pcap file (bytes)."""
    buf = io.BytesIO()
    writer = PcapWriter(buf, LINKTYPE_ETHERNET)
    for ts, src, sport, dst, dport, payload in sorted(datagrams):
        writer.write_packet(ts, build_udp_frame(LINKTYPE_ETHERNET, src, sport, dst, dport, payload))
    writer.flush()
    return buf.getvalue()
