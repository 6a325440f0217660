"""KeyLogWriter output is what KeyRing reads back; no duplicate lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dissector.keys import KeyLogWriter, KeyRing, parse_keylog

NONCE = bytes(range(40))
CREDS = bytes(range(40, 80))


def test_write_read_back_and_no_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "session.keylog"
    with KeyLogWriter(path) as writer:
        assert writer.write_tcp_session(NONCE, CREDS)
        assert not writer.write_tcp_session(NONCE, CREDS)
        # flushed per line: readable before close
        assert path.read_text().count("\n") == 1
        assert writer.write_nss("CLIENT_RANDOM", bytes(32), bytes(48))
        assert not writer.write_nss("CLIENT_RANDOM", bytes(32), bytes(48))
    lines = path.read_text().splitlines()
    assert lines[0] == f"PARTICLE_TCP {NONCE.hex()} {CREDS.hex()}"
    assert len(lines) == 2
    ring = KeyRing()
    assert ring.load(path, role="keylog") == 2
    assert ring.tcp_session(NONCE) == CREDS and ring.nss_master(bytes(32)) == bytes(48)


def test_appending_to_existing_file_skips_known_lines(tmp_path: Path) -> None:
    path = tmp_path / "k.log"
    with KeyLogWriter(path) as writer:
        writer.write_tcp_session(NONCE, CREDS)
    with KeyLogWriter(path) as writer:
        assert not writer.write_tcp_session(NONCE, CREDS)
        assert writer.write_tcp_session(CREDS, NONCE)
    assert len(path.read_text().splitlines()) == 2


def test_stream_target_and_validation() -> None:
    stream = io.StringIO()
    writer = KeyLogWriter(stream)
    writer.write_tcp_session(NONCE, CREDS)
    writer.close()  # does not close a stream it did not open
    assert not stream.closed
    assert parse_keylog(stream.getvalue()).tcp == [(NONCE, CREDS)]
    with pytest.raises(ValueError):
        writer.write_tcp_session(NONCE[:39], CREDS)
    with pytest.raises(ValueError):
        writer.write_nss("CLIENT_RANDOM", bytes(31), bytes(48))
    with pytest.raises(ValueError):
        writer.write_nss("lower", bytes(32), bytes(48))


def test_parse_keylog_details() -> None:
    text = "\n# c\n  \nPARTICLE_TCP " + NONCE.hex().upper() + " " + CREDS.hex() + "\nRSA 0011\n"
    parsed = parse_keylog(text)
    assert parsed.tcp == [(NONCE, CREDS)]
    assert parsed.problems == [(5, "expected 3 fields (LABEL hex hex), found 2")]
