"""tshark reads what ``export`` writes exactly as ``dissect`` decodes it.

Every bundled and test capture is exported with its keys, in both encapsulations (exported
PDU, link type 252; synthesized IP/UDP on port 5683), then read back by tshark (PDML). The
packets must be exactly the decoded CoAP messages of ``dissect --format ndjson``, in order:
type, code, message ID, token, Uri-Path and Uri-Query values, option count, payload bytes,
timestamp and addresses; and tshark must find none of them malformed.

tshark is required (Debian/Ubuntu: ``apt-get install tshark``): without it this module
fails, it does not skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dissector.cli.export import export
from tests.helpers import DATA
from tests.test_cli_common import ROOT, records_of

TSHARK = shutil.which("tshark")
DTLS = DATA / "dtls"
TCP = DATA / "tcp"
DTLS_NAMES = sorted(p.stem for p in DTLS.glob("*.pcap"))
TYPES = ("CON", "NON", "ACK", "RST")


def _cases() -> dict[str, tuple[Path, tuple[str, ...]]]:
    cases: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for pcap in sorted((ROOT / "captures").glob("*.pcap")):
        cases[f"bundled/{pcap.stem}"] = (pcap, ("--keys", str(ROOT / "captures" / "keys")))
    for pcap in sorted(TCP.glob("*.pcap")):
        cases[f"tcp/{pcap.stem}"] = (pcap, ("--keylog", str(pcap.with_suffix(".keylog"))))
    for name in DTLS_NAMES:
        pcap = DTLS / f"{name}.pcap"
        if pcap.with_suffix(".keylog").exists():
            cases[f"dtls/{name}"] = (pcap, ("--keylog", str(pcap.with_suffix(".keylog"))))
    persist = DTLS / "particle_mbedtls_ccm8_full.persist.txt"
    cases["dtls/particle_mbedtls_ccm8_full+persist"] = (
        DTLS / "particle_mbedtls_ccm8_full.pcap",
        ("--session-blob", str(persist)),
    )
    return cases


CASES = _cases()
ENCAPS = ("pdu", "udp")


@dataclass
class Exported:
    expected: list[dict[str, Any]]
    sessions: dict[str, dict[str, Any]]
    packets: dict[str, list[ET.Element]]


def test_tshark_is_installed() -> None:
    assert TSHARK, "tshark is required for the export tests: apt-get install -y tshark"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """Export every case in both encapsulations and read them all with one tshark run: the
    exports are concatenated into one multi-section pcapng (section k = export k)."""
    assert TSHARK, "tshark is required for the export tests: apt-get install -y tshark"
    tmp = tmp_path_factory.mktemp("export")
    runner = CliRunner()
    out: dict[str, Exported] = {}
    order: list[tuple[str, str]] = []
    merged = bytearray()
    for case, (pcap, keys) in CASES.items():
        records = records_of(pcap, *keys)
        out[case] = Exported(
            [r for r in records if r["record"] == "message" and r["coap"] is not None],
            {r["session"]: r for r in records if r["record"] == "session"},
            {encap: [] for encap in ENCAPS},
        )
        for encap in ENCAPS:
            target = tmp / f"{case.replace('/', '_')}.{encap}.pcapng"
            result = runner.invoke(export, [str(pcap), *keys, "-o", str(target), "--encap", encap])
            assert result.exit_code == 0, result.output
            merged += target.read_bytes()
            order.append((case, encap))
    (tmp / "all.pcapng").write_bytes(merged)
    proc = subprocess.run(
        [TSHARK, "-n", "-r", str(tmp / "all.pcapng"), "-T", "pdml"],
        capture_output=True,
        timeout=120,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    for packet in ET.fromstring(proc.stdout).findall("packet"):
        case, encap = order[int(_show(packet, "frame.section_number") or 0) - 1]
        out[case].packets[encap].append(packet)
    return out


def _fields(packet: ET.Element, name: str) -> list[ET.Element]:
    return [f for f in packet.iter("field") if f.get("name") == name]


def _show(packet: ET.Element, name: str) -> str | None:
    found = _fields(packet, name)
    return found[0].get("show") if found else None


def _value(packet: ET.Element, name: str) -> str:
    found = _fields(packet, name)
    return (found[0].get("value") or "") if found else ""


def _text(values: list[str]) -> list[str]:
    return [bytes.fromhex(v).decode("utf-8", "backslashreplace") for v in values]


def tshark_view(packet: ET.Element, encap: str) -> dict[str, Any]:
    """What tshark decoded from one packet, in the terms of our message records."""
    code = int(_show(packet, "coap.code") or "-1")
    path = _text([f.get("value") or "" for f in _fields(packet, "coap.opt.uri_path")])
    if encap == "pdu":
        ip = (
            "exported_pdu.ipv4"
            if _fields(packet, "exported_pdu.ipv4_src")
            else ("exported_pdu.ipv6")
        )
        src = (_show(packet, f"{ip}_src"), int(_show(packet, "exported_pdu.src_port") or 0))
        dst = (_show(packet, f"{ip}_dst"), int(_show(packet, "exported_pdu.dst_port") or 0))
    else:
        ip = "ip" if _fields(packet, "ip.src") else "ipv6"
        src = (_show(packet, f"{ip}.src"), int(_show(packet, "udp.srcport") or 0))
        dst = (_show(packet, f"{ip}.dst"), int(_show(packet, "udp.dstport") or 0))
    return {
        "type": TYPES[int(_show(packet, "coap.type") or 0)],
        "code": f"{code >> 5}.{code & 31:02d}",
        "mid": int(_show(packet, "coap.mid") or -1),
        "token": _value(packet, "coap.token"),
        "uri": "/" + "/".join(path) if path else "",
        "queries": _text([f.get("value") or "" for f in _fields(packet, "coap.opt.uri_query")]),
        "options": len(_fields(packet, "coap.opt.name")),
        "payload": _value(packet, "coap.payload"),
        "ts": float(_show(packet, "frame.time_epoch") or 0),
        "src": src,
        "dst": dst,
    }


def our_view(rec: dict[str, Any], session: dict[str, Any], encap: str) -> dict[str, Any]:
    """The same fields from one ``dissect`` message record and its session record."""
    coap = rec["coap"]
    device = (session["device"]["ip"], session["device"]["port"])
    cloud = (session["cloud"]["ip"], session["cloud"]["port"] if encap == "pdu" else 5683)
    src, dst = (device, cloud) if rec["direction"] == "device->cloud" else (cloud, device)
    return {
        "type": coap["type"],
        "code": coap["code"],
        "mid": coap["mid"],
        "token": coap["token"],
        "uri": coap["uri"],
        "queries": [str(o["value"]) for o in coap["options"] if o["number"] == 15],
        "options": len(coap["options"]),
        "payload": coap["payload"],
        "ts": rec["ts"],
        "src": src,
        "dst": dst,
    }


@pytest.mark.parametrize("encap", ENCAPS)
@pytest.mark.parametrize("case", list(CASES))
def test_tshark_reads_every_message_as_dissect_decodes_it(
    exported: dict[str, Exported], case: str, encap: str
) -> None:
    data = exported[case]
    packets = data.packets[encap]
    # Demo captures of failed handshakes or missing keys decode to no message: their
    # export must then be empty too.
    assert len(packets) == len(data.expected)
    for i, (packet, rec) in enumerate(zip(packets, data.expected, strict=True)):
        protocols = _show(packet, "frame.protocols") or ""
        assert ":coap" in protocols, (i, protocols)
        assert "_ws.malformed" not in ET.tostring(packet, encoding="unicode"), i
        theirs = tshark_view(packet, encap)
        ours = our_view(rec, data.sessions[rec["session"]], encap)
        assert abs(theirs.pop("ts") - ours.pop("ts")) < 1e-6, i
        assert theirs == ours, f"message {i} of {case}"


def test_udp_encapsulation_never_uses_the_dtls_port(exported: dict[str, Exported]) -> None:
    """Wireshark reads UDP 5684 as DTLS: the synthesized packets put the cloud on 5683."""
    packets = exported["dtls/deviceos-1.0.1_udp_full"].packets["udp"]
    ports = {(_show(p, "udp.srcport"), _show(p, "udp.dstport")) for p in packets}
    assert all("5684" not in pair for pair in ports)
    assert all("5683" in pair for pair in ports)
    assert all("dtls" not in (_show(p, "frame.protocols") or "") for p in packets)


def test_most_cases_export_messages(exported: dict[str, Exported]) -> None:
    """The comparison above is not vacuous: nearly every capture has decoded messages."""
    with_messages = [case for case, data in exported.items() if data.expected]
    assert len(with_messages) >= max(4, len(exported) - 6), sorted(
        set(exported) - set(with_messages)
    )
