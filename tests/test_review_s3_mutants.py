"""Review sweep 4: mutated captures never crash the pipeline, hang, or break the NDJSON schema.

The minimized cases come from a seeded mutation sweep (payload bytes, IP/TCP/UDP headers,
pcap/pcapng structure, DTLS record fields, garbage CoAP inside correctly encrypted sessions);
the bounded sample at the end re-runs a few hundred seeded mutants of the bundled captures.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from dissector.capture.packets import RawPacket
from dissector.capture.reader import CaptureFormatError, CaptureReader
from dissector.capture.writer import PcapWriter, build_tcp_frame
from dissector.keys import KeyRing
from dissector.output.records import to_record
from dissector.output.writers import make_writer, ndjson_bytes
from dissector.pipeline import Dissector

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "review_s3_mutants"
CAPTURES = ROOT / "captures"
DTLS_DATA = ROOT / "tests" / "data" / "dtls"

HEX = re.compile(r"^(?:[0-9a-f]{2})*$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
DIRECTIONS = {"device->cloud", "cloud->device"}


def _run(path: Path, ring: KeyRing) -> list[dict[str, Any]]:
    """Every record, each one round-tripped through the NDJSON writer and checked."""
    records = []
    for event in Dissector(ring).run(iter(CaptureReader([str(path)]))):
        rec = to_record(event)
        if rec is None:
            continue
        line = ndjson_bytes(rec)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        back = json.loads(line)
        _check(back)
        records.append(back)
    return records


def _check(rec: dict[str, Any]) -> None:
    assert rec["record"] in ("message", "handshake", "session", "finding"), rec
    assert rec["schema_version"] == 1
    if rec["record"] in ("message", "handshake", "session"):
        did = rec["device_id"]
        assert did is None or HEX24.match(did), did
    if rec["record"] == "message":
        assert rec["direction"] in DIRECTIONS
        assert isinstance(rec["ts"], float) and math.isfinite(rec["ts"])
        assert isinstance(rec["length"], int) and rec["length"] > 0
        coap = rec["coap"]
        if coap is None:
            assert rec["kind"] == "Encrypted"
            assert isinstance(rec["encrypted"], dict) and rec["encrypted"]["reason"].strip()
        else:
            assert "encrypted" not in rec
            assert coap["type"] in ("CON", "NON", "ACK", "RST")
            assert HEX.match(coap["token"]) and len(coap["token"]) <= 16
            assert HEX.match(coap["payload"])
            assert 0 <= coap["mid"] <= 0xFFFF
    elif rec["record"] == "handshake":
        assert rec["direction"] in DIRECTIONS
        assert isinstance(rec["ts"], float) and math.isfinite(rec["ts"])
        assert HEX.match(rec["data"])
    elif rec["record"] == "finding":
        assert rec["severity"] in ("info", "warning", "error")
        assert rec["message"]
        assert rec["ts"] is None or (isinstance(rec["ts"], float) and math.isfinite(rec["ts"]))


def _codes(records: list[dict[str, Any]]) -> set[str]:
    return {r["code"] for r in records if r["record"] == "finding"}


# ------------------------------------------------------------------ minimized failures


def test_x509_certificate_with_an_unknown_key_algorithm_is_not_a_crash() -> None:
    """A DTLS client Certificate (X.509) whose key algorithm OID cryptography does not know:
    ``public_key()`` raises UnsupportedAlgorithm, which must not end the run."""
    records = _run(DATA / "cert-unknown-key-algorithm.pcap", KeyRing())
    steps = [r["step"] for r in records if r["record"] == "handshake"]
    assert "Certificate" in steps
    assert any(r["record"] == "session" for r in records)


def test_describe_block_with_reserved_block_size_is_not_a_crash() -> None:
    """A block-wise describe answer whose Block2 option has SZX 7 (reserved, no size)."""
    ring = KeyRing()
    ring.load(str(DATA / "describe-block-szx7.keylog"), role="keylog")
    records = _run(DATA / "describe-block-szx7.pcap", ring)
    kinds = [r["kind"] for r in records if r["record"] == "message"]
    assert "DescribeReturn" in kinds


def _junk_tcp_capture(nbytes: int, segment: int, syn: bool) -> bytes:
    rng = random.Random(1)
    data = rng.randbytes(nbytes)
    buf = io.BytesIO()
    w = PcapWriter(buf, 1)
    dev, cloud = "10.0.0.2", "10.0.0.1"
    if syn:
        w.write_packet(1.0, build_tcp_frame(1, dev, 40000, cloud, 5683, 100, 0, "S", b""))
        w.write_packet(1.001, build_tcp_frame(1, cloud, 5683, dev, 40000, 500, 101, "SA", b""))
    seq, ts = 101, 1.002
    for i in range(0, len(data), segment):
        piece = data[i : i + segment]
        w.write_packet(ts, build_tcp_frame(1, dev, 40000, cloud, 5683, seq, 501, "PA", piece))
        seq += len(piece)
        ts += 0.0001
    return buf.getvalue()


@pytest.mark.parametrize("syn", [True, False], ids=["syn", "mid-session"])
def test_non_particle_bytes_on_the_particle_port_are_reported_not_framed(
    syn: bool, tmp_path: Path
) -> None:
    """Bytes that never chain as frames (another protocol on 5683, a stream that lost its
    boundaries) in small segments: reported as dropped, no message made up. (Resync used
    to rescan its window on every segment, quadratic: ``benchmarks/resync.py`` times it.)"""
    path = tmp_path / "junk.pcap"
    path.write_bytes(_junk_tcp_capture(24_000, 40, syn))
    records = _run(path, KeyRing())
    assert "tcp.resync.dropped" in _codes(records), "the unframed bytes are reported"
    assert not [r for r in records if r["record"] == "message"]


# ------------------------------------------------------------------ bounded seeded sample


def _frames(path: Path) -> list[tuple[float, bytes]]:
    return [(p.ts, p.data) for p in CaptureReader([str(path)]) if isinstance(p, RawPacket)]


def _pcap(frames: list[tuple[float, bytes]]) -> bytes:
    buf = io.BytesIO()
    w = PcapWriter(buf, 1)
    for ts, data in frames:
        w.write_packet(ts, data)
    return buf.getvalue()


def _payload_span(frame: bytes) -> tuple[int, int] | None:
    """(start, end) of the TCP/UDP payload of an Ethernet/IPv4 frame."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 15) * 4
    total = struct.unpack_from(">H", frame, 16)[0]
    l4 = 14 + ihl
    if frame[23] == 6 and len(frame) >= l4 + 20:
        start = l4 + (frame[l4 + 12] >> 4) * 4
    elif frame[23] == 17:
        start = l4 + 8
    else:
        return None
    end = min(len(frame), 14 + total)
    return (start, end) if end > start else None


def _flip(rng: random.Random, data: bytearray, lo: int, hi: int, ops: int) -> None:
    for _ in range(ops):
        i = rng.randrange(lo, hi)
        data[i] = rng.choice([data[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 0xFF])


def _mutant(kind: str, frames: list[tuple[float, bytes]], rng: random.Random) -> bytes:
    out = [(ts, bytearray(f)) for ts, f in frames]
    if kind == "payload":
        spans = [(i, s) for i, (_, f) in enumerate(out) if (s := _payload_span(bytes(f)))]
        for _ in range(rng.choice([1, 2, 4])):
            i, (lo, hi) = spans[rng.randrange(len(spans))]
            if rng.random() < 0.3:
                hi = min(hi, lo + 4)  # a frame length or a DTLS record header
            _flip(rng, out[i][1], lo, hi, rng.choice([1, 2, 6]))
        return _pcap([(ts, bytes(f)) for ts, f in out])
    if kind == "header":
        for _ in range(rng.choice([1, 2, 4])):
            i = rng.randrange(len(out))
            f = out[i][1]
            span = _payload_span(bytes(f))
            _flip(rng, f, 0, span[0] if span else min(len(f), 54), rng.choice([1, 2]))
        return _pcap([(ts, bytes(f)) for ts, f in out])
    raw = bytearray(_pcap(frames))
    if kind == "truncate":
        return bytes(raw[: rng.randrange(24, len(raw))])
    if kind == "records":
        recs = [bytes(f) for _, f in out]
        for _ in range(rng.randrange(1, 5)):
            i, j = rng.randrange(len(recs)), rng.randrange(len(recs))
            op = rng.randrange(3)
            if op == 0:
                recs.insert(j, recs[i])
            elif op == 1 and len(recs) > 1:
                del recs[i]
            else:
                recs[i], recs[j] = recs[j], recs[i]
        return _pcap([(frames[0][0] + k * 0.001, f) for k, f in enumerate(recs)])
    # "flips": anywhere in the file, record headers included
    _flip(rng, raw, 24, len(raw), rng.choice([1, 3, 10]))
    return bytes(raw)


BASES = {
    "photon": (CAPTURES / "photon.pcap", CAPTURES / "keys"),
    "ota-fast": (CAPTURES / "ota-fast.pcap", CAPTURES / "keys"),
    "gen3": (CAPTURES / "dtls-gen3-session.pcap", CAPTURES / "keys"),
    "electron-resumed": (CAPTURES / "dtls-electron-resumed.pcap", CAPTURES / "keys"),
    "openssl-etm": (
        DTLS_DATA / "openssl_resume_cbc_sha256_etm.pcap",
        DTLS_DATA / "openssl_resume_cbc_sha256_etm.keylog",
    ),
    "mbedtls": (
        DTLS_DATA / "particle_mbedtls_ccm8_full.pcap",
        DTLS_DATA / "particle_mbedtls_ccm8_full.keylog",
    ),
}
KINDS = ("payload", "header", "truncate", "records", "flips")
SAMPLE = 12


@pytest.fixture(scope="module")
def base_frames() -> dict[str, list[tuple[float, bytes]]]:
    return {name: _frames(path) for name, (path, _) in BASES.items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("base", list(BASES))
def test_seeded_mutants_keep_the_schema(
    base: str, kind: str, base_frames: dict[str, list[tuple[float, bytes]]], tmp_path: Path
) -> None:
    _, keys = BASES[base]
    ring = KeyRing()
    ring.load(str(keys), role="keylog" if keys.suffix == ".keylog" else None)
    path = tmp_path / "mutant.pcap"
    for seed in range(SAMPLE):
        rng = random.Random(f"{base}:{kind}:{seed}")
        path.write_bytes(_mutant(kind, base_frames[base], rng))
        try:
            records = _run(path, ring)
        except CaptureFormatError:
            assert kind == "flips", "only a damaged file header may make it no capture"
            continue
        if seed % 4 == 0:
            for fmt in ("table", "csv", "markdown", "json"):
                writer = make_writer(fmt, io.StringIO())
                for rec in records:
                    writer.write(rec)
                writer.close()
