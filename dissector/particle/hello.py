"""Hello payload decoder (spec §4.3): variants A (2014 Core), B (0.4.2..2.x), C (3.0+).

Detection, by payload length ``n`` and content:

* ``n == 0``  – the cloud's Hello (no payload): variant ``"empty"``.
* ``n == 6``  – A: product ID, product version, reserved, 8-bit flags.
* ``n == 8``  – B over TCP: A + platform ID.
* ``n == 22`` and bytes 8..9 = ``00 0c`` – B over UDP: + device-ID length (16-bit) + ID.
* ``n == 20 + N`` with ``N = payload[9]`` and ``payload[8] == 0`` – C (TCP N=0, UDP N=12).

Anything else decodes the common prefix and reports ``error``.
"""

from __future__ import annotations

from typing import Any, Final

#: Platform IDs (spec §0); 3 is the Device OS native "virtual device" (reference captures).
PLATFORMS: Final[dict[int, str]] = {
    0: "Core",
    3: "Virtual device (gcc)",
    6: "Photon",
    8: "P1",
    10: "Electron",
    12: "Argon",
    13: "Boron",
    14: "Xenon",
    15: "E-SoM-X",
    22: "A-SoM",
    23: "B-SoM",
    25: "B5-SoM",
    26: "Tracker",
    28: "Tracker M",
    32: "P2/Photon 2",
    35: "M-SoM",
}

#: Hello flag bits (``HelloFlag`` in ``communication/src/protocol.cpp``).
HELLO_FLAGS: Final[dict[int, str]] = {
    0x01: "ota_upgrade_successful",
    0x02: "diagnostics_support",
    0x04: "immediate_updates_support",
    0x08: "handshake_complete",
    0x10: "goodbye_support",
    0x20: "device_initiated_describe",
    0x40: "compressed_ota",
    0x80: "ota_protocol_v3",
}


def platform_name(platform_id: int) -> str | None:
    """Platform name for an ID, ``None`` when unknown."""
    return PLATFORMS.get(platform_id)


def flag_names(flags: int) -> list[str]:
    """Names of the set Hello flag bits; unknown bits as ``bit_0x..``."""
    names = []
    bit = 1
    while bit <= flags:
        if flags & bit:
            names.append(HELLO_FLAGS.get(bit, f"bit_0x{bit:04x}"))
        bit <<= 1
    return names


def _u16(p: bytes, off: int) -> int:
    return p[off] << 8 | p[off + 1]


def decode_hello(payload: bytes) -> dict[str, Any]:
    """Decode a Hello payload into product, flags, platform, device ID and limits."""
    n = len(payload)
    if n == 0:
        return {"variant": "empty"}
    if n < 6:
        return {"variant": None, "error": f"Hello payload of {n} bytes is too short (min 6)"}
    out: dict[str, Any] = {
        "variant": None,
        "product_id": _u16(payload, 0),
        "product_version": _u16(payload, 2),
    }
    if n >= 20 and payload[8] == 0 and n == 20 + payload[9]:
        dlen = payload[9]
        flags = _u16(payload, 4)
        base = 10 + dlen
        out.update(
            variant="C",
            transport="udp" if dlen else "tcp",
            flags=flags,
            flag_names=flag_names(flags),
            platform_id=_u16(payload, 6),
            device_id=payload[10:base].hex() if dlen else None,
            system_version=_u16(payload, base),
            max_message_size=_u16(payload, base + 2),
            max_binary_size=int.from_bytes(payload[base + 4 : base + 8], "big"),
            ota_chunk_size=_u16(payload, base + 8),
        )
    elif n in (6, 8) or (n == 22 and payload[8:10] == b"\x00\x0c"):
        flags = payload[5]
        out.update(variant="A" if n == 6 else "B", flags=flags, flag_names=flag_names(flags))
        out["reserved"] = payload[4]
        if n >= 8:
            out["platform_id"] = _u16(payload, 6)
            out["transport"] = "udp" if n == 22 else "tcp"
        if n == 22:
            out["device_id"] = payload[10:22].hex()
    else:
        out["error"] = f"Hello payload of {n} bytes matches no known layout (6, 8, 22, 20+N)"
        return out
    if "platform_id" in out:
        out["platform"] = platform_name(out["platform_id"])
    return out
