"""Core DTLS events -> Scapy layers (the decrypted views; nothing is decrypted here).

* :func:`message_view` - what a :class:`~dissector.protocol.events.MessageEvent` decrypted
  to: the CoAP message (with its Particle payload layer), or the raw plaintext when it is
  not CoAP; None while the record is encrypted.
* :func:`handshake_view` - the layer of a DTLS :class:`~dissector.protocol.events.HandshakeBlob`:
  the whole :class:`~dissector.scapy.dtls_handshake.DtlsHandshake` when the blob carries the
  message's bytes (``raw``), else the body rebuilt from the parsed fields in ``info``;
  :class:`~dissector.scapy.dtls_handshake.DtlsChangeCipherSpec`;
  :class:`~dissector.scapy.dtls_handshake.DtlsAlert`. None for an encrypted handshake
  message the core could not open.
* :func:`dtls_message_layers` / :func:`dtls_handshake_layers` - the layers
  ``show_message`` prints for one event without its datagram.
"""

from __future__ import annotations

from typing import Any

from scapy.packet import Packet, Raw

from dissector.coap import encode
from dissector.dtls.crypto import SUITES
from dissector.dtls.handshake import HANDSHAKE_TYPE_NAMES
from dissector.dtls.session import ALERT_DESCRIPTIONS
from dissector.protocol.events import HandshakeBlob, MessageEvent
from dissector.scapy.coap import coap_layer
from dissector.scapy.dtls import DtlsCiphertext
from dissector.scapy.dtls_handshake import (
    DtlsAlert,
    DtlsCertificate,
    DtlsCertificateEntry,
    DtlsCertificateRequest,
    DtlsCertificateVerify,
    DtlsChangeCipherSpec,
    DtlsClientHello,
    DtlsDistinguishedName,
    DtlsExtension,
    DtlsFinished,
    DtlsHandshake,
    DtlsHelloVerifyRequest,
    DtlsLayerError,
    DtlsServerHello,
    DtlsServerKeyExchange,
    body_layer_class,
)

__all__ = [
    "body_from_info",
    "dtls_handshake_layers",
    "dtls_message_layers",
    "handshake_view",
    "inner_padding",
    "message_view",
]

_TYPE_BY_NAME = {name: code for code, name in HANDSHAKE_TYPE_NAMES.items()}
_ALERT_BY_NAME = {name: code for code, name in ALERT_DESCRIPTIONS.items()}


def message_view(event: MessageEvent) -> Packet | None:
    """The decrypted content of a DTLS application-data record, or None."""
    if event.coap is not None:
        kind = event.observation.kind if event.observation is not None else None
        return coap_layer(encode(event.coap), kind)
    if event.plaintext is not None:
        return Raw(event.plaintext)
    return None


def _hex(info: dict[str, Any], key: str) -> bytes:
    value = info.get(key)
    return bytes.fromhex(value) if isinstance(value, str) else b""


def _extensions(info: dict[str, Any]) -> list[Packet]:
    ext = info.get("ext") or {}
    return [
        DtlsExtension(type=int(e["type"]), data=bytes.fromhex(e["data"]))
        for e in ext.get("extensions") or []
    ]


def body_from_info(step: str, info: dict[str, Any]) -> Packet | None:
    """A handshake body rebuilt from the fields the core parsed (``HandshakeBlob.info``),
    or None for a step without a body to show. (The 12-byte header is not in ``info``.)"""
    built: Packet | None
    if step == "ClientHello":
        built = DtlsClientHello(
            client_version=info["client_version"],
            random=_hex(info, "random"),
            session_id=_hex(info, "session_id"),
            cookie=_hex(info, "cookie"),
            cipher_suites=list(info["cipher_suites"]),
            compression_methods=list(_hex(info, "compression_methods")),
            extensions=_extensions(info),
        )
    elif step == "HelloVerifyRequest":
        built = DtlsHelloVerifyRequest(
            server_version=info["server_version"], cookie=_hex(info, "cookie")
        )
    elif step == "ServerHello":
        built = DtlsServerHello(
            server_version=info["server_version"],
            random=_hex(info, "random"),
            session_id=_hex(info, "session_id"),
            cipher_suite=info["cipher_suite"],
            compression_method=info["compression_method"],
            extensions=_extensions(info),
        )
    elif step == "Certificate":
        if info.get("raw_public_key"):
            built = DtlsCertificate(certificate_type=2, raw_public_key=_hex(info, "raw_public_key"))
        else:
            certs = [bytes.fromhex(c) for c in info.get("certificates") or []]
            built = DtlsCertificate(
                certificate_type=0,
                certificates=[DtlsCertificateEntry(certificate=c) for c in certs],
            )
    elif step == "ServerKeyExchange":
        built = DtlsServerKeyExchange(
            curve_type=info["curve_type"],
            named_curve=info["named_curve"],
            public_point=_hex(info, "public_point"),
            signature_algorithm=info["signature_algorithm"],
            signature=_hex(info, "signature"),
        )
    elif step == "CertificateRequest":
        built = DtlsCertificateRequest(
            certificate_types=list(info["certificate_types"]),
            signature_algorithms=list(info["signature_algorithms"]),
            certificate_authorities=[
                DtlsDistinguishedName(distinguished_name=bytes.fromhex(n))
                for n in info.get("certificate_authorities") or []
            ],
        )
    elif step == "ClientKeyExchange":
        built = Raw(_hex(info, "raw"))
    elif step == "CertificateVerify":
        built = DtlsCertificateVerify(
            signature_algorithm=info["signature_algorithm"], signature=_hex(info, "signature")
        )
    elif step == "Finished":
        built = DtlsFinished(verify_data=_hex(info, "verify_data"))
    elif step in ("ServerHelloDone", "HelloRequest"):
        built = Raw(b"")
    else:
        return None
    body = bytes(built)
    return body_layer_class(_TYPE_BY_NAME[step], body)(body)


def handshake_view(blob: HandshakeBlob) -> Packet | None:
    """The layer of a DTLS handshake message, ChangeCipherSpec or alert (see module doc)."""
    step = blob.step
    info = blob.info
    if step == "ChangeCipherSpec":
        return DtlsChangeCipherSpec()
    if step == "Alert":
        level, desc = info.get("level"), info.get("description")
        if level is None or desc is None:
            return None
        code = _ALERT_BY_NAME.get(desc)
        if code is None and isinstance(desc, str) and desc.startswith("alert_"):
            code = int(desc[6:])
        return DtlsAlert(level=level, description=code or 0)
    if blob.raw:
        try:
            return DtlsHandshake(blob.raw)
        except DtlsLayerError:
            return Raw(blob.raw)
    if "error" in info:
        return None
    try:
        return body_from_info(step, info)
    except (KeyError, TypeError, ValueError):
        return None


def inner_padding(suite_code: int | None, fragment_len: int, content_len: int) -> int:
    """The zero bytes after the real content type in a CID record's inner plaintext: exact
    for AEAD suites (from the fragment length), else mbedTLS's 16-byte granularity."""
    suite = SUITES.get(suite_code) if suite_code is not None else None
    if suite is not None and suite.kind != "cbc":
        pad = fragment_len - suite.explicit_nonce_len - suite.tag_len - content_len - 1
        if pad >= 0:
            return pad
    return (-(content_len + 1)) % 16


def _mark(layer: Packet | None, event: Any) -> None:
    if layer is not None and hasattr(type(layer), "event"):
        layer.event = event


def dtls_message_layers(event: MessageEvent) -> Packet:
    """The layers of one DTLS message known only from its event (the record header is not
    in the event): the :class:`~dissector.scapy.dtls.DtlsCiphertext` with the decrypted
    view as payload."""
    ct = DtlsCiphertext(ciphertext=event.ciphertext)
    view = message_view(event)
    if view is not None:
        ct.add_payload(view)
    ct.event = event
    return ct


def dtls_handshake_layers(blob: HandshakeBlob) -> Packet | None:
    """The layer of one DTLS handshake blob (see :func:`handshake_view`), ``event`` set."""
    layer = handshake_view(blob)
    _mark(layer, blob)
    return layer
