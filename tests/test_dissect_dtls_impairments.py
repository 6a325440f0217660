"""Impaired DTLS captures through the whole pipeline: findings, never exceptions.

Derived from real captures (OpenSSL session resumption, Device OS 1.0.1): wrong and
incomplete key logs, a corrupted tag, a truncated datagram, reordered and duplicated
datagrams, a pre-3.1 firmware resuming from a new address with the 254 marker, CoAP
retransmissions re-encrypted as new records, and random datagrams mixed into a capture.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, UdpDatagram
from dissector.capture.reader import CaptureReader
from dissector.capture.writer import PcapWriter, build_udp_frame
from dissector.dtls import DtlsConnection, RecordProtection, key_block, parse_datagram
from dissector.dtls.records import build_record
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.output.records import to_record
from dissector.pipeline import Dissector
from tests.helpers import (
    DATA,
    comparable,
    dissect,
    expected_messages,
    findings,
    messages,
    ring_with,
)

DTLS = DATA / "dtls"
RESUME = DTLS / "openssl_resume_ccm8"
DEVICEOS = DTLS / "deviceos-1.0.1_udp_full"
DEVICE_ID = (DTLS / "deviceos_device_id.txt").read_text().strip()
CLOUD = 5684
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
LINKTYPE_ETHERNET = 1


# --------------------------------------------------------------------------- helpers


@cache
def _load(path: str) -> tuple[UdpDatagram, ...]:
    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([path]):
        if isinstance(item, RawPacket):
            unit = decoder.decode(item)
            if isinstance(unit, UdpDatagram):
                out.append(unit)
    return tuple(out)


def udp_datagrams(base: Path) -> list[UdpDatagram]:
    """Every UDP datagram of ``<base>.pcap``, in capture order."""
    return list(_load(f"{base}.pcap"))


def pcap_bytes(dgrams: Iterable[UdpDatagram]) -> bytes:
    buf = io.BytesIO()
    writer = PcapWriter(buf, LINKTYPE_ETHERNET)
    for d in dgrams:
        frame = build_udp_frame(
            LINKTYPE_ETHERNET, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload
        )
        writer.write_packet(d.ts, frame)
    writer.flush()
    return buf.getvalue()


def write_udp(path: Path, dgrams: Iterable[UdpDatagram]) -> Path:
    path.write_bytes(pcap_bytes(dgrams))
    return path


def run_udp(dgrams: Iterable[UdpDatagram], ring: KeyRing, **kwargs: Any) -> list[dict[str, Any]]:
    """Dissect datagrams without a file (frames built in memory)."""
    packets = [
        RawPacket(
            d.ts,
            LINKTYPE_ETHERNET,
            frame := build_udp_frame(
                LINKTYPE_ETHERNET, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload
            ),
            len(frame),
            i + 1,
            "<memory>",
        )
        for i, d in enumerate(dgrams)
    ]
    out = []
    for event in Dissector(ring, **kwargs).run(iter(packets)):
        rec = to_record(event)
        if rec is not None:
            out.append(rec)
    return out


def keylog_lines(base: Path) -> list[str]:
    return [line for line in Path(f"{base}.keylog").read_text().splitlines() if line.strip()]


def keylog_ring(tmp_path: Path, lines: list[str]) -> KeyRing:
    path = tmp_path / "subset.keylog"
    path.write_text("".join(f"{line}\n" for line in lines))
    return ring_with(path, role="keylog")


def sessions(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["session"]: r for r in records if r["record"] == "session"}


def checks(session: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["check"]: (c["status"], c["detail"]) for c in session["handshake"]}


def want(base: Path) -> list[dict[str, Any]]:
    return [comparable(m) for m in expected_messages(base)]


def got(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [comparable(m) for m in messages(records)]


def is_app(d: UdpDatagram) -> bool:
    return d.payload[0] in (23, 25, 253, 254)


class Keys:
    """The record protection of one connection, from its key log line and its hellos."""

    def __init__(self, base: Path, dgrams: list[UdpDatagram]) -> None:
        masters = {}
        for line in keylog_lines(base):
            _, cr, master = line.split()
            masters[bytes.fromhex(cr)] = bytes.fromhex(master)
        conn = DtlsConnection(masters.get)
        for d in dgrams:
            conn.receive(D2C if d.dst_port == CLOUD else C2D, d.payload, d.ts)
        assert conn.client_random and conn.server_random and conn.cipher_suite
        self.client_random = conn.client_random
        self.server_random = conn.server_random
        self.suite = conn.cipher_suite
        self.master = masters[conn.client_random]
        kb = key_block(self.master, conn.client_random, conn.server_random, conn.cipher_suite)
        self.prot = {D2C: RecordProtection.for_client(kb), C2D: RecordProtection.for_server(kb)}

    def open(self, d: UdpDatagram) -> bytes:
        (rec,) = parse_datagram(d.payload).records
        return self.prot[direction(d)].decrypt(rec)

    def seal(self, d: UdpDatagram, plaintext: bytes, seq: int) -> bytes:
        (rec,) = parse_datagram(d.payload).records
        return self.prot[direction(d)].encrypt(rec.content_type, rec.epoch, seq, plaintext)

    def persist_text(self) -> str:
        return (
            f"client_random {self.client_random.hex()}\n"
            f"server_random {self.server_random.hex()}\n"
            f"master {self.master.hex()}\n"
            f"ciphersuite 0x{self.suite:04X}\n"
        )


def direction(d: UdpDatagram) -> Direction:
    return D2C if d.dst_port == CLOUD else C2D


# --------------------------------------------------------------------------- key logs


def test_another_captures_key_log_names_each_missing_client_random() -> None:
    records = dissect([f"{RESUME}.pcap"], ring_with(f"{DEVICEOS}.keylog", role="keylog"))
    msgs = messages(records)
    assert len(msgs) == len(expected_messages(RESUME)) and all(m["coap"] is None for m in msgs)
    missing = findings(records, "decrypt.missing_key")
    randoms = [line.split()[1] for line in keylog_lines(RESUME)]
    assert {f["session"] for f in missing} == {"dtls-1", "dtls-2"}
    for f in missing:
        index = int(f["session"][-1]) - 1
        assert randoms[index] in f["message"]
    for s in sessions(records).values():
        assert checks(s)["keys"][0] == "failed"


def test_missing_entry_leaves_only_that_connection_encrypted(tmp_path: Path) -> None:
    # Only the resumed connection's line: the full connection stays encrypted and says so.
    first, second = keylog_lines(RESUME)
    records = dissect([f"{RESUME}.pcap"], keylog_ring(tmp_path, [second]))
    by_session: dict[str, list[dict[str, Any]]] = {}
    for m in messages(records):
        by_session.setdefault(m["session"], []).append(m)
    assert all(m["coap"] is None for m in by_session["dtls-1"])
    assert [comparable(m) for m in by_session["dtls-2"]] == want(RESUME)[-6:]
    (missing,) = findings(records, "decrypt.missing_key")
    assert missing["session"] == "dtls-1" and first.split()[1] in missing["message"]


def test_wrong_master_in_the_key_log_is_named(tmp_path: Path) -> None:
    lines = keylog_lines(RESUME)
    bad = [" ".join([*line.split()[:2], "00" * 48]) for line in lines]
    records = dissect([f"{RESUME}.pcap"], keylog_ring(tmp_path, bad))
    assert all(m["coap"] is None for m in messages(records))
    assert {m["encrypted"]["reason"] for m in messages(records)} == {"tag check failed"}
    failed = findings(records, "dtls.decrypt.failed")
    randoms = {line.split()[1] for line in lines}
    assert failed and {f["details"]["client_random"] for f in failed} == randoms
    assert all("that secret is wrong" in f["message"] for f in failed)


def test_wrong_master_fails_the_keys_check(tmp_path: Path) -> None:
    lines = keylog_lines(RESUME)
    bad = [" ".join([*line.split()[:2], "00" * 48]) for line in lines]
    records = dissect([f"{RESUME}.pcap"], keylog_ring(tmp_path, bad))
    for s in sessions(records).values():
        status, detail = checks(s)["keys"]
        assert status == "failed" and "wrong" in detail


# --------------------------------------------------------------------------- damaged records


def test_corrupted_tag_in_one_record(tmp_path: Path) -> None:
    dgrams = udp_datagrams(RESUME)
    target = next(i for i, d in enumerate(dgrams) if is_app(d) and direction(d) is D2C)
    d = dgrams[target]
    dgrams[target] = replace(d, payload=d.payload[:-1] + bytes([d.payload[-1] ^ 0x80]))
    records = dissect([write_udp(tmp_path / "tag.pcap", dgrams)], ring_with(f"{RESUME}.keylog"))
    msgs = messages(records)
    assert len(msgs) == len(expected_messages(RESUME))
    broken = [m for m in msgs if m["coap"] is None]
    assert len(broken) == 1 and broken[0]["encrypted"]["reason"] == "tag check failed"
    assert [comparable(m) for m in msgs if m["coap"]] == want(RESUME)[1:]
    (failed,) = findings(records, "dtls.decrypt.failed")
    assert "tag check failed" in failed["message"] and failed["direction"] == "device->cloud"
    status, _ = checks(sessions(records)["dtls-1"])["keys"]
    assert status == "passed"


def test_truncated_datagram(tmp_path: Path) -> None:
    dgrams = udp_datagrams(RESUME)
    apps = [i for i, d in enumerate(dgrams) if is_app(d)]
    cut = apps[2]
    dgrams[cut] = replace(dgrams[cut], payload=dgrams[cut].payload[:-5])
    # and one datagram cut inside its record header
    cut2 = apps[5]
    dgrams[cut2] = replace(dgrams[cut2], payload=dgrams[cut2].payload[:7])
    records = dissect([write_udp(tmp_path / "cut.pcap", dgrams)], ring_with(f"{RESUME}.keylog"))
    expect = want(RESUME)
    assert got(records) == [m for i, m in enumerate(expect) if i not in (2, 5)]
    malformed = findings(records, "dtls.record.malformed")
    assert len(malformed) == 2
    assert "truncated record at offset 0" in malformed[0]["message"]
    assert "truncated record header" in malformed[1]["message"]


def test_reordered_datagrams_all_decode(tmp_path: Path) -> None:
    dgrams = udp_datagrams(DEVICEOS)
    apps = [i for i, d in enumerate(dgrams) if is_app(d)]
    swapped = list(dgrams)
    for a, b in zip(apps[0::2], apps[1::2], strict=False):
        swapped[a], swapped[b] = (
            replace(dgrams[b], ts=dgrams[a].ts),
            replace(dgrams[a], ts=dgrams[b].ts),
        )
    # and same-direction neighbours far apart in sequence numbers: device records 3 and 9
    dev = [i for i in apps if direction(dgrams[i]) is D2C]
    swapped[dev[3]], swapped[dev[9]] = swapped[dev[9]], swapped[dev[3]]
    path = write_udp(tmp_path / "reordered.pcap", swapped)
    records = dissect([path], ring_with(f"{DEVICEOS}.keylog"))
    key = lambda m: tuple(sorted(m.items()))  # noqa: E731
    assert sorted(map(key, got(records))) == sorted(map(key, want(DEVICEOS)))
    assert not findings(records, "dtls.")
    assert all(not m.get("retransmission") for m in messages(records))


def _doubled(dgrams: list[UdpDatagram]) -> list[UdpDatagram]:
    out = []
    for d in dgrams:
        out += [d, replace(d, ts=d.ts + 0.001)]  # every datagram, handshake included
    return out


def _steps(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["direction"], r["step"]) for r in records if r["record"] == "handshake"]


def test_duplicated_datagrams_are_shown_once(tmp_path: Path) -> None:
    dgrams = udp_datagrams(DEVICEOS)
    path = write_udp(tmp_path / "dup.pcap", _doubled(dgrams))
    records = dissect([path], ring_with(f"{DEVICEOS}.keylog"))
    assert got(records) == want(DEVICEOS)
    original = dissect([f"{DEVICEOS}.pcap"], ring_with(f"{DEVICEOS}.keylog"))
    assert _steps(records) == _steps(original)
    assert not [f for f in findings(records) if f["severity"] != "info"]
    s = sessions(records)["dtls-1"]
    n_dev = sum(1 for m in expected_messages(DEVICEOS) if m["direction"] == "device->cloud")
    assert s["stats"]["device->cloud"]["messages"] == n_dev


def test_duplicated_datagrams_without_keys_are_shown_once(tmp_path: Path) -> None:
    path = write_udp(tmp_path / "dup.pcap", _doubled(udp_datagrams(RESUME)))
    records = dissect([path], ring_with())
    msgs = messages(records)
    assert len(msgs) == len(expected_messages(RESUME)) and all(m["coap"] is None for m in msgs)
    original = dissect([f"{RESUME}.pcap"], ring_with())
    assert _steps(records) == _steps(original)


# --------------------------------------------------------------------------- 254 marker


def _moved_254(dgrams: list[UdpDatagram], port: int, skip: int = 4) -> list[UdpDatagram]:
    """Device OS < 3.1 resuming from a new port: no handshake, and (``skip``) no Hello
    either; the first device record is marked 254 and carries ``device ID ‖ 0x0c``."""
    apps = [d for d in dgrams if is_app(d)]
    start = next(i for i, d in enumerate(apps) if direction(d) is D2C and i >= skip)
    out = []
    marked = False
    for d in apps[start:]:
        if direction(d) is D2C:
            payload = d.payload
            if not marked:
                payload = b"\xfe" + payload[1:] + bytes.fromhex(DEVICE_ID) + b"\x0c"
                marked = True
            out.append(replace(d, src_port=port, payload=payload))
        else:
            out.append(replace(d, dst_port=port))
    return out


def test_254_resumption_from_a_new_address_decrypts_from_a_persisted_session(
    tmp_path: Path,
) -> None:
    dgrams = udp_datagrams(DEVICEOS)
    keys = Keys(DEVICEOS, dgrams)
    blob = tmp_path / "device.persist.txt"
    blob.write_text(keys.persist_text())
    moved = _moved_254(dgrams, 47001)
    path = write_udp(tmp_path / "moved254.pcap", moved)
    records = dissect([path], ring_with(blob, role="session"))
    expect = want(DEVICEOS)
    assert got(records) == expect[-len(moved) :] and len(moved) >= 40
    (s,) = sessions(records).values()
    assert s["outcome"] == "resumed" and s["device"]["port"] == 47001
    assert s["device_id"] == DEVICE_ID and s["device_id_source"] == "254 move-session trailer"
    assert s["key_source"].startswith("persisted session")
    (moved_finding,) = findings(records, "dtls.session.moved")
    assert DEVICE_ID in moved_finding["message"] and "254" in moved_finding["message"]
    assert all(m["device_id"] == DEVICE_ID for m in messages(records))


def test_254_resumption_without_keys_still_names_the_device(tmp_path: Path) -> None:
    moved = _moved_254(udp_datagrams(DEVICEOS), 47002)
    records = dissect([write_udp(tmp_path / "moved254.pcap", moved)], ring_with())
    assert all(m["coap"] is None for m in messages(records))
    (s,) = sessions(records).values()
    assert s["device_id"] == DEVICE_ID and s["device_id_source"] == "254 move-session trailer"
    assert findings(records, "dtls.session.unknown_resume")


def test_254_resumption_continues_a_session_seen_earlier(tmp_path: Path) -> None:
    # The handshake is in the capture (key log), then the device moves with the 254 marker:
    # the trailer's device ID (known from the Hello) attaches the new flow to the session.
    dgrams = udp_datagrams(DEVICEOS)
    apps = [i for i, d in enumerate(dgrams) if is_app(d)]
    head = dgrams[: apps[6]]
    tail = _moved_254(dgrams[apps[6] :], 47003, skip=0)
    path = write_udp(tmp_path / "moved254b.pcap", head + tail)
    records = dissect([path], ring_with(f"{DEVICEOS}.keylog"))
    assert got(records) == want(DEVICEOS)
    (s,) = sessions(records).values()
    assert s["device"]["port"] == 47003 and s["device_id"] == DEVICE_ID
    moved = findings(records, "dtls.session.moved")
    assert any("device ID" in f["message"] for f in moved)


# --------------------------------------------------------------------------- CoAP retransmissions


def _retransmitted(dgrams: list[UdpDatagram], keys: Keys, index: int) -> list[UdpDatagram]:
    """Re-send device datagram ``index`` as a new record (next sequence number), 2 s later."""
    last_seq = max(
        r.seq
        for d in dgrams
        if direction(d) is D2C
        for r in parse_datagram(d.payload).records
        if r.epoch == 1
    )
    d = dgrams[index]
    again = replace(d, ts=d.ts + 2.0, payload=keys.seal(d, keys.open(d), last_seq + 1))
    return sorted([*dgrams, again], key=lambda x: x.ts)


def _device_con(dgrams: list[UdpDatagram], keys: Keys, uri: str) -> int:
    for i, d in enumerate(dgrams):
        if is_app(d) and direction(d) is D2C:
            plain = keys.open(d)
            if plain[0] >> 4 == 4 and uri.encode() in plain:  # CON, version 1
                return i
    raise AssertionError(uri)


def test_retransmitted_con_keeps_its_own_record(tmp_path: Path) -> None:
    dgrams = udp_datagrams(DEVICEOS)
    keys = Keys(DEVICEOS, dgrams)
    index = _device_con(dgrams, keys, "hello")
    path = write_udp(tmp_path / "retx.pcap", _retransmitted(dgrams, keys, index))
    records = dissect([path], ring_with(f"{DEVICEOS}.keylog"))
    msgs = messages(records)
    assert len(msgs) == len(expected_messages(DEVICEOS)) + 1
    retx = [m for m in msgs if m.get("retransmission")]
    (again,) = retx
    first = next(m for m in msgs if m["coap"] == again["coap"] and m is not again)
    assert first.get("retransmission") is False
    assert again["ts"] - first["ts"] >= 2.0 and again["kind"] == first["kind"]
    assert not findings(records, "dtls.")


def test_retransmitted_con_is_counted_once(tmp_path: Path) -> None:
    dgrams = udp_datagrams(DEVICEOS)
    keys = Keys(DEVICEOS, dgrams)
    index = _device_con(dgrams, keys, "hello")
    path = write_udp(tmp_path / "retx.pcap", _retransmitted(dgrams, keys, index))
    records = dissect([path], ring_with(f"{DEVICEOS}.keylog"))
    stats = sessions(records)["dtls-1"]["stats"]["device->cloud"]
    n_dev = sum(1 for m in expected_messages(DEVICEOS) if m["direction"] == "device->cloud")
    assert stats["messages"] == n_dev and stats["decrypted"] == n_dev


def test_byte_identical_con_is_shown_once(tmp_path: Path) -> None:
    dgrams = udp_datagrams(DEVICEOS)
    keys = Keys(DEVICEOS, dgrams)
    d = dgrams[_device_con(dgrams, keys, "hello")]
    path = write_udp(
        tmp_path / "same.pcap", sorted([*dgrams, replace(d, ts=d.ts + 2.0)], key=lambda x: x.ts)
    )
    records = dissect([path], ring_with(f"{DEVICEOS}.keylog"))
    assert got(records) == want(DEVICEOS)
    assert not any(m.get("retransmission") for m in messages(records))


def test_resumed_connection_starts_a_fresh_retransmission_window(tmp_path: Path) -> None:
    # The resumed connection sends the very CoAP message (same message ID) the full one
    # sent a few seconds earlier: a new connection, so not a retransmission.
    dgrams = udp_datagrams(RESUME)
    ports = list(dict.fromkeys(d.src_port for d in dgrams if direction(d) is D2C))
    full = [d for d in dgrams if ports[0] in (d.src_port, d.dst_port)]
    resumed = [d for d in dgrams if ports[1] in (d.src_port, d.dst_port)]
    k1, k2 = Keys(RESUME, full), Keys(RESUME, resumed)
    src = full[_device_con(full, k1, "peer/hello")]
    j = _device_con(resumed, k2, "peer/hello")
    (rec,) = parse_datagram(resumed[j].payload).records
    resumed[j] = replace(resumed[j], payload=k2.seal(resumed[j], k1.open(src), rec.seq))
    path = write_udp(tmp_path / "fresh.pcap", full + resumed)
    records = dissect([path], ring_with(f"{RESUME}.keylog"))
    same = [m for m in messages(records) if m["coap"] and m["coap"]["uri"] == "/E/peer/hello"]
    assert [m["session"] for m in same][:2] == ["dtls-1", "dtls-2"]
    assert same[0]["coap"]["mid"] == same[1]["coap"]["mid"]
    assert not any(m.get("retransmission") for m in messages(records))


# --------------------------------------------------------------------------- random datagrams


_REAL = tuple(udp_datagrams(DEVICEOS))
_RING = ring_with(f"{DEVICEOS}.keylog")
_RECORD_TYPES = st.sampled_from([20, 21, 22, 23, 25, 253, 254])


def _real_messages(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of the real device's session (junk flows make sessions of their own)."""
    port = _REAL[0].src_port
    (sid,) = [s for s, r in sessions(records).items() if r["device"]["port"] == port]
    return [m for m in messages(records) if m["session"] == sid]


@st.composite
def _junk(draw: st.DrawFn) -> bytes:
    """Random bytes, or random DTLS-shaped records (valid header, random fragment)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        fragment = draw(st.binary(max_size=120))
        ctype = draw(_RECORD_TYPES)
        epoch = draw(st.integers(0, 2))
        seq = draw(st.integers(0, 2**48 - 1))
        cid = draw(st.binary(min_size=8, max_size=8)) if ctype in (25, 253) else None
        wire = {253: 25, 254: 23}.get(ctype, ctype)
        record = build_record(wire, epoch, seq, fragment, cid=cid)
        out += bytes([ctype]) + record[1:]
    if draw(st.booleans()):
        out += draw(st.binary(max_size=13))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_REAL)),
            _junk(),
            st.integers(1024, 65535),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_random_datagrams_from_other_flows_never_raise(
    junk: list[tuple[int, bytes, int, bool]],
) -> None:
    """Random UDP payloads to and from port 5684 (other devices' ports) mixed into a real
    capture: nothing raises, and every real message still decodes."""
    dgrams = list(_REAL)
    base = dgrams[0]
    for position, payload, port, to_cloud in sorted(junk, key=lambda j: -j[0]):
        at = min(position, len(dgrams) - 1)
        ts = dgrams[at].ts
        if to_cloud:
            d = replace(base, ts=ts, src_ip="10.9.9.9", src_port=port, payload=payload)
        else:
            d = replace(base, ts=ts, src_port=CLOUD, dst_ip="10.9.9.9", dst_port=port,
                        src_ip=base.dst_ip, payload=payload)  # fmt: skip
        dgrams.insert(position, d)
    assert [comparable(m) for m in _real_messages(run_udp(dgrams, _RING))] == want(DEVICEOS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_REAL)), _junk()), max_size=12))
def test_random_datagrams_in_the_same_flow_never_raise(junk: list[tuple[int, bytes]]) -> None:
    """Junk injected into the real flow (device side) is reported; every real message
    still decodes (the junk may add undecryptable message records of its own)."""
    dgrams = list(_REAL)
    device = next(d for d in dgrams if direction(d) is D2C)
    for position, payload in sorted(junk, key=lambda j: -j[0]):
        at = min(position, len(dgrams) - 1)
        dgrams.insert(position, replace(device, ts=dgrams[at].ts, payload=payload))
    records = run_udp(dgrams, _RING)
    real = Counter(tuple(sorted(comparable(m).items())) for m in messages(records) if m["coap"])
    assert all(real[tuple(sorted(m.items()))] for m in want(DEVICEOS))


def test_stray_client_hello_mid_session_does_not_take_the_flow() -> None:
    """A ClientHello with a new random on the device's flow (spoofed, or a handshake that
    never completes) starts a new session, but the records the old session opens stay
    with it: every real message still decodes."""
    dgrams = list(_REAL)
    hello = bytearray(dgrams[0].payload)
    hello[13 + 12 + 2 + 5] ^= 0xFF  # another client random
    apps = [i for i, d in enumerate(dgrams) if is_app(d)]
    at = apps[10]
    dgrams.insert(at, replace(dgrams[0], ts=dgrams[at].ts, payload=bytes(hello)))
    records = run_udp(dgrams, _RING)
    assert got(records) == want(DEVICEOS)
    assert {m["session"] for m in messages(records)} == {"dtls-1"}
    assert len(sessions(records)) == 2  # the stray handshake is a session of its own


def test_random_datagram_mix_is_deterministic_and_fast() -> None:
    """A fixed mix of 300 junk datagrams (seeded) through the pipeline."""
    rng = random.Random(5684)
    dgrams = list(_REAL)
    for _ in range(300):
        at = rng.randrange(len(dgrams))
        payload = rng.randbytes(rng.randrange(0, 120))
        if rng.random() < 0.5 and payload:
            payload = bytes([rng.choice([20, 21, 22, 23, 25, 253, 254]), 0xFE, 0xFD]) + payload
        port = rng.randrange(1024, 65536)
        dgrams.insert(at, replace(dgrams[0], ts=dgrams[at].ts, src_port=port, payload=payload))
    assert [comparable(m) for m in _real_messages(run_udp(dgrams, _RING))] == want(DEVICEOS)
