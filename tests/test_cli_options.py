"""``dissect`` options: --write-keylog, --device, --kind, --fail-on, -o, and the promise that
the dissect path never imports Scapy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DEVICE_ID
from tests.test_cli_common import (
    BREWSKEY_KEYLOG,
    BREWSKEY_PCAP,
    DEVICE_KEY,
    ROOT,
    SERVER_KEY,
    SPARK_KEYLOG,
    SPARK_PCAP,
    assert_one_line_error,
    clean_env,
    invoke,
    messages,
    ndjson,
    of_kind,
    records_of,
    run_entry_point,
)


@pytest.fixture(scope="module")
def spark_device() -> list[dict[str, Any]]:
    return records_of(SPARK_PCAP, "--device-key", DEVICE_KEY)


# -- --write-keylog ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pcap", "reference"),
    [(SPARK_PCAP, SPARK_KEYLOG), (BREWSKEY_PCAP, BREWSKEY_KEYLOG)],
    ids=["spark", "brewskey"],
)
def test_write_keylog_writes_the_reference_line_and_reads_back(
    tmp_path: Path, pcap: Path, reference: Path
) -> None:
    keylog = tmp_path / "sessions.keylog"
    with_key = records_of(pcap, "--device-key", DEVICE_KEY, "--write-keylog", keylog)
    lines = [ln for ln in keylog.read_text().splitlines() if ln.startswith("PARTICLE_TCP ")]
    want = [ln for ln in reference.read_text().splitlines() if ln.strip()]
    assert lines == want
    with_log = records_of(pcap, "--keylog", keylog)

    def decrypted(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (m["ts"], m["direction"], m["kind"], m["coap"], m.get("decoded"))
            for m in messages(recs)
        ]

    assert all(m["coap"] is not None for m in messages(with_log))
    assert decrypted(with_log) == decrypted(with_key)


def test_write_keylog_covers_every_session_of_a_merged_capture(tmp_path: Path) -> None:
    keylog = tmp_path / "both.keylog"
    records_of(SPARK_PCAP, BREWSKEY_PCAP, "--device-key", DEVICE_KEY, "--write-keylog", keylog)
    got = sorted(ln for ln in keylog.read_text().splitlines() if ln.startswith("PARTICLE_TCP"))
    want = sorted(
        ln.strip()
        for ref in (SPARK_KEYLOG, BREWSKEY_KEYLOG)
        for ln in ref.read_text().splitlines()
        if ln.strip()
    )
    assert got == want


def test_write_keylog_into_a_missing_directory_is_a_one_line_error(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "k.log"
    result = invoke(SPARK_PCAP, "--device-key", DEVICE_KEY, "--write-keylog", target)
    assert_one_line_error(result, str(target))


# -- -o FILE -------------------------------------------------------------------------------------


def test_output_option_writes_the_file_not_stdout(
    tmp_path: Path, spark_device: list[dict[str, Any]]
) -> None:
    out = tmp_path / "records.ndjson"
    result = invoke(SPARK_PCAP, "--device-key", DEVICE_KEY, "--format", "ndjson", "-o", out)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert ndjson(out.read_text(encoding="utf-8")) == spark_device


def test_output_into_a_missing_directory_is_a_one_line_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.txt"
    assert_one_line_error(invoke(SPARK_PCAP, "-o", target), str(target))


# -- --device ------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", [DEVICE_ID, DEVICE_ID.upper()], ids=["lower", "upper"])
def test_device_filter_keeps_that_device(device: str, spark_device: list[dict[str, Any]]) -> None:
    records = records_of(SPARK_PCAP, "--device-key", DEVICE_KEY, "--device", device)
    assert messages(records) == messages(spark_device)
    assert of_kind(records, "session") == of_kind(spark_device, "session")
    assert all(r.get("device_id") in (None, DEVICE_ID) for r in records)


def test_device_filter_keeps_the_findings_of_that_devices_sessions(
    spark_device: list[dict[str, Any]],
) -> None:
    """Findings carry a session, not a device ID; those of the device's session are its
    records too (a user filtering on a device must still see why it misbehaved)."""
    records = records_of(SPARK_PCAP, "--device-key", DEVICE_KEY, "--device", DEVICE_ID)
    want = [f for f in of_kind(spark_device, "finding") if f["session"] == "tcp-1"]
    assert want, "the reference session has findings"
    assert of_kind(records, "finding") == want


def test_device_filter_drops_other_devices(spark_device: list[dict[str, Any]]) -> None:
    records = records_of(
        SPARK_PCAP, BREWSKEY_PCAP, "--device-key", DEVICE_KEY, "--device", "0" * 24
    )
    assert messages(records) == []
    assert of_kind(records, "handshake") == []
    assert of_kind(records, "session") == []
    assert [f for f in of_kind(records, "finding") if f["session"] is not None] == []


def test_device_filter_keeps_findings_of_the_whole_capture(tmp_path: Path) -> None:
    """A truncated capture concerns every device: its finding survives --device."""
    data = SPARK_PCAP.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 7])
    records = records_of(cut, "--device-key", DEVICE_KEY, "--device", DEVICE_ID)
    capture_level = [f for f in of_kind(records, "finding") if f["session"] is None]
    assert [f["code"] for f in capture_level] == ["capture.truncated"]


# -- --kind --------------------------------------------------------------------------------------


def test_kind_filter_keeps_only_those_message_kinds(spark_device: list[dict[str, Any]]) -> None:
    records = records_of(
        SPARK_PCAP, "--device-key", DEVICE_KEY, "--kind", "Hello", "--kind", "privateevent"
    )
    kinds = {m["kind"] for m in messages(records)}
    assert kinds == {"Hello", "PrivateEvent"}
    want = [m for m in messages(spark_device) if m["kind"] in kinds]
    assert messages(records) == want


def test_kind_filter_on_encrypted_messages() -> None:
    records = records_of(SPARK_PCAP, "--kind", "Encrypted")
    assert messages(records) and all(m["kind"] == "Encrypted" for m in messages(records))
    assert messages(records_of(SPARK_PCAP, "--kind", "Hello")) == []


# -- --fail-on -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "fail_on", "status"),
    [
        (["--device-key", str(DEVICE_KEY)], None, 0),
        (["--device-key", str(DEVICE_KEY)], "error", 0),
        (["--device-key", str(DEVICE_KEY)], "warning", 1),
        (["--device-key", str(DEVICE_KEY)], "info", 1),
        ([], None, 0),
        ([], "error", 0),
        ([], "warning", 1),
        (["--keys", str(SERVER_KEY)], "error", 0),
    ],
    ids=[
        "device-none",
        "device-error",
        "device-warning",
        "device-info",
        "nokeys-none",
        "nokeys-error",
        "nokeys-warning",
        "server-error",
    ],
)
def test_fail_on_exit_status(keys: list[str], fail_on: str | None, status: int) -> None:
    """Exit 1 when findings of at least that severity occurred, 0 otherwise; the records are
    output either way. The reference session has info and warning findings, no error; the
    server key alone is not an error either."""
    args = [*keys, "--format", "ndjson"] + (["--fail-on", fail_on] if fail_on else [])
    result = invoke(SPARK_PCAP, *args)
    assert result.exit_code == status, [
        (r["severity"], r["code"]) for r in ndjson(result.stdout) if r["record"] == "finding"
    ]
    records = ndjson(result.stdout)
    assert messages(records) and of_kind(records, "session")
    assert "Traceback" not in result.stderr


def test_fail_on_counts_findings_the_filters_hide() -> None:
    """--device chooses what is shown; --fail-on judges the whole capture."""
    args = ["--device-key", DEVICE_KEY, "--device", "0" * 24, "--format", "ndjson"]
    result = invoke(SPARK_PCAP, *args, "--fail-on", "warning")
    shown = ndjson(result.stdout)
    assert not [r for r in shown if r["record"] == "finding" and r["severity"] == "warning"]
    assert result.exit_code == 1


def test_fail_on_through_the_installed_entry_point() -> None:
    proc = run_entry_point(
        [
            "dissect",
            SPARK_PCAP,
            "--device-key",
            DEVICE_KEY,
            "--fail-on",
            "warning",
            "--format",
            "csv",
        ]
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(b"record,")
    assert proc.stderr == b""


def test_installed_entry_point_ndjson_run() -> None:
    proc = run_entry_point(
        [
            "dissect",
            SPARK_PCAP,
            BREWSKEY_PCAP,
            "--keys",
            SERVER_KEY,
            "--keys",
            DEVICE_KEY,
            "--format",
            "ndjson",
        ]
    )
    assert proc.returncode == 0
    assert proc.stderr == b""
    records = ndjson(proc.stdout.decode("utf-8"))
    assert len(of_kind(records, "session")) == 2
    assert all(m["coap"] is not None for m in messages(records))


# -- no Scapy on the dissect path ------------------------------------------------------------------

_NO_SCAPY = """
import sys
from dissector.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
leaked = sorted(m for m in sys.modules if m == "scapy" or m.startswith("scapy."))
assert not leaked, leaked[:5]
print("scapy-free", file=sys.stderr)
"""


@pytest.mark.parametrize("fmt", ["ndjson", "table"])
def test_dissect_path_does_not_import_scapy(tmp_path: Path, fmt: str) -> None:
    import importlib.util

    assert importlib.util.find_spec("scapy") is not None, "scapy must be importable for this test"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _NO_SCAPY,
            "dissect",
            str(SPARK_PCAP),
            BREWSKEY_PCAP,
            "--keys",
            str(SERVER_KEY),
            "--keys",
            str(DEVICE_KEY),
            "--format",
            fmt,
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        env=clean_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"scapy-free" in proc.stderr
    assert (tmp_path / "out").stat().st_size > 0
