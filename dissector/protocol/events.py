"""Events emitted by the sans-IO protocol core.

A connection object is fed ``(direction, bytes, timestamp)`` and answers with a list
of these small objects. They carry decoded data only; turning them into output
records is the job of :mod:`dissector.output`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dissector.model import Direction, Finding

if TYPE_CHECKING:
    from dissector.coap import CoapMessage
    from dissector.particle import Observation


@dataclass(slots=True)
class HandshakeBlob:
    """One of the three TCP handshake messages (``nonce``, ``identity``, ``session_key``).

    ``info`` holds what could be learnt from it with the keys at hand, e.g.
    ``device_id``, ``decrypted_with``, ``nonce_echo_ok``, ``signature_valid``.
    """

    session: str
    direction: Direction
    ts: float
    step: str
    raw: bytes
    info: dict[str, Any] = field(default_factory=dict)
    device_id: str | None = None
    transport: str = "tcp"
    #: The decrypted blob (identity plaintext or the 40 credential bytes): secret
    #: material for the Scapy view; never written to records.
    plaintext: bytes | None = field(default=None, repr=False)


@dataclass(slots=True)
class EncryptedInfo:
    """Why a frame could not be shown as CoAP, and what of it is known anyway."""

    length: int
    reason: str
    known_plaintext: bytes | None = None
    known_offset: int = 0


@dataclass(slots=True)
class MessageEvent:
    """One application message (a TCP frame or a DTLS record) in one direction.

    Exactly one of ``coap`` and ``encrypted`` is set: a frame that could not be fully
    decrypted and parsed keeps ``coap=None`` and says why in ``encrypted``.
    """

    session: str
    direction: Direction
    ts: float
    wire_length: int
    coap: CoapMessage | None = None
    observation: Observation | None = None
    encrypted: EncryptedInfo | None = None
    device_id: str | None = None
    stream_offset: int = -1
    retransmission: bool = False
    transport: str = "tcp"
    #: The frame's ciphertext (TCP: without the length prefix; DTLS: the record fragment)
    #: and, when decrypted, the plaintext: for the Scapy view and exports.
    ciphertext: bytes = field(default=b"", repr=False)
    plaintext: bytes | None = field(default=None, repr=False)


@dataclass(slots=True)
class SessionKeys:
    """Session secrets the core recovered; a key log writer turns these into lines."""

    session: str
    label: str
    lookup: bytes
    secret: bytes
    source: str


@dataclass(slots=True)
class FindingEvent:
    """A :class:`~dissector.model.Finding` raised by the core."""

    finding: Finding

    @property
    def ts(self) -> float | None:
        return self.finding.ts


Event = HandshakeBlob | MessageEvent | SessionKeys | FindingEvent
