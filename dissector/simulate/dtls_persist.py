"""What a Device OS device keeps about its DTLS session and keys, as bytes (spec §1.4, §6.6).

* :func:`build_session_persist` — the binary ``SessionPersistData`` blob (32-bit ARM
  layout: 262 bytes today, or an older prefix such as the 220 bytes of Device OS 0.7/1.0);
  :func:`dissector.dtls.keys.parse_session_persist` reads it back.
* :func:`session_persist_text` — the same session in the text form
  :func:`dissector.dtls.keys.parse_session_persist_text` reads.
* :func:`keys_checksum` — ``keys_checksum`` as ``DTLSMessageChannel::init`` computes it.
* :func:`session_connection` — the 32-byte ``connection`` field (``SessionConnection``).
* :func:`udp_server_key_file` / :func:`device_key_der` — the cloud public key file (320
  bytes, address block at 192) and the device private key (SEC1 DER) as stored in flash.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dissector.dtls.keys import PersistedSession
from dissector.simulate.errors import SimulationError

__all__ = [
    "PERSIST_SIZES",
    "build_session_persist",
    "device_key_der",
    "keys_checksum",
    "server_address_block",
    "session_connection",
    "session_persist_text",
    "udp_server_key_file",
]

PERSIST_SIZES = (220, 228, 238, 254, 262)
"""``SessionPersistData`` sizes on 32-bit ARM: each adds fields at the end (spec §6.6)."""
_FULL = 262
UDP_KEY_FILE_LEN = 320
UDP_ADDRESS_OFFSET = 192
ADDRESS_BLOCK_LEN = 128
_AF_INET_LWIP = 2
_SOCKADDR_STORAGE_LEN = 28  # LwIP sockaddr_storage (IPv6-capable) on Gen3


def keys_checksum(server_public: bytes, device_private: bytes) -> int:
    """``crc32(le32(crc32(server key slot)) ‖ le32(crc32(device key slot)))``.

    ``server_public`` / ``device_private`` are the key buffers the system hands the
    protocol (here: the 320-byte server key file and the device key DER).
    """
    pair = struct.pack("<II", zlib.crc32(server_public), zlib.crc32(device_private))
    return zlib.crc32(pair)


def server_address_block(host: str, port: int) -> bytes:
    """The 128-byte ``ServerAddress`` block: IPv4 (type 0) or domain name (type 1), the
    port big-endian at offset 66, 0xFF fill."""
    block = bytearray(b"\xff" * ADDRESS_BLOCK_LEN)
    try:
        addr = ipaddress.IPv4Address(host)
        block[0:2] = b"\x00\x04"
        block[2:6] = addr.packed
    except ValueError:
        raw = host.encode("ascii", errors="strict")
        if not 1 <= len(raw) <= 63:
            raise SimulationError(f"server host name {host!r} must be 1..63 characters") from None
        block[0:2] = bytes((1, len(raw)))
        block[2 : 2 + len(raw)] = raw
    block[66:68] = struct.pack(">H", port)
    return bytes(block)


def udp_server_key_file(
    server_key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey,
    host: str = "10.0.0.1",
    port: int = 5684,
) -> bytes:
    """The 320-byte UDP server key file a device holds: SPKI DER, 0xFF fill, the address
    block at offset 192."""
    pub = (
        server_key.public_key()
        if isinstance(server_key, ec.EllipticCurvePrivateKey)
        else server_key
    )
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    out = bytearray(b"\xff" * UDP_KEY_FILE_LEN)
    out[: len(der)] = der
    out[UDP_ADDRESS_OFFSET : UDP_ADDRESS_OFFSET + ADDRESS_BLOCK_LEN] = server_address_block(
        host, port
    )
    return bytes(out)


def device_key_der(device_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The device private key as Device OS stores it: SEC1 ``ECPrivateKey`` DER (121 bytes)."""
    return device_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def session_connection(cloud_ip: str, cloud_port: int, address_block: bytes) -> bytes:
    """``SessionConnection`` (32 bytes): the cloud's LwIP ``sockaddr_in`` in a 28-byte
    ``sockaddr_storage`` and the CRC-32 of the server address block it was resolved from."""
    try:
        packed = ipaddress.IPv4Address(cloud_ip).packed
    except ValueError:
        raise SimulationError(f"session connection needs an IPv4 address: {cloud_ip!r}") from None
    sockaddr = struct.pack(">BBH4s8x", 16, _AF_INET_LWIP, cloud_port, packed)
    sockaddr += bytes(_SOCKADDR_STORAGE_LEN - len(sockaddr))
    return sockaddr + struct.pack("<I", zlib.crc32(address_block))


def _u32(value: int | None) -> bytes:
    return struct.pack("<I", (value or 0) & 0xFFFFFFFF)


def _u16(value: int | None) -> bytes:
    return struct.pack("<H", (value or 0) & 0xFFFF)


def _out_ctr(session: PersistedSession) -> bytes:
    """``epoch(2) ‖ sequence number(6)``, big-endian as mbedTLS keeps ``cur_out_ctr``."""
    if not 0 <= session.out_epoch <= 0xFFFF or not 0 <= session.out_seq < 1 << 48:
        raise SimulationError("out_ctr out of range")
    return session.out_epoch.to_bytes(2, "big") + session.out_seq.to_bytes(6, "big")


def build_session_persist(session: PersistedSession, size: int = _FULL) -> bytes:
    """The binary ``SessionPersistData`` of ``session`` (32-bit ARM, packed, little-endian).

    ``size`` is one of :data:`PERSIST_SIZES`: 262 (current) or an older prefix (220 =
    Device OS 0.7/1.0). Missing optional fields are written as zeros. Raises
    :class:`SimulationError` for a session that does not fit.
    """
    if size not in PERSIST_SIZES:
        raise SimulationError(f"size must be one of {PERSIST_SIZES}, not {size}")
    if session.master is None or len(session.master) != 48:
        raise SimulationError("a persisted session needs the 48-byte master secret")
    if len(session.client_random) != 32 or len(session.server_random) != 32:
        raise SimulationError("a persisted session needs both 32-byte hello randoms")
    if len(session.session_id) > 32:
        raise SimulationError("a session ID is at most 32 bytes")
    connection = session.connection or bytes(32)
    if len(connection) != 32:
        raise SimulationError("the connection field is 32 bytes")
    cid = session.cid or bytes(8)
    if len(cid) != 8:
        raise SimulationError("Device OS persists an 8-byte CID")
    out_ctr = _out_ctr(session)
    blob = (
        struct.pack("<HBB", size, session.persistent or 0, session.use_counter or 0)
        + connection
        + _u32(session.keys_checksum)
        + session.client_random
        + session.server_random
        + struct.pack("<III", session.ciphersuite, session.compression, len(session.session_id))
        + session.session_id.ljust(32, b"\x00")
        + session.master
        + _u16(session.in_epoch)
        + out_ctr
        + _u16(session.next_coap_id)
        + _u32(session.subscriptions_crc)
        + _u32(session.describe_app_crc)
        + _u32(session.describe_system_crc)
        + _u32(session.protocol_flags)
        + _u32(session.app_state_flags)
        + _u32(session.max_binary_size)
        + _u16(session.system_version)
        + _u16(session.max_message_size)
        + _u16(session.ota_chunk_size)
        + struct.pack("<QQ", session.in_window_top or 0, session.in_window or 0)
        + cid
    )
    assert len(blob) == _FULL
    return blob[:size]


def session_persist_text(session: PersistedSession, comment: str | None = None) -> str:
    """The session in the ``key value`` text form (hex bytes, ints), one field a line."""
    if session.master is None:
        raise SimulationError("a persisted session needs the master secret")
    lines = [f"# {comment}"] if comment else []
    lines += [
        f"client_random {session.client_random.hex()}",
        f"server_random {session.server_random.hex()}",
        f"ciphersuite 0x{session.ciphersuite:04x}",
        f"compression {session.compression}",
    ]
    if session.session_id:
        lines.append(f"session_id {session.session_id.hex()}")
    lines += [
        f"master {session.master.hex()}",
        f"in_epoch {session.in_epoch}",
        f"out_ctr {_out_ctr(session).hex()}",
    ]
    if session.next_coap_id is not None:
        lines.append(f"next_coap_id {session.next_coap_id}")
    if session.in_window_top is not None:
        lines.append(f"in_window_top {session.in_window_top}")
    if session.in_window is not None:
        lines.append(f"in_window 0x{session.in_window:016x}")
    if session.cid:
        lines.append(f"cid {session.cid.hex()}")
    return "\n".join(lines) + "\n"
