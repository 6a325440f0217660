"""``sniff --write`` files: one file, or rotating files by size and count; every file is a
complete capture and the kept files read back as one capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from dissector.capture.packets import RawPacket
from dissector.capture.reader import CaptureReader
from dissector.live import RotatingCaptureWriter
from tests.helpers import SPARK, TCP_KEYS, comparable, dissect, expected_messages, ring_with


@pytest.fixture(scope="module")
def spark() -> list[RawPacket]:
    return [p for p in CaptureReader([f"{SPARK}.pcap"]) if isinstance(p, RawPacket)]


def read(*paths: Path) -> list[RawPacket]:
    return [p for p in CaptureReader([str(p) for p in paths]) if isinstance(p, RawPacket)]


def test_one_file_without_rotation(tmp_path: Path, spark: list[RawPacket]) -> None:
    writer = RotatingCaptureWriter(tmp_path / "cap.pcap", 1)
    for pkt in spark:
        writer.write(pkt)
    writer.close()
    assert writer.files == [tmp_path / "cap.pcap"]
    back = read(tmp_path / "cap.pcap")
    assert [(p.ts, p.data, p.orig_len) for p in back] == [(p.ts, p.data, p.orig_len) for p in spark]


def test_rotation_by_size_names_files_and_loses_nothing(
    tmp_path: Path, spark: list[RawPacket]
) -> None:
    writer = RotatingCaptureWriter(tmp_path / "cap.pcap", 1, max_bytes=2000)
    for pkt in spark:
        writer.write(pkt)
    writer.close()
    names = [p.name for p in writer.files]
    assert names[:3] == ["cap.pcap", "cap.1.pcap", "cap.2.pcap"]
    assert len(names) > 3
    for path in writer.files[:-1]:
        assert path.stat().st_size >= 2000
        assert path.stat().st_size < 2000 + 1600  # a file ends at the first packet past the size
    assert len(read(*writer.files)) == len(spark)
    records = dissect(writer.files, ring_with(TCP_KEYS))
    assert [comparable(r) for r in records if r["record"] == "message"] == [
        comparable(m) for m in expected_messages(SPARK)
    ]


def test_rotate_count_keeps_only_the_newest_files(tmp_path: Path, spark: list[RawPacket]) -> None:
    writer = RotatingCaptureWriter(tmp_path / "ring.pcapng", 1, max_bytes=2000, max_files=2)
    for pkt in spark:
        writer.write(pkt)
    writer.close()
    assert len(writer.files) == 2
    assert sorted(tmp_path.iterdir()) == sorted(writer.files)
    assert writer.deleted and not any(p.exists() for p in writer.deleted)
    kept = read(*writer.files)
    assert [p.data for p in kept] == [p.data for p in spark[-len(kept) :]]
    assert (tmp_path / "ring.pcapng").exists() is False
    assert writer.files[0].read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_pcapng_keeps_original_lengths_and_interface_name(tmp_path: Path) -> None:
    writer = RotatingCaptureWriter(tmp_path / "x.pcapng", 1, interface="lo")
    writer.write(RawPacket(1795641070.25, 1, b"\x00" * 60, 1514, 1, "lo"))
    writer.close()
    (pkt,) = read(tmp_path / "x.pcapng")
    assert (pkt.ts, pkt.orig_len, len(pkt.data)) == (1795641070.25, 1514, 60)
    assert b"lo\x00\x00" in (tmp_path / "x.pcapng").read_bytes()


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_files": 0}])
def test_limits_must_be_positive(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RotatingCaptureWriter(tmp_path / "x.pcap", 1, **kwargs)
