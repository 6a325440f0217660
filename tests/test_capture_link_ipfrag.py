"""IP fragment reassembly: order, overlaps, timeouts and memory bounds."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.capture.ipfrag import IpDefragmenter, Ipv4Defragmenter

DATA = bytes(range(256)) * 4  # 1024 bytes
KEY = (4, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 17, 99)


def pieces(data: bytes, size: int) -> list[tuple[int, bool, bytes]]:
    return [
        (off, off + size < len(data), data[off : off + size]) for off in range(0, len(data), size)
    ]


def feed(d: IpDefragmenter, frags: list[tuple[int, bool, bytes]], key: object = KEY,
         ts: float = 0.0) -> list[tuple[int, bytes] | None]:  # fmt: skip
    return [d.add(key, off, more, chunk, ts, 17) for off, more, chunk in frags]


def test_alias() -> None:
    assert Ipv4Defragmenter is IpDefragmenter


def test_in_order_and_reverse_order() -> None:
    for order in (1, -1):
        d = IpDefragmenter()
        out = feed(d, pieces(DATA, 200)[::order])
        assert out[:-1] == [None] * 5 and out[-1] == (17, DATA)
        assert d.pending == 0 and d.pending_bytes == 0
        assert d.stats.reassembled == 1 and d.stats.fragments == 6


def test_protocol_of_the_first_fragment_wins() -> None:
    d = IpDefragmenter()
    frags = pieces(DATA, 512)
    assert d.add(KEY, 512, False, frags[1][2], 0.0, 44) is None
    assert d.add(KEY, 0, True, frags[0][2], 0.0, 6) == (6, DATA)


def test_overlaps_first_arrival_wins() -> None:
    d = IpDefragmenter()
    assert d.add(KEY, 0, True, DATA[:600], 0.0, 17) is None
    assert d.add(KEY, 400, True, b"X" * 400, 0.0, 17) is None  # overlaps [400, 600)
    result = d.add(KEY, 800, False, DATA[800:], 0.0, 17)
    assert result == (17, DATA[:600] + b"X" * 200 + DATA[800:])
    assert d.stats.overlaps == 1


def test_duplicates_are_harmless() -> None:
    d = IpDefragmenter()
    frags = pieces(DATA, 256)
    out = feed(d, [frags[0], frags[0], frags[2], frags[1], frags[1], frags[3]])
    assert out[-1] == (17, DATA)


def test_gap_keeps_waiting() -> None:
    d = IpDefragmenter()
    frags = pieces(DATA, 256)
    assert feed(d, [frags[0], frags[1], frags[3]]) == [None] * 3
    assert d.pending == 1 and d.pending_bytes == 768


def test_separate_keys_do_not_mix() -> None:
    d = IpDefragmenter()
    other = (*KEY[:4], 100)
    frags = pieces(DATA, 512)
    assert d.add(KEY, 0, True, frags[0][2], 0.0, 17) is None
    assert d.add(other, 512, False, b"z" * 10, 0.0, 17) is None
    assert d.pending == 2
    assert d.add(KEY, 512, False, frags[1][2], 0.0, 17) == (17, DATA)


def test_timeout_in_capture_time() -> None:
    d = IpDefragmenter(timeout=60.0)
    frags = pieces(DATA, 512)
    assert d.add(KEY, 0, True, frags[0][2], 100.0, 17) is None
    # the rest arrives too late: the first half expired, the datagram never completes
    assert d.add(KEY, 512, False, frags[1][2], 160.5, 17) is None
    assert d.stats.timed_out == 1 and d.pending == 1
    assert d.expire(1000.0) == 1 and d.pending == 0 and d.stats.timed_out == 2


def test_within_timeout_completes() -> None:
    d = IpDefragmenter(timeout=60.0)
    frags = pieces(DATA, 512)
    assert d.add(KEY, 0, True, frags[0][2], 100.0, 17) is None
    assert d.add(KEY, 512, False, frags[1][2], 159.0, 17) == (17, DATA)


def test_pending_cap_evicts_the_oldest() -> None:
    d = IpDefragmenter(max_pending=3)
    for ident in range(5):
        assert d.add((*KEY[:4], ident), 0, True, b"a" * 8, float(ident), 17) is None
    assert d.pending == 3 and d.stats.evicted == 2
    # datagram 0 is gone: its last fragment alone cannot complete it
    assert d.add((*KEY[:4], 0), 8, False, b"b" * 8, 5.0, 17) is None
    assert d.add((*KEY[:4], 4), 8, False, b"b" * 8, 5.0, 17) == (17, b"a" * 8 + b"b" * 8)


def test_byte_cap_evicts() -> None:
    d = IpDefragmenter(max_bytes=2000)
    for ident in range(4):
        d.add((*KEY[:4], ident), 0, True, b"q" * 800, 0.0, 17)
    assert d.pending_bytes <= 2000 and d.stats.evicted == 2


def test_malformed_fragments_drop_the_datagram() -> None:
    d = IpDefragmenter()
    assert d.add(KEY, 65528, False, b"x" * 16, 0.0, 17) is None  # beyond 65535
    assert d.stats.malformed == 1 and d.pending == 0
    assert d.add(KEY, 0, True, b"x" * 16, 0.0, 17) is None
    assert d.add(KEY, 32, False, b"x" * 16, 0.0, 17) is None
    assert d.add(KEY, 40, False, b"x" * 16, 0.0, 17) is None  # a second, different end
    assert d.stats.malformed == 2 and d.pending == 0


def test_fragment_count_cap() -> None:
    d = IpDefragmenter(max_fragments=4)
    for _ in range(5):
        d.add(KEY, 0, True, b"x" * 8, 0.0, 17)
    assert d.pending == 0 and d.stats.malformed == 1


def test_fragment_past_the_end_is_clipped() -> None:
    d = IpDefragmenter()
    assert d.add(KEY, 0, True, b"A" * 24, 0.0, 17) is None
    assert d.add(KEY, 16, False, b"B" * 8, 0.0, 17) == (17, b"A" * 24)


@settings(max_examples=100, deadline=None)
@given(
    st.binary(min_size=1, max_size=3000),
    st.integers(1, 60),
    st.randoms(use_true_random=False),
    st.integers(0, 3),
)
def test_any_fragmentation_and_order_reassembles(
    data: bytes, units: int, rnd: random.Random, dups: int
) -> None:
    frags = pieces(data, units * 8)
    frags += [rnd.choice(frags) for _ in range(dups)]
    rnd.shuffle(frags)
    d = IpDefragmenter()
    results = [r for r in feed(d, frags) if r is not None]
    assert results[0] == (17, data)
