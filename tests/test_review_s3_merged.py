"""Review sweep 3c: captures holding several sessions at once, and the live path.

Derived at test time from the bundled captures: two captures merged into one (the
second one's addresses rewritten, shifted in time so that their packets interleave, equal
timestamps included), a capture merged with a SYN-less cut or a re-segmented copy of
another, and 50 SYN-less cuts of one capture running at once. Invariants: the merged run,
split per session, equals the separate runs (session ids renumbered), records in capture
order, nothing lost or duplicated; ``feed_packet`` + ``finish`` (what ``sniff`` does) and
two capture files read together give exactly what ``run`` gives on one file; and a
session that holds its events back (a DTLS handshake waiting for the device's first
record) does not hold back every other session's output for ever.
"""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dissector.capture.packets import RawPacket, TcpSegment
from dissector.capture.reader import CaptureReader
from dissector.capture.writer import PcapWriter, build_tcp_frame, build_udp_frame
from dissector.keys import KeyRing
from dissector.live.sniffer import Sniffer
from dissector.output.records import to_record
from dissector.pipeline import Dissector, PipelineEvent
from dissector.protocol.events import MessageEvent
from tests.derive import load_datagrams, load_segments, resegment

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
DATA = ROOT / "tests" / "data"
T0 = 1_700_000_000_000_000  # µs: every derived capture starts here
#: A packet nobody dissects, at the merged capture's end, so that a separate run ends at
#: the same time as the merged one (sessions open at the end close at that time).
PAD = (None, ("192.0.2.1", 9, "192.0.2.2", 9, b"pad"))

#: One packet: a TCP segment, or a UDP datagram ``(src, sport, dst, dport, payload)``.
Udp = tuple[str, int, str, int, bytes]
Unit = tuple[float, TcpSegment | Udp]
Record = dict[str, Any]


@cache
def _ring() -> KeyRing:
    ring = KeyRing()
    ring.load(str(CAPTURES / "keys"))
    ring.load(str(DATA / "tcp" / "keys"))
    for path in sorted((DATA / "tcp").glob("*.keylog")) + sorted((DATA / "dtls").glob("*.keylog")):
        ring.load(str(path))
    ring.load(str(DATA / "dtls" / "particle_mbedtls_ccm8_full.persist.txt"), role="session")
    return ring


@cache
def _units(name: str) -> tuple[Unit, ...]:
    """Every TCP segment and UDP datagram of a bundled capture, in capture order."""
    path = CAPTURES / name if (CAPTURES / name).exists() else DATA / "dtls" / name
    tcp: list[Unit] = [(s.ts, s) for s in load_segments(path)]
    udp: list[Unit] = [(d[0], d[1:]) for d in load_datagrams(path)]
    return tuple(sorted(tcp + udp, key=lambda u: u[0]))


def _us(ts: float) -> int:
    return round(ts * 1_000_000)


def _shift(units: tuple[Unit, ...] | list[Unit], start_us: int) -> list[Unit]:
    """The units moved so that the first one is at ``start_us`` (exact microseconds)."""
    base = _us(units[0][0])
    out: list[Unit] = []
    for ts, u in units:
        t = (_us(ts) - base + start_us) / 1_000_000
        out.append((t, replace(u, ts=t) if isinstance(u, TcpSegment) else u))
    return out


def _rename(units: list[Unit], prefix: str) -> list[Unit]:
    """Every IPv4 address mapped to ``prefix.N`` (another device, another cloud)."""
    names: dict[str, str] = {}

    def ip(a: str) -> str:
        return names.setdefault(a, f"{prefix}.{len(names) + 1}")

    out: list[Unit] = []
    for ts, u in units:
        if isinstance(u, TcpSegment):
            out.append((ts, replace(u, src_ip=ip(u.src_ip), dst_ip=ip(u.dst_ip))))
        else:
            out.append((ts, (ip(u[0]), u[1], ip(u[2]), u[3], u[4])))
    return out


def _device_port(units: list[Unit], port: int) -> list[Unit]:
    """The device's TCP port rewritten (same cloud, same device address)."""
    out: list[Unit] = []
    for ts, u in units:
        assert isinstance(u, TcpSegment)
        if u.src_port != 5683:
            u = replace(u, src_port=port)
        if u.dst_port != 5683:
            u = replace(u, dst_port=port)
        out.append((ts, u))
    return out


def _merge(*parts: list[Unit]) -> list[Unit]:
    """Stable merge by time: at equal times, the packets of earlier parts first."""
    tagged = [(ts, i, j, u) for i, part in enumerate(parts) for j, (ts, u) in enumerate(part)]
    tagged.sort(key=lambda x: (x[0], x[1], x[2]))
    return [(ts, u) for ts, _, _, u in tagged]


def _write(units: list[Unit], path: Path, pad_to: float | None = None) -> Path:
    buf = io.BytesIO()
    writer = PcapWriter(buf, 1)
    for ts, u in units:
        if isinstance(u, TcpSegment):
            frame = build_tcp_frame(
                1, u.src_ip, u.src_port, u.dst_ip, u.dst_port, u.seq, u.ack, u.flags, u.payload
            )
        else:
            frame = build_udp_frame(1, *u)
        writer.write_packet(ts, frame)
    if pad_to is not None:
        writer.write_packet(pad_to, build_udp_frame(1, *PAD[1]))
    writer.flush()
    path.write_bytes(buf.getvalue())
    return path


def _records(events: Iterator[PipelineEvent]) -> list[Record]:
    return [r for r in map(to_record, events) if r is not None]


def _run(*paths: Path) -> list[Record]:
    return _records(Dissector(_ring()).run(iter(CaptureReader([str(p) for p in paths]))))


def _packets(path: Path) -> list[RawPacket]:
    return [p for p in CaptureReader([str(path)]) if isinstance(p, RawPacket)]


def _live(path: Path) -> list[Record]:
    """What ``sniff`` does: one packet at a time through ``feed_packet``, then ``finish``."""
    dissector = Dissector(_ring())
    out: list[Record] = []
    for pkt in _packets(path):
        out += _records(dissector.feed_packet(pkt))
    return out + _records(dissector.finish())


_SID = re.compile(r"\b(?:tcp|dtls)-\d+\b")


def _per_session(records: list[Record]) -> tuple[Counter[tuple[str, ...]], Counter[str]]:
    """Each session's records in order (ids blanked), and the records of no session."""
    groups: dict[str, list[str]] = defaultdict(list)
    loose: Counter[str] = Counter()
    for rec in records:
        text = _SID.sub("S", json.dumps(rec, sort_keys=True))
        if rec.get("session") is None:
            loose[text] += 1
        else:
            groups[rec["session"]].append(text)
    return Counter(tuple(g) for g in groups.values()), loose


def _out_of_order(records: list[Record]) -> list[tuple[int, float, float]]:
    bad = []
    last = float("-inf")
    for i, rec in enumerate(records):
        if rec["record"] != "session" and rec["ts"] is not None:
            if rec["ts"] < last:
                bad.append((i, last, rec["ts"]))
            last = max(last, rec["ts"])
    return bad


def _check_merged(parts: list[list[Unit]], tmp_path: Path, ties: str = "AB") -> list[Record]:
    """Merged run == separate runs per session; capture order; live == run."""
    end = max(p[-1][0] for p in parts)
    separate = [_run(_write(p, tmp_path / f"part{i}.pcap", end)) for i, p in enumerate(parts)]
    merged_units = _merge(*(parts if ties == "AB" else parts[::-1]))
    merged_path = _write(merged_units, tmp_path / "merged.pcap", end)
    merged = _run(merged_path)
    want_sessions: Counter[tuple[str, ...]] = Counter()
    want_loose: Counter[str] = Counter()
    for recs in separate:
        sessions, loose = _per_session(recs)
        want_sessions += sessions
        want_loose += loose
    got_sessions, got_loose = _per_session(merged)
    assert got_sessions == want_sessions
    assert got_loose == want_loose
    assert _out_of_order(merged) == []
    assert _live(merged_path) == merged
    return merged


# --------------------------------------------------------------------------- merged pairs

PAIRS = [
    ("photon.pcap", "sparkprotocol-deviceos-0.7.0.pcap"),
    ("multi-device.pcap", "photon-midsession.pcapng"),
    ("photon.pcap", "photon.pcap"),
    ("ota-fast.pcap", "fail-wrong-device-key.pcap"),
    ("photon.pcap", "dtls-gen3-session.pcap"),
    ("brewskey-deviceos-0.7.0.pcap", "dtls-electron-resumed.pcap"),
    ("dtls-gen3-session.pcap", "particle_mbedtls_ccm8_full.pcap"),
    ("dtls-retransmission.pcap", "openssl_resume_ccm8.pcap"),
]


@pytest.mark.parametrize("offset", ["same_start", "1us", "interleaved"])
@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_merged_pair_splits_into_the_separate_runs(
    a: str, b: str, offset: str, tmp_path: Path
) -> None:
    first = _shift(_units(a), T0)
    span = _us(first[-1][0]) - T0
    start = {"same_start": T0, "1us": T0 + 1, "interleaved": T0 + span // 3}[offset]
    second = _rename(_shift(_units(b), start), "10.77.0")
    _check_merged([first, second], tmp_path, ties="BA" if offset == "same_start" else "AB")


def test_two_devices_to_one_cloud_every_packet_at_the_same_time(tmp_path: Path) -> None:
    """Same cloud address, the second device on another port: all timestamps tie."""
    photon = _shift(_units("photon.pcap"), T0)
    _check_merged([photon, _device_port(photon, 40001)], tmp_path)


# --------------------------------------------------------------- cuts and re-segmentation


def _resegmented(name: str, seed: int, largest: int = 48) -> list[Unit]:
    segs = [u for _, u in _units(name) if isinstance(u, TcpSegment)]
    pieces = resegment(segs, random.Random(seed), largest=largest)
    return [(s.ts, s) for s in pieces]


@pytest.mark.parametrize(
    ("a", "b", "b_from"),
    [
        ("photon.pcap", "photon.pcap", 5),
        ("sparkprotocol-deviceos-0.7.0.pcap", "multi-device.pcap", 3),
        ("dtls-gen3-session.pcap", "sparkprotocol-deviceos-0.7.0.pcap", 9),
        ("photon.pcap", "dtls-electron-session.pcap", 3),
    ],
)
def test_merged_with_a_synless_cut_of_another(a: str, b: str, b_from: int, tmp_path: Path) -> None:
    first = _shift(_units(a), T0)
    for start in (T0, T0 + 500_001):
        cut = _rename(_shift(_units(b)[b_from:], start), "10.77.0")
        _check_merged([first, cut], tmp_path)


@pytest.mark.parametrize("largest", [4, 48])
def test_merged_with_a_resegmented_copy(largest: int, tmp_path: Path) -> None:
    first = _shift(_units("sparkprotocol-deviceos-0.7.0.pcap"), T0)
    pieces = _resegmented("photon.pcap", seed=largest, largest=largest)
    copy = _rename(_shift(pieces, T0 + 1), "10.77.0")
    _check_merged([first, copy], tmp_path)
    cut = _rename(_shift(pieces[len(pieces) // 3 :], T0), "10.78.0")
    _check_merged([first, cut], tmp_path, ties="BA")


# ----------------------------------------------------------------- many SYN-less streams


@pytest.mark.parametrize("delta_us", [0, 1_000])
def test_fifty_synless_connections_at_once(delta_us: int, tmp_path: Path) -> None:
    source = _units("photon-midsession.pcapng")
    parts = [_device_port(_shift(source, T0 + i * delta_us), 20000 + i) for i in range(50)]
    merged = _check_merged(parts, tmp_path)
    sessions = {r["session"] for r in merged if r["record"] == "session"}
    assert len(sessions) == 50
    msgs = Counter(r["session"] for r in merged if r["record"] == "message")
    assert set(msgs.values()) == {23}


# ----------------------------------------------------------------------- the live path


class _Batches:
    """A packet source handing out random batches (empty ones too), then stopping."""

    def __init__(self, packets: list[RawPacket], sniffer_box: list[Sniffer]) -> None:
        self.packets = packets
        self.rng = random.Random(7)
        self.box = sniffer_box

    def read(self, timeout: float) -> list[RawPacket]:
        n = self.rng.randint(0, 6)
        batch, self.packets = self.packets[:n], self.packets[n:]
        if not self.packets and not batch:
            self.box[0].request_stop("done")
        return batch


@pytest.mark.parametrize(
    "name",
    [
        "photon-impaired.pcap",
        "photon-midsession.pcapng",
        "multi-device.pcap",
        "dtls-gen3-session.pcap",
    ],
)
def test_live_path_and_two_files_equal_run(name: str, tmp_path: Path) -> None:
    photon = _shift(_units("photon.pcap"), T0)
    other = _rename(_shift(_units(name), T0 + 1), "10.77.0")
    units = _merge(photon, other)
    path = _write(units, tmp_path / "merged.pcap")
    want = _run(path)
    assert _live(path) == want
    box: list[Sniffer] = []
    got: list[Record] = []
    sniffer = Sniffer(
        _Batches(_packets(path), box), Dissector(_ring()), poll=0.0, drain=0.0, clock=lambda: 0.0
    )
    box.append(sniffer)
    sniffer.run(lambda e: got.extend(_records(iter([e]))))
    assert got == want
    half = len(units) // 2
    while half < len(units) and units[half][0] == units[half - 1][0]:
        half += 1  # split where no two packets share a time (ties go by file order)
    one = _write(units[:half], tmp_path / "one.pcap")
    two = _write(units[half:], tmp_path / "two.pcap")
    assert _run(one, two) == want
    assert _run(two, one) == want
    assert _run(_write(photon, tmp_path / "a.pcap"), _write(other, tmp_path / "b.pcap")) == want


# ------------------------------------------------ a session that holds its events back


STUCK = [
    ("dtls-gen3-session.pcap", 1),
    ("dtls-gen3-session.pcap", 4),
    ("dtls-electron-session.pcap", 3),
    ("particle_mbedtls_ccm8_full.pcap", 2),
    ("deviceos-1.0.1_udp_full.pcap", 6),
]


def _stuck_then_photon(name: str, k: int, tmp_path: Path) -> Path:
    """The first ``k`` datagrams of a DTLS handshake (it never completes: the device
    retried elsewhere, or gave up), then a whole TCP session two hours later."""
    stuck = _rename(_shift(_units(name)[:k], T0), "10.77.0")
    photon = _shift(_units("photon.pcap"), T0 + 7_200_000_000)
    return _write(_merge(stuck, photon), tmp_path / "stuck.pcap")


@pytest.mark.parametrize(("name", "k"), STUCK)
def test_a_stuck_dtls_handshake_does_not_hold_back_live_output(
    name: str, k: int, tmp_path: Path
) -> None:
    """``sniff`` prints each message as it completes: a DTLS session that waits for its
    device's first record (to put the device ID on its handshake records) must not keep
    every other session's messages back until Ctrl-C."""
    path = _stuck_then_photon(name, k, tmp_path)
    dissector = Dissector(_ring())
    printed = 0
    for pkt in _packets(path):
        printed += sum(isinstance(e, MessageEvent) for e in dissector.feed_packet(pkt))
    at_end = sum(isinstance(e, MessageEvent) for e in dissector.finish())
    assert (printed, at_end) == (43, 0)


@pytest.mark.parametrize(("name", "k"), STUCK[:2])
def test_a_stuck_dtls_handshake_does_not_buffer_the_rest_of_the_capture(
    name: str, k: int, tmp_path: Path
) -> None:
    """``dissect`` streams its output: after a stuck handshake, the records of a session
    two hours later come out while the capture is read, not all at its end."""
    path = _stuck_then_photon(name, k, tmp_path)
    packets = _packets(path)
    read = 0

    def counting() -> Iterator[RawPacket]:
        nonlocal read
        for pkt in packets:
            read += 1
            yield pkt

    first_message_at = None
    for event in Dissector(_ring()).run(counting()):
        if isinstance(event, MessageEvent) and event.ts > (T0 + 7_200_000_000) / 1e6 - 1:
            first_message_at = read
            break
    assert first_message_at is not None
    assert first_message_at < len(packets) // 2


def test_stuck_dtls_handshake_records_still_come_out_whole_and_in_order(tmp_path: Path) -> None:
    path = _stuck_then_photon("dtls-gen3-session.pcap", 4, tmp_path)
    records = _run(path)
    assert _out_of_order(records) == []
    assert [r["step"] for r in records if r["record"] == "handshake"][:3] == [
        "ClientHello",
        "HelloVerifyRequest",
        "ClientHello",
    ]
    assert _live(path) == records


def _stuck_tcp_then_photon(tmp_path: Path) -> Path:
    """A TCP connection whose device never speaks after the handshake (no frame, no FIN:
    a cut, or a device that hung), then a whole session half an hour later (well within
    the reassembler's idle timeout, which would close the quiet connection)."""
    spark = _units("sparkprotocol-deviceos-0.7.0.pcap")
    first_frame = next(
        i for i, (_, u) in enumerate(spark) if isinstance(u, TcpSegment) and len(u.payload) == 18
    )
    stuck = _rename(_shift(spark[:first_frame], T0), "10.77.0")
    photon = _shift(_units("photon.pcap"), T0 + 1_800_000_000)
    return _write(_merge(stuck, photon), tmp_path / "stuck-tcp.pcap")


def test_a_quiet_tcp_connection_does_not_hold_back_live_output(tmp_path: Path) -> None:
    """The TCP handshake's records wait for the device's first frame (to carry its ID):
    when it never comes, they are released after ``MAX_HOLD_SECONDS`` of capture time,
    and the later session's messages are printed as they complete."""
    path = _stuck_tcp_then_photon(tmp_path)
    dissector = Dissector(_ring())
    printed = []
    for pkt in _packets(path):
        printed += [r for r in map(to_record, dissector.feed_packet(pkt)) if r is not None]
    at_end = [r for r in map(to_record, dissector.finish()) if r is not None]
    assert sum(r["record"] == "message" for r in printed) == 43
    assert not [r for r in at_end if r["record"] == "message"]
    steps = [r["step"] for r in printed if r["record"] == "handshake"]
    assert steps[:3] == ["nonce", "identity", "session_key"]
    assert _out_of_order(printed + at_end) == []
