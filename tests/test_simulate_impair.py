"""Capture impairments: loss, duplicates, reordering, mid-session start, small segments."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, TcpSegment
from dissector.capture.reader import CaptureReader
from dissector.keys import KeyRing
from dissector.output.records import to_record
from dissector.pipeline import Dissector
from dissector.simulate import SimulationError
from dissector.simulate.impair import Impairments
from dissector.simulate.keyfiles import load_keyset
from dissector.simulate.rng import ByteSource
from dissector.simulate.run import SimulatedCapture, capture_bytes, simulate
from dissector.simulate.scenario import KeySet
from dissector.simulate.scenarios import get_scenario

ROOT = Path(__file__).parent.parent


@cache
def keys() -> KeySet:
    return load_keyset([ROOT / "captures" / "keys"], "tests")


@cache
def clean(segment_size: int = 1460) -> SimulatedCapture:
    return simulate(get_scenario("ota-fast"), seed=2, keys=keys(), segment_size=segment_size)


@cache
def ring() -> KeyRing:
    r = KeyRing()
    r.load_bytes(clean().simulation.keylog().encode(), "sim.keylog", role="keylog")
    return r


def dissect(packets: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    reader = CaptureReader([io.BytesIO(capture_bytes(packets))])
    return [r for e in Dissector(ring()).run(iter(reader)) if (r := to_record(e)) is not None]


def per_direction(recs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in recs:
        if r["record"] == "message":
            out.setdefault(r["direction"], []).append(r["coap"])
    return out


def segments(packets: list[tuple[float, bytes]]) -> list[TcpSegment]:
    decoder = LinkDecoder()
    out = []
    for ts, frame in packets:
        seg = decoder.decode(RawPacket(ts, 1, frame, len(frame), 0, ""))
        assert isinstance(seg, TcpSegment)
        out.append(seg)
    return out


def test_no_impairment_leaves_the_packets_alone() -> None:
    packets = clean().packets
    assert Impairments().apply(packets, 1, ByteSource(1)) == packets
    assert not Impairments().active


def test_loss_drops_only_data_segments_and_the_dissector_names_the_holes() -> None:
    packets = clean().packets
    lossy = Impairments(loss=0.3).apply(packets, 1, ByteSource(4))
    assert len(lossy) < len(packets) and set(lossy) <= set(packets)
    lost = [s for s in segments([p for p in packets if p not in lossy])]
    assert lost and all(s.payload and not (s.syn or s.fin or s.rst) for s in lost)
    recs = dissect(lossy)
    assert any(r["record"] == "finding" and r["code"] == "tcp.gap" for r in recs)


def test_duplicates_are_later_copies_and_reordering_keeps_capture_time_order() -> None:
    packets = clean().packets
    doubled = Impairments(duplicate=0.5).apply(packets, 1, ByteSource(5))
    assert len(doubled) > len(packets)
    assert [p for p in doubled if p in packets] == packets
    swapped = Impairments(reorder=0.5).apply(packets, 1, ByteSource(5))
    assert sorted(f for _, f in swapped) == sorted(f for _, f in packets)
    assert [t for t, _ in swapped] == [t for t, _ in packets]
    assert swapped != packets


def test_start_after_cuts_the_beginning() -> None:
    packets = clean().packets
    late = Impairments(start_after=0.5).apply(packets, 1, ByteSource(1))
    assert late == [p for p in packets if p[0] >= packets[0][0] + 0.5]
    assert not any(s.syn for s in segments(late))


def test_rates_out_of_range_are_refused() -> None:
    for bad in ({"loss": 1.5}, {"reorder": -0.1}, {"start_after": -1.0}):
        with pytest.raises(SimulationError):
            Impairments(**bad)  # type: ignore[arg-type]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    reorder=st.floats(min_value=0, max_value=0.5),
    duplicate=st.floats(min_value=0, max_value=0.5),
    segment=st.sampled_from([1, 7, 64, 1460]),
)
def test_reordered_duplicated_small_segments_decode_like_the_clean_capture(
    seed: int, reorder: float, duplicate: float, segment: int
) -> None:
    packets = clean(segment).packets
    impaired = Impairments(reorder=reorder, duplicate=duplicate).apply(packets, 1, ByteSource(seed))
    assert per_direction(dissect(impaired)) == per_direction(dissect(clean().packets))
