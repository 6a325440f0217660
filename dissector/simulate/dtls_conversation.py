"""Particle exchanges with the UDP conventions of spec §6.9 (on top of :class:`Conversation`).

Over DTLS the device's Hello is CON and carries its device ID; events are CON by default
and the cloud answers with an empty ACK; separate responses (function result, variable
value, describe) are CON and the receiver acknowledges them with an empty ACK; pings are
empty CONs. :class:`UdpConversation` switches the shared helpers to these conventions
(``confirmable_messages``), changes their defaults where firmware differs, and adds
:meth:`UdpConversation.retransmit` and the CoAP retransmission timer.
"""

from __future__ import annotations

import zlib
from typing import Any

from dissector.coap import CoapMessage
from dissector.model import Direction
from dissector.simulate import messages as m
from dissector.simulate.conversation import Conversation, Exchange
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource

__all__ = ["ACK_TIMEOUT", "MAX_RETRANSMIT", "UdpConversation"]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

ACK_TIMEOUT = 4.0
"""Device OS CoAP ACK timeout (seconds) before the first retransmission (spec §4.1)."""
MAX_RETRANSMIT = 3

#: Describe flags (Uri-Query byte): system, application, metrics.
DESCRIBE_SYSTEM = 1
DESCRIBE_APPLICATION = 2


class UdpConversation(Conversation):
    """Exchange helpers with Particle's UDP conventions (Device OS ≥ 0.5 over DTLS).

    Subclasses supply :meth:`device_sends` / :meth:`cloud_sends` and set ``device_id``
    (12 bytes) and ``timer_rng`` (a :class:`ByteSource` for retransmission jitter).
    ``subscriptions_crc`` / ``describe_app_crc`` / ``describe_system_crc`` and the Hello
    fields are what the device would cache in its persisted session.
    """

    device_id: bytes
    timer_rng: ByteSource
    confirmable_messages = True
    cloud_event_always_ttl = False

    def __init__(self, **counters: Any) -> None:
        """``counters``: the :class:`Conversation` arguments (seeds, start, step, …)."""
        super().__init__(**counters)
        self.subscriptions_crc = 0
        self.describe_app_crc = 0
        self.describe_system_crc = 0
        #: Hello Variant C fields the device caches (system version, sizes).
        self.hello_fields: dict[str, int] = {}

    # -- timers ----------------------------------------------------------------------------

    def retransmission_delay(self, attempt: int) -> float:
        """Seconds before retransmission ``attempt`` (1..3): ``4 s << (attempt - 1)`` plus a
        random 0–50 % (Device OS ``CoAPMessage``), drawn from ``timer_rng``."""
        if not 1 <= attempt <= MAX_RETRANSMIT:
            raise SimulationError(f"retransmission attempt must be 1..{MAX_RETRANSMIT}")
        base = ACK_TIMEOUT * (1 << (attempt - 1))
        return round(base * (1 + self.timer_rng.uint(0, 500) / 1000), 3)

    def retransmit(
        self, msg: CoapMessage, direction: Direction, *, attempt: int = 1, at: float | None = None
    ) -> bytes:
        """Send ``msg`` again, unchanged (same message ID and token), in a new record.

        ``at`` defaults to the previous write's time plus :meth:`retransmission_delay` of
        ``attempt`` (so attempts 1, 2, 3 in a row follow the device's timer).
        """
        when = self.now + self.retransmission_delay(attempt) if at is None else at
        if direction is D2C:
            return self.device_sends(msg, when)
        return self.cloud_sends(msg, when)

    # -- hello -----------------------------------------------------------------------------

    def device_hello(
        self, variant: str = "C", *, at: float | None = None, ack: bool = True, **fields: Any
    ) -> Exchange:
        """The device Hello: CON POST ``h`` with the device ID (Variant C for ≥ 3.0, B for
        older), and the cloud's empty ACK."""
        fields.setdefault("device_id", self.device_id)
        payload = m.hello_payload(variant, **fields)
        if variant == "C":
            for key in ("system_version", "max_message_size", "max_binary_size", "ota_chunk_size"):
                default = {"max_message_size": 1152, "ota_chunk_size": 512}.get(key, 0)
                self.hello_fields[key] = int(fields.get(key, default))
        msg = m.hello(self.next_device_mid(), payload, confirmable=True)
        self.device_sends(msg, at)
        if not ack:
            return (msg,)
        return msg, self._cloud_ack(msg, 0)

    # -- device-initiated ------------------------------------------------------------------

    def device_event(
        self,
        name: str | bytes,
        data: bytes | str = b"",
        *,
        private: bool = True,
        ttl: int = m.DEFAULT_TTL,
        content_format: int | None = None,
        ack: int | None = 0,
        at: float | None = None,
    ) -> Exchange:
        """A device event: CON POST ``E``/``e`` and (``ack`` not None) the cloud's ACK with
        that code (0 = empty ACK)."""
        return super().device_event(
            name,
            data,
            private=private,
            ttl=ttl,
            content_format=content_format,
            ack=ack,
            at=at,
        )

    def subscribe(
        self, name_filter: str | bytes, *, my_devices: bool = False, at: float | None = None
    ) -> Exchange:
        """Device subscription (CON GET ``e``) and the cloud's empty ACK."""
        raw = name_filter.encode() if isinstance(name_filter, str) else bytes(name_filter)
        self.subscriptions_crc = zlib.crc32(raw, self.subscriptions_crc)
        return super().subscribe(name_filter, my_devices=my_devices, at=at)

    # -- cloud-initiated -------------------------------------------------------------------

    def variable_read(
        self,
        name: str | bytes,
        value: bytes,
        *,
        piggybacked: bool = False,
        at: float | None = None,
    ) -> Exchange:
        """Cloud CON GET ``v/<name>``; the value as a piggybacked ACK 2.05 (Device OS ≤ 1.x)
        or, by default (current firmware), an empty ACK, a separate CON 2.05 and the cloud's
        empty ACK."""
        return super().variable_read(name, value, piggybacked=piggybacked, at=at)

    def describe(
        self,
        description: bytes | str | dict[str, Any],
        *,
        flags: int | None = DESCRIBE_APPLICATION,
        piggybacked: bool = False,
        at: float | None = None,
    ) -> Exchange:
        """Cloud CON GET ``d`` (Uri-Query = ``flags``); the device's empty ACK, separate
        CON 2.05 with the JSON and the cloud's empty ACK (v0.5+), or a piggybacked ACK 2.05
        (``piggybacked``). Records the description's CRC for the persisted session."""
        payload = self._describe_payload(description)
        if flags == DESCRIBE_APPLICATION:
            self.describe_app_crc = zlib.crc32(payload)
        elif flags == DESCRIBE_SYSTEM:
            self.describe_system_crc = zlib.crc32(payload)
        return super().describe(payload, flags=flags, piggybacked=piggybacked, at=at)
