"""Key slots in device memory dumps (spec §1.4, particle-cli ``keys-specs.js``).

DCT (DFU alt-setting 1) offsets for Photon/P1/Electron and later, and the Spark Core's
external flash layout. :func:`extract_keys_from_dump` validates each slot by parsing it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.keys.errors import KeyFileError
from dissector.keys.serverfile import der_total_length, parse_server_key_file

__all__ = [
    "CORE_DEVICE_KEY_LEN",
    "CORE_DEVICE_KEY_OFFSET",
    "CORE_SERVER_KEY_LEN",
    "CORE_SERVER_KEY_OFFSET",
    "DCT_DEVICE_EC_KEY_LEN",
    "DCT_DEVICE_EC_KEY_OFFSET",
    "DCT_DEVICE_RSA_KEY_LEN",
    "DCT_DEVICE_RSA_KEY_OFFSET",
    "DCT_TCP_SERVER_KEY_LEN",
    "DCT_TCP_SERVER_KEY_OFFSET",
    "DCT_UDP_SERVER_KEY_LEN",
    "DCT_UDP_SERVER_KEY_OFFSET",
    "extract_keys_from_dump",
]

DCT_DEVICE_RSA_KEY_OFFSET = 34
DCT_DEVICE_RSA_KEY_LEN = 612
DCT_TCP_SERVER_KEY_OFFSET = 2082
DCT_TCP_SERVER_KEY_LEN = 512
DCT_DEVICE_EC_KEY_OFFSET = 3106
DCT_DEVICE_EC_KEY_LEN = 192
DCT_UDP_SERVER_KEY_OFFSET = 3298
DCT_UDP_SERVER_KEY_LEN = 320

CORE_SERVER_KEY_OFFSET = 0x1000
CORE_SERVER_KEY_LEN = 512
CORE_DEVICE_KEY_OFFSET = 0x2000
CORE_DEVICE_KEY_LEN = 1024


def _private_der(slot: bytes, kind: type) -> bytes | None:
    total = der_total_length(slot)
    if total is None:
        return None
    der = bytes(slot[:total])
    try:
        key = serialization.load_der_private_key(der, password=None)
    except Exception:  # junk in the slot
        return None
    return der if isinstance(key, kind) else None


def _server_file(slot: bytes) -> bytes | None:
    try:
        parse_server_key_file(slot)
    except KeyFileError:
        return None
    return bytes(slot)


def _slot(data: bytes, offset: int, length: int) -> bytes | None:
    return data[offset : offset + length] if len(data) >= offset + length else None


def extract_keys_from_dump(data: bytes) -> list[tuple[str, bytes]]:
    """Find the keys in a DCT dump or, failing that, a Spark Core external-flash dump.

    Returns ``(file name, bytes)`` pairs: device keys as trimmed DER
    (``device_rsa_key.der``, ``device_ec_key.der``), server keys as whole key files with
    their address block (``tcp_server_key.der`` 512 bytes, ``udp_server_key.der`` 320).
    Slots that do not parse are left out; an empty list means no layout matched.
    """
    found: list[tuple[str, bytes]] = []
    plan: list[tuple[str, int, int, str]] = [
        ("device_rsa_key.der", DCT_DEVICE_RSA_KEY_OFFSET, DCT_DEVICE_RSA_KEY_LEN, "rsa"),
        ("tcp_server_key.der", DCT_TCP_SERVER_KEY_OFFSET, DCT_TCP_SERVER_KEY_LEN, "server"),
        ("device_ec_key.der", DCT_DEVICE_EC_KEY_OFFSET, DCT_DEVICE_EC_KEY_LEN, "ec"),
        ("udp_server_key.der", DCT_UDP_SERVER_KEY_OFFSET, DCT_UDP_SERVER_KEY_LEN, "server"),
    ]
    core: list[tuple[str, int, int, str]] = [
        ("tcp_server_key.der", CORE_SERVER_KEY_OFFSET, CORE_SERVER_KEY_LEN, "server"),
        ("device_rsa_key.der", CORE_DEVICE_KEY_OFFSET, CORE_DEVICE_KEY_LEN, "rsa"),
    ]
    for layout in (plan, core):
        for name, offset, length, what in layout:
            slot = _slot(data, offset, length)
            if slot is None:
                continue
            if what == "server":
                blob = _server_file(slot)
            else:
                blob = _private_der(
                    slot, rsa.RSAPrivateKey if what == "rsa" else ec.EllipticCurvePrivateKey
                )
            if blob is not None:
                found.append((name, blob))
        if found:
            return found
    return found
