"""Pieces every ``particle-dissect`` command shares: key options, errors, colour."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import click

from dissector.keys import KeyRing

EXIT_FINDINGS = 1
EXIT_ERROR = 2


def fail(message: str) -> None:
    click.echo(f"particle-dissect: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def colour_wanted(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def build_keyring(
    keys: tuple[str, ...],
    server_keys: tuple[str, ...],
    device_keys: tuple[str, ...],
    keylogs: tuple[str, ...],
    session_blobs: tuple[str, ...] = (),
) -> KeyRing:
    """Load every key source named on the command line into a fresh KeyRing."""
    from dissector.keys import KeyFileError

    ring = KeyRing()
    try:
        for path in keys:
            if not os.path.exists(path):
                raise KeyFileError(f"{path}: no such file or directory")
            ring.load(path)
        for path in server_keys:
            ring.load(path, role="server")
        for path in device_keys:
            ring.load(path, role="device")
        for path in keylogs:
            ring.load(path, role="keylog")
        for path in session_blobs:
            ring.load(path, role="session")
    except KeyFileError as exc:
        fail(str(exc))
    return ring


def key_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The key flags of every command: --keys, --server-key, --device-key, --keylog,
    --session-blob. The wrapped command receives a ready ``keyring`` argument instead."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["keyring"] = build_keyring(
            kwargs.pop("keys"),
            kwargs.pop("server_keys"),
            kwargs.pop("device_keys"),
            kwargs.pop("keylogs"),
            kwargs.pop("session_blobs"),
        )
        return func(*args, **kwargs)

    decorated: Callable[..., Any] = wrapper
    decorated = click.option(
        "--write-keylog",
        metavar="FILE",
        help="Write a key log line (PARTICLE_TCP, NSS CLIENT_RANDOM) for every session whose "
        "secrets were recovered.",
    )(decorated)
    decorated = click.option(
        "--session-blob",
        "session_blobs",
        multiple=True,
        metavar="FILE",
        help="A device's persisted DTLS session (binary SessionPersistData or its text form).",
    )(decorated)
    decorated = click.option(
        "--keylog",
        "keylogs",
        multiple=True,
        metavar="FILE",
        help="Session key log: PARTICLE_TCP lines (TCP), NSS CLIENT_RANDOM lines (DTLS).",
    )(decorated)
    decorated = click.option(
        "--device-key",
        "device_keys",
        multiple=True,
        metavar="FILE",
        help="Device RSA private key (PEM/DER, slot dumps ok): decrypts frames.",
    )(decorated)
    decorated = click.option(
        "--server-key",
        "server_keys",
        multiple=True,
        metavar="FILE",
        help="Cloud RSA private key (PEM/DER): unwraps the identity message.",
    )(decorated)
    decorated = click.option(
        "--keys",
        "keys",
        multiple=True,
        metavar="PATH",
        help="Key file or directory, recognised by content (repeatable).",
    )(decorated)
    return decorated


def port_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--port`` (TCP, default 5683) and ``--udp-port`` (DTLS, default 5684), repeatable;
    the command receives ``ports`` and ``udp_ports`` tuples (empty = the defaults)."""
    func = click.option(
        "--udp-port",
        "udp_ports",
        multiple=True,
        type=click.IntRange(1, 65535),
        metavar="N",
        help="UDP port of the cloud for DTLS (default 5684; repeatable).",
    )(func)
    return click.option(
        "--port",
        "ports",
        multiple=True,
        type=click.IntRange(1, 65535),
        metavar="N",
        help="TCP port of the cloud (default 5683; repeatable).",
    )(func)


def os_error(exc: OSError) -> str:
    """One line for an OS error: ``file: reason``."""
    name = exc.filename or ""
    return f"{name}: {exc.strerror or exc}" if name else str(exc.strerror or exc)


def progress(items: Iterator[Any]) -> Iterator[Any]:
    """Pass ``items`` through, showing a packet count on stderr every half second."""
    last = time.monotonic()
    for count, item in enumerate(items, 1):
        if count & 1023 == 0:
            now = time.monotonic()
            if now - last > 0.5:
                last = now
                click.echo(f"\r{count} packets…", err=True, nl=False)
        yield item
    click.echo("\r" + " " * 30 + "\r", err=True, nl=False)
