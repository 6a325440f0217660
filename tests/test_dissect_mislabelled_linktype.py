"""A capture whose header names the wrong link type: nothing decodes, and it is said.

Nothing is lost silently: when not one packet of a capture holds IPv4 or IPv6, the end
of the capture says so (``capture.no_ip_packets``), and a raw-IP link whose packets are
not IP counts them as malformed (``capture.packets_malformed``).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dissector.capture.packets import RawPacket
from dissector.capture.reader import CaptureReader
from dissector.capture.writer import PcapWriter
from dissector.keys import KeyRing
from tests.helpers import dissect, findings, messages

PHOTON = Path(__file__).resolve().parent.parent / "captures" / "photon.pcap"


def _relabelled(linktype: int, out: Path) -> Path:
    """photon.pcap's Ethernet frames in a file that says they are ``linktype``."""
    buf = io.BytesIO()
    writer = PcapWriter(buf, linktype)
    with CaptureReader([str(PHOTON)]) as reader:
        for pkt in reader:
            if isinstance(pkt, RawPacket):
                writer.write_packet(pkt.ts, pkt.data)
    out.write_bytes(buf.getvalue())
    return out


@pytest.mark.parametrize(
    ("linktype", "code"),
    [(113, "capture.no_ip_packets"), (101, "capture.packets_malformed")],
    ids=["sll", "raw-ip"],
)
def test_ethernet_frames_under_another_link_type_are_reported(
    linktype: int, code: str, tmp_path: Path
) -> None:
    records = dissect([_relabelled(linktype, tmp_path / "x.pcap")], KeyRing())
    assert not messages(records)
    (note,) = findings(records, code)
    assert note["details"]["count"] > 0


def test_a_good_capture_has_no_such_finding() -> None:
    records = dissect([PHOTON], KeyRing())
    assert not findings(records, "capture.no_ip_packets")
