"""Session-ID resumption (abbreviated handshakes) in the DTLS follower.

The ``openssl_resume_*`` captures (tests/data/dtls/make_openssl_captures.py) hold two
connections of OpenSSL 3.0 ``s_client``/``s_server -dtls1_2``: a full handshake
(``-sess_out``, client certificate) and a resumption by session ID (``-sess_in``, no
tickets): ClientHello with the session ID, cookie round, then ServerHello, the server's
ChangeCipherSpec and Finished first, then the client's. Both carry real Device OS CoAP.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from scapy.layers.inet import UDP
from scapy.utils import PcapReader

from dissector.coap import decode
from dissector.dtls import (
    ApplicationData,
    CachedSession,
    ChangeCipherSpec,
    DtlsConnection,
    DtlsEvent,
    HandshakeMessage,
    PersistedSession,
    SessionCache,
)
from dissector.dtls.handshake import Finished
from dissector.model import Direction, Finding, Severity

DATA = Path(__file__).parent / "data" / "dtls"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
VARIANTS = {
    # name: (cipher suite, encrypt-then-MAC)
    "openssl_resume_default": (0xC02C, False),
    "openssl_resume_ccm8": (0xC0AE, False),
    "openssl_resume_cbc_sha256_etm": (0xC023, True),
    "openssl_resume_cbc_sha256_mte": (0xC023, False),
}
Datagram = tuple[Direction, bytes, float]


@cache
def connections(name: str) -> tuple[tuple[Datagram, ...], tuple[Datagram, ...]]:
    """The datagrams of the full and of the resumed connection (by device port)."""
    flows: dict[int, list[Datagram]] = {}
    with PcapReader(str(DATA / f"{name}.pcap")) as reader:
        for pkt in reader:
            udp = pkt[UDP]
            d2c = udp.dport == 5684
            port = udp.sport if d2c else udp.dport
            item = (D2C if d2c else C2D, bytes(udp.payload), float(pkt.time))
            flows.setdefault(port, []).append(item)
    full, resumed = flows.values()
    return tuple(full), tuple(resumed)


def keylog(name: str) -> list[tuple[bytes, bytes]]:
    """The key log lines in order: the full connection's, then the resumed one's."""
    out = []
    for line in (DATA / f"{name}.keylog").read_text().splitlines():
        _, cr, master = line.split()
        out.append((bytes.fromhex(cr), bytes.fromhex(master)))
    return out


def expected(name: str) -> list[tuple[Direction, dict[str, object]]]:
    lines = (DATA / f"{name}.messages.ndjson").read_text().splitlines()
    return [(Direction(o["direction"]), o["coap"]) for o in map(json.loads, lines)]


def run(conn: DtlsConnection, items: tuple[Datagram, ...]) -> list[DtlsEvent]:
    events: list[DtlsEvent] = []
    for direction, data, ts in items:
        events += conn.receive(direction, data, ts)
    return events


def coap(events: list[DtlsEvent]) -> list[tuple[Direction, dict[str, object]]]:
    out = []
    for e in events:
        if isinstance(e, ApplicationData):
            assert e.plaintext is not None, e.reason
            m = decode(e.plaintext)
            paths = [o.value.decode() for o in m.options if o.number == 11]
            fields = {
                "type": m.type_name,
                "code": m.code_str,
                "mid": m.mid,
                "token": m.token.hex(),
                "uri": "/" + "/".join(paths) if paths else "",
                "payload": m.payload.hex(),
            }
            out.append((e.direction, fields))
    return out


def problems(events: list[DtlsEvent]) -> list[Finding]:
    return [e for e in events if isinstance(e, Finding) and e.severity is not Severity.INFO]


@pytest.mark.parametrize("name", VARIANTS)
def test_key_log_decrypts_the_full_and_the_resumed_connection(name: str) -> None:
    suite, etm = VARIANTS[name]
    keys = dict(keylog(name))
    full, resumed = connections(name)
    first = DtlsConnection(keys.get)
    second = DtlsConnection(keys.get)
    got = coap(run(first, full))
    events = run(second, resumed)
    got += coap(events)
    assert got == expected(name)
    assert problems(events) == []
    for conn in (first, second):
        assert conn.cipher_suite == suite and conn.key_source == "key log"
        assert conn.server_hello is not None
        assert conn.server_hello.ext.encrypt_then_mac is etm
    # OpenSSL logs a CLIENT_RANDOM line for the resumed connection too, same master.
    (cr1, m1), (cr2, m2) = keylog(name)
    assert (first.client_random, second.client_random) == (cr1, cr2) and m1 == m2
    assert not first.abbreviated and second.abbreviated
    assert first.session_id and second.session_id == first.session_id


@pytest.mark.parametrize("name", VARIANTS)
def test_abbreviated_handshake_shape(name: str) -> None:
    keys = dict(keylog(name))
    events = run(DtlsConnection(keys.get), connections(name)[1])
    steps = [
        (e.direction, "CCS" if isinstance(e, ChangeCipherSpec) else e.name)
        for e in events
        if isinstance(e, HandshakeMessage | ChangeCipherSpec)
    ]
    assert steps == [
        (D2C, "ClientHello"),
        (C2D, "HelloVerifyRequest"),
        (D2C, "ClientHello"),
        (C2D, "ServerHello"),
        (C2D, "CCS"),
        (C2D, "Finished"),  # the server finishes first on a resumption
        (D2C, "CCS"),
        (D2C, "Finished"),
    ]
    fins = [e for e in events if isinstance(e, HandshakeMessage) and e.encrypted]
    assert all(isinstance(e.msg, Finished) for e in fins)


@pytest.mark.parametrize("name", VARIANTS)
def test_resumed_connection_decrypts_from_the_first_sessions_master_by_session_id(
    name: str,
) -> None:
    # Key log with only the full handshake's line: the shared cache carries the master
    # secret from the first connection to the one that resumes its session ID.
    (cr1, m1), (cr2, _) = keylog(name)
    cache_ = SessionCache()
    full, resumed = connections(name)
    first = DtlsConnection({cr1: m1}.get, session="dtls-1", session_cache=cache_)
    run(first, full)
    assert first.cache_entry is not None and first.cache_entry.owner == "dtls-1"
    assert len(cache_) == 1 and cache_.get(first.session_id) is first.cache_entry
    second = DtlsConnection({cr1: m1}.get, session="dtls-2", session_cache=cache_)
    events = run(second, resumed)
    assert second.client_random == cr2 and second.abbreviated
    assert problems(events) == []
    assert coap(events) == expected(name)[-6:]
    assert second.key_source == "session ID resumption of dtls-1"
    assert second.resumed_entry is first.cache_entry
    assert second.cache_entry is first.cache_entry  # one entry per session ID


def test_missing_master_names_the_client_random_and_the_session_id() -> None:
    name = "openssl_resume_ccm8"
    (cr1, m1), (cr2, _) = keylog(name)
    conn = DtlsConnection({cr1: m1}.get)  # no cache: the first session is unknown here
    events = run(conn, connections(name)[1])
    records = [e for e in events if isinstance(e, ApplicationData)]
    assert records and all(e.plaintext is None for e in records)
    reason = records[0].reason or ""
    assert cr2.hex() in reason and conn.session_id.hex() in reason
    assert "abbreviated handshake" in reason
    (no_key,) = [e for e in events if isinstance(e, Finding) and e.code == "dtls.decrypt.no_key"]
    assert no_key.details["client_random"] == cr2.hex()
    assert conn.key_source is None


def test_persisted_session_with_a_session_id_seeds_the_cache() -> None:
    # A Device OS blob holds the session ID: a later abbreviated handshake resuming it
    # decrypts from the blob alone.
    name = "openssl_resume_ccm8"
    (cr1, m1), _ = keylog(name)
    first = DtlsConnection({cr1: m1}.get)
    run(first, connections(name)[0])
    exported = first.export_session()
    assert exported is not None and exported.session_id == first.session_id
    cache_ = SessionCache()
    cache_.add_persisted(exported)
    entry = cache_.get(first.session_id)
    assert entry is not None and entry.owner == "persisted session (live)"
    conn = DtlsConnection(lambda _cr: None, session_cache=cache_)
    events = run(conn, connections(name)[1])
    assert coap(events) == expected(name)[-6:]
    assert conn.key_source == "session ID resumption of persisted session (live)"


def test_resuming_from_a_persisted_session_caches_its_session_id() -> None:
    name = "openssl_resume_ccm8"
    (cr1, m1), _ = keylog(name)
    first = DtlsConnection({cr1: m1}.get)
    run(first, connections(name)[0])
    exported = first.export_session()
    assert exported is not None
    cache_ = SessionCache()
    moved = DtlsConnection(session="dtls-7", session_cache=cache_)
    moved.resume(exported)
    assert moved.key_source == "persisted session"
    entry = cache_.get(first.session_id)
    assert entry is not None and entry.master == m1 and entry.owner == "dtls-7"


def test_unknown_session_id_in_the_cache_is_not_used() -> None:
    name = "openssl_resume_ccm8"
    cache_ = SessionCache()
    cache_.put(CachedSession(b"\x01" * 32, bytes(48), 0xC0AE, "other"))
    conn = DtlsConnection(lambda _cr: None, session_cache=cache_)
    events = run(conn, connections(name)[1])
    assert conn.abbreviated and conn.resumed_entry is None and conn.key_source is None
    assert all(e.plaintext is None for e in events if isinstance(e, ApplicationData))


def test_full_handshake_with_a_session_id_is_not_abbreviated() -> None:
    # A client offering a session ID the server does not resume gets a full handshake with
    # a new ID: no cache lookup, the cached (stale) master is not used.
    name = "openssl_resume_ccm8"
    (cr1, m1), _ = keylog(name)
    full, _ = connections(name)
    conn = DtlsConnection({cr1: m1}.get, session_cache=SessionCache())
    run(conn, full)
    assert conn.client_hello is not None and conn.client_hello.session_id == b""
    assert not conn.abbreviated and conn.resumed_entry is None


def test_session_cache_bounds_and_keeps_what_it_knows() -> None:
    cache_ = SessionCache(limit=2)
    a = cache_.put(CachedSession(b"a", b"m" * 48, 1, "s1"))
    a.device_id = "00" * 12
    again = cache_.put(CachedSession(b"a", b"m" * 48, 1, "s2"))
    assert again is a and again.device_id == "00" * 12 and again.owner == "s1"
    replaced = cache_.put(CachedSession(b"a", b"n" * 48, 1, "s3"))
    assert cache_.get(b"a") is replaced
    cache_.put(CachedSession(b"b", b"m" * 48, 1))
    cache_.put(CachedSession(b"c", b"m" * 48, 1))
    assert len(cache_) == 2 and cache_.get(b"a") is None
    empty = CachedSession(b"", b"m" * 48, 1)
    assert cache_.put(empty) is empty and cache_.get(b"") is None and len(cache_) == 2
    cache_.add_persisted(PersistedSession(b"c" * 32, b"s" * 32, None, 0xC0AE, session_id=b"x"))
    assert cache_.get(b"x") is None  # no master, nothing to resume with


def test_wrong_master_finding_names_the_client_random() -> None:
    name = "openssl_resume_ccm8"
    full, _ = connections(name)
    conn = DtlsConnection(lambda _cr: bytes(48))
    events = run(conn, full)
    failed = [e for e in events if isinstance(e, Finding) and e.code == "dtls.decrypt.failed"]
    cr = (conn.client_random or b"").hex()
    assert failed and cr and all(f.details["client_random"] == cr for f in failed)
    assert "that secret is wrong" in failed[0].message


def test_one_corrupted_record_is_not_blamed_on_the_secret() -> None:
    name = "openssl_resume_ccm8"
    keys = dict(keylog(name))
    full = list(connections(name)[0])
    d, data, ts = full[11]  # a device application record, after others opened
    full[11] = (d, data[:-1] + bytes([data[-1] ^ 1]), ts)
    events = run(DtlsConnection(keys.get), tuple(full))
    (failed,) = [e for e in events if isinstance(e, Finding) and e.code == "dtls.decrypt.failed"]
    assert "tag check failed" in failed.message and "client_random" not in failed.details
    records = [e for e in events if isinstance(e, ApplicationData)]
    assert [e.plaintext is None for e in records].count(True) == 1
