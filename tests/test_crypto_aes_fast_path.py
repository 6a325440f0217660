"""``CbcDirection.decrypt_plaintext`` (the hot path) agrees with ``decrypt`` everywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.crypto import CbcDirection, CbcEncryptor

KEYS = st.binary(min_size=16, max_size=16)


@settings(max_examples=200, deadline=None)
@given(KEYS, KEYS, st.lists(st.binary(max_size=80), min_size=1, max_size=6))
def test_fast_path_decrypts_a_session_like_decrypt(
    key: bytes, iv: bytes, messages: list[bytes]
) -> None:
    enc = CbcEncryptor(key, iv)
    frames = [enc.encrypt(m) for m in messages]
    fast = CbcDirection(key, iv)
    slow = CbcDirection(key, iv)
    for message, frame in zip(messages, frames, strict=True):
        assert fast.decrypt_plaintext(frame) == message
        assert slow.decrypt(frame).plaintext == message
        assert (fast.iv, fast.frames) == (slow.iv, slow.frames)


@settings(max_examples=300, deadline=None)
@given(KEYS, st.none() | KEYS, st.lists(st.binary(max_size=70), min_size=1, max_size=5))
def test_fast_path_declines_without_touching_state(
    key: bytes, iv: bytes | None, frames: list[bytes]
) -> None:
    """On garbage, short frames or an unknown IV it returns None and changes nothing, so the
    caller's fallback to ``decrypt`` sees the same state."""
    fast = CbcDirection(key, iv)
    slow = CbcDirection(key, iv)
    for frame in frames:
        before = (fast.iv, fast.frames)
        got = fast.decrypt_plaintext(frame)
        result = slow.decrypt(frame)
        if got is None:
            assert (fast.iv, fast.frames) == before
            assert not (result.ok and result.first_block_known)
            fast.decrypt(frame)
        else:
            assert result.ok and result.first_block_known and got == result.plaintext
        assert (fast.iv, fast.frames) == (slow.iv, slow.frames)
