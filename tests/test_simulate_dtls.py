"""The reference DTLS device and cloud: scenarios decode like real captures do.

Every scenario's capture (``captures/dtls-*.pcap``) must decode through the real pipeline
to exactly the CoAP messages the scenario declares, with the keys written next to it; the
resumed ones from the persisted session alone; the committed files must be what the
generator writes for seed 0, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissector.capture.writer import PcapWriter
from dissector.dtls.keys import PersistedSession, parse_session_persist, parse_session_persist_text
from dissector.dtls.records import parse_datagram
from dissector.keys.serverfile import parse_server_key_file
from dissector.model import Direction
from dissector.output.records import coap_record
from dissector.simulate import SimulationError
from dissector.simulate import messages as m
from dissector.simulate.dtls import DtlsSessionBuilder
from dissector.simulate.dtls_handshake import ephemeral_key
from dissector.simulate.dtls_pcap import UdpFlow, write_udp_pcap
from dissector.simulate.dtls_persist import build_session_persist, session_persist_text
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import BuildContext, KeySet, Simulation
from dissector.simulate.scenarios.dtls_sessions import (
    ELECTRON_ID,
    GEN3_ID,
    SCENARIOS,
    electron_resumed,
    gen3_resumed,
    gen3_session,
    write_scenarios,
)
from tests.helpers import comparable, dissect, findings, messages, ring_with

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
KEYS = CAPTURES / "keys"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
NAMES = sorted(SCENARIOS)


def _ctx(seed: int | str = 0) -> BuildContext:
    return BuildContext(KeySet(seed), seed)


_BUILT: dict[str, Simulation] = {}


def _sim(name: str) -> Simulation:
    if name not in _BUILT:
        _BUILT[name] = SCENARIOS[name].build(_ctx())
    return _BUILT[name]


def _declared(sim: Simulation) -> list[dict[str, Any]]:
    return [{"direction": w.direction.value, "coap": coap_record(w.coap)} for w in sim.sent()]


def _strict(rec: dict[str, Any]) -> dict[str, Any]:
    return {**comparable(rec), "options": rec["coap"]["options"]}


def _payloads(path: Path) -> list[tuple[int, bytes]]:
    """``(destination port, UDP payload)`` of every packet of a capture."""
    from dissector.capture.linklayer import LinkDecoder
    from dissector.capture.packets import RawPacket, UdpDatagram
    from dissector.capture.reader import CaptureReader

    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([str(path)]):
        assert isinstance(item, RawPacket)
        unit = decoder.decode(item)
        assert isinstance(unit, UdpDatagram)
        out.append((unit.dst_port, unit.payload))
    return out


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", NAMES)
def test_capture_decodes_to_the_declared_messages_with_the_keys_folder(name: str) -> None:
    records = dissect([CAPTURES / f"{name}.pcap"], ring_with(KEYS))
    got = [_strict(r) for r in messages(records)]
    assert got == [_strict(r) for r in _declared(_sim(name))]
    assert all(r["transport"] == "dtls" and r["coap"] is not None for r in messages(records))
    assert not findings(records, "decrypt.")
    assert not [f for f in findings(records) if f["severity"] in ("warning", "error")]


@pytest.mark.parametrize(
    "name", ["dtls-gen3-session", "dtls-electron-session", "dtls-retransmission"]
)
def test_full_sessions_decode_from_the_key_log_alone(name: str) -> None:
    records = dissect(
        [CAPTURES / f"{name}.pcap"], ring_with(KEYS / f"{name}.keylog", role="keylog")
    )
    assert [comparable(r) for r in messages(records)] == [
        comparable(r) for r in _declared(_sim(name))
    ]
    session = next(r for r in records if r["record"] == "session")
    checks = {c["check"]: c["status"] for c in session["handshake"]}
    assert checks["finished"] == checks["keys"] == checks["device_hello"] == "passed"
    assert checks["cookie"] == "passed"


@pytest.mark.parametrize(
    ("capture", "blob"),
    [
        ("dtls-gen3-resumed", "dtls-gen3-session.persist"),
        ("dtls-gen3-resumed", "dtls-gen3-resumed.persist.txt"),
        ("dtls-electron-resumed", "dtls-electron-session.persist"),
        ("dtls-electron-resumed", "dtls-electron-resumed.persist.txt"),
        ("dtls-gen3-session", "dtls-gen3-session.persist"),
        ("dtls-electron-session", "dtls-electron-session.persist.txt"),
    ],
)
def test_captures_decode_from_the_persisted_session_alone(capture: str, blob: str) -> None:
    records = dissect([CAPTURES / f"{capture}.pcap"], ring_with(KEYS / blob, role="session"))
    assert [comparable(r) for r in messages(records)] == [
        comparable(r) for r in _declared(_sim(capture))
    ]
    session = next(r for r in records if r["record"] == "session")
    assert session["outcome"] == ("resumed" if "resumed" in capture else "established")


def test_resumed_capture_without_its_session_says_what_is_missing() -> None:
    records = dissect(
        [CAPTURES / "dtls-gen3-resumed.pcap"],
        ring_with(KEYS / "dtls-gen3-session.keylog", role="keylog"),
    )
    assert all(r["coap"] is None for r in messages(records))
    assert findings(records, "dtls.session.unknown_resume")


def test_retransmitted_cons_are_flagged() -> None:
    records = messages(dissect([CAPTURES / "dtls-retransmission.pcap"], ring_with(KEYS)))
    flagged = [
        (r["direction"], r["kind"], r["coap"]["mid"]) for r in records if r.get("retransmission")
    ]
    event_mid = next(r["coap"]["mid"] for r in records if r["kind"] == "PublicEvent")
    call_mid = next(r["coap"]["mid"] for r in records if r["kind"] == "FunctionCall")
    assert flagged == [
        ("device->cloud", "PublicEvent", event_mid),
        ("device->cloud", "PublicEvent", event_mid),
        ("cloud->device", "FunctionCall", call_mid),
    ]
    event_ts = [r["ts"] for r in records if r["kind"] == "PublicEvent"]
    assert 4.0 <= event_ts[1] - event_ts[0] <= 6.0  # ACK timeout 4 s + up to 50 %
    assert 8.0 <= event_ts[2] - event_ts[1] <= 12.0


def test_device_is_named_and_its_key_known_from_the_keys_folder() -> None:
    records = dissect([CAPTURES / "dtls-gen3-session.pcap"], ring_with(KEYS))
    session = next(r for r in records if r["record"] == "session")
    checks = {c["check"]: c["status"] for c in session["handshake"]}
    assert checks["device_certificate"] == checks["device_known"] == "passed"
    assert session["device_id"] == GEN3_ID
    hello = next(r for r in messages(records) if r["kind"] == "Hello")
    assert hello["decoded"]["variant"] == "C" and hello["decoded"]["device_id"] == GEN3_ID


# --------------------------------------------------------------------------- wire format


def test_gen3_records_carry_the_cloud_assigned_cid() -> None:
    payloads = _payloads(CAPTURES / "dtls-gen3-session.pcap")
    b = gen3_session(_ctx())
    assert b.cid is not None and len(b.cid) == 8
    app = [(port, p) for port, p in payloads if p[0] in (23, 25) and p[3:5] == b"\x00\x01"]
    device = [p for port, p in app if port == 5684]
    cloud = [p for port, p in app if port != 5684]
    assert device and all(p[0] == 25 and p[11:19] == b.cid for p in device)
    assert cloud and all(p[0] == 23 for p in cloud)
    # the device's encrypted Finished is its first CID record (packed with its flight)
    flight = next(p for port, p in payloads if port == 5684 and b"\x19\xfe\xfd\x00\x01" in p)
    assert flight[0] == 22


def test_gen3_resumption_marks_the_first_record_253_then_25() -> None:
    payloads = _payloads(CAPTURES / "dtls-gen3-resumed.pcap")
    first, resumed = gen3_resumed(_ctx())
    persisted = first.export_session()
    device = [p for port, p in payloads if port == 5684]
    assert device[0][0] == 253 and {p[0] for p in device[1:]} == {25}
    assert all(p[0] in (22, 23) for port, p in payloads if port != 5684)  # nothing but 23
    seq = int.from_bytes(device[0][5:11], "big")
    assert (int.from_bytes(device[0][3:5], "big"), seq) == persisted.out_ctr
    assert payloads[0][0] == 5684  # no handshake: the device speaks first
    assert resumed.messages[0].coap is not None
    assert resumed.messages[0].coap.mid == ((persisted.next_coap_id or 0) + 1) & 0xFFFF


def test_electron_resumption_appends_the_device_id_trailer_until_the_reply() -> None:
    payloads = _payloads(CAPTURES / "dtls-electron-resumed.pcap")
    device = [p for port, p in payloads if port == 5684]
    trailer = bytes.fromhex(ELECTRON_ID) + b"\x0c"
    assert device[0][0] == 254 and device[0].endswith(trailer)
    assert all(p[0] == 23 and not p.endswith(trailer) for p in device[1:])
    assert not any(p[0] == 25 for _, p in _payloads(CAPTURES / "dtls-electron-session.pcap"))
    _first, b = electron_resumed(_ctx())
    assert b.move_session is False and b.use_counter == 0


def test_handshake_flights_follow_the_reference_shape() -> None:
    b = gen3_session(_ctx())
    shape = [(h.direction, h.msg_type, h.message_seq) for h in b.handshake_messages]
    assert shape == [
        (D2C, 1, 0),
        (C2D, 3, 0),
        (D2C, 1, 1),
        (C2D, 2, 1),
        (C2D, 12, 2),
        (C2D, 13, 3),
        (C2D, 14, 4),
        (D2C, 11, 2),
        (D2C, 16, 3),
        (D2C, 15, 4),
        (D2C, 20, 5),
        (C2D, 20, 5),
    ]
    assert 11 not in [h.msg_type for h in b.handshake_messages if h.direction is C2D]
    # CH, HVR, CH, the cloud's flight (4 records), the device's (5 records), CCS + Finished
    flights = [parse_datagram(d.data) for d in b.datagrams[:6]]
    assert [len(f.records) for f in flights] == [1, 1, 1, 4, 5, 2]
    assert [r.content_type for r in flights[4].records] == [22, 22, 22, 20, 25]
    assert [(r.content_type, r.epoch) for r in flights[5].records] == [(20, 0), (22, 1)]


def test_no_cookie_round_and_unpacked_flights() -> None:
    rng = ByteSource(5)
    b = DtlsSessionBuilder(
        ephemeral_key(rng.fork("d")),
        ephemeral_key(rng.fork("s")),
        GEN3_ID,
        rng=rng,
        cookie=False,
        pack_flights=False,
    )
    b.handshake()
    shape = [(h.direction, h.msg_type, h.message_seq) for h in b.handshake_messages]
    assert shape[:2] == [(D2C, 1, 0), (C2D, 2, 0)]
    assert len(b.datagrams) == 1 + 1 + 5 + 1
    b.device_hello()
    path = io.BytesIO()
    write_udp_pcap(path, b)
    assert path.getvalue()


# --------------------------------------------------------------------------- persistence


def test_session_blob_has_the_spec_layout() -> None:
    b = gen3_session(_ctx())
    blob = b.session_blob()
    s = b.export_session()
    assert len(blob) == 262 and blob[:2] == (262).to_bytes(2, "little")
    assert blob[2] == 1 and blob[3] == 0  # persistent, no unanswered restore
    assert blob[40:72] == s.client_random and blob[72:104] == s.server_random
    assert blob[104:108] == (0xC0AE).to_bytes(4, "little")
    assert blob[112:116] == (32).to_bytes(4, "little") and blob[116:148] == s.session_id
    assert blob[148:196] == s.master
    assert blob[196:198] == b"\x01\x00"
    assert blob[198:206] == (1).to_bytes(2, "big") + s.out_seq.to_bytes(6, "big")
    assert blob[206:208] == (s.next_coap_id or 0).to_bytes(2, "little")
    assert blob[254:262] == s.cid
    assert blob[4:6] == bytes((16, 2)) and blob[6:8] == (5684).to_bytes(2, "big")


@pytest.mark.parametrize("size", [262, 254, 238, 228, 220])
def test_session_blob_round_trips_through_the_decoder(size: int) -> None:
    b = gen3_session(_ctx())
    s = b.export_session()
    p = parse_session_persist(b.session_blob(size))
    assert p.layout == f"arm32/{size}"
    for field in ("client_random", "server_random", "master", "session_id", "ciphersuite"):
        assert getattr(p, field) == getattr(s, field)
    assert (p.out_epoch, p.out_seq, p.in_epoch, p.next_coap_id) == (
        s.out_epoch,
        s.out_seq,
        s.in_epoch,
        s.next_coap_id,
    )
    assert p.keys_checksum == s.keys_checksum and p.connection == s.connection
    if size == 262:
        assert (p.cid, p.in_window_top, p.in_window) == (s.cid, s.in_window_top, s.in_window)
        assert p.max_message_size == 1152 and p.system_version == 4000
    else:
        assert p.cid is None


def test_text_form_round_trips() -> None:
    b = gen3_session(_ctx())
    s = b.export_session()
    t = parse_session_persist_text(b.session_text())
    assert (t.client_random, t.server_random, t.master, t.cid) == (
        s.client_random,
        s.server_random,
        s.master,
        s.cid,
    )
    assert (t.out_epoch, t.out_seq, t.next_coap_id, t.in_window_top, t.in_window) == (
        s.out_epoch,
        s.out_seq,
        s.next_coap_id,
        s.in_window_top,
        s.in_window,
    )


def test_persisted_counters_follow_device_os() -> None:
    first, resumed = gen3_resumed(_ctx())
    before = first.export_session()
    assert before.in_window_top is not None and before.in_window is not None
    # every cloud record of epoch 1 (its Finished included) is in the replay window
    cloud_records = 1 + sum(1 for s in first.messages if s.direction is C2D)
    assert before.in_window_top == cloud_records - 1
    assert before.in_window == (1 << cloud_records) - 1
    assert before.out_seq == 1 + sum(1 for s in first.messages if s.direction is D2C)
    after = resumed.export_session()
    assert after.use_counter == 0 and after.persistent == 1
    assert after.out_seq == before.out_seq + sum(1 for s in resumed.messages if s.direction is D2C)
    restored = DtlsSessionBuilder.resume(before, GEN3_ID, rng=1, move_marking=False)
    assert restored.use_counter == 1 and restored.export_session().use_counter == 1
    restored.ping()
    assert restored.export_session().use_counter == 0
    assert restored.datagrams[0].data[0] == 25  # Device OS 3.1 – 3.x: no 253 marking


def test_keys_are_written_as_device_os_stores_them() -> None:
    files = _sim("dtls-gen3-session").key_files
    der = files["dtls-gen3/device_key.der"]
    key = serialization.load_der_private_key(der, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and len(der) == 121
    assert files["dtls-gen3/device_id.txt"].decode().strip() == GEN3_ID
    server = parse_server_key_file(files["dtls-gen3/server_key_udp_with_address.der"])
    assert server.transport == "udp" and str(server.address) == "10.0.0.1:5684"
    assert files["dtls-gen3-session.keylog"].startswith(b"CLIENT_RANDOM ")
    assert len(files["dtls-gen3-session.persist"]) == 262
    assert len(_sim("dtls-electron-session").key_files["dtls-electron-session.persist"]) == 220
    assert "dtls-gen3-resumed.keylog" not in _sim("dtls-gen3-resumed").key_files


# --------------------------------------------------------------------------- determinism


def test_committed_captures_are_what_the_generator_writes(tmp_path: Path) -> None:
    written = write_scenarios(tmp_path)
    assert written
    for path in written:
        rel = path.relative_to(tmp_path)
        assert (CAPTURES / rel).read_bytes() == path.read_bytes(), rel


def _pcap_digest(sim: Simulation) -> str:
    h = hashlib.sha256()
    for ts, frame in sim.packets:
        h.update(repr(ts).encode() + frame)
    return h.hexdigest()


def test_fixed_seed_gives_identical_output_and_another_seed_does_not() -> None:
    for name in NAMES:
        a = SCENARIOS[name].build(_ctx(0))
        b = SCENARIOS[name].build(_ctx(0))
        assert _pcap_digest(a) == _pcap_digest(b)
        assert a.key_files == b.key_files
        c = SCENARIOS[name].build(_ctx(1))
        assert _pcap_digest(c) != _pcap_digest(a)
    buf = io.BytesIO()
    writer = PcapWriter(buf, 1)
    for ts, frame in _sim("dtls-gen3-session").packets:
        writer.write_packet(ts, frame)
    committed = (CAPTURES / "dtls-gen3-session.pcap").read_bytes()
    assert hashlib.sha256(buf.getvalue()).digest() == hashlib.sha256(committed).digest()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), cid=st.booleans(), cookie=st.booleans())
def test_any_seed_decodes_fully(seed: int, cid: bool, cookie: bool, tmp_path_factory: Any) -> None:
    rng = ByteSource(seed)
    b = DtlsSessionBuilder(
        ephemeral_key(rng.fork("device")),
        ephemeral_key(rng.fork("server")),
        rng(12),
        rng=rng,
        connection_id=cid,
        cookie=cookie,
    )
    b.handshake()
    b.device_hello("C" if cid else "B")
    b.device_event("e", rng(5))
    b.variable_read("v", m.int32_value(seed & 0x7FFFFFFF))
    d = tmp_path_factory.mktemp("sim")
    write_udp_pcap(d / "s.pcap", b, seed=seed)
    (d / "s.keylog").write_text(b.keylog_line() + "\n")
    records = messages(dissect([d / "s.pcap"], ring_with(d / "s.keylog", role="keylog")))
    declared = [
        {"direction": s.direction.value, "coap": coap_record(s.coap)}
        for s in b.messages
        if s.coap is not None
    ]
    assert [_strict(r) for r in records] == [_strict(r) for r in declared]


@settings(max_examples=30, deadline=None)
@given(
    out_seq=st.integers(0, 2**48 - 1),
    mid=st.integers(0, 0xFFFF),
    top=st.integers(0, 2**48 - 1),
    window=st.integers(0, 2**64 - 1),
    sid=st.binary(max_size=32),
)
def test_blob_builder_round_trips_any_counters(
    out_seq: int, mid: int, top: int, window: int, sid: bytes
) -> None:
    s = PersistedSession(
        client_random=bytes(range(32)),
        server_random=bytes(range(32, 64)),
        master=bytes(range(48)),
        ciphersuite=0xC0AE,
        session_id=sid,
        out_seq=out_seq,
        next_coap_id=mid,
        in_window_top=top,
        in_window=window,
        cid=b"\x01" * 8,
    )
    p = parse_session_persist(build_session_persist(s))
    assert (p.out_seq, p.next_coap_id, p.in_window_top, p.in_window, p.session_id) == (
        out_seq,
        mid,
        top,
        window,
        sid,
    )
    t = parse_session_persist_text(session_persist_text(s))
    assert (t.out_seq, t.in_window, t.session_id) == (out_seq, window, sid)


# --------------------------------------------------------------------------- errors


def test_bad_requests_raise_simulation_error() -> None:
    rng = ByteSource(3)
    dk, sk = ephemeral_key(rng.fork("d")), ephemeral_key(rng.fork("s"))
    with pytest.raises(SimulationError):
        DtlsSessionBuilder(dk, sk, "not hex")
    with pytest.raises(SimulationError):
        DtlsSessionBuilder(dk, sk, b"short")
    b = DtlsSessionBuilder(dk, sk, GEN3_ID)
    with pytest.raises(SimulationError):
        b.device_hello()  # application data before the handshake
    with pytest.raises(SimulationError):
        b.export_session()
    with pytest.raises(SimulationError):
        b.keylog_line()
    with pytest.raises(SimulationError):
        b.server_flight()
    nokeys = DtlsSessionBuilder(None, None, GEN3_ID)
    with pytest.raises(SimulationError):
        nokeys.handshake()
    s = gen3_session(_ctx()).export_session()
    with pytest.raises(SimulationError):
        DtlsSessionBuilder.resume(
            PersistedSession(s.client_random, s.server_random, None, 0xC0AE), GEN3_ID
        )
    with pytest.raises(SimulationError):
        DtlsSessionBuilder.resume(
            PersistedSession(s.client_random, s.server_random, s.master, 0xC02B), GEN3_ID
        )
    with pytest.raises(SimulationError):
        build_session_persist(s, 100)
    with pytest.raises(SimulationError):
        b.retransmission_delay(4)
    with pytest.raises(SimulationError):
        write_udp_pcap(io.BytesIO(), [object()])  # type: ignore[list-item]
    with pytest.raises(SimulationError):
        write_udp_pcap(io.BytesIO(), UdpFlow([(2.0, D2C, b"x"), (1.0, D2C, b"y")]))


def test_scenarios_are_in_the_registry() -> None:
    from dissector.simulate.scenarios import all_scenarios

    table = all_scenarios()
    for name in NAMES:
        assert table[name] is SCENARIOS[name]
        assert table[name].transport == "udp" and "dtls" in table[name].tags


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("dtls-gen3-session", "dtls-gen3"),
        ("dtls-electron-session", "dtls-electron"),
        ("dtls-retransmission", "dtls-gen3"),
    ],
)
def test_finished_and_signatures_verify_from_the_wire(name: str, folder: str) -> None:
    """Recomputed from the capture alone (wire fragments, key log, key files)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes

    from dissector.dtls.crypto import RecordProtection, key_block, prf
    from dissector.dtls.handshake import split_handshake_fragments

    master = bytes.fromhex((KEYS / f"{name}.keylog").read_text().split()[2])
    server = parse_server_key_file((KEYS / folder / "server_key_udp_with_address.der").read_bytes())
    assert isinstance(server.public_key, ec.EllipticCurvePublicKey)
    wire: list[tuple[bool, bytes]] = []  # (from device, 12-byte header + body) in order
    prot: dict[bool, RecordProtection] = {}
    cr = sr = b""
    for port, payload in _payloads(CAPTURES / f"{name}.pcap"):
        device = port == 5684
        for rec in parse_datagram(payload).records:
            if rec.epoch == 0 and rec.content_type == 22:
                content = rec.fragment
            elif rec.epoch == 1 and rec.content_type in (22, 25):
                if not prot:
                    kb = key_block(master, cr, sr, 0xC0AE)
                    prot = {
                        True: RecordProtection.for_client(kb),
                        False: RecordProtection.for_server(kb),
                    }
                ctype, content = prot[device].decrypt_typed(rec)
                if ctype != 22:
                    continue
            else:
                continue
            frags, error = split_handshake_fragments(content)
            assert error is None and len(frags) == 1
            wire.append((device, content))
            if content[0] == 1:
                cr = content[14:46]
            elif content[0] == 2:
                sr = content[14:46]
    types = [c[0] for _, c in wire]
    assert types == [1, 3, 1, 2, 12, 13, 14, 11, 16, 15, 20, 20]
    transcript = b"".join(c for _, c in wire[2:10])  # from the second ClientHello
    ske = wire[4][1][12:]
    params_len = 4 + ske[3]
    signature = ske[params_len + 4 :]
    server.public_key.verify(signature, cr + sr + ske[:params_len], ec.ECDSA(hashes.SHA256()))
    device_key = serialization.load_der_public_key(wire[7][1][15:])
    assert isinstance(device_key, ec.EllipticCurvePublicKey)
    cv = wire[9][1][12:]
    device_key.verify(cv[4:], b"".join(c for _, c in wire[2:9]), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        device_key.verify(cv[4:], transcript, ec.ECDSA(hashes.SHA256()))
    client_fin = prf(master, b"client finished", hashlib.sha256(transcript).digest(), 12)
    assert wire[10][1][12:] == client_fin
    server_fin = prf(
        master, b"server finished", hashlib.sha256(transcript + wire[10][1]).digest(), 12
    )
    assert wire[11][1][12:] == server_fin
