"""Run captures through the pipeline into a report: the one-call entry point."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO

from dissector.capture.packets import RawPacket
from dissector.capture.reader import CaptureFileStats, CaptureReader
from dissector.keys import KeyRing
from dissector.model import Finding
from dissector.pipeline import DEFAULT_TCP_PORTS, Dissector, PipelineEvent
from dissector.report.collector import ReportCollector
from dissector.report.discovery import CaptureTap
from dissector.report.model import CaptureFile, CaptureSummary, Report
from dissector.report.ota import ImageSink
from dissector.report.redact import redact_report
from dissector.udp_flows import DEFAULT_UDP_PORTS

#: pcap link-type numbers -> names.
LINKTYPE_NAMES = {
    0: "BSD loopback (NULL)",
    1: "Ethernet",
    12: "raw IP",
    14: "raw IP",
    101: "raw IP",
    108: "OpenBSD loopback",
    113: "Linux cooked (SLL)",
    228: "raw IPv4",
    229: "raw IPv6",
    276: "Linux cooked v2 (SLL2)",
}


def linktype_name(linktype: int) -> str:
    """``Ethernet (1)`` style name of a link type."""
    name = LINKTYPE_NAMES.get(linktype)
    return f"{name} ({linktype})" if name else f"link type {linktype}"


def capture_file(stats: CaptureFileStats) -> CaptureFile:
    """The model's view of one file's reader statistics."""
    return CaptureFile(
        name=stats.name,
        size=stats.size,
        format=stats.format,
        compressed=stats.compressed,
        linktypes=[linktype_name(t) for t in dict.fromkeys(stats.linktypes)],
        packets=stats.packets,
        first_ts=stats.first_ts,
        last_ts=stats.last_ts,
        truncated=stats.truncated,
        corrupt=stats.corrupt,
    )


def capture_summary(reader: CaptureReader, dissector: Dissector) -> CaptureSummary:
    """Files, packets and time span of a capture that has been read."""
    summary = CaptureSummary(files=[capture_file(s) for s in reader.stats])
    summary.packets = dissector.packets
    summary.first_ts = dissector.first_ts
    summary.last_ts = dissector.last_ts
    if summary.first_ts is not None and summary.last_ts is not None:
        summary.duration = summary.last_ts - summary.first_ts
    link = dissector.link.stats
    summary.tcp_packets = link.tcp
    summary.udp_packets = link.udp
    summary.undecoded_packets = max(0, summary.packets - link.tcp - link.udp)
    return summary


def run_report(
    captures: Sequence[str | os.PathLike[str] | BinaryIO],
    keyring: KeyRing,
    *,
    tcp_ports: Iterable[int] = DEFAULT_TCP_PORTS,
    udp_ports: Iterable[int] = DEFAULT_UDP_PORTS,
    redact: bool = False,
    image_sink: ImageSink | None = None,
    progress: Callable[[Iterator[Any]], Iterator[Any]] | None = None,
    on_event: Callable[[PipelineEvent], None] | None = None,
    notes: Iterable[str] = (),
) -> Report:
    """Read ``captures`` (one time-ordered capture), dissect them with ``keyring`` and
    return the report. ``progress`` may wrap the packet iterator (e.g. to show a count);
    ``on_event`` sees every pipeline event too (e.g. to write a key log). Raises
    :class:`~dissector.capture.reader.CaptureFormatError` for a source that is not a
    capture, ``OSError`` when reading fails."""
    udp = frozenset(udp_ports)
    reader = CaptureReader(list(captures))
    try:
        tap = CaptureTap(udp)
        dissector = Dissector(keyring, tcp_ports=tcp_ports, udp_ports=udp)
        dissector.use_capture_secrets(reader)
        collector = ReportCollector(tap=tap, image_sink=image_sink)
        items: Iterator[RawPacket | Finding] = tap.wrap(reader)
        if progress is not None:
            items = progress(items)
        for event in dissector.run(items):
            collector.feed(event)
            if on_event is not None:
                on_event(event)
        summary = capture_summary(reader, dissector)
    finally:
        reader.close()
    summary.notes.extend(notes)
    report = collector.finish(summary)
    return redact_report(report) if redact else report


__all__ = ["capture_file", "capture_summary", "linktype_name", "run_report"]
