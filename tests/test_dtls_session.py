"""DtlsConnection behaviour on synthetic and mutated input: resume, findings, robustness."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.utils import PcapReader

from dissector.dtls import (
    Alert,
    ApplicationData,
    DtlsConnection,
    DtlsEvent,
    KeepAlive,
    RecordProtection,
    key_block,
    parse_session_persist_text,
)
from dissector.dtls.records import build_record
from dissector.model import Direction, Finding, Severity

DATA = Path(__file__).parent / "data" / "dtls"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
NAME = "particle_mbedtls_ccm8_full"
PERSISTED = parse_session_persist_text((DATA / f"{NAME}.persist.txt").read_text())


@cache
def capture() -> tuple[tuple[Direction, bytes], ...]:
    with PcapReader(str(DATA / f"{NAME}.pcap")) as reader:
        return tuple((D2C if p[UDP].dport == 5684 else C2D, bytes(p[UDP].payload)) for p in reader)


def lookup(client_random: bytes) -> bytes | None:
    return PERSISTED.master if client_random == PERSISTED.client_random else None


def findings(events: list[DtlsEvent], code: str) -> list[Finding]:
    return [e for e in events if isinstance(e, Finding) and e.code == code]


def test_keepalives() -> None:
    conn = DtlsConnection()
    for data in (b"", b"\x00"):
        (ev,) = conn.receive(D2C, data, 1.5)
        assert isinstance(ev, KeepAlive) and ev.data == data and ev.ts == 1.5


def test_garbage_is_reported_not_raised() -> None:
    conn = DtlsConnection(session="s1")
    events = conn.receive(C2D, b"GET / HTTP/1.1\r\n\r\n", 2.0)
    (f,) = events
    assert isinstance(f, Finding) and f.code == "dtls.record.malformed"
    assert f.session == "s1" and f.direction is C2D and f.ts == 2.0


def test_application_data_without_any_session() -> None:
    conn = DtlsConnection(lookup)
    _, data = capture()[7]  # cloud ACK, epoch 1
    (ev,) = conn.receive(C2D, data, 0.0)
    assert isinstance(ev, ApplicationData) and ev.plaintext is None
    assert ev.reason == "no handshake or persisted session for this connection"
    assert conn.export_session() is None


def test_resumed_session_continues_counters() -> None:
    # What a resumed mbedTLS-fork device sends (spec §6.4/§11): no handshake, the first
    # record re-marked 253, sequence numbers continuing from the persisted out_ctr.
    kb = key_block(
        PERSISTED.master or b"", PERSISTED.client_random, PERSISTED.server_random, 0xC0AE
    )
    dev, cloud = RecordProtection.for_client(kb), RecordProtection.for_server(kb)
    epoch, seq = PERSISTED.out_ctr
    ping = bytes.fromhex("40000004")
    first = dev.encrypt(23, epoch, seq, ping, PERSISTED.cid)
    flow = [
        (D2C, b"\xfd" + first[1:]),
        (C2D, cloud.encrypt(23, PERSISTED.in_epoch, 6, bytes.fromhex("60000004"))),
        (D2C, dev.encrypt(23, epoch, seq + 1, bytes.fromhex("40020005b168"), PERSISTED.cid)),
        (D2C, dev.encrypt(21, epoch, seq + 2, b"\x01\x00", PERSISTED.cid)),
    ]
    conn = DtlsConnection()
    conn.resume(PERSISTED)
    events: list[DtlsEvent] = []
    for direction, data in flow:
        events.extend(conn.receive(direction, data, 0.0))
    got = [
        (e.direction, e.plaintext, e.record.wire_type)
        for e in events
        if isinstance(e, ApplicationData)
    ]
    assert got == [
        (D2C, ping, 253),
        (C2D, bytes.fromhex("60000004"), 23),
        (D2C, bytes.fromhex("40020005b168"), 25),
    ]
    (alert,) = [e for e in events if isinstance(e, Alert)]
    assert (alert.level, alert.description_name, alert.encrypted) == (1, "close_notify", True)
    assert len(findings(events, "dtls.session.moved")) == 1
    assert not [e for e in events if isinstance(e, Finding) and e.severity is Severity.ERROR]
    exported = conn.export_session()
    assert exported is not None and exported.out_ctr == (1, seq + 3)


def test_cid_mismatch_is_reported() -> None:
    conn = DtlsConnection()
    conn.resume(PERSISTED)
    _, data = capture()[6]  # device Hello, CID c1d05e5510000001
    bad = data[:11] + bytes(8) + data[19:]
    events = conn.receive(D2C, bad, 0.0)
    assert len(findings(events, "dtls.cid.mismatch")) == 1
    (ev,) = [e for e in events if isinstance(e, ApplicationData)]
    assert ev.plaintext is None and ev.reason == "tag check failed"  # CID is in the AAD


def test_unsupported_suite() -> None:
    items = list(capture())
    d, flight = items[3]
    patched = flight.replace(bytes.fromhex("c0ae000022"), bytes.fromhex("1301000022"))
    assert patched != flight
    items[3] = (d, patched)
    conn = DtlsConnection(lookup)
    events: list[DtlsEvent] = []
    for direction, data in items:
        events.extend(conn.receive(direction, data, 0.0))
    assert len(findings(events, "dtls.suite.unsupported")) == 1
    reasons = {e.reason for e in events if isinstance(e, ApplicationData)}
    assert reasons == {"unsupported cipher suite 0x1301"}


def test_unprotected_application_data_and_bad_alert() -> None:
    conn = DtlsConnection()
    events = conn.receive(D2C, build_record(23, 0, 1, b"\x40\x00\x00\x01"), 0.0)
    assert isinstance(events[0], ApplicationData) and events[0].plaintext is None
    assert findings(events, "dtls.record.unprotected")
    events = conn.receive(C2D, build_record(21, 0, 1, b"\x02"), 0.0)
    assert isinstance(events[0], Alert) and events[0].level is None
    assert findings(events, "dtls.alert.malformed")
    (alert,) = conn.receive(C2D, build_record(21, 0, 2, b"\x02\x28"), 0.0)
    assert (
        isinstance(alert, Alert) and alert.fatal and alert.description_name == "handshake_failure"
    )


def test_malformed_handshake_is_a_finding() -> None:
    conn = DtlsConnection()
    events = conn.receive(D2C, build_record(22, 0, 0, b"\x01\x00\x00"), 0.0)
    assert findings(events, "dtls.handshake.malformed")
    # Complete header but broken ClientHello body: the message event carries the error.
    body = b"\xfe\xfd" + bytes(10)
    frag = b"\x01" + len(body).to_bytes(3, "big") + bytes(5) + len(body).to_bytes(3, "big")
    events = conn.receive(D2C, build_record(22, 0, 1, frag + body), 0.0)
    (msg,) = [e for e in events if not isinstance(e, Finding)]
    assert msg.msg is None and msg.error and "ClientHello" in msg.error  # type: ignore[union-attr]


def _connection_after_handshake() -> DtlsConnection:
    conn = DtlsConnection(lookup)
    for direction, data in capture()[:6]:
        conn.receive(direction, data, 0.0)
    return conn


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=120)), max_size=6))
def test_arbitrary_datagrams_never_raise(datagrams: list[tuple[bool, bytes]]) -> None:
    for conn in (DtlsConnection(lookup), _connection_after_handshake()):
        for to_cloud, data in datagrams:
            for ev in conn.receive(D2C if to_cloud else C2D, data, 0.0):
                assert isinstance(ev, DtlsEvent)


record_strategy = st.builds(
    lambda t, e, s, f, cid: build_record(t, e, s, f, cid=cid if t in (25, 253) else None),
    st.sampled_from([20, 21, 22, 23, 25, 253, 254]),
    st.integers(0, 2),
    st.integers(0, 10),
    st.one_of(
        st.binary(max_size=80),
        # handshake-shaped fragments reach the reassembler and body parsers
        st.builds(
            lambda t, seq, off, body: (
                bytes((t,))
                + (off + len(body)).to_bytes(3, "big")
                + seq.to_bytes(2, "big")
                + off.to_bytes(3, "big")
                + len(body).to_bytes(3, "big")
                + body
            ),
            st.sampled_from([1, 2, 3, 11, 12, 13, 14, 15, 16, 20]),
            st.integers(0, 6),
            st.integers(0, 4),
            st.binary(max_size=80),
        ),
    ),
    st.just(PERSISTED.cid),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.lists(record_strategy, max_size=3)), max_size=6))
def test_record_shaped_datagrams_never_raise(datagrams: list[tuple[bool, list[bytes]]]) -> None:
    resumed = DtlsConnection()
    resumed.resume(PERSISTED)
    for conn in (DtlsConnection(lookup), _connection_after_handshake(), resumed):
        for to_cloud, records in datagrams:
            for ev in conn.receive(D2C if to_cloud else C2D, b"".join(records), 0.0):
                assert isinstance(ev, DtlsEvent)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 15),
    st.integers(0, 500),
    st.integers(1, 255),
    st.booleans(),
)
def test_mutated_capture_never_raises(index: int, pos: int, xor: int, truncate: bool) -> None:
    items = list(capture())
    direction, data = items[index]
    pos %= len(data)
    mutated = data[:pos] if truncate else data[:pos] + bytes((data[pos] ^ xor,)) + data[pos + 1 :]
    items[index] = (direction, mutated)
    conn = DtlsConnection(lookup)
    for d, payload in items:
        conn.receive(d, payload, 0.0)


def test_handshake_fragment_before_garbage_is_kept() -> None:
    _, hello = capture()[0]
    record = build_record(22, 0, 0, hello[13:] + b"\x01\x02")
    events = DtlsConnection().receive(D2C, record, 0.0)
    assert [type(e).__name__ for e in events] == ["HandshakeMessage", "Finding"]
    assert events[0].name == "ClientHello"  # type: ignore[union-attr]
    assert findings(events, "dtls.handshake.malformed")
