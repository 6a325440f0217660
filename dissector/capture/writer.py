"""pcap / pcapng writers and pure-Python packet builders (no Scapy).

Writers: :class:`PcapWriter` (classic pcap, either byte order, micro- or nanosecond) and
:class:`PcapngWriter` (sections, interfaces with their own link type / resolution / offset,
EPB, SPB, obsolete PB, decryption secrets, arbitrary blocks).

Builders compose: transport (:func:`tcp_segment`, :func:`udp_datagram`) inside IP
(:func:`ipv4_packet`, :func:`ipv6_packet`, or :func:`ip_tcp` / :func:`ip_udp` which pick the
version from the address text) inside a link header (:func:`ethernet_frame`,
:func:`linux_sll_frame`, :func:`linux_sll2_frame`, :func:`null_frame`, :func:`loop_frame`, or
:func:`frame_for_linktype`). Checksums are correct unless ``checksum=False`` (then zero).
"""

from __future__ import annotations

import ipaddress
import math
import struct
from collections.abc import Sequence
from typing import IO

from dissector.capture.packets import (
    TCP_ACK,
    TCP_CWR,
    TCP_ECE,
    TCP_FIN,
    TCP_NS,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    TCP_URG,
)

__all__ = [
    "PcapWriter",
    "PcapngWriter",
    "build_ethernet_ipv4_tcp",
    "build_ethernet_ipv4_udp",
    "build_ethernet_ipv6_tcp",
    "build_ethernet_ipv6_udp",
    "build_tcp_frame",
    "build_udp_frame",
    "ethernet_frame",
    "fragment_ipv4",
    "fragment_ipv6",
    "frame_for_linktype",
    "internet_checksum",
    "ip_tcp",
    "ip_udp",
    "ipv4_packet",
    "ipv6_ext_header",
    "ipv6_packet",
    "linux_sll2_frame",
    "linux_sll_frame",
    "loop_frame",
    "null_frame",
    "tcp_segment",
    "udp_datagram",
]

_FLAG_BITS = {
    "F": TCP_FIN,
    "S": TCP_SYN,
    "R": TCP_RST,
    "P": TCP_PSH,
    "A": TCP_ACK,
    "U": TCP_URG,
    "E": TCP_ECE,
    "C": TCP_CWR,
    "N": TCP_NS,
}


def _split_ts(ts: float, per_second: int) -> tuple[int, int]:
    """(whole seconds, fraction in 1/per_second units) without float precision loss."""
    sec = math.floor(ts)
    frac = round((ts - sec) * per_second)
    if frac >= per_second:
        sec += 1
        frac -= per_second
    return sec, frac


class PcapWriter:
    """Classic pcap writer; the file header is written on creation.

    Packets longer than ``snaplen`` are cut to it (their original length is kept).
    """

    def __init__(
        self,
        fileobj: IO[bytes],
        linktype: int,
        nanosecond: bool = False,
        snaplen: int = 262144,
        big_endian: bool = False,
    ) -> None:
        self._f = fileobj
        self.linktype = linktype
        self.snaplen = snaplen
        self._per_second = 1_000_000_000 if nanosecond else 1_000_000
        e = ">" if big_endian else "<"
        self._rec = struct.Struct(e + "IIII")
        magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
        fileobj.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write_packet(self, ts: float, data: bytes, orig_len: int | None = None) -> None:
        """Write one record with timestamp ``ts`` (seconds since the epoch)."""
        sec, frac = _split_ts(ts, self._per_second)
        if orig_len is None:
            orig_len = len(data)
        if self.snaplen and len(data) > self.snaplen:
            data = data[: self.snaplen]
        self._f.write(self._rec.pack(sec & 0xFFFFFFFF, frac, len(data), orig_len) + data)

    def write(self, ts: float, data: bytes, interface: int = 0) -> None:
        """Same as :meth:`write_packet` (a pcap file has a single interface)."""
        if interface != 0:
            raise ValueError("a pcap file has only interface 0")
        self.write_packet(ts, data)

    def flush(self) -> None:
        self._f.flush()


def _option(e: str, code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * pad


class PcapngWriter:
    """pcapng writer; a section header is written on creation (and by :meth:`new_section`).

    ``tsresol`` of :meth:`add_interface` is the raw ``if_tsresol`` byte: ``6`` microseconds
    (the default), ``9`` nanoseconds, ``0x80 | n`` for 2^-n seconds.
    """

    def __init__(self, fileobj: IO[bytes], big_endian: bool = False) -> None:
        self._f = fileobj
        self._e = ">" if big_endian else "<"
        self._ifaces: list[tuple[int, int, int]] = []  # (units per second, tsoffset, snaplen)
        self.new_section()

    def write_block(self, block_type: int, body: bytes) -> None:
        """Write any block; ``body`` is padded to a multiple of 4 bytes."""
        body += b"\0" * ((-len(body)) % 4)
        total = len(body) + 12
        e = self._e
        self._f.write(struct.pack(e + "II", block_type, total) + body + struct.pack(e + "I", total))

    def new_section(self, big_endian: bool | None = None) -> None:
        """Start a new section (interfaces start again at 0), optionally switching byte order."""
        if big_endian is not None:
            self._e = ">" if big_endian else "<"
        self._ifaces = []
        body = struct.pack(self._e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
        self.write_block(0x0A0D0D0A, body)

    def add_interface(
        self,
        linktype: int,
        name: str | None = None,
        tsresol: int = 6,
        snaplen: int = 0,
        tsoffset: int = 0,
    ) -> int:
        """Describe an interface in the current section; returns its id."""
        e = self._e
        opts = b""
        if name is not None:
            opts += _option(e, 2, name.encode())
        if tsresol != 6:
            opts += _option(e, 9, bytes([tsresol]))
        if tsoffset:
            opts += _option(e, 14, struct.pack(e + "q", tsoffset))
        if opts:
            opts += _option(e, 0, b"")
        self.write_block(1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts)
        per_second = 1 << (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol
        self._ifaces.append((per_second, tsoffset, snaplen))
        return len(self._ifaces) - 1

    def _units(self, ts: float, interface: int) -> int:
        per_second, tsoffset, _snap = self._ifaces[interface]
        sec, frac = _split_ts(ts - tsoffset, per_second)
        return sec * per_second + frac

    def write(
        self, ts: float, data: bytes, interface: int = 0, orig_len: int | None = None
    ) -> None:
        """Write an Enhanced Packet Block."""
        units = self._units(ts, interface)
        if orig_len is None:
            orig_len = len(data)
        body = struct.pack(
            self._e + "IIIII", interface, units >> 32, units & 0xFFFFFFFF, len(data), orig_len
        )
        self.write_block(6, body + data)

    def write_packet(self, ts: float, data: bytes) -> None:
        """Write an Enhanced Packet Block on interface 0 (added as Ethernet if missing)."""
        if not self._ifaces:
            self.add_interface(1)
        self.write(ts, data, 0)

    def write_simple_packet(self, data: bytes, orig_len: int | None = None) -> None:
        """Write a Simple Packet Block (interface 0, no timestamp)."""
        self.write_block(3, struct.pack(self._e + "I", len(data) if orig_len is None else orig_len)
                         + data)  # fmt: skip

    def write_obsolete_packet(self, ts: float, data: bytes, interface: int = 0) -> None:
        """Write an obsolete Packet Block (type 2)."""
        units = self._units(ts, interface)
        body = struct.pack(
            self._e + "HHIIII", interface, 0, units >> 32, units & 0xFFFFFFFF, len(data), len(data)
        )
        self.write_block(2, body + data)

    def write_decryption_secrets(self, secrets_type: int, data: bytes) -> None:
        """Write a Decryption Secrets Block (``0x544c534b`` = TLS key log)."""
        self.write_block(0x0A, struct.pack(self._e + "II", secrets_type, len(data)) + data)

    def flush(self) -> None:
        self._f.flush()


# -- checksums and transport --------------------------------------------------------------


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones'-complement checksum."""
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _pseudo_header(src_ip: str, dst_ip: str, proto: int, length: int) -> bytes:
    src, dst = _addr(src_ip), _addr(dst_ip)
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)


def _flags(flags: int | str) -> int:
    if isinstance(flags, int):
        return flags
    value = 0
    for letter in flags.upper():
        value |= _FLAG_BITS[letter]
    return value


def tcp_segment(
    src_ip: str,
    sport: int,
    dst_ip: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes = b"",
    *,
    window: int = 65535,
    options: bytes = b"",
    urgent: int = 0,
    checksum: bool = True,
) -> bytes:
    """TCP header + payload; ``flags`` as bits or letters (``"PA"``); options padded."""
    options += b"\0" * ((-len(options)) % 4)
    doff = (20 + len(options)) // 4
    fl = _flags(flags)
    hdr = struct.pack(
        "!HHIIHHHH",
        sport,
        dport,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        (doff << 12) | (fl & 0x1FF),
        window,
        0,
        urgent,
    )
    seg = hdr + options + payload
    if checksum:
        cs = internet_checksum(_pseudo_header(src_ip, dst_ip, 6, len(seg)) + seg)
        seg = seg[:16] + struct.pack("!H", cs) + seg[18:]
    return seg


def udp_datagram(
    src_ip: str, sport: int, dst_ip: str, dport: int, payload: bytes = b"", *, checksum: bool = True
) -> bytes:
    """UDP header + payload (a computed checksum of 0 is sent as 0xffff)."""
    length = 8 + len(payload)
    dgram = struct.pack("!HHHH", sport, dport, length & 0xFFFF, 0) + payload
    if checksum:
        cs = internet_checksum(_pseudo_header(src_ip, dst_ip, 17, length) + dgram) or 0xFFFF
        dgram = dgram[:6] + struct.pack("!H", cs) + dgram[8:]
    return dgram


# -- IP ---------------------------------------------------------------------------------------


def ipv4_packet(
    src_ip: str,
    dst_ip: str,
    proto: int,
    payload: bytes,
    *,
    ident: int = 0,
    ttl: int = 64,
    tos: int = 0,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    checksum: bool = True,
    total_length: int | None = None,
) -> bytes:
    """IPv4 header (options padded to 4 bytes) + payload; ``frag_offset`` in bytes (÷8)."""
    options += b"\0" * ((-len(options)) % 4)
    ihl = (20 + len(options)) // 4
    if total_length is None:
        total_length = ihl * 4 + len(payload)
    frag = (frag_offset >> 3) | (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0)
    hdr = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            tos,
            total_length,
            ident,
            frag,
            ttl,
            proto,
            0,
            _addr(src_ip),
            _addr(dst_ip),
        )
        + options
    )
    if checksum:
        hdr = hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6_packet(
    src_ip: str,
    dst_ip: str,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
    payload_length: int | None = None,
) -> bytes:
    """IPv6 header + payload (which may start with extension headers); payloads over 65535
    bytes get payload length 0, as segmentation offload captures show them."""
    if payload_length is None:
        payload_length = len(payload) if len(payload) <= 0xFFFF else 0
    first = (6 << 28) | (traffic_class << 20) | flow_label
    return (
        struct.pack("!IHBB", first, payload_length, next_header, hop_limit)
        + _addr(src_ip)
        + _addr(dst_ip)
        + payload
    )


def ipv6_ext_header(next_header: int, body: bytes = b"") -> bytes:
    """A generic IPv6 extension header (hop-by-hop, routing, destination options)."""
    body += b"\0" * ((-(len(body) + 2)) % 8)
    return bytes([next_header, (len(body) + 2) // 8 - 1]) + body


def ip_tcp(
    src_ip: str,
    sport: int,
    dst_ip: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes = b"",
    *,
    checksum: bool = True,
    ident: int = 0,
    window: int = 65535,
    options: bytes = b"",
) -> bytes:
    """An IPv4 or IPv6 packet (chosen by the address text) carrying a TCP segment."""
    seg = tcp_segment(
        src_ip, sport, dst_ip, dport, seq, ack, flags, payload,
        window=window, options=options, checksum=checksum,
    )  # fmt: skip
    if ":" in src_ip:
        return ipv6_packet(src_ip, dst_ip, 6, seg)
    return ipv4_packet(src_ip, dst_ip, 6, seg, ident=ident, checksum=checksum)


def ip_udp(
    src_ip: str,
    sport: int,
    dst_ip: str,
    dport: int,
    payload: bytes = b"",
    *,
    checksum: bool = True,
    ident: int = 0,
) -> bytes:
    """An IPv4 or IPv6 packet (chosen by the address text) carrying a UDP datagram."""
    dgram = udp_datagram(src_ip, sport, dst_ip, dport, payload, checksum=checksum)
    if ":" in src_ip:
        return ipv6_packet(src_ip, dst_ip, 17, dgram)
    return ipv4_packet(src_ip, dst_ip, 17, dgram, ident=ident, checksum=checksum)


def fragment_ipv4(packet: bytes, size: int) -> list[bytes]:
    """Split an IPv4 packet into fragments carrying ``size`` payload bytes each (÷8)."""
    if size <= 0 or size % 8:
        raise ValueError("fragment size must be a positive multiple of 8")
    ihl = (packet[0] & 15) * 4
    header, payload = packet[:ihl], packet[ihl:]
    frag_word = struct.unpack_from("!H", header, 6)[0]
    base_off = (frag_word & 0x1FFF) * 8
    base_more = bool(frag_word & 0x2000)
    out = []
    for start in range(0, len(payload), size):
        chunk = payload[start : start + size]
        last = start + size >= len(payload)
        more = base_more or not last
        word = (frag_word & 0x4000) | (0x2000 if more else 0) | ((base_off + start) >> 3)
        hdr = bytearray(header)
        struct.pack_into("!HHH", hdr, 2, ihl + len(chunk), struct.unpack_from("!H", header, 4)[0],
                         word)  # fmt: skip
        hdr[10:12] = b"\0\0"
        hdr[10:12] = struct.pack("!H", internet_checksum(bytes(hdr)))
        out.append(bytes(hdr) + chunk)
    return out


def fragment_ipv6(packet: bytes, size: int, ident: int = 0x12345678) -> list[bytes]:
    """Split an IPv6 packet (no extension headers) into fragments of ``size`` payload bytes."""
    if size <= 0 or size % 8:
        raise ValueError("fragment size must be a positive multiple of 8")
    nh = packet[6]
    header, payload = packet[:40], packet[40:]
    out = []
    for start in range(0, len(payload), size):
        chunk = payload[start : start + size]
        more = start + size < len(payload)
        fh = struct.pack("!BBHI", nh, 0, start | (1 if more else 0), ident)
        hdr = bytearray(header)
        struct.pack_into("!HB", hdr, 4, len(fh) + len(chunk), 44)
        out.append(bytes(hdr) + fh + chunk)
    return out


# -- link layers ----------------------------------------------------------------------------


def _ethertype(ip_packet: bytes) -> int:
    return 0x86DD if ip_packet[:1] and ip_packet[0] >> 4 == 6 else 0x0800


def ethernet_frame(
    ip_packet: bytes,
    *,
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
    vlans: Sequence[int] = (),
    outer_tpid: int = 0x8100,
    ethertype: int | None = None,
    pad: bool = False,
) -> bytes:
    """Ethernet II frame; ``vlans`` outermost first (the first tag uses ``outer_tpid``);
    ``pad`` fills the frame to the 60-byte minimum with zeros."""
    tags = b""
    for i, vid in enumerate(vlans):
        tags += struct.pack("!HH", outer_tpid if i == 0 else 0x8100, vid & 0x0FFF)
    et = _ethertype(ip_packet) if ethertype is None else ethertype
    frame = dst_mac + src_mac + tags + struct.pack("!H", et) + ip_packet
    if pad and len(frame) < 60:
        frame += b"\0" * (60 - len(frame))
    return frame


def linux_sll_frame(
    ip_packet: bytes,
    *,
    packet_type: int = 0,
    arphrd: int = 1,
    addr: bytes = b"\x02\x00\x00\x00\x00\x01",
    protocol: int | None = None,
) -> bytes:
    """Linux cooked capture v1 (SLL) header + packet."""
    proto = _ethertype(ip_packet) if protocol is None else protocol
    hdr = struct.pack("!HHH8sH", packet_type, arphrd, len(addr), addr[:8], proto)
    return hdr + ip_packet


def linux_sll2_frame(
    ip_packet: bytes,
    *,
    ifindex: int = 1,
    packet_type: int = 0,
    arphrd: int = 1,
    addr: bytes = b"\x02\x00\x00\x00\x00\x01",
    protocol: int | None = None,
) -> bytes:
    """Linux cooked capture v2 (SLL2) header + packet."""
    proto = _ethertype(ip_packet) if protocol is None else protocol
    hdr = struct.pack("!HHIHBB8s", proto, 0, ifindex, arphrd, packet_type, len(addr), addr[:8])
    return hdr + ip_packet


def null_frame(ip_packet: bytes, *, big_endian: bool = False, family: int | None = None) -> bytes:
    """BSD loopback (DLT_NULL) header, address family in the capturing host's byte order."""
    fam = (24 if ip_packet[:1] and ip_packet[0] >> 4 == 6 else 2) if family is None else family
    return struct.pack(">I" if big_endian else "<I", fam) + ip_packet


def loop_frame(ip_packet: bytes, *, family: int | None = None) -> bytes:
    """OpenBSD loopback (LINKTYPE_LOOP) header: address family in network byte order."""
    return null_frame(ip_packet, big_endian=True, family=family)


def frame_for_linktype(linktype: int, ip_packet: bytes) -> bytes:
    """Wrap an IP packet in the default header of ``linktype``."""
    if linktype == 1:
        return ethernet_frame(ip_packet)
    if linktype == 113:
        return linux_sll_frame(ip_packet)
    if linktype == 276:
        return linux_sll2_frame(ip_packet)
    if linktype == 0:
        return null_frame(ip_packet)
    if linktype == 108:
        return loop_frame(ip_packet)
    if linktype in (12, 14, 101, 228, 229):
        return ip_packet
    raise ValueError(f"no builder for link type {linktype}")


def build_tcp_frame(
    linktype: int,
    src_ip: str,
    sport: int,
    dst_ip: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes = b"",
    *,
    checksum: bool = True,
) -> bytes:
    """A TCP segment in IPv4/IPv6 (by address text) in the link header of ``linktype``."""
    return frame_for_linktype(
        linktype, ip_tcp(src_ip, sport, dst_ip, dport, seq, ack, flags, payload, checksum=checksum)
    )


def build_udp_frame(
    linktype: int,
    src_ip: str,
    sport: int,
    dst_ip: str,
    dport: int,
    payload: bytes = b"",
    *,
    checksum: bool = True,
) -> bytes:
    """A UDP datagram in IPv4/IPv6 (by address text) in the link header of ``linktype``."""
    return frame_for_linktype(
        linktype, ip_udp(src_ip, sport, dst_ip, dport, payload, checksum=checksum)
    )


def build_ethernet_ipv4_tcp(
    src_ip: str,
    sport: int,
    dst_ip: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int | str,
    payload: bytes = b"",
    *,
    checksum: bool = True,
    pad: bool = False,
) -> bytes:
    """Ethernet / IPv4 / TCP frame."""
    return ethernet_frame(
        ip_tcp(src_ip, sport, dst_ip, dport, seq, ack, flags, payload, checksum=checksum), pad=pad
    )


build_ethernet_ipv6_tcp = build_ethernet_ipv4_tcp
"""Ethernet / IPv6 / TCP frame (the IP version follows the address text)."""


def build_ethernet_ipv4_udp(
    src_ip: str,
    sport: int,
    dst_ip: str,
    dport: int,
    payload: bytes = b"",
    *,
    checksum: bool = True,
    pad: bool = False,
) -> bytes:
    """Ethernet / IPv4 / UDP frame."""
    return ethernet_frame(ip_udp(src_ip, sport, dst_ip, dport, payload, checksum=checksum), pad=pad)


build_ethernet_ipv6_udp = build_ethernet_ipv4_udp
"""Ethernet / IPv6 / UDP frame (the IP version follows the address text)."""
