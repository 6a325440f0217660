"""pcap / pcapng files of exported CoAP messages (one packet per message)."""

from __future__ import annotations

import struct
from typing import IO

from dissector.capture.writer import PcapngWriter, PcapWriter
from dissector.export.packets import (
    COAP_PORT,
    ENCAPSULATIONS,
    LINKTYPE_RAW,
    LINKTYPE_WIRESHARK_UPPER_PDU,
    Endpoint,
    ExportError,
    exported_pdu_header,
    udp_ip_packet,
)
from dissector.model import Direction

FORMATS = ("pcapng", "pcap")

_EPB = 6
_OPT_COMMENT = 1
_IF_NAME = "particle-coap"


class CoapPacketWriter:
    """Write CoAP messages as packets Wireshark's CoAP dissector understands.

    ``fmt`` is ``pcapng`` (packets carry a comment naming session, direction and kind) or
    ``pcap``; ``encap`` is ``pdu`` (link type 252, the real ports kept) or ``udp`` (raw
    IP/UDP, the cloud on port 5683). Timestamps keep microsecond resolution.
    """

    __slots__ = ("_f", "_ng", "_pcap", "encap", "fmt", "linktype", "packets")

    def __init__(self, fileobj: IO[bytes], *, fmt: str = "pcapng", encap: str = "pdu") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        if encap not in ENCAPSULATIONS:
            raise ValueError(f"unknown encapsulation {encap!r}")
        self._f = fileobj
        self.fmt = fmt
        self.encap = encap
        self.linktype = LINKTYPE_WIRESHARK_UPPER_PDU if encap == "pdu" else LINKTYPE_RAW
        self.packets = 0
        self._ng: PcapngWriter | None = None
        self._pcap: PcapWriter | None = None
        if fmt == "pcapng":
            self._ng = PcapngWriter(fileobj)
            self._ng.add_interface(self.linktype, name=_IF_NAME)
        else:
            self._pcap = PcapWriter(fileobj, self.linktype)

    def packet(self, device: Endpoint, cloud: Endpoint, direction: Direction, data: bytes) -> bytes:
        """The packet bytes for one CoAP message ``data`` sent in ``direction``."""
        if self.encap == "udp":
            cloud = (cloud[0], COAP_PORT)
        src, dst = (device, cloud) if direction is Direction.DEVICE_TO_CLOUD else (cloud, device)
        if self.encap == "pdu":
            return exported_pdu_header(src, dst) + data
        return udp_ip_packet(src, dst, data)

    def write(
        self,
        ts: float,
        device: Endpoint,
        cloud: Endpoint,
        direction: Direction,
        data: bytes,
        comment: str | None = None,
    ) -> None:
        """Write one message; raises :class:`ExportError` when it cannot be encapsulated."""
        pkt = self.packet(device, cloud, direction, data)
        if self._pcap is not None:
            self._pcap.write_packet(ts, pkt)
        else:
            assert self._ng is not None
            self._ng.write_block(_EPB, _epb_body(ts, pkt, comment))
        self.packets += 1

    def flush(self) -> None:
        self._f.flush()


def _epb_body(ts: float, data: bytes, comment: str | None) -> bytes:
    units = round(ts * 1_000_000)
    if units < 0:
        raise ExportError(f"timestamp {ts} is before 1970")
    body = struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
    body += data + b"\0" * ((-len(data)) % 4)
    if comment:
        text = comment.encode("utf-8")
        body += struct.pack("<HH", _OPT_COMMENT, len(text)) + text + b"\0" * ((-len(text)) % 4)
        body += struct.pack("<HH", 0, 0)
    return body
