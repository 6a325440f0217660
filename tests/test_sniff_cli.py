"""``particle-dissect sniff`` usage and errors: unknown interface, bad filter, bad option
combinations and unwritable files are one-line errors with exit status 2; a capture with
nothing to see ends cleanly with an empty NDJSON stream or the report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dissector.cli.sniff import sniff

QUIET = ["--port", "9", "--udp-port", "9"]  # a filter nothing on this host matches


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(sniff, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("particle-dissect: error: ")
    for word in words:
        assert word in result.stderr


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("capturing on lo needs root: run the sniff tests as root")


def test_unknown_interface_names_the_ones_that_exist() -> None:
    result = run("-i", "nosuch0", "--duration", "1")
    one_line_error(result, "no such interface 'nosuch0'", "lo")


def test_interface_is_required() -> None:
    result = run("--duration", "1")
    assert result.exit_code == 2
    assert "--interface" in result.stderr


def test_bad_capture_filter_is_reported() -> None:
    need_root()
    one_line_error(run("-i", "lo", "--bpf", "tcp portx 5683"), "bad capture filter", "portx")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rotate-size", "1"], ["need --write"]),
        (["--rotate-count", "3"], ["need --write"]),
        (["--write", "x.pcap", "--rotate-count", "3"], ["--rotate-count needs --rotate-size"]),
    ],
)
def test_rotation_options_need_their_partners(args: list[str], words: list[str]) -> None:
    one_line_error(run("-i", "lo", *args), *words)


def test_unwritable_capture_file_is_an_error(tmp_path: Path) -> None:
    need_root()
    result = run("-i", "lo", *QUIET, "--write", tmp_path / "missing" / "x.pcap")
    one_line_error(result, "No such file or directory")


def test_unreadable_key_file_is_an_error(tmp_path: Path) -> None:
    one_line_error(run("-i", "lo", "--keylog", tmp_path / "nope"), "nope")


def test_quiet_ndjson_capture_prints_no_records_and_talks_on_stderr(tmp_path: Path) -> None:
    need_root()
    result = run("-i", "lo", *QUIET, "--format", "ndjson", "--duration", "0.2",
                 "--write", tmp_path / "empty.pcap")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "listening on lo (link type 1), filter 'tcp port 9 or udp port 9'" in result.stderr
    assert "captured 0 packets on lo" in result.stderr
    assert "stopped by duration" in result.stderr
    assert (tmp_path / "empty.pcap").stat().st_size == 24  # a valid, empty pcap


def test_quiet_table_capture_ends_with_the_report() -> None:
    need_root()
    result = run("-i", "lo", *QUIET, "--duration", "0.2")
    assert result.exit_code == 0, result.stderr
    assert "live capture on lo" in result.stdout
    assert "== Sessions (0)" in result.stdout
