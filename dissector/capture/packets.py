"""Value types passed between the capture IO layer and the sans-IO core.

:class:`RawPacket` is one captured frame as read from a file; :class:`TcpSegment` and
:class:`UdpDatagram` are the transport-level units :mod:`dissector.capture.linklayer` decodes
from it. IP addresses are text (``socket.inet_ntop``; IPv6 in compressed form).
"""

from __future__ import annotations

from dataclasses import dataclass

# TCP flag bits (the low 9 bits of the data-offset/flags word; NS is 0x100).
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80
TCP_NS = 0x100

_FLAG_LETTERS = (
    (TCP_SYN, "S"),
    (TCP_FIN, "F"),
    (TCP_RST, "R"),
    (TCP_PSH, "P"),
    (TCP_ACK, "A"),
    (TCP_URG, "U"),
    (TCP_ECE, "E"),
    (TCP_CWR, "C"),
    (TCP_NS, "N"),
)


@dataclass(slots=True)
class RawPacket:
    """One captured frame.

    ``index`` is the 1-based packet number in the merged capture (0 until the reader assigns
    it); ``source`` names the file it came from; ``data`` holds the captured bytes (maybe
    fewer than ``orig_len`` when the capture used a snap length).
    """

    ts: float
    linktype: int
    data: bytes
    orig_len: int
    index: int
    source: str


@dataclass(slots=True)
class TcpSegment:
    """A TCP segment: addresses, ports, sequence numbers, flags and payload bytes."""

    ts: float
    index: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    ip_version: int

    @property
    def syn(self) -> bool:
        return bool(self.flags & TCP_SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & TCP_FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & TCP_RST)

    @property
    def psh(self) -> bool:
        return bool(self.flags & TCP_PSH)

    @property
    def has_ack(self) -> bool:
        """The ACK flag (``ack`` is the acknowledgment number)."""
        return bool(self.flags & TCP_ACK)

    @property
    def flag_text(self) -> str:
        """Flags as letters in tcpdump-like order, e.g. ``"SA"`` or ``"PA"``."""
        return "".join(letter for bit, letter in _FLAG_LETTERS if self.flags & bit)


@dataclass(slots=True)
class UdpDatagram:
    """A UDP datagram: addresses, ports and payload bytes."""

    ts: float
    index: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes
    ip_version: int
