"""Scapy layers for the Particle protocol, and Scapy integration.

Layers (field names as in the protocol spec):

* handshake: :class:`ParticleNonce`, :class:`ParticleIdentity` (decrypted view
  :class:`ParticleIdentityPlaintext`), :class:`ParticleSessionKey` (decrypted view
  :class:`ParticleSessionCredentials`);
* frames: :class:`ParticleFrame` (``u16 length ‖ ciphertext``; decrypted view: the message);
* :class:`CoAP` with :class:`CoAPOption` - the project's validated CoAP layer, every option
  named (Particle's OTA options 2049-2077 included), not ``scapy.contrib.coap``;
* payloads: :class:`ParticleHello` (variants A, B, B over UDP, C), :class:`ParticleTime`,
  :class:`ParticleFunctionReturn`, :class:`ParticleUpdateBegin`,
  :class:`ParticleChunkMissed`, :class:`ParticleGoodbye`;
* DTLS (UDP 5684, :mod:`dissector.scapy.dtls`, :mod:`dissector.scapy.dtls_handshake`):
  :class:`ParticleDtlsDatagram` (records, move trailer :class:`ParticleDtlsMoveTrailer`),
  :class:`ParticleDtlsRecord` (content types 20-23, 25, 253, 254; connection ID),
  :class:`DtlsHandshake` with every handshake message (:class:`DtlsClientHello` ...
  :class:`DtlsFinished`) and its extensions, :class:`DtlsAlert`,
  :class:`DtlsChangeCipherSpec`, :class:`DtlsCiphertext` (decrypted view: the CoAP message,
  behind :class:`DtlsInnerPlaintext` for a connection-ID record).

An encrypted layer's payload is its decrypted view: it is shown and searchable
(``pkt[CoAP]``) but ``bytes(layer)`` writes only the wire bytes.

Decoding is done by the real sans-IO core, driven by :class:`ParticleSession` with the key
ring you give it (nothing global: two sessions with different keys never share any).
A Scapy session, run from the repository root::

    >>> from scapy.sendrecv import sniff
    >>> from dissector.keys import KeyRing
    >>> from dissector.scapy import CoAP, ParticleFrame, ParticleHello, ParticleSession
    >>> ring = KeyRing()
    >>> ring.load("tests/data/tcp/keys/5190c68b84cc2643c6b052a7.der")  # the device key
    1
    >>> pkts = sniff(offline="tests/data/tcp/sparkprotocol-0.1.6__deviceos-0.7.0_full.pcap",
    ...              session=ParticleSession(keyring=ring))
    >>> for pkt in pkts[:3]:
    ...     print(pkt.summary())
    Ether / IP / TCP / Particle Nonce 86444162…
    Ether / IP / TCP / Particle Identity (encrypted)
    Ether / IP / TCP / ParticleSessionKey / Particle Session Credentials
    >>> hello = pkts[3]
    >>> print(hello[CoAP].summary())
    CoAP NON 0.02 POST mid=19926 /h / Particle Hello (B) product=3 v65535 Virtual device (gcc)
    >>> hello[ParticleHello].platform_id, hello[CoAP].uri, hello[ParticleFrame].event.direction
    (3, '/h', <Direction.DEVICE_TO_CLOUD: 'device->cloud'>)
    >>> pkts[13][CoAP].show()
    ###[ CoAP ]###
      version   = 1
      type      = ACK
      token_length= 1
      code      = 2.05 Content
      message_id= 19930
      token     = 01
      \\options   \\
    ###[ Particle Time ]###
         unix_time = Wed, 25 Nov 2026 21:11:10  (1795641070)
    <BLANKLINE>

Building: a CoAP layer plus the session credentials give a frame ready to send, and the
frame decrypts back to the same message::

    >>> from scapy.packet import raw
    >>> from dissector.scapy import ParticleSessionCredentials, decrypt_frame, encrypt_frame
    >>> creds = pkts[2][ParticleSessionCredentials]
    >>> ping = CoAP(type="CON", code="GET", message_id=19930, token=b"\\x01",
    ...             options=[("Uri-Path", "t")])
    >>> frame = encrypt_frame(ping, creds)  # a direction's first frame: the credential IV
    >>> len(raw(frame)), frame.next_iv == raw(frame)[2:18]
    (18, True)
    >>> back = decrypt_frame(raw(frame), creds)
    >>> raw(back[CoAP]) == raw(ping), back.summary()
    (True, 'ParticleFrame / CoAP CON 0.01 GET mid=19930 token=01 /t')

Without ``sniff``: ``for pkt in ParticleSession(keyring=ring).decode(PcapReader(f))``.
``dissect --verbose`` uses :func:`show_message`.

DTLS: each UDP datagram to or from port 5684 keeps its headers and carries its records;
with a key log (or the device's persisted session) the core decrypts the application data::

    >>> ring = KeyRing()
    >>> ring.load("captures/keys/dtls-gen3-session.keylog")
    1
    >>> dtls = sniff(offline="captures/dtls-gen3-session.pcap",
    ...              session=ParticleSession(keyring=ring))
    >>> print(dtls[2].summary())
    Ether / IP / UDP / Particle DTLS handshake 0/1: ClientHello seq=1
    >>> hello = dtls[2][DtlsClientHello]
    >>> len(hello.cookie), [ext.type for ext in hello.extensions][-3:]
    (32, [254, 19, 20])
    >>> record = dtls[6][ParticleDtlsRecord]
    >>> print(record.mysummary())
    DTLS tls12_cid 1/1 cid=4a4cb26e9d174efe
    >>> print(dtls[6][CoAP].summary())
    CoAP CON 0.02 POST mid=1 /h / Particle Hello (C) product=12 v65535 Argon
    >>> record.content_type, record.cid.hex(), dtls[6][DtlsInnerPlaintext].padding_length
    (25, '4a4cb26e9d174efe', 8)
    >>> dtls[6][DtlsCiphertext].event.device_id
    'e00fce681f2c4b7d9a3e5c60'

Building: ``ParticleDtlsRecord(content_type="handshake") / DtlsHandshake() /
DtlsClientHello(...)`` derives every length and the message type.
"""

from __future__ import annotations

from dissector.scapy.coap import CoAP, CoAPOption, attach_payload_layer, coap_layer
from dissector.scapy.dtls import (
    DtlsCiphertext,
    DtlsInnerPlaintext,
    ParticleDtlsDatagram,
    ParticleDtlsMoveTrailer,
    ParticleDtlsRecord,
)
from dissector.scapy.dtls_handshake import (
    DtlsAlert,
    DtlsCertificate,
    DtlsCertificateEntry,
    DtlsCertificateRequest,
    DtlsCertificateVerify,
    DtlsChangeCipherSpec,
    DtlsClientHello,
    DtlsClientKeyExchange,
    DtlsDistinguishedName,
    DtlsExtCertificateType,
    DtlsExtCertificateTypes,
    DtlsExtConnectionId,
    DtlsExtEcPointFormats,
    DtlsExtEncryptThenMac,
    DtlsExtension,
    DtlsExtExtendedMasterSecret,
    DtlsExtRenegotiationInfo,
    DtlsExtSignatureAlgorithms,
    DtlsExtSupportedGroups,
    DtlsFinished,
    DtlsHandshake,
    DtlsHandshakeFragment,
    DtlsHelloRequest,
    DtlsHelloVerifyRequest,
    DtlsLayerError,
    DtlsServerHello,
    DtlsServerHelloDone,
    DtlsServerKeyExchange,
)
from dissector.scapy.dtls_session import DtlsDecoder, event_layers
from dissector.scapy.frame import (
    FrameError,
    ParticleFrame,
    decrypt_frame,
    encrypt_frame,
    session_credentials,
)
from dissector.scapy.handshake import (
    EncryptedLayer,
    ParticleIdentity,
    ParticleIdentityPlaintext,
    ParticleLayer,
    ParticleNonce,
    ParticleSessionCredentials,
    ParticleSessionKey,
)
from dissector.scapy.payloads import (
    PAYLOAD_LAYERS,
    ParticleChunkMissed,
    ParticleFunctionReturn,
    ParticleGoodbye,
    ParticleHello,
    ParticleHelloA,
    ParticleHelloB,
    ParticleHelloBUdp,
    ParticleHelloC,
    ParticleTime,
    ParticleUpdateBegin,
    payload_layer_class,
)
from dissector.scapy.session import ParticleSession
from dissector.scapy.show import handshake_layers, message_layers, show_message

__all__ = [
    "PAYLOAD_LAYERS",
    "CoAP",
    "CoAPOption",
    "DtlsAlert",
    "DtlsCertificate",
    "DtlsCertificateEntry",
    "DtlsCertificateRequest",
    "DtlsCertificateVerify",
    "DtlsChangeCipherSpec",
    "DtlsCiphertext",
    "DtlsClientHello",
    "DtlsClientKeyExchange",
    "DtlsDecoder",
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
    "DtlsHandshakeFragment",
    "DtlsHelloRequest",
    "DtlsHelloVerifyRequest",
    "DtlsInnerPlaintext",
    "DtlsLayerError",
    "DtlsServerHello",
    "DtlsServerHelloDone",
    "DtlsServerKeyExchange",
    "EncryptedLayer",
    "FrameError",
    "ParticleChunkMissed",
    "ParticleDtlsDatagram",
    "ParticleDtlsMoveTrailer",
    "ParticleDtlsRecord",
    "ParticleFrame",
    "ParticleFunctionReturn",
    "ParticleGoodbye",
    "ParticleHello",
    "ParticleHelloA",
    "ParticleHelloB",
    "ParticleHelloBUdp",
    "ParticleHelloC",
    "ParticleIdentity",
    "ParticleIdentityPlaintext",
    "ParticleLayer",
    "ParticleNonce",
    "ParticleSession",
    "ParticleSessionCredentials",
    "ParticleSessionKey",
    "ParticleTime",
    "ParticleUpdateBegin",
    "attach_payload_layer",
    "coap_layer",
    "decrypt_frame",
    "encrypt_frame",
    "event_layers",
    "handshake_layers",
    "message_layers",
    "payload_layer_class",
    "session_credentials",
    "show_message",
]
