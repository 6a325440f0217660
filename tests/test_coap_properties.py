"""Property tests: the codec round-trips and never fails with anything but CoapError."""

from __future__ import annotations

import contextlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dissector.coap import CoapError, CoapMessage, CoapOption, decode, encode

option_numbers = st.one_of(
    st.sampled_from([1, 4, 6, 11, 12, 14, 15, 23, 27, 60, 258, 2049, 2061, 2077]),
    st.integers(min_value=0, max_value=65535),
)
option_values = st.one_of(
    st.binary(max_size=16),
    st.binary(min_size=260, max_size=300),
)
options = st.lists(st.builds(CoapOption, option_numbers, option_values), max_size=6).map(
    lambda opts: sorted(opts, key=lambda o: o.number)
)
messages = st.builds(
    CoapMessage,
    version=st.just(1),
    type=st.integers(0, 3),
    code=st.integers(0, 255),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    options=options,
    payload=st.binary(max_size=64),
)


@settings(max_examples=400, deadline=None)
@given(messages)
def test_decode_inverts_encode(msg: CoapMessage) -> None:
    assert decode(encode(msg)) == msg


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=80))
@example(b"\x40\x01\x00\x00\xff")
@example(b"\x61\x00\x00\x01\x00")
@example(b"\x40\x01\x00\x00\xe0\xff\xff")
def test_arbitrary_bytes_raise_only_coap_error_and_round_trip_when_accepted(data: bytes) -> None:
    try:
        msg = decode(data)
    except CoapError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data)
        return
    # Every accepted input has options in wire (number) order and one canonical encoding.
    assert encode(msg) == data


@settings(max_examples=600, deadline=None)
@given(messages, st.data())
def test_truncated_encodings_never_raise_anything_else(
    msg: CoapMessage, data: st.DataObject
) -> None:
    raw = encode(msg)
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(CoapError):
        decode(raw[:cut])
