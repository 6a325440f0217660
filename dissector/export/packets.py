"""Packet builders for exported CoAP messages (pure functions, no Scapy).

Two encapsulations Wireshark's CoAP dissector reads:

* ``pdu`` – link type 252 (``LINKTYPE_WIRESHARK_UPPER_PDU``): a list of TLVs naming the
  ``coap`` dissector, the IP addresses, port type UDP and the ports, then the CoAP
  message. Wireshark calls the CoAP dissector whatever the ports; the real ports are kept.
* ``udp`` – link type 101 (raw IP): a synthesized IPv4/IPv6 + UDP packet whose cloud side
  uses port 5683 (CoAP), never 5684, which Wireshark would read as DTLS.

TLV layout (``epan/exported_pdu.h``): 2-byte big-endian tag, 2-byte big-endian length, the
value padded with NUL bytes to a multiple of 4 (the length counts the padding), and an
end-of-options tag of length 0.
"""

from __future__ import annotations

import ipaddress
import struct

from dissector.capture.writer import ip_udp

LINKTYPE_RAW = 101
LINKTYPE_WIRESHARK_UPPER_PDU = 252
COAP_PORT = 5683
ENCAPSULATIONS = ("pdu", "udp")
#: Largest CoAP message a synthesized IPv4 UDP datagram can carry.
MAX_UDP_PAYLOAD = 65535 - 20 - 8

_TAG_END = 0
_TAG_DISSECTOR_NAME = 12
_TAG_IPV4_SRC = 20
_TAG_IPV4_DST = 21
_TAG_IPV6_SRC = 22
_TAG_IPV6_DST = 23
_TAG_PORT_TYPE = 24
_TAG_SRC_PORT = 25
_TAG_DST_PORT = 26
_PORT_TYPE_UDP = 3

Endpoint = tuple[str, int]


class ExportError(ValueError):
    """A message cannot be written in the chosen encapsulation (e.g. bad address)."""


def _tlv(tag: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("!HH", tag, len(value) + pad) + value + b"\0" * pad


def _packed(ip: str) -> bytes:
    try:
        return ipaddress.ip_address(ip).packed
    except ValueError as exc:
        raise ExportError(f"not an IP address: {ip!r}") from exc


def exported_pdu_header(src: Endpoint, dst: Endpoint, dissector: str = "coap") -> bytes:
    """The link-type-252 header that hands the rest of the packet to ``dissector``."""
    src_ip, dst_ip = _packed(src[0]), _packed(dst[0])
    if len(src_ip) != len(dst_ip):
        raise ExportError(f"mixed IPv4/IPv6 endpoints {src[0]} and {dst[0]}")
    v4 = len(src_ip) == 4
    return b"".join(
        (
            _tlv(_TAG_DISSECTOR_NAME, dissector.encode("ascii")),
            _tlv(_TAG_IPV4_SRC if v4 else _TAG_IPV6_SRC, src_ip),
            _tlv(_TAG_IPV4_DST if v4 else _TAG_IPV6_DST, dst_ip),
            _tlv(_TAG_PORT_TYPE, struct.pack("!I", _PORT_TYPE_UDP)),
            _tlv(_TAG_SRC_PORT, struct.pack("!I", src[1] & 0xFFFF)),
            _tlv(_TAG_DST_PORT, struct.pack("!I", dst[1] & 0xFFFF)),
            struct.pack("!HH", _TAG_END, 0),
        )
    )


def udp_ip_packet(src: Endpoint, dst: Endpoint, payload: bytes) -> bytes:
    """An IPv4 or IPv6 packet (by address) carrying ``payload`` in UDP, checksums set."""
    _packed(src[0])
    _packed(dst[0])
    if (":" in src[0]) != (":" in dst[0]):
        raise ExportError(f"mixed IPv4/IPv6 endpoints {src[0]} and {dst[0]}")
    if len(payload) > MAX_UDP_PAYLOAD:
        raise ExportError(
            f"a {len(payload)}-byte message does not fit in a UDP datagram (use --encap pdu)"
        )
    return ip_udp(src[0], src[1], dst[0], dst[1], payload)
