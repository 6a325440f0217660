"""Key generation and key files in the formats Particle users have."""

from __future__ import annotations

import os
import stat
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.crypto import extract_firmware_public_key, firmware_can_read_private_key
from dissector.keys import (
    DCT_DEVICE_RSA_KEY_OFFSET,
    DCT_TCP_SERVER_KEY_OFFSET,
    KeyRing,
    extract_keys_from_dump,
    parse_server_key_file,
)
from dissector.simulate import SimulationError
from dissector.simulate.keyfiles import key_files, load_keyset
from dissector.simulate.keygen import (
    address_block,
    core_flash_dump,
    dct_dump,
    device_key_files,
    generate_device_id,
    generate_rsa_key,
    server_key_file,
    server_key_file_name,
    server_key_files,
    write_files,
)
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import KeySet

ROOT = Path(__file__).parent.parent


@cache
def device_key(seed: int = 1) -> rsa.RSAPrivateKey:
    return generate_rsa_key(1024, ByteSource(seed))


@cache
def server_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(
        (ROOT / "captures" / "keys" / "default_key.pem").read_bytes(), None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def pkcs1(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def test_seeded_keys_are_reproducible_and_firmware_readable() -> None:
    key = device_key(1)
    assert generate_rsa_key(1024, ByteSource(1)).private_numbers() == key.private_numbers()
    assert device_key(2).private_numbers() != key.private_numbers()
    assert key.key_size == 1024 and key.public_key().public_numbers().e == 65537
    der = pkcs1(key)
    assert firmware_can_read_private_key(der)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert extract_firmware_public_key(der) == spki  # what the device sends in its identity
    secure = generate_rsa_key(1024)
    assert firmware_can_read_private_key(pkcs1(secure))
    assert generate_device_id(ByteSource(3)) == generate_device_id(ByteSource(3))
    assert len(generate_device_id()) == 24
    with pytest.raises(SimulationError):
        generate_rsa_key(100)


def test_device_files_are_named_and_encoded_as_particle_cli_writes_them() -> None:
    files = device_key_files(device_key(), "0123456789abcdef01234567")
    assert sorted(files) == [
        "0123456789abcdef01234567.der",
        "0123456789abcdef01234567.pem",
        "0123456789abcdef01234567.pub.pem",
    ]
    assert files["0123456789abcdef01234567.pem"].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert files["0123456789abcdef01234567.pub.pem"].startswith(b"-----BEGIN PUBLIC KEY-----")
    assert files["0123456789abcdef01234567.der"] == pkcs1(device_key())


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", None, "127.0.0.1:5683"),
        ("192.168.1.5", 5699, "192.168.1.5:5699"),
        ("cloud.example.org", 8080, "cloud.example.org:8080"),
        ("abc", None, "abc:5683"),
        (None, None, "None"),
    ],
)
def test_server_key_file_has_the_key_fill_and_address_block(
    host: str | None, port: int | None, expected: str
) -> None:
    data = server_key_file(server_key(), host, port)
    assert len(data) == 512
    der = (
        server_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert data[: len(der)] == der and set(data[len(der) : 384]) == {0xFF}
    parsed = parse_server_key_file(data)
    assert str(parsed.address) == expected and parsed.address_problem is None
    if host == "abc":  # odd domain length: a zero byte follows, as particle-cli writes it
        assert data[384:390] == b"\x01\x03abc\x00"
    if port is None:
        assert data[450:452] == b"\xff\xff"


def test_server_key_file_for_an_ec_key_is_the_320_byte_udp_form() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = server_key_file(key.public_key(), "10.1.2.3", 5684)
    parsed = parse_server_key_file(data)
    assert len(data) == 320 and parsed.transport == "udp"
    assert str(parsed.address) == "10.1.2.3:5684"


def test_address_block_rejects_what_a_device_cannot_store() -> None:
    for bad in ("::1", "x" * 64, "bad host"):
        with pytest.raises(SimulationError):
            address_block(bad)
    with pytest.raises(SimulationError):
        address_block("1.2.3.4", 70000)


def test_server_files_follow_the_local_cloud_and_particle_cli_names() -> None:
    files = server_key_files(server_key(), "10.0.0.1", 5683)
    assert sorted(files) == [
        "default_key.pem",
        "default_key.pub-10_0_0_1-rsa.der",
        "default_key.pub.der",
        "default_key.pub.pem",
    ]
    assert len(files["default_key.pub.der"]) == 294
    assert server_key_file_name(None) == "default_key.pub-padded.der"
    ring = KeyRing()
    for name, data in files.items():
        ring.load_bytes(data, name)
    assert {e.role for e in ring.entries} == {"server"}
    assert ring.server_address() is not None and str(ring.server_address()) == "10.0.0.1:5683"


def test_dumps_put_the_keys_where_extract_finds_them() -> None:
    tcp_file = server_key_file(server_key(), "127.0.0.1")
    ec_key = ec.derive_private_key(12345, ec.SECP256R1())
    udp_file = server_key_file(ec.derive_private_key(777, ec.SECP256R1()).public_key())
    dct = dct_dump(device_key(), tcp_file, ec_key, udp_file)
    der = pkcs1(device_key())
    assert dct[DCT_DEVICE_RSA_KEY_OFFSET : DCT_DEVICE_RSA_KEY_OFFSET + len(der)] == der
    assert dct[DCT_TCP_SERVER_KEY_OFFSET : DCT_TCP_SERVER_KEY_OFFSET + 512] == tcp_file
    found = dict(extract_keys_from_dump(dct))
    assert found["device_rsa_key.der"] == pkcs1(device_key())
    assert found["tcp_server_key.der"] == tcp_file and found["udp_server_key.der"] == udp_file
    assert "device_ec_key.der" in found
    core = dict(extract_keys_from_dump(core_flash_dump(device_key(), tcp_file)))
    assert core == {"tcp_server_key.der": tcp_file, "device_rsa_key.der": pkcs1(device_key())}
    with pytest.raises(SimulationError):
        dct_dump(tcp_server_file=b"x" * 600)


def test_write_files_refuses_to_overwrite_and_protects_private_keys(tmp_path: Path) -> None:
    files = device_key_files(device_key(), "0123456789abcdef01234567")
    paths = write_files(tmp_path / "k", files)
    assert [p.name for p in paths] == list(files)
    mode = stat.S_IMODE(os.stat(tmp_path / "k" / "0123456789abcdef01234567.pem").st_mode)
    assert mode == 0o600
    pub = stat.S_IMODE(os.stat(tmp_path / "k" / "0123456789abcdef01234567.pub.pem").st_mode)
    assert pub & 0o044
    with pytest.raises(SimulationError, match="not overwriting"):
        write_files(tmp_path / "k", files)
    write_files(tmp_path / "k", files, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SimulationError):
        write_files(tmp_path / "file" / "sub", files)


def test_key_sets_generate_missing_keys_by_name_and_reload_from_files(tmp_path: Path) -> None:
    keys = KeySet(9)
    keys.add("server", server_key())
    device = keys.rsa_key("0123456789abcdef01234567")
    assert device.key_size == 1024 and keys.generated == ["0123456789abcdef01234567"]
    assert KeySet(9).rsa_key("0123456789abcdef01234567").private_numbers() == (
        device.private_numbers()
    )
    other = keys.rsa_key("old-server-small", 1024)
    files = key_files(keys, ["server", "0123456789abcdef01234567", "old-server-small"])
    assert "old-server-small.pem" in files and "default_key.pem" in files
    write_files(tmp_path, files)
    loaded = load_keyset([tmp_path])
    assert loaded.rsa_key("server").private_numbers() == server_key().private_numbers()
    assert loaded.rsa["0123456789abcdef01234567"].private_numbers() == device.private_numbers()
    assert loaded.rsa["old-server-small"].private_numbers() == other.private_numbers()
    assert loaded.generated == []
    keys.add_public("fixture", device.public_key())
    assert keys.any_key("fixture") is not None
    with pytest.raises(SimulationError):
        load_keyset([tmp_path / "missing"])
