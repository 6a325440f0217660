"""What ``dissect`` reads: key directories and key files, capture files (several, stdin,
gzip, cut short, not a capture at all) and the cloud port."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DEVICE_ID
from tests.test_cli_common import (
    BREWSKEY_PCAP,
    DEVICE_KEY,
    SERVER_KEY,
    SPARK_PCAP,
    assert_one_line_error,
    invoke,
    messages,
    of_kind,
    pcap_records,
    records_of,
    run_entry_point,
    with_cloud_port,
)


def _without_session(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "session"}


@pytest.fixture(scope="module")
def spark_records() -> list[dict[str, Any]]:
    return records_of(SPARK_PCAP, "--keys", SERVER_KEY, "--keys", DEVICE_KEY)


@pytest.fixture(scope="module")
def brewskey_records() -> list[dict[str, Any]]:
    return records_of(BREWSKEY_PCAP, "--keys", SERVER_KEY, "--keys", DEVICE_KEY)


# -- --keys DIR ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys under misleading names, nested, among junk (one junk file even named .pem)."""
    root = tmp_path_factory.mktemp("keys")
    (root / "cloud" / "old").mkdir(parents=True)
    (root / "devices" / "photon").mkdir(parents=True)
    shutil.copy(SERVER_KEY, root / "cloud" / "old" / "notes.txt")
    shutil.copy(DEVICE_KEY, root / "devices" / "photon" / "blob.bin")
    (root / "README.md").write_text("these are my keys\n")
    (root / "devices" / "garbage.pem").write_text("-----BEGIN NOTHING-----\nxx\n")
    (root / "cloud" / "random.der").write_bytes(bytes(range(256)) * 3)
    return root


JUNK = ("README.md", "garbage.pem", "random.der")


def test_keys_dir_is_recursive_by_content_and_notes_junk_once(
    key_dir: Path, spark_records: list[dict[str, Any]]
) -> None:
    result = invoke(SPARK_PCAP, "--keys", key_dir, "--format", "ndjson")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"one note for all skipped files: {result.stderr!r}"
    for name in JUNK:
        assert name in lines[0]
    assert "notes.txt" not in lines[0] and "blob.bin" not in lines[0]
    from tests.test_cli_common import ndjson

    msgs = messages(ndjson(result.stdout))
    assert msgs and all(m["coap"] is not None for m in msgs)
    assert all(m["device_id"] == DEVICE_ID for m in msgs)
    assert [m["coap"] for m in msgs] == [m["coap"] for m in messages(spark_records)]


def test_keys_dir_note_goes_to_stderr_of_the_installed_command(key_dir: Path) -> None:
    proc = run_entry_point(["dissect", SPARK_PCAP, "--keys", key_dir, "--format", "ndjson"])
    assert proc.returncode == 0
    assert len(proc.stderr.decode().splitlines()) == 1
    assert b"README.md" in proc.stderr
    assert b"README.md" not in proc.stdout
    from tests.test_cli_common import ndjson

    assert messages(ndjson(proc.stdout.decode()))


# -- explicit key files that cannot be read are fatal --------------------------------------


@pytest.mark.parametrize(
    ("flag", "content"),
    [
        ("--device-key", b"this is not a key\n"),
        ("--device-key", None),
        (
            "--server-key",
            b"-----BEGIN RSA PRIVATE KEY-----\nbroken\n-----END RSA PRIVATE KEY-----\n",
        ),
        ("--server-key", None),
        ("--keylog", bytes(range(256))),
        ("--keylog", None),
    ],
    ids=[
        "device-garbage",
        "device-missing",
        "server-garbage",
        "server-missing",
        "keylog-binary",
        "keylog-missing",
    ],
)
def test_unreadable_explicit_key_file_is_fatal(
    tmp_path: Path, flag: str, content: bytes | None
) -> None:
    path = tmp_path / "garbage.pem"
    if content is not None:
        path.write_bytes(content)
    result = invoke(SPARK_PCAP, flag, path)
    assert_one_line_error(result, str(path))


# -- captures that cannot be read ------------------------------------------------------------


def test_missing_capture_is_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pcap"
    assert_one_line_error(invoke(missing), str(missing))


def test_text_file_is_not_a_capture(tmp_path: Path) -> None:
    text = tmp_path / "notes.pcap"
    text.write_text("GET / HTTP/1.1\r\nHost: example\r\n\r\n" * 10)
    assert_one_line_error(invoke(text, "--format", "ndjson"), str(text))


def test_empty_file_is_not_a_capture(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert_one_line_error(invoke(empty), str(empty))


def test_one_bad_capture_among_good_ones_is_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "second.pcap"
    assert_one_line_error(invoke(SPARK_PCAP, missing, "--format", "csv"), str(missing))


def test_missing_capture_through_the_installed_entry_point(tmp_path: Path) -> None:
    missing = tmp_path / "gone.pcap"
    proc = run_entry_point(["dissect", missing, "--keys", SERVER_KEY])
    assert proc.returncode == 2
    assert proc.stdout == b"", "nothing on stdout when the capture cannot be read"
    err = proc.stderr.decode().splitlines()
    assert len(err) == 1 and str(missing) in err[0]


# -- a capture cut in the middle of a record ----------------------------------------------------

_SPARK_BYTES = SPARK_PCAP.read_bytes()
_RECORDS = pcap_records(_SPARK_BYTES)


def _cuts() -> list[tuple[int, int]]:
    """(cut position, index of the record it falls into): inside data and inside headers."""
    picks = [
        (12, 30),  # 30 bytes into record 12 (its data)
        (25, 8),  # inside record 25's 16-byte header
        (40, -1),  # one byte short of record 40's end
        (55, 17),  # first data byte of record 55
        (len(_RECORDS) - 1, 40),  # inside the last record
    ]
    out = []
    for index, into in picks:
        offset, _ts, length = _RECORDS[index]
        out.append((offset + (into if into >= 0 else length + into), index))
    return out


@pytest.mark.parametrize(("cut", "index"), _cuts(), ids=lambda v: str(v))
def test_truncated_capture_yields_what_came_before_and_says_where(
    tmp_path: Path, spark_records: list[dict[str, Any]], cut: int, index: int
) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes(_SPARK_BYTES[:cut])
    records = records_of(path, "--keys", SERVER_KEY, "--keys", DEVICE_KEY)
    last_complete_ts = _RECORDS[index - 1][1]
    want = [m for m in messages(spark_records) if m["ts"] <= last_complete_ts]
    assert messages(records) == want
    truncated = [f for f in of_kind(records, "finding") if f["code"] == "capture.truncated"]
    assert len(truncated) == 1, truncated
    record_start = _RECORDS[index][0]
    text = truncated[0]["message"]
    assert str(record_start) in text or str(cut) in text, text


# -- several captures, stdin, gzip ------------------------------------------------------------


def test_two_captures_are_read_as_one_time_ordered_capture(
    spark_records: list[dict[str, Any]], brewskey_records: list[dict[str, Any]]
) -> None:
    both = records_of(SPARK_PCAP, BREWSKEY_PCAP, "--keys", SERVER_KEY, "--keys", DEVICE_KEY)
    msgs = messages(both)
    assert len(msgs) == len(messages(spark_records)) + len(messages(brewskey_records))
    stamps = [m["ts"] for m in msgs]
    assert stamps == sorted(stamps)
    sessions = of_kind(both, "session")
    assert len(sessions) == 2 and len({s["session"] for s in sessions}) == 2
    by_session: dict[str, list[dict[str, Any]]] = {}
    for m in msgs:
        by_session.setdefault(m["session"], []).append(_without_session(m))
    singles = [
        [_without_session(m) for m in messages(spark_records)],
        [_without_session(m) for m in messages(brewskey_records)],
    ]
    assert sorted(by_session.values(), key=lambda ms: ms[0]["ts"]) == sorted(
        singles, key=lambda ms: ms[0]["ts"]
    )


def test_argument_order_does_not_change_the_merged_capture() -> None:
    forward = records_of(SPARK_PCAP, BREWSKEY_PCAP, "--keys", DEVICE_KEY)
    backward = records_of(BREWSKEY_PCAP, SPARK_PCAP, "--keys", DEVICE_KEY)
    assert forward == backward


def test_gzip_capture_gives_identical_records(
    tmp_path: Path, spark_records: list[dict[str, Any]]
) -> None:
    gz = tmp_path / "spark.pcap.gz"
    gz.write_bytes(gzip.compress(_SPARK_BYTES))
    assert records_of(gz, "--keys", SERVER_KEY, "--keys", DEVICE_KEY) == spark_records


def test_stdin_capture_gives_identical_records(spark_records: list[dict[str, Any]]) -> None:
    records = records_of("-", "--keys", SERVER_KEY, "--keys", DEVICE_KEY, stdin=_SPARK_BYTES)
    assert records == spark_records


def test_stdin_gzip_and_plain_file_merge(
    tmp_path: Path, spark_records: list[dict[str, Any]], brewskey_records: list[dict[str, Any]]
) -> None:
    gz = tmp_path / "brewskey.pcap.gz"
    gz.write_bytes(gzip.compress(BREWSKEY_PCAP.read_bytes()))
    mixed = records_of(gz, "-", "--keys", DEVICE_KEY, "--keys", SERVER_KEY, stdin=_SPARK_BYTES)
    plain = records_of(BREWSKEY_PCAP, SPARK_PCAP, "--keys", DEVICE_KEY, "--keys", SERVER_KEY)
    assert mixed == plain


def test_stdin_pipe_through_the_installed_entry_point(spark_records: list[dict[str, Any]]) -> None:
    proc = run_entry_point(
        ["dissect", "-", "--keys", SERVER_KEY, "--keys", DEVICE_KEY, "--format", "ndjson"],
        stdin=_SPARK_BYTES,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    from tests.test_cli_common import ndjson

    assert ndjson(proc.stdout.decode("utf-8")) == spark_records


# -- --port ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moved_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("port") / "spark-7777.pcap"
    path.write_bytes(with_cloud_port(_SPARK_BYTES, 5683, 7777))
    return path


def test_cloud_on_another_port_is_not_found_by_default(moved_capture: Path) -> None:
    records = records_of(moved_capture, "--keys", DEVICE_KEY)
    assert messages(records) == []
    assert of_kind(records, "session") == []


def test_port_option_finds_the_session(
    moved_capture: Path, spark_records: list[dict[str, Any]]
) -> None:
    records = records_of(
        moved_capture, "--port", "7777", "--keys", SERVER_KEY, "--keys", DEVICE_KEY
    )
    sessions = of_kind(records, "session")
    assert len(sessions) == 1
    assert sessions[0]["cloud"]["port"] == 7777
    assert [m["coap"] for m in messages(records)] == [m["coap"] for m in messages(spark_records)]


def test_port_option_is_repeatable(moved_capture: Path) -> None:
    records = records_of(
        moved_capture, BREWSKEY_PCAP, "--port", "7777", "--port", "5683", "--keys", DEVICE_KEY
    )
    ports = sorted(s["cloud"]["port"] for s in of_kind(records, "session"))
    assert ports == [5683, 7777]
    only_new = records_of(moved_capture, BREWSKEY_PCAP, "--port", "7777", "--keys", DEVICE_KEY)
    assert [s["cloud"]["port"] for s in of_kind(only_new, "session")] == [7777]
