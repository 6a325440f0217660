"""The ``particle-dissect`` command line.

Exit status: 0 when the capture was read (findings are output, not failures); 2 with
a one-line error for an unreadable capture or key file, or bad usage; 1 with
``--fail-on SEVERITY`` when findings of at least that severity occurred.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, ClassVar, TextIO

import click

from dissector import __version__
from dissector.cli.common import (
    EXIT_FINDINGS,
    colour_wanted,
    fail,
    key_options,
    os_error,
    port_options,
    progress,
)
from dissector.keys import KeyRing
from dissector.model import Severity


class _LazyGroup(click.Group):
    """A group whose other commands are imported only when used: ``dissect`` starts
    without loading the simulator, report, sniff and export code."""

    #: command name -> (module, attribute)
    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "sniff": ("dissector.cli.sniff", "sniff"),
        "export": ("dissector.cli.export", "export"),
        "report": ("dissector.cli.report", "report"),
        "simulate": ("dissector.cli.simulate", "simulate"),
        "keys": ("dissector.cli.keys", "keys"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, attr = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="particle-dissect")
def main() -> None:
    """See inside Particle (Spark) device-to-cloud traffic."""


@main.command()
@click.argument("captures", nargs=-1, required=True)
@key_options
@port_options
@click.option("--device", "device_filter", metavar="ID", help="Only records of this device ID.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    metavar="K",
    help="Only messages of this kind (repeatable, e.g. Hello, PrivateEvent).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "ndjson", "csv", "markdown"]),
    default="table",
    show_default=True,
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Print each message's full layer tree as Scapy's Packet.show() does.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["info", "warning", "error"]),
    help="Exit 1 when findings of at least this severity occurred.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write records to FILE instead of stdout.",
)
def dissect(
    captures: tuple[str, ...],
    keyring: KeyRing,
    write_keylog: str | None,
    ports: tuple[int, ...],
    udp_ports: tuple[int, ...],
    device_filter: str | None,
    kinds: tuple[str, ...],
    fmt: str,
    verbose: bool,
    fail_on: str | None,
    output: str | None,
) -> None:
    """Decode (and with keys, decrypt) every Particle message in CAPTURES.

    Several captures, '-' for stdin and .gz files are read as one time-ordered capture.
    """
    from dissector.capture.reader import CaptureFormatError, CaptureReader
    from dissector.keys import KeyLogWriter
    from dissector.output.filters import RecordFilter
    from dissector.output.records import to_record
    from dissector.output.writers import make_writer
    from dissector.pipeline import DEFAULT_TCP_PORTS, Dissector
    from dissector.protocol.events import SessionKeys
    from dissector.udp_flows import DEFAULT_UDP_PORTS

    ring = keyring
    # Open every input before writing anything: a fatal error leaves stdout empty.
    try:
        reader = CaptureReader(list(captures))
    except CaptureFormatError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error(exc))
    try:
        out: TextIO = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
        keylog_writer = KeyLogWriter(write_keylog) if write_keylog else None
    except OSError as exc:
        fail(os_error(exc))
    writer = make_writer(fmt, out, colour=colour_wanted(out))
    dissector = Dissector(
        ring, tcp_ports=ports or DEFAULT_TCP_PORTS, udp_ports=udp_ports or DEFAULT_UDP_PORTS
    )
    dissector.use_capture_secrets(reader)
    # No --device/--kind: every record is kept (skip the per-record filter call).
    keep = RecordFilter(device=device_filter, kinds=kinds) if device_filter or kinds else None
    threshold = Severity(fail_on).rank if fail_on else None
    tripped = False
    try:
        items = progress(iter(reader)) if sys.stderr.isatty() and fmt != "table" else reader
        for event in dissector.run(items):
            if isinstance(event, SessionKeys):
                if keylog_writer is not None:
                    if event.label == "PARTICLE_TCP":
                        keylog_writer.write_tcp_session(event.lookup, event.secret)
                    else:
                        keylog_writer.write_nss(event.label, event.lookup, event.secret)
                continue
            rec = to_record(event)
            if rec is None:
                continue
            if (
                threshold is not None
                and rec["record"] == "finding"
                and Severity(rec["severity"]).rank >= threshold
            ):
                tripped = True  # any finding of the capture, whatever the filters show
            if keep is not None and not keep(rec):
                continue
            if verbose and rec["record"] in ("message", "handshake"):
                writer.write_text(_verbose_block(rec, event))
                continue
            writer.write(rec)
        writer.close()
        _note_skipped(ring)
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_FINDINGS)
    except CaptureFormatError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error(exc))
    finally:
        # Lines gathered before a fatal error are still written (they were decoded).
        with contextlib.suppress(OSError, ValueError):
            writer.flush()
        if keylog_writer is not None:
            keylog_writer.close()
        if output:
            out.close()
    if tripped:
        sys.exit(EXIT_FINDINGS)


def _verbose_block(rec: dict[str, Any], event: Any) -> str:
    """One message for ``--verbose``: a summary line, then Scapy's ``show()`` tree."""
    from dissector.output.writers import summary_of
    from dissector.scapy import show_message  # imports Scapy: only on this path

    kind = rec.get("kind") or f"handshake:{rec.get('step')}"
    head = f"{rec['ts']:.6f} {rec['session']} {rec['direction']} {kind}: {summary_of(rec)}"
    tree = show_message(event)
    return f"{head}\n{tree}\n" if tree else f"{head}\n\n"


def _note_skipped(ring: Any) -> None:
    skipped = getattr(ring, "skipped", None)
    if skipped:
        names = ", ".join(str(getattr(s, "path", s)) for s in skipped[:10])
        more = f" (+{len(skipped) - 10} more)" if len(skipped) > 10 else ""
        click.echo(
            f"note: {len(skipped)} files under --keys were not keys: {names}{more}", err=True
        )


if __name__ == "__main__":  # pragma: no cover
    main()
