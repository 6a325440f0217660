"""A DTLS capture that starts after the handshake: what decrypts it, and what cannot.

ECDHE: neither static key helps. A key log entry is found by the ClientHello's random
and its keys derive from both hello randoms, so a cut after the handshake leaves the
device's persisted session (master secret and randoms) as the only key; the output
must say exactly that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.derive import load_datagrams, write_udp_pcap
from tests.helpers import dissect, findings, messages, ring_with

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
KEYS = CAPTURES / "keys"
NAMES = ["dtls-gen3-session", "dtls-electron-session"]


def _cut_after_handshake(name: str, tmp_path: Path) -> tuple[Path, int]:
    datagrams = load_datagrams(CAPTURES / f"{name}.pcap")
    app = [i for i, d in enumerate(datagrams) if d[5][0] in (23, 25)]
    cut = app[3]  # past the Finished messages and the first application records
    path = tmp_path / "cut.pcap"
    path.write_bytes(write_udp_pcap(datagrams[cut:]))
    return path, len(datagrams) - cut


@pytest.mark.parametrize("name", NAMES)
def test_key_log_alone_cannot_and_says_why(name: str, tmp_path: Path) -> None:
    path, n = _cut_after_handshake(name, tmp_path)
    records = dissect([path], ring_with(KEYS / f"{name}.keylog", role="keylog"))
    msgs = messages(records)
    assert len(msgs) == n and all(m["coap"] is None for m in msgs)
    (missing,) = findings(records, "decrypt.missing_key")
    assert "persisted session" in missing["message"]
    assert "CLIENT_RANDOM entries cannot help" in missing["message"]


@pytest.mark.parametrize("name", NAMES)
def test_persisted_session_decrypts_the_cut(name: str, tmp_path: Path) -> None:
    path, n = _cut_after_handshake(name, tmp_path)
    records = dissect([path], ring_with(KEYS / f"{name}.persist"))
    msgs = messages(records)
    assert len(msgs) == n and all(m["coap"] is not None for m in msgs)
    assert not findings(records, "decrypt.missing_key")
