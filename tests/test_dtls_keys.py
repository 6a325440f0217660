"""Persisted DTLS sessions: text form and binary ``SessionPersistData`` layouts (spec §6.6)."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.dtls.keys import (
    PersistedSession,
    SessionPersistError,
    looks_like_session_blob,
    parse_session_persist,
    parse_session_persist_text,
)

DATA = Path(__file__).parent / "data" / "dtls"
PERSIST_TXT = (DATA / "particle_mbedtls_ccm8_full.persist.txt").read_text()


@pytest.fixture(scope="module")
def text_session() -> PersistedSession:
    return parse_session_persist_text(PERSIST_TXT)


def test_text_form(text_session: PersistedSession) -> None:
    s = text_session
    assert s.client_random.hex().startswith("6b074dd8c47b97f9")
    assert s.server_random.hex().startswith("6b074dd83442ab9c")
    assert s.master is not None and s.master.hex().endswith("c46f15fb") and len(s.master) == 48
    assert s.ciphersuite == 0xC0AE and s.compression == 0
    assert s.session_id.hex().startswith("82c37744") and len(s.session_id) == 32
    assert s.in_epoch == 1 and s.out_ctr == (1, 5)
    assert s.in_window_top == 4 and s.in_window == 0x1F
    assert s.cid == bytes.fromhex("c1d05e5510000001")
    assert s.next_coap_id is None and s.layout == "text"


def test_text_form_errors() -> None:
    with pytest.raises(SessionPersistError, match="missing master"):
        parse_session_persist_text("client_random " + "00" * 32 + "\nserver_random " + "00" * 32)
    with pytest.raises(SessionPersistError, match="not hex"):
        parse_session_persist_text(PERSIST_TXT.replace("master 70", "master zz"))
    with pytest.raises(SessionPersistError, match="out_ctr"):
        parse_session_persist_text(PERSIST_TXT.replace("out_ctr 0001000000000005", "out_ctr 01"))
    with pytest.raises(SessionPersistError, match="expected 'key value'"):
        parse_session_persist_text(PERSIST_TXT + "\nlonely\n")


def _blob(s: PersistedSession, size: int, *, x86_64: bool = False) -> bytes:
    """Build a SessionPersistData blob with struct, following the spec §6.6 table."""
    head = struct.pack("<HBB32sI", size, 1, 0, b"\xaa" * 32, 0xDEADBEEF)
    head += s.client_random + s.server_random
    head += struct.pack("<ii", s.ciphersuite, 0)
    head += struct.pack("<Q" if x86_64 else "<I", len(s.session_id))
    head += s.session_id.ljust(32, b"\x00")
    assert s.master is not None
    head += s.master
    head += struct.pack("<H", s.in_epoch)
    head += s.out_epoch.to_bytes(2, "big") + s.out_seq.to_bytes(6, "big")
    head += struct.pack("<H", 0x0042)  # next_coap_id
    head += struct.pack("<III", 0x11111111, 0x22222222, 0x33333333)
    if size in (220, 224):
        return head
    head += struct.pack("<II", 0x5, 0x6)  # protocol flags, app-state flags
    head += struct.pack("<IHHH", 0x100000, 0x0C00, 1152, 512)
    assert s.in_window_top is not None and s.in_window is not None and s.cid is not None
    head += struct.pack("<QQ", s.in_window_top, s.in_window) + s.cid
    return head


def test_head_layout_262_bytes(text_session: PersistedSession) -> None:
    blob = _blob(text_session, 262)
    assert len(blob) == 262
    # Offsets from the spec table.
    assert blob[40:72] == text_session.client_random and blob[148:196] == text_session.master
    assert blob[254:262] == text_session.cid
    s = parse_session_persist(blob)
    assert s.layout == "arm32/262" and s.size == 262
    for name in (
        "client_random",
        "server_random",
        "master",
        "ciphersuite",
        "session_id",
        "in_epoch",
        "out_epoch",
        "out_seq",
        "in_window_top",
        "in_window",
        "cid",
    ):
        assert getattr(s, name) == getattr(text_session, name), name
    assert s.next_coap_id == 0x42 and s.persistent == 1 and s.use_counter == 0
    assert s.keys_checksum == 0xDEADBEEF and s.connection == b"\xaa" * 32
    assert (s.subscriptions_crc, s.describe_app_crc, s.describe_system_crc) == (
        0x11111111,
        0x22222222,
        0x33333333,
    )
    assert (s.protocol_flags, s.app_state_flags) == (5, 6)
    assert (s.max_binary_size, s.system_version, s.max_message_size, s.ota_chunk_size) == (
        0x100000,
        0x0C00,
        1152,
        512,
    )
    assert looks_like_session_blob(blob)


def test_device_os_1_0_layout_220_bytes(text_session: PersistedSession) -> None:
    blob = _blob(text_session, 220)
    assert len(blob) == 220
    s = parse_session_persist(blob)
    assert s.layout == "arm32/220"
    assert s.master == text_session.master and s.client_random == text_session.client_random
    assert s.out_ctr == (1, 5) and s.next_coap_id == 0x42
    assert s.describe_system_crc == 0x33333333 and s.protocol_flags is None
    assert s.cid is None and s.in_window is None and s.in_window_top is None
    assert looks_like_session_blob(blob)


def test_x86_64_virtual_device_layout(text_session: PersistedSession) -> None:
    blob = _blob(text_session, 224, x86_64=True)
    assert len(blob) == 224 and blob[152:200] == text_session.master
    s = parse_session_persist(blob)
    assert s.layout == "x86_64/224"
    assert s.master == text_session.master and s.session_id == text_session.session_id
    assert s.in_epoch == 1 and s.out_ctr == (1, 5) and s.next_coap_id == 0x42
    head = _blob(text_session, 266, x86_64=True)
    assert parse_session_persist(head).cid == text_session.cid


def test_trailing_bytes_beyond_size_are_ignored(text_session: PersistedSession) -> None:
    blob = _blob(text_session, 220) + b"\xff" * 100
    assert parse_session_persist(blob).layout == "arm32/220"


def test_invalid_blobs(text_session: PersistedSession) -> None:
    blob = _blob(text_session, 262)
    with pytest.raises(SessionPersistError, match="size 0"):
        parse_session_persist(bytes(262))
    with pytest.raises(SessionPersistError, match="size field"):
        parse_session_persist(blob[:200])
    with pytest.raises(SessionPersistError):
        parse_session_persist(b"\x10")
    bad = bytearray(blob)
    bad[108:112] = b"\x07\x00\x00\x00"  # compression 7 is not plausible
    with pytest.raises(SessionPersistError, match="no known layout"):
        parse_session_persist(bytes(bad))
    assert not looks_like_session_blob(bytes(bad))
    assert not looks_like_session_blob(bytes(262))
    assert not looks_like_session_blob(b"\x06\x01" + bytes(260))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_session_persist_error(data: bytes) -> None:
    with contextlib.suppress(SessionPersistError):
        parse_session_persist(data)
    looks_like_session_blob(data)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_session_persist_error(text: str) -> None:
    with contextlib.suppress(SessionPersistError):
        parse_session_persist_text(text)
