"""Datagrams on the DTLS port that hold no DTLS record are no sessions, and are counted.

A port scan, another protocol on 5684 or a keepalive of a session not otherwise seen
gets one finding per flow and a total at the end; real DTLS sessions in the same
capture decode exactly as without them.
"""

from __future__ import annotations

from pathlib import Path

from dissector.udp_flows import MAX_STRAY_FLOWS
from tests.derive import load_datagrams, write_udp_pcap
from tests.helpers import comparable, dissect, findings, messages, ring_with

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
GEN3 = CAPTURES / "dtls-gen3-session.pcap"
GEN3_KEYLOG = CAPTURES / "keys" / "dtls-gen3-session.keylog"


def _sessions(records: list[dict]) -> list[dict]:
    return [r for r in records if r["record"] == "session"]


def test_junk_flows_are_no_sessions(tmp_path: Path) -> None:
    packets = [
        (1.0 + i, f"10.0.0.{i + 2}", 40000 + i, "10.0.0.1", 5684, b"GET / HTTP/1.1\r\n\r\n")
        for i in range(5)
    ]
    packets.append((6.5, "10.0.0.2", 40000, "10.0.0.1", 5684, b"\x16\xfe"))  # same flow again
    packets.append((9.0, "10.0.0.9", 40009, "10.0.0.1", 5684, b"\x00"))
    path = tmp_path / "junk.pcap"
    path.write_bytes(write_udp_pcap(packets))
    records = dissect([path], ring_with())

    assert not _sessions(records)
    assert not messages(records)
    per_flow = findings(records, "udp.not_dtls")
    per_flow = [f for f in per_flow if f["code"] == "udp.not_dtls"]
    assert len(per_flow) == 6  # one per flow, the repeat on 10.0.0.2 only counted
    assert "unknown record content type 71" in per_flow[0]["message"]
    keepalive = per_flow[-1]
    assert keepalive["severity"] == "info" and "keepalive" in keepalive["message"]
    (total,) = findings(records, "udp.not_dtls.total")
    assert total["details"] == {"datagrams": 7, "bytes": 5 * 18 + 2 + 1, "flows": 6}


def test_real_session_unchanged_by_junk_beside_it(tmp_path: Path) -> None:
    ring = ring_with(GEN3_KEYLOG, role="keylog")
    clean = dissect([GEN3], ring)
    real = load_datagrams(GEN3)
    t0 = real[0][0]
    junk = [
        (t0 + 0.01 * i, "192.0.2.7", 50000 + i, real[0][3], 5684, bytes([0x47, i]) * 30)
        for i in range(40)
    ]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(write_udp_pcap(real + junk))
    mixed = dissect([path], ring)

    assert [comparable(m) for m in messages(mixed)] == [comparable(m) for m in messages(clean)]
    assert len(_sessions(mixed)) == len(_sessions(clean)) == 1
    assert _sessions(mixed)[0]["session"] == _sessions(clean)[0]["session"]
    # 40 flows: the first 20 findings shown, the rest counted; the total is exact.
    (total,) = findings(mixed, "udp.not_dtls.total")
    assert total["details"]["datagrams"] == 40 and total["details"]["flows"] == 40
    (suppressed,) = findings(mixed, "findings.suppressed")
    assert suppressed["details"]["count"] == 40


def test_keepalive_before_the_session_does_not_take_its_flow(tmp_path: Path) -> None:
    ring = ring_with(GEN3_KEYLOG, role="keylog")
    clean = dissect([GEN3], ring)
    real = load_datagrams(GEN3)
    first = real[0]
    keepalive = (first[0] - 1.0, first[1], first[2], first[3], first[4], b"\x00")
    path = tmp_path / "keepalive.pcap"
    path.write_bytes(write_udp_pcap([keepalive, *real]))
    records = dissect([path], ring)

    assert [comparable(m) for m in messages(records)] == [comparable(m) for m in messages(clean)]
    (session,) = _sessions(records)
    assert session["outcome"] == _sessions(clean)[0]["outcome"]
    assert findings(records, "udp.not_dtls")[0]["severity"] == "info"


def test_stray_flow_memory_is_bounded(tmp_path: Path) -> None:
    n = MAX_STRAY_FLOWS + 100
    packets = [
        (
            1.0 + i * 1e-4,
            f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            1024 + i % 50000,
            "10.255.0.1",
            5684,
            b"xx",
        )
        for i in range(n)
    ]
    path = tmp_path / "scan.pcap"
    path.write_bytes(write_udp_pcap(packets))
    records = dissect([path], ring_with())
    (total,) = findings(records, "udp.not_dtls.total")
    assert total["details"]["datagrams"] == n
    assert not _sessions(records)
