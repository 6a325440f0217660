"""Key generation in the formats Particle users have (spec §1.2, §1.4).

* Device keys as ``particle keys new`` writes them (``openssl genrsa 1024``):
  ``<name>.pem`` (PKCS#1 PEM private key), ``<name>.pub.pem`` (SubjectPublicKeyInfo PEM),
  ``<name>.der`` (PKCS#1 DER private key, the form flashed to the device).
* Server keys as a local cloud keeps them (``openssl genrsa 2048``): ``default_key.pem``,
  ``default_key.pub.pem``, ``default_key.pub.der`` and the 512-byte server key file the
  device holds (DER, 0xFF fill, address block at 384, port at 450), named as particle-cli
  names it (``default_key.pub-<host>-rsa.der``, ``default_key.pub-padded.der`` without host).
* Memory dumps holding keys: a device's DCT (DFU alt-setting 1) and the Spark Core's
  external flash, with the offsets of :mod:`dissector.keys.dump`.

Keys come from ``cryptography`` (secure) unless a :class:`ByteSource` is given: then they
are derived deterministically from it (reproducible simulations; never for real devices).
Device keys are always firmware-readable (1024-bit modulus, full-length CRT values, e = 65537).
"""

from __future__ import annotations

import ipaddress
import math
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.crypto import firmware_can_read_private_key
from dissector.keys.dump import (
    CORE_DEVICE_KEY_LEN,
    CORE_DEVICE_KEY_OFFSET,
    CORE_SERVER_KEY_LEN,
    CORE_SERVER_KEY_OFFSET,
    DCT_DEVICE_EC_KEY_LEN,
    DCT_DEVICE_EC_KEY_OFFSET,
    DCT_DEVICE_RSA_KEY_LEN,
    DCT_DEVICE_RSA_KEY_OFFSET,
    DCT_TCP_SERVER_KEY_LEN,
    DCT_TCP_SERVER_KEY_OFFSET,
    DCT_UDP_SERVER_KEY_LEN,
    DCT_UDP_SERVER_KEY_OFFSET,
)
from dissector.keys.serverfile import (
    ADDRESS_BLOCK_LEN,
    PORT_OFFSET,
    TCP_ADDRESS_OFFSET,
    TCP_SERVER_KEY_FILE_LEN,
    UDP_ADDRESS_OFFSET,
    UDP_SERVER_KEY_FILE_LEN,
)
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource

__all__ = [
    "CORE_FLASH_SIZE",
    "DCT_SIZE",
    "DEVICE_KEY_BITS",
    "SERVER_KEY_BITS",
    "address_block",
    "core_flash_dump",
    "dct_dump",
    "device_key_files",
    "generate_device_id",
    "generate_rsa_key",
    "server_key_file",
    "server_key_file_name",
    "server_key_files",
    "write_files",
]

DEVICE_KEY_BITS = 1024
SERVER_KEY_BITS = 2048
#: Size of a synthetic DCT dump (alt-setting 1 is 16 KiB on the Photon).
DCT_SIZE = 0x4000
#: Size of a synthetic Spark Core external-flash dump (up to the end of the key area).
CORE_FLASH_SIZE = 0x3000
_E = 65537
_SMALL_PRIMES = [p for p in range(3, 20000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]
_SMALL_PRODUCT = math.prod(_SMALL_PRIMES)


# -- RSA ------------------------------------------------------------------------------------


def _probable_prime(n: int, draw: ByteSource) -> bool:
    """Trial division, then Miller-Rabin with base 2 and random bases (FIPS 186-4 C.3
    round counts for random candidates: 5 for ≥ 1024 bits, 8 below)."""
    if math.gcd(n, _SMALL_PRODUCT) != 1:
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while not d & 1:
        d >>= 1
        s += 1
    rounds = 5 if n.bit_length() >= 1024 else 8
    for r in range(rounds):
        a = 2 if r == 0 else 2 + int.from_bytes(draw(n.bit_length() // 8 + 8), "big") % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, draw: ByteSource) -> int:
    top = 0b11 << (bits - 2)  # two top bits set: the product has exactly 2 * bits bits
    while True:
        n = int.from_bytes(draw(bits // 8), "big") | top | 1
        if math.gcd(n - 1, _E) == 1 and _probable_prime(n, draw):
            return n


def _full_length(key: rsa.RSAPrivateKey) -> bool:
    """The CRT values fill their byte widths (the firmware's fixed-size ASN.1 walker)."""
    nums = key.private_numbers()
    half = key.key_size // 2
    return (
        nums.d.bit_length() > key.key_size - 8
        and all(v.bit_length() > half - 8 for v in (nums.dmp1, nums.dmq1, nums.iqmp))
        and nums.public_numbers.e == _E
    )


def _deterministic_rsa(bits: int, draw: ByteSource) -> rsa.RSAPrivateKey:
    while True:
        p, q = _prime(bits // 2, draw), _prime(bits // 2, draw)
        if p == q:
            continue
        p, q = max(p, q), min(p, q)
        d = pow(_E, -1, math.lcm(p - 1, q - 1))
        numbers = rsa.RSAPrivateNumbers(
            p,
            q,
            d,
            rsa.rsa_crt_dmp1(d, p),
            rsa.rsa_crt_dmq1(d, q),
            rsa.rsa_crt_iqmp(p, q),
            rsa.RSAPublicNumbers(_E, p * q),
        )
        key = numbers.private_key()
        if _full_length(key):
            return key


def generate_rsa_key(
    bits: int = DEVICE_KEY_BITS, rng: ByteSource | int | None = None
) -> rsa.RSAPrivateKey:
    """An RSA key with e = 65537 whose DER the device firmware can read.

    ``rng=None``: secure (``cryptography``). A :class:`ByteSource` or seed: derived
    deterministically from it (same seed, same key; for simulations only).
    """
    if bits not in (DEVICE_KEY_BITS, SERVER_KEY_BITS) and (bits < 512 or bits % 16):
        raise SimulationError(f"unsupported RSA key size {bits}")
    draw = None if rng is None else (rng if isinstance(rng, ByteSource) else ByteSource(rng))
    while True:
        if draw is None:
            key = rsa.generate_private_key(public_exponent=_E, key_size=bits)
        else:
            key = _deterministic_rsa(bits, draw)
        if _full_length(key) and (
            bits != DEVICE_KEY_BITS or firmware_can_read_private_key(_pkcs1_der(key))
        ):
            return key


def generate_device_id(rng: ByteSource | int | None = None) -> str:
    """A random 24-hex-character device ID (from ``rng``, or the OS when None)."""
    raw = (
        os.urandom(12)
        if rng is None
        else (rng if isinstance(rng, ByteSource) else ByteSource(rng))(12)
    )
    return raw.hex()


# -- encodings ------------------------------------------------------------------------------


def _pkcs1_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _pkcs1_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _spki(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, encoding: serialization.Encoding) -> bytes:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)


def device_key_files(key: rsa.RSAPrivateKey, name: str) -> dict[str, bytes]:
    """``{<name>.pem, <name>.pub.pem, <name>.der}`` as particle-cli writes them."""
    return {
        f"{name}.pem": _pkcs1_pem(key),
        f"{name}.pub.pem": _spki(key, serialization.Encoding.PEM),
        f"{name}.der": _pkcs1_der(key),
    }


def address_block(host: str | None, port: int | None = None) -> bytes:
    """The 128-byte server address block (spec §1.4): type, length, value, port at +66.

    An IPv4 address gives type 0, anything else a domain name (type 1, ≤ 63 ASCII
    characters, a zero byte added after an odd length as particle-cli does); ``host=None``
    gives type 0xFF (no address). ``port=None`` leaves 0xFFFF (the default port).
    """
    block = bytearray(b"\xff" * ADDRESS_BLOCK_LEN)
    if host is not None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if isinstance(ip, ipaddress.IPv4Address):
            value = b"\x00\x04" + ip.packed
        elif ip is not None:
            raise SimulationError(f"the address block holds IPv4 addresses only, not {host}")
        else:
            raw = host.encode("ascii", errors="replace")
            if not 1 <= len(raw) <= 63 or any(b < 0x21 or b > 0x7E for b in raw):
                raise SimulationError(
                    f"{host!r} is not a domain name of 1..63 printable characters"
                )
            value = bytes((1, len(raw))) + raw + (b"\x00" if len(raw) % 2 else b"")
        block[: len(value)] = value
    if port is not None:
        if not 0 < port < 0xFFFF:
            raise SimulationError(f"port {port} is out of range")
        block[PORT_OFFSET : PORT_OFFSET + 2] = port.to_bytes(2, "big")
    return bytes(block)


def server_key_file(
    public_key: rsa.RSAPublicKey | rsa.RSAPrivateKey | ec.EllipticCurvePublicKey,
    host: str | None = None,
    port: int | None = None,
) -> bytes:
    """The device's server key file: SPKI DER, 0xFF fill, address block; 512 bytes for an
    RSA (TCP) key, 320 bytes for an EC (UDP) key."""
    if isinstance(public_key, rsa.RSAPrivateKey):
        public_key = public_key.public_key()
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(public_key, rsa.RSAPublicKey):
        size, offset = TCP_SERVER_KEY_FILE_LEN, TCP_ADDRESS_OFFSET
    else:
        size, offset = UDP_SERVER_KEY_FILE_LEN, UDP_ADDRESS_OFFSET
    if len(der) > offset:
        raise SimulationError(f"a {len(der)}-byte public key does not fit before offset {offset}")
    out = bytearray(b"\xff" * size)
    out[: len(der)] = der
    out[offset : offset + ADDRESS_BLOCK_LEN] = address_block(host, port)
    return bytes(out[:size])


def server_key_file_name(host: str | None, base: str = "default_key.pub") -> str:
    """particle-cli's name for the key file: ``<base>-<host, dots as _>-rsa.der`` or
    ``<base>-padded.der`` without a host."""
    if host is None:
        return f"{base}-padded.der"
    return f"{base}-{host.replace('.', '_')}-rsa.der"


def server_key_files(
    key: rsa.RSAPrivateKey, host: str | None = None, port: int | None = None
) -> dict[str, bytes]:
    """A local cloud's key pair (``default_key.pem``, ``default_key.pub.pem``,
    ``default_key.pub.der``) plus the 512-byte file for the device."""
    return {
        "default_key.pem": _pkcs1_pem(key),
        "default_key.pub.pem": _spki(key, serialization.Encoding.PEM),
        "default_key.pub.der": _spki(key, serialization.Encoding.DER),
        server_key_file_name(host): server_key_file(key.public_key(), host, port),
    }


# -- dumps ----------------------------------------------------------------------------------


def _place(buf: bytearray, offset: int, size: int, data: bytes) -> None:
    if len(data) > size:
        raise SimulationError(f"{len(data)} bytes do not fit a {size}-byte slot")
    buf[offset : offset + len(data)] = data


def dct_dump(
    device_key: rsa.RSAPrivateKey | None = None,
    tcp_server_file: bytes | None = None,
    device_ec_key: ec.EllipticCurvePrivateKey | None = None,
    udp_server_file: bytes | None = None,
    *,
    size: int = DCT_SIZE,
) -> bytes:
    """A DCT image (0xFF where nothing is stored) with keys at particle-cli's offsets."""
    buf = bytearray(b"\xff" * size)
    if device_key is not None:
        _place(buf, DCT_DEVICE_RSA_KEY_OFFSET, DCT_DEVICE_RSA_KEY_LEN, _pkcs1_der(device_key))
    if tcp_server_file is not None:
        _place(buf, DCT_TCP_SERVER_KEY_OFFSET, DCT_TCP_SERVER_KEY_LEN, tcp_server_file)
    if device_ec_key is not None:
        der = device_ec_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        _place(buf, DCT_DEVICE_EC_KEY_OFFSET, DCT_DEVICE_EC_KEY_LEN, der)
    if udp_server_file is not None:
        _place(buf, DCT_UDP_SERVER_KEY_OFFSET, DCT_UDP_SERVER_KEY_LEN, udp_server_file)
    return bytes(buf)


def core_flash_dump(
    device_key: rsa.RSAPrivateKey | None = None,
    tcp_server_file: bytes | None = None,
    *,
    size: int = CORE_FLASH_SIZE,
) -> bytes:
    """A Spark Core external-flash image: server key file at 0x1000, device key at 0x2000."""
    buf = bytearray(b"\xff" * size)
    if tcp_server_file is not None:
        _place(buf, CORE_SERVER_KEY_OFFSET, CORE_SERVER_KEY_LEN, tcp_server_file)
    if device_key is not None:
        _place(buf, CORE_DEVICE_KEY_OFFSET, CORE_DEVICE_KEY_LEN, _pkcs1_der(device_key))
    return bytes(buf)


def write_files(
    directory: str | os.PathLike[str], files: dict[str, bytes], *, overwrite: bool = False
) -> list[Path]:
    """Write ``files`` into ``directory`` (created if needed); raises
    :class:`SimulationError` instead of replacing an existing file unless ``overwrite``.
    Private keys are written with mode 0600."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"{out}: cannot create the directory ({exc.strerror})") from None
    paths = [out / name for name in files]
    if not overwrite:
        existing = [str(p) for p in paths if p.exists()]
        if existing:
            raise SimulationError(f"not overwriting {', '.join(existing)}")
    for path, data in zip(paths, files.values(), strict=True):
        private = b"PRIVATE KEY" in data or (
            path.suffix == ".der"
            and not path.name.endswith((".pub.der", "-rsa.der", "-padded.der"))
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise SimulationError(f"{path}: cannot write ({exc.strerror})") from None
    return paths
