"""``particle-dissect sniff``: capture live and print Particle messages as they complete."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from dissector.cli.common import (
    EXIT_ERROR,
    colour_wanted,
    fail,
    key_options,
    os_error,
    port_options,
)
from dissector.keys import KeyRing

_KEY_PARAMS = ("keys", "server_keys", "device_keys", "keylogs", "session_blobs")


@click.command()
@click.option(
    "-i", "--interface", "iface", required=True, metavar="IFACE", help="Interface to capture on."
)
@key_options
@click.option(
    "--bpf",
    metavar="EXPR",
    help="Capture filter (libpcap syntax). Default: the cloud ports, "
    "'tcp port 5683 or udp port 5684'.",
)
@port_options
@click.option(
    "-w",
    "--write",
    "write_path",
    metavar="FILE",
    help="Also keep the raw packets in FILE (pcap; pcapng if FILE ends in .pcapng).",
)
@click.option(
    "--rotate-size",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MB",
    help="With --write: start a new file (FILE.1.pcap, FILE.2.pcap, …) after MB megabytes.",
)
@click.option(
    "--rotate-count",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --rotate-size: keep only the newest N files.",
)
@click.option(
    "-c",
    "--count",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop after N captured packets.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Stop after S seconds.",
)
@click.option("--device", "device_filter", metavar="ID", help="Only records of this device ID.")
@click.option(
    "--kind", "kinds", multiple=True, metavar="K", help="Only messages of this kind (repeatable)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "ndjson"]),
    default="table",
    show_default=True,
)
def sniff(
    iface: str,
    keyring: KeyRing,
    write_keylog: str | None,
    bpf: str | None,
    ports: tuple[int, ...],
    udp_ports: tuple[int, ...],
    write_path: str | None,
    rotate_size: float | None,
    rotate_count: int | None,
    count: int | None,
    duration: float | None,
    device_filter: str | None,
    kinds: tuple[str, ...],
    fmt: str,
) -> None:
    """Capture on IFACE and print every Particle message as it completes.

    Both transports: TCP (port 5683) and DTLS (UDP 5684). Ends on Ctrl-C or SIGTERM, or
    at --count / --duration, then closes every session and prints the session summary
    (with --format ndjson: the `session` records; stdout then holds records only, human
    text goes to stderr). SIGHUP reloads the key files: sessions that start afterwards use
    the new keys. Needs root (or CAP_NET_RAW) on Linux.
    """
    from dissector.live import (
        LiveCapture,
        LiveCaptureError,
        LiveNdjsonWriter,
        LiveTableWriter,
        RotatingCaptureWriter,
        Sniffer,
        default_bpf,
        swap_keyring,
    )
    from dissector.output.filters import RecordFilter
    from dissector.pipeline import DEFAULT_TCP_PORTS, Dissector
    from dissector.udp_flows import DEFAULT_UDP_PORTS

    if (rotate_size or rotate_count) and not write_path:
        fail("--rotate-size and --rotate-count need --write FILE")
    if rotate_count and not rotate_size:
        fail("--rotate-count needs --rotate-size")
    key_params = {k: click.get_current_context().params.get(k, ()) for k in _KEY_PARAMS}
    tcp = frozenset(ports or DEFAULT_TCP_PORTS)
    udp = frozenset(udp_ports or DEFAULT_UDP_PORTS)
    bpf = bpf if bpf is not None else default_bpf(tcp, udp)

    try:
        capture = LiveCapture(iface, bpf)
    except LiveCaptureError as exc:
        fail(str(exc))
    try:
        files = (
            RotatingCaptureWriter(
                write_path,
                capture.linktype,
                interface=iface,
                max_bytes=int(rotate_size * 1_000_000) if rotate_size else None,
                max_files=rotate_count,
            )
            if write_path
            else None
        )
        keylog = _keylog_writer(write_keylog)
    except OSError as exc:
        capture.close()
        fail(os_error(exc))

    out = sys.stdout
    writer: Any = (
        LiveTableWriter(out, colour=colour_wanted(out)) if fmt == "table" else LiveNdjsonWriter(out)
    )
    collector = _report_collector() if fmt == "table" else None
    dissector = Dissector(keyring, tcp_ports=tcp, udp_ports=udp)
    sniffer = Sniffer(capture, dissector, count=count, duration=duration, writer=files)
    emit = _Emitter(writer, RecordFilter(device=device_filter, kinds=kinds), keylog, collector)
    counters = emit.counters

    def reload() -> None:
        ring, error = _load_keyring(key_params)
        if ring is None:
            _say(f"key reload failed: {error}; keeping the previous keys")
            return
        swap_keyring(dissector, ring)
        _say(f"keys reloaded: {len(ring)} keys; sessions that start from now on use them")

    previous = _install_signals(sniffer)
    _say(
        f"listening on {iface} (link type {capture.linktype}), filter {bpf!r}, "
        f"{len(keyring)} keys; Ctrl-C to stop"
    )
    try:
        stats = sniffer.run(emit, reload)
        if fmt == "table":
            writer.close(_report_text(collector, capture, dissector, colour_wanted(out)))
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: leave at once
        _say("interrupted")
        sys.exit(130)
    finally:
        _restore_signals(previous)
        capture.close()
        if files is not None:
            files.close()
        if keylog is not None:
            keylog.close()
    counts = capture.counts  # final: close() read the kernel's drop counter one last time
    drops = counts.kernel_drops
    dup = f"{counts.duplicates} loopback duplicates dropped, " if capture.loopback else ""
    _say(
        f"captured {stats.packets} packets on {iface} in {stats.seconds:.1f} s "
        f"({dup}{drops} dropped by the kernel): {counters['message']} messages, "
        f"{counters['session']} sessions; stopped by {stats.stopped_by}"
    )
    if files is not None:
        names = ", ".join(str(p) for p in files.files)
        _say(f"wrote {files.packets} packets to {names}")
    if stats.error is not None:
        click.echo(f"particle-dissect: error: {stats.error}", err=True)
        sys.exit(EXIT_ERROR)


def _say(text: str) -> None:
    click.echo(text, err=True)


class _Emitter:
    """Pipeline event → key log line, report collector, filtered record output."""

    def __init__(self, writer: Any, keep: Any, keylog: Any, collector: Any) -> None:
        from dissector.export import write_session_keys
        from dissector.output.records import to_record
        from dissector.protocol.events import SessionKeys

        self.writer = writer
        self.keep = keep
        self.keylog = keylog
        self.collector = collector
        self.counters = {"message": 0, "session": 0, "handshake": 0, "finding": 0}
        self._to_record = to_record
        self._keys_type = SessionKeys
        self._write_keys = write_session_keys

    def __call__(self, event: Any) -> None:
        if self.collector is not None:
            self.collector.feed(event)
        if isinstance(event, self._keys_type):
            if self.keylog is not None:
                self._write_keys(self.keylog, event)
            return
        rec = self._to_record(event)
        if rec is None:
            return
        self.counters[rec["record"]] += 1
        if self.keep(rec):
            self.writer.write(rec)


def _keylog_writer(path: str | None) -> Any:
    if not path:
        return None
    from dissector.keys import KeyLogWriter

    return KeyLogWriter(path)


def _load_keyring(params: dict[str, Any]) -> tuple[KeyRing | None, str]:
    """A fresh ring from the command line's key options, or None and why it failed."""
    from dissector.keys import KeyFileError

    ring = KeyRing()
    roles: tuple[tuple[str, str | None], ...] = (
        ("keys", None),
        ("server_keys", "server"),
        ("device_keys", "device"),
        ("keylogs", "keylog"),
        ("session_blobs", "session"),
    )
    try:
        for param, role in roles:
            for path in params.get(param) or ():
                if role is None and not os.path.exists(path):
                    raise KeyFileError(f"{path}: no such file or directory")
                ring.load(path, role=role)
    except (KeyFileError, OSError) as exc:
        return None, str(exc)
    return ring, ""


def _install_signals(sniffer: Any) -> dict[int, Any]:
    """SIGINT/SIGTERM stop the capture cleanly (a second Ctrl-C interrupts at once);
    SIGHUP reloads the keys. Returns the previous handlers."""
    previous: dict[int, Any] = {}

    def stop(signum: int, _frame: Any) -> None:
        sniffer.request_stop("SIGINT" if signum == signal.SIGINT else "SIGTERM")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def hup(_signum: int, _frame: Any) -> None:
        sniffer.request_reload()

    for signum, handler in ((signal.SIGINT, stop), (signal.SIGTERM, stop), (signal.SIGHUP, hup)):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread (embedded use): no signal handling
            break
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _report_collector() -> Any:
    try:
        from dissector.report import ReportCollector
    except ImportError:  # pragma: no cover - the report package is optional here
        return None
    return ReportCollector()


def _report_text(collector: Any, capture: Any, dissector: Any, colour: bool) -> str | None:
    """The session report of the capture (table format), or None without a collector."""
    if collector is None:
        return None
    from dissector.report import render_text
    from dissector.report.build import linktype_name
    from dissector.report.model import CaptureFile, CaptureSummary

    summary = CaptureSummary(
        files=[
            CaptureFile(
                name=f"live capture on {capture.iface}",
                size=None,
                format="live",
                compressed=False,
                linktypes=[linktype_name(capture.linktype)],
                packets=dissector.packets,
                first_ts=dissector.first_ts,
                last_ts=dissector.last_ts,
                truncated=False,
                corrupt=False,
            )
        ],
        packets=dissector.packets,
        first_ts=dissector.first_ts,
        last_ts=dissector.last_ts,
    )
    if summary.first_ts is not None and summary.last_ts is not None:
        summary.duration = summary.last_ts - summary.first_ts
    link = dissector.link.stats
    summary.tcp_packets = link.tcp
    summary.udp_packets = link.udp
    summary.undecoded_packets = max(0, summary.packets - link.tcp - link.udp)
    drops = capture.kernel_drops()
    if drops:
        summary.notes.append(f"the kernel dropped {drops} packets: some sessions have gaps")
    text: str = render_text(collector.finish(summary), colour=colour)
    return text
