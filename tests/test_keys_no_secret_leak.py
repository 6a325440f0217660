"""No key-holding object shows private key material in repr() or str()."""

from __future__ import annotations

import io
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.crypto import (
    CbcDirection,
    CbcEncryptor,
    parse_credentials,
    prepare_private_key,
)
from dissector.keys import KeyLogWriter, KeyRing, parse_server_key_file
from dissector.keys.sniff import sniff

DATA = Path(__file__).parent / "data" / "keys" / "reference"
SECRET_CREDS = bytes(range(100, 140))
SECRET_MASTER = bytes(range(200, 248))


def secrets_of(ring: KeyRing) -> list[str]:
    """Hex and decimal renderings of every private number in the ring, plus session keys."""
    out = [SECRET_CREDS[:16].hex(), SECRET_CREDS[16:32].hex(), SECRET_MASTER.hex()]
    for key in ring.device_private_keys() + ring.server_private_keys():
        nums = key.private_numbers()
        for value in (nums.d, nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp):
            out += [str(value)[:24], f"{value:x}"[:24], f"{value:X}"[:24]]
    for eckey in ring.ec_private_keys():
        value = eckey.private_numbers().private_value
        out += [str(value)[:24], f"{value:x}"[:24]]
    return out


def test_reprs_show_no_secrets() -> None:
    ring = KeyRing()
    ring.load(DATA)
    ring.add_tcp_session(bytes(40), SECRET_CREDS)
    ring.add_nss_secret("CLIENT_RANDOM", bytes(32), SECRET_MASTER)
    creds = parse_credentials(SECRET_CREDS)
    rsa_key = ring.device_private_keys()[0]
    objects: list[object] = [
        ring,
        *ring.entries,
        *ring.skipped,
        creds,
        CbcDirection(creds.key, creds.iv),
        CbcEncryptor(creds.key, creds.iv),
        prepare_private_key(rsa_key),
        parse_server_key_file((DATA / "tcp" / "server_key_with_address.der").read_bytes()),
        *sniff((DATA / "tcp" / "default_key.pem").read_bytes()).keys,
        KeyLogWriter(io.StringIO()),
    ]
    secrets = secrets_of(ring)
    assert len(secrets) > 20
    for obj in objects:
        for text in (repr(obj), str(obj)):
            assert text
            for secret in secrets:
                assert secret.lower() not in text.lower(), (type(obj).__name__, text)
    text = repr(ring.entries[0])
    assert "fp=" in text and "source=" in text


def test_entry_repr_names_file_and_device() -> None:
    ring = KeyRing()
    ring.load(DATA / "tcp" / "5190c68b84cc2643c6b052a7.der")
    (entry,) = ring.entries
    assert repr(entry) == str(entry)
    assert "5190c68b84cc2643c6b052a7.der" in repr(entry)
    assert "device=5190c68b84cc2643c6b052a7" in repr(entry)
    assert "1024 bits" in repr(entry) and "rsa-private" in repr(entry)


def test_describe_has_no_secrets() -> None:
    ring = KeyRing()
    ring.load(DATA)
    text = repr(ring.describe())
    for secret in secrets_of(ring):
        assert secret.lower() not in text.lower()
    fresh = KeyRing()
    fresh.add_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    fresh.add_key(ec.generate_private_key(ec.SECP256R1()))
    for secret in secrets_of(fresh):
        assert secret.lower() not in repr(fresh.entries).lower()
