"""DTLS 1.2 handshake pieces of Particle's dialect, built byte for byte (spec §6.1–§6.3).

Pure builders of the handshake message bodies Device OS and the Particle cloud exchange
(ClientHello with raw-public-key and draft connection-ID extensions, HelloVerifyRequest,
ServerHello, ECDHE ServerKeyExchange, CertificateRequest, ServerHelloDone, the device's
raw-public-key Certificate, ClientKeyExchange, CertificateVerify, Finished), the handshake
transcript and the Finished computation, deterministic ECDHE keys and deterministic
ECDSA (RFC 6979) signatures.

The transcript follows RFC 6347 §4.2.6: every handshake message with its 12-byte DTLS
header written as one unfragmented fragment, without the first ClientHello and the
HelloVerifyRequest of a cookie round; ``verify_data = PRF(master, "client finished" |
"server finished", SHA-256(transcript))[0:12]``. This is the computation the real mbedTLS,
Device OS 1.0.1 and OpenSSL reference captures satisfy (tested on them).
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dissector.dtls.crypto import derive_master, prf
from dissector.dtls.handshake import (
    CERT_TYPE_RAW_PUBLIC_KEY,
    EXT_CLIENT_CERTIFICATE_TYPE,
    EXT_CONNECTION_ID_DRAFT,
    EXT_EC_POINT_FORMATS,
    EXT_RENEGOTIATION_INFO,
    EXT_SERVER_CERTIFICATE_TYPE,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_GROUPS,
    HT_CLIENT_HELLO,
    HT_HELLO_VERIFY_REQUEST,
)
from dissector.dtls.records import VERSION_DTLS_1_2
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource

__all__ = [
    "CCM_8_SUITE",
    "CERTIFICATE_REQUEST_BODY",
    "ECDSA_SHA256",
    "SECP256R1",
    "SIG_ALGS_DEVICE_OS_1",
    "SIG_ALGS_DEVICE_OS_3",
    "Transcript",
    "certificate_request",
    "certificate_verify",
    "client_hello",
    "client_key_exchange",
    "ecdh_premaster",
    "ecdsa_sign",
    "ecdsa_verify",
    "ephemeral_key",
    "finished_verify_data",
    "handshake_fragment",
    "hello_verify_request",
    "master_secret",
    "point_bytes",
    "raw_public_key_certificate",
    "server_hello",
    "server_hello_done",
    "server_key_exchange",
    "server_key_exchange_signed_data",
    "spki_der",
]

CCM_8_SUITE = 0xC0AE
"""TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: the one suite Device OS compiles in."""
SCSV_RENEGOTIATION = 0x00FF
SECP256R1 = 23
ECDSA_SHA256 = 0x0403
CURVE_TYPE_NAMED = 3

SIG_ALGS_DEVICE_OS_3: tuple[int, ...] = (0x0403, 0x0401, 0x0303, 0x0301)
"""signature_algorithms of Particle's mbedTLS fork as Device OS ≥ 3.1 configures it
(the ``particle_mbedtls_ccm8_full`` reference capture)."""
SIG_ALGS_DEVICE_OS_1: tuple[int, ...] = (0x0403, 0x0401, 0x0303, 0x0301, 0x0203, 0x0201)
"""signature_algorithms of Device OS 1.0.1 (the ``deviceos-1.0.1_udp_full`` capture)."""

CERTIFICATE_REQUEST_BODY = bytes.fromhex("020140000c0501050304010403020102030000")
"""The cloud's CertificateRequest (both reference captures): types rsa_sign, ecdsa_sign;
signature algorithms 0501 0503 0401 0403 0201 0203; no CA names."""

_CURVE = ec.SECP256R1()
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# --------------------------------------------------------------------------- framing


def _u8(data: bytes) -> bytes:
    if len(data) > 0xFF:
        raise SimulationError(f"{len(data)} bytes do not fit a 1-byte length")
    return bytes((len(data),)) + data


def _u16(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise SimulationError(f"{len(data)} bytes do not fit a 2-byte length")
    return struct.pack(">H", len(data)) + data


def _u24(data: bytes) -> bytes:
    if len(data) > 0xFFFFFF:
        raise SimulationError(f"{len(data)} bytes do not fit a 3-byte length")
    return len(data).to_bytes(3, "big") + data


def _ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack(">H", ext_type) + _u16(data)


def handshake_fragment(
    msg_type: int,
    message_seq: int,
    body: bytes,
    fragment_offset: int = 0,
    fragment_length: int | None = None,
) -> bytes:
    """A handshake message (or a fragment of it) with its 12-byte DTLS header.

    The default is the whole message as one fragment, which is also the form the
    handshake transcript hashes.
    """
    if fragment_length is None:
        fragment_length = len(body) - fragment_offset
    part = body[fragment_offset : fragment_offset + fragment_length]
    if len(part) != fragment_length or not 0 <= message_seq <= 0xFFFF:
        raise SimulationError("handshake fragment out of range")
    return (
        bytes((msg_type,))
        + len(body).to_bytes(3, "big")
        + struct.pack(">H", message_seq)
        + fragment_offset.to_bytes(3, "big")
        + fragment_length.to_bytes(3, "big")
        + part
    )


class Transcript:
    """The handshake messages hashed for CertificateVerify and Finished (RFC 6347 §4.2.6).

    :meth:`add` every handshake message in the order sent, both directions; the first
    ClientHello and the HelloVerifyRequest of a cookie round are left out (``add`` skips a
    HelloVerifyRequest and, when one was seen, forgets the ClientHello before it).
    """

    __slots__ = ("_data", "_hvr_seen")

    def __init__(self) -> None:
        self._data = bytearray()
        self._hvr_seen = False

    def add(self, msg_type: int, message_seq: int, body: bytes) -> None:
        """Append one complete handshake message."""
        if msg_type == HT_HELLO_VERIFY_REQUEST:
            self._hvr_seen = True
            self._data.clear()  # the ClientHello without cookie is not part of it
            return
        if msg_type == HT_CLIENT_HELLO and not self._hvr_seen:
            self._data.clear()
        self._data += handshake_fragment(msg_type, message_seq, body)

    @property
    def data(self) -> bytes:
        """The concatenated messages (the input CertificateVerify signs)."""
        return bytes(self._data)

    def digest(self, hash_name: str = "sha256") -> bytes:
        """Hash of the messages so far (SHA-256 for the CCM-8 suite)."""
        return hashlib.new(hash_name, self._data).digest()


def finished_verify_data(
    master: bytes, transcript_hash: bytes, from_client: bool, hash_name: str = "sha256"
) -> bytes:
    """``PRF(master, "client finished" | "server finished", hash)[0:12]``."""
    label = b"client finished" if from_client else b"server finished"
    return prf(master, label, transcript_hash, 12, hash_name)


# --------------------------------------------------------------------------- EC keys


def ephemeral_key(rng: ByteSource) -> ec.EllipticCurvePrivateKey:
    """A P-256 key whose scalar comes from ``rng`` (deterministic for a seed)."""
    scalar = int.from_bytes(rng(40), "big") % (_ORDER - 1) + 1
    return ec.derive_private_key(scalar, _CURVE)


def point_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed 65-byte point of a P-256 key."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def spki_der(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The 91-byte SubjectPublicKeyInfo DER (what the RPK Certificate carries)."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ecdh_premaster(own: ec.EllipticCurvePrivateKey, peer_point: bytes) -> bytes:
    """ECDHE pre-master secret: the x coordinate of ``own × peer`` (32 bytes)."""
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, peer_point)
    except ValueError as exc:
        raise SimulationError(f"bad ECDHE point: {exc}") from None
    return own.exchange(ec.ECDH(), peer)


def master_secret(premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    """The 48-byte master secret (no extended master secret: Device OS does not use it)."""
    return derive_master(premaster, client_random, server_random)


def ecdsa_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Deterministic ECDSA-SHA256 (RFC 6979) DER signature, as Device OS signs."""
    return key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def ecdsa_verify(
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, signature: bytes, data: bytes
) -> bool:
    """Whether ``signature`` is a valid ECDSA-SHA256 signature of ``data``."""
    from cryptography.exceptions import InvalidSignature

    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    try:
        pub.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- messages


def client_hello(
    random: bytes,
    cookie: bytes = b"",
    *,
    connection_id: bool = True,
    signature_algorithms: tuple[int, ...] = SIG_ALGS_DEVICE_OS_3,
    session_id: bytes = b"",
) -> bytes:
    """The device's ClientHello body (spec §6.1–§6.3).

    Suites ``C0AE`` + the renegotiation SCSV, no compression; extensions in mbedTLS order:
    signature_algorithms, supported_groups (P-256), ec_point_formats (uncompressed), the
    draft CID extension 254 with an empty own CID (Device OS ≥ 3.1, ``connection_id``),
    client/server certificate type = raw public key.
    """
    if len(random) != 32:
        raise SimulationError("a hello random is 32 bytes")
    algs = b"".join(struct.pack(">H", a) for a in signature_algorithms)
    exts = _ext(EXT_SIGNATURE_ALGORITHMS, _u16(algs))
    exts += _ext(EXT_SUPPORTED_GROUPS, _u16(struct.pack(">H", SECP256R1)))
    exts += _ext(EXT_EC_POINT_FORMATS, _u8(b"\x00"))
    if connection_id:
        exts += _ext(EXT_CONNECTION_ID_DRAFT, _u8(b""))
    exts += _ext(EXT_CLIENT_CERTIFICATE_TYPE, _u8(bytes((CERT_TYPE_RAW_PUBLIC_KEY,))))
    exts += _ext(EXT_SERVER_CERTIFICATE_TYPE, _u8(bytes((CERT_TYPE_RAW_PUBLIC_KEY,))))
    return (
        struct.pack(">H", VERSION_DTLS_1_2)
        + random
        + _u8(session_id)
        + _u8(cookie)
        + _u16(struct.pack(">HH", CCM_8_SUITE, SCSV_RENEGOTIATION))
        + _u8(b"\x00")
        + _u16(exts)
    )


def hello_verify_request(cookie: bytes) -> bytes:
    """HelloVerifyRequest body: server version DTLS 1.2 (``fefd``, as mbedTLS) and cookie."""
    return struct.pack(">H", VERSION_DTLS_1_2) + _u8(cookie)


def server_hello(random: bytes, session_id: bytes, connection_id: bytes | None) -> bytes:
    """The cloud's ServerHello body: suite ``C0AE``; extensions in mbedTLS server order:
    renegotiation_info, the draft CID (the CID the device must put in its records) when
    given, ec_point_formats, certificate types = raw public key."""
    if len(random) != 32:
        raise SimulationError("a hello random is 32 bytes")
    exts = _ext(EXT_RENEGOTIATION_INFO, _u8(b""))
    if connection_id is not None:
        exts += _ext(EXT_CONNECTION_ID_DRAFT, _u8(connection_id))
    exts += _ext(EXT_EC_POINT_FORMATS, _u8(b"\x00"))
    exts += _ext(EXT_CLIENT_CERTIFICATE_TYPE, bytes((CERT_TYPE_RAW_PUBLIC_KEY,)))
    exts += _ext(EXT_SERVER_CERTIFICATE_TYPE, bytes((CERT_TYPE_RAW_PUBLIC_KEY,)))
    return (
        struct.pack(">H", VERSION_DTLS_1_2)
        + random
        + _u8(session_id)
        + struct.pack(">HB", CCM_8_SUITE, 0)
        + _u16(exts)
    )


def _ecdh_params(point: bytes) -> bytes:
    return struct.pack(">BH", CURVE_TYPE_NAMED, SECP256R1) + _u8(point)


def server_key_exchange_signed_data(
    client_random: bytes, server_random: bytes, point: bytes
) -> bytes:
    """What the ServerKeyExchange signature covers: ``client_random ‖ server_random ‖
    ECParameters ‖ point``."""
    return client_random + server_random + _ecdh_params(point)


def server_key_exchange(
    server_key: ec.EllipticCurvePrivateKey,
    client_random: bytes,
    server_random: bytes,
    point: bytes,
) -> bytes:
    """ECDHE ServerKeyExchange body signed with the cloud's EC key (ECDSA-SHA256)."""
    signed = server_key_exchange_signed_data(client_random, server_random, point)
    sig = ecdsa_sign(server_key, signed)
    return _ecdh_params(point) + struct.pack(">H", ECDSA_SHA256) + _u16(sig)


def certificate_request() -> bytes:
    """The cloud's CertificateRequest body (:data:`CERTIFICATE_REQUEST_BODY`)."""
    return CERTIFICATE_REQUEST_BODY


def server_hello_done() -> bytes:
    """ServerHelloDone body (empty)."""
    return b""


def raw_public_key_certificate(spki: bytes) -> bytes:
    """RFC 7250 Certificate body: the SubjectPublicKeyInfo DER after a 3-byte length."""
    return _u24(spki)


def client_key_exchange(point: bytes) -> bytes:
    """ECDHE ClientKeyExchange body: the device's ephemeral point with a 1-byte length."""
    return _u8(point)


def certificate_verify(device_key: ec.EllipticCurvePrivateKey, transcript: bytes) -> bytes:
    """CertificateVerify body: ECDSA-SHA256 over the transcript so far."""
    sig = ecdsa_sign(device_key, transcript)
    return struct.pack(">H", ECDSA_SHA256) + _u16(sig)
