"""``particle-dissect keys``: make, explain and extract Particle key files.

* ``keys new device`` — an RSA-1024 device key as particle-cli writes it
  (``<id>.pem``, ``<id>.pub.pem``, ``<id>.der``).
* ``keys new server`` — an RSA-2048 cloud key as a local cloud keeps it
  (``default_key.pem``, ``default_key.pub.pem``, ``default_key.pub.der``) and the
  512-byte server key file for the device, with the address block (``--host``/``--port``);
  ``--from KEY`` makes only the server key file(s) from an existing key.
* ``keys info FILE...`` — what a file holds: key type, size, role, fingerprint, host/port,
  key logs, persisted DTLS sessions, DCT / Core flash dumps. Never prints secrets.
* ``keys extract DUMP -o DIR`` — the keys in a DCT dump (device RSA key at 34, TCP server
  key at 2082, device EC key at 3106, UDP server key at 3298) or a Spark Core
  external-flash dump (server key at 0x1000, device key at 0x2000).

Errors exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from dissector.cli.common import fail

_DUMP_NAMES = {
    "device_rsa_key.der": "device RSA private key (DCT offset 34 / Core flash 0x2000)",
    "tcp_server_key.der": "TCP server public key file (DCT offset 2082 / Core flash 0x1000)",
    "device_ec_key.der": "device EC private key (DCT offset 3106)",
    "udp_server_key.der": "UDP server public key file (DCT offset 3298)",
}


#: A dump is larger than any key file (the smallest DCT slot ends at 646) and at most this.
_MIN_DUMP = 640
_MAX_DUMP = 64 * 1024 * 1024


@click.group()
def keys() -> None:
    """Make, explain and extract Particle key files."""


@keys.group("new")
def new() -> None:
    """Generate keys in the formats Particle tools use."""


def _seed_source(seed: str | None) -> Any:
    if seed is None:
        return None
    from dissector.simulate.rng import ByteSource

    try:
        return ByteSource(int(seed, 0))
    except ValueError:
        return ByteSource(seed)


def _write(directory: str, files: dict[str, bytes], force: bool) -> None:
    from dissector.simulate import SimulationError
    from dissector.simulate.keygen import write_files

    try:
        paths = write_files(directory, files, overwrite=force)
    except SimulationError as exc:
        fail(f"{exc} (use --force to replace)" if "overwriting" in str(exc) else str(exc))
    for path in paths:
        click.echo(str(path))


@new.command("device")
@click.option(
    "--id", "device_id", metavar="ID", help="Device ID, 24 hex characters (default: random)."
)
@click.option("-o", "--out", "directory", default=".", show_default=True, metavar="DIR")
@click.option("--name", metavar="NAME", help="File name stem (default: the device ID).")
@click.option("--seed", metavar="N", help="Derive the key from a seed (reproducible, NOT secret).")
@click.option("--force", is_flag=True, help="Replace existing files.")
def new_device(
    device_id: str | None, directory: str, name: str | None, seed: str | None, force: bool
) -> None:
    """An RSA-1024 device key: <ID>.pem, <ID>.pub.pem, <ID>.der (as particle-cli)."""
    from dissector.keys import normalise_device_id
    from dissector.simulate.keygen import device_key_files, generate_device_id, generate_rsa_key

    rng = _seed_source(seed)
    if device_id is not None:
        normal = normalise_device_id(device_id)
        if normal is None:
            fail(f"device ID {device_id!r} is not 24 hex characters")
        device_id = normal
    else:
        device_id = generate_device_id(rng)
    assert device_id is not None
    key = generate_rsa_key(1024, rng)
    _write(directory, device_key_files(key, name or device_id), force)


@new.command("server")
@click.option(
    "--host", metavar="HOST", help="The cloud's IPv4 address or domain name for the address block."
)
@click.option(
    "--port",
    type=click.IntRange(1, 65534),
    metavar="PORT",
    help="The cloud's TCP port (default: 5683, left unset).",
)
@click.option(
    "--from",
    "from_key",
    metavar="KEY",
    help="Use this existing RSA key (private or public) instead of generating one.",
)
@click.option("-o", "--out", "directory", default=".", show_default=True, metavar="DIR")
@click.option("--seed", metavar="N", help="Derive the key from a seed (reproducible, NOT secret).")
@click.option("--force", is_flag=True, help="Replace existing files.")
def new_server(
    host: str | None,
    port: int | None,
    from_key: str | None,
    directory: str,
    seed: str | None,
    force: bool,
) -> None:
    """An RSA-2048 cloud key (default_key.pem, .pub.pem, .pub.der) and the device's
    512-byte server key file with the address block."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from dissector.simulate import SimulationError
    from dissector.simulate.keygen import (
        generate_rsa_key,
        server_key_file,
        server_key_file_name,
        server_key_files,
    )

    try:
        if from_key is None:
            key = generate_rsa_key(2048, _seed_source(seed))
            files = server_key_files(key, host, port)
        else:
            loaded = _load_one_rsa(from_key)
            public = loaded.public_key() if isinstance(loaded, rsa.RSAPrivateKey) else loaded
            base = os.path.basename(from_key).split(".", 1)[0] + ".pub"
            files = {server_key_file_name(host, base): server_key_file(public, host, port)}
    except SimulationError as exc:
        fail(str(exc))
    _write(directory, files, force)


def _load_one_rsa(path: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from dissector.keys import KeyFileError, KeyRing

    ring = KeyRing()
    try:
        ring.load(path)
    except KeyFileError as exc:
        fail(str(exc))
    for entry in ring.entries:
        if isinstance(entry.key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            return entry.key
    fail(f"{path}: no RSA key in this file")


# -- info -----------------------------------------------------------------------------------


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    kind = entry["kind"].replace("-", " ").replace("rsa", "RSA").replace("ec", "EC")
    size = entry["curve"] or f"{entry['bits']} bits"
    head = f"{kind} key, {size}, role: {entry['role']}"
    lines = [head]
    if entry.get("form"):
        lines.append(f"form: {entry['form']}")
    if entry.get("device_id"):
        lines.append(f"device ID: {entry['device_id']}")
    if entry.get("host"):
        lines.append(f"server address: {entry['host']}:{entry['port']}")
    if entry.get("address_problem"):
        lines.append(f"address block problem: {entry['address_problem']}")
    lines.append(f"fingerprint (SHA-256 of the public key): {entry['fingerprint']}")
    return lines


def describe_file(path: str) -> dict[str, Any]:
    """What ``path`` holds: ``{"file", "what", "items": [...], "problems": [...]}``."""
    from dissector.keys import KeyFileError, KeyRing, extract_keys_from_dump

    out: dict[str, Any] = {"file": path, "what": "", "items": [], "problems": []}
    try:
        data = Path(path).read_bytes() if os.path.getsize(path) <= _MAX_DUMP else b""
    except OSError:
        data = b""
    slots = extract_keys_from_dump(data) if len(data) > _MIN_DUMP else []
    if slots:
        out["what"] = "device memory dump (DCT or Spark Core external flash)"
        for name, blob in slots:
            slot_ring = KeyRing()
            try:
                slot_ring.load_bytes(blob, name)
            except KeyFileError as slot_exc:
                out["problems"].append(f"{name}: {slot_exc.reason}")
                continue
            for item in slot_ring.describe():
                item["slot"] = _DUMP_NAMES.get(name, name)
                item["source"] = path
                out["items"].append(item)
        return out
    ring = KeyRing()
    try:
        ring.load(path)
    except KeyFileError as exc:
        out["what"] = "not a key file"
        out["problems"].append(exc.reason)
        return out
    items = ring.describe()
    sessions = ring.persisted_sessions()
    for s in sessions:
        items.append(
            {
                "kind": "dtls-session",
                "client_random": getattr(s, "client_random", b"").hex(),
                "source": path,
            }
        )
    out["items"] = items
    out["problems"] = [str(p) for p in ring.problems] + [str(s) for s in ring.skipped]
    out["what"] = _summary(items)
    return out


def _summary(items: list[dict[str, Any]]) -> str:
    keys = sum(1 for i in items if i["kind"] not in ("keylog", "dtls-session"))
    parts = []
    if keys:
        parts.append(f"{keys} key{'s' if keys > 1 else ''}")
    if any(i["kind"] == "keylog" for i in items):
        parts.append("key log")
    sessions = sum(1 for i in items if i["kind"] == "dtls-session")
    if sessions:
        parts.append(f"{sessions} persisted DTLS session{'s' if sessions > 1 else ''}")
    return ", ".join(parts) or "nothing usable"


def _print_info(info: dict[str, Any]) -> None:
    click.echo(f"{info['file']}: {info['what']}")
    for item in info["items"]:
        if item["kind"] == "keylog":
            click.echo(
                f"  key log: {item['tcp_sessions']} TCP session(s), "
                f"{item['nss_entries']} NSS entr{'y' if item['nss_entries'] == 1 else 'ies'}"
            )
            continue
        if item["kind"] == "dtls-session":
            click.echo(f"  persisted DTLS session, client random {item['client_random'][:16]}…")
            continue
        lines = _entry_lines(item)
        if item.get("slot"):
            lines.insert(0, f"slot: {item['slot']}")
        click.echo("  - " + lines[0])
        for line in lines[1:]:
            click.echo("    " + line)
    for problem in info["problems"]:
        click.echo(f"  note: {problem}")


def _files_under(path: str) -> list[str]:
    if not os.path.isdir(path):
        return [path]
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames)]
    return found


@keys.command("info")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
def info(files: tuple[str, ...], as_json: bool) -> None:
    """Explain key files: type, size, role, fingerprint, device ID, server address.

    Accepts keys in PEM/DER, 512/320-byte server key files, key logs, persisted DTLS
    sessions, DCT and Spark Core flash dumps, and folders of them. Private key material is
    never printed. Exit status 2 if a named file does not exist.
    """
    for name in files:
        if not os.path.exists(name):
            fail(f"{name}: no such file or directory")
    for name in files:
        for path in _files_under(name):
            described = describe_file(path)
            if as_json:
                click.echo(json.dumps(described, sort_keys=True))
            else:
                _print_info(described)


# -- extract --------------------------------------------------------------------------------


@keys.command("extract")
@click.argument("dump")
@click.option(
    "-o", "--out", "directory", required=True, metavar="DIR", help="Folder to write the keys to."
)
@click.option("--force", is_flag=True, help="Replace existing files.")
def extract(dump: str, directory: str, force: bool) -> None:
    """Pull the keys out of a device memory dump (DCT, or a Spark Core's external flash).

    Writes device_rsa_key.der (+ .pem, .pub.pem), tcp_server_key.der (the 512-byte file
    with its address), device_ec_key.der and udp_server_key.der, for the slots that hold
    a valid key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from dissector.keys import extract_keys_from_dump

    try:
        data = Path(dump).read_bytes()
    except OSError as exc:
        fail(f"{dump}: {exc.strerror or exc}")
    slots = extract_keys_from_dump(data)
    if not slots:
        fail(
            f"{dump}: no key found at the DCT offsets (34, 2082, 3106, 3298) nor at the "
            "Spark Core flash offsets (0x1000, 0x2000)"
        )
    files: dict[str, bytes] = {}
    for name, blob in slots:
        files[name] = blob
        if name == "device_rsa_key.der":
            key = serialization.load_der_private_key(blob, None)
            assert isinstance(key, rsa.RSAPrivateKey)
            files["device_rsa_key.pem"] = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            files["device_rsa_key.pub.pem"] = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
    _write(directory, files, force)
    for name, _ in slots:
        click.echo(f"  {name}: {_DUMP_NAMES.get(name, name)}", err=True)
