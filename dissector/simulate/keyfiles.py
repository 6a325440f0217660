"""Key sets on disk: load a :class:`~dissector.simulate.scenario.KeySet` from key folders,
write the files a scenario's keys are kept in.

Loading uses the dissector's own :class:`~dissector.keys.KeyRing` (files recognised by
content): the cloud's RSA private key becomes ``"server"``, device RSA private keys their
device ID (from ``<id>.der``/``.pem`` names or ``device_id.txt``), any other RSA private
key the file name up to its first dot (``old-server.pem`` → ``"old-server"``); EC private
keys go to ``KeySet.ec`` by device ID or file name (for DTLS scenarios).

Writing follows the layouts users have: ``server`` → a local cloud's ``default_key.pem``,
``default_key.pub.pem``, ``default_key.pub.der`` and the device's 512-byte server key file
for the simulated cloud's address; a device ID → ``<id>.pem``, ``<id>.pub.pem``,
``<id>.der`` as particle-cli writes them; any other name → ``<name>.pem`` and
``<name>.pub.pem``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.keys import KeyFileError, KeyRing, normalise_device_id
from dissector.simulate.errors import SimulationError
from dissector.simulate.keygen import device_key_files, server_key_files
from dissector.simulate.pcap import DEFAULT_CLOUD
from dissector.simulate.scenario import KeySet

__all__ = ["key_files", "load_keyset"]


def load_keyset(
    paths: Iterable[str | os.PathLike[str]], seed: int | str = 0, *, keys: KeySet | None = None
) -> KeySet:
    """A :class:`KeySet` (``seed`` for keys still missing) with the RSA private keys found
    under ``paths``; raises :class:`SimulationError` for an unusable path."""
    out = keys if keys is not None else KeySet(seed)
    ring = KeyRing()
    try:
        for path in paths:
            if not os.path.exists(path):
                raise KeyFileError("no such file or directory", str(path))
            ring.load(path)
    except KeyFileError as exc:
        raise SimulationError(str(exc)) from None
    servers = []
    for entry in ring.entries:
        key = entry.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            name = entry.device_id or Path(entry.sources[0]).name.split(".", 1)[0]
            out.ec.setdefault(name, key)
            continue
        if not isinstance(key, rsa.RSAPrivateKey):
            continue
        if entry.device_id:
            out.rsa.setdefault(entry.device_id, key)
            continue
        stem = Path(entry.sources[0]).name.split(".", 1)[0]
        if entry.role == "server" and stem.startswith("default_key"):
            servers.append(key)
        elif normalise_device_id(stem) is None:
            out.rsa.setdefault(stem, key)
    if servers:
        out.rsa.setdefault("server", servers[0])
    return out


def _pem_pair(key: rsa.RSAPrivateKey, name: str) -> dict[str, bytes]:
    return {
        f"{name}.pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        f"{name}.pub.pem": key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }


def key_files(
    keys: KeySet,
    names: Iterable[str],
    *,
    host: str = DEFAULT_CLOUD[0],
    port: int = DEFAULT_CLOUD[1],
) -> dict[str, bytes]:
    """File name → content for the keys called ``names`` (see the module docstring)."""
    out: dict[str, bytes] = {}
    for name in names:
        key = keys.rsa_key(name)
        if name == "server":
            out.update(server_key_files(key, host, port))
        elif normalise_device_id(name) is not None:
            out.update(device_key_files(key, name.lower()))
        else:
            out.update(_pem_pair(key, name))
    return out
