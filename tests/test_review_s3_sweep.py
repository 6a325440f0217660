"""Review sweep 3: captures cut, thinned, duplicated and reordered the way real ones are.

Derived at test time from the real and bundled captures: DTLS cut at a datagram (key log,
persisted session or no key), single datagrams lost, every packet duplicated (two
interfaces, a switch mirror), neighbours swapped, TCP cut at a packet (frames cut in two
at the start), odd encapsulations. Invariants: what the full run decrypted is decrypted
again (same CoAP, same time) whenever the keys given can do it; nothing is invented; an
undecryptable record says which key is missing; records stay in capture order.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dissector.capture.packets import TcpSegment
from dissector.capture.writer import PcapWriter, build_udp_frame
from tests.derive import Datagram, load_datagrams, load_segments, write_pcap
from tests.helpers import BREWSKEY, SPARK, dissect, findings, messages, ring_with

ROOT = Path(__file__).resolve().parent.parent
DTLS_DATA = ROOT / "tests" / "data" / "dtls"
CAPTURES = ROOT / "captures"
KEYS = CAPTURES / "keys"

#: name -> (capture, NSS key log or None, persisted session or None)
DTLS: dict[str, tuple[Path, Path | None, Path | None]] = {
    "mbedtls": (
        DTLS_DATA / "particle_mbedtls_ccm8_full.pcap",
        DTLS_DATA / "particle_mbedtls_ccm8_full.keylog",
        DTLS_DATA / "particle_mbedtls_ccm8_full.persist.txt",
    ),
    "deviceos101": (
        DTLS_DATA / "deviceos-1.0.1_udp_full.pcap",
        DTLS_DATA / "deviceos-1.0.1_udp_full.keylog",
        None,
    ),
    "res_etm": (
        DTLS_DATA / "openssl_resume_cbc_sha256_etm.pcap",
        DTLS_DATA / "openssl_resume_cbc_sha256_etm.keylog",
        None,
    ),
    "gen3": (
        CAPTURES / "dtls-gen3-session.pcap",
        KEYS / "dtls-gen3-session.keylog",
        KEYS / "dtls-gen3-session.persist",
    ),
    "electron": (
        CAPTURES / "dtls-electron-session.pcap",
        KEYS / "dtls-electron-session.keylog",
        KEYS / "dtls-electron-session.persist",
    ),
    "retrans": (
        CAPTURES / "dtls-retransmission.pcap",
        KEYS / "dtls-retransmission.keylog",
        KEYS / "dtls-retransmission.persist",
    ),
}


def _dtls_ring(name: str, mode: str):  # type: ignore[no-untyped-def]
    _, keylog, persist = DTLS[name]
    if mode == "keylog":
        assert keylog is not None
        return ring_with(keylog, role="keylog")
    if mode == "persist":
        assert persist is not None
        return ring_with(persist, role="session")
    return ring_with()


def _udp_pcap(datagrams: list[Datagram]) -> bytes:
    """Datagrams as an Ethernet pcap in the order given (times may go backwards)."""
    buf = io.BytesIO()
    writer = PcapWriter(buf, 1)
    for ts, src, sport, dst, dport, payload in datagrams:
        writer.write_packet(ts, build_udp_frame(1, src, sport, dst, dport, payload))
    writer.flush()
    return buf.getvalue()


_FULL: dict[tuple[str, str], list[dict[str, Any]]] = {}


def _full(name: str, mode: str) -> list[dict[str, Any]]:
    if (name, mode) not in _FULL:
        _FULL[(name, mode)] = dissect([DTLS[name][0]], _dtls_ring(name, mode))
    return _FULL[(name, mode)]


def _sig(m: dict[str, Any], with_ts: bool = True) -> tuple[Any, ...]:
    coap = m["coap"]
    body = json.dumps(coap, sort_keys=True) if coap else None
    return ((round(m["ts"], 6),) if with_ts else ()) + (m["direction"], body)


def _dtls_cut(name: str, k: int, tmp_path: Path, drop_only: bool = False) -> Path:
    datagrams = load_datagrams(DTLS[name][0])
    rest = datagrams[:k] + datagrams[k + 1 :] if drop_only else datagrams[k:]
    path = tmp_path / f"{name}-{'loss' if drop_only else 'cut'}{k}.pcap"
    path.write_bytes(_udp_pcap(rest))
    return path


def _decrypted_after(full: list[dict[str, Any]], kept: set[float]) -> list[tuple[Any, ...]]:
    return [_sig(m) for m in messages(full) if m["coap"] and round(m["ts"], 6) in kept]


# --------------------------------------------------------------------------- DTLS cuts


def _server_hello_index(name: str) -> int:
    full = _full(name, "keylog")
    sh = next(r["ts"] for r in full if r["record"] == "handshake" and r["step"] == "ServerHello")
    return next(i for i, d in enumerate(load_datagrams(DTLS[name][0])) if d[0] == sh)


CUT_INSIDE_HANDSHAKE = [
    ("mbedtls", 4),
    ("mbedtls", 5),
    ("gen3", 4),
    ("gen3", 5),
    ("electron", 4),
    ("electron", 7),
    ("electron", 9),
    ("retrans", 4),
    ("retrans", 5),
]


@pytest.mark.parametrize(("name", "k"), CUT_INSIDE_HANDSHAKE)
def test_persisted_session_decrypts_a_capture_cut_inside_the_handshake(
    name: str, k: int, tmp_path: Path
) -> None:
    """Cut after the ServerHello but before the Finished: no hello random is in the capture,
    yet the device's persisted session is this session and opens every record."""
    assert k > _server_hello_index(name)
    path = _dtls_cut(name, k, tmp_path)
    kept = {round(d[0], 6) for d in load_datagrams(path)}
    records = dissect([path], _dtls_ring(name, "persist"))
    got = [_sig(m) for m in messages(records) if m["coap"]]
    assert got == _decrypted_after(_full(name, "persist"), kept)
    assert not findings(records, "decrypt.missing_key")


@pytest.mark.parametrize("k", [3, 24])
def test_key_log_trial_opens_encrypt_then_mac_records_without_the_client_hello(
    k: int, tmp_path: Path
) -> None:
    """OpenSSL CBC + encrypt_then_mac, cut between the ClientHello and the ServerHello:
    the ServerHello's encrypt_then_mac extension alone says ETM is on (RFC 7366)."""
    path = _dtls_cut("res_etm", k, tmp_path)
    kept = {round(d[0], 6) for d in load_datagrams(path)}
    records = dissect([path], _dtls_ring("res_etm", "keylog"))
    got = [_sig(m) for m in messages(records) if m["coap"]]
    assert got == _decrypted_after(_full("res_etm", "keylog"), kept)
    assert findings(records, "keylog.trial_match")


@pytest.mark.parametrize("name", ["mbedtls", "gen3"])
@pytest.mark.parametrize("mode", ["keylog", "none"])
def test_dtls_cut_at_every_datagram(name: str, mode: str, tmp_path: Path) -> None:
    """Key log: everything from the ServerHello on decrypts; earlier cuts and no key leave
    messages encrypted with a missing-key finding; never an invented message."""
    n = len(load_datagrams(DTLS[name][0]))
    sh = _server_hello_index(name)
    full = _full(name, "keylog")
    known = {_sig(m)[:2] for m in messages(full)} | {
        _sig(m)[:2] for m in messages(_full(name, "none"))
    }
    for k in range(1, n):
        path = _dtls_cut(name, k, tmp_path)
        kept = {round(d[0], 6) for d in load_datagrams(path)}
        records = dissect([path], _dtls_ring(name, mode))
        msgs = messages(records)
        assert {_sig(m)[:2] for m in msgs} <= known, k
        if mode == "keylog" and k <= sh:
            assert [_sig(m) for m in msgs if m["coap"]] == _decrypted_after(full, kept), k
        if any(m["coap"] is None for m in msgs):
            assert findings(records, "decrypt.missing_key"), k


@pytest.mark.parametrize("name", ["mbedtls", "electron"])
def test_dtls_single_datagram_lost_at_every_index(name: str, tmp_path: Path) -> None:
    full = _full(name, "keylog")
    datagrams = load_datagrams(DTLS[name][0])
    for k in range(len(datagrams)):
        path = _dtls_cut(name, k, tmp_path, drop_only=True)
        kept = {round(d[0], 6) for d in load_datagrams(path)}
        records = dissect([path], _dtls_ring(name, "keylog"))
        hs_lost = any(
            r["record"] == "handshake" and round(r["ts"], 6) == round(datagrams[k][0], 6)
            for r in full
        )
        got = {_sig(m, True)[:2]: m for m in messages(records) if m["coap"]}
        for m in messages(full):
            if m["coap"] and round(m["ts"], 6) in kept and not hs_lost:
                mine = got.get(_sig(m)[:2])
                assert mine is not None, (k, m["ts"])
                assert mine["coap"] == m["coap"], k


# --------------------------------------------------------------- duplicates and swaps


def _dtls_variant(name: str, variant: str) -> list[Datagram]:
    ds = load_datagrams(DTLS[name][0])
    if variant == "dup_same":
        return [x for d in ds for x in (d, d)]
    if variant == "dup_1us":
        return [x for d in ds for x in (d, (d[0] + 1e-6, *d[1:]))]
    if variant == "dup_lag":  # each copy one packet late (two interfaces merged)
        out: list[Datagram] = []
        for i, d in enumerate(ds):
            out.append(d)
            if i:
                out.append((ds[i - 1][0] + 1e-6, *ds[i - 1][1:]))
        return [*out, ds[-1]]
    raise AssertionError(variant)


@pytest.mark.parametrize("name", ["gen3", "deviceos101", "retrans"])
@pytest.mark.parametrize("variant", ["dup_same", "dup_1us", "dup_lag"])
def test_dtls_every_packet_twice_shows_each_message_once(
    name: str, variant: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{variant}.pcap"
    path.write_bytes(_udp_pcap(_dtls_variant(name, variant)))
    records = dissect([path], _dtls_ring(name, "keylog"))
    want = [(*_sig(m), bool(m.get("retransmission"))) for m in messages(_full(name, "keylog"))]
    assert [(*_sig(m), bool(m.get("retransmission"))) for m in messages(records)] == want


def test_dtls_neighbour_swaps_keep_every_message(tmp_path: Path) -> None:
    ds = load_datagrams(DTLS["mbedtls"][0])
    want = Counter(_sig(m, False) for m in messages(_full("mbedtls", "keylog")))
    for i in range(len(ds) - 1):
        for keep_ts in (True, False):
            out = list(ds)
            a, b = out[i], out[i + 1]
            out[i], out[i + 1] = (b, a) if keep_ts else ((a[0], *b[1:]), (b[0], *a[1:]))
            path = tmp_path / f"swap{i}.pcap"
            path.write_bytes(_udp_pcap(out))
            records = dissect([path], _dtls_ring("mbedtls", "keylog"))
            assert Counter(_sig(m, False) for m in messages(records)) == want, (i, keep_ts)


def _tcp_ring(base: Path):  # type: ignore[no-untyped-def]
    return ring_with(f"{base}.keylog", role="keylog")


_TCP_FULL: dict[Path, list[dict[str, Any]]] = {}


def _tcp_full(base: Path) -> list[dict[str, Any]]:
    if base not in _TCP_FULL:
        _TCP_FULL[base] = dissect([f"{base}.pcap"], _tcp_ring(base))
    return _TCP_FULL[base]


@pytest.mark.parametrize("base", [SPARK, BREWSKEY], ids=["sparkprotocol", "brewskey"])
@pytest.mark.parametrize("variant", ["dup_same", "dup_1us", "dup_lag", "swaps"])
def test_tcp_duplicated_and_swapped_packets(base: Path, variant: str, tmp_path: Path) -> None:
    segs = load_segments(f"{base}.pcap")
    out: list[TcpSegment]
    if variant == "dup_same":
        out = [x for s in segs for x in (s, s)]
    elif variant == "dup_1us":
        out = [x for s in segs for x in (s, replace(s, ts=s.ts + 1e-6))]
    elif variant == "dup_lag":
        out = []
        for i, s in enumerate(segs):
            out.append(s)
            if i:
                out.append(replace(segs[i - 1], ts=segs[i - 1].ts + 1e-6))
        out.append(segs[-1])
    else:  # every third pair of neighbours swapped, capture times kept (time goes back)
        out = list(segs)
        for i in range(0, len(out) - 1, 3):
            out[i], out[i + 1] = out[i + 1], out[i]
    path = tmp_path / f"{variant}.pcap"
    path.write_bytes(write_pcap(out))
    records = dissect([path], _tcp_ring(base))
    want = [_sig(m, variant != "swaps") for m in messages(_tcp_full(base))]
    got = [_sig(m, variant != "swaps") for m in messages(records)]
    assert (Counter(got) == Counter(want)) if variant == "swaps" else (got == want)


# --------------------------------------------------------------------------- TCP cuts


def _frames(segs: list[TcpSegment]) -> tuple[dict[int, tuple[Any, int, int]], dict[Any, list]]:
    """Per data packet (first transmission): (side, start, end); per side: frame spans."""
    isn = {(s.src_ip, s.src_port): s.seq + 1 for s in segs if s.syn}
    streams: dict[Any, bytearray] = {}
    spans: dict[int, tuple[Any, int, int]] = {}
    for i, s in enumerate(segs):
        key = (s.src_ip, s.src_port)
        if not s.payload:
            continue
        off = (s.seq - isn[key]) & 0xFFFFFFFF
        buf = streams.setdefault(key, bytearray())
        if off + len(s.payload) <= len(buf):
            continue
        buf += s.payload[len(buf) - off :]
        spans[i] = (key, off, off + len(s.payload))
    frames: dict[Any, list[tuple[int, int]]] = {}
    for key, st in streams.items():
        pos = 424 if key[1] == 5683 else 256
        frames[key] = []
        while pos + 2 <= len(st):
            end = pos + 2 + int.from_bytes(st[pos : pos + 2], "big")
            frames[key].append((pos, end))
            pos = end
    return spans, frames


def _expected_after_cut(base: Path, k: int, with_ts: bool) -> Counter:
    segs = load_segments(f"{base}.pcap")
    spans, frames = _frames(segs)
    full = messages(_tcp_full(base))
    out: Counter = Counter()
    for key, spans_of in frames.items():
        d = "cloud->device" if key[1] == 5683 else "device->cloud"
        mine = [m for m in full if m["direction"] == d]

        def first_packet(off: int, key: Any = key) -> int:
            return next(i for i, (kk, a, b) in spans.items() if kk == key and a <= off < b)

        after = [i for i, f in enumerate(spans_of) if first_packet(f[0]) >= k]
        for i in after[1:]:
            out[_sig(mine[i], with_ts)] += 1
    return out


@pytest.mark.parametrize("base", [SPARK, BREWSKEY], ids=["sparkprotocol", "brewskey"])
def test_tcp_cut_at_every_packet_key_log_only(base: Path, tmp_path: Path) -> None:
    """Cut at every packet (frames cut in two at the start): from the second whole frame of
    each direction on, every message decrypts to the full run's CoAP, none is invented.
    (Times are checked by the next tests; the cut right after the nonce is its own test.)"""
    segs = load_segments(f"{base}.pcap")
    full = Counter(_sig(m, False) for m in messages(_tcp_full(base)))
    for k in range(1, len(segs)):
        if k in (4, 5):
            continue
        path = tmp_path / f"cut{k}.pcap"
        path.write_bytes(write_pcap(segs[k:]))
        records = dissect([path], _tcp_ring(base))
        msgs = messages(records)
        got = Counter(_sig(m, False) for m in msgs if m["coap"])
        assert not got - full, k
        assert not _expected_after_cut(base, k, False) - got, k
        assert all(m["encrypted"] for m in msgs if m["coap"] is None), k


@pytest.mark.parametrize("base", [SPARK, BREWSKEY], ids=["sparkprotocol", "brewskey"])
@pytest.mark.parametrize("k", [4, 5])
def test_tcp_cut_after_the_nonce_finds_the_key_log_entry_by_trial(
    base: Path, k: int, tmp_path: Path
) -> None:
    """SYN and nonce not captured, identity and session key are: the key log entry (found
    by its nonce normally) must be found by trial decryption of the first frames."""
    segs = load_segments(f"{base}.pcap")
    path = tmp_path / f"cut{k}.pcap"
    path.write_bytes(write_pcap(segs[k:]))
    records = dissect([path], _tcp_ring(base))
    assert [_sig(m) for m in messages(records)] == [_sig(m) for m in messages(_tcp_full(base))]


def test_tcp_cut_after_the_nonce_with_another_sessions_key_log_says_what_is_missing(
    tmp_path: Path,
) -> None:
    """Only another session's entry is logged: nothing decrypts, nothing is held to the
    end, and the finding says the nonce is missing and no logged key fits."""
    segs = load_segments(f"{SPARK}.pcap")
    path = tmp_path / "cut4.pcap"
    path.write_bytes(write_pcap(segs[4:]))
    records = dissect([path], _tcp_ring(BREWSKEY))
    msgs = messages(records)
    assert msgs and all(m["coap"] is None for m in msgs)
    assert not findings(records, "keylog.trial_match")
    (missing,) = findings(records, "decrypt.missing_key")
    assert "nonce was not captured whole" in missing["message"]
    assert "no logged session key decrypts the first frames" in missing["message"]
    # Released once both directions' first frames were tried, not at the capture's end.
    first_two = sorted({m["ts"] for m in msgs})[:2]
    assert missing["ts"] <= first_two[-1]


def _packet_times(path: Path | str) -> dict[str, set[float]]:
    out: dict[str, set[float]] = {"device->cloud": set(), "cloud->device": set()}
    for s in load_segments(path):
        if s.payload:
            out["cloud->device" if s.src_port == 5683 else "device->cloud"].add(round(s.ts, 6))
    return out


def test_mid_session_messages_carry_their_own_packet_time() -> None:
    """photon-midsession: the device's first frame was captured at .257701, not at the
    cloud packet (.258101) that made the reassembler release the SYN-less start."""
    path = CAPTURES / "photon-midsession.pcapng"
    records = dissect([path], ring_with(KEYS / "photon-midsession.keylog"))
    times = _packet_times(path)
    wrong = [(m["ts"], m["direction"]) for m in messages(records)]
    wrong = [(t, d) for t, d in wrong if round(t, 6) not in times[d]]
    assert wrong == []


@pytest.mark.parametrize(
    ("base", "k"),
    [(SPARK, 12), (SPARK, 13), (SPARK, 28), (BREWSKEY, 26)],
    ids=["spark-12", "spark-13", "spark-28", "brewskey-26"],
)
def test_tcp_cut_messages_keep_the_full_runs_times(base: Path, k: int, tmp_path: Path) -> None:
    segs = load_segments(f"{base}.pcap")
    path = tmp_path / f"cut{k}.pcap"
    path.write_bytes(write_pcap(segs[k:]))
    records = dissect([path], _tcp_ring(base))
    got = Counter(_sig(m) for m in messages(records) if m["coap"])
    assert not _expected_after_cut(base, k, True) - got
    assert not got - Counter(_sig(m) for m in messages(_tcp_full(base)))


@pytest.mark.parametrize(
    ("base", "k"),
    [(SPARK, 69), (SPARK, 71), (BREWSKEY, 78), (BREWSKEY, 80)],
    ids=["spark-69", "spark-71", "brewskey-78", "brewskey-80"],
)
def test_tcp_cut_near_the_end_keeps_capture_order(base: Path, k: int, tmp_path: Path) -> None:
    """Frames released when the connection ends (held for framing) come out in time order
    with those already decoded, as the README promises (records in capture order)."""
    segs = load_segments(f"{base}.pcap")
    path = tmp_path / f"cut{k}.pcap"
    path.write_bytes(write_pcap(segs[k:]))
    records = dissect([path], _tcp_ring(base))
    stamps = [r["ts"] for r in records if r["record"] in ("message", "handshake")]
    assert stamps == sorted(stamps)


# ----------------------------------------------------------------- odd encapsulations


def _pcap(frames: list[tuple[float, bytes]], nano: bool) -> bytes:
    """A classic Ethernet pcap, microsecond or nanosecond, in the order given."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


_ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def _ip4(src: str, dst: str, ident: int, frag: int, data: bytes) -> bytes:
    return (
        struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(data), ident, frag, 64, 17, 0)
        + socket.inet_aton(src)
        + socket.inet_aton(dst)
        + data
    )


def _ip6(src: str, dst: str, nh: int, data: bytes) -> bytes:
    return (
        struct.pack(">IHBB", 6 << 28, len(data), nh, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + data
    )


def _encapsulate(variant: str, i: int, d: Datagram) -> list[bytes]:
    _ts, src, sport, dst, dport, payload = d
    udp = _udp(sport, dport, payload)
    if variant == "qinq":  # 802.1ad outer tag, 802.1Q inner tag
        tags = b"\x88\xa8\x00\x0a\x81\x00\x00\x14\x08\x00"
        return [_ETH + tags + _ip4(src, dst, i, 0x4000, udp)]
    if variant == "ip4frag":  # 64-byte fragments, last first
        pieces = [udp[o : o + 64] for o in range(0, len(udp), 64)]
        frames = [
            _ETH
            + b"\x08\x00"
            + _ip4(src, dst, i + 1, (n * 8) | (0x2000 if n < len(pieces) - 1 else 0), p)
            for n, p in enumerate(pieces)
        ]
        return frames[::-1]
    if variant == "ip6frag":  # 128-byte fragments behind a fragment header
        s6, d6 = "2001:db8::" + src.split(".")[-1], "2001:db8::" + dst.split(".")[-1]
        pieces = [udp[o : o + 128] for o in range(0, len(udp), 128)]
        frames = []
        for n, p in enumerate(pieces):
            more = 1 if n < len(pieces) - 1 else 0
            hdr = struct.pack(">BBHI", 17, 0, (n * 16) << 3 | more, i + 1)
            frames.append(_ETH + b"\x86\xdd" + _ip6(s6, d6, 44, hdr + p))
        return frames
    if variant == "padded":  # Ethernet padding and a frame check sequence after the IP
        frame = _ETH + b"\x08\x00" + _ip4(src, dst, i, 0x4000, udp)
        return [frame + b"\0" * max(0, 60 - len(frame)) + b"\xde\xad\xbe\xef"]
    raise AssertionError(variant)


@pytest.mark.parametrize("variant", ["qinq", "ip4frag", "ip6frag", "padded"])
def test_odd_encapsulations_of_a_dtls_session(variant: str, tmp_path: Path) -> None:
    """QinQ on nanosecond pcap, IPv4 fragments last first, IPv6 fragments, Ethernet padding
    and FCS after short datagrams: the same messages."""
    ds = load_datagrams(DTLS["gen3"][0])
    frames = [(d[0], f) for i, d in enumerate(ds) for f in _encapsulate(variant, i, d)]
    path = tmp_path / f"{variant}.pcap"
    path.write_bytes(_pcap(frames, nano=variant == "qinq"))
    records = dissect([path], _dtls_ring("gen3", "keylog"))
    assert [_sig(m) for m in messages(records)] == [
        _sig(m) for m in messages(_full("gen3", "keylog"))
    ]
