"""DTLS record layer: split one UDP datagram into records (spec §6.3, §6.4, §6.9, §10).

Besides the standard DTLS content types (20 CCS, 21 alert, 22 handshake, 23 application
data) Particle devices put three non-standard ones on the wire:

* 25: draft-ietf-tls-dtls-connection-id-05 record; an ``cid_len``-byte CID (8 on Device OS)
  sits between the sequence number and the length. Its real content type is inside the
  encrypted inner plaintext.
* 253: a type-25 record whose first byte was rewritten while the device "moves" a resumed
  session (v4.0.0+). Parsed exactly like 25.
* 254: a pre-3.1 "moved" application-data record: the datagram is ``record ‖ device_id(12) ‖
  0x0c``. The trailer is stripped and the record is treated as type 23.

Parsing never raises: problems are returned as strings in :attr:`DatagramParse.errors`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CT_TLS12_CID = 25
CT_MOVED_CID = 253
CT_MOVED_APPLICATION_DATA = 254

VERSION_DTLS_1_0 = 0xFEFF
VERSION_DTLS_1_2 = 0xFEFD

DEFAULT_CID_LEN = 8
"""CID length Device OS uses for the records it sends (``DTLS_CID_SIZE``)."""

DEVICE_ID_TRAILER_LEN = 13
"""Length of the ``device_id(12) ‖ 0x0c`` trailer of a type-254 datagram."""

RECORD_HEADER_LEN = 13

CONTENT_TYPE_NAMES: dict[int, str] = {
    CT_CHANGE_CIPHER_SPEC: "change_cipher_spec",
    CT_ALERT: "alert",
    CT_HANDSHAKE: "handshake",
    CT_APPLICATION_DATA: "application_data",
    CT_TLS12_CID: "tls12_cid",
    CT_MOVED_CID: "moved_tls12_cid",
    CT_MOVED_APPLICATION_DATA: "moved_application_data",
}

_KNOWN_WIRE_TYPES = frozenset(CONTENT_TYPE_NAMES)
_KNOWN_VERSIONS = frozenset((VERSION_DTLS_1_0, VERSION_DTLS_1_2))
_EFFECTIVE_TYPE = {
    CT_MOVED_CID: CT_TLS12_CID,
    CT_MOVED_APPLICATION_DATA: CT_APPLICATION_DATA,
}
_HEADER = struct.Struct(">BHHHI")  # type, version, epoch, seq high 16, seq low 32
_U16 = struct.Struct(">H")


@dataclass(slots=True)
class DtlsRecord:
    """One DTLS record as found in a datagram.

    ``content_type`` is the type to process the record as (25 for 25/253, 23 for 254);
    ``wire_type`` is the first byte as seen on the wire. ``cid`` is set only for CID
    records. ``header`` holds the header bytes exactly as on the wire (13 bytes, or
    13 + CID length for CID records) and ``offset`` the record's position in the datagram.
    """

    content_type: int
    wire_type: int
    version: int
    epoch: int
    seq: int
    cid: bytes | None
    fragment: bytes
    header: bytes
    offset: int

    @property
    def moved(self) -> bool:
        """True for the Particle "move session" markings 253 and 254."""
        return self.wire_type in (CT_MOVED_CID, CT_MOVED_APPLICATION_DATA)

    @property
    def seq_num(self) -> bytes:
        """The 8-byte ``epoch ‖ sequence number`` used in MACs, AADs and nonces."""
        return ((self.epoch << 48) | self.seq).to_bytes(8, "big")

    @property
    def wire_length(self) -> int:
        """Bytes the record occupies in the datagram (header + fragment)."""
        return len(self.header) + len(self.fragment)


@dataclass(slots=True)
class DatagramParse:
    """Result of :func:`parse_datagram`.

    ``trailer`` is the 13-byte ``device_id ‖ 0x0c`` trailer of a type-254 datagram (see
    :attr:`device_id`); ``keepalive`` flags 0- and 1-byte datagrams, which Device OS ignores.
    """

    records: list[DtlsRecord] = field(default_factory=list)
    trailer: bytes | None = None
    errors: list[str] = field(default_factory=list)
    keepalive: bool = False

    @property
    def device_id(self) -> bytes | None:
        """The 12-byte device ID from a type-254 trailer, if any."""
        return self.trailer[:12] if self.trailer is not None else None


def _moved_trailer(data: bytes, cid_len: int) -> bool:
    """Whether ``data`` (first byte 254) ends with a device-ID trailer after its records."""
    n = len(data)
    if n < RECORD_HEADER_LEN + DEVICE_ID_TRAILER_LEN or data[-1] != 12:
        return False
    # The trailer is only present when the records end exactly 13 bytes before the end.
    end = n - DEVICE_ID_TRAILER_LEN
    pos = 0
    while pos < end:
        if end - pos < RECORD_HEADER_LEN:
            return False
        wire_type = data[pos]
        hlen = RECORD_HEADER_LEN
        if wire_type in (CT_TLS12_CID, CT_MOVED_CID):
            hlen += cid_len
            if end - pos < hlen:
                return False
        (length,) = _U16.unpack_from(data, pos + hlen - 2)
        pos += hlen + length
    return pos == end


def parse_datagram(data: bytes, cid_len: int = DEFAULT_CID_LEN) -> DatagramParse:
    """Split a UDP payload into DTLS records.

    ``cid_len`` is the length of the CID carried by type 25/253 records (it is not on the
    wire: it comes from the handshake's extension 254 or a persisted session). Several
    records per datagram are supported; a truncated or unrecognisable record ends parsing
    with an error string, keeping the records parsed before it. Never raises.
    """
    result = DatagramParse()
    data = bytes(data)
    n = len(data)
    if n <= 1:
        result.keepalive = True
        return result
    if data[0] == CT_MOVED_APPLICATION_DATA:
        if _moved_trailer(data, cid_len):
            result.trailer = data[-DEVICE_ID_TRAILER_LEN:]
            data = data[:-DEVICE_ID_TRAILER_LEN]
            n = len(data)
        else:
            result.errors.append("type-254 datagram without a device-ID trailer")
    records = result.records
    pos = 0
    while pos < n:
        if n - pos < RECORD_HEADER_LEN:
            result.errors.append(
                f"truncated record header at offset {pos}: {n - pos} of {RECORD_HEADER_LEN} bytes"
            )
            break
        wire_type, version, epoch, seq_hi, seq_lo = _HEADER.unpack_from(data, pos)
        if wire_type not in _KNOWN_WIRE_TYPES:
            result.errors.append(f"unknown record content type {wire_type} at offset {pos}")
            break
        if version not in _KNOWN_VERSIONS:
            result.errors.append(f"unknown record version 0x{version:04x} at offset {pos}")
            break
        cid: bytes | None = None
        hlen = RECORD_HEADER_LEN
        if wire_type in (CT_TLS12_CID, CT_MOVED_CID):
            hlen += cid_len
            if n - pos < hlen:
                result.errors.append(
                    f"truncated CID record header at offset {pos}: {n - pos} of {hlen} bytes"
                )
                break
            cid = data[pos + 11 : pos + 11 + cid_len]
        (length,) = _U16.unpack_from(data, pos + hlen - 2)
        end = pos + hlen + length
        if end > n:
            result.errors.append(
                f"truncated record at offset {pos}: length {length}, {n - pos - hlen} bytes present"
            )
            break
        records.append(
            DtlsRecord(
                _EFFECTIVE_TYPE.get(wire_type, wire_type),
                wire_type,
                version,
                epoch,
                (seq_hi << 32) | seq_lo,
                cid,
                data[pos + hlen : end],
                data[pos : pos + hlen],
                pos,
            )
        )
        pos = end
    return result


def build_record(
    content_type: int,
    epoch: int,
    seq: int,
    fragment: bytes,
    *,
    version: int = VERSION_DTLS_1_2,
    cid: bytes | None = None,
) -> bytes:
    """Serialise one record (``cid`` is written after the sequence number when given)."""
    if not 0 <= seq < 1 << 48 or not 0 <= epoch < 1 << 16 or len(fragment) > 0xFFFF:
        raise ValueError("record field out of range")
    head = struct.pack(">BHHHI", content_type, version, epoch, seq >> 32, seq & 0xFFFFFFFF)
    return head + (cid or b"") + _U16.pack(len(fragment)) + fragment
