"""Device memory dumps (DCT, Spark Core external flash) recognised by content as key files."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.cli.main import main
from dissector.keys import KeyFileError, KeyRing
from dissector.keys.sniff import sniff
from dissector.simulate.keygen import core_flash_dump, dct_dump, server_key_file

ROOT = Path(__file__).parent.parent
KEYS = ROOT / "captures" / "keys"
PHOTON = "2c0021000447353138383138"  # the device of captures/photon.pcap


@cache
def device_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((KEYS / f"{PHOTON}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@cache
def server_file() -> bytes:
    public = serialization.load_pem_public_key((KEYS / "default_key.pub.pem").read_bytes())
    assert isinstance(public, rsa.RSAPublicKey)
    return server_key_file(public, "10.0.0.1", 5683)


EC_KEY = ec.derive_private_key(4242, ec.SECP256R1())


def test_a_dct_dump_yields_every_slot_with_its_role(tmp_path: Path) -> None:
    udp = server_key_file(ec.derive_private_key(7, ec.SECP256R1()).public_key(), "10.0.0.1")
    (tmp_path / "dct.bin").write_bytes(dct_dump(device_key(), server_file(), EC_KEY, udp))
    ring = KeyRing()
    assert ring.load(tmp_path / "dct.bin") == 4
    assert ring.device_private_keys() == [ring.device_private_key()]
    assert ring.device_private_keys()[0].private_numbers() == device_key().private_numbers()
    assert str(ring.server_address("tcp")) == "10.0.0.1:5683"
    assert str(ring.server_address("udp")) == "10.0.0.1:5684"
    ec_entry = next(e for e in ring.entries if e.kind == "ec-private")
    assert ec_entry.role == "device"
    forms = [e.describe()["form"] for e in ring.entries]
    assert all("memory dump" in f for f in forms)


def test_a_core_flash_dump_yields_the_device_key_and_the_server_file() -> None:
    result = sniff(core_flash_dump(device_key(), server_file()))
    assert sorted((k.role, k.private) for k in result.keys) == [
        ("device", True),
        ("server", False),
    ]


def test_dumps_work_with_the_explicit_flags_too(tmp_path: Path) -> None:
    dump = tmp_path / "dct.bin"
    dump.write_bytes(dct_dump(device_key(), server_file()))
    for role in ("device", "server"):
        ring = KeyRing()
        ring.load(dump, role=role)
        assert len(ring.device_private_keys()) == 1  # the device slot stays a device key
        assert len(ring.server_public_keys()) == 1


def test_erased_or_foreign_binaries_are_not_dumps(tmp_path: Path) -> None:
    (tmp_path / "erased.bin").write_bytes(b"\xff" * 16384)
    (tmp_path / "zeros.bin").write_bytes(bytes(5000))
    ring = KeyRing()
    assert ring.load(tmp_path) == 0
    assert sorted(Path(s.path).name for s in ring.skipped) == ["erased.bin", "zeros.bin"]
    with pytest.raises(KeyFileError, match="unrecognised binary data"):
        KeyRing().load(tmp_path / "erased.bin", role="device")


def test_dissect_accepts_a_dct_dump_under_keys(tmp_path: Path) -> None:
    dump = tmp_path / "photon-dct.bin"
    dump.write_bytes(dct_dump(device_key(), server_file()))
    result = CliRunner().invoke(
        main,
        [
            "dissect",
            str(ROOT / "captures" / "photon.pcap"),
            "--keys",
            str(dump),
            "--format",
            "ndjson",
        ],
    )
    assert result.exit_code == 0, result.output
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    msgs = [r for r in recs if r["record"] == "message"]
    assert msgs and all(r["coap"] is not None for r in msgs)
