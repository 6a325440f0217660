"""Persisted DTLS sessions: Device OS ``SessionPersistData`` blobs and their text form.

A persisted session holds both hello randoms and the master secret, which is all that is
needed to decrypt every record of that session — including resumed connections that show
no handshake on the wire (spec §6.5, §6.6, §6.8).

Binary layouts (packed, little-endian; fields were appended over time and ``size`` tells
which are present):

* 32-bit ARM (devices): HEAD is 262 bytes (offsets in spec §6.6); Device OS 0.7/1.0 write
  220 bytes (three CRCs after ``next_coap_id``; no replay window, no CID).
* x86-64 (the native "virtual device"): ``id_len`` is a 64-bit ``size_t``, so everything
  from the session id on is 4 bytes later (master at 152; 224 bytes on 0.7/1.0).

NSS key logs are parsed elsewhere (the key ring); a master secret can be used directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .crypto import SUITES


class SessionPersistError(ValueError):
    """The bytes or text are not a usable persisted session."""


@dataclass(slots=True)
class PersistedSession:
    """What a persisted DTLS session tells the decryptor.

    ``cid`` is the peer-assigned CID the device puts in its records. ``out_epoch``/
    ``out_seq`` are the device's next outgoing record counter; ``in_epoch`` the epoch it
    expects from the cloud. Fields a layout does not carry are None. ``layout`` names the
    binary layout that was recognised (``"text"`` for the text form, ``"live"`` for a
    session exported from a connection).
    """

    client_random: bytes
    server_random: bytes
    master: bytes | None
    ciphersuite: int
    session_id: bytes = b""
    compression: int = 0
    in_epoch: int = 1
    out_epoch: int = 1
    out_seq: int = 0
    next_coap_id: int | None = None
    cid: bytes | None = None
    in_window_top: int | None = None
    in_window: int | None = None
    encrypt_then_mac: bool = False
    layout: str = "text"
    size: int = 0
    persistent: int | None = None
    use_counter: int | None = None
    keys_checksum: int | None = None
    connection: bytes | None = None
    subscriptions_crc: int | None = None
    describe_app_crc: int | None = None
    describe_system_crc: int | None = None
    protocol_flags: int | None = None
    app_state_flags: int | None = None
    max_binary_size: int | None = None
    system_version: int | None = None
    max_message_size: int | None = None
    ota_chunk_size: int | None = None

    @property
    def out_ctr(self) -> tuple[int, int]:
        """``(epoch, sequence number)`` of the device's next outgoing record."""
        return self.out_epoch, self.out_seq


# --------------------------------------------------------------------------- binary

_ARM32 = "arm32"
_X86_64 = "x86_64"
_SHIFT = {_ARM32: 0, _X86_64: 4}
# Sizes written by known firmware, per ABI (HEAD and the older prefixes).
_KNOWN_SIZES = {
    _ARM32: (220, 228, 238, 254, 262),
    _X86_64: (224, 232, 242, 258, 266),
}
_MIN_SIZE = 208  # through next_coap_id on 32-bit ARM
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _sane(data: bytes, abi: str, size: int) -> bool:
    d = _SHIFT[abi]
    if size < _MIN_SIZE + d:
        return False
    suite = _U32.unpack_from(data, 104)[0]
    compression = _U32.unpack_from(data, 108)[0]
    id_len = (_U64 if abi == _X86_64 else _U32).unpack_from(data, 112)[0]
    in_epoch = _U16.unpack_from(data, 196 + d)[0]
    out_epoch = int.from_bytes(data[198 + d : 200 + d], "big")
    return (
        0 < suite <= 0xFFFF
        and compression <= 1
        and id_len <= 32
        and in_epoch <= 0xFF
        and out_epoch <= 0xFF
    )


def _choose_abi(data: bytes, size: int) -> str | None:
    for abi in (_ARM32, _X86_64):
        if size in _KNOWN_SIZES[abi] and _sane(data, abi, size):
            return abi
    arm_ok = _sane(data, _ARM32, size)
    x86_ok = _sane(data, _X86_64, size)
    if arm_ok and x86_ok:
        # Prefer the interpretation with a known suite, then ARM (real devices).
        arm_known = _U32.unpack_from(data, 104)[0] in SUITES
        return _ARM32 if arm_known or not x86_ok else _X86_64
    if arm_ok:
        return _ARM32
    if x86_ok:
        return _X86_64
    return None


def parse_session_persist(data: bytes) -> PersistedSession:
    """Parse a binary ``SessionPersistData`` blob (any known layout, chosen by ``size``).

    Trailing bytes beyond ``size`` are ignored. Raises :class:`SessionPersistError`.
    """
    data = bytes(data)
    if len(data) < 2:
        raise SessionPersistError("too short for a session blob")
    size = _U16.unpack_from(data, 0)[0]
    if size == 0:
        raise SessionPersistError("session blob is invalidated (size 0)")
    if len(data) < size:
        raise SessionPersistError(f"blob is {len(data)} bytes but its size field says {size}")
    if size < _MIN_SIZE:
        raise SessionPersistError(f"size {size} is smaller than any known layout")
    abi = _choose_abi(data, size)
    if abi is None:
        raise SessionPersistError(f"no known layout fits this {size}-byte blob")
    d = _SHIFT[abi]
    id_len = (_U64 if abi == _X86_64 else _U32).unpack_from(data, 112)[0]
    out_ctr = data[198 + d : 206 + d]
    s = PersistedSession(
        client_random=data[40:72],
        server_random=data[72:104],
        master=data[148 + d : 196 + d],
        ciphersuite=_U32.unpack_from(data, 104)[0],
        compression=_U32.unpack_from(data, 108)[0],
        session_id=data[116 + d : 116 + d + id_len],
        in_epoch=_U16.unpack_from(data, 196 + d)[0],
        out_epoch=int.from_bytes(out_ctr[:2], "big"),
        out_seq=int.from_bytes(out_ctr[2:], "big"),
        next_coap_id=_U16.unpack_from(data, 206 + d)[0],
        layout=f"{abi}/{size}",
        size=size,
        persistent=data[2],
        use_counter=data[3],
        connection=data[4:36],
        keys_checksum=_U32.unpack_from(data, 36)[0],
    )
    end = size

    def u32(off: int) -> int | None:
        off += d
        return _U32.unpack_from(data, off)[0] if off + 4 <= end else None

    def u16(off: int) -> int | None:
        off += d
        return _U16.unpack_from(data, off)[0] if off + 2 <= end else None

    s.subscriptions_crc = u32(208)
    s.describe_app_crc = u32(212)
    s.describe_system_crc = u32(216)
    s.protocol_flags = u32(220)
    s.app_state_flags = u32(224)
    s.max_binary_size = u32(228)
    s.system_version = u16(232)
    s.max_message_size = u16(234)
    s.ota_chunk_size = u16(236)
    if 254 + d <= end:
        s.in_window_top = _U64.unpack_from(data, 238 + d)[0]
        s.in_window = _U64.unpack_from(data, 246 + d)[0]
    if 262 + d <= end:
        s.cid = data[254 + d : 262 + d]
    return s


def looks_like_session_blob(data: bytes) -> bool:
    """Whether ``data`` is plausibly a ``SessionPersistData`` blob (recognition by content)."""
    try:
        s = parse_session_persist(data)
    except SessionPersistError:
        return False
    zero48 = bytes(48)
    return (
        s.ciphersuite in SUITES
        and s.master is not None
        and s.master != zero48
        and s.client_random != bytes(32)
        and s.server_random != bytes(32)
    )


# --------------------------------------------------------------------------- text

_BYTES_FIELDS = {
    "client_random": 32,
    "server_random": 32,
    "master": 48,
    "session_id": -1,
    "cid": -1,
    "connection": -1,
}
_INT_FIELDS = (
    "ciphersuite",
    "compression",
    "in_epoch",
    "next_coap_id",
    "in_window_top",
    "in_window",
    "use_counter",
    "persistent",
    "keys_checksum",
)


def parse_session_persist_text(text: str) -> PersistedSession:
    """Parse the ``key value`` text form (``#`` comments; hex bytes, ``0x``/decimal ints).

    Required: ``client_random``, ``server_random``, ``master``. ``out_ctr`` is 8 hex bytes
    (epoch ‖ seq). Unknown keys are ignored. Raises :class:`SessionPersistError`.
    """
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise SessionPersistError(f"line {lineno}: expected 'key value'")
        values[parts[0].lower()] = parts[1].strip()
    fields: dict[str, object] = {}
    for key, want in _BYTES_FIELDS.items():
        if key in values:
            try:
                b = bytes.fromhex(values[key])
            except ValueError:
                raise SessionPersistError(f"{key}: not hex") from None
            if want > 0 and len(b) != want:
                raise SessionPersistError(f"{key}: {len(b)} bytes, expected {want}")
            fields[key] = b
    for key in _INT_FIELDS:
        if key in values:
            try:
                fields[key] = int(values[key], 0)
            except ValueError:
                raise SessionPersistError(f"{key}: not an integer") from None
    for key in ("client_random", "server_random", "master"):
        if key not in fields:
            raise SessionPersistError(f"missing {key}")
    if "out_ctr" in values:
        try:
            ctr = bytes.fromhex(values["out_ctr"])
        except ValueError:
            raise SessionPersistError("out_ctr: not hex") from None
        if len(ctr) != 8:
            raise SessionPersistError("out_ctr: expected 8 bytes")
        fields["out_epoch"] = int.from_bytes(ctr[:2], "big")
        fields["out_seq"] = int.from_bytes(ctr[2:], "big")
    fields.setdefault("ciphersuite", 0xC0AE)
    if "encrypt_then_mac" in values:
        fields["encrypt_then_mac"] = values["encrypt_then_mac"].lower() in ("1", "true", "yes")
    return PersistedSession(**fields)  # type: ignore[arg-type]
