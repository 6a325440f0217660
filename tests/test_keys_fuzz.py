"""Arbitrary and mutated bytes as key files: only KeyFileError (explicit) or skipped (dir)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissector.keys import KeyFileError, KeyRing, extract_keys_from_dump, parse_server_key_file

DATA = Path(__file__).parent / "data" / "keys" / "reference"
SAMPLES = [
    p.read_bytes() for p in sorted(DATA.rglob("*")) if p.is_file() and p.stat().st_size < 4096
]
ROLES = st.sampled_from([None, "server", "device", "keylog"])


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        data = data[:cut]
    return bytes(data) + draw(st.binary(max_size=16))


KEYISH = st.one_of(
    st.binary(max_size=700),
    mutated_sample(),
    st.binary(min_size=512, max_size=512),
    st.binary(min_size=320, max_size=320),
    st.text(max_size=300).map(str.encode),
    st.builds(
        lambda body: b"-----BEGIN PRIVATE KEY-----\n" + body + b"\n-----END PRIVATE KEY-----\n",
        st.binary(max_size=200),
    ),
)


@settings(max_examples=300, deadline=None)
@given(KEYISH, ROLES)
def test_explicit_load_raises_only_key_file_error(data: bytes, role: str | None) -> None:
    ring = KeyRing()
    try:
        ring.load_bytes(data, name="fuzz.bin", role=role)
    except KeyFileError as exc:
        assert str(exc).startswith("fuzz.bin: ")
    else:
        assert len(ring) > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(KEYISH, min_size=1, max_size=4), ROLES)
def test_directory_load_never_raises(files: list[bytes], role: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(files):
            (Path(tmp) / f"f{i}").write_bytes(data)
        ring = KeyRing()
        ring.load(tmp, role=role)
        named = {Path(s.path).name for s in ring.skipped}
        assert len(named) <= len(files)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=600), mutated_sample()))
def test_server_file_and_dump_parsers(data: bytes) -> None:
    with contextlib.suppress(KeyFileError):
        parse_server_key_file(data)
    assert isinstance(extract_keys_from_dump(data), list)
