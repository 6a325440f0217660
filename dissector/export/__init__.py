"""Hand decrypted Particle traffic to Wireshark: one packet per decoded CoAP message.

* :mod:`.packets` – pure builders: the ``exported PDU`` header (link type 252) that names
  Wireshark's ``coap`` dissector, and synthesized IP/UDP packets on port 5683.
* :mod:`.writer` – :class:`CoapPacketWriter`: pcap or pcapng files of such packets.
* :mod:`.run` – :func:`export_events`: pipeline events → packets (plus key log lines).
"""

from __future__ import annotations

from dissector.export.packets import (
    COAP_PORT,
    ENCAPSULATIONS,
    LINKTYPE_RAW,
    LINKTYPE_WIRESHARK_UPPER_PDU,
    ExportError,
    exported_pdu_header,
    udp_ip_packet,
)
from dissector.export.run import ExportStats, export_events, write_session_keys
from dissector.export.writer import CoapPacketWriter

__all__ = [
    "COAP_PORT",
    "ENCAPSULATIONS",
    "LINKTYPE_RAW",
    "LINKTYPE_WIRESHARK_UPPER_PDU",
    "CoapPacketWriter",
    "ExportError",
    "ExportStats",
    "export_events",
    "exported_pdu_header",
    "udp_ip_packet",
    "write_session_keys",
]
