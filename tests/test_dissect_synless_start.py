"""Captures whose SYN was not captured but that hold the whole handshake.

A capture started between a connection's SYN and the cloud's nonce (or one that lost
the SYN and SYN-ACK) must decode as a full session: handshake judged, every frame
decrypted, exactly as with the SYN. Cuts anywhere later stay mid-session.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dissector.capture.packets import TcpSegment
from tests.derive import load_segments, resegment, write, write_pcap
from tests.helpers import (
    BREWSKEY,
    DEVICE_ID,
    SPARK,
    TCP_KEYS,
    comparable,
    dissect,
    expected_messages,
    findings,
    messages,
    ring_with,
)

CAPTURES = [SPARK, BREWSKEY]
IDS = ["sparkprotocol", "brewskey"]
BUNDLED = Path(__file__).resolve().parent.parent / "captures"


def _no_syn(segments: list[TcpSegment]) -> list[TcpSegment]:
    return [s for s in segments if not s.syn]


def _session(records: list[dict]) -> dict:
    (session,) = [r for r in records if r["record"] == "session"]
    return session


def _checks(session: dict) -> dict[str, str]:
    return {c["check"]: c["status"] for c in session["handshake"]}


def _expected(base: Path) -> list[dict]:
    return [comparable(m) for m in expected_messages(base)]


@pytest.mark.parametrize("base", CAPTURES, ids=IDS)
def test_syn_lost_decodes_as_full_session(base: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "nosyn.pcap", write_pcap(_no_syn(load_segments(f"{base}.pcap"))))
    records = dissect([path], ring_with(TCP_KEYS))

    assert [comparable(m) for m in messages(records)] == _expected(base)
    steps = [r["step"] for r in records if r["record"] == "handshake"]
    assert steps == ["nonce", "identity", "session_key"]
    session = _session(records)
    assert session["handshake_seen"] is True
    assert session["outcome"] == "established"
    assert session["device_id"] == DEVICE_ID
    checks = _checks(session)
    for check in ("nonce", "identity_decrypted", "nonce_echo", "session_key", "signature"):
        assert checks[check] == "passed", check
    (note,) = findings(records, "tcp.handshake_without_syn")
    assert note["severity"] == "info"
    assert not findings(records, "tcp.resync")


@pytest.mark.parametrize("base", CAPTURES, ids=IDS)
def test_syn_lost_with_key_log_only(base: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "nosyn.pcap", write_pcap(_no_syn(load_segments(f"{base}.pcap"))))
    records = dissect([path], ring_with(f"{base}.keylog", role="keylog"))
    assert [comparable(m) for m in messages(records)] == _expected(base)
    assert _session(records)["handshake_seen"] is True


def test_syn_lost_with_server_key_only_names_the_missing_key(tmp_path: Path) -> None:
    path = write(tmp_path / "nosyn.pcap", write_pcap(_no_syn(load_segments(f"{SPARK}.pcap"))))
    records = dissect([path], ring_with(TCP_KEYS / "default_key.pem", role="server"))
    session = _session(records)
    assert session["device_id"] == DEVICE_ID
    assert all(m["coap"] is None for m in messages(records))
    (missing,) = findings(records, "decrypt.missing_key")
    assert f"private key of device {DEVICE_ID}" in missing["message"]
    assert "mid-session" not in missing["message"]


@pytest.mark.parametrize("base", CAPTURES, ids=IDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_syn_lost_and_resegmented(base: Path, seed: int, tmp_path: Path) -> None:
    pieces = resegment(_no_syn(load_segments(f"{base}.pcap")), random.Random(seed))
    path = write(tmp_path / "nosyn.pcap", write_pcap(pieces))
    records = dissect([path], ring_with(TCP_KEYS))
    assert [comparable(m) for m in messages(records)] == _expected(base)
    assert _checks(_session(records))["nonce_echo"] == "passed"


def test_capture_starting_after_the_nonce(tmp_path: Path) -> None:
    """The cloud's nonce was missed too: its stream starts at the session key."""
    segments = _no_syn(load_segments(f"{SPARK}.pcap"))
    cloud_data = [s for s in segments if s.payload and s.src_port == 5683]
    assert len(cloud_data[0].payload) == 40  # the reference cloud writes the nonce alone
    rest = [s for s in segments if s is not cloud_data[0]]
    path = write(tmp_path / "late.pcap", write_pcap(rest))
    records = dissect([path], ring_with(TCP_KEYS))

    assert [comparable(m) for m in messages(records)] == _expected(SPARK)
    steps = [r["step"] for r in records if r["record"] == "handshake"]
    assert steps == ["identity", "session_key"]
    checks = _checks(_session(records))
    assert checks["session_key"] == "passed"
    assert checks["nonce"] == "not_seen"
    assert checks["nonce_echo"] == "not_checkable"


@pytest.mark.parametrize(
    "name", ["fail-wrong-server-key", "fail-wrong-device-key", "fail-bad-signature"]
)
def test_failed_handshake_without_syn_is_judged_like_with_it(name: str, tmp_path: Path) -> None:
    segments = load_segments(BUNDLED / f"{name}.pcap")
    path = write(tmp_path / "nosyn.pcap", write_pcap(_no_syn(segments)))
    ring = ring_with(BUNDLED / "keys")
    with_syn = dissect([BUNDLED / f"{name}.pcap"], ring)
    without = dissect([path], ring)

    def judged(records: list[dict]) -> tuple:
        s = _session(records)
        codes = sorted(
            f["code"] for f in findings(records) if f["code"] != "tcp.handshake_without_syn"
        )
        return s["outcome"], _checks(s), codes, [comparable(m) for m in messages(records)]

    assert judged(without) == judged(with_syn)
    assert findings(without, "tcp.handshake_without_syn")


@pytest.mark.parametrize("base", CAPTURES, ids=IDS)
def test_later_cuts_stay_mid_session(base: Path, tmp_path: Path) -> None:
    """Cut after the handshake at every segment (and, resegmented, at arbitrary stream
    offsets): never mistaken for a handshake start."""
    segments = load_segments(f"{base}.pcap")
    pieces = resegment(segments, random.Random(7), smallest=5, largest=60, duplicate=0, swap=0)
    data_segments = [i for i, s in enumerate(pieces) if s.payload]
    # After the 3 handshake blobs' segments: the first data piece past 700 stream bytes.
    seen = 0
    first_cut = 0
    for i in data_segments:
        seen += len(pieces[i].payload)
        if seen > 700:
            first_cut = i
            break
    cuts = data_segments[data_segments.index(first_cut) :: 3]
    assert len(cuts) > 20
    for cut in cuts:
        path = write(tmp_path / "cut.pcap", write_pcap(pieces[cut:]))
        records = dissect([path], ring_with(TCP_KEYS))
        assert not findings(records, "tcp.handshake_without_syn"), cut
        assert _session(records)["handshake_seen"] is False
