"""Scapy layers for DTLS 1.2 handshake messages, alerts and ChangeCipherSpec (spec §6.1-§6.3).

:class:`DtlsHandshake` is the 12-byte handshake header (``msg_type``, ``length``,
``message_seq``, ``fragment_offset``, ``fragment_length``); its payload is the message body:
:class:`DtlsClientHello`, :class:`DtlsHelloVerifyRequest`, :class:`DtlsServerHello`,
:class:`DtlsCertificate` (the device's raw public key, or an X.509 chain),
:class:`DtlsServerKeyExchange` (ECDHE), :class:`DtlsCertificateRequest`,
:class:`DtlsServerHelloDone`, :class:`DtlsClientKeyExchange`, :class:`DtlsCertificateVerify`,
:class:`DtlsFinished`, :class:`DtlsHelloRequest`. A fragment of a longer message carries a
:class:`DtlsHandshakeFragment` (its ``reassembled`` view, when known, is the whole message).
Several handshake messages in one record follow each other as payloads
(``DtlsHandshake / DtlsServerHello / DtlsHandshake / DtlsServerHelloDone``).

Hello extensions are a list of :class:`DtlsExtension` ``(type, length, data)``; the ones the
protocol uses are decoded by name: certificate types 19/20 (:class:`DtlsExtCertificateTypes`
in a ClientHello, :class:`DtlsExtCertificateType` in a ServerHello), the draft connection ID
254 (and RFC 9146's 54: :class:`DtlsExtConnectionId`), 10 :class:`DtlsExtSupportedGroups`,
11 :class:`DtlsExtEcPointFormats`, 13 :class:`DtlsExtSignatureAlgorithms`, 22
:class:`DtlsExtEncryptThenMac`, 23 :class:`DtlsExtExtendedMasterSecret` and 0xff01
:class:`DtlsExtRenegotiationInfo`.

Bodies are typed exactly when the fast parser (:mod:`dissector.dtls.handshake`) accepts
them, so the two never disagree; anything else stays ``Raw``. Building a body by hand from
its fields derives every length left as None. Dissecting a body layer directly from bytes
the fast parser rejects raises :class:`DtlsLayerError`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.config import conf
from scapy.fields import (
    ByteEnumField,
    ConditionalField,
    FieldLenField,
    FieldListField,
    PacketField,
    PacketListField,
    ShortEnumField,
    ShortField,
    ThreeBytesField,
    XShortEnumField,
    XStrField,
    XStrFixedLenField,
    XStrLenField,
)
from scapy.packet import Packet

from dissector.dtls.crypto import SUITES
from dissector.dtls.handshake import (
    HANDSHAKE_TYPE_NAMES,
    HT_CERTIFICATE,
    HT_CERTIFICATE_REQUEST,
    HT_CERTIFICATE_VERIFY,
    HT_CLIENT_HELLO,
    HT_CLIENT_KEY_EXCHANGE,
    HT_FINISHED,
    HT_HELLO_REQUEST,
    HT_HELLO_VERIFY_REQUEST,
    HT_SERVER_HELLO,
    HT_SERVER_HELLO_DONE,
    HT_SERVER_KEY_EXCHANGE,
    HandshakeError,
    parse_handshake_body,
    split_handshake_fragments,
)
from dissector.dtls.records import VERSION_DTLS_1_0, VERSION_DTLS_1_2
from dissector.dtls.session import ALERT_DESCRIPTIONS

__all__ = [
    "ALERT_LEVELS",
    "CERTIFICATE_TYPES",
    "CIPHER_SUITE_NAMES",
    "EXTENSION_NAMES",
    "NAMED_GROUPS",
    "SIGNATURE_SCHEMES",
    "DtlsAlert",
    "DtlsCertificate",
    "DtlsCertificateEntry",
    "DtlsCertificateRequest",
    "DtlsCertificateVerify",
    "DtlsChangeCipherSpec",
    "DtlsClientHello",
    "DtlsClientKeyExchange",
    "DtlsDistinguishedName",
    "DtlsExtCertificateType",
    "DtlsExtCertificateTypes",
    "DtlsExtConnectionId",
    "DtlsExtEcPointFormats",
    "DtlsExtEncryptThenMac",
    "DtlsExtExtendedMasterSecret",
    "DtlsExtRenegotiationInfo",
    "DtlsExtSignatureAlgorithms",
    "DtlsExtSupportedGroups",
    "DtlsExtension",
    "DtlsFinished",
    "DtlsHandshake",
    "DtlsHandshakeBody",
    "DtlsHandshakeFragment",
    "DtlsHelloRequest",
    "DtlsHelloVerifyRequest",
    "DtlsLayerError",
    "DtlsServerHello",
    "DtlsServerHelloDone",
    "DtlsServerKeyExchange",
    "body_layer_class",
]


class DtlsLayerError(ValueError):
    """Bytes that cannot be dissected as the DTLS layer they were given to."""


# -- names ----------------------------------------------------------------------------------

VERSIONS: dict[int, str] = {VERSION_DTLS_1_2: "DTLS 1.2", VERSION_DTLS_1_0: "DTLS 1.0"}

CIPHER_SUITE_NAMES: dict[int, str] = {
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    **{code: suite.name for code, suite in SUITES.items()},
}

NAMED_GROUPS: dict[int, str] = {
    23: "secp256r1",
    24: "secp384r1",
    25: "secp521r1",
    29: "x25519",
    30: "x448",
}

SIGNATURE_SCHEMES: dict[int, str] = {
    0x0201: "rsa_pkcs1_sha1",
    0x0203: "ecdsa_sha1",
    0x0301: "rsa_pkcs1_sha224",
    0x0303: "ecdsa_sha224",
    0x0401: "rsa_pkcs1_sha256",
    0x0403: "ecdsa_secp256r1_sha256",
    0x0501: "rsa_pkcs1_sha384",
    0x0503: "ecdsa_secp384r1_sha384",
    0x0601: "rsa_pkcs1_sha512",
    0x0603: "ecdsa_secp521r1_sha512",
    0x0804: "rsa_pss_rsae_sha256",
    0x0805: "rsa_pss_rsae_sha384",
    0x0806: "rsa_pss_rsae_sha512",
    0x0807: "ed25519",
    0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256",
    0x080A: "rsa_pss_pss_sha384",
    0x080B: "rsa_pss_pss_sha512",
}

CERTIFICATE_TYPES: dict[int, str] = {0: "X.509", 1: "OpenPGP", 2: "RawPublicKey"}
"""RFC 7250 certificate types (extensions 19 and 20)."""

CLIENT_CERTIFICATE_TYPES: dict[int, str] = {
    1: "rsa_sign",
    2: "dss_sign",
    3: "rsa_fixed_dh",
    4: "dss_fixed_dh",
    64: "ecdsa_sign",
    65: "rsa_fixed_ecdh",
    66: "ecdsa_fixed_ecdh",
}
"""CertificateRequest ``certificate_types``."""

EC_POINT_FORMATS: dict[int, str] = {
    0: "uncompressed",
    1: "ansiX962_compressed_prime",
    2: "ansiX962_compressed_char2",
}

CURVE_TYPES: dict[int, str] = {1: "explicit_prime", 2: "explicit_char2", 3: "named_curve"}

COMPRESSION_METHODS: dict[int, str] = {0: "null", 1: "DEFLATE"}

EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_CLIENT_CERTIFICATE_TYPE = 19
EXT_SERVER_CERTIFICATE_TYPE = 20
EXT_ENCRYPT_THEN_MAC = 22
EXT_EXTENDED_MASTER_SECRET = 23
EXT_CONNECTION_ID = 54
EXT_CONNECTION_ID_DRAFT = 254
EXT_RENEGOTIATION_INFO = 0xFF01

EXTENSION_NAMES: dict[int, str] = {
    0: "server_name",
    1: "max_fragment_length",
    5: "status_request",
    EXT_SUPPORTED_GROUPS: "supported_groups",
    EXT_EC_POINT_FORMATS: "ec_point_formats",
    EXT_SIGNATURE_ALGORITHMS: "signature_algorithms",
    14: "use_srtp",
    16: "application_layer_protocol_negotiation",
    EXT_CLIENT_CERTIFICATE_TYPE: "client_certificate_type",
    EXT_SERVER_CERTIFICATE_TYPE: "server_certificate_type",
    21: "padding",
    EXT_ENCRYPT_THEN_MAC: "encrypt_then_mac",
    EXT_EXTENDED_MASTER_SECRET: "extended_master_secret",
    35: "session_ticket",
    EXT_CONNECTION_ID: "connection_id",
    EXT_CONNECTION_ID_DRAFT: "connection_id (draft)",
    EXT_RENEGOTIATION_INFO: "renegotiation_info",
}

ALERT_LEVELS: dict[int, str] = {1: "warning", 2: "fatal"}

CHANGE_CIPHER_SPEC_TYPES: dict[int, str] = {1: "change_cipher_spec"}


# -- small helpers --------------------------------------------------------------------------


def _u16_list(name: str, names: dict[int, str], length_field: str) -> FieldListField:
    return FieldListField(
        name,
        [],
        ShortEnumField("", 0, names),
        length_from=lambda pkt: pkt.getfieldval(length_field),
    )


def _u8_list(name: str, names: dict[int, str], length_field: str) -> FieldListField:
    return FieldListField(
        name,
        [],
        ByteEnumField("", 0, names),
        length_from=lambda pkt: pkt.getfieldval(length_field),
    )


class _OptionalTail(ConditionalField):
    """A field that may be absent at the very end of a message (the hello extensions block):
    dissected when bytes remain, built when the condition holds (a value or extensions)."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        if not s:
            return s, None
        return self.fld.getfield(pkt, s)


class _PeekCertificateType(ByteEnumField):
    """A value that is not on the wire: the certificate form guessed from the body as the
    fast parser does (an SPKI starts with 0x30: a raw public key, RFC 7250)."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int]:
        return s, 2 if len(s) > 3 and s[3] == 0x30 else 0

    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        return s

    def i2h(self, pkt: Packet | None, x: Any) -> Any:
        if x is None and pkt is not None:
            return 2 if _is_rpk(pkt) else 0
        return x

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return str(super().i2repr(pkt, self.i2h(pkt, x)))


class _ViewField(PacketField):
    """A decoded view shown and searchable in the tree but never written to the wire."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        return s, None

    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        return s


class _Evented(Packet):
    """A layer that can carry the core event it was matched with (``event``; kept by
    ``copy()``): the :class:`~dissector.protocol.events.HandshakeBlob` of a handshake
    message, ChangeCipherSpec or alert."""

    event: Any = None

    def copy(self) -> Any:
        clone = super().copy()
        clone.event = self.event
        return clone


def _set_length(pkt: bytes, offset: int, size: int, value: int) -> bytes:
    return pkt[:offset] + value.to_bytes(size, "big") + pkt[offset + size :]


class DtlsHandshakeBody(Packet):
    """Base of the handshake message bodies: nothing follows a body inside it (a following
    message in the same record is the payload of the body, see :class:`DtlsHandshake`)."""

    msg_type: ClassVar[int] = -1

    def pre_dissect(self, s: bytes) -> bytes:
        if self.underlayer is None:
            _check_body(self.msg_type, s)
        return s

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return DtlsHandshake if _fragment_ok(payload) else conf.raw_layer


def _check_body(msg_type: int, body: bytes) -> None:
    try:
        parsed = parse_handshake_body(msg_type, body)
    except HandshakeError as exc:
        raise DtlsLayerError(f"{HANDSHAKE_TYPE_NAMES.get(msg_type, msg_type)}: {exc}") from exc
    if msg_type == HT_CLIENT_KEY_EXCHANGE and getattr(parsed, "public_point", None) is None:
        raise DtlsLayerError("ClientKeyExchange is not an ECDHE public point")


# -- extensions -----------------------------------------------------------------------------


class DtlsExtension(Packet):
    """One hello extension: ``type``, ``length`` (derived when None) and raw ``data``.

    Dissecting picks the named class of a known type when its data decodes exactly."""

    name = "DTLS Extension"
    fields_desc: ClassVar[list[Any]] = [
        ShortEnumField("type", 0, EXTENSION_NAMES),
        FieldLenField("length", None, length_of="data", fmt="H"),
        XStrLenField("data", b"", length_from=lambda pkt: pkt.length),
    ]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if cls is not DtlsExtension or not _pkt or len(_pkt) < 4:
            return cls
        etype = int.from_bytes(_pkt[:2], "big")
        length = int.from_bytes(_pkt[2:4], "big")
        data = _pkt[4 : 4 + length]
        if len(data) != length:
            return cls
        parent = kargs.get("_parent")
        server = isinstance(parent, DtlsServerHello)
        return _extension_class(etype, data, server) or cls

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return b"", s

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.length is None and type(self) is not DtlsExtension:
            pkt = _set_length(pkt, 2, 2, len(pkt) - 4)
        return pkt + pay

    def mysummary(self) -> str:
        return f"{self.get_field('type').i2repr(self, self.type)}"


def _ext_fields(etype: int, *body: Any) -> list[Any]:
    return [ShortEnumField("type", etype, EXTENSION_NAMES), ShortField("length", None), *body]


class DtlsExtCertificateTypes(DtlsExtension):
    """Extension 19 or 20 in a ClientHello: the accepted certificate types (RFC 7250); the
    device sends ``[RawPublicKey]`` in both."""

    name = "DTLS Extension Certificate Types"
    fields_desc: ClassVar[list[Any]] = _ext_fields(
        EXT_CLIENT_CERTIFICATE_TYPE,
        FieldLenField("types_length", None, length_of="certificate_types", fmt="B"),
        _u8_list("certificate_types", CERTIFICATE_TYPES, "types_length"),
    )

    def mysummary(self) -> str:
        names = [CERTIFICATE_TYPES.get(t, str(t)) for t in self.certificate_types]
        return f"{super().mysummary()}={names}"


class DtlsExtCertificateType(DtlsExtension):
    """Extension 19 or 20 in a ServerHello: the one certificate type chosen."""

    name = "DTLS Extension Certificate Type"
    fields_desc: ClassVar[list[Any]] = _ext_fields(
        EXT_CLIENT_CERTIFICATE_TYPE, ByteEnumField("certificate_type", 2, CERTIFICATE_TYPES)
    )

    def mysummary(self) -> str:
        return f"{super().mysummary()}={CERTIFICATE_TYPES.get(self.certificate_type)}"


class DtlsExtConnectionId(DtlsExtension):
    """The connection ID extension: 254 (draft-ietf-tls-dtls-connection-id, what Device OS
    uses) or 54 (RFC 9146). ``cid`` is the CID its sender wants in the records it
    *receives*: empty from the device, 8 bytes from the cloud (spec §6.3)."""

    name = "DTLS Extension Connection ID"
    fields_desc: ClassVar[list[Any]] = _ext_fields(
        EXT_CONNECTION_ID_DRAFT,
        FieldLenField("cid_length", None, length_of="cid", fmt="B"),
        XStrLenField("cid", b"", length_from=lambda pkt: pkt.cid_length),
    )

    def mysummary(self) -> str:
        return f"{super().mysummary()} cid={bytes(self.cid).hex() or '(empty)'}"


class DtlsExtSupportedGroups(DtlsExtension):
    """Extension 10: the named groups (curves) the client supports."""

    name = "DTLS Extension Supported Groups"
    fields_desc: ClassVar[list[Any]] = _ext_fields(
        EXT_SUPPORTED_GROUPS,
        FieldLenField("groups_length", None, length_of="named_groups", fmt="H"),
        _u16_list("named_groups", NAMED_GROUPS, "groups_length"),
    )


class DtlsExtEcPointFormats(DtlsExtension):
    """Extension 11: the EC point formats."""

    name = "DTLS Extension EC Point Formats"
    fields_desc: ClassVar[list[Any]] = _ext_fields(
        EXT_EC_POINT_FORMATS,
        FieldLenField("formats_length", None, length_of="ec_point_formats", fmt="B"),
        _u8_list("ec_point_formats", EC_POINT_FORMATS, "formats_length"),
    )


class DtlsExtSignatureAlgorithms(DtlsExtension):
    """Extension 13: the signature algorithms (hash ‖ signature pairs)."""

    name = "DTLS Extension Signature Algorithms"
    fields_desc: ClassVar[list[Any]] = _ext_fields(
        EXT_SIGNATURE_ALGORITHMS,
        FieldLenField("algorithms_length", None, length_of="signature_algorithms", fmt="H"),
        _u16_list("signature_algorithms", SIGNATURE_SCHEMES, "algorithms_length"),
    )


class DtlsExtEncryptThenMac(DtlsExtension):
    """Extension 22 (RFC 7366), empty. Device OS does not offer it."""

    name = "DTLS Extension Encrypt-then-MAC"
    fields_desc: ClassVar[list[Any]] = _ext_fields(EXT_ENCRYPT_THEN_MAC)


class DtlsExtExtendedMasterSecret(DtlsExtension):
    """Extension 23 (RFC 7627), empty. Device OS does not offer it."""

    name = "DTLS Extension Extended Master Secret"
    fields_desc: ClassVar[list[Any]] = _ext_fields(EXT_EXTENDED_MASTER_SECRET)


class DtlsExtRenegotiationInfo(DtlsExtension):
    """Extension 0xff01 (RFC 5746): the renegotiated connection's verify data."""

    name = "DTLS Extension Renegotiation Info"
    fields_desc: ClassVar[list[Any]] = _ext_fields(
        EXT_RENEGOTIATION_INFO,
        FieldLenField("info_length", None, length_of="renegotiated_connection", fmt="B"),
        XStrLenField("renegotiated_connection", b"", length_from=lambda pkt: pkt.info_length),
    )


def _vector_exact(data: bytes, len_bytes: int, unit: int = 1) -> bool:
    if len(data) < len_bytes:
        return False
    n = int.from_bytes(data[:len_bytes], "big")
    return n == len(data) - len_bytes and n % unit == 0


def _extension_class(etype: int, data: bytes, server: bool) -> type[Packet] | None:
    """The named class that decodes ``data`` exactly (the fast parser's rules), or None."""
    if etype in (EXT_CONNECTION_ID_DRAFT, EXT_CONNECTION_ID):
        # The fast parser reads the CID vector and ignores bytes after it; only an exact
        # vector is typed so that the layer rebuilds the same bytes.
        return DtlsExtConnectionId if _vector_exact(data, 1) else None
    if etype in (EXT_ENCRYPT_THEN_MAC, EXT_EXTENDED_MASTER_SECRET):
        if data:
            return None
        return (
            DtlsExtEncryptThenMac if etype == EXT_ENCRYPT_THEN_MAC else DtlsExtExtendedMasterSecret
        )
    if etype in (EXT_CLIENT_CERTIFICATE_TYPE, EXT_SERVER_CERTIFICATE_TYPE):
        if server:
            return DtlsExtCertificateType if len(data) == 1 else None
        return DtlsExtCertificateTypes if _vector_exact(data, 1) else None
    if etype == EXT_SUPPORTED_GROUPS:
        return DtlsExtSupportedGroups if _vector_exact(data, 2, 2) else None
    if etype == EXT_EC_POINT_FORMATS:
        return DtlsExtEcPointFormats if _vector_exact(data, 1) else None
    if etype == EXT_SIGNATURE_ALGORITHMS:
        return DtlsExtSignatureAlgorithms if _vector_exact(data, 2, 2) else None
    if etype == EXT_RENEGOTIATION_INFO:
        return DtlsExtRenegotiationInfo if _vector_exact(data, 1) else None
    return None


def _extensions_fields() -> list[Any]:
    return [
        _OptionalTail(
            FieldLenField("extensions_length", None, length_of="extensions", fmt="H"),
            lambda pkt: (
                pkt.getfieldval("extensions_length") is not None
                or bool(pkt.getfieldval("extensions"))
            ),
        ),
        PacketListField(
            "extensions", [], DtlsExtension, length_from=lambda pkt: pkt.extensions_length or 0
        ),
    ]


def _ext_summary(pkt: Packet) -> str:
    return ", ".join(ext.mysummary() for ext in pkt.extensions)


# -- handshake bodies -----------------------------------------------------------------------


class DtlsClientHello(DtlsHandshakeBody):
    """ClientHello: the device's first flight, again with the cookie after a
    HelloVerifyRequest."""

    name = "DTLS ClientHello"
    msg_type = HT_CLIENT_HELLO
    fields_desc: ClassVar[list[Any]] = [
        XShortEnumField("client_version", VERSION_DTLS_1_2, VERSIONS),
        XStrFixedLenField("random", bytes(32), 32),
        FieldLenField("session_id_length", None, length_of="session_id", fmt="B"),
        XStrLenField("session_id", b"", length_from=lambda pkt: pkt.session_id_length),
        FieldLenField("cookie_length", None, length_of="cookie", fmt="B"),
        XStrLenField("cookie", b"", length_from=lambda pkt: pkt.cookie_length),
        FieldLenField("cipher_suites_length", None, length_of="cipher_suites", fmt="H"),
        _u16_list("cipher_suites", CIPHER_SUITE_NAMES, "cipher_suites_length"),
        FieldLenField("compression_methods_length", None, length_of="compression_methods", fmt="B"),
        _u8_list("compression_methods", COMPRESSION_METHODS, "compression_methods_length"),
        *_extensions_fields(),
    ]

    def mysummary(self) -> str:
        cookie = f" cookie={bytes(self.cookie).hex()}" if self.cookie else ""
        return f"DTLS ClientHello{cookie} [{_ext_summary(self)}]"


class DtlsHelloVerifyRequest(DtlsHandshakeBody):
    """HelloVerifyRequest: the cloud's stateless cookie challenge."""

    name = "DTLS HelloVerifyRequest"
    msg_type = HT_HELLO_VERIFY_REQUEST
    fields_desc: ClassVar[list[Any]] = [
        XShortEnumField("server_version", VERSION_DTLS_1_0, VERSIONS),
        FieldLenField("cookie_length", None, length_of="cookie", fmt="B"),
        XStrLenField("cookie", b"", length_from=lambda pkt: pkt.cookie_length),
    ]

    def mysummary(self) -> str:
        return f"DTLS HelloVerifyRequest cookie={bytes(self.cookie).hex()}"


class DtlsServerHello(DtlsHandshakeBody):
    """ServerHello; its connection ID extension is the CID the device puts in its records."""

    name = "DTLS ServerHello"
    msg_type = HT_SERVER_HELLO
    fields_desc: ClassVar[list[Any]] = [
        XShortEnumField("server_version", VERSION_DTLS_1_2, VERSIONS),
        XStrFixedLenField("random", bytes(32), 32),
        FieldLenField("session_id_length", None, length_of="session_id", fmt="B"),
        XStrLenField("session_id", b"", length_from=lambda pkt: pkt.session_id_length),
        ShortEnumField("cipher_suite", 0xC0AE, CIPHER_SUITE_NAMES),
        ByteEnumField("compression_method", 0, COMPRESSION_METHODS),
        *_extensions_fields(),
    ]

    def mysummary(self) -> str:
        suite = CIPHER_SUITE_NAMES.get(self.cipher_suite, f"0x{self.cipher_suite:04X}")
        return f"DTLS ServerHello {suite} [{_ext_summary(self)}]"


class _Len24(ThreeBytesField):
    """A 24-bit length; None is derived on build from the bytes of ``of``."""

    __slots__ = ["of"]

    def __init__(self, name: str, of: str) -> None:
        super().__init__(name, None)  # type: ignore[arg-type]
        self.of = of

    def i2m(self, pkt: Packet | None, x: Any) -> int:
        if x is None and pkt is not None:
            fld, val = pkt.getfield_and_val(self.of)
            return len(fld.addfield(pkt, b"", val))
        return int(x)


class DtlsCertificateEntry(Packet):
    """One X.509 certificate of a chain: 24-bit length and DER."""

    name = "DTLS Certificate Entry"
    fields_desc: ClassVar[list[Any]] = [
        _Len24("length", "certificate"),
        XStrLenField("certificate", b"", length_from=lambda pkt: pkt.length),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return b"", s

    def mysummary(self) -> str:
        return f"X.509 certificate ({len(self.certificate)} bytes)"


class _CertificatesLength(ThreeBytesField):
    """The 24-bit length of a Certificate body: of the raw public key, or of the chain."""

    def __init__(self, name: str) -> None:
        super().__init__(name, None)  # type: ignore[arg-type]

    def i2m(self, pkt: Packet | None, x: Any) -> int:
        if x is None and pkt is not None:
            if _is_rpk(pkt):
                return len(bytes(pkt.getfieldval("raw_public_key")))
            return sum(len(bytes(c)) for c in pkt.getfieldval("certificates"))
        return int(x)


def _is_rpk(pkt: Packet) -> bool:
    ctype = pkt.getfieldval("certificate_type")
    if ctype is None:
        return bool(pkt.getfieldval("raw_public_key")) or not pkt.getfieldval("certificates")
    return bool(ctype == 2)


class DtlsCertificate(DtlsHandshakeBody):
    """Certificate. From a Particle device: its raw public key (RFC 7250: the
    SubjectPublicKeyInfo DER after a 24-bit length, no list); else an X.509 chain.

    ``certificate_type`` is not on the wire: dissecting guesses it as the fast parser does
    (an SPKI starts with 0x30); when building, set it or fill ``raw_public_key`` or
    ``certificates``."""

    name = "DTLS Certificate"
    msg_type = HT_CERTIFICATE
    fields_desc: ClassVar[list[Any]] = [
        _PeekCertificateType("certificate_type", None, CERTIFICATE_TYPES),
        _CertificatesLength("certificates_length"),
        ConditionalField(
            XStrLenField("raw_public_key", b"", length_from=lambda pkt: pkt.certificates_length),
            _is_rpk,
        ),
        ConditionalField(
            PacketListField(
                "certificates",
                [],
                DtlsCertificateEntry,
                length_from=lambda pkt: pkt.certificates_length,
            ),
            lambda pkt: not _is_rpk(pkt),
        ),
    ]

    def mysummary(self) -> str:
        if _is_rpk(self):
            return f"DTLS Certificate raw public key ({len(self.raw_public_key)} bytes)"
        return f"DTLS Certificate {len(self.certificates)} X.509 certificate(s)"


class DtlsServerKeyExchange(DtlsHandshakeBody):
    """ECDHE ServerKeyExchange: the cloud's ephemeral P-256 point, signed (ECDSA) with its
    static key over both randoms and the parameters."""

    name = "DTLS ServerKeyExchange"
    msg_type = HT_SERVER_KEY_EXCHANGE
    fields_desc: ClassVar[list[Any]] = [
        ByteEnumField("curve_type", 3, CURVE_TYPES),
        ShortEnumField("named_curve", 23, NAMED_GROUPS),
        FieldLenField("point_length", None, length_of="public_point", fmt="B"),
        XStrLenField("public_point", b"", length_from=lambda pkt: pkt.point_length),
        ShortEnumField("signature_algorithm", 0x0403, SIGNATURE_SCHEMES),
        FieldLenField("signature_length", None, length_of="signature", fmt="H"),
        XStrLenField("signature", b"", length_from=lambda pkt: pkt.signature_length),
    ]

    @property
    def params(self) -> bytes:
        """The signed ``ServerECDHParams`` bytes (curve and point)."""
        point = bytes(self.public_point)
        head = bytes((self.curve_type,)) + int(self.named_curve).to_bytes(2, "big")
        return head + bytes((len(point),)) + point

    def mysummary(self) -> str:
        curve = NAMED_GROUPS.get(self.named_curve, str(self.named_curve))
        return f"DTLS ServerKeyExchange ECDHE {curve}"


class DtlsDistinguishedName(Packet):
    """One certificate authority name of a CertificateRequest."""

    name = "DTLS Distinguished Name"
    fields_desc: ClassVar[list[Any]] = [
        FieldLenField("length", None, length_of="distinguished_name", fmt="H"),
        XStrLenField("distinguished_name", b"", length_from=lambda pkt: pkt.length),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return b"", s

    def mysummary(self) -> str:
        return f"distinguished name ({len(self.distinguished_name)} bytes)"


class DtlsCertificateRequest(DtlsHandshakeBody):
    """CertificateRequest: the cloud asks for the device's (raw public key) certificate."""

    name = "DTLS CertificateRequest"
    msg_type = HT_CERTIFICATE_REQUEST
    fields_desc: ClassVar[list[Any]] = [
        FieldLenField("certificate_types_length", None, length_of="certificate_types", fmt="B"),
        _u8_list("certificate_types", CLIENT_CERTIFICATE_TYPES, "certificate_types_length"),
        FieldLenField("algorithms_length", None, length_of="signature_algorithms", fmt="H"),
        _u16_list("signature_algorithms", SIGNATURE_SCHEMES, "algorithms_length"),
        FieldLenField("authorities_length", None, length_of="certificate_authorities", fmt="H"),
        PacketListField(
            "certificate_authorities",
            [],
            DtlsDistinguishedName,
            length_from=lambda pkt: pkt.authorities_length,
        ),
    ]

    def mysummary(self) -> str:
        return "DTLS CertificateRequest"


class DtlsServerHelloDone(DtlsHandshakeBody):
    """ServerHelloDone (empty): the end of the cloud's second flight."""

    name = "DTLS ServerHelloDone"
    msg_type = HT_SERVER_HELLO_DONE
    fields_desc: ClassVar[list[Any]] = []

    def mysummary(self) -> str:
        return "DTLS ServerHelloDone"


class DtlsHelloRequest(DtlsHandshakeBody):
    """HelloRequest (empty): the server asks for a new handshake."""

    name = "DTLS HelloRequest"
    msg_type = HT_HELLO_REQUEST
    fields_desc: ClassVar[list[Any]] = []

    def mysummary(self) -> str:
        return "DTLS HelloRequest"


class DtlsClientKeyExchange(DtlsHandshakeBody):
    """ECDHE ClientKeyExchange: the device's ephemeral P-256 point."""

    name = "DTLS ClientKeyExchange"
    msg_type = HT_CLIENT_KEY_EXCHANGE
    fields_desc: ClassVar[list[Any]] = [
        FieldLenField("point_length", None, length_of="public_point", fmt="B"),
        XStrLenField("public_point", b"", length_from=lambda pkt: pkt.point_length),
    ]

    def mysummary(self) -> str:
        return f"DTLS ClientKeyExchange ECDHE point ({len(self.public_point)} bytes)"


class DtlsCertificateVerify(DtlsHandshakeBody):
    """CertificateVerify: the device's ECDSA signature over the handshake transcript."""

    name = "DTLS CertificateVerify"
    msg_type = HT_CERTIFICATE_VERIFY
    fields_desc: ClassVar[list[Any]] = [
        ShortEnumField("signature_algorithm", 0x0403, SIGNATURE_SCHEMES),
        FieldLenField("signature_length", None, length_of="signature", fmt="H"),
        XStrLenField("signature", b"", length_from=lambda pkt: pkt.signature_length),
    ]

    def mysummary(self) -> str:
        alg = SIGNATURE_SCHEMES.get(self.signature_algorithm, hex(self.signature_algorithm))
        return f"DTLS CertificateVerify {alg}"


class DtlsFinished(DtlsHandshakeBody):
    """Finished: 12 bytes of ``verify_data`` (always sent encrypted)."""

    name = "DTLS Finished"
    msg_type = HT_FINISHED
    fields_desc: ClassVar[list[Any]] = [XStrField("verify_data", b"")]

    def mysummary(self) -> str:
        return f"DTLS Finished verify_data={bytes(self.verify_data).hex()}"


_BODY_CLASSES: dict[int, type[DtlsHandshakeBody]] = {
    cls.msg_type: cls
    for cls in (
        DtlsHelloRequest,
        DtlsClientHello,
        DtlsServerHello,
        DtlsHelloVerifyRequest,
        DtlsCertificate,
        DtlsServerKeyExchange,
        DtlsCertificateRequest,
        DtlsServerHelloDone,
        DtlsCertificateVerify,
        DtlsClientKeyExchange,
        DtlsFinished,
    )
}


_EMPTY_BODIES: dict[int, type[DtlsHandshakeBody]] = {
    HT_SERVER_HELLO_DONE: DtlsServerHelloDone,
    HT_HELLO_REQUEST: DtlsHelloRequest,
}


def body_layer_class(msg_type: int, body: bytes) -> type[Packet]:
    """The layer class for a complete message body: the named body when the fast parser
    accepts it, else ``Raw``."""
    cls = _BODY_CLASSES.get(msg_type)
    if cls is None:
        return conf.raw_layer
    try:
        _check_body(msg_type, body)
    except DtlsLayerError:
        return conf.raw_layer
    return cls


# -- the handshake header -------------------------------------------------------------------


def _fragment_ok(data: bytes) -> bool:
    """Whether ``data`` starts with one complete, consistent handshake fragment."""
    if len(data) < 12:
        return False
    frags, error = split_handshake_fragments(data[: 12 + int.from_bytes(data[9:12], "big")])
    return bool(frags) and error is None


class DtlsHandshakeFragment(Packet):
    """Part of a handshake message sent in several fragments: the bytes of this fragment.

    ``reassembled`` (not on the wire) is the whole message, a :class:`DtlsHandshake` with
    its body, once the fragment that completes it arrived (filled in by
    :class:`~dissector.scapy.ParticleSession`)."""

    name = "DTLS Handshake Fragment"
    fields_desc: ClassVar[list[Any]] = [
        XStrField("data", b""),
        _ViewField("reassembled", None, Packet),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return DtlsHandshake if _fragment_ok(payload) else conf.raw_layer

    def mysummary(self) -> str:
        done = " (reassembled)" if self.reassembled is not None else ""
        return f"DTLS Handshake Fragment {len(self.data)} bytes{done}"


class DtlsHandshake(_Evented):
    """The DTLS handshake header; the payload is the body (:class:`DtlsClientHello`, ...).

    ``length`` is the whole message's body length, ``fragment_offset`` and
    ``fragment_length`` the part this record carries; None values are derived from the body
    on build (an unfragmented message), ``msg_type`` too (from the body layer's class). A
    body that is only part of its message is a :class:`DtlsHandshakeFragment`. Another
    message in the same record follows the body as its payload.
    """

    name = "DTLS Handshake"
    fields_desc: ClassVar[list[Any]] = [
        ByteEnumField("msg_type", None, HANDSHAKE_TYPE_NAMES),
        ThreeBytesField("length", None),  # type: ignore[arg-type]
        ShortField("message_seq", 0),
        ThreeBytesField("fragment_offset", 0),
        ThreeBytesField("fragment_length", None),  # type: ignore[arg-type]
    ]

    def pre_dissect(self, s: bytes) -> bytes:
        if self.underlayer is None and not _fragment_ok(s):
            raise DtlsLayerError("not a complete DTLS handshake fragment")
        return s

    def dissect(self, s: bytes) -> None:
        s = self.pre_dissect(s)
        s = self.do_dissect(s)
        s = self.post_dissect(s)
        body, rest = self.extract_padding(s)
        if body:
            self.do_dissect_payload(body)
        elif not self.fragmented and self.msg_type in _EMPTY_BODIES:
            self.add_payload(_EMPTY_BODIES[self.msg_type](_internal=1, _underlayer=self))
        if rest:
            last = self.lastlayer()
            cls = DtlsHandshake if _fragment_ok(rest) else conf.raw_layer
            last.add_payload(cls(rest, _internal=1, _underlayer=last))

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        n = self.fragment_length or 0
        return s[:n], s[n:]

    @property
    def fragmented(self) -> bool:
        """True when this record carries only part of the message."""
        length = self.length
        return bool(self.fragment_offset) or (
            self.fragment_length is not None
            and length is not None
            and self.fragment_length != length
        )

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        if self.fragmented:
            return DtlsHandshakeFragment
        return body_layer_class(self.msg_type, payload)

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.msg_type is None:
            pkt = bytes((self.body_type,)) + pkt[1:]
        nxt = self.payload.getlayer(DtlsHandshake) if self.payload else None
        body_len = len(pay) - (len(bytes(nxt)) if nxt is not None else 0)
        if self.fragment_length is None:
            pkt = _set_length(pkt, 9, 3, body_len)
        if self.length is None:
            pkt = _set_length(pkt, 1, 3, (self.fragment_offset or 0) + body_len)
        return pkt + pay

    @property
    def body_type(self) -> int:
        """``msg_type``, or when None (building) the type of the body layer."""
        if self.msg_type is not None:
            return int(self.msg_type)
        body = self.payload
        return body.msg_type if isinstance(body, DtlsHandshakeBody) else HT_CLIENT_HELLO

    @property
    def message_name(self) -> str:
        """The message name as the core reports it (``ClientHello``, ...)."""
        msg_type = self.body_type
        return HANDSHAKE_TYPE_NAMES.get(msg_type, f"handshake_{msg_type}")

    def mysummary(self) -> str:
        frag = ""
        if self.fragmented:
            end = (self.fragment_offset or 0) + (self.fragment_length or 0)
            frag = f" fragment {self.fragment_offset}-{end}/{self.length}"
        again = ""
        if self.event is not None and getattr(self.event, "info", {}).get("retransmission"):
            again = " (retransmission)"
        return f"DTLS Handshake {self.message_name} seq={self.message_seq}{frag}{again}"


# -- alert and change cipher spec -----------------------------------------------------------


class DtlsAlert(_Evented):
    """An alert: ``level`` (warning/fatal) and ``description``."""

    name = "DTLS Alert"
    fields_desc: ClassVar[list[Any]] = [
        ByteEnumField("level", 2, ALERT_LEVELS),
        ByteEnumField("description", 0, ALERT_DESCRIPTIONS),
    ]

    def mysummary(self) -> str:
        level = ALERT_LEVELS.get(self.level, str(self.level))
        desc = ALERT_DESCRIPTIONS.get(self.description, f"alert_{self.description}")
        return f"DTLS Alert {level} {desc}"


class DtlsChangeCipherSpec(_Evented):
    """ChangeCipherSpec (one byte, 1): the sender's next records use the next epoch."""

    name = "DTLS ChangeCipherSpec"
    fields_desc: ClassVar[list[Any]] = [ByteEnumField("type", 1, CHANGE_CIPHER_SPEC_TYPES)]

    def mysummary(self) -> str:
        return "DTLS ChangeCipherSpec"
