"""Scapy layers for Particle's DTLS 1.2 records (spec §6.3, §6.4, §6.9, §10).

Not ``scapy.layers.tls``: that layer keeps global state and knows neither the draft
connection ID nor Particle's move-session records. These are small, stateless layers that
dissect exactly what :func:`dissector.dtls.records.parse_datagram` splits:

* :class:`ParticleDtlsDatagram` - one UDP payload: ``records`` (a list of
  :class:`ParticleDtlsRecord`), the bytes no record could be read from (``undecoded``) and,
  on a pre-3.1 "moved" datagram, the :class:`ParticleDtlsMoveTrailer`;
* :class:`ParticleDtlsRecord` - ``content_type`` (20-23, 25 ``tls12_cid``, 253 moved CID,
  254 moved application data), ``version``, ``epoch``, ``sequence_number`` (48 bits), the
  ``cid`` of type 25/253 records (device to cloud only; its length is not on the wire:
  ``cid_len``, 8 on Device OS) and ``length``; the payload is the fragment:
  :class:`~dissector.scapy.dtls_handshake.DtlsHandshake`,
  :class:`~dissector.scapy.dtls_handshake.DtlsChangeCipherSpec` or
  :class:`~dissector.scapy.dtls_handshake.DtlsAlert` in epoch 0, else
  :class:`DtlsCiphertext`;
* :class:`DtlsCiphertext` - a protected fragment; once the core decrypted it, its payload is
  the decrypted view (never written by ``bytes()``): the CoAP message, the alert or the
  Finished, behind a :class:`DtlsInnerPlaintext` (real content type and zero padding) for a
  connection-ID record;
* :class:`ParticleDtlsMoveTrailer` - ``device_id`` (12 bytes) and ``id_length`` (0x0c).

Every layer builds what it dissects, byte for byte; lengths left as None are derived.
Nothing is decrypted here: :class:`~dissector.scapy.ParticleSession` attaches what the core
decrypted.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.config import conf
from scapy.fields import (
    BitField,
    ByteEnumField,
    ByteField,
    ConditionalField,
    PacketListField,
    ShortField,
    XShortEnumField,
    XStrField,
    XStrLenField,
)
from scapy.packet import Packet

from dissector.coap import CoapError
from dissector.dtls.records import (
    CONTENT_TYPE_NAMES,
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CT_MOVED_APPLICATION_DATA,
    CT_MOVED_CID,
    CT_TLS12_CID,
    DEFAULT_CID_LEN,
    DEVICE_ID_TRAILER_LEN,
    RECORD_HEADER_LEN,
    VERSION_DTLS_1_2,
)
from dissector.scapy.dtls_handshake import (
    VERSIONS,
    DtlsAlert,
    DtlsChangeCipherSpec,
    DtlsHandshake,
    DtlsLayerError,
    _fragment_ok,
)
from dissector.scapy.fields import DeviceIdField
from dissector.scapy.handshake import EncryptedLayer, ParticleLayer

__all__ = [
    "DtlsCiphertext",
    "DtlsInnerPlaintext",
    "ParticleDtlsDatagram",
    "ParticleDtlsMoveTrailer",
    "ParticleDtlsRecord",
    "record_payload_class",
]

_CID_TYPES = (CT_TLS12_CID, CT_MOVED_CID)
_KNOWN_VERSIONS = frozenset(VERSIONS)


def _cid_len(pkt: Packet) -> int:
    """The CID length for a type-25/253 record: the record's own ``cid_len``, else its
    datagram's, else Device OS's 8."""
    own = getattr(pkt, "cid_len", None)
    if own is None and pkt.parent is not None:
        own = getattr(pkt.parent, "cid_len", None)
    return DEFAULT_CID_LEN if own is None else int(own)


def record_payload_class(content_type: int, epoch: int, fragment: bytes) -> type[Packet]:
    """The layer a record fragment is dissected as: the clear handshake, ChangeCipherSpec
    and alert of epoch 0 (when well formed), else :class:`DtlsCiphertext` (the core's rule:
    an epoch-0 record other than a CID record is in clear)."""
    if epoch == 0:
        if content_type == CT_HANDSHAKE and _fragment_ok(fragment):
            return DtlsHandshake
        if content_type == CT_CHANGE_CIPHER_SPEC and len(fragment) == 1:
            return DtlsChangeCipherSpec
        if content_type == CT_ALERT and len(fragment) == 2:
            return DtlsAlert
        if content_type in (CT_HANDSHAKE, CT_CHANGE_CIPHER_SPEC, CT_ALERT):
            return conf.raw_layer
    return DtlsCiphertext


class _DtlsLayer(ParticleLayer):
    """A layer that keeps a ``cid_len`` given at construction (for dissection) on copy."""

    cid_len: int | None = None

    def __init__(self, _pkt: bytes = b"", *args: Any, cid_len: int | None = None, **kw: Any):
        object.__setattr__(self, "cid_len", cid_len)
        super().__init__(_pkt, *args, **kw)

    def copy(self) -> Any:
        clone = super().copy()
        object.__setattr__(clone, "cid_len", self.cid_len)
        if "events" in self.__dict__:
            object.__setattr__(clone, "events", list(self.__dict__["events"]))
        return clone


class ParticleDtlsRecord(_DtlsLayer):
    """One DTLS record. ``cid`` exists for content types 25 and 253 only; ``length`` is the
    fragment's length (derived when None). ``cid_len`` (keyword, not a field) is the CID
    length to dissect with (default: the datagram's, else 8).

    ``content_type`` 254 (a moved application-data record) and 253 (a moved CID record) are
    kept as sent; :attr:`effective_type` is what the record is processed as (23, 25).
    """

    name = "Particle DTLS Record"
    fields_desc: ClassVar[list[Any]] = [
        ByteEnumField("content_type", CT_APPLICATION_DATA, CONTENT_TYPE_NAMES),
        XShortEnumField("version", VERSION_DTLS_1_2, VERSIONS),
        ShortField("epoch", 0),
        BitField("sequence_number", 0, 48),
        ConditionalField(
            XStrLenField("cid", b"", length_from=_cid_len),
            lambda pkt: pkt.getfieldval("content_type") in _CID_TYPES,
        ),
        ShortField("length", None),
    ]

    def pre_dissect(self, s: bytes) -> bytes:
        hlen = RECORD_HEADER_LEN + (_cid_len(self) if s[:1] and s[0] in _CID_TYPES else 0)
        if len(s) < hlen:
            raise DtlsLayerError(f"truncated DTLS record header: {len(s)} of {hlen} bytes")
        return s

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        n = self.length or 0
        return s[:n], s[n:]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return record_payload_class(self.content_type, self.epoch, payload)

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.length is None:
            pkt = pkt[:-2] + len(pay).to_bytes(2, "big")
        return pkt + pay

    @property
    def effective_type(self) -> int:
        """The type the record is processed as: 25 for 253, 23 for 254, else as sent."""
        return {CT_MOVED_CID: CT_TLS12_CID, CT_MOVED_APPLICATION_DATA: CT_APPLICATION_DATA}.get(
            self.content_type, self.content_type
        )

    @property
    def moved(self) -> bool:
        """True for Particle's move-session markings 253 and 254."""
        return self.content_type in (CT_MOVED_CID, CT_MOVED_APPLICATION_DATA)

    @property
    def fragment_bytes(self) -> bytes:
        """The record's fragment as on the wire."""
        return bytes(self.payload) if self.payload else b""

    def mysummary(self) -> str:
        ctype = CONTENT_TYPE_NAMES.get(self.content_type, str(self.content_type))
        cid = f" cid={bytes(self.cid).hex()}" if self.content_type in _CID_TYPES else ""
        return f"DTLS {ctype} {self.epoch}/{self.sequence_number}{cid}"


class ParticleDtlsMoveTrailer(Packet):
    """The ``device_id ‖ 0x0c`` trailer of a type-254 datagram (Device OS 0.5 … 3.0
    resuming a session from a new address, spec §6.4)."""

    name = "Particle DTLS Move Trailer"
    fields_desc: ClassVar[list[Any]] = [
        DeviceIdField("device_id"),
        ByteField("id_length", 12),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return b"", s

    def mysummary(self) -> Any:
        return f"moved device {bytes(self.device_id).hex()}", [ParticleDtlsDatagram]


def _records_end(data: bytes, cid_len: int) -> int:
    """Where the well-formed records of ``data`` end, by the fast parser's rules."""
    pos, n = 0, len(data)
    while n - pos >= RECORD_HEADER_LEN:
        wire_type = data[pos]
        version = int.from_bytes(data[pos + 1 : pos + 3], "big")
        if wire_type not in CONTENT_TYPE_NAMES or version not in _KNOWN_VERSIONS:
            break
        hlen = RECORD_HEADER_LEN + (cid_len if wire_type in _CID_TYPES else 0)
        if n - pos < hlen:
            break
        end = pos + hlen + int.from_bytes(data[pos + hlen - 2 : pos + hlen], "big")
        if end > n:
            break
        pos = end
    return pos


def _has_trailer(data: bytes, cid_len: int) -> bool:
    """A type-254 datagram whose records end exactly 13 bytes before its end, on 0x0c."""
    n = len(data)
    if n < RECORD_HEADER_LEN + DEVICE_ID_TRAILER_LEN or data[0] != CT_MOVED_APPLICATION_DATA:
        return False
    if data[-1] != 12:
        return False
    end = n - DEVICE_ID_TRAILER_LEN
    pos = 0
    while pos < end:
        if end - pos < RECORD_HEADER_LEN:
            return False
        hlen = RECORD_HEADER_LEN + (cid_len if data[pos] in _CID_TYPES else 0)
        if end - pos < hlen:
            return False
        pos += hlen + int.from_bytes(data[pos + hlen - 2 : pos + hlen], "big")
    return pos == end


class ParticleDtlsDatagram(_DtlsLayer):
    """One UDP payload of Particle's DTLS: its ``records``, then ``undecoded`` bytes where a
    record could not be read (unknown type or version, truncated); the payload is the
    :class:`ParticleDtlsMoveTrailer` of a type-254 datagram. Dissecting never raises;
    building gives the datagram back.

    ``cid_len`` (keyword) is the CID length of type-25/253 records (default 8). A 0- or
    1-byte datagram is a keep-alive (:attr:`keepalive`). Decoded by
    :class:`~dissector.scapy.ParticleSession`, ``events`` holds every core event of the
    datagram (findings included).
    """

    name = "Particle DTLS Datagram"
    fields_desc: ClassVar[list[Any]] = [
        PacketListField(
            "records",
            [],
            ParticleDtlsRecord,
            length_from=lambda pkt: pkt._layout[0] if pkt._layout else 0,
        ),
        ConditionalField(
            XStrLenField(
                "undecoded", b"", length_from=lambda pkt: pkt._layout[1] if pkt._layout else 0
            ),
            lambda pkt: bool(pkt._layout[1]) if pkt._layout else bool(pkt.getfieldval("undecoded")),
        ),
    ]
    _layout: tuple[int, int, int] | None = None
    #: Every core event of this datagram (findings included), set by ParticleSession.
    events: Any = ()

    def pre_dissect(self, s: bytes) -> bytes:
        cid_len = _cid_len(self)
        trailer = DEVICE_ID_TRAILER_LEN if _has_trailer(s, cid_len) else 0
        region = s[: len(s) - trailer]
        end = _records_end(region, cid_len)
        object.__setattr__(self, "_layout", (end, len(region) - end, trailer))
        return s

    def post_dissect(self, s: bytes) -> bytes:
        object.__setattr__(self, "_layout", None)
        return s

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return s, None

    def do_dissect_payload(self, s: bytes) -> None:
        if s:
            trailer = ParticleDtlsMoveTrailer(
                s[:DEVICE_ID_TRAILER_LEN], _internal=1, _underlayer=self
            )
            self.add_payload(trailer)
            if s[DEVICE_ID_TRAILER_LEN:]:
                trailer.add_payload(conf.raw_layer(s[DEVICE_ID_TRAILER_LEN:]))

    @property
    def keepalive(self) -> bool:
        """A 0- or 1-byte datagram (Device OS ignores these, spec §6.9)."""
        return len(bytes(self)) <= 1

    @property
    def trailer_missing(self) -> bool:
        """A type-254 datagram without its ``device_id ‖ 0x0c`` trailer (the fast parser
        reports it as an error but still reads the records)."""
        if self.records:
            first = self.records[0].content_type
        else:
            undecoded = bytes(self.undecoded or b"")
            first = undecoded[0] if len(undecoded) > 1 else None
        return first == CT_MOVED_APPLICATION_DATA and self.trailer is None

    @property
    def trailer(self) -> ParticleDtlsMoveTrailer | None:
        """The move-session trailer of a type-254 datagram, if any."""
        layer = self.getlayer(ParticleDtlsMoveTrailer)
        return layer if isinstance(layer, ParticleDtlsMoveTrailer) else None

    def mysummary(self) -> str:
        if self.keepalive:
            return "Particle DTLS keep-alive"
        parts = [_record_summary(rec) for rec in self.records]
        if self.undecoded:
            parts.append(f"{len(self.undecoded)} undecoded bytes")
        if self.trailer_missing:
            parts.append("no device-ID trailer")
        if not parts:
            parts.append("empty")
        return "Particle DTLS " + " | ".join(parts)


def _record_summary(rec: Packet) -> str:
    """``handshake 0/1: ServerHello seq=1``, ``tls12_cid 1/5 cid=…: CoAP CON … / …``."""
    head = str(rec.mysummary()).removeprefix("DTLS ")
    layer = rec.payload
    if isinstance(layer, DtlsCiphertext):
        if not layer.decrypted:
            return f"{head}: encrypted {len(layer.ciphertext)} bytes"
        layer = layer.payload
        if isinstance(layer, DtlsInnerPlaintext):
            layer = layer.payload
    if not layer:
        return head
    if isinstance(layer, DtlsHandshake):
        names = []
        while layer:
            if isinstance(layer, DtlsHandshake):
                names.append(str(layer.mysummary()).removeprefix("DTLS Handshake "))
            layer = layer.payload
        return f"{head}: {', '.join(names)}"
    return f"{head}: {_chain(layer)}"


def _chain(layer: Packet) -> str:
    parts = []
    while layer and not isinstance(layer, conf.padding_layer):
        summary = layer.mysummary()
        parts.append(str(summary[0] if isinstance(summary, tuple) else summary or layer.name))
        layer = layer.payload
    return " / ".join(parts)


class DtlsCiphertext(EncryptedLayer):
    """A protected record fragment (explicit nonce or IV, ciphertext, tag or MAC), kept
    whole: the split depends on the cipher suite. Its payload, when the core decrypted the
    record, is the decrypted view (not written by ``bytes()``)."""

    name = "DTLS Ciphertext"
    fields_desc: ClassVar[list[Any]] = [XStrField("ciphertext", b"")]

    def mysummary(self) -> str:
        state = "" if self.decrypted else " (encrypted)"
        return f"DTLS Ciphertext {len(self.ciphertext)} bytes{state}"


class _TrailingByteEnum(ByteEnumField):
    """Not written where it stands: :class:`DtlsInnerPlaintext` writes it after the
    content."""

    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        return s


class _TrailingShort(ShortField):
    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        return s


class DtlsInnerPlaintext(Packet):
    """The decrypted content of a connection-ID record (draft-05): ``content ‖ content_type
    ‖ zeros``. The payload is the content; ``content_type`` is the record's real type and
    ``padding_length`` the number of zero bytes after it (mbedTLS pads to a multiple of 16).
    Both are written after the content."""

    name = "DTLS Inner Plaintext"
    fields_desc: ClassVar[list[Any]] = [
        _TrailingByteEnum("content_type", CT_APPLICATION_DATA, CONTENT_TYPE_NAMES),
        _TrailingShort("padding_length", 0),
    ]

    def do_dissect(self, s: bytes) -> bytes:
        stripped = s.rstrip(b"\0")
        if not stripped:
            raise DtlsLayerError("inner plaintext without a content type (all zeros)")
        self.fields["content_type"] = stripped[-1]
        self.fields["padding_length"] = len(s) - len(stripped)
        self.raw_packet_cache = None
        self.raw_packet_cache_fields = None
        self.explicit = 1
        return stripped[:-1]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        return pkt + pay + bytes((self.content_type,)) + bytes(self.padding_length or 0)

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        ctype = self.content_type
        if ctype == CT_HANDSHAKE and _fragment_ok(payload):
            return DtlsHandshake
        if ctype == CT_ALERT and len(payload) == 2:
            return DtlsAlert
        if ctype == CT_CHANGE_CIPHER_SPEC and len(payload) == 1:
            return DtlsChangeCipherSpec
        if ctype == CT_APPLICATION_DATA:
            from dissector.scapy.coap import CoAP, coap_layer

            try:
                coap_layer(payload)
            except CoapError:
                return conf.raw_layer
            return CoAP
        return conf.raw_layer

    def mysummary(self) -> str:
        ctype = CONTENT_TYPE_NAMES.get(self.content_type, str(self.content_type))
        return f"DTLS inner {ctype} +{self.padding_length} zeros"
