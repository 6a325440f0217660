"""Devices seen without keys: DNS queries and presence announcements, from raw packets.

The pipeline only follows Particle sessions; a report also wants what travels in clear
next to them. :class:`CaptureTap` sits between the capture reader and the
:class:`~dissector.pipeline.Dissector` (``Dissector.run(tap.wrap(reader))``), decodes each
packet's link layer a second time and looks at UDP only:

* DNS (UDP port 53) queries and answers for ``<device ID>.…particle.io`` (the device's
  default server name ``$id.udp.particle.io`` carries its ID in clear);
* the presence announcement: unencrypted CoAP ``POST /h`` with the 12-byte device ID as
  payload, sent to 224.0.1.187, UDP port 5683;
* the size of every DTLS datagram (for the auth-flow diagram).

Memory is bounded: sightings are aggregated per (device, source, address), at most
:data:`MAX_SIGHTINGS`; datagram sizes are kept for the last :data:`MAX_SIZES` datagrams.
"""

from __future__ import annotations

import re
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, UdpDatagram
from dissector.coap import CoapError
from dissector.coap import decode as coap_decode
from dissector.model import Finding

DNS_PORT = 53
PRESENCE_PORT = 5683
PRESENCE_GROUP = "224.0.1.187"
MAX_SIGHTINGS = 10_000
MAX_SIZES = 8192

_DEVICE_LABEL = re.compile(r"^([0-9a-fA-F]{24})(?:\.|$)")
_PARTICLE_SUFFIXES = ("particle.io", "spark.io")
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")


class DnsError(ValueError):
    """A datagram that is not a well-formed DNS message."""


@dataclass(slots=True)
class DnsMessage:
    """The parts of a DNS message the report needs."""

    is_response: bool
    questions: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


def _name(data: bytes, pos: int) -> tuple[str, int]:
    """A (possibly compressed) domain name at ``pos`` -> (text, position after it)."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    total = 0
    while True:
        if pos >= len(data):
            raise DnsError("name runs past the end")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise DnsError("truncated compression pointer")
            if end is None:
                end = pos + 2
            jumps += 1
            if jumps > 32:
                raise DnsError("compression loop")
            pos = (length & 0x3F) << 8 | data[pos + 1]
            continue
        if length & 0xC0:
            raise DnsError("reserved label type")
        pos += 1
        if length == 0:
            break
        if pos + length > len(data):
            raise DnsError("label runs past the end")
        total += length + 1
        if total > 255:
            raise DnsError("name longer than 255 bytes")
        labels.append(data[pos : pos + length].decode("ascii", "backslashreplace"))
        pos += length
    return ".".join(labels), (end if end is not None else pos)


def parse_dns(data: bytes) -> DnsMessage:
    """Questions (names) and A/AAAA answers of a DNS message. Raises :class:`DnsError`."""
    if len(data) < _HEADER.size:
        raise DnsError(f"{len(data)} bytes is shorter than a DNS header")
    _ident, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(data)
    if (flags >> 11) & 0xF:
        raise DnsError("not a standard query")
    msg = DnsMessage(bool(flags & 0x8000))
    pos = _HEADER.size
    for _ in range(min(qdcount, 16)):
        name, pos = _name(data, pos)
        if pos + 4 > len(data):
            raise DnsError("truncated question")
        pos += 4
        msg.questions.append(name)
    for _ in range(min(ancount, 32)):
        _rname, pos = _name(data, pos)
        if pos + _RR.size > len(data):
            raise DnsError("truncated answer")
        rtype, _rclass, _ttl, rdlength = _RR.unpack_from(data, pos)
        pos += _RR.size
        rdata = data[pos : pos + rdlength]
        if len(rdata) != rdlength:
            raise DnsError("truncated answer data")
        pos += rdlength
        if rtype == 1 and rdlength == 4:
            msg.addresses.append(".".join(str(b) for b in rdata))
        elif rtype == 28 and rdlength == 16:
            import ipaddress

            msg.addresses.append(str(ipaddress.IPv6Address(rdata)))
    return msg


def device_id_in_name(name: str) -> str | None:
    """The device ID (lower-case hex) a Particle server name starts with, if any."""
    lowered = name.lower().rstrip(".")
    if not lowered.endswith(_PARTICLE_SUFFIXES):
        return None
    match = _DEVICE_LABEL.match(lowered)
    return match.group(1) if match else None


def presence_device_id(payload: bytes) -> str | None:
    """The device ID of a presence announcement (CoAP POST ``/h``, 12-byte payload)."""
    if len(payload) < 4 or payload[0] >> 6 != 1:
        return None
    try:
        msg = coap_decode(payload)
    except CoapError:
        return None
    if msg.code != 0x02 or msg.uri_path != [b"h"] or len(msg.payload) != 12:
        return None
    return msg.payload.hex()


@dataclass(slots=True)
class Sighting:
    """A device ID seen in clear: ``source`` ``DNS query``/``DNS answer``/``presence
    announcement``; ``address`` the device's IP; ``detail`` the name or destination."""

    device_id: str
    source: str
    address: str
    detail: str
    first_ts: float
    last_ts: float
    count: int = 1
    resolved: list[str] = field(default_factory=list)


class CaptureTap:
    """Watch raw packets on their way to the pipeline (see the module docstring)."""

    def __init__(self, udp_ports: Iterable[int] = (5684,)) -> None:
        self.udp_ports = frozenset(udp_ports)
        self.link = LinkDecoder()
        self.sightings: dict[tuple[str, str, str], Sighting] = {}
        self.dropped = 0
        self.dns_messages = 0
        self._sizes: OrderedDict[tuple[float, str, int], int] = OrderedDict()

    def wrap(self, items: Iterable[RawPacket | Finding]) -> Iterator[RawPacket | Finding]:
        """Pass ``items`` through, looking at every packet first."""
        for item in items:
            if item.__class__ is RawPacket:
                self.packet(item)
            yield item

    def packet(self, pkt: RawPacket) -> None:
        """Look at one packet."""
        unit = self.link.decode(pkt)
        if unit is None or unit.__class__ is not UdpDatagram:
            return
        assert isinstance(unit, UdpDatagram)
        if unit.src_port in self.udp_ports or unit.dst_port in self.udp_ports:
            sizes = self._sizes
            sizes[(unit.ts, unit.src_ip, unit.src_port)] = len(unit.payload)
            if len(sizes) > MAX_SIZES:
                sizes.popitem(last=False)
            return
        if unit.src_port == DNS_PORT or unit.dst_port == DNS_PORT:
            self._dns(unit)
        elif unit.dst_port == PRESENCE_PORT:
            device_id = presence_device_id(unit.payload)
            if device_id is not None:
                self._sight(
                    device_id,
                    "presence announcement",
                    unit.src_ip,
                    f"to {unit.dst_ip}:{unit.dst_port}",
                    unit.ts,
                )

    def datagram_size(self, ts: float, ip: str, port: int) -> int | None:
        """Size of the UDP payload sent from ``ip:port`` at ``ts``, if still known."""
        return self._sizes.get((ts, ip, port))

    def _dns(self, dgram: UdpDatagram) -> None:
        try:
            msg = parse_dns(dgram.payload)
        except DnsError:
            return
        self.dns_messages += 1
        for name in msg.questions:
            device_id = device_id_in_name(name)
            if device_id is None:
                continue
            if msg.is_response:
                sighting = self._sight(
                    device_id, "DNS answer", dgram.dst_ip, name.lower(), dgram.ts
                )
                if sighting is not None:
                    for addr in msg.addresses:
                        if addr not in sighting.resolved and len(sighting.resolved) < 8:
                            sighting.resolved.append(addr)
            else:
                self._sight(device_id, "DNS query", dgram.src_ip, name.lower(), dgram.ts)

    def _sight(
        self, device_id: str, source: str, address: str, detail: str, ts: float
    ) -> Sighting | None:
        key = (device_id, source, address)
        found = self.sightings.get(key)
        if found is not None:
            found.count += 1
            found.first_ts = min(found.first_ts, ts)
            found.last_ts = max(found.last_ts, ts)
            return found
        if len(self.sightings) >= MAX_SIGHTINGS:
            self.dropped += 1
            return None
        found = Sighting(device_id, source, address, detail, ts, ts)
        self.sightings[key] = found
        return found
