"""NDJSON lines from orjson are byte for byte what ``json.dumps`` wrote before.

The reference is the previous encoder: ``json.dumps(rec, ensure_ascii=False,
separators=(",", ":"))`` with U+0085, U+2028 and U+2029 escaped as ``\\uXXXX``.
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dissector.output.writers import NdjsonWriter, ndjson_line

_BREAKERS = re.compile("[\x85\u2028\u2029]")


def reference(rec: dict[str, Any]) -> str:
    line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
    return _BREAKERS.sub(lambda m: f"\\u{ord(m.group()):04x}", line) + "\n"


# Floats of every kind: tiny ones (orjson writes 1e-05 as 0.00001), huge, non-finite, -0.0.
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-3, max_value=1e-3),
    st.sampled_from([1e-05, 4.5e-05, 1e-07, 5e-324, 1e16, 1e300, -0.0, 0.0, 1700000000.0005]),
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20) | st.sampled_from(
    ["\u2028", "a\u2029b", "\x85", "\x00\x1f\x7f", "😀", "e-5 0.00001", "\\\"'"]
)
INTS = st.integers(min_value=-(2**70), max_value=2**70)
SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
# Payload-free parts of a message record (its coap object holds no floats).
NO_FLOATS = st.recursive(
    st.none() | st.booleans() | INTS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def message_records(draw: st.DrawFn) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "record": "message",
        "schema_version": 1,
        "session": draw(TEXT),
        "transport": "tcp",
        "direction": draw(st.sampled_from(["device->cloud", "cloud->device"])),
        "ts": draw(FLOATS),
        "device_id": draw(st.none() | TEXT),
        "length": draw(INTS),
        "kind": draw(TEXT),
        "coap": draw(NO_FLOATS),
    }
    if draw(st.booleans()):
        rec["decoded"] = draw(JSON)
    if draw(st.booleans()):
        rec["request"] = {"kind": draw(TEXT), "ts": draw(FLOATS), "mid": 1, "token": "0a"}
        rec["latency"] = draw(FLOATS)
    rec["retransmission"] = draw(st.booleans())
    return rec


@settings(max_examples=400, deadline=None)
@given(message_records())
@example(
    {"record": "message", "ts": 1e-05, "coap": None, "request": {"ts": 4.5e-05}, "latency": 1e-07}
)
def test_message_records_encode_as_before(rec: dict[str, Any]) -> None:
    assert ndjson_line(rec) == reference(rec)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(TEXT, JSON, max_size=6))
@example({"record": "finding", "details": {"x": float("nan"), "y": 2**65, "z": "\u2028"}})
@example({"record": "session", "hello": {"f": [1e-9, float("inf")]}})
def test_any_other_record_encodes_as_before(rec: dict[str, Any]) -> None:
    assert ndjson_line(rec) == reference(rec)


def test_records_orjson_cannot_encode_fall_back_to_json() -> None:
    for rec in (
        {"record": "message", "ts": 1.0, "decoded": {"big": 2**64}},
        {"record": "finding", "details": {1: "int key"}},
    ):
        assert ndjson_line(rec) == reference(rec)


def test_lone_surrogates_are_written_as_json_escapes() -> None:
    """Not UTF-8-encodable: the line carries the escape, which reads back the same."""
    rec = {"record": "message", "ts": 1.0, "decoded": {"s": "a\ud800b"}}
    line = ndjson_line(rec)
    assert "\\ud800" in line
    assert json.loads(line) == rec
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    writer = NdjsonWriter(out)
    writer.write(rec)
    writer.close()
    assert json.loads(out.buffer.getvalue()) == rec  # type: ignore[attr-defined]


def test_unserialisable_values_still_raise() -> None:
    for bad in ({"record": "x", "v": b"bytes"}, {"record": "x", "v": {1, 2}}):
        try:
            ndjson_line(bad)
        except TypeError:
            continue
        raise AssertionError(f"{bad!r} was serialised")


def test_writer_writes_one_line_per_record() -> None:
    out = io.StringIO()
    writer = NdjsonWriter(out)
    recs = [{"record": "message", "ts": 0.5, "x": "\u2028"}, {"record": "finding", "v": math.pi}]
    for rec in recs:
        writer.write(rec)
    writer.close()
    assert out.getvalue() == "".join(reference(r) for r in recs)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == recs


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_are_gathered_in_order_and_all_written_at_close() -> None:
    """Off a terminal, lines go out in batches; text in between keeps its place, and
    close() writes what is left: nothing lost, nothing reordered."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    writer = NdjsonWriter(out)
    recs = [{"record": "message", "ts": float(i), "pad": "x" * 300} for i in range(600)]
    for rec in recs[:300]:
        writer.write(rec)
    writer.write_text("-- a verbose block --\n")
    for rec in recs[300:]:
        writer.write(rec)
    written_before_close = len(out.buffer.getvalue())  # type: ignore[attr-defined]
    assert 0 < written_before_close < sum(len(reference(r)) for r in recs)  # batched
    writer.close()
    lines = out.buffer.getvalue().decode().splitlines()  # type: ignore[attr-defined]
    assert lines[300] == "-- a verbose block --"
    assert [json.loads(x) for x in lines[:300] + lines[301:]] == recs


def test_on_a_terminal_each_line_is_written_at_once() -> None:
    out = _Tty()
    writer = NdjsonWriter(out)
    writer.write({"record": "finding", "n": 1})
    assert out.getvalue() == '{"record":"finding","n":1}\n'
