"""Server key files with an appended address block (spec §1.4).

TCP: 512 bytes = RSA SPKI DER, 0xFF fill, address block at 384 (port at 450).
UDP: 320 bytes = EC SPKI DER, 0xFF fill, address block at 192 (port at 258).
Address block: type (0 IPv4, 1 domain, 0xFF none), length, value, port u16 BE at +66.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from dissector.keys.errors import KeyFileError

__all__ = [
    "ADDRESS_BLOCK_LEN",
    "DEFAULT_TCP_PORT",
    "DEFAULT_UDP_PORT",
    "TCP_ADDRESS_OFFSET",
    "TCP_SERVER_KEY_FILE_LEN",
    "UDP_ADDRESS_OFFSET",
    "UDP_SERVER_KEY_FILE_LEN",
    "ServerAddress",
    "ServerKeyFile",
    "der_total_length",
    "parse_address_block",
    "parse_server_key_file",
]

TCP_SERVER_KEY_FILE_LEN = 512
UDP_SERVER_KEY_FILE_LEN = 320
TCP_ADDRESS_OFFSET = 384
UDP_ADDRESS_OFFSET = 192
ADDRESS_BLOCK_LEN = 128
PORT_OFFSET = 66
DEFAULT_TCP_PORT = 5683
DEFAULT_UDP_PORT = 5684
MAX_DOMAIN_LEN = 63


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """A decoded server address block.

    ``kind`` is ``"ipv4"`` or ``"domain"``; ``port_is_default`` when the stored port was 0
    or 0xFFFF; ``legacy_length`` for the old IPv4 form with length byte 0 (``dtls.md``),
    which current firmware rejects.
    """

    kind: str
    host: str
    port: int
    port_is_default: bool = False
    legacy_length: bool = False

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, repr=False)
class ServerKeyFile:
    """A parsed 512-byte (TCP) or 320-byte (UDP) server key file."""

    transport: str
    public_key: PublicKeyTypes
    public_der: bytes
    address: ServerAddress | None
    address_problem: str | None = None

    def __repr__(self) -> str:
        return (
            f"ServerKeyFile(transport={self.transport!r}, key={type(self.public_key).__name__}, "
            f"address={self.address!s})"
        )


def der_total_length(data: bytes) -> int | None:
    """Total length (header included) of the DER SEQUENCE at offset 0, or None if there is
    no plausible one fitting in ``data``."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        total = 2 + first
    else:
        nbytes = first & 0x7F
        if nbytes == 0 or nbytes > 4 or len(data) < 2 + nbytes:
            return None
        total = 2 + nbytes + int.from_bytes(data[2 : 2 + nbytes], "big")
    return total if total <= len(data) else None


def parse_address_block(block: bytes, default_port: int) -> tuple[ServerAddress | None, str | None]:
    """Decode an address block: ``(address, None)``, ``(None, None)`` when the block says
    "no address" (type 0xFF), or ``(None, problem)``."""
    if len(block) < PORT_OFFSET + 2:
        return None, f"address block is {len(block)} bytes, at least {PORT_OFFSET + 2} needed"
    kind, length = block[0], block[1]
    port = int.from_bytes(block[PORT_OFFSET : PORT_OFFSET + 2], "big")
    port_default = port in (0, 0xFFFF)
    if port_default:
        port = default_port
    if kind == 0xFF:
        return None, None
    if kind == 0:
        if length not in (0, 4):
            return None, f"IPv4 address block with length {length} (must be 4)"
        host = ".".join(str(b) for b in block[2:6])
        return ServerAddress("ipv4", host, port, port_default, legacy_length=length == 0), None
    if kind == 1:
        if not 1 <= length <= MAX_DOMAIN_LEN:
            return None, f"domain name address block with length {length} (must be 1..63)"
        raw = block[2 : 2 + length]
        if any(b < 0x21 or b > 0x7E for b in raw):
            return None, "domain name address block contains non-printable bytes"
        return ServerAddress("domain", raw.decode("ascii"), port, port_default), None
    return None, f"unknown address type 0x{kind:02x}"


def parse_server_key_file(data: bytes) -> ServerKeyFile:
    """Parse a 512-byte TCP or 320-byte UDP server key file; raises :class:`KeyFileError`."""
    if len(data) == TCP_SERVER_KEY_FILE_LEN:
        transport, offset, default_port = "tcp", TCP_ADDRESS_OFFSET, DEFAULT_TCP_PORT
    elif len(data) == UDP_SERVER_KEY_FILE_LEN:
        transport, offset, default_port = "udp", UDP_ADDRESS_OFFSET, DEFAULT_UDP_PORT
    else:
        raise KeyFileError(
            f"a server key file is 512 (TCP) or 320 (UDP) bytes, this is {len(data)} bytes"
        )
    total = der_total_length(data)
    if total is None or total > offset:
        raise KeyFileError("no DER public key at the start of the server key file")
    try:
        key = serialization.load_der_public_key(bytes(data[:total]))
    except Exception as exc:  # cryptography raises several types on junk
        raise KeyFileError(f"server key file does not start with a public key ({exc})") from None
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    address, problem = parse_address_block(data[offset : offset + ADDRESS_BLOCK_LEN], default_port)
    return ServerKeyFile(transport, key, der, address, problem)
