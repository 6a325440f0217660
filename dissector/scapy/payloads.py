"""Scapy layers for the Particle payloads that have structure (spec §4.3-§4.8, §5.1).

* :class:`ParticleHello` – dispatches to the variant: :class:`ParticleHelloA` (2014 Core),
  :class:`ParticleHelloB` (0.4.2..2.x, TCP), :class:`ParticleHelloBUdp` (same, with the
  device ID), :class:`ParticleHelloC` (3.0+). Detection as in
  :func:`dissector.particle.decode_hello`.
* :class:`ParticleTime` – GetTime answer, 4-byte Unix seconds.
* :class:`ParticleFunctionReturn` – 4-byte signed result.
* :class:`ParticleUpdateBegin` – legacy OTA parameters (12 bytes).
* :class:`ParticleChunkMissed` – list of 16-bit chunk indexes.
* :class:`ParticleGoodbye` – varint flags and the reasons they announce.

:func:`payload_layer_class` picks the layer for a message kind; a payload that does not fit
its layer exactly stays Raw, so a layer never hides or invents bytes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldLenField,
    FieldListField,
    FlagsField,
    IntField,
    ShortEnumField,
    ShortField,
    SignedIntField,
    UTCTimeField,
    XIntField,
    XStrLenField,
)
from scapy.packet import Packet, Raw

from dissector.particle.hello import HELLO_FLAGS, PLATFORMS
from dissector.particle.ota import DESTINATIONS
from dissector.particle.payloads import (
    CLOUD_DISCONNECT_REASONS,
    NETWORK_DISCONNECT_REASONS,
    RESET_REASONS,
    decode_goodbye,
    decode_time,
)
from dissector.scapy.fields import VarIntField

__all__ = [
    "PAYLOAD_LAYERS",
    "ParticleChunkMissed",
    "ParticleFunctionReturn",
    "ParticleGoodbye",
    "ParticleHello",
    "ParticleHelloA",
    "ParticleHelloB",
    "ParticleHelloBUdp",
    "ParticleHelloC",
    "ParticleTime",
    "ParticleUpdateBegin",
    "hello_variant_class",
    "payload_layer_class",
]

_FLAGS8 = [HELLO_FLAGS[1 << i] for i in range(8)]
_FLAGS16 = _FLAGS8 + [f"bit_0x{1 << i:04x}" for i in range(8, 16)]


class _ParticlePayload(Packet):
    """Common base: a payload layer ends the message (trailing bytes become Raw); its
    summary line keeps the CoAP layer's summary too."""

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return s, None

    def summary_text(self) -> str:
        """This layer's part of :meth:`summary`."""
        return str(self.name)

    def mysummary(self) -> Any:
        from dissector.scapy.coap import CoAP

        return self.summary_text(), [CoAP]


class ParticleHello(_ParticlePayload):
    """Hello payload; ``ParticleHello(data)`` returns the variant the bytes are (spec §4.3),
    or Raw when they match no known layout.

    Built from fields it makes a variant C Hello (current firmware). Matches every variant
    in ``pkt[ParticleHello]``.
    """

    name = "Particle Hello"
    match_subclass = True
    fields_desc: ClassVar[list[Any]] = []

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if cls is not ParticleHello:
            return cls
        if _pkt:
            found = hello_variant_class(bytes(_pkt))
            return found if found is not None else Raw
        return ParticleHelloC

    def summary_text(self) -> str:
        parts = [self.name, f"product={self.product_id} v{self.product_version}"]
        platform = self.getfieldval("platform_id") if "platform_id" in self.fieldtype else None
        if platform is not None:
            parts.append(PLATFORMS.get(platform, f"platform {platform}"))
        return " ".join(parts)


class ParticleHelloA(ParticleHello):
    """Variant A (2014 Core): product ID, product firmware version, reserved, 8-bit flags."""

    name = "Particle Hello (A, 2014 Core)"
    fields_desc: ClassVar[list[Any]] = [
        ShortField("product_id", 0xFFFF),
        ShortField("product_version", 0xFFFF),
        ByteField("reserved", 0),
        FlagsField("flags", 0, 8, _FLAGS8),
    ]


class ParticleHelloB(ParticleHello):
    """Variant B over TCP (Device OS 0.4.2..2.x): variant A plus the platform ID."""

    name = "Particle Hello (B)"
    fields_desc: ClassVar[list[Any]] = [
        *ParticleHelloA.fields_desc,
        ShortEnumField("platform_id", 0, PLATFORMS),
    ]


class ParticleHelloBUdp(ParticleHello):
    """Variant B over UDP: variant B plus a 16-bit device ID length (12) and the device ID."""

    name = "Particle Hello (B, UDP)"
    fields_desc: ClassVar[list[Any]] = [
        *ParticleHelloB.fields_desc,
        FieldLenField("device_id_length", None, length_of="device_id", fmt="H"),
        XStrLenField("device_id", bytes(12), length_from=lambda pkt: pkt.device_id_length),
    ]


class ParticleHelloC(ParticleHello):
    """Variant C (Device OS 3.0+): 16-bit flags, device ID (UDP only), system version,
    maximum message size, maximum binary size (0 = unlimited), OTA chunk size."""

    name = "Particle Hello (C)"
    fields_desc: ClassVar[list[Any]] = [
        ShortField("product_id", 0xFFFF),
        ShortField("product_version", 0xFFFF),
        FlagsField("flags", 0, 16, _FLAGS16),
        ShortEnumField("platform_id", 0, PLATFORMS),
        ByteField("reserved", 0),
        FieldLenField("device_id_length", None, length_of="device_id", fmt="B"),
        XStrLenField("device_id", b"", length_from=lambda pkt: pkt.device_id_length),
        ShortField("system_version", 0),
        ShortField("max_message_size", 0),
        IntField("max_binary_size", 0),
        ShortField("ota_chunk_size", 512),
    ]


def hello_variant_class(payload: bytes) -> type[Packet] | None:
    """The Hello layer for ``payload`` (the rules of ``decode_hello``), None if none fits."""
    n = len(payload)
    if n >= 20 and payload[8] == 0 and n == 20 + payload[9]:
        return ParticleHelloC
    if n == 6:
        return ParticleHelloA
    if n == 8:
        return ParticleHelloB
    if n == 22 and payload[8:10] == b"\x00\x0c":
        return ParticleHelloBUdp
    return None


class ParticleTime(_ParticlePayload):
    """GetTime answer: Unix seconds, 4 bytes big-endian (spec §4.7)."""

    name = "Particle Time"
    fields_desc: ClassVar[list[Any]] = [UTCTimeField("unix_time", 0)]

    def summary_text(self) -> str:
        value = int(self.unix_time or 0)
        if 0 <= value <= 0xFFFFFFFF:
            return f"Particle Time {decode_time(value.to_bytes(4, 'big'))['iso']}"
        return f"Particle Time {value}"


class ParticleFunctionReturn(_ParticlePayload):
    """Function result: a 4-byte big-endian signed int (spec §4.5)."""

    name = "Particle Function Return"
    fields_desc: ClassVar[list[Any]] = [SignedIntField("result", 0)]

    def summary_text(self) -> str:
        return f"Particle Function Return {self.result}"


class ParticleUpdateBegin(_ParticlePayload):
    """Legacy OTA UpdateBegin parameters (spec §5.1): flags (bit 0 = fast OTA offered),
    chunk size, file size, destination, destination address."""

    name = "Particle UpdateBegin"
    fields_desc: ClassVar[list[Any]] = [
        FlagsField("flags", 0, 8, ["fast_ota"]),
        ShortField("chunk_size", 256),
        IntField("file_size", 0),
        ByteEnumField("destination", 0, DESTINATIONS),
        XIntField("address", 0),
    ]

    def summary_text(self) -> str:
        return (
            f"Particle UpdateBegin {self.file_size} bytes in chunks of {self.chunk_size}"
            f"{' (fast OTA)' if int(self.flags) & 1 else ''}"
        )


class ParticleChunkMissed(_ParticlePayload):
    """Legacy OTA ChunkMissed: the indexes (16-bit big-endian) of the missing chunks."""

    name = "Particle ChunkMissed"
    fields_desc: ClassVar[list[Any]] = [FieldListField("chunks", [], ShortField("chunk", 0))]

    def summary_text(self) -> str:
        return f"Particle ChunkMissed {self.chunks}"


_GOODBYE_FLAGS = {
    0x01: "cloud_reason",
    0x02: "reset_reason",
    0x04: "sleep_duration",
    0x08: "network_reason",
}


def _flag(bit: int) -> Any:
    return lambda pkt: bool(int(pkt.flags or 0) & bit)


class ParticleGoodbye(_ParticlePayload):
    """Goodbye (spec §4.8): varint flag set, then the cloud disconnect reason, system reset
    reason, sleep duration and network disconnect reason its bits announce."""

    name = "Particle Goodbye"
    fields_desc: ClassVar[list[Any]] = [
        VarIntField("flags", 0, flags=_GOODBYE_FLAGS),
        ConditionalField(
            VarIntField("cloud_reason", 0, names=CLOUD_DISCONNECT_REASONS), _flag(0x01)
        ),
        ConditionalField(VarIntField("reset_reason", 0, names=RESET_REASONS), _flag(0x02)),
        ConditionalField(VarIntField("sleep_duration", 0), _flag(0x04)),
        ConditionalField(
            VarIntField("network_reason", 0, names=NETWORK_DISCONNECT_REASONS), _flag(0x08)
        ),
    ]

    def summary_text(self) -> str:
        reason = getattr(self, "cloud_reason", None)
        name = CLOUD_DISCONNECT_REASONS.get(reason) if reason is not None else None
        return f"Particle Goodbye {name or ''}".rstrip()


#: Message kind -> payload layer (Hello resolves to its variant).
PAYLOAD_LAYERS: dict[str, type[Packet]] = {
    "Hello": ParticleHello,
    "GetTimeReturn": ParticleTime,
    "FunctionReturn": ParticleFunctionReturn,
    "UpdateBegin": ParticleUpdateBegin,
    "SaveBegin": ParticleUpdateBegin,
    "ChunkMissed": ParticleChunkMissed,
    "Goodbye": ParticleGoodbye,
}


def payload_layer_class(kind: str, code: int, payload: bytes) -> type[Packet] | None:
    """The payload layer for a message of ``kind`` with ``code`` and ``payload``, or None
    when the kind has no structured layer or the payload does not have its shape."""
    n = len(payload)
    if not n:
        return None
    if kind == "Hello":
        return hello_variant_class(payload)
    if kind in ("GetTimeReturn", "FunctionReturn"):
        return PAYLOAD_LAYERS[kind] if n == 4 and code >> 5 == 2 else None
    if kind in ("UpdateBegin", "SaveBegin"):
        return ParticleUpdateBegin if n == 12 else None
    if kind == "ChunkMissed":
        return ParticleChunkMissed if n % 2 == 0 else None
    if kind == "Goodbye":
        return ParticleGoodbye if "error" not in decode_goodbye(payload) else None
    return None
