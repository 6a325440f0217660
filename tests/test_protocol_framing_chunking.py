"""Framing does not depend on how the stream is cut into feeds (the whole-frames fast path
and the buffered path give the same units, offsets, timestamps and notes)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.protocol.framing import FrameStream, StreamNote, Unit

BLOBS = [("nonce", 40), ("session_key", 384)]


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Handshake blobs then frames, with the odd zero-length or bad header."""
    out = bytearray(draw(st.binary(min_size=424, max_size=424)))
    for _ in range(draw(st.integers(0, 12))):
        pick = draw(st.integers(0, 20))
        if pick == 0:
            out += b"\x00\x00"  # zero-length frame
        elif pick == 1:
            out += b"\x00\x05xxxxx"  # not a multiple of 16: resynchronisation
        else:
            n = 16 * draw(st.integers(1, 6))
            out += n.to_bytes(2, "big") + draw(st.binary(min_size=n, max_size=n))
    out += draw(st.binary(max_size=5))  # maybe a trailing partial header/frame
    return bytes(out)


def _run(
    stream: bytes, cuts: list[int], *, mid_session: bool = False
) -> tuple[list[tuple[object, ...]], list[StreamNote]]:
    fs = FrameStream([], synced=False) if mid_session else FrameStream(BLOBS)
    units: list[Unit] = []
    notes: list[StreamNote] = []
    bounds = sorted({0, len(stream), *(c for c in cuts if 0 < c < len(stream))})
    ends: list[tuple[int, float]] = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        u, n = fs.feed(stream[a:b], float(i))
        units += u
        notes += n
        ends.append((b, float(i)))
    u, n = fs.finish(99.0)
    units += u
    notes += n

    def stamp(unit: Unit) -> float:
        """The ts of the feed that brought the unit's last captured byte."""
        end = unit.offset + unit.wire_length - unit.lost
        return next((ts for b, ts in ends if b >= end), 99.0)

    out = [
        (u.kind, u.payload, u.offset, u.wire_length, u.lost, u.declared, u.ts == stamp(u))
        for u in units
    ]
    return out, notes


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(0, 3000), max_size=40))
def test_units_do_not_depend_on_the_cuts(stream: bytes, cuts: list[int]) -> None:
    whole, whole_notes = _run(stream, [])
    cut, cut_notes = _run(stream, cuts)
    one_by_one, _ = _run(stream, list(range(len(stream))))
    assert cut == whole == one_by_one
    assert all(item[-1] for item in cut)  # stamped by the feed that completed each unit
    assert [(n.code, n.offset, n.nbytes) for n in cut_notes] == [
        (n.code, n.offset, n.nbytes) for n in whole_notes
    ]


@st.composite
def junky_streams(draw: st.DrawFn) -> bytes:
    """A mid-session stream: runs of bytes that are not frames (another protocol, a lost
    boundary) between chains of frames, some of whose headers point past the data."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 6))):
        out += draw(st.binary(min_size=0, max_size=600))
        if draw(st.booleans()):
            out += draw(st.sampled_from([b"\x00\x30", b"\x01\x00", b"\x0f\xf0"]))  # far
        for _ in range(draw(st.integers(0, 5))):
            n = 16 * draw(st.integers(1, 6))
            out += n.to_bytes(2, "big") + draw(st.binary(min_size=n, max_size=n))
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(junky_streams(), st.lists(st.integers(0, 4000), max_size=60))
def test_resynchronisation_does_not_depend_on_the_cuts(stream: bytes, cuts: list[int]) -> None:
    """Resynchronisation resumes where it stopped on the previous feed instead of
    rescanning its window (which was quadratic): it must still find exactly the frames
    and skip exactly the bytes it finds with the whole stream in one feed."""
    whole, whole_notes = _run(stream, [], mid_session=True)
    cut, cut_notes = _run(stream, cuts, mid_session=True)
    small, small_notes = _run(stream, list(range(0, len(stream), 7)), mid_session=True)
    assert cut == whole == small
    key = [(n.code, n.offset, n.nbytes) for n in whole_notes]
    assert [(n.code, n.offset, n.nbytes) for n in cut_notes] == key
    assert [(n.code, n.offset, n.nbytes) for n in small_notes] == key
