"""Differential tests: the fast decoder (pipeline records) and the Scapy layers agree on
every field of every message and handshake message, for the real captures with every kind
of key ring, for captures that start mid-session, and for a synthetic session that carries
every structured payload, cut into awkward TCP segments."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import rdpcap, wrpcap

from dissector.coap import CoapMessage, CoapOption, encode
from dissector.coap.options import option_name, option_value_repr
from dissector.crypto import (
    CbcEncryptor,
    hmac_sha1,
    rsa_encrypt_pkcs1v15,
    rsa_sign_raw_type1,
)
from dissector.keys import KeyRing, parse_keylog
from dissector.scapy import (
    CoAP,
    ParticleChunkMissed,
    ParticleFrame,
    ParticleFunctionReturn,
    ParticleGoodbye,
    ParticleHello,
    ParticleHelloC,
    ParticleIdentity,
    ParticleIdentityPlaintext,
    ParticleLayer,
    ParticleNonce,
    ParticleSession,
    ParticleSessionCredentials,
    ParticleSessionKey,
    ParticleTime,
    ParticleUpdateBegin,
)
from tests.helpers import BREWSKEY, DEVICE_ID, SPARK, TCP_KEYS, dissect, ring_with
from tests.helpers import TCP as TCP_DATA

CAPTURES = sorted(TCP_DATA.glob("*.pcap"))
TYPES = ("CON", "NON", "ACK", "RST")


# -- comparison ---------------------------------------------------------------------------


def particle_layer(pkt: Packet) -> ParticleLayer:
    layer: Packet = pkt
    while layer:
        if isinstance(layer, ParticleLayer):
            return layer
        layer = layer.payload
    raise AssertionError(f"no Particle layer in {pkt.summary()}")


def group_records(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec["record"] in ("message", "handshake"):
            out[(rec["session"], rec["direction"])].append(rec)
    return out


def group_layers(pkts: list[Packet]) -> dict[tuple[str, str], list[ParticleLayer]]:
    out: dict[tuple[str, str], list[ParticleLayer]] = defaultdict(list)
    for pkt in pkts:
        layer = particle_layer(pkt)
        out[(layer.event.session, layer.event.direction.value)].append(layer)
    return out


def present(layer: Packet, name: str) -> Any:
    fld = layer.get_field(name)
    cond = getattr(fld, "cond", None)
    if cond is not None and not cond(layer):
        return None
    return layer.getfieldval(name)


def check_payload_layer(payload: Packet, decoded: dict[str, Any] | None) -> None:
    """A typed payload layer agrees with the dissector.particle decoder's output."""
    assert decoded is not None and "error" not in decoded
    if isinstance(payload, ParticleHello):
        for name in (
            "product_id",
            "product_version",
            "platform_id",
            "system_version",
            "max_message_size",
            "max_binary_size",
            "ota_chunk_size",
        ):
            if name in payload.fieldtype:
                assert payload.getfieldval(name) == decoded[name], name
        assert int(payload.flags) == decoded["flags"]
        if "device_id" in payload.fieldtype:
            got = bytes(payload.device_id).hex() or None
            assert got == decoded.get("device_id")
    elif isinstance(payload, ParticleTime):
        assert payload.unix_time == decoded["unix_time"]
    elif isinstance(payload, ParticleFunctionReturn):
        assert payload.result == decoded["result"]
    elif isinstance(payload, ParticleUpdateBegin):
        assert (
            int(payload.flags),
            payload.chunk_size,
            payload.file_size,
            payload.destination,
            payload.address,
        ) == (
            decoded["flags"],
            decoded["chunk_size"],
            decoded["file_size"],
            decoded["destination"],
            decoded["address"],
        )
    elif isinstance(payload, ParticleChunkMissed):
        assert payload.chunks == decoded["chunks"]
    elif isinstance(payload, ParticleGoodbye):
        assert int(payload.flags) == decoded["flags"]
        for name in ("cloud_reason", "reset_reason", "sleep_duration", "network_reason"):
            assert present(payload, name) == decoded.get(name), name
    else:
        raise AssertionError(f"unexpected payload layer {type(payload).__name__}")


def check_message(rec: dict[str, Any], layer: ParticleLayer) -> None:
    assert isinstance(layer, ParticleFrame)
    assert len(bytes(layer)) == rec["length"]
    assert layer.length == rec["length"] - 2
    if rec["coap"] is None:
        assert not layer.decrypted
        assert rec["encrypted"]["length"] == len(bytes(layer.ciphertext))
        return
    coap = layer[CoAP]
    want = rec["coap"]
    assert TYPES[coap.type] == want["type"]
    assert f"{coap.code >> 5}.{coap.code & 0x1F:02d}" == want["code"]
    assert coap.message_id == want["mid"]
    assert bytes(coap.token).hex() == want["token"]
    assert coap.uri == want["uri"]
    assert [
        (o.number, option_name(o.number), option_value_repr(o.number, bytes(o.value)))
        for o in coap.options
    ] == [(o["number"], o["name"], o["value"]) for o in want["options"]]
    assert bytes(coap.payload).hex() == want["payload"]
    if not isinstance(coap.payload, Raw) and coap.payload:
        check_payload_layer(coap.payload, rec.get("decoded"))


def check_handshake(
    rec: dict[str, Any], layer: ParticleLayer, credentials: dict[bytes, bytes], nonce: bytes
) -> None:
    step = rec["step"]
    info = rec["info"]
    assert bytes(layer).hex() == rec["data"]
    if step == "nonce":
        assert isinstance(layer, ParticleNonce)
    elif step == "identity":
        assert isinstance(layer, ParticleIdentity)
        view = layer.getlayer(ParticleIdentityPlaintext)
        if not info.get("decrypted"):
            assert view is None
            return
        assert view.device_id_hex == info["device_id"]
        assert view.legacy == info["legacy"]
        if info.get("nonce_echo_ok"):
            assert bytes(view.nonce) == nonce
        if "device_public_key_fingerprint" in info:
            fp = KeyRing.fingerprint(bytes(view.public_key))
            assert fp == info["device_public_key_fingerprint"]
    elif step == "session_key":
        assert isinstance(layer, ParticleSessionKey)
        view = layer.getlayer(ParticleSessionCredentials)
        if not info.get("session_key_recovered"):
            assert view is None
            return
        raw = bytes(view.key) + bytes(view.iv) + bytes(view.salt)
        assert raw == credentials[nonce]  # the key log: an independent source
    else:
        raise AssertionError(step)


def assert_agree(
    records: list[dict[str, Any]], pkts: list[Packet], credentials: dict[bytes, bytes]
) -> int:
    """Compare everything; return how many units were compared."""
    want = group_records(records)
    got = group_layers(pkts)
    assert set(got) == set(want)
    compared = 0
    for key, recs in want.items():
        layers = got[key]
        assert len(layers) == len(recs), key
        session = key[0]
        nonces = [
            r["data"]
            for r in records
            if r["record"] == "handshake" and r["session"] == session and r["step"] == "nonce"
        ]
        nonce = bytes.fromhex(nonces[0]) if nonces else b""
        for rec, layer in zip(recs, layers, strict=True):
            assert rec["ts"] == float(layer.event.ts)
            if rec["record"] == "message":
                check_message(rec, layer)
            else:
                check_handshake(rec, layer, credentials, nonce)
            compared += 1
    return compared


def scapy_decode(path: Path, ring: KeyRing) -> list[Packet]:
    return list(ParticleSession(keyring=ring).decode(rdpcap(str(path))))


def keylog_credentials(*paths: Path) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for path in paths:
        parsed = parse_keylog(path.read_text())
        out.update(dict(parsed.tcp))
    return out


# -- the real captures --------------------------------------------------------------------

RINGS: dict[str, Callable[[Path], KeyRing]] = {
    "all-keys": lambda base: ring_with(TCP_KEYS),
    "device-key": lambda base: ring_with(TCP_KEYS / f"{DEVICE_ID}.der", role="device"),
    "server-key": lambda base: ring_with(TCP_KEYS / "default_key.pem", role="server"),
    "keylog": lambda base: ring_with(f"{base}.keylog", role="keylog"),
    "no-keys": lambda base: KeyRing(),
}


@pytest.mark.parametrize("ring_name", list(RINGS))
@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name.split("__")[0])
def test_real_captures_agree_field_by_field(pcap: Path, ring_name: str) -> None:
    base = Path(str(pcap)[: -len(".pcap")])
    ring = RINGS[ring_name](base)
    records = dissect([pcap], ring)
    pkts = scapy_decode(pcap, ring)
    n = assert_agree(records, pkts, keylog_credentials(Path(f"{base}.keylog")))
    assert n == 48
    decrypted = [p for p in pkts if p.haslayer(CoAP)]
    assert len(decrypted) == (45 if ring_name in ("all-keys", "device-key", "keylog") else 0)


@pytest.mark.parametrize("pcap", [SPARK, BREWSKEY], ids=["spark", "brewskey"])
@pytest.mark.parametrize("skip", [9, 30])
def test_captures_that_start_mid_session_agree(pcap: Path, skip: int, tmp_path: Path) -> None:
    """The key log entry is found by trial decryption; held frames come out later."""
    cut = tmp_path / "cut.pcap"
    wrpcap(str(cut), rdpcap(f"{pcap}.pcap")[skip:])
    ring = ring_with(f"{pcap}.keylog", role="keylog")
    records = dissect([cut], ring)
    pkts = scapy_decode(cut, ring)
    n = assert_agree(records, pkts, keylog_credentials(Path(f"{pcap}.keylog")))
    assert n == sum(1 for r in records if r["record"] == "message")
    assert any(p.haslayer(CoAP) for p in pkts)
    assert not any(p.haslayer(ParticleNonce) for p in pkts)


# -- a synthetic session with every structured payload -----------------------------------

KEYS = Path(__file__).parent / "data" / "tcp" / "keys"
CLIENT = ("10.1.2.3", 40123)
SERVER = ("10.9.8.7", 5683)
NONCE = bytes(range(100, 140))
CREDS = bytes(range(1, 41))
CHUNK = bytes(range(256))


def _device_key() -> rsa.RSAPrivateKey:
    key = serialization.load_der_private_key((KEYS / f"{DEVICE_ID}.der").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _server_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((KEYS / "default_key.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def msg(
    mtype: int,
    code: int,
    mid: int,
    token: bytes = b"",
    options: list[tuple[int, bytes]] | None = None,
    payload: bytes = b"",
) -> bytes:
    opts = [CoapOption(n, v) for n, v in options or []]
    return encode(CoapMessage(1, mtype, code, mid, token, opts, payload))


def conversation() -> list[tuple[str, list[bytes]]]:
    """(sender, plaintext messages) turns of one Device OS 3.x-like session over TCP."""
    mid = 0x0201  # LightSSL seed: little-endian salt[0..1] = 0x0201, Hello carries +1
    d: list[int] = []

    def dm() -> int:
        d.append(mid + 1 + len(d))
        return d[-1]

    hello_c = bytes.fromhex("0001 0003 0016 0006 00 00 1234 0480 00000000 0200")
    update_begin = bytes.fromhex("01 0100 00000200 00 00000000")
    goodbye = bytes.fromhex("03 02 8c01")
    return [
        ("device", [msg(1, 0x02, dm(), options=[(11, b"h")], payload=hello_c)]),
        ("cloud", [msg(1, 0x02, 0x7000, b"\x01", [(11, b"h")])]),
        ("cloud", [msg(0, 0x02, 0x7001, b"\x02", [(11, b"u")], update_begin)]),
        ("device", [msg(2, 0x00, 0x7001), msg(1, 0x44, dm(), b"\x02", payload=b"\x01")]),
        (
            "cloud",
            [
                msg(
                    0,
                    0x02,
                    0x7002,
                    b"\x03",
                    [(11, b"c"), (15, zlib.crc32(CHUNK).to_bytes(4, "big"))],
                    CHUNK,
                )
            ],
        ),
        ("device", [msg(2, 0x00, 0x7002), msg(1, 0x44, dm(), b"\x03")]),
        ("cloud", [msg(0, 0x03, 0x7003, b"\x04", [(11, b"u")])]),
        (
            "device",
            [
                msg(2, 0x80, 0x7003, b"\x04"),
                msg(1, 0x01, dm(), options=[(11, b"c")], payload=bytes.fromhex("00000001")),
            ],
        ),
        ("device", [msg(0, 0x01, dm(), b"\x05", [(11, b"t")])]),
        ("cloud", [msg(2, 0x45, d[-1], b"\x05", payload=(1_700_000_000).to_bytes(4, "big"))]),
        ("cloud", [msg(0, 0x02, 0x7004, b"\x06", [(11, b"f"), (11, b"led"), (15, b"on")])]),
        ("device", [msg(2, 0x00, 0x7004), msg(1, 0x44, dm(), b"\x06", payload=b"\xff" * 4)]),
        (
            "cloud",
            [
                msg(
                    0,
                    0x02,
                    0x7005,
                    b"\x07",
                    [
                        (11, b"S"),
                        (2057, (300_000).to_bytes(3, "big")),
                        (2061, bytes(range(32))),
                        (2065, (1024).to_bytes(2, "big")),
                    ],
                )
            ],
        ),
        (
            "device",
            [
                msg(2, 0x00, 0x7005),
                msg(1, 0x41, dm(), b"\x07", [(2053, b"\x80"), (2057, b"")]),
            ],
        ),
        ("device", [msg(1, 0x00, dm())]),  # an empty NON: a tolerated RFC deviation
        ("device", [msg(1, 0x02, dm(), options=[(11, b"x"), (258, b"")], payload=goodbye)]),
    ]


def synthetic_packets(segment_sizes: list[int], *, t0: float = 1_700_000_000.0) -> list[Packet]:
    """A complete TCP session: handshake, then every turn's frames cut into segments."""
    device, server = _device_key(), _server_key()
    device_pub = device.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    identity = rsa_encrypt_pkcs1v15(
        server.public_key(), NONCE + bytes.fromhex(DEVICE_ID) + device_pub, lambda n: b"\x5a" * n
    )
    wrapped = rsa_encrypt_pkcs1v15(device.public_key(), CREDS, lambda n: b"\xa5" * n)
    session_key = wrapped + rsa_sign_raw_type1(server, hmac_sha1(CREDS, wrapped))
    up = CbcEncryptor(CREDS[:16], CREDS[16:32])
    down = CbcEncryptor(CREDS[:16], CREDS[16:32])
    turns: list[tuple[str, bytes]] = [
        ("cloud", NONCE),
        ("device", identity),
        ("cloud", session_key),
    ]
    for sender, plaintexts in conversation():
        enc = up if sender == "device" else down
        turns.append((sender, b"".join(enc.encrypt_frame(p) for p in plaintexts)))

    pkts: list[Packet] = []
    seq = {"device": 1000, "cloud": 50000}
    clock = [t0]

    def packet(sender: str, flags: str, data: bytes = b"") -> Packet:
        src, dst = (CLIENT, SERVER) if sender == "device" else (SERVER, CLIENT)
        other = "cloud" if sender == "device" else "device"
        p = (
            Ether()
            / IP(src=src[0], dst=dst[0])
            / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq[sender], ack=seq[other])
        )
        if data:
            p = p / Raw(data)
        p = Ether(bytes(p))
        clock[0] += 0.001
        p.time = clock[0]
        return p

    pkts.append(packet("device", "S"))
    seq["device"] += 1
    pkts.append(packet("cloud", "SA"))
    seq["cloud"] += 1
    pkts.append(packet("device", "A"))
    sizes = iter(segment_sizes * 1000)
    for sender, data in turns:
        pos = 0
        while pos < len(data):
            n = next(sizes)
            piece = data[pos : pos + n]
            pkts.append(packet(sender, "PA", piece))
            if n == 7:  # an occasional retransmission of the same segment
                pkts.append(packet(sender, "PA", piece))
            seq[sender] += len(piece)
            pos += len(piece)
    pkts.append(packet("device", "FA"))
    seq["device"] += 1
    pkts.append(packet("cloud", "FA"))
    seq["cloud"] += 1
    pkts.append(packet("device", "A"))
    return pkts


SEGMENTATIONS = {
    "whole-turns": [100_000],
    "tiny": [1, 2, 3],
    "awkward": [5, 300, 7, 17, 40, 1],
}


def synthetic_rings() -> dict[str, KeyRing]:
    keylog = KeyRing()
    keylog.add_tcp_session(NONCE, CREDS)
    return {
        "all-keys": ring_with(KEYS),
        "keylog": keylog,
        "server-key": ring_with(KEYS / "default_key.pem", role="server"),
    }


@pytest.mark.parametrize("ring_name", ["all-keys", "keylog", "server-key"])
@pytest.mark.parametrize("segmentation", list(SEGMENTATIONS))
def test_synthetic_session_agrees_whatever_the_segmentation(
    segmentation: str, ring_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "synthetic.pcap"
    wrpcap(str(path), synthetic_packets(SEGMENTATIONS[segmentation]))
    ring = synthetic_rings()[ring_name]
    records = dissect([path], ring)
    pkts = scapy_decode(path, ring)
    frames = sum(len(p) for _, p in conversation())
    assert assert_agree(records, pkts, {NONCE: CREDS}) == 3 + frames
    if ring_name == "server-key":
        assert not any(p.haslayer(CoAP) for p in pkts)
        return
    found = {type(p[CoAP].payload) for p in pkts if p.haslayer(CoAP)}
    assert {
        ParticleHelloC,
        ParticleUpdateBegin,
        ParticleChunkMissed,
        ParticleTime,
        ParticleFunctionReturn,
        ParticleGoodbye,
    } <= found
    ota = next(p for p in pkts if p.haslayer(CoAP) and p[CoAP].uri == "/S")
    shown = ota[CoAP].show(dump=True)
    assert "Particle-File-SHA-256" in shown and "Particle-Chunk-Size" in shown


@pytest.mark.parametrize("skip", [20, 60])
def test_synthetic_session_cut_mid_session_agrees(skip: int, tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    wrpcap(str(path), synthetic_packets(SEGMENTATIONS["awkward"])[skip:])
    ring = synthetic_rings()["keylog"]
    records = dissect([path], ring)
    pkts = scapy_decode(path, ring)
    assert assert_agree(records, pkts, {NONCE: CREDS}) > 0
    assert any(p.haslayer(CoAP) for p in pkts)
