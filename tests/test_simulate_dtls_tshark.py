"""An independent decoder agrees: tshark decrypts the simulator's DTLS with the NSS key log.

tshark knows standard DTLS 1.2 but not the draft connection-ID records (type 25 with the
draft-05 additional data), so the check runs on the Electron session (Device OS before 3.1:
no CID, plain type-23 records): every application record tshark decrypts must be, byte for
byte, the CoAP message the simulator encrypted. tshark is a required tool here (``.ci/run``
installs it): when it is missing this test fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from dissector.model import Direction
from dissector.simulate.scenario import BuildContext, KeySet
from dissector.simulate.scenarios.dtls_sessions import electron_session, gen3_session

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
NAME = "dtls-electron-session"

_FRAME = re.compile(r"^Frame \(\d+ bytes\):$")
_DECRYPTED = re.compile(r"^Decrypted DTLS \((\d+) bytes\):$")
_HEX_LINE = re.compile(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} ){1,16})")


def _tshark_plaintexts(pcap: Path, keylog: Path) -> list[tuple[int, bytes]]:
    """``(UDP destination port, decrypted bytes)`` of every application-data record."""
    tshark = shutil.which("tshark")
    assert tshark is not None, "tshark is required (apt-get install tshark)"
    common = [tshark, "-n", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}"]
    common += ["-d", "udp.port==5684,dtls", "-Y", "dtls.record.content_type == 23"]
    ports = subprocess.run(
        [*common, "-T", "fields", "-e", "udp.dstport"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    dump = subprocess.run(
        [*common, "-x"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    frames: list[bytes] = []
    current: bytearray | None = None
    for line in dump.splitlines():
        if _FRAME.match(line):
            current = None
            frames.append(b"")
        elif _DECRYPTED.match(line):
            current = bytearray()
        elif current is not None and (hex_match := _HEX_LINE.match(line)):
            current += bytes.fromhex(hex_match.group(1).replace(" ", ""))
            frames[-1] = bytes(current)
        elif not line.strip():
            current = None
    assert len(frames) == len(ports)
    return list(zip((int(p) for p in ports), frames, strict=True))


def test_tshark_decrypts_the_same_coap_bytes() -> None:
    session = electron_session(BuildContext(KeySet(0), 0))
    want = [
        (5684 if s.direction is Direction.DEVICE_TO_CLOUD else -1, s.plaintext)
        for s in session.messages
    ]
    got = _tshark_plaintexts(CAPTURES / f"{NAME}.pcap", CAPTURES / "keys" / f"{NAME}.keylog")
    assert len(got) == len(want) > 10
    assert all(plain for _, plain in got), "tshark did not decrypt every record"
    assert [(p if p == 5684 else -1, plain) for p, plain in got] == want


def test_tshark_decrypts_the_cloud_side_of_a_cid_session() -> None:
    """With a CID only the device's records are draft type 25; the cloud's are standard."""
    session = gen3_session(BuildContext(KeySet(0), 0))
    want = [s.plaintext for s in session.messages if s.direction is Direction.CLOUD_TO_DEVICE]
    name = "dtls-gen3-session"
    got = _tshark_plaintexts(CAPTURES / f"{name}.pcap", CAPTURES / "keys" / f"{name}.keylog")
    assert all(port != 5684 for port, _ in got)
    assert [plain for _, plain in got] == want and len(want) > 10


def test_tshark_sees_the_handshake_the_simulator_wrote() -> None:
    tshark = shutil.which("tshark")
    assert tshark is not None, "tshark is required (apt-get install tshark)"
    out = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(CAPTURES / f"{NAME}.pcap"),
            "-d",
            "udp.port==5684,dtls",
            "-T",
            "fields",
            "-e",
            "dtls.handshake.type",
            "-e",
            "dtls.handshake.extension.type",
            "-Y",
            "dtls.record.content_type == 22 && dtls.record.epoch == 0",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    types = [t for line in out.splitlines() for t in line.split("\t")[0].split(",") if t]
    assert types == ["1", "3", "1", "2", "12", "13", "14", "11", "16", "15"]
    assert "19,20" in out.replace("\t", ",")  # the raw-public-key certificate types
    assert (
        "Malformed"
        not in subprocess.run(
            [tshark, "-n", "-r", str(CAPTURES / f"{NAME}.pcap"), "-d", "udp.port==5684,dtls"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
