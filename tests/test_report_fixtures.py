"""Synthetic captures for the report tests, built with the real encryption of
:mod:`dissector.simulate`, plus checks that they decode as intended.

Other ``test_report_*`` modules import the builders: a "fleet" capture with legacy,
fast and v3 firmware transfers, a failed handshake, a device whose key is missing, DNS
queries and a presence announcement; and a session full of hostile strings.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from dissector.capture.writer import PcapWriter, build_udp_frame
from dissector.coap import ACK, CON, NON, CoapMessage, CoapOption
from dissector.coap.options import (
    CHUNK_INDEX,
    CHUNK_SIZE,
    FILE_SHA256,
    FILE_SIZE,
    URI_PATH,
    URI_QUERY,
    WINDOW_SIZE,
)
from dissector.keys import KeyRing
from dissector.report import Report, run_report
from dissector.simulate import TcpFlow, TcpSessionBuilder, build_packets
from tests.helpers import DEVICE_ID, TCP_KEYS

DATA = Path(__file__).parent / "data" / "report"
#: The second device: its key is in tests/data/report (public half only in the ring).
OTHER_ID = "e00fce681122334455667788"
GHOST_ID = "0123456789abcdef01234567"
START = 1_700_000_000.0

POST, GET, PUT = 0x02, 0x01, 0x03
CHANGED, CREATED, BAD_REQUEST = 0x44, 0x41, 0x80


@cache
def keys() -> tuple[Any, Any, Any, Any]:
    """(device key, server key, a stranger's RSA-1024 device key, another RSA-2048 key)."""
    device = serialization.load_der_private_key((TCP_KEYS / f"{DEVICE_ID}.der").read_bytes(), None)
    server = serialization.load_pem_private_key((TCP_KEYS / "default_key.pem").read_bytes(), None)
    other = serialization.load_pem_private_key((DATA / "other_device.pem").read_bytes(), None)
    wrong = serialization.load_pem_private_key((DATA / "wrong_server.pem").read_bytes(), None)
    return device, server, other, wrong


def ring(*, with_device: bool = True) -> KeyRing:
    """The cloud key, and the device key of DEVICE_ID unless ``with_device`` is False."""
    r = KeyRing()
    r.load(str(TCP_KEYS / "default_key.pem"))
    if with_device:
        r.load(str(TCP_KEYS / f"{DEVICE_ID}.der"))
    return r


def image(size: int, seed: int = 1) -> bytes:
    """Deterministic firmware bytes."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def _path(*parts: bytes) -> list[CoapOption]:
    return [CoapOption(URI_PATH, p) for p in parts]


def _builder(start: float, device_id: str = DEVICE_ID, key: Any = None, **kw: Any) -> Any:
    device, server, _, _ = keys()
    return TcpSessionBuilder(
        key or device, server, device_id, rng=int(start) % 97, start=start, step=0.01, **kw
    )


def _open(b: Any, platform_id: int = 6, flags: int = 0x16) -> None:
    b.handshake()
    b.device_hello(platform_id=platform_id, flags=flags, product_id=42, product_version=7)
    b.cloud_hello()


def _separate(b: Any, token: bytes, code: int, payload: bytes = b"") -> None:
    b.device_sends(
        CoapMessage(type=NON, code=code, mid=b.next_device_mid(), token=token, payload=payload)
    )


def legacy_ota(b: Any, firmware: bytes, *, chunk: int = 256, bad_chunk: int | None = 1) -> None:
    """Legacy OTA, normal mode: UpdateReady, chunks answered one by one (one sent with a
    corrupt CRC, rejected and re-sent), the last chunk zero-padded, UpdateDone."""
    token = b.next_cloud_token()
    payload = struct.pack(">BHIBI", 0, chunk, len(firmware), 0, 0)
    begin = CoapMessage(
        type=CON,
        code=POST,
        mid=b.next_cloud_mid(),
        token=token,
        options=_path(b"u"),
        payload=payload,
    )
    b.cloud_sends(begin)
    b.device_sends(CoapMessage(type=ACK, code=0, mid=begin.mid))
    _separate(b, token, CHANGED, b"\x00")
    chunks = [firmware[i : i + chunk] for i in range(0, len(firmware), chunk)]
    chunks[-1] = chunks[-1].ljust(chunk, b"\x00")
    for index, data in enumerate(chunks):
        tries = [True] if index != bad_chunk else [False, True]
        for good in tries:
            tok = b.next_cloud_token()
            crc = zlib.crc32(data) ^ (0 if good else 0xDEAD)
            msg = CoapMessage(
                type=CON,
                code=POST,
                mid=b.next_cloud_mid(),
                token=tok,
                options=[*_path(b"c"), CoapOption(URI_QUERY, struct.pack(">I", crc))],
                payload=data,
            )
            b.cloud_sends(msg)
            b.device_sends(CoapMessage(type=ACK, code=0, mid=msg.mid))
            _separate(b, tok, CHANGED if good else BAD_REQUEST)
    done_token = b.next_cloud_token()
    done = CoapMessage(
        type=CON, code=PUT, mid=b.next_cloud_mid(), token=done_token, options=_path(b"u")
    )
    b.cloud_sends(done)
    b.device_sends(
        CoapMessage(type=ACK, code=CHANGED, mid=done.mid, token=done_token, payload=b'{"ok":true}')
    )


def fast_ota(b: Any, firmware: bytes, *, chunk: int = 512, lost: int = 2) -> None:
    """Legacy fast OTA: indexed chunks streamed without answers, chunk ``lost`` missing;
    UpdateDone 4.00, ChunkMissed, the chunk re-sent, UpdateDone 2.04."""
    token = b.next_cloud_token()
    begin = CoapMessage(
        type=CON,
        code=POST,
        mid=b.next_cloud_mid(),
        token=token,
        options=_path(b"u"),
        payload=struct.pack(">BHIBI", 1, chunk, len(firmware), 0, 0),
    )
    b.cloud_sends(begin)
    b.device_sends(CoapMessage(type=ACK, code=0, mid=begin.mid))
    _separate(b, token, CHANGED, b"\x01")
    chunks = [firmware[i : i + chunk] for i in range(0, len(firmware), chunk)]
    chunks[-1] = chunks[-1].ljust(chunk, b"\x00")

    def send(index: int) -> None:
        data = chunks[index]
        opts = [
            *_path(b"c"),
            CoapOption(URI_QUERY, struct.pack(">I", zlib.crc32(data))),
            CoapOption(URI_QUERY, struct.pack(">H", index)),
        ]
        b.cloud_sends(
            CoapMessage(
                type=CON,
                code=POST,
                mid=b.next_cloud_mid(),
                token=b.next_cloud_token(),
                options=opts,
                payload=data,
            )
        )

    for index in range(len(chunks)):
        if index != lost:
            send(index)
    for complete in (False, True):
        tok = b.next_cloud_token()
        done = CoapMessage(
            type=CON, code=PUT, mid=b.next_cloud_mid(), token=tok, options=_path(b"u")
        )
        b.cloud_sends(done)
        b.device_sends(
            CoapMessage(
                type=ACK, code=CHANGED if complete else BAD_REQUEST, mid=done.mid, token=tok
            )
        )
        if not complete:
            missed = CoapMessage(
                type=NON,
                code=GET,
                mid=b.next_device_mid(),
                options=_path(b"c"),
                payload=struct.pack(">H", lost),
            )
            b.device_sends(missed)
            b.cloud_sends(CoapMessage(type=ACK, code=0, mid=missed.mid))
            send(lost)


def v3_ota(b: Any, firmware: bytes, *, chunk: int = 512, announce_sha: bytes | None = None) -> None:
    """OTA v3: UpdateStart (size, chunk size, SHA-256), the window answer, chunks 1..N
    (chunk 2 first lost then re-sent), acks, UpdateFinish and its JSON answer."""
    sha = announce_sha if announce_sha is not None else hashlib.sha256(firmware).digest()
    token = b.next_cloud_token()
    start = CoapMessage(
        type=CON,
        code=POST,
        mid=b.next_cloud_mid(),
        token=token,
        options=[
            *_path(b"S"),
            CoapOption(FILE_SIZE, struct.pack(">I", len(firmware))),
            CoapOption(FILE_SHA256, sha),
            CoapOption(CHUNK_SIZE, struct.pack(">H", chunk)),
        ],
    )
    b.cloud_sends(start)
    b.device_sends(CoapMessage(type=ACK, code=0, mid=start.mid))
    ret = CoapMessage(
        type=CON,
        code=CREATED,
        mid=b.next_device_mid(),
        token=token,
        options=[CoapOption(WINDOW_SIZE, struct.pack(">H", 256)), CoapOption(FILE_SIZE, b"")],
    )
    b.device_sends(ret)
    b.cloud_sends(CoapMessage(type=ACK, code=0, mid=ret.mid))
    chunks = [firmware[i : i + chunk] for i in range(0, len(firmware), chunk)]

    def send(index: int) -> None:
        b.cloud_sends(
            CoapMessage(
                type=NON,
                code=POST,
                mid=b.next_cloud_mid(),
                options=[*_path(b"C"), CoapOption(CHUNK_INDEX, struct.pack(">H", index))],
                payload=chunks[index - 1],
            )
        )

    def ack(contiguous: int, bitmap: int) -> None:
        payload = struct.pack("<I", bitmap) if bitmap else b""
        b.device_sends(
            CoapMessage(
                type=NON,
                code=POST,
                mid=b.next_device_mid(),
                options=[*_path(b"A"), CoapOption(CHUNK_INDEX, struct.pack(">H", contiguous))],
                payload=payload,
            )
        )

    send(1)
    for index in range(3, len(chunks) + 1):
        send(index)
    ack(1, ((1 << (len(chunks) - 2)) - 1) << 1)  # 1 contiguous, 2 missing, 3..N received
    send(2)
    ack(len(chunks), 0)
    tok = b.next_cloud_token()
    finish = CoapMessage(
        type=CON, code=POST, mid=b.next_cloud_mid(), token=tok, options=_path(b"F")
    )
    b.cloud_sends(finish)
    b.device_sends(CoapMessage(type=ACK, code=0, mid=finish.mid))
    answer = CoapMessage(
        type=CON,
        code=CHANGED,
        mid=b.next_device_mid(),
        token=tok,
        payload=b'{"recv_chunks":5,"dup_chunks":0}',
    )
    b.device_sends(answer)
    b.cloud_sends(CoapMessage(type=ACK, code=0, mid=answer.mid))


def dns_query(name: str, ident: int = 0x1234) -> bytes:
    """A standard DNS A query for ``name``."""
    qname = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + b"\x00\x01\x00\x01"


def dns_answer(name: str, address: str, ident: int = 0x1234) -> bytes:
    """The answer to :func:`dns_query` with one A record (compressed name)."""
    qname = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(int(x) for x in address.split("."))
    return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + qname + b"\x00\x01\x00\x01" + rr


def presence(device_id: str) -> bytes:
    """The unencrypted presence announcement: NON POST /h, message ID 0, the 12-byte ID."""
    return bytes.fromhex("50020000b168ff") + bytes.fromhex(device_id)


FIRMWARE_LEGACY = image(1000, 1)
FIRMWARE_FAST = image(2000, 2)
FIRMWARE_V3 = image(2300, 3)


def write_capture(path: Path, flows: list[TcpFlow], udp: list[tuple[float, bytes]]) -> Path:
    """TCP flows plus extra link-layer frames, merged by time, as a pcap."""
    packets = build_packets(flows, seed=5) + udp
    packets.sort(key=lambda p: p[0])
    with open(path, "wb") as fh:
        writer = PcapWriter(fh, 1)
        for ts, frame in packets:
            writer.write_packet(ts, frame)
    return path


def fleet_flows() -> tuple[list[TcpFlow], list[tuple[float, bytes]]]:
    """The "fleet" scenario's flows and UDP frames (see the module docstring)."""
    _device, _server, other, wrong_server = keys()
    flows = []
    b1 = _builder(START + 10)
    _open(b1)
    b1.device_event("app/boot", "v1", ack=0)
    legacy_ota(b1, FIRMWARE_LEGACY)
    flows.append(TcpFlow(b1.writes, device=("10.0.0.2", 40001), cloud=("10.0.0.1", 5683)))
    b2 = _builder(START + 20)
    _open(b2)
    fast_ota(b2, FIRMWARE_FAST)
    flows.append(TcpFlow(b2.writes, device=("10.0.0.2", 40002), cloud=("10.0.0.1", 5683)))
    b3 = _builder(START + 30)
    _open(b3, platform_id=12, flags=0x96)
    v3_ota(b3, FIRMWARE_V3)
    flows.append(TcpFlow(b3.writes, device=("10.0.0.2", 40003), cloud=("10.0.0.1", 5683)))
    b4 = _builder(START + 40, device_encrypts_to=wrong_server.public_key())
    b4.cloud_nonce()
    b4.device_identity()
    flows.append(
        TcpFlow(b4.writes, device=("10.0.0.3", 40004), cloud=("10.0.0.1", 5683), close="cloud")
    )
    b5 = _builder(START + 50, device_id=OTHER_ID, key=other)
    _open(b5, platform_id=8)
    b5.device_event("secret/stuff", "hidden")
    b5.ping()
    flows.append(TcpFlow(b5.writes, device=("10.0.0.4", 40005), cloud=("10.0.0.1", 5683)))
    name = f"{GHOST_ID.upper()}.udp.particle.io"
    udp = [
        (START + 1, build_udp_frame(1, "10.0.0.9", 5353, "10.0.0.53", 53, dns_query(name))),
        (
            START + 1.01,
            build_udp_frame(1, "10.0.0.53", 53, "10.0.0.9", 5353, dns_answer(name, "52.1.2.3")),
        ),
        (START + 2, build_udp_frame(1, "10.0.0.7", 5683, "224.0.1.187", 5683, presence(OTHER_ID))),
    ]
    return flows, udp


def fleet_capture(tmp: Path) -> Path:
    """The fleet capture written under ``tmp``."""
    flows, udp = fleet_flows()
    return write_capture(tmp / "fleet.pcap", flows, udp)


def fleet_report(tmp: Path, **kw: Any) -> Report:
    return run_report([fleet_capture(tmp)], ring(), **kw)


# -- the fixtures decode as intended ---------------------------------------------------------


def test_fleet_capture_has_the_intended_sessions(tmp_path: Path) -> None:
    report = fleet_report(tmp_path)
    outcomes = [(s.id, s.outcome) for s in report.sessions]
    assert outcomes == [
        ("tcp-1", "established"),
        ("tcp-2", "established"),
        ("tcp-3", "established"),
        ("tcp-4", "handshake failed"),
        ("tcp-5", "established"),
    ]
    by_id = {s.id: s for s in report.sessions}
    assert by_id["tcp-5"].decrypted_d2c == 0
    assert [t.mode for t in report.ota] == ["legacy", "legacy fast", "v3"]


def test_dns_and_presence_builders_parse() -> None:
    from dissector.report.discovery import parse_dns, presence_device_id

    msg = parse_dns(dns_answer("ABC.udp.particle.io", "1.2.3.4"))
    assert msg.is_response and msg.questions == ["ABC.udp.particle.io"]
    assert msg.addresses == ["1.2.3.4"]
    assert presence_device_id(presence(OTHER_ID)) == OTHER_ID
