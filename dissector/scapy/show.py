"""Core events -> Scapy layers, and :func:`show_message` for ``dissect --verbose``.

The layers are built from what the sans-IO core decoded (nothing is decrypted here):

* a :class:`~dissector.protocol.events.MessageEvent` becomes a
  :class:`~dissector.scapy.frame.ParticleFrame` when its wire bytes are known, with the
  :class:`~dissector.scapy.coap.CoAP` message (and its Particle payload layer) stacked on it
  when the core decrypted it; an undecryptable frame stays a bare ``ParticleFrame``;
* a :class:`~dissector.protocol.events.HandshakeBlob` becomes the matching handshake layer,
  with its decrypted view when the plaintext is known.

DTLS events (``transport == "dtls"``) become the DTLS layers of
:mod:`dissector.scapy.dtls_view`: a message's
:class:`~dissector.scapy.dtls.DtlsCiphertext` with its CoAP message, a handshake message's
:class:`~dissector.scapy.dtls_handshake.DtlsHandshake` (or its body when the event does not
carry the message bytes), ChangeCipherSpec, alert.
"""

from __future__ import annotations

from scapy.packet import Packet, Raw

from dissector.coap import encode
from dissector.protocol.events import HandshakeBlob, MessageEvent
from dissector.scapy.coap import coap_layer
from dissector.scapy.dtls_view import dtls_handshake_layers, dtls_message_layers
from dissector.scapy.frame import ParticleFrame
from dissector.scapy.handshake import (
    ParticleIdentity,
    ParticleIdentityPlaintext,
    ParticleLayer,
    ParticleNonce,
    ParticleSessionCredentials,
    ParticleSessionKey,
)

__all__ = ["handshake_layers", "message_layers", "show_message"]


def message_layers(event: MessageEvent, wire: bytes | None = None) -> Packet | None:
    """The layers of one message.

    ``wire`` is the frame as sent (``u16 length ‖ ciphertext``); without it (the event does
    not carry it) a decoded message is returned as its CoAP layer alone and an undecoded one
    as None. The top layer's ``event`` attribute is ``event``. A DTLS message is its
    :class:`~dissector.scapy.dtls.DtlsCiphertext` (``wire`` is not used).
    """
    if event.transport == "dtls":
        return dtls_message_layers(event)
    inner: Packet | None = None
    if event.coap is not None:
        kind = event.observation.kind if event.observation is not None else None
        inner = coap_layer(encode(event.coap), kind)
    if wire is None:
        ciphertext = getattr(event, "ciphertext", None)
        if isinstance(ciphertext, bytes):
            wire = len(ciphertext).to_bytes(2, "big") + ciphertext
    top: Packet | None
    if wire is not None and len(wire) >= 2:
        frame = ParticleFrame(wire)
        if inner is not None:
            frame.add_payload(inner)
        frame.event = event
        top = frame
    else:
        top = inner
    return top


def handshake_layers(blob: HandshakeBlob, plaintext: bytes | None = None) -> Packet:
    """The layer of one handshake message; ``plaintext`` (the 214/52 identity bytes or the
    40 credential bytes) is stacked as its decrypted view. The ``event`` attribute of the
    returned layer is ``blob``. A DTLS blob gives its DTLS layer (``Raw`` of its bytes when
    there is nothing to show, e.g. an encrypted handshake message)."""
    layer: Packet
    if blob.transport == "dtls":
        dtls = dtls_handshake_layers(blob)
        return dtls if dtls is not None else Raw(blob.raw)
    if blob.step == "nonce":
        layer = ParticleNonce(blob.raw)
    elif blob.step == "identity":
        layer = ParticleIdentity(blob.raw)
        if plaintext is not None:
            layer.add_payload(ParticleIdentityPlaintext(plaintext))
    elif blob.step == "session_key":
        layer = ParticleSessionKey(blob.raw)
        if plaintext is not None:
            layer.add_payload(ParticleSessionCredentials(plaintext))
    else:
        layer = Raw(blob.raw)
    if isinstance(layer, ParticleLayer):
        layer.event = blob
    return layer


def show_message(event: MessageEvent | HandshakeBlob) -> str:
    """The layer tree of one decoded message exactly as Scapy's ``Packet.show()`` prints it
    (``###[ CoAP ]###`` headers), or ``""`` when there is nothing decoded to show.

    Handshake messages show their wire layer; session credentials are never shown here.
    """
    layer: Packet | None
    if isinstance(event, MessageEvent):
        layer = message_layers(event)
    elif isinstance(event, HandshakeBlob) and event.transport == "dtls":
        layer = dtls_handshake_layers(event)
    elif isinstance(event, HandshakeBlob):
        plaintext = getattr(event, "plaintext", None) if event.step == "identity" else None
        layer = handshake_layers(event, plaintext if isinstance(plaintext, bytes) else None)
    else:
        return ""
    if layer is None:
        return ""
    text = layer.show(dump=True)
    return text if isinstance(text, str) else ""
