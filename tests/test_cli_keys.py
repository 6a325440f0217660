"""``particle-dissect keys new|info|extract``, driven through the click group object."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.keys import KeyRing, parse_server_key_file
from dissector.simulate.keygen import core_flash_dump, dct_dump, server_key_file

ROOT = Path(__file__).parent.parent
KEYS = ROOT / "captures" / "keys"
DEVICE = "2c0021000447353138383138"


def invoke(*args: str) -> Result:
    from dissector.cli.keys import keys

    return CliRunner().invoke(keys, list(args))


@cache
def device_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((KEYS / f"{DEVICE}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@cache
def server_public() -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key((KEYS / "default_key.pub.pem").read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def secrets_of(key: rsa.RSAPrivateKey) -> list[str]:
    """Hex and decimal forms of the private values, none of which may ever be printed."""
    n = key.private_numbers()
    values = [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
    return [f"{v:x}"[:32] for v in values] + [str(v)[:32] for v in values]


# -- new ------------------------------------------------------------------------------------


def test_new_device_writes_the_particle_cli_trio(tmp_path: Path) -> None:
    result = invoke("new", "device", "--id", "0123456789ABCDEF01234567", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    stem = "0123456789abcdef01234567"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{stem}.der",
        f"{stem}.pem",
        f"{stem}.pub.pem",
    ]
    ring = KeyRing()
    ring.load(str(tmp_path))
    assert {(e.role, e.device_id, e.bits) for e in ring.entries} == {("device", stem, 1024)}
    again = invoke("new", "device", "--id", stem, "-o", str(tmp_path))
    assert again.exit_code == 2 and "--force" in again.output
    assert invoke("new", "device", "--id", stem, "-o", str(tmp_path), "--force").exit_code == 0


def test_new_device_with_a_seed_is_reproducible(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        result = invoke("new", "device", "--seed", "7", "--name", "dev", "-o", str(tmp_path / sub))
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "dev.der").read_bytes() == (tmp_path / "b" / "dev.der").read_bytes()
    bad = invoke("new", "device", "--id", "xyz", "-o", str(tmp_path))
    assert bad.exit_code == 2 and "24 hex characters" in bad.output


def test_new_server_writes_the_local_cloud_keys_and_the_device_file(tmp_path: Path) -> None:
    result = invoke(
        "new",
        "server",
        "--host",
        "192.168.0.10",
        "--port",
        "5699",
        "--seed",
        "3",
        "-o",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "default_key.pem",
        "default_key.pub-192_168_0_10-rsa.der",
        "default_key.pub.der",
        "default_key.pub.pem",
    ]
    blob = (tmp_path / "default_key.pub-192_168_0_10-rsa.der").read_bytes()
    parsed = parse_server_key_file(blob)
    assert str(parsed.address) == "192.168.0.10:5699" and parsed.public_key.key_size == 2048


def test_new_server_from_an_existing_key_makes_only_the_device_file(tmp_path: Path) -> None:
    result = invoke(
        "new", "server", "--from", str(KEYS / "default_key.pem"), "--host", "cloud.example.org",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (path,) = tmp_path.iterdir()
    assert path.name == "default_key.pub-cloud_example_org-rsa.der"
    parsed = parse_server_key_file(path.read_bytes())
    assert parsed.public_key.public_numbers() == server_public().public_numbers()
    assert str(parsed.address) == "cloud.example.org:5683"
    bad = invoke("new", "server", "--from", str(tmp_path / "missing.pem"), "-o", str(tmp_path))
    assert bad.exit_code == 2


# -- info -----------------------------------------------------------------------------------


def test_info_explains_keys_without_showing_secrets() -> None:
    result = invoke("info", str(KEYS / f"{DEVICE}.pem"), str(KEYS / "server_key_with_address.der"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "RSA private key, 1024 bits, role: device" in out
    assert f"device ID: {DEVICE}" in out
    assert "512-byte TCP server key file" in out and "server address: 127.0.0.1:5683" in out
    assert "fingerprint" in out
    assert "BEGIN" not in out
    assert not any(secret in out for secret in secrets_of(device_key()))


def test_info_json_covers_key_logs_folders_and_non_keys(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("hello")
    (tmp_path / "sim.keylog").write_text("PARTICLE_TCP " + "00" * 40 + " " + "11" * 40 + "\n")
    result = invoke("info", "--json", str(tmp_path))
    assert result.exit_code == 0, result.output
    by_file = {Path(d["file"]).name: d for d in map(json.loads, result.output.splitlines())}
    assert by_file["sim.keylog"]["what"] == "key log"
    assert by_file["sim.keylog"]["items"][0]["tcp_sessions"] == 1
    assert by_file["note.txt"]["what"] == "not a key file" and by_file["note.txt"]["problems"]
    assert invoke("info", str(tmp_path / "missing")).exit_code == 2


def test_info_reads_a_dct_dump_slot_by_slot(tmp_path: Path) -> None:
    dump = tmp_path / "dct.bin"
    dump.write_bytes(dct_dump(device_key(), server_key_file(server_public(), "10.0.0.1", 5683)))
    result = invoke("info", str(dump))
    assert result.exit_code == 0, result.output
    assert "device memory dump" in result.output
    assert "slot: device RSA private key" in result.output
    assert "server address: 10.0.0.1:5683" in result.output
    assert not any(secret in result.output for secret in secrets_of(device_key()))


# -- extract --------------------------------------------------------------------------------


def test_extract_pulls_every_slot_out_of_a_dct_dump(tmp_path: Path) -> None:
    ec_key = ec.derive_private_key(4242, ec.SECP256R1())
    udp = server_key_file(ec.derive_private_key(99, ec.SECP256R1()).public_key(), "10.0.0.1")
    dump = tmp_path / "dct.bin"
    tcp = server_key_file(server_public(), "10.0.0.1")
    dump.write_bytes(dct_dump(device_key(), tcp, ec_key, udp))
    result = invoke("extract", str(dump), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "device_ec_key.der",
        "device_rsa_key.der",
        "device_rsa_key.pem",
        "device_rsa_key.pub.pem",
        "tcp_server_key.der",
        "udp_server_key.der",
    ]
    assert (out / "tcp_server_key.der").read_bytes() == tcp
    loaded = serialization.load_pem_private_key((out / "device_rsa_key.pem").read_bytes(), None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == device_key().private_numbers()
    again = invoke("extract", str(dump), "-o", str(out))
    assert again.exit_code == 2


def test_extract_reads_a_core_flash_dump_and_refuses_other_files(tmp_path: Path) -> None:
    dump = tmp_path / "core.bin"
    dump.write_bytes(core_flash_dump(device_key(), server_key_file(server_public())))
    result = invoke("extract", str(dump), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "device_rsa_key.der").is_file()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff" * 5000)
    bad = invoke("extract", str(junk), "-o", str(tmp_path / "none"))
    assert bad.exit_code == 2 and "no key found" in bad.output
    assert invoke("extract", str(tmp_path / "missing.bin"), "-o", str(tmp_path)).exit_code == 2


@pytest.mark.parametrize(
    "command", [("new", "--help"), ("new", "device", "--help"), ("info", "--help")]
)
def test_help_texts(command: tuple[str, ...]) -> None:
    assert invoke(*command).exit_code == 0
