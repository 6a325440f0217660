"""Server key files with address blocks (spec §1.4) and key extraction from memory dumps."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.keys import (
    CORE_DEVICE_KEY_OFFSET,
    CORE_SERVER_KEY_OFFSET,
    DCT_DEVICE_EC_KEY_OFFSET,
    DCT_DEVICE_RSA_KEY_OFFSET,
    DCT_TCP_SERVER_KEY_OFFSET,
    DCT_UDP_SERVER_KEY_OFFSET,
    KeyFileError,
    KeyRing,
    extract_keys_from_dump,
    parse_address_block,
    parse_server_key_file,
)

DATA = Path(__file__).parent / "data" / "keys" / "reference"
TCP_FILE = (DATA / "tcp" / "server_key_with_address.der").read_bytes()
UDP_FILE = (DATA / "dtls-deviceos" / "server_key_udp_with_address.der").read_bytes()
DEVICE_DER = (DATA / "tcp" / "5190c68b84cc2643c6b052a7.der").read_bytes()
EC_DER = (DATA / "dtls-deviceos" / "device_key.der").read_bytes()


def with_block(base: bytes, offset: int, block: bytes) -> bytes:
    return base[:offset] + block + base[offset + len(block) :]


def test_offsets_are_the_documented_ones() -> None:
    assert (DCT_DEVICE_RSA_KEY_OFFSET, DCT_TCP_SERVER_KEY_OFFSET) == (34, 2082)
    assert (DCT_DEVICE_EC_KEY_OFFSET, DCT_UDP_SERVER_KEY_OFFSET) == (3106, 3298)
    assert (CORE_SERVER_KEY_OFFSET, CORE_DEVICE_KEY_OFFSET) == (0x1000, 0x2000)


def test_reference_files() -> None:
    tcp = parse_server_key_file(TCP_FILE)
    assert tcp.transport == "tcp" and isinstance(tcp.public_key, rsa.RSAPublicKey)
    assert len(tcp.public_der) == 294 and TCP_FILE.startswith(tcp.public_der)
    assert str(tcp.address) == "127.0.0.1:5683" and tcp.address_problem is None
    udp = parse_server_key_file(UDP_FILE)
    assert udp.transport == "udp" and isinstance(udp.public_key, ec.EllipticCurvePublicKey)
    assert str(udp.address) == "127.0.0.1:5684"


def test_domain_name_and_explicit_port() -> None:
    name = b"device.spark.io"
    block = bytes([1, len(name)]) + name
    data = with_block(TCP_FILE, 384, block.ljust(66, b"\xff") + (1234).to_bytes(2, "big"))
    info = parse_server_key_file(data)
    assert info.address is not None
    assert (info.address.kind, info.address.host, info.address.port) == (
        "domain",
        "device.spark.io",
        1234,
    )
    assert not info.address.port_is_default
    assert KeyRing().load_bytes(data) == 1


def test_legacy_ipv4_length_zero_and_port_zero() -> None:
    data = with_block(UDP_FILE, 192, bytes.fromhex("00007f000001"))
    data = with_block(data, 258, b"\x00\x00")
    info = parse_server_key_file(data)
    assert info.address is not None and info.address.legacy_length
    assert (info.address.host, info.address.port, info.address.port_is_default) == (
        "127.0.0.1",
        5684,
        True,
    )


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (bytes([0, 3, 1, 2, 3]), "length 3"),
        (bytes([1, 0]), "length 0"),
        (bytes([1, 3]) + b"a\x00b", "non-printable"),
        (bytes([7, 4]), "unknown address type 0x07"),
    ],
)
def test_bad_address_blocks_are_reported_not_raised(block: bytes, problem: str) -> None:
    info = parse_server_key_file(with_block(TCP_FILE, 384, block))
    assert info.address is None and info.address_problem is not None
    assert problem in info.address_problem
    ring = KeyRing()
    ring.load_bytes(with_block(TCP_FILE, 384, block))
    assert problem in ring.describe()[0]["address_problem"]


def test_no_address_block() -> None:
    info = parse_server_key_file(with_block(TCP_FILE, 384, b"\xff" * 128))
    assert info.address is None and info.address_problem is None
    assert parse_address_block(b"\x00", 5683)[1] is not None


def test_wrong_files_raise_key_file_error() -> None:
    with pytest.raises(KeyFileError, match="512"):
        parse_server_key_file(TCP_FILE[:300])
    with pytest.raises(KeyFileError):
        parse_server_key_file(b"\x30\x82\x01\x22" + b"\x00" * 508)
    with pytest.raises(KeyFileError):
        parse_server_key_file(bytes(320))


def make_dct() -> bytes:
    dct = bytearray(b"\xff" * 4096)
    dct[34 : 34 + len(DEVICE_DER)] = DEVICE_DER
    dct[2082 : 2082 + 512] = TCP_FILE
    dct[3106 : 3106 + len(EC_DER)] = EC_DER
    dct[3298 : 3298 + 320] = UDP_FILE
    return bytes(dct)


def test_extract_from_dct_dump(tmp_path: Path) -> None:
    found = dict(extract_keys_from_dump(make_dct()))
    assert set(found) == {
        "device_rsa_key.der",
        "tcp_server_key.der",
        "device_ec_key.der",
        "udp_server_key.der",
    }
    assert found["device_rsa_key.der"] == DEVICE_DER
    assert found["device_ec_key.der"] == EC_DER
    assert found["tcp_server_key.der"] == TCP_FILE
    for name, blob in found.items():
        (tmp_path / name).write_bytes(blob)
    ring = KeyRing()
    assert ring.load(tmp_path) == 4 and not ring.skipped
    assert ring.server_address("tcp") is not None and ring.server_address("udp") is not None


def test_extract_from_core_external_flash() -> None:
    flash = bytearray(b"\xff" * 0x3000)
    flash[0x1000 : 0x1000 + 512] = TCP_FILE
    flash[0x2000 : 0x2000 + len(DEVICE_DER)] = DEVICE_DER
    found = extract_keys_from_dump(bytes(flash))
    assert [name for name, _ in found] == ["tcp_server_key.der", "device_rsa_key.der"]
    assert found[1][1] == DEVICE_DER


def test_extract_partial_and_nothing() -> None:
    dct = bytearray(make_dct())
    dct[2082:2594] = b"\xff" * 512  # erased server key slot
    names = [n for n, _ in extract_keys_from_dump(bytes(dct))]
    assert "tcp_server_key.der" not in names and "device_rsa_key.der" in names
    assert extract_keys_from_dump(b"\xff" * 0x3000) == []
    assert extract_keys_from_dump(b"") == []
