"""``particle-dissect export``: decrypted CoAP messages as a capture Wireshark can read."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import IO, Any

import click

from dissector.cli.common import fail, key_options, os_error, port_options
from dissector.keys import KeyRing


@click.command()
@click.argument("captures", nargs=-1, required=True)
@key_options
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="The capture to write ('-' for stdout): pcapng, or pcap when FILE ends in .pcap.",
)
@click.option(
    "--encap",
    type=click.Choice(["pdu", "udp"]),
    default="pdu",
    show_default=True,
    help="pdu: Wireshark 'exported PDU' packets (link type 252) handed to its CoAP "
    "dissector, real ports kept; udp: synthesized IP/UDP packets, the cloud on port 5683.",
)
@port_options
def export(
    captures: tuple[str, ...],
    keyring: KeyRing,
    write_keylog: str | None,
    output: str,
    encap: str,
    ports: tuple[int, ...],
    udp_ports: tuple[int, ...],
) -> None:
    """Write the decrypted CoAP messages of CAPTURES as packets for Wireshark.

    One packet per decoded CoAP message (empty ACKs and pings included), in the order
    `dissect` shows them, with their capture time and addresses, and nothing else: open
    the file in Wireshark and its CoAP dissector shows the messages. Messages that could
    not be decrypted are left out and counted on stderr. --write-keylog also writes NSS
    CLIENT_RANDOM lines for DTLS sessions, which Wireshark reads (TLS protocol settings,
    "(Pre)-Master-Secret log filename") to decrypt the original capture itself.
    """
    from dissector.capture.reader import CaptureFormatError, CaptureReader
    from dissector.export import CoapPacketWriter, ExportStats, export_events
    from dissector.keys import KeyLogWriter
    from dissector.pipeline import DEFAULT_TCP_PORTS, Dissector
    from dissector.udp_flows import DEFAULT_UDP_PORTS

    try:
        reader = CaptureReader(list(captures))
    except CaptureFormatError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error(exc))
    to_stdout = output == "-"
    fmt = "pcap" if output.lower().endswith(".pcap") else "pcapng"
    out: IO[bytes]
    try:
        out = sys.stdout.buffer if to_stdout else open(output, "wb")  # noqa: SIM115
        keylog = KeyLogWriter(write_keylog) if write_keylog else None
    except OSError as exc:
        fail(os_error(exc))
    dissector = Dissector(
        keyring, tcp_ports=ports or DEFAULT_TCP_PORTS, udp_ports=udp_ports or DEFAULT_UDP_PORTS
    )
    dissector.use_capture_secrets(reader)
    stats = ExportStats()
    ok = False
    try:
        writer = CoapPacketWriter(out, fmt=fmt, encap=encap)
        export_events(dissector.run(iter(reader)), writer, keylog=keylog, stats=stats)
        writer.flush()
        ok = True
    except CaptureFormatError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error(exc))
    finally:
        if keylog is not None:
            keylog.close()
        if not to_stdout:
            out.close()
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(output)
    _summary(stats, "stdout" if to_stdout else output, keyring)


def _summary(stats: Any, target: str, ring: KeyRing) -> None:
    sessions = f"{stats.sessions} session" + ("" if stats.sessions == 1 else "s")
    click.echo(f"exported {stats.exported} CoAP messages from {sessions} to {target}", err=True)
    left_out = sum(stats.not_decoded.values())
    if left_out:
        reasons = "; ".join(f"{n} × {why}" for why, n in stats.not_decoded.most_common(5))
        click.echo(
            f"warning: {left_out} messages could not be decrypted and are not in the export "
            f"({reasons}); `particle-dissect dissect` says which key is missing",
            err=True,
        )
    for why, n in stats.not_written.most_common():
        click.echo(f"warning: {n} messages not written: {why}", err=True)
    if stats.key_lines:
        click.echo(f"wrote {stats.key_lines} key log lines", err=True)
    skipped = getattr(ring, "skipped", None)
    if skipped:
        click.echo(f"note: {len(skipped)} files under --keys were not keys", err=True)
