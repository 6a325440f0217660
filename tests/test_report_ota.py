"""Firmware transfers in the report: legacy, fast and v3 OTA followed end to end on
really encrypted simulated sessions, the image reassembled, trimmed and hashed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from dissector.report import Report, run_report
from dissector.report import ota as ota_module
from dissector.report.model import OtaTransfer
from dissector.report.ota import OtaTracker
from dissector.simulate import TcpFlow
from tests.test_report_fixtures import (
    FIRMWARE_FAST,
    FIRMWARE_LEGACY,
    FIRMWARE_V3,
    START,
    _builder,
    _open,
    fleet_capture,
    legacy_ota,
    ring,
    v3_ota,
    write_capture,
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return run_report([fleet_capture(tmp_path_factory.mktemp("ota"))], ring())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_legacy_transfer_with_a_rejected_chunk(fleet: Report) -> None:
    t = fleet.ota[0]
    assert (t.session, t.mode, t.file_size, t.chunk_size) == ("tcp-1", "legacy", 1000, 256)
    assert t.destination == "firmware"
    assert (t.chunks_expected, t.chunks_unique, t.chunks_sent) == (4, 4, 5)
    assert (t.crc_failures, t.crc_rejected, t.resent, t.missed) == (1, 1, 1, 0)
    assert t.complete and t.result.startswith("device confirmed the update")
    # the last chunk went out zero-padded to 256 bytes: the image is trimmed to 1000
    assert t.size == 1000 and t.sha256 == _sha(FIRMWARE_LEGACY)
    assert t.duration is not None and t.duration > 0
    assert t.throughput == pytest.approx(1000 / t.duration)
    assert t.bytes_sent == 5 * 256


def test_fast_transfer_with_a_missed_chunk(fleet: Report) -> None:
    t = fleet.ota[1]
    assert (t.session, t.mode, t.chunk_size, t.chunks_expected) == ("tcp-2", "legacy fast", 512, 4)
    assert (t.chunks_sent, t.missed, t.resent, t.crc_failures) == (4, 1, 0, 0)
    assert t.complete and t.sha256 == _sha(FIRMWARE_FAST) and t.size == 2000


def test_v3_transfer_checks_the_announced_sha256(fleet: Report) -> None:
    t = fleet.ota[2]
    assert (t.session, t.mode, t.file_size, t.chunk_size) == ("tcp-3", "v3", 2300, 512)
    assert (t.chunks_expected, t.chunks_unique, t.missed) == (5, 5, 1)
    assert t.announced_sha256 == _sha(FIRMWARE_V3) == t.sha256
    assert t.sha256_match is True and t.complete
    assert '"recv_chunks":5' in t.result
    session = next(s for s in fleet.sessions if s.id == "tcp-3")
    assert session.ota == [t]


def _report_of(tmp_path: Path, build: Any) -> Report:
    b = _builder(START + 100)
    _open(b)
    build(b)
    flows = [TcpFlow(b.writes, device=("10.0.0.2", 40100), cloud=("10.0.0.1", 5683))]
    return run_report([write_capture(tmp_path / "ota.pcap", flows, [])], ring())


def test_sha256_mismatch_is_an_error(tmp_path: Path) -> None:
    report = _report_of(tmp_path, lambda b: v3_ota(b, FIRMWARE_V3, announce_sha=bytes(32)))
    (t,) = report.ota
    assert t.sha256 == _sha(FIRMWARE_V3) and t.sha256_match is False
    (finding,) = [f for f in report.findings if f.code == "report.ota.sha256_mismatch"]
    assert finding.severity == "error" and finding.session == "tcp-1"
    assert finding.message_ref == "OTA transfer 1"


def test_transfer_cut_short_is_incomplete(tmp_path: Path) -> None:
    def cut(b: Any) -> None:
        legacy_ota(b, FIRMWARE_LEGACY, bad_chunk=None)
        del b.writes[-6:]  # the last chunk's exchange and UpdateDone never happen

    report = _report_of(tmp_path, cut)
    (t,) = report.ota
    assert not t.complete and t.sha256 is None
    assert t.result == "no end of transfer in the capture"
    assert "chunks never arrived intact: 3" in t.image_note
    assert any(f.code == "report.ota.incomplete" for f in report.findings)


def _tracker(**kw: Any) -> tuple[OtaTracker, list[tuple[OtaTransfer, bytes]]]:
    written: list[tuple[OtaTransfer, bytes]] = []

    def sink(t: OtaTransfer, image: bytes) -> str:
        written.append((t, image))
        return "somewhere.bin"

    return OtaTracker("s", sink, **kw), written


def test_tracker_without_the_start_message() -> None:
    tracker, written = _tracker()
    tracker.observe("Chunk", {"crc_ok": True, "length": 4}, b"abcd", 1.0)
    tracker.finish(2.0)
    (t,) = tracker.transfers
    assert t.image_note == "the transfer's start message is not in the capture"
    assert t.sha256 is None and written == []


def test_tracker_refused_update() -> None:
    tracker, _ = _tracker()
    tracker.observe("UpdateBegin", {"file_size": 10, "chunk_size": 5}, b"", 1.0)
    tracker.observe("UpdateReady", {"ready": False, "status": "5.03"}, b"", 1.5)
    (t,) = tracker.transfers
    assert t.result == "device refused the update (5.03)" and not t.complete
    assert t.end_ts == 1.5


def test_tracker_unindexed_chunks_advance_without_verdicts() -> None:
    """No ChunkReceived in the capture: a chunk with a good CRC is taken as accepted."""
    tracker, written = _tracker()
    tracker.observe("UpdateBegin", {"file_size": 10, "chunk_size": 4}, b"", 1.0)
    for i, data in enumerate((b"0123", b"4567", b"89\0\0")):
        tracker.observe("Chunk", {"crc_ok": True}, data, 2.0 + i)
    tracker.observe("UpdateDoneAck", {"complete": True}, b"", 6.0)
    (t,) = tracker.transfers
    assert t.size == 10 and t.sha256 == _sha(b"0123456789")
    assert written == [(t, b"0123456789")] and t.extracted == "somewhere.bin"


def test_tracker_resumed_v3_transfer_is_not_hashed() -> None:
    tracker, written = _tracker()
    tracker.observe("UpdateStart", {"file_size": 8, "chunk_size": 4}, b"", 1.0)
    tracker.observe("UpdateStartReturn", {"status": "2.01", "resume_offset": 4}, b"", 1.1)
    tracker.observe("UpdateChunk", {"chunk_index": 2}, b"4567", 1.2)
    tracker.observe("UpdateFinishReturn", {"status": "2.04", "status_name": "Changed"}, b"", 2)
    (t,) = tracker.transfers
    assert t.complete and t.sha256 is None and "already held 4 bytes" in t.image_note
    assert written == []


def test_tracker_image_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ota_module, "MAX_IMAGE", 8)
    tracker, written = _tracker()
    tracker.observe("UpdateBegin", {"chunk_size": 4}, b"", 1.0)
    tracker.observe("Chunk", {"crc_ok": True, "index": 5}, b"abcd", 1.1)
    tracker.finish(2.0)
    (t,) = tracker.transfers
    assert "not reassembled" in t.image_note and written == []


def test_new_transfer_closes_the_previous_one() -> None:
    tracker, _ = _tracker()
    tracker.observe("UpdateBegin", {"chunk_size": 4}, b"", 1.0)
    tracker.observe("UpdateStart", {"file_size": 4, "chunk_size": 4}, b"", 2.0)
    first, second = tracker.transfers
    assert first.result == "interrupted by a new transfer" and second.mode == "v3"
