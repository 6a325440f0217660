"""Review sweep 3b: TCP captures re-segmented (frames split across packets), then cut.

Derived at test time from the real captures in ``tests/data/tcp``: each direction's
stream re-cut into random 1–48-byte pieces or MSS-like pieces, then everything before
packet ``k`` dropped, so the capture starts in the middle of a frame or of a handshake
blob; around the cut the first kept piece is duplicated or swapped with the next.
Invariants: nothing invented or mis-decrypted, from the second whole frame of each
direction on everything decrypts (key log), a kept handshake decrypts everything (device
key), an undecryptable message says why, records in capture order, and a response keeps
its kind when its request was decrypted too (the tracker must see both in capture order).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dissector.capture.packets import TcpSegment
from dissector.keys import KeyRing
from tests.derive import load_segments, write_pcap
from tests.helpers import BREWSKEY, SPARK, TCP_KEYS, dissect, findings, messages, ring_with

CLOUD_PORT = 5683
Half = tuple[str, int, str, int]


def _half(s: TcpSegment) -> Half:
    return (s.src_ip, s.src_port, s.dst_ip, s.dst_port)


def _direction(h: Half) -> str:
    return "cloud->device" if h[1] == CLOUD_PORT else "device->cloud"


def _isn(segs: list[TcpSegment]) -> dict[Half, int]:
    return {_half(s): (s.seq + 1) & 0xFFFFFFFF for s in segs if s.syn}


def _reseg(segs: list[TcpSegment], size: int | None, seed: int = 0) -> list[TcpSegment]:
    """Coalesce each direction's consecutive data (until the other side sends data) and
    cut it again into ``size``-byte pieces, or random 1–48-byte pieces when ``size`` is
    None. A piece keeps the time of the original segment holding its last byte."""
    rng = random.Random(seed)
    isn = _isn(segs)
    out: list[tuple[float, int, int, TcpSegment]] = []
    runs: dict[Half, list[tuple[int, int, TcpSegment]]] = {}

    def flush(h: Half) -> None:
        run = runs.pop(h, None)
        if not run:
            return
        base = run[0][1]
        data = b"".join(s.payload for _, _, s in run)
        owner = [j for j, (_, _, s) in enumerate(run) for _ in s.payload]
        pos = sub = 0
        while pos < len(data):
            chunk = data[pos : pos + (size or rng.randint(1, 48))]
            index, _, tmpl = run[owner[pos + len(chunk) - 1]]
            seq = (isn[h] + base + pos) & 0xFFFFFFFF
            out.append((tmpl.ts, index, sub, replace(tmpl, seq=seq, payload=chunk)))
            sub += 1
            pos += len(chunk)

    end: dict[Half, int] = {}
    for i, s in enumerate(segs):
        h = _half(s)
        if s.payload:
            off = (s.seq - isn[h]) & 0xFFFFFFFF
            if off + len(s.payload) <= end.get(h, 0):
                continue  # a retransmission of the original capture
            end[h] = off + len(s.payload)
            flush((h[2], h[3], h[0], h[1]))
            runs.setdefault(h, []).append((i, off, s))
        else:
            if s.fin or s.rst:
                flush(h)
            out.append((s.ts, i, -1, s))
    for h in list(runs):
        flush(h)
    out.sort(key=lambda x: (x[0], x[1], x[2]))
    return [x[3] for x in out]


class _Layout:
    """Stream bytes and frame spans per half connection of a capture with its SYNs."""

    def __init__(self, segs: list[TcpSegment]) -> None:
        self.isn = _isn(segs)
        self.frames: dict[Half, list[tuple[int, int]]] = {}
        streams: dict[Half, bytearray] = {}
        for s in segs:
            if s.payload:
                h = _half(s)
                off = (s.seq - self.isn[h]) & 0xFFFFFFFF
                buf = streams.setdefault(h, bytearray())
                if off + len(s.payload) > len(buf):
                    buf += s.payload[len(buf) - off :]
        for h, st in streams.items():
            pos = 424 if h[1] == CLOUD_PORT else 256
            spans = []
            while pos + 2 <= len(st):
                end = pos + 2 + int.from_bytes(st[pos : pos + 2], "big")
                spans.append((pos, end))
                pos = end
            self.frames[h] = spans

    def starts(self, segs: list[TcpSegment]) -> dict[Half, int]:
        """Per half: stream offset of its first data packet (where a SYN-less read starts)."""
        out: dict[Half, int] = {}
        for s in segs:
            if s.payload:
                out.setdefault(_half(s), (s.seq - self.isn[_half(s)]) & 0xFFFFFFFF)
        return out


def _ring(base: Path, mode: str) -> KeyRing:
    if mode == "keylog":
        return ring_with(f"{base}.keylog", role="keylog")
    return ring_with(TCP_KEYS / "default_key.pem", TCP_KEYS / "5190c68b84cc2643c6b052a7.der")


def _sig(m: dict[str, Any], with_ts: bool = True) -> tuple[Any, ...]:
    coap = json.dumps(m["coap"], sort_keys=True)
    return ((round(m["ts"], 6),) if with_ts else ()) + (m["direction"], coap)


_FULL: dict[tuple[Path, int | None, int, str], list[dict[str, Any]]] = {}


def _derived(
    base: Path, size: int | None, seed: int, mode: str, tmp_path: Path
) -> tuple[list[TcpSegment], list[dict[str, Any]]]:
    pieces = _reseg(load_segments(f"{base}.pcap"), size, seed)
    key = (base, size, seed, mode)
    if key not in _FULL:
        path = tmp_path / "full.pcap"
        path.write_bytes(write_pcap(pieces))
        _FULL[key] = messages(dissect([path], _ring(base, mode)))
    return pieces, _FULL[key]


def _run(segs: list[TcpSegment], base: Path, mode: str, tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "cut.pcap"
    path.write_bytes(write_pcap(segs))
    return dissect([path], _ring(base, mode))


def _check_key_log_cut(
    layout: _Layout,
    full: list[dict[str, Any]],
    cut: list[TcpSegment],
    recs: list[dict[str, Any]],
    with_ts: bool = True,
) -> list[str]:
    """What is wrong with one cut read with the key log (empty when nothing)."""
    problems = []
    stamps = [r["ts"] for r in recs if r["record"] in ("message", "handshake")]
    if stamps != sorted(stamps):
        problems.append("records out of capture order")
    msgs = messages(recs)
    if any(m["coap"] is None and not m.get("encrypted") for m in msgs):
        problems.append("undecrypted message without an encrypted reason")
    invented = Counter(_sig(m, with_ts) for m in msgs if m["coap"]) - Counter(
        _sig(m, with_ts) for m in full if m["coap"]
    )
    if invented:
        problems.append(f"invented or mis-decrypted: {sorted(invented)[:2]}")
    if not with_ts:
        return problems
    got = Counter(_sig(m) for m in msgs if m["coap"])
    for h, start in layout.starts(cut).items():
        mine = [m for m in full if m["direction"] == _direction(h)]
        whole = [i for i, (a, _) in enumerate(layout.frames[h]) if a >= start]
        for i in whole[1:]:
            if got[_sig(mine[i])] < 1:
                problems.append(f"{_direction(h)} frame {i} not decrypted")
                break
    return problems


# ------------------------------------------------------------- swept, key log only

#: (capture, piece size or None for random 1–48, seed, every how many packets to cut)
SWEEPS = [
    pytest.param(SPARK, None, 1, 1, id="sparkprotocol-random-1"),
    pytest.param(BREWSKEY, None, 2, 2, id="brewskey-random-2"),
    pytest.param(SPARK, 100, 0, 2, id="sparkprotocol-100"),
    pytest.param(BREWSKEY, 536, 0, 2, id="brewskey-536"),
]


@pytest.mark.parametrize(("base", "size", "seed", "stride"), SWEEPS)
def test_resegmented_capture_cut_at_every_packet_with_the_key_log(
    base: Path, size: int | None, seed: int, stride: int, tmp_path: Path
) -> None:
    """Frames split across packets, the capture starting at every packet (inside a frame,
    a frame header or a handshake blob): from the second whole frame of each direction
    on, every frame decrypts to the full run's CoAP at the full run's time; nothing
    else is decrypted."""
    pieces, full = _derived(base, size, seed, "keylog", tmp_path)
    layout = _Layout(pieces)
    bad = {}
    for k in range(1, len(pieces), stride):
        recs = _run(pieces[k:], base, "keylog", tmp_path)
        problems = _check_key_log_cut(layout, full, pieces[k:], recs)
        if problems:
            bad[k] = problems
    assert bad == {}


@pytest.mark.parametrize(("base", "size", "seed", "stride"), SWEEPS[:2])
def test_resegmented_capture_cut_at_every_packet_with_the_device_key(
    base: Path, size: int | None, seed: int, stride: int, tmp_path: Path
) -> None:
    """Device and server key, no key log: a cut that keeps the whole handshake (the
    nonce or at least the whole session key one way, the whole identity the other)
    decrypts every frame; any other cut decrypts nothing and names the missing key."""
    pieces, full = _derived(base, size, seed, "keys", tmp_path)
    layout = _Layout(pieces)
    bad = {}
    for k in range(1, len(pieces), stride + 1):
        recs = _run(pieces[k:], base, "keys", tmp_path)
        msgs = messages(recs)
        starts = {_direction(h): s for h, s in layout.starts(pieces[k:]).items()}
        kept = starts.get("cloud->device") in (0, 40) and starts.get("device->cloud") == 0
        decoded = [m for m in msgs if m["coap"]]
        if kept and [_sig(m) for m in decoded] != [_sig(m) for m in full]:
            bad[k] = "handshake kept but not everything decrypted"
        elif not kept and decoded:
            bad[k] = "decrypted without the handshake or a key log"
        elif not kept and msgs and not findings(recs, "decrypt.missing_key"):
            bad[k] = "no decrypt.missing_key finding"
    assert bad == {}


# ------------------------------------------------------------- around the cut


@pytest.mark.parametrize("variant", ["dup_first", "dup_later", "swap_first"])
def test_resegmented_cut_with_the_first_piece_duplicated_or_swapped(
    variant: str, tmp_path: Path
) -> None:
    """The first kept piece seen twice (at once or one packet later), or swapped with
    the next piece: each message once, nothing invented, the rest decrypts."""
    pieces, full = _derived(SPARK, None, 3, "keylog", tmp_path)
    layout = _Layout(pieces)
    bad = {}
    for k in range(1, len(pieces), 4):
        cut = list(pieces[k:])
        data = [i for i, s in enumerate(cut) if s.payload]
        if len(data) < 2:
            continue
        i0, i1 = data[0], data[1]
        if variant == "dup_first":
            cut.insert(i0 + 1, cut[i0])
        elif variant == "dup_later":
            cut.insert(i1 + 1, replace(cut[i0], ts=cut[i1].ts))
        else:
            a, b = cut[i0], cut[i1]
            cut[i0], cut[i1] = replace(b, ts=a.ts), replace(a, ts=b.ts)
        recs = _run(cut, SPARK, "keylog", tmp_path)
        # Swapped pieces change which packet completes a frame: compare without times.
        problems = _check_key_log_cut(layout, full, cut, recs, variant != "swap_first")
        if problems:
            bad[k] = problems
    assert bad == {}


# ------------------------------------------------------------- bugs


def _orig_cut(base: Path, k: int, tmp_path: Path, mode: str) -> list[dict[str, Any]]:
    return _run(load_segments(f"{base}.pcap")[k:], base, mode, tmp_path)


@pytest.mark.parametrize("mode", ["keylog", "keys"])
@pytest.mark.parametrize("base", [SPARK, BREWSKEY], ids=["sparkprotocol", "brewskey"])
def test_capture_starting_after_the_nonce_is_an_established_session(
    base: Path, mode: str, tmp_path: Path
) -> None:
    """Cut between the nonce and the identity (SYN and nonce not captured): every frame
    decrypts and both Hellos pass, so the session was established. The nonce was sent,
    just before the capture began: no error claims the cloud never sent it."""
    recs = _orig_cut(base, 4, tmp_path, mode)
    assert all(m["coap"] for m in messages(recs))
    (session,) = [r for r in recs if r["record"] == "session"]
    assert session["outcome"] == "established"
    assert not [f for f in findings(recs) if f["severity"] == "error"]


def _kind_mismatches(
    full: list[dict[str, Any]], recs: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """Responses whose request was decrypted in the cut too but whose kind differs."""
    by_sig = {_sig(m): m for m in full if m["coap"]}
    msgs = [m for m in messages(recs) if m["coap"]]
    requests = {(round(m["ts"], 6), m["coap"]["mid"]) for m in msgs}
    out = []
    for m in msgs:
        f = by_sig[_sig(m)]
        req = f.get("request")
        if m["kind"] != f["kind"] and req and (round(req["ts"], 6), req["mid"]) in requests:
            out.append((round(m["ts"], 6), m["kind"], f["kind"]))
    return out


@pytest.mark.parametrize(
    ("base", "k"),
    [(SPARK, 20), (SPARK, 35), (BREWSKEY, 12), (BREWSKEY, 44)],
    ids=["spark-20", "spark-35", "brewskey-12", "brewskey-44"],
)
def test_mid_session_response_keeps_its_kind_when_its_request_is_decrypted(
    base: Path, k: int, tmp_path: Path
) -> None:
    """Original packets, cut mid-session at a frame boundary: while one direction is
    still resynchronising (three chained headers needed) the other's frames must not
    reach the request tracker first, or a VariableValue / FunctionReturn whose request
    is decrypted right before it is shown as a bare ``Response`` without its request."""
    full = messages(dissect([f"{base}.pcap"], _ring(base, "keylog")))
    recs = _orig_cut(base, k, tmp_path, "keylog")
    assert _kind_mismatches(full, recs) == []


@pytest.mark.parametrize("k", [4, 12, 30])
def test_cut_inside_a_handshake_blob_keeps_response_kinds(k: int, tmp_path: Path) -> None:
    """Re-segmented, the capture starts inside the nonce or the session key: the cloud
    stream begins with up to ~400 bytes that are no frames. A resync candidate in them
    whose length runs past the buffered bytes holds the whole cloud direction back
    (up to 4 KiB, here to the end), so every device response reaches the tracker before
    its request."""
    pieces, full = _derived(SPARK, None, 1, "keylog", tmp_path)
    recs = _run(pieces[k:], SPARK, "keylog", tmp_path)
    assert _kind_mismatches(full, recs) == []
