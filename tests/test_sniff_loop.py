"""The live loop without a network: a scripted packet source drives :class:`Sniffer`.

Covers the limits (count, duration), stop requests arriving mid-capture, key reloads that
apply to new sessions only, a capture error that still closes every session, and the
line-by-line output writers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from dissector.capture.packets import RawPacket
from dissector.capture.reader import CaptureReader
from dissector.capture.writer import build_udp_frame
from dissector.keys import KeyRing
from dissector.live import (
    LiveCaptureError,
    LiveNdjsonWriter,
    LiveTableWriter,
    Sniffer,
    default_bpf,
    swap_keyring,
)
from dissector.output.records import to_record
from dissector.pipeline import Dissector, PipelineEvent
from tests.helpers import BREWSKEY, SPARK, TCP_KEYS, comparable, expected_messages, ring_with


def packets_of(*bases: object) -> list[RawPacket]:
    out = []
    for base in bases:
        out += [p for p in CaptureReader([f"{base}.pcap"]) if isinstance(p, RawPacket)]
    return out


class Script:
    """A packet source that hands out fixed batches, then nothing; ``on_read`` runs before
    every read (to send 'signals' or fail)."""

    def __init__(self, packets: list[RawPacket], batch: int = 7) -> None:
        self.batches = [packets[i : i + batch] for i in range(0, len(packets), batch)]
        self.reads = 0
        self.on_read: Callable[[int], None] = lambda _n: None

    def read(self, timeout: float) -> list[RawPacket]:
        self.reads += 1
        self.on_read(self.reads)
        return self.batches.pop(0) if self.batches else []


class Records:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, event: PipelineEvent) -> None:
        rec = to_record(event)
        if rec is not None:
            self.items.append(rec)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.items if r["record"] == kind]


def test_a_whole_capture_decodes_as_dissect_does() -> None:
    source = Script(packets_of(SPARK))
    sniffer = Sniffer(source, Dissector(ring_with(TCP_KEYS)))
    source.on_read = lambda n: sniffer.request_stop() if not source.batches else None
    out = Records()
    stats = sniffer.run(out)
    assert [comparable(m) for m in out.of("message")] == [
        comparable(m) for m in expected_messages(SPARK)
    ]
    assert stats.stopped_by == "signal"
    assert stats.packets == len(packets_of(SPARK))
    assert len(out.of("session")) == 1


def test_count_stops_mid_batch_and_still_closes_the_session() -> None:
    sniffer = Sniffer(Script(packets_of(SPARK)), Dissector(ring_with(TCP_KEYS)), count=10)
    out = Records()
    stats = sniffer.run(out)
    assert (stats.packets, stats.stopped_by) == (10, "count")
    sessions = out.of("session")
    assert len(sessions) == 1 and sessions[0]["session"] == "tcp-1"


def test_duration_is_measured_on_the_clock() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.25
        return now[0]

    source = Script([])
    stats = Sniffer(source, Dissector(KeyRing()), duration=2.0, clock=clock).run(Records())
    assert stats.stopped_by == "duration"
    assert 2 <= source.reads <= 8


def test_a_stop_request_still_reads_what_is_already_queued() -> None:
    """Ctrl-C loses nothing that arrived before it: the queued batches are read first."""
    spark = packets_of(SPARK)
    source = Script(spark, batch=5)
    sniffer = Sniffer(source, Dissector(ring_with(TCP_KEYS)))
    source.on_read = lambda n: sniffer.request_stop("SIGTERM") if n == 3 else None
    out = Records()
    stats = sniffer.run(out)
    assert stats.stopped_by == "SIGTERM"
    assert stats.packets == len(spark)
    assert len(out.of("message")) == len(expected_messages(SPARK))


def test_draining_after_a_stop_is_bounded_in_time() -> None:
    """A link that never goes quiet cannot keep a stopped capture running."""
    now = [0.0]

    def clock() -> float:
        now[0] += 0.1
        return now[0]

    noise = RawPacket(0.0, 1, build_udp_frame(1, "10.0.0.1", 1, "10.0.0.2", 9, b"x"), 43, 0, "")

    class Endless:
        reads = 0

        def read(self, timeout: float) -> list[RawPacket]:
            self.reads += 1
            return [noise]

    source = Endless()
    sniffer = Sniffer(source, Dissector(KeyRing()), drain=1.0, clock=clock)
    sniffer.request_stop()
    stats = sniffer.run(Records())
    assert stats.stopped_by == "signal"
    assert 1 <= source.reads <= 10


def test_reload_gives_new_sessions_the_new_keys_only() -> None:
    """Spark's session starts without keys; after the reload, Brewskey's is decrypted."""
    spark, brewskey = packets_of(SPARK), packets_of(BREWSKEY)
    source = Script(spark + brewskey, batch=len(spark))
    dissector = Dissector(KeyRing())
    sniffer = Sniffer(source, dissector)
    loaded: list[KeyRing] = []

    def on_read(n: int) -> None:
        if n == 1:  # like a SIGHUP while Spark's packets arrive: applied before the next read
            sniffer.request_reload()
        if n == 4:
            sniffer.request_stop()

    def reload() -> None:
        ring = ring_with(TCP_KEYS)
        loaded.append(ring)
        swap_keyring(dissector, ring)

    source.on_read = on_read
    out = Records()
    stats = sniffer.run(out, reload)
    assert stats.reloads == 1 and len(loaded) == 1
    assert dissector.keyring is loaded[0] and dissector.dtls.keyring is loaded[0]
    first = [m for m in out.of("message") if m["session"] == "tcp-1"]
    second = [m for m in out.of("message") if m["session"] == "tcp-2"]
    assert first and all(m["coap"] is None for m in first)
    assert [comparable(m) for m in second] == [comparable(m) for m in expected_messages(BREWSKEY)]


def test_a_capture_error_still_finishes_every_session() -> None:
    source = Script(packets_of(SPARK), batch=20)

    def fail(n: int) -> None:
        if n == 3:
            raise LiveCaptureError("capture on eth9 failed: network is down", "io")

    source.on_read = fail
    out = Records()
    stats = Sniffer(source, Dissector(ring_with(TCP_KEYS))).run(out)
    assert stats.stopped_by == "error"
    assert stats.error is not None and "network is down" in str(stats.error)
    assert stats.packets == 40
    assert len(out.of("session")) == 1


def test_default_bpf_names_every_cloud_port() -> None:
    assert default_bpf({5683}, {5684}) == "tcp port 5683 or udp port 5684"
    assert default_bpf([7000, 5683], [5684]) == "tcp port 5683 or tcp port 7000 or udp port 5684"


def _sample_records() -> list[dict[str, Any]]:
    out = Records()
    source = Script(packets_of(SPARK), batch=1000)
    sniffer = Sniffer(source, Dissector(ring_with(TCP_KEYS)))
    source.on_read = lambda n: sniffer.request_stop() if n > 1 else None
    sniffer.run(out)
    return out.items


class CountingFlush(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_ndjson_writer_flushes_every_record() -> None:
    records = _sample_records()
    buf = CountingFlush()
    writer = LiveNdjsonWriter(buf)
    for rec in records:
        writer.write(rec)
    assert buf.flushes == len(records)
    assert [json.loads(line) for line in buf.getvalue().splitlines()] == records


def test_table_writer_streams_lines_and_ends_with_sessions() -> None:
    records = _sample_records()
    buf = CountingFlush()
    writer = LiveTableWriter(buf)
    for rec in records:
        writer.write(rec)
    streamed = buf.getvalue().splitlines()
    writer.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].split()[:4] == ["time", "session", "dir", "kind"]
    non_session = [r for r in records if r["record"] != "session"]
    assert len(streamed) == 1 + len(non_session)
    assert buf.flushes >= len(non_session)
    hello = next(ln for ln in streamed if " Hello " in ln and "D->C" in ln)
    assert "/h" in hello and "NON" in hello and "0.02" in hello
    assert any("WARNING coap.ack_mid_mismatch" in ln for ln in streamed)
    assert "== Sessions (1)" in lines
    assert any("5190c68b84cc2643c6b052a7" in ln and "established" in ln for ln in lines)


def test_table_writer_prints_the_report_text_when_given() -> None:
    buf = io.StringIO()
    writer = LiveTableWriter(buf)
    writer.close("REPORT\n")
    assert buf.getvalue() == "\nREPORT\n"


def test_table_writer_escapes_hostile_device_strings() -> None:
    buf = io.StringIO()
    rec = {
        "record": "message",
        "session": "tcp-1",
        "direction": "device->cloud",
        "ts": 0.0,
        "kind": "PrivateEvent",
        "coap": {"type": "NON", "code": "0.02", "mid": 1, "token": "", "uri": "/E/\x1b[2Jx",
                 "payload": ""},
        "decoded": {"name": "\x1b[31mred"},
    }  # fmt: skip
    LiveTableWriter(buf).write(rec)
    assert "\x1b" not in buf.getvalue()
    assert "\\x1b" in buf.getvalue()
