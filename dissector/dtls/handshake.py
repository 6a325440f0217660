"""DTLS 1.2 handshake messages: header, reassembly and body parsers (spec §6.1–§6.3).

* :func:`parse_handshake_fragments` splits a handshake record into fragments.
* :class:`HandshakeReassembler` joins fragments into :class:`RawHandshake` messages per
  direction and flags retransmitted flights.
* :func:`parse_handshake_body` turns a message body into one of the dataclasses below
  (ClientHello, HelloVerifyRequest, ServerHello, Certificate, ...). Unknown extension
  types are kept as :class:`Extension` ``(type, data)``.

Malformed input raises :class:`HandshakeError` (from the parsers) — nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HT_HELLO_REQUEST = 0
HT_CLIENT_HELLO = 1
HT_SERVER_HELLO = 2
HT_HELLO_VERIFY_REQUEST = 3
HT_NEW_SESSION_TICKET = 4
HT_CERTIFICATE = 11
HT_SERVER_KEY_EXCHANGE = 12
HT_CERTIFICATE_REQUEST = 13
HT_SERVER_HELLO_DONE = 14
HT_CERTIFICATE_VERIFY = 15
HT_CLIENT_KEY_EXCHANGE = 16
HT_FINISHED = 20

HANDSHAKE_TYPE_NAMES: dict[int, str] = {
    HT_HELLO_REQUEST: "HelloRequest",
    HT_CLIENT_HELLO: "ClientHello",
    HT_SERVER_HELLO: "ServerHello",
    HT_HELLO_VERIFY_REQUEST: "HelloVerifyRequest",
    HT_NEW_SESSION_TICKET: "NewSessionTicket",
    HT_CERTIFICATE: "Certificate",
    HT_SERVER_KEY_EXCHANGE: "ServerKeyExchange",
    HT_CERTIFICATE_REQUEST: "CertificateRequest",
    HT_SERVER_HELLO_DONE: "ServerHelloDone",
    HT_CERTIFICATE_VERIFY: "CertificateVerify",
    HT_CLIENT_KEY_EXCHANGE: "ClientKeyExchange",
    HT_FINISHED: "Finished",
}

EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_CLIENT_CERTIFICATE_TYPE = 19
EXT_SERVER_CERTIFICATE_TYPE = 20
EXT_ENCRYPT_THEN_MAC = 22
EXT_EXTENDED_MASTER_SECRET = 23
EXT_CONNECTION_ID_DRAFT = 254
"""draft-ietf-tls-dtls-connection-id extension number used by mbedTLS/Device OS."""
EXT_CONNECTION_ID = 54
"""RFC 9146 connection_id extension (recognised too)."""
EXT_RENEGOTIATION_INFO = 0xFF01

CERT_TYPE_X509 = 0
CERT_TYPE_RAW_PUBLIC_KEY = 2

HANDSHAKE_HEADER_LEN = 12
MAX_HANDSHAKE_LEN = 1 << 18
"""Larger announced message lengths are treated as malformed (memory bound)."""


class HandshakeError(Exception):
    """A handshake fragment or message body is malformed."""


# ------------------------------------------------------------------ byte reader


class _Reader:
    """Bounds-checked big-endian reader raising :class:`HandshakeError`."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise HandshakeError(f"truncated {what}: need {n} bytes, {self.remaining()} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, len_bytes: int, what: str) -> bytes:
        return self.take(self.uint(len_bytes, f"{what} length"), what)

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise HandshakeError(f"{self.remaining()} trailing bytes after {what}")


# ------------------------------------------------------------------ fragments


@dataclass(slots=True)
class HandshakeFragment:
    """One handshake fragment as carried in a record (12-byte DTLS header + body part)."""

    msg_type: int
    length: int
    message_seq: int
    fragment_offset: int
    fragment_length: int
    body: bytes


def split_handshake_fragments(data: bytes) -> tuple[list[HandshakeFragment], str | None]:
    """Split the content of a handshake record into fragments, never raising.

    Returns the fragments before the first malformed one and the error (or None).
    """
    out: list[HandshakeFragment] = []
    r = _Reader(data)
    try:
        while r.remaining():
            msg_type = r.uint(1, "handshake type")
            length = r.uint(3, "handshake length")
            message_seq = r.uint(2, "message_seq")
            frag_off = r.uint(3, "fragment_offset")
            frag_len = r.uint(3, "fragment_length")
            body = r.take(frag_len, "handshake fragment")
            if frag_off + frag_len > length:
                raise HandshakeError(
                    f"fragment {frag_off}+{frag_len} beyond message length {length}"
                )
            out.append(HandshakeFragment(msg_type, length, message_seq, frag_off, frag_len, body))
    except HandshakeError as exc:
        return out, str(exc)
    return out, None


def parse_handshake_fragments(data: bytes) -> list[HandshakeFragment]:
    """Split the content of a handshake record into fragments. Raises HandshakeError."""
    frags, error = split_handshake_fragments(data)
    if error is not None:
        raise HandshakeError(error)
    return frags


@dataclass(slots=True)
class RawHandshake:
    """A complete (reassembled) handshake message; ``retransmission`` when seen before."""

    msg_type: int
    message_seq: int
    body: bytes
    retransmission: bool = False
    fragmented: bool = False

    @property
    def name(self) -> str:
        return HANDSHAKE_TYPE_NAMES.get(self.msg_type, f"handshake_{self.msg_type}")


class HandshakeReassembler:
    """Reassembles fragmented handshake messages of one direction.

    :meth:`add` returns the complete message once all its bytes have arrived. A message
    whose ``message_seq`` was already completed with the same body is returned again with
    ``retransmission=True``; a different body under a known ``message_seq`` (a new
    handshake on the same flow) replaces the old one.
    """

    __slots__ = ("_completed", "_pending")

    MAX_PENDING = 16

    def __init__(self) -> None:
        self._pending: dict[int, tuple[int, int, dict[int, bytes]]] = {}
        self._completed: dict[tuple[int, int], bytes] = {}

    def reset(self) -> None:
        """Forget everything (a new handshake starts)."""
        self._pending.clear()
        self._completed.clear()

    def add(self, frag: HandshakeFragment) -> RawHandshake | None:
        """Feed one fragment; return the message when complete. Raises HandshakeError."""
        if frag.length > MAX_HANDSHAKE_LEN:
            raise HandshakeError(f"handshake message length {frag.length} too large")
        if frag.fragment_offset == 0 and frag.fragment_length == frag.length:
            return self._complete(frag.msg_type, frag.message_seq, frag.body, False)
        key = frag.message_seq
        entry = self._pending.get(key)
        if entry is None or entry[0] != frag.msg_type or entry[1] != frag.length:
            if len(self._pending) >= self.MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            entry = (frag.msg_type, frag.length, {})
            self._pending[key] = entry
        pieces = entry[2]
        if len(pieces) > 4096:
            raise HandshakeError("too many fragments")
        old = pieces.get(frag.fragment_offset)
        if old is None or len(old) < len(frag.body):
            pieces[frag.fragment_offset] = frag.body
        body = _join(pieces, frag.length)
        if body is None:
            return None
        del self._pending[key]
        return self._complete(frag.msg_type, frag.message_seq, body, True)

    def _complete(self, msg_type: int, seq: int, body: bytes, fragmented: bool) -> RawHandshake:
        key = (seq, msg_type)
        seen = self._completed.get(key)
        self._pending.pop(seq, None)
        if seen is not None and seen == body:
            return RawHandshake(msg_type, seq, body, True, fragmented)
        if len(self._completed) >= 64:
            self._completed.clear()
        self._completed[key] = body
        return RawHandshake(msg_type, seq, body, False, fragmented)


def _join(pieces: dict[int, bytes], length: int) -> bytes | None:
    """Concatenate overlapping pieces if they cover ``[0, length)``, else None."""
    out = bytearray()
    for off in sorted(pieces):
        if off > len(out):
            return None
        piece = pieces[off]
        if off + len(piece) > len(out):
            out += piece[len(out) - off :]
    if len(out) < length:
        return None
    return bytes(out[:length])


# ------------------------------------------------------------------ messages


@dataclass(slots=True)
class Extension:
    """A hello extension as ``(type, data)``."""

    type: int
    data: bytes


@dataclass(slots=True)
class HelloExtensions:
    """Extensions of a hello with the ones the dissector cares about decoded.

    ``connection_id`` is the CID the sender wants to *receive* in the peer's records (the
    value in extension 254, or RFC 9146 54); None when the extension is absent.
    Certificate-type lists (19/20) hold one value in a ServerHello.
    """

    extensions: list[Extension] = field(default_factory=list)
    connection_id: bytes | None = None
    connection_id_draft: bool = False
    encrypt_then_mac: bool = False
    extended_master_secret: bool = False
    client_certificate_types: list[int] | None = None
    server_certificate_types: list[int] | None = None
    supported_groups: list[int] | None = None
    ec_point_formats: list[int] | None = None
    signature_algorithms: list[int] | None = None
    renegotiation_info: bytes | None = None


def _u16_list(data: bytes, what: str) -> list[int]:
    r = _Reader(data)
    body = r.vector(2, what)
    r.done(what)
    if len(body) % 2:
        raise HandshakeError(f"odd {what} length")
    return [int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2)]


def _u8_list(data: bytes, what: str) -> list[int]:
    r = _Reader(data)
    body = r.vector(1, what)
    r.done(what)
    return list(body)


def _parse_extensions(r: _Reader, server: bool) -> HelloExtensions:
    ext = HelloExtensions()
    if not r.remaining():
        return ext
    block = _Reader(r.vector(2, "extensions"))
    r.done("extensions")
    while block.remaining():
        etype = block.uint(2, "extension type")
        data = block.vector(2, f"extension {etype}")
        ext.extensions.append(Extension(etype, data))
        if etype in (EXT_CONNECTION_ID_DRAFT, EXT_CONNECTION_ID):
            ext.connection_id = _Reader(data).vector(1, "connection id")
            ext.connection_id_draft = etype == EXT_CONNECTION_ID_DRAFT
        elif etype == EXT_ENCRYPT_THEN_MAC:
            ext.encrypt_then_mac = True
        elif etype == EXT_EXTENDED_MASTER_SECRET:
            ext.extended_master_secret = True
        elif etype in (EXT_CLIENT_CERTIFICATE_TYPE, EXT_SERVER_CERTIFICATE_TYPE):
            if server:
                if len(data) != 1:
                    raise HandshakeError(f"certificate type extension {etype} not 1 byte")
                types = [data[0]]
            else:
                types = _u8_list(data, "certificate types")
            if etype == EXT_CLIENT_CERTIFICATE_TYPE:
                ext.client_certificate_types = types
            else:
                ext.server_certificate_types = types
        elif etype == EXT_SUPPORTED_GROUPS:
            ext.supported_groups = _u16_list(data, "supported groups")
        elif etype == EXT_EC_POINT_FORMATS:
            ext.ec_point_formats = _u8_list(data, "point formats")
        elif etype == EXT_SIGNATURE_ALGORITHMS:
            ext.signature_algorithms = _u16_list(data, "signature algorithms")
        elif etype == EXT_RENEGOTIATION_INFO:
            ext.renegotiation_info = _Reader(data).vector(1, "renegotiation info")
    return ext


@dataclass(slots=True)
class ClientHello:
    """ClientHello (the device's first flight); ``cookie`` is empty before a HVR."""

    client_version: int
    random: bytes
    session_id: bytes
    cookie: bytes
    cipher_suites: list[int]
    compression_methods: bytes
    ext: HelloExtensions


@dataclass(slots=True)
class HelloVerifyRequest:
    """The server's stateless cookie challenge."""

    server_version: int
    cookie: bytes


@dataclass(slots=True)
class ServerHello:
    """ServerHello; ``ext.connection_id`` is the CID the *device* puts in its records."""

    server_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    ext: HelloExtensions


@dataclass(slots=True)
class Certificate:
    """Certificate message: a raw public key (RFC 7250, SPKI DER) or a list of X.509 DERs."""

    raw_public_key: bytes | None
    certificates: list[bytes]


@dataclass(slots=True)
class ServerKeyExchange:
    """ECDHE ServerKeyExchange; ``params`` are the signed bytes (curve + point)."""

    curve_type: int
    named_curve: int
    public_point: bytes
    signature_algorithm: int | None
    signature: bytes
    params: bytes


@dataclass(slots=True)
class CertificateRequest:
    """CertificateRequest (certificate types, signature algorithms, CA names)."""

    certificate_types: list[int]
    signature_algorithms: list[int]
    certificate_authorities: list[bytes]


@dataclass(slots=True)
class ServerHelloDone:
    """ServerHelloDone (empty)."""


@dataclass(slots=True)
class ClientKeyExchange:
    """ClientKeyExchange; ``public_point`` for ECDHE, else None with the raw body."""

    public_point: bytes | None
    raw: bytes


@dataclass(slots=True)
class CertificateVerify:
    """CertificateVerify: the client's signature over the transcript."""

    signature_algorithm: int
    signature: bytes


@dataclass(slots=True)
class Finished:
    """Finished (12-byte verify_data in TLS 1.2)."""

    verify_data: bytes


@dataclass(slots=True)
class HelloRequest:
    """HelloRequest (empty; server asks for renegotiation)."""


@dataclass(slots=True)
class UnknownHandshake:
    """A handshake message type this module does not decode."""

    msg_type: int
    body: bytes


ParsedHandshake = (
    ClientHello
    | HelloVerifyRequest
    | ServerHello
    | Certificate
    | ServerKeyExchange
    | CertificateRequest
    | ServerHelloDone
    | ClientKeyExchange
    | CertificateVerify
    | Finished
    | HelloRequest
    | UnknownHandshake
)


def parse_client_hello(body: bytes) -> ClientHello:
    """Parse a DTLS ClientHello body."""
    r = _Reader(body)
    version = r.uint(2, "client_version")
    random = r.take(32, "random")
    session_id = r.vector(1, "session_id")
    cookie = r.vector(1, "cookie")
    suites_raw = r.vector(2, "cipher_suites")
    if len(suites_raw) % 2:
        raise HandshakeError("odd cipher_suites length")
    suites = [int.from_bytes(suites_raw[i : i + 2], "big") for i in range(0, len(suites_raw), 2)]
    compression = r.vector(1, "compression_methods")
    ext = _parse_extensions(r, server=False)
    return ClientHello(version, random, session_id, cookie, suites, compression, ext)


def parse_hello_verify_request(body: bytes) -> HelloVerifyRequest:
    """Parse a HelloVerifyRequest body."""
    r = _Reader(body)
    version = r.uint(2, "server_version")
    cookie = r.vector(1, "cookie")
    r.done("HelloVerifyRequest")
    return HelloVerifyRequest(version, cookie)


def parse_server_hello(body: bytes) -> ServerHello:
    """Parse a ServerHello body."""
    r = _Reader(body)
    version = r.uint(2, "server_version")
    random = r.take(32, "random")
    session_id = r.vector(1, "session_id")
    suite = r.uint(2, "cipher_suite")
    compression = r.uint(1, "compression_method")
    ext = _parse_extensions(r, server=True)
    return ServerHello(version, random, session_id, suite, compression, ext)


def parse_certificate(body: bytes, raw_public_key: bool | None = None) -> Certificate:
    """Parse a Certificate body.

    ``raw_public_key`` selects the RFC 7250 form (``opaque ASN.1_subjectPublicKeyInfo<1..2^24-1>``)
    or the X.509 list form; None guesses from the bytes (an SPKI starts with 0x30 where a
    certificate list has another 3-byte length).
    """
    r = _Reader(body)
    block = r.vector(3, "certificate data")
    r.done("Certificate")
    if raw_public_key is None:
        raw_public_key = bool(block) and block[0] == 0x30
    if raw_public_key:
        return Certificate(block, [])
    certs: list[bytes] = []
    cr = _Reader(block)
    while cr.remaining():
        certs.append(cr.vector(3, "certificate"))
    return Certificate(None, certs)


def parse_server_key_exchange(body: bytes) -> ServerKeyExchange:
    """Parse an ECDHE ServerKeyExchange body (named curve, TLS 1.2 signature)."""
    r = _Reader(body)
    curve_type = r.uint(1, "curve_type")
    if curve_type != 3:
        raise HandshakeError(f"unsupported ECParameters curve_type {curve_type}")
    curve = r.uint(2, "named_curve")
    point = r.vector(1, "public point")
    params = body[: r.pos]
    sig_alg = r.uint(2, "signature algorithm")
    sig = r.vector(2, "signature")
    r.done("ServerKeyExchange")
    return ServerKeyExchange(curve_type, curve, point, sig_alg, sig, params)


def parse_certificate_request(body: bytes) -> CertificateRequest:
    """Parse a TLS 1.2 CertificateRequest body."""
    r = _Reader(body)
    types = list(r.vector(1, "certificate_types"))
    algs_raw = r.vector(2, "signature algorithms")
    if len(algs_raw) % 2:
        raise HandshakeError("odd signature algorithms length")
    algs = [int.from_bytes(algs_raw[i : i + 2], "big") for i in range(0, len(algs_raw), 2)]
    names_r = _Reader(r.vector(2, "certificate_authorities"))
    r.done("CertificateRequest")
    names: list[bytes] = []
    while names_r.remaining():
        names.append(names_r.vector(2, "distinguished name"))
    return CertificateRequest(types, algs, names)


def parse_client_key_exchange(body: bytes) -> ClientKeyExchange:
    """Parse a ClientKeyExchange body (ECDHE point if the 1-byte length fits)."""
    if body and body[0] == len(body) - 1:
        return ClientKeyExchange(body[1:], body)
    return ClientKeyExchange(None, body)


def parse_certificate_verify(body: bytes) -> CertificateVerify:
    """Parse a TLS 1.2 CertificateVerify body."""
    r = _Reader(body)
    alg = r.uint(2, "signature algorithm")
    sig = r.vector(2, "signature")
    r.done("CertificateVerify")
    return CertificateVerify(alg, sig)


def parse_handshake_body(
    msg_type: int, body: bytes, raw_public_key: bool | None = None
) -> ParsedHandshake:
    """Decode the body of a handshake message of type ``msg_type``. Raises HandshakeError."""
    if msg_type == HT_CLIENT_HELLO:
        return parse_client_hello(body)
    if msg_type == HT_SERVER_HELLO:
        return parse_server_hello(body)
    if msg_type == HT_HELLO_VERIFY_REQUEST:
        return parse_hello_verify_request(body)
    if msg_type == HT_CERTIFICATE:
        return parse_certificate(body, raw_public_key)
    if msg_type == HT_SERVER_KEY_EXCHANGE:
        return parse_server_key_exchange(body)
    if msg_type == HT_CERTIFICATE_REQUEST:
        return parse_certificate_request(body)
    if msg_type in (HT_SERVER_HELLO_DONE, HT_HELLO_REQUEST):
        if body:
            raise HandshakeError(f"{len(body)} bytes in an empty handshake message")
        return ServerHelloDone() if msg_type == HT_SERVER_HELLO_DONE else HelloRequest()
    if msg_type == HT_CLIENT_KEY_EXCHANGE:
        return parse_client_key_exchange(body)
    if msg_type == HT_CERTIFICATE_VERIFY:
        return parse_certificate_verify(body)
    if msg_type == HT_FINISHED:
        return Finished(body)
    return UnknownHandshake(msg_type, body)
