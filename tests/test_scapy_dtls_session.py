"""ParticleSession on DTLS: the real core's events on the Scapy layers.

Differential: for every DTLS capture, with its keys and without, every ``message`` and
``handshake`` record of the ``dissect`` pipeline has exactly one Scapy layer carrying the
same event, in the same order, and the layers agree with the record on every field (CoAP,
handshake bodies, extensions, alerts, lengths). Also: reassembled fragments, retransmitted
flights, impaired captures, isolation of two sessions, ``sniff``, ``show_message`` and
``dissect --verbose``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.sendrecv import sniff
from scapy.utils import rdpcap, wrpcap

from dissector.capture.reader import CaptureReader
from dissector.cli.main import main
from dissector.coap.options import option_name, option_value_repr
from dissector.dtls.crypto import SUITES
from dissector.dtls.handshake import HandshakeReassembler, split_handshake_fragments
from dissector.dtls.records import build_record, parse_datagram
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.pipeline import Dissector
from dissector.protocol.events import HandshakeBlob, MessageEvent
from dissector.scapy import (
    CoAP,
    DtlsAlert,
    DtlsCertificate,
    DtlsChangeCipherSpec,
    DtlsCiphertext,
    DtlsHandshake,
    DtlsHandshakeFragment,
    DtlsInnerPlaintext,
    ParticleDtlsDatagram,
    ParticleDtlsRecord,
    ParticleFrame,
    ParticleSession,
    event_layers,
    show_message,
)
from dissector.scapy.dtls_view import body_from_info
from tests.helpers import SPARK, dissect, ring_with
from tests.test_scapy_differential import check_payload_layer
from tests.test_scapy_dtls_layers import CAPTURES, check_alert, check_body, keyring

TYPES = ("CON", "NON", "ACK", "RST")
GEN3 = CAPTURES["dtls-gen3-session"][0]
RESUME = CAPTURES["openssl_resume_ccm8"][0]


def scapy_decode(path: Path | str, ring: KeyRing) -> list[Packet]:
    return list(ParticleSession(keyring=ring).decode(rdpcap(str(path))))


def units(pkts: list[Packet]) -> list[tuple[Packet, Any]]:
    return [unit for pkt in pkts for unit in event_layers(pkt)]


def view_of(layer: DtlsCiphertext) -> Packet:
    view = layer.payload
    return view.payload if isinstance(view, DtlsInnerPlaintext) else view


def check_coap(coap: Packet, want: dict[str, Any]) -> None:
    assert isinstance(coap, CoAP)
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


def check_message(rec: dict[str, Any], layer: Packet, event: MessageEvent) -> None:
    assert isinstance(layer, DtlsCiphertext)
    record = layer.underlayer
    assert isinstance(record, ParticleDtlsRecord)
    assert rec["length"] == len(bytes(record)) == event.wire_length
    assert record.length == len(bytes(layer.ciphertext))
    if rec["coap"] is None:
        assert not layer.haslayer(CoAP)
        assert rec["encrypted"]["length"] == len(bytes(layer.ciphertext))
        assert event.encrypted is not None and rec["encrypted"]["reason"] == event.encrypted.reason
        return
    assert layer.decrypted
    coap = view_of(layer)
    check_coap(coap, rec["coap"])
    assert rec["retransmission"] == event.retransmission
    if not isinstance(coap.payload, Raw) and coap.payload:
        check_payload_layer(coap.payload, rec.get("decoded"))
    if record.effective_type == 25:  # CID: content ‖ real type ‖ zero padding
        inner = layer.payload
        assert isinstance(inner, DtlsInnerPlaintext) and inner.content_type == 23
        assert bytes(inner) == bytes(coap) + b"\x17" + bytes(inner.padding_length)
        assert len(bytes(inner)) % 16 == 0  # mbedTLS pads to 16 (independent of our rule)


def check_handshake(rec: dict[str, Any], layer: Packet, event: HandshakeBlob) -> None:
    step, info = rec["step"], rec["info"]
    assert rec["length"] == len(event.raw)
    if isinstance(layer, DtlsHandshake):
        assert layer.message_name == step
        whole = layer
        if layer.fragmented:
            assert isinstance(layer.payload, DtlsHandshakeFragment)
            whole = layer.payload.reassembled
            assert isinstance(whole, DtlsHandshake) and not whole.fragmented
        if rec["length"]:
            assert bytes(whole).hex() == rec["data"]
        assert ("(retransmission)" in layer.mysummary()) == bool(info.get("retransmission"))
        if "error" not in info:
            check_body(step, whole.payload or Raw(b""), info)
        if "device_public_key_fingerprint" in info:
            assert (
                KeyRing.fingerprint(_device_key(whole.payload))
                == (info["device_public_key_fingerprint"])
            )
    elif isinstance(layer, DtlsChangeCipherSpec):
        assert step == "ChangeCipherSpec"
    elif isinstance(layer, DtlsAlert):
        assert step == "Alert"
        check_alert(layer, info)
    else:
        assert isinstance(layer, DtlsCiphertext)  # an encrypted handshake message or alert
        if step == "EncryptedHandshake" or (step == "Alert" and info["level"] is None):
            assert not layer.decrypted
            return
        view = view_of(layer)
        if step == "Alert":
            check_alert(view, info)
        else:
            body = view.payload if isinstance(view, DtlsHandshake) else view
            check_body(step, body, info)


def _device_key(cert: Packet) -> bytes:
    """The key a Certificate layer carries: the raw public key, or the first X.509
    certificate's SubjectPublicKeyInfo."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if cert.raw_public_key is not None:
        return bytes(cert.raw_public_key)
    der = bytes(cert.certificates[0].certificate)
    key = x509.load_der_x509_certificate(der).public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def assert_agree(records: list[dict[str, Any]], pkts: list[Packet]) -> int:
    """Every pipeline message/handshake record has its layer, in order, agreeing."""
    want = [r for r in records if r["record"] in ("message", "handshake")]
    got = units(pkts)
    assert len(got) == len(want)
    for rec, (layer, event) in zip(want, got, strict=True):
        assert (rec["session"], rec["direction"], rec["ts"]) == (
            event.session,
            event.direction.value,
            event.ts,
        )
        if rec["record"] == "message":
            assert isinstance(event, MessageEvent)
            check_message(rec, layer, event)
        else:
            assert isinstance(event, HandshakeBlob)
            check_handshake(rec, layer, event)
    return len(want)


@pytest.mark.parametrize("with_keys", [True, False], ids=["keys", "no-keys"])
@pytest.mark.parametrize("name", list(CAPTURES))
def test_the_layers_agree_with_the_pipeline_on_every_record(name: str, with_keys: bool) -> None:
    path = CAPTURES[name][0]
    ring = keyring(name) if with_keys else KeyRing()
    records = dissect([path], ring)
    pkts = scapy_decode(path, ring)
    assert assert_agree(records, pkts) > 0
    decrypted = sum(1 for r in records if r["record"] == "message" and r["coap"] is not None)
    assert sum(1 for p in pkts if p.haslayer(CoAP)) == decrypted
    if with_keys:
        assert decrypted > 0
    else:
        assert decrypted == 0
    # every DTLS packet rebuilds to the captured datagram
    originals = [p for p in rdpcap(str(path)) if p.haslayer(UDP)]
    assert len(originals) == len(pkts)
    for pkt, orig in zip(pkts, originals, strict=True):
        assert bytes(pkt[ParticleDtlsDatagram]) == bytes(orig[UDP].payload)
        assert float(pkt.time) == float(orig.time)


def test_fragmented_handshake_messages_get_their_reassembled_view() -> None:
    pkts = scapy_decode(RESUME, keyring("openssl_resume_ccm8"))
    fragments = [
        layer
        for pkt in pkts
        for rec in pkt[ParticleDtlsDatagram].records
        for layer in [rec.payload]
        if isinstance(layer, DtlsHandshake) and layer.fragmented
    ]
    assert len(fragments) == 5
    views = [f.payload.reassembled for f in fragments if f.payload.reassembled is not None]
    assert [v.message_name for v in views] == ["Certificate", "ServerKeyExchange"]
    reasm = HandshakeReassembler()
    whole = {}
    for frag in fragments:
        (fast,) = split_handshake_fragments(bytes(frag))[0]
        done = reasm.add(fast)
        if done is not None:
            whole[done.msg_type] = done.body
    assert bytes(views[0].payload) == whole[11]
    assert bytes(views[1].payload) == whole[12]
    assert isinstance(views[0].payload, DtlsCertificate) and views[0].payload.certificates
    assert "(reassembled)" in fragments[2].payload.mysummary()


def udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes, ts: float) -> Packet:
    head = Ether() / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1])
    pkt = Ether(bytes(head / Raw(payload)))
    pkt.time = ts
    return pkt


def impaired(tmp_path: Path) -> Path:
    """The OpenSSL resumption capture with a retransmitted ClientHello flight (same message,
    new record sequence number), duplicated and reordered datagrams, a truncated one,
    keep-alives and random datagrams."""
    rng = random.Random(7)
    pkts = rdpcap(str(RESUME))
    out: list[Packet] = []
    for i, pkt in enumerate(pkts):
        out.append(pkt)
        data = bytes(pkt[UDP].payload)
        src = (pkt[IP].src, pkt[UDP].sport)
        dst = (pkt[IP].dst, pkt[UDP].dport)
        ts = float(pkt.time)
        if i == 2:  # the device retransmits its ClientHello (with cookie)
            rec = parse_datagram(data).records[0]
            again = build_record(22, 0, rec.seq + 1, rec.fragment)
            out.append(udp(src, dst, again, ts + 0.0001))
        if i in (9, 12):
            out.append(udp(src, dst, data, ts + 0.0002))  # network duplicate
        if i == 14:
            out.append(udp(src, dst, data[: len(data) // 2], ts + 0.0003))  # truncated
            out.append(udp(src, dst, b"\x00", ts + 0.0004))  # keep-alive
            out.append(udp(src, dst, rng.randbytes(40), ts + 0.0005))  # noise
    path = tmp_path / "impaired.pcap"
    wrpcap(str(path), out)
    return path


@pytest.mark.parametrize("with_keys", [True, False], ids=["keys", "no-keys"])
def test_impaired_captures_and_retransmitted_flights_agree(tmp_path: Path, with_keys: bool) -> None:
    path = impaired(tmp_path)
    ring = keyring("openssl_resume_ccm8") if with_keys else KeyRing()
    records = dissect([path], ring)
    pkts = scapy_decode(path, ring)
    assert assert_agree(records, pkts) > 40
    again = [
        layer
        for layer, event in units(pkts)
        if isinstance(event, HandshakeBlob) and event.info.get("retransmission")
    ]
    assert [layer.message_name for layer in again] == ["ClientHello"]
    assert "(retransmission)" in again[0].mysummary()
    keepalive = [p for p in pkts if p[ParticleDtlsDatagram].keepalive]
    assert len(keepalive) == 1 and "keep-alive" in keepalive[0].summary()


def test_two_sessions_with_different_keys_never_share_them() -> None:
    with_keys = ParticleSession(keyring=keyring("dtls-gen3-session"))
    without = ParticleSession(keyring=KeyRing())
    got_with: list[Packet] = []
    got_without: list[Packet] = []
    for a, b in zip(rdpcap(str(GEN3)), rdpcap(str(GEN3)), strict=True):
        got_with += with_keys.feed(a)
        got_without += without.feed(b)
    got_with += with_keys.finish()
    got_without += without.finish()
    assert sum(p.haslayer(CoAP) for p in got_with) == 30
    assert not any(p.haslayer(CoAP) for p in got_without)
    assert with_keys.sessions[0].outcome == "established"
    assert any(f.code == "decrypt.missing_key" for f in without.findings)
    assert not any(f.code == "decrypt.missing_key" for f in with_keys.findings)


def test_sniff_offline_decodes_dtls_like_decode() -> None:
    ring = ring_with(CAPTURES["dtls-electron-resumed"][1][0])
    sniffed = sniff(
        offline=str(CAPTURES["dtls-electron-resumed"][0]), session=ParticleSession(keyring=ring)
    )
    decoded = scapy_decode(CAPTURES["dtls-electron-resumed"][0], ring)
    assert [p.summary() for p in sniffed] == [p.summary() for p in decoded]
    first = sniffed[0]
    assert first[ParticleDtlsDatagram].trailer is not None
    assert first.haslayer(CoAP)  # decrypted from the persisted session alone
    event = first[DtlsCiphertext].event
    assert event.device_id == "3b0034000b47343432313031"  # from the 254 trailer
    assert event.direction is Direction.DEVICE_TO_CLOUD
    rebuilt = Ether(bytes(first))
    assert rebuilt[IP].len == len(rebuilt[IP]) and rebuilt[UDP].len == len(rebuilt[UDP])


def test_tcp_and_dtls_in_one_session_and_other_udp_passes_through() -> None:
    tcp = rdpcap(f"{SPARK}.pcap")
    dtls = rdpcap(str(GEN3))
    dns = udp(("10.0.0.2", 5353), ("10.0.0.1", 53), b"\x12\x34", 1.0)
    mixed = sorted([*tcp, *dtls, dns], key=lambda p: float(p.time))
    ring = ring_with(f"{SPARK}.keylog", role="keylog")
    ring.load(str(CAPTURES["dtls-gen3-session"][1][0]))
    session = ParticleSession(keyring=ring)
    pkts = list(session.decode(mixed))
    assert sum(p.haslayer(ParticleFrame) for p in pkts) == 45
    assert sum(p.haslayer(ParticleDtlsDatagram) for p in pkts) == len(dtls)
    assert any(p is dns for p in pkts)
    assert sorted(s.transport for s in session.sessions) == ["dtls", "tcp"]
    assert "udp_ports=[5684]" in repr(session)


# -- show_message / dissect --verbose --------------------------------------------------------


def pipeline_events(path: Path, ring: KeyRing) -> list[Any]:
    return [
        e
        for e in Dissector(ring).run(iter(CaptureReader([str(path)])))
        if isinstance(e, MessageEvent | HandshakeBlob)
    ]


def test_show_message_draws_dtls_events() -> None:
    events = pipeline_events(GEN3, keyring("dtls-gen3-session"))
    shown = {getattr(e, "step", "message"): show_message(e) for e in events}
    assert "###[ DTLS ClientHello ]###" in shown["ClientHello"]
    assert "cookie_length= 16" in shown["ClientHello"] or "cookie_length" in shown["ClientHello"]
    assert "###[ DTLS Extension Connection ID ]###" in shown["ServerHello"]
    assert "raw_public_key" in shown["Certificate"]
    assert "###[ DTLS ChangeCipherSpec ]###" in shown["ChangeCipherSpec"]
    message = show_message(next(e for e in events if isinstance(e, MessageEvent)))
    assert "###[ DTLS Ciphertext ]###" in message and "###[ CoAP ]###" in message
    assert "###[ Particle Hello (C) ]###" in message
    closing = pipeline_events(RESUME, KeyRing())
    alert = next(e for e in closing if isinstance(e, HandshakeBlob) and e.step == "Alert")
    assert show_message(alert) == ""  # an encrypted alert: nothing decoded to show


def test_show_message_uses_the_message_bytes_when_the_blob_carries_them() -> None:
    events = pipeline_events(GEN3, keyring("dtls-gen3-session"))
    hello = next(e for e in events if isinstance(e, HandshakeBlob) and e.step == "ClientHello")
    wire = bytes(parse_datagram(bytes(rdpcap(str(GEN3))[0][UDP].payload)).records[0].fragment)
    blob = HandshakeBlob(
        hello.session, hello.direction, hello.ts, "ClientHello", wire, hello.info, None, "dtls"
    )
    text = show_message(blob)
    assert text.startswith("###[ DTLS Handshake ]###") and "message_seq= 0" in text
    assert "###[ DTLS ClientHello ]###" in text


@pytest.mark.parametrize("name", ["dtls-gen3-session", "openssl_resume_ccm8"])
def test_bodies_rebuilt_from_the_parsed_fields_match_the_wire(name: str) -> None:
    path = CAPTURES[name][0]
    ring = keyring(name)
    events = pipeline_events(path, ring)
    got = units(scapy_decode(path, ring))
    compared = 0
    for event in events:
        if not isinstance(event, HandshakeBlob) or event.step in ("Alert", "ChangeCipherSpec"):
            continue
        layer = next(
            lay
            for lay, ev in got
            if ev is not event and ev.ts == event.ts and ev.step == event.step
        )
        if not isinstance(layer, DtlsHandshake):
            continue
        whole = layer.payload.reassembled if layer.fragmented else layer
        rebuilt = body_from_info(event.step, event.info)
        assert rebuilt is not None
        wire_body = bytes(whole)[12:]
        info_ext = event.info.get("ext", {})
        if info_ext.get("extensions") == [] and len(wire_body) != len(bytes(rebuilt)):
            wire_body = wire_body[:-2]  # an empty extensions block is not in the parsed fields
        assert bytes(rebuilt) == wire_body
        assert type(rebuilt) is type(whole.payload)
        compared += 1
    assert compared >= 9


def test_dissect_verbose_prints_dtls_trees() -> None:
    keys = CAPTURES["dtls-gen3-session"][1]
    args = ["dissect", str(GEN3), "--verbose"]
    for key in keys:
        args += ["--keys", str(key)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "###[ DTLS ClientHello ]###" in out and "###[ DTLS ServerKeyExchange ]###" in out
    assert out.count("###[ DTLS Ciphertext ]###") == 30
    assert out.count("###[ CoAP ]###") == 30
    assert "###[ DTLS ChangeCipherSpec ]###" in out


def test_suite_padding_rule_matches_the_capture_for_aead() -> None:
    """The inner padding shown for CID records comes from the fragment length (AEAD)."""
    pkts = scapy_decode(GEN3, keyring("dtls-gen3-session"))
    tag = SUITES[0xC0AE].tag_len
    inners = [p[DtlsInnerPlaintext] for p in pkts if p.haslayer(DtlsInnerPlaintext)]
    assert len(inners) == 16
    assert [i.content_type for i in inners].count(22) == 1  # the device's Finished
    for inner in inners:
        if inner.content_type == 22 and not isinstance(inner.payload, DtlsHandshake):
            continue  # the view is the Finished body alone: the event lacks its header
        ct = inner.underlayer
        assert len(bytes(inner)) == len(bytes(ct.ciphertext)) - 8 - tag
