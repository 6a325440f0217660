"""Fast link / IP / transport decoding of captured frames (no Scapy).

:func:`decode_packet` turns a :class:`RawPacket` into a :class:`TcpSegment`, a
:class:`UdpDatagram` or None (anything else). Link types: Ethernet (with stacked 802.1Q /
802.1ad tags and PPPoE sessions), Linux cooked SLL and SLL2, raw IP (101, 12, 14), IPv4 (228),
IPv6 (229), BSD NULL (0, host byte order) and LOOP (108). IPv4 options, IPv6 extension
headers, IPv4 and IPv6 fragments (through :class:`IpDefragmenter`), trimming to the IP length
(link padding never becomes payload). Checksums are never checked: loopback captures carry bad
ones everywhere. What was not decoded is counted in :class:`LinkStats`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from dissector.capture.ipfrag import IpDefragmenter
from dissector.capture.packets import RawPacket, TcpSegment, UdpDatagram

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "SUPPORTED_LINKTYPES",
    "LinkDecoder",
    "LinkStats",
    "decode_packet",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_DLT_RAW_12 = 12
LINKTYPE_DLT_RAW_14 = 14
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_DLT_RAW_12,
        LINKTYPE_DLT_RAW_14,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
_ETH_PPPOE = 0x8864
_AF_INET6 = frozenset({10, 23, 24, 28, 30})  # Linux, Windows, BSD, FreeBSD, Darwin
# IPv6 extension headers with the generic (next, length in 8-octet units - 1) layout
_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140, 253, 254})

_IPV4_HDR = struct.Struct("!HHHxB").unpack_from  # total length, id, flags/frag, (ttl), proto
# Fast path: IPv4 without options + TCP, from the IP total length on: total, flags/frag,
# proto, src, dst, sport, dport, seq, ack, data offset/flags.
_IPV4_TCP = struct.Struct("!H2xH1xB2x4s4sHHIIH").unpack_from
_TCP_HDR = struct.Struct("!HHIIH").unpack_from
_U16 = struct.Struct("!H").unpack_from
_HHH = struct.Struct("!HHH").unpack_from
_FRAG6 = struct.Struct("!HI").unpack_from


@dataclass(slots=True)
class LinkStats:
    """What :func:`decode_packet` could not turn into a segment or datagram, by reason."""

    packets: int = 0
    tcp: int = 0
    udp: int = 0
    truncated: int = 0  # snap length cut the packet short: skipped
    truncated_kept: int = 0  # TCP segments cut short, kept with the bytes they have
    malformed: int = 0  # inconsistent headers (bad lengths, wrong version...)
    non_ip: int = 0  # ARP, LLDP, other ethertypes / address families
    other_protocol: int = 0  # ICMP, IGMP, ESP...
    fragments_held: int = 0  # fragments buffered for reassembly (datagram not complete yet)
    unknown_linktype: int = 0
    unknown_linktypes: set[int] = field(default_factory=set)


_DISCARD_STATS = LinkStats()

_ADDR_CACHE: dict[bytes, str] = {}


def _ntop(raw: bytes) -> str:
    text = _ADDR_CACHE.get(raw)
    if text is None:
        if len(_ADDR_CACHE) >= 65536:
            _ADDR_CACHE.clear()
        text = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
        _ADDR_CACHE[raw] = text
    return text


def _short(pkt: RawPacket, data: bytes, stats: LinkStats) -> None:
    """Count a packet whose headers run past the captured bytes."""
    if pkt.orig_len > len(data):
        stats.truncated += 1
    else:
        stats.malformed += 1


def decode_packet(
    pkt: RawPacket, defrag: IpDefragmenter, stats: LinkStats | None = None
) -> TcpSegment | UdpDatagram | None:
    """Decode one captured frame down to TCP or UDP; None for anything else.

    Never raises on bad data. ``stats`` (optional) counts why packets were not decoded.
    """
    if stats is None:
        stats = _DISCARD_STATS
    stats.packets += 1
    data = pkt.data
    lt = pkt.linktype
    n = len(data)
    if lt == LINKTYPE_ETHERNET:
        if n >= 54 and data[14] == 0x45 and data[12] == 0x08 and data[13] == 0:
            # Fast path: Ethernet, IPv4 without options, unfragmented TCP (else below).
            total, frag, proto, src, dst, sport, dport, seq, ack, offflags = _IPV4_TCP(data, 16)
            doff = (offflags >> 12) << 2
            end = 14 + total
            if proto == 6 and not frag & 0x3FFF and total >= 40 and end <= n and doff >= 20:
                start = 34 + doff
                if start <= end:
                    stats.tcp += 1
                    cache = _ADDR_CACHE
                    return TcpSegment(
                        pkt.ts,
                        pkt.index,
                        cache.get(src) or _ntop(src),
                        sport,
                        cache.get(dst) or _ntop(dst),
                        dport,
                        seq,
                        ack,
                        offflags & 0x1FF,
                        data[start:end],
                        4,
                    )
        if n < 14:
            _short(pkt, data, stats)
            return None
        et = (data[12] << 8) | data[13]
        off = 14
    elif lt == LINKTYPE_LINUX_SLL2:
        if n < 20:
            _short(pkt, data, stats)
            return None
        et = (data[0] << 8) | data[1]
        off = 20
    elif lt == LINKTYPE_LINUX_SLL:
        if n < 16:
            _short(pkt, data, stats)
            return None
        et = (data[14] << 8) | data[15]
        off = 16
    elif lt in (101, 12, 14):  # LINKTYPE_RAW, DLT_RAW on some platforms
        if n < 1:
            _short(pkt, data, stats)
            return None
        version = data[0] >> 4
        if version == 4:
            return _ipv4(pkt, data, 0, defrag, stats)
        if version == 6:
            return _ipv6(pkt, data, 0, defrag, stats)
        stats.malformed += 1  # a raw-IP link whose packet is not IP (mislabelled file?)
        return None
    elif lt == LINKTYPE_IPV4:
        return _ipv4(pkt, data, 0, defrag, stats)
    elif lt == LINKTYPE_IPV6:
        return _ipv6(pkt, data, 0, defrag, stats)
    elif lt in (0, 108):  # NULL, LOOP
        if n < 4:
            _short(pkt, data, stats)
            return None
        if lt == LINKTYPE_LOOP:
            family = int.from_bytes(data[:4], "big")
        else:  # host byte order of the capturing machine: whichever reading is small
            family = int.from_bytes(data[:4], "little")
            if family > 0xFFFF:
                family = int.from_bytes(data[:4], "big")
        if family == 2:
            return _ipv4(pkt, data, 4, defrag, stats)
        if family in _AF_INET6:
            return _ipv6(pkt, data, 4, defrag, stats)
        stats.non_ip += 1
        return None
    else:
        stats.unknown_linktype += 1
        stats.unknown_linktypes.add(lt)
        return None
    # ethertype dispatch (Ethernet, SLL, SLL2)
    while et in _ETH_VLAN:
        if n < off + 4:
            _short(pkt, data, stats)
            return None
        et = (data[off + 2] << 8) | data[off + 3]
        off += 4
    if et == _ETH_IPV4:
        return _ipv4(pkt, data, off, defrag, stats)
    if et == _ETH_IPV6:
        return _ipv6(pkt, data, off, defrag, stats)
    if et == _ETH_PPPOE:
        if n < off + 8:
            _short(pkt, data, stats)
            return None
        ppp = (data[off + 6] << 8) | data[off + 7]
        if ppp == 0x0021:
            return _ipv4(pkt, data, off + 8, defrag, stats)
        if ppp == 0x0057:
            return _ipv6(pkt, data, off + 8, defrag, stats)
    stats.non_ip += 1
    return None


def _ipv4(
    pkt: RawPacket, data: bytes, off: int, defrag: IpDefragmenter, stats: LinkStats
) -> TcpSegment | UdpDatagram | None:
    n = len(data)
    if n < off + 20:
        _short(pkt, data, stats)
        return None
    vihl = data[off]
    ihl = (vihl & 15) << 2
    if vihl >> 4 != 4 or ihl < 20:
        stats.malformed += 1
        return None
    total, ident, frag, proto = _IPV4_HDR(data, off + 2)
    if total == 0:  # TCP segmentation offload: length left to the capture
        end = n
    else:
        end = off + total
        if total < ihl:
            stats.malformed += 1
            return None
        if end > n:
            if not _keep_truncated_tcp(pkt, data, proto, frag & 0x3FFF, off + ihl, stats):
                _short(pkt, data, stats)
                return None
            end = n
    start = off + ihl
    if start > n:
        _short(pkt, data, stats)
        return None
    src = data[off + 12 : off + 16]
    dst = data[off + 16 : off + 20]
    if frag & 0x3FFF:  # more-fragments flag or non-zero offset
        done = defrag.add(
            (4, src, dst, proto, ident),
            (frag & 0x1FFF) << 3,
            bool(frag & 0x2000),
            data[start:end],
            pkt.ts,
            proto,
        )
        if done is None:
            stats.fragments_held += 1
            return None
        proto, data = done
        start = 0
        end = len(data)
    if proto == 6:
        return _tcp(pkt, data, start, end, src, dst, 4, stats)
    if proto == 17:
        return _udp(pkt, data, start, end, src, dst, 4, stats)
    stats.other_protocol += 1
    return None


def _ipv6(
    pkt: RawPacket, data: bytes, off: int, defrag: IpDefragmenter, stats: LinkStats
) -> TcpSegment | UdpDatagram | None:
    n = len(data)
    if n < off + 40:
        _short(pkt, data, stats)
        return None
    if data[off] >> 4 != 6:
        stats.malformed += 1
        return None
    plen = (data[off + 4] << 8) | data[off + 5]
    nh = data[off + 6]
    src = data[off + 8 : off + 24]
    dst = data[off + 24 : off + 40]
    start = off + 40
    if plen == 0:  # jumbogram or segmentation offload
        end = n
    else:
        end = start + plen
        if end > n:
            if not _keep_truncated_tcp(pkt, data, nh, 0, start, stats):
                _short(pkt, data, stats)
                return None
            end = n
    fragmented = False
    while True:
        if nh == 6:
            return _tcp(pkt, data, start, end, src, dst, 6, stats)
        if nh == 17:
            return _udp(pkt, data, start, end, src, dst, 6, stats)
        if nh in _IPV6_EXT or nh == 51:
            if end - start < 8:
                stats.malformed += 1
                return None
            # the authentication header counts 4-octet units - 2, the others 8-octet units - 1
            hlen = (data[start + 1] + 2) << 2 if nh == 51 else (data[start + 1] + 1) << 3
            nh = data[start]
            start += hlen
            if start > end:
                stats.malformed += 1
                return None
            continue
        if nh == 44 and not fragmented:
            if end - start < 8:
                stats.malformed += 1
                return None
            next_nh = data[start]
            offm, ident = _FRAG6(data, start + 2)
            start += 8
            if offm & 0xFFF9 == 0:  # atomic fragment
                nh = next_nh
                continue
            done = defrag.add(
                (6, src, dst, ident),
                offm & 0xFFF8,
                bool(offm & 1),
                data[start:end],
                pkt.ts,
                next_nh,
            )
            if done is None:
                stats.fragments_held += 1
                return None
            nh, data = done
            start = 0
            end = len(data)
            fragmented = True
            continue
        if nh == 44:
            stats.malformed += 1
        else:
            stats.other_protocol += 1
        return None


def _keep_truncated_tcp(
    pkt: RawPacket, data: bytes, proto: int, fragment: int, tcp_start: int, stats: LinkStats
) -> bool:
    """A TCP segment cut short by the snap length after its TCP header keeps the payload
    bytes it has: the reassembler then reports exactly the missing bytes as a gap, and a
    frame cut short still yields its first ciphertext block (the next frame's IV)."""
    if proto != 6 or fragment or pkt.orig_len <= len(data):
        return False
    if len(data) < tcp_start + 20 or len(data) < tcp_start + (data[tcp_start + 12] >> 4) * 4:
        return False
    stats.truncated_kept += 1
    return True


def _tcp(
    pkt: RawPacket, data: bytes, start: int, end: int, src: bytes, dst: bytes, ver: int,
    stats: LinkStats,
) -> TcpSegment | None:  # fmt: skip
    if end - start < 20:
        _short(pkt, data, stats)
        return None
    sport, dport, seq, ack, offflags = _TCP_HDR(data, start)
    doff = (offflags >> 12) << 2
    if doff < 20 or start + doff > end:
        stats.malformed += 1
        return None
    stats.tcp += 1
    cache = _ADDR_CACHE
    return TcpSegment(
        pkt.ts,
        pkt.index,
        cache.get(src) or _ntop(src),
        sport,
        cache.get(dst) or _ntop(dst),
        dport,
        seq,
        ack,
        offflags & 0x1FF,
        data[start + doff : end],
        ver,
    )


def _udp(
    pkt: RawPacket, data: bytes, start: int, end: int, src: bytes, dst: bytes, ver: int,
    stats: LinkStats,
) -> UdpDatagram | None:  # fmt: skip
    if end - start < 8:
        _short(pkt, data, stats)
        return None
    sport, dport, ulen = _HHH(data, start)
    if 8 <= ulen < end - start:
        end = start + ulen
    stats.udp += 1
    cache = _ADDR_CACHE
    return UdpDatagram(
        pkt.ts,
        pkt.index,
        cache.get(src) or _ntop(src),
        sport,
        cache.get(dst) or _ntop(dst),
        dport,
        data[start + 8 : end],
        ver,
    )


class LinkDecoder:
    """:func:`decode_packet` bundled with its defragmenter and counters."""

    __slots__ = ("defrag", "stats")

    def __init__(self, defrag: IpDefragmenter | None = None) -> None:
        self.defrag = defrag if defrag is not None else IpDefragmenter()
        self.stats = LinkStats()

    def decode(self, pkt: RawPacket) -> TcpSegment | UdpDatagram | None:
        """Decode one frame; see :func:`decode_packet`."""
        return decode_packet(pkt, self.defrag, self.stats)
