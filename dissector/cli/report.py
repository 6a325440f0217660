"""``particle-dissect report``: a readable account of every session in a capture.

The output format follows the ``-o`` file's suffix (``.html``: one self-contained file,
``.md``, ``.json``, ``.txt``) or ``--format``; without ``-o`` a terminal summary is printed
(colour on a TTY only). Exit status as ``dissect``: 0 when the capture was read, 2 with a
one-line error for an unreadable capture or key file, an unknown output suffix or bad
usage. Nothing is written when reading fails.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

import click

from dissector.cli.common import colour_wanted, fail, key_options, os_error, port_options, progress
from dissector.keys import KeyRing

#: Output file suffix -> report format.
SUFFIXES = {
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".json": "json",
    ".txt": "text",
}
FORMATS = ("text", "markdown", "html", "json")


def format_for(output: str | None, fmt: str | None) -> str:
    """The report format: ``--format``, else the output file's suffix, else text."""
    if fmt is not None:
        return fmt
    if output is None:
        return "text"
    suffix = os.path.splitext(output)[1].lower()
    found = SUFFIXES.get(suffix)
    if found is None:
        fail(
            f"{output}: cannot tell the report format from the suffix "
            f"{suffix or '(none)'!r}: use .html, .md, .json or .txt, or --format"
        )
        raise AssertionError  # pragma: no cover - fail() exits
    return found


class _FirmwareSink:
    """Writes every completely reassembled firmware image into ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def __call__(self, transfer: Any, image: bytes) -> str:
        digest = (transfer.sha256 or "")[:12]
        safe_session = "".join(c if c.isalnum() or c in "-_" else "_" for c in transfer.session)
        name = f"{safe_session}-ota{transfer.index}-{digest}.bin"
        path = os.path.join(self.directory, name)
        with open(path, "wb") as fh:
            fh.write(image)
        return path


@click.command()
@click.argument("captures", nargs=-1, required=True)
@key_options
@port_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the report to FILE; the suffix picks the format (.html, .md, .json, .txt).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Report format (default: from the -o suffix, else a terminal summary).",
)
@click.option(
    "--redact",
    is_flag=True,
    help="Replace device IDs, IP addresses and key fingerprints with stable pseudonyms.",
)
@click.option(
    "--extract-firmware",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Write every completely reassembled firmware image into DIR.",
)
def report(
    captures: tuple[str, ...],
    keyring: KeyRing,
    write_keylog: str | None,
    ports: tuple[int, ...],
    udp_ports: tuple[int, ...],
    output: str | None,
    fmt: str | None,
    redact: bool,
    extract_firmware: str | None,
) -> None:
    """Summarise CAPTURES: devices, sessions, handshakes, traffic, OTA, latency, findings.

    Several captures, '-' for stdin and .gz files are read as one time-ordered capture.
    """
    from dissector.capture.reader import CaptureFormatError
    from dissector.keys import KeyLogWriter
    from dissector.pipeline import DEFAULT_TCP_PORTS
    from dissector.protocol.events import SessionKeys
    from dissector.report.build import run_report
    from dissector.udp_flows import DEFAULT_UDP_PORTS

    kind = format_for(output, fmt)
    keylog_writer = None
    try:
        sink = _FirmwareSink(extract_firmware) if extract_firmware else None
        keylog_writer = KeyLogWriter(write_keylog) if write_keylog else None
    except OSError as exc:
        fail(os_error(exc))

    def on_event(event: Any) -> None:
        if keylog_writer is not None and isinstance(event, SessionKeys):
            if event.label == "PARTICLE_TCP":
                keylog_writer.write_tcp_session(event.lookup, event.secret)
            else:
                keylog_writer.write_nss(event.label, event.lookup, event.secret)

    skipped = getattr(keyring, "skipped", None) or []
    notes = []
    if skipped:
        names = ", ".join(str(getattr(s, "path", s)) for s in skipped[:10])
        more = f" (+{len(skipped) - 10} more)" if len(skipped) > 10 else ""
        notes.append(f"{len(skipped)} files under --keys were not keys: {names}{more}")
    try:
        result = run_report(
            list(captures),
            keyring,
            tcp_ports=ports or DEFAULT_TCP_PORTS,
            udp_ports=udp_ports or DEFAULT_UDP_PORTS,
            redact=redact,
            image_sink=sink,
            progress=progress if sys.stderr.isatty() else None,
            on_event=on_event,
            notes=notes,
        )
    except CaptureFormatError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error(exc))
    finally:
        if keylog_writer is not None:
            keylog_writer.close()
    text = render(result, kind, colour=output is None and colour_wanted(sys.stdout))
    try:
        if output:
            with open(output, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        else:
            out: TextIO = sys.stdout
            out.write(text)
            out.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except OSError as exc:
        fail(os_error(exc))


def render(result: Any, kind: str, *, colour: bool = False) -> str:
    """The report rendered as ``kind`` (text, markdown, html, json)."""
    if kind == "html":
        from dissector.report.render_html import render_html

        return render_html(result)
    if kind == "markdown":
        from dissector.report.render_markdown import render_markdown

        return render_markdown(result)
    if kind == "json":
        from dissector.report.render_json import render_json

        return render_json(result)
    from dissector.report.render_text import render_text

    return render_text(result, colour=colour)


__all__ = ["FORMATS", "SUFFIXES", "format_for", "render", "report"]
