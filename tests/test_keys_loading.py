"""KeyRing loading by content: reference keys, key logs, slots, JSON, errors, lookups."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.crypto import extract_firmware_public_key
from dissector.keys import KeyFileError, KeyRing, fingerprint

DATA = Path(__file__).parent / "data" / "keys" / "reference"
VECTORS = Path(__file__).parent / "data" / "keys" / "vectors"
TCP = DATA / "tcp"
DEVICE_ID = "5190c68b84cc2643c6b052a7"
UDP_DEVICE_ID = "ad2cc13702ed03012d837cd1"


def one(path: Path, role: str | None = None) -> KeyRing:
    ring = KeyRing()
    ring.load(path, role=role)
    return ring


def spki(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def vector_slot(name: str) -> bytes:
    return bytes.fromhex(json.loads((VECTORS / "test_vectors.json").read_text())[name])


# ---------------------------------------------------------------- single reference files


@pytest.mark.parametrize(
    ("rel", "kind", "role", "bits", "device_id"),
    [
        (f"tcp/{DEVICE_ID}.der", "rsa-private", "device", 1024, DEVICE_ID),
        (f"tcp/{DEVICE_ID}.pem", "rsa-private", "device", 1024, DEVICE_ID),
        (f"tcp/{DEVICE_ID}.pub.pem", "rsa-public", "device", 1024, DEVICE_ID),
        ("tcp/default_key.pem", "rsa-private", "server", 2048, None),
        ("tcp/default_key.pub.pem", "rsa-public", "server", 2048, None),
        ("tcp/server_key_with_address.der", "rsa-public", "server", 2048, None),
        ("dtls/device.key", "ec-private", "device", 256, None),
        ("dtls/device.key.der", "ec-private", "device", 256, None),
        ("dtls/device.pub.der", "ec-public", "device", 256, None),
        ("dtls/server.key", "ec-private", "server", 256, None),
        ("dtls/server.key.der", "ec-private", "server", 256, None),
        ("dtls/server.pub.der", "ec-public", "server", 256, None),
        ("dtls-deviceos/device_key.der", "ec-private", "device", 256, UDP_DEVICE_ID),
        ("dtls-deviceos/device_key.pem", "ec-private", "device", 256, UDP_DEVICE_ID),
        ("dtls-deviceos/device_key.pub.der", "ec-public", "device", 256, UDP_DEVICE_ID),
        ("dtls-deviceos/server_key.der", "ec-private", "server", 256, None),
        ("dtls-deviceos/server_key.pem", "ec-private", "server", 256, None),
        ("dtls-deviceos/server_key.pub.der", "ec-public", "server", 256, None),
        ("dtls-deviceos/server_key_udp_with_address.der", "ec-public", "server", 256, None),
    ],
)
def test_reference_key_files_load_as_the_right_kind(
    rel: str, kind: str, role: str, bits: int, device_id: str | None
) -> None:
    ring = one(DATA / rel)
    (desc,) = ring.describe()
    assert desc["kind"] == kind
    assert desc["role"] == role
    assert desc["bits"] == bits
    assert desc["device_id"] == device_id
    if kind.startswith("ec"):
        assert desc["curve"] == "secp256r1"
    assert desc["source"].endswith(rel.split("/")[-1])


def test_tcp_server_key_file_address() -> None:
    ring = one(TCP / "server_key_with_address.der")
    (entry,) = ring.entries
    assert entry.transport == "tcp"
    assert entry.address is not None
    assert entry.address.kind == "ipv4" and entry.address.host == "127.0.0.1"
    assert entry.address.port == 5683 and entry.address.port_is_default
    assert ring.server_address("tcp") == entry.address
    assert entry.describe()["host"] == "127.0.0.1" and entry.describe()["port"] == 5683
    default_pub = serialization.load_pem_public_key((TCP / "default_key.pub.pem").read_bytes())
    assert entry.public_der == spki(default_pub)  # type: ignore[arg-type]


def test_udp_server_key_file_address() -> None:
    ring = one(DATA / "dtls-deviceos" / "server_key_udp_with_address.der")
    (entry,) = ring.entries
    assert entry.transport == "udp" and entry.address is not None
    assert (entry.address.host, entry.address.port) == ("127.0.0.1", 5684)
    server_pub = (DATA / "dtls-deviceos" / "server_key.pub.der").read_bytes()
    assert entry.public_der == server_pub and len(server_pub) == 91
    assert ring.ec_public_keys()[0].curve.name == "secp256r1"


def test_keylogs_both_formats() -> None:
    tcp = one(DATA / "sparkprotocol-0.1.6__deviceos-0.7.0_full.keylog", role="keylog")
    nonce = bytes.fromhex(
        "86444162171cd298b923de315ca7b53ac51ec6890091a65fd0361f1e9f2de8c9832698a8cf9cef9d"
    )
    creds = tcp.tcp_session(nonce)
    assert creds is not None and creds.hex().startswith("b98c5237")
    assert tcp.tcp_sessions() == [(nonce, creds)]
    nss = one(DATA / "deviceos-1.0.1_udp_full.keylog")
    random = bytes.fromhex("ce23b665bb18fa72fd07dc7c947549da06c2ae9e819e98a594c41d8c2af43921")
    master = nss.nss_master(random)
    assert master is not None and len(master) == 48 and master.hex().startswith("cd2cbaa0")
    assert nss.nss_labels == ["CLIENT_RANDOM"]
    assert nss.problems == []
    # the OpenSSL key logs start with a comment line
    assert len(one(DATA / "openssl_ecdhe_ecdsa_aes128_ccm8.keylog").nss_secrets("CLIENT_RANDOM"))


# ---------------------------------------------------------------- directory


def test_whole_directory() -> None:
    ring = KeyRing()
    added = ring.load(DATA)
    kinds = sorted(d["kind"] for d in ring.describe())
    assert kinds.count("keylog") == 6
    assert kinds.count("rsa-private") == 2 and kinds.count("rsa-public") == 2
    assert kinds.count("ec-private") == 4 and kinds.count("ec-public") == 4
    assert len(ring.tcp_sessions()) == 2
    assert len(ring.nss_secrets("CLIENT_RANDOM")) == 4
    assert added == 12 + 2 + 4
    assert sorted(Path(s.path).name for s in ring.skipped) == ["device.crt", "server.crt"]
    assert all("X.509 certificate" in s.reason for s in ring.skipped)
    assert ring.problems == []
    # same key from .der and .pem is one entry listing both files
    (dev,) = [e for e in ring.entries if e.kind == "rsa-private" and e.role == "device"]
    assert len(dev.sources) == 2
    assert ring.device_private_key(DEVICE_ID) is dev.key
    # server public keys: default_key (also the 512-byte file) — one RSA key
    assert len(ring.server_public_keys()) == 1
    assert len(ring.server_private_keys()) == 1
    assert len(ring.ec_private_keys()) == 4


def test_directory_with_role_hint_and_garbage(tmp_path: Path) -> None:
    shutil.copy(TCP / f"{DEVICE_ID}.der", tmp_path / "a.der")
    (tmp_path / "notes.txt").write_text("hello, these are my keys\n")
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)) * 3)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "empty").write_bytes(b"")
    ring = KeyRing()
    assert ring.load(tmp_path, role="server") == 1
    assert ring.server_private_keys() and ring.entries[0].role == "server"
    skipped = {Path(s.path).name: s.reason for s in ring.skipped}
    assert set(skipped) == {"notes.txt", "junk.bin", "empty"}
    assert "empty" in skipped["empty"]
    # role-independent lookup by public key still finds it as a device key
    fw_pub = extract_firmware_public_key((TCP / f"{DEVICE_ID}.der").read_bytes())
    assert ring.device_private_key(public_der=fw_pub) is ring.entries[0].key


# ---------------------------------------------------------------- slots, names, JSON


@pytest.mark.parametrize("fill", [b"\x00", b"\xff"])
def test_der_key_in_612_byte_slot(tmp_path: Path, fill: bytes) -> None:
    der = (TCP / f"{DEVICE_ID}.der").read_bytes()
    slot = der + fill * (612 - len(der))
    path = tmp_path / "slot.bin"
    path.write_bytes(slot)
    ring = one(path, role="device")
    (entry,) = ring.entries
    assert entry.kind == "rsa-private" and entry.bits == 1024
    assert "fill bytes" in entry.describe()["form"]


def test_firmware_fixture_slot_loads() -> None:
    ring = KeyRing()
    ring.load_bytes(vector_slot("hs_device_priv_slot"), name="fixture-slot")
    (entry,) = ring.entries
    assert entry.role == "device" and entry.bits == 1024


def test_upper_case_id_file_name_and_core_keys_dir(tmp_path: Path) -> None:
    core_keys = tmp_path / "core_keys"
    core_keys.mkdir()
    shutil.copy(TCP / f"{DEVICE_ID}.pub.pem", core_keys / f"{DEVICE_ID.upper()}.pub.pem")
    shutil.copy(TCP / "default_key.pem", tmp_path / "default_key.pem")
    ring = one(tmp_path)
    pub = ring.device_public_key(DEVICE_ID.upper())
    assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == 1024
    assert ring.device_public_key() is pub  # the only device key
    assert ring.device_private_key(DEVICE_ID) is None  # only its public key is known
    assert len(ring.server_private_keys()) == 1


def test_brewskey_json_device_key(tmp_path: Path) -> None:
    pem = (TCP / f"{DEVICE_ID}.pub.pem").read_text()
    path = tmp_path / "data" / "deviceKeys"
    path.mkdir(parents=True)
    (path / "whatever.json").write_text(json.dumps({"deviceID": DEVICE_ID.upper(), "key": pem}))
    ring = one(tmp_path)
    (entry,) = ring.entries
    assert entry.kind == "rsa-public" and entry.device_id == DEVICE_ID and entry.role == "device"
    assert "JSON" in entry.describe()["form"]
    (tmp_path / "nokey.json").write_text('{"deviceID": "x"}')
    ring2 = KeyRing()
    ring2.load(tmp_path)
    assert [Path(s.path).name for s in ring2.skipped] == ["nokey.json"]


def test_multi_block_pem_with_ec_parameters(tmp_path: Path) -> None:
    text = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    text += (DATA / "dtls" / "device.key").read_text()
    path = tmp_path / "k.pem"
    path.write_text(text)
    assert one(path).entries[0].kind == "ec-private"


# ---------------------------------------------------------------- errors


def test_explicit_role_with_garbage_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pem"
    path.write_bytes(b"\x01\x02garbage\xff" * 10)
    with pytest.raises(KeyFileError) as info:
        KeyRing().load(path, role="device")
    assert str(path) in str(info.value)
    assert "expected a device key" in str(info.value)
    assert info.value.path == str(path)


def test_explicit_role_with_certificate() -> None:
    with pytest.raises(KeyFileError, match=r"device\.crt: expected .* found an X\.509 certificate"):
        KeyRing().load(DATA / "dtls" / "device.crt", role="device")


def test_explicit_file_without_role_still_raises(tmp_path: Path) -> None:
    path = tmp_path / "README"
    path.write_text("not a key\n")
    with pytest.raises(KeyFileError, match="README: expected a key file"):
        KeyRing().load(path)
    with pytest.raises(KeyFileError, match="device ID file"):
        KeyRing().load(DATA / "dtls-deviceos" / "device_id.txt")
    with pytest.raises(KeyFileError, match="no such file"):
        KeyRing().load(tmp_path / "missing.pem")


def test_role_mismatches_raise() -> None:
    with pytest.raises(KeyFileError, match=r"expected a key log.*found an RSA private key"):
        KeyRing().load(TCP / "default_key.pem", role="keylog")
    with pytest.raises(KeyFileError, match=r"expected a server key.*found a key log"):
        KeyRing().load(DATA / "particle_mbedtls_ccm8_full.keylog", role="server")
    with pytest.raises(KeyFileError, match="found a 512-byte TCP server key file"):
        KeyRing().load(TCP / "server_key_with_address.der", role="device")
    with pytest.raises(ValueError, match="role"):
        KeyRing().load(TCP, role="cloud")


def test_encrypted_pem_is_skipped_with_reason(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    formats = {
        "PKCS8": serialization.PrivateFormat.PKCS8,
        "PKCS1": serialization.PrivateFormat.TraditionalOpenSSL,
    }
    for name, fmt in formats.items():
        pem = key.private_bytes(
            serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"pw")
        )
        (tmp_path / f"enc-{name}.pem").write_bytes(pem)
    ring = one(tmp_path)
    assert ring.entries == []
    assert len(ring.skipped) == 2 and all("encrypted" in s.reason for s in ring.skipped)
    with pytest.raises(KeyFileError, match="encrypted"):
        KeyRing().load(tmp_path / "enc-PKCS8.pem", role="device")


def test_malformed_keylog_lines_reported_with_line_numbers(tmp_path: Path) -> None:
    good = "PARTICLE_TCP " + "11" * 40 + " " + "22" * 40
    text = "\n".join(
        [
            "# comment",
            "",
            good,
            "PARTICLE_TCP " + "11" * 39 + " " + "22" * 40,  # line 4: short nonce
            "CLIENT_RANDOM " + "aa" * 32 + " zz",  # line 5: not hex
            "CLIENT_RANDOM " + "aa" * 32 + " " + "bb" * 48,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET " + "cc" * 32 + " " + "dd" * 32,
            "garbage line",  # line 8
        ]
    )
    path = tmp_path / "k.log"
    path.write_text(text)
    ring = one(path, role="keylog")
    assert ring.tcp_session(bytes.fromhex("11" * 40)) == bytes.fromhex("22" * 40)
    assert ring.nss_master(bytes.fromhex("aa" * 32)) == bytes.fromhex("bb" * 48)
    assert ring.nss_secrets("CLIENT_HANDSHAKE_TRAFFIC_SECRET") == {
        bytes.fromhex("cc" * 32): bytes.fromhex("dd" * 32)
    }
    assert [p.line for p in ring.problems] == [4, 5, 8]
    assert "40" in ring.problems[0].reason and str(path) in str(ring.problems[0])


def test_keylog_with_only_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "k.log"
    path.write_text("PARTICLE_TCP 00 11\n")
    with pytest.raises(KeyFileError, match="line 1"):
        KeyRing().load(path, role="keylog")


def test_conflicting_session_keys_are_reported(tmp_path: Path) -> None:
    nonce = "33" * 40
    (tmp_path / "a.log").write_text(f"PARTICLE_TCP {nonce} {'44' * 40}\n")
    (tmp_path / "b.log").write_text(f"PARTICLE_TCP {nonce} {'55' * 40}\n")
    ring = one(tmp_path)
    assert ring.tcp_session(bytes.fromhex(nonce)) == bytes.fromhex("44" * 40)
    assert len(ring.problems) == 1 and "different credentials" in ring.problems[0].reason


# ---------------------------------------------------------------- lookups


def test_lookups_and_fingerprints() -> None:
    ring = one(TCP)
    key = ring.device_private_key(DEVICE_ID.upper())
    assert isinstance(key, rsa.RSAPrivateKey)
    fw_pub = extract_firmware_public_key((TCP / f"{DEVICE_ID}.der").read_bytes())
    assert ring.device_private_key(public_der=fw_pub) is key
    assert ring.device_private_key("ffffffffffffffffffffffff", public_der=fw_pub) is key
    assert ring.device_private_key() is key
    assert ring.device_private_key("ffffffffffffffffffffffff") is None
    assert ring.device_private_keys() == [key]
    pkcs1 = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    assert fingerprint(pkcs1) == fingerprint(fw_pub) == ring.fingerprint(fw_pub)
    assert len(fingerprint(b"junk")) == 64
    assert ring.entry_for(fw_pub) is not None
    (server_pub,) = ring.server_public_keys()
    (server,) = ring.server_private_keys()
    assert spki(server_pub) == spki(server.public_key())


def test_server_public_derived_from_private_only() -> None:
    ring = one(TCP / "default_key.pem")
    (pub,) = ring.server_public_keys()
    assert pub.key_size == 2048
    assert ring.server_address() is None


def test_role_overrides_size_but_public_key_match_still_works() -> None:
    ring = KeyRing()
    ring.load(TCP / "default_key.pem", role="device")
    (server_as_device,) = ring.device_private_keys()
    assert ring.server_private_keys() == []
    der = spki(server_as_device.public_key())
    assert ring.device_private_key(public_der=der) is server_as_device


def test_add_sessions_and_keys_programmatically() -> None:
    ring = KeyRing()
    ring.add_tcp_session(bytes(40), bytes(range(40)))
    assert ring.tcp_session(bytes(40)) == bytes(range(40))
    with pytest.raises(ValueError):
        ring.add_tcp_session(bytes(39), bytes(40))
    ring.add_nss_secret("CLIENT_RANDOM", bytes(32), bytes(48))
    assert ring.nss_master(bytes(32)) == bytes(48)
    key = ec.generate_private_key(ec.SECP256R1())
    entry = ring.add_key(key)
    assert entry.role is None and ring.ec_private_key(spki(key.public_key())) is key
    assert ring.associate_device_id(spki(key.public_key()), DEVICE_ID.upper())
    assert entry.device_id == DEVICE_ID and entry.role == "device"
    assert ring.device_public_key(DEVICE_ID) is not None
    with pytest.raises(ValueError):
        ring.add_key(key, device_id="nope")
    assert len(ring) == 3


def test_describe_is_plain_data() -> None:
    ring = one(DATA)
    desc = ring.describe()
    json.dumps(desc)  # serialisable
    tcp_file = [d for d in desc if d["kind"] == "rsa-public" and d["host"]]
    assert tcp_file and tcp_file[0]["port"] == 5683
