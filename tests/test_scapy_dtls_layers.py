"""The DTLS Scapy layers: every datagram of every DTLS capture dissects exactly as the fast
parser splits it (records, handshake fragments, message bodies, extensions) and builds back
byte for byte; layers built by hand give bytes the fast parser reads back; property tests
for the record layer against ``parse_datagram``/``build_record``."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.packet import Packet, Raw

import dissector.scapy
from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, UdpDatagram
from dissector.capture.reader import CaptureReader
from dissector.coap import decode as coap_decode
from dissector.dtls.crypto import build_inner_plaintext, split_inner_plaintext
from dissector.dtls.handshake import (
    HANDSHAKE_TYPE_NAMES,
    HandshakeError,
    parse_handshake_body,
    split_handshake_fragments,
)
from dissector.dtls.records import build_record, parse_datagram
from dissector.keys import KeyRing
from dissector.scapy import (
    CoAP,
    DtlsAlert,
    DtlsCertificate,
    DtlsCertificateEntry,
    DtlsCertificateRequest,
    DtlsCertificateVerify,
    DtlsChangeCipherSpec,
    DtlsCiphertext,
    DtlsClientHello,
    DtlsClientKeyExchange,
    DtlsExtCertificateType,
    DtlsExtCertificateTypes,
    DtlsExtConnectionId,
    DtlsExtEcPointFormats,
    DtlsExtEncryptThenMac,
    DtlsExtension,
    DtlsExtExtendedMasterSecret,
    DtlsExtRenegotiationInfo,
    DtlsExtSignatureAlgorithms,
    DtlsExtSupportedGroups,
    DtlsFinished,
    DtlsHandshake,
    DtlsHandshakeFragment,
    DtlsHelloRequest,
    DtlsHelloVerifyRequest,
    DtlsInnerPlaintext,
    DtlsLayerError,
    DtlsServerHello,
    DtlsServerHelloDone,
    DtlsServerKeyExchange,
    ParticleDtlsDatagram,
    ParticleDtlsMoveTrailer,
    ParticleDtlsRecord,
)
from tests.helpers import DATA, ring_with

ROOT = Path(__file__).resolve().parent.parent
DTLS = DATA / "dtls"
CAPTURES_DIR = ROOT / "captures"
CAPTURE_KEYS = CAPTURES_DIR / "keys"

#: Every DTLS capture with the key material that decrypts it.
CAPTURES: dict[str, tuple[Path, list[Path]]] = {
    **{p.stem: (p, [p.with_suffix(".keylog")]) for p in sorted(DTLS.glob("*.pcap"))},
    "dtls-gen3-session": (
        CAPTURES_DIR / "dtls-gen3-session.pcap",
        [CAPTURE_KEYS / "dtls-gen3-session.keylog", CAPTURE_KEYS / "dtls-gen3"],
    ),
    "dtls-gen3-resumed": (
        CAPTURES_DIR / "dtls-gen3-resumed.pcap",
        [CAPTURE_KEYS / "dtls-gen3-session.persist"],
    ),
    "dtls-electron-session": (
        CAPTURES_DIR / "dtls-electron-session.pcap",
        [CAPTURE_KEYS / "dtls-electron-session.keylog", CAPTURE_KEYS / "dtls-electron"],
    ),
    "dtls-electron-resumed": (
        CAPTURES_DIR / "dtls-electron-resumed.pcap",
        [CAPTURE_KEYS / "dtls-electron-session.persist"],
    ),
    "dtls-retransmission": (
        CAPTURES_DIR / "dtls-retransmission.pcap",
        [CAPTURE_KEYS / "dtls-retransmission.keylog"],
    ),
}
DEVICE_ID = "3b0034000b47343432313031"


def keyring(name: str) -> KeyRing:
    """The key ring that decrypts capture ``name``."""
    return ring_with(*CAPTURES[name][1])


@cache
def _datagrams(path: Path) -> tuple[UdpDatagram, ...]:
    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([str(path)]):
        if isinstance(item, RawPacket):
            unit = decoder.decode(item)
            if isinstance(unit, UdpDatagram):
                out.append(unit)
    return tuple(out)


def datagrams(name: str) -> tuple[UdpDatagram, ...]:
    return _datagrams(CAPTURES[name][0])


# -- comparators (the fast parser's dataclasses as JSON-like dicts) -----------------------


def jsonable(obj: Any) -> Any:
    """A fast-parser dataclass as a dict with bytes as hex (the records' ``info`` form)."""
    if isinstance(obj, bytes):
        return obj.hex()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [jsonable(x) for x in obj]
    return obj


def _hex(value: Any) -> str:
    return bytes(value).hex()


def check_extensions(exts: list[Packet], want: dict[str, Any], server: bool) -> None:
    """Every extension: type and data as the fast parser split them, and each named
    decoding equal to the fast parser's decoded value."""
    assert [(int(e.type), bytes(e)[4:].hex()) for e in exts] == [
        (e["type"], e["data"]) for e in want["extensions"]
    ]
    for ext in exts:
        if ext.length is not None:  # None on a layer built by hand
            assert int(ext.length) == len(bytes(ext)) - 4
        if isinstance(ext, DtlsExtConnectionId):
            assert _hex(ext.cid) == want["connection_id"]
            assert want["connection_id_draft"] == (ext.type == 254)
        elif isinstance(ext, DtlsExtCertificateTypes | DtlsExtCertificateType):
            assert isinstance(ext, DtlsExtCertificateType) == server
            got = (
                [ext.certificate_type]
                if isinstance(ext, DtlsExtCertificateType)
                else list(ext.certificate_types)
            )
            key = "client" if ext.type == 19 else "server"
            assert got == want[f"{key}_certificate_types"]
        elif isinstance(ext, DtlsExtSupportedGroups):
            assert list(ext.named_groups) == want["supported_groups"]
        elif isinstance(ext, DtlsExtEcPointFormats):
            assert list(ext.ec_point_formats) == want["ec_point_formats"]
        elif isinstance(ext, DtlsExtSignatureAlgorithms):
            assert list(ext.signature_algorithms) == want["signature_algorithms"]
        elif isinstance(ext, DtlsExtRenegotiationInfo):
            assert _hex(ext.renegotiated_connection) == want["renegotiation_info"]
        elif isinstance(ext, DtlsExtEncryptThenMac):
            assert want["encrypt_then_mac"]
        elif isinstance(ext, DtlsExtExtendedMasterSecret):
            assert want["extended_master_secret"]
        else:
            assert type(ext) is DtlsExtension


def check_body(step: str, body: Packet, info: dict[str, Any]) -> None:
    """A handshake body layer agrees field by field with the fast parser's result."""
    if step == "ClientHello":
        assert isinstance(body, DtlsClientHello)
        assert body.client_version == info["client_version"]
        assert _hex(body.random) == info["random"]
        assert _hex(body.session_id) == info["session_id"]
        assert _hex(body.cookie) == info["cookie"]
        assert list(body.cipher_suites) == info["cipher_suites"]
        assert bytes(body.compression_methods).hex() == info["compression_methods"]
        check_extensions(body.extensions, info["ext"], server=False)
    elif step == "HelloVerifyRequest":
        assert isinstance(body, DtlsHelloVerifyRequest)
        assert body.server_version == info["server_version"]
        assert _hex(body.cookie) == info["cookie"]
    elif step == "ServerHello":
        assert isinstance(body, DtlsServerHello)
        assert body.server_version == info["server_version"]
        assert _hex(body.random) == info["random"]
        assert _hex(body.session_id) == info["session_id"]
        assert body.cipher_suite == info["cipher_suite"]
        assert body.compression_method == info["compression_method"]
        check_extensions(body.extensions, info["ext"], server=True)
    elif step == "Certificate":
        assert isinstance(body, DtlsCertificate)
        if info["raw_public_key"] is not None:
            assert body.certificate_type == 2
            assert _hex(body.raw_public_key) == info["raw_public_key"]
        else:
            assert body.certificate_type == 0
            assert [_hex(c.certificate) for c in body.certificates] == info["certificates"]
    elif step == "ServerKeyExchange":
        assert isinstance(body, DtlsServerKeyExchange)
        assert body.curve_type == info["curve_type"]
        assert body.named_curve == info["named_curve"]
        assert _hex(body.public_point) == info["public_point"]
        assert body.signature_algorithm == info["signature_algorithm"]
        assert _hex(body.signature) == info["signature"]
        assert body.params.hex() == info["params"]
    elif step == "CertificateRequest":
        assert isinstance(body, DtlsCertificateRequest)
        assert list(body.certificate_types) == info["certificate_types"]
        assert list(body.signature_algorithms) == info["signature_algorithms"]
        assert [_hex(n.distinguished_name) for n in body.certificate_authorities] == (
            info["certificate_authorities"]
        )
    elif step == "ServerHelloDone":
        assert isinstance(body, DtlsServerHelloDone)
    elif step == "ClientKeyExchange":
        assert isinstance(body, DtlsClientKeyExchange)
        assert _hex(body.public_point) == info["public_point"]
        assert bytes(body).hex() == info["raw"]
    elif step == "CertificateVerify":
        assert isinstance(body, DtlsCertificateVerify)
        assert body.signature_algorithm == info["signature_algorithm"]
        assert _hex(body.signature) == info["signature"]
    elif step == "Finished":
        assert isinstance(body, DtlsFinished)
        assert _hex(body.verify_data) == info["verify_data"]
    else:
        raise AssertionError(f"unexpected handshake step {step}")


def check_alert(layer: Packet, info: dict[str, Any]) -> None:
    assert isinstance(layer, DtlsAlert)
    assert layer.level == info["level"]
    assert layer.get_field("description").i2repr(layer, layer.description) == info["description"]


def reset_lengths(pkt: Packet) -> Packet:
    """A copy with every length field set to None (derived again on build)."""
    out = pkt.copy()
    layer: Packet = out
    while layer:
        for fld in layer.fields_desc:
            name = fld.name
            is_length = name == "length" or name.endswith("_length")
            fixed = isinstance(layer, DtlsHandshake) and layer.fragmented
            if is_length and name not in ("padding_length", "id_length") and not fixed:
                layer.setfieldval(name, None)
            value = layer.getfieldval(name)
            if isinstance(value, list):
                layer.setfieldval(
                    name, [reset_lengths(v) if isinstance(v, Packet) else v for v in value]
                )
        layer = layer.payload
    return out


def handshake_chain(layer: Packet) -> list[DtlsHandshake]:
    out = []
    while layer:
        if isinstance(layer, DtlsHandshake):
            out.append(layer)
        layer = layer.payload
    return out


def body_of(hs: DtlsHandshake) -> Packet:
    return hs.payload if hs.payload else Raw(b"")


# -- every datagram of every capture -------------------------------------------------------


@pytest.mark.parametrize("name", list(CAPTURES))
def test_every_datagram_dissects_like_the_fast_parser_and_builds_back(name: str) -> None:
    counts = {"records": 0, "messages": 0}
    for dgram in datagrams(name):
        data = dgram.payload
        layer = ParticleDtlsDatagram(data)
        assert bytes(layer) == data
        assert bytes(reset_lengths(layer)) == data
        fast = parse_datagram(data)
        assert len(layer.records) == len(fast.records)
        assert bool(layer.undecoded) + layer.trailer_missing == len(fast.errors)
        trailer = layer.trailer
        assert (bytes(trailer) if trailer is not None else None) == fast.trailer
        for rec, want in zip(layer.records, fast.records, strict=True):
            counts["records"] += 1
            assert rec.content_type == want.wire_type
            assert rec.effective_type == want.content_type
            assert rec.moved == want.moved
            assert (rec.version, rec.epoch, rec.sequence_number) == (
                want.version,
                want.epoch,
                want.seq,
            )
            assert (bytes(rec.cid) if want.cid is not None else None) == want.cid
            assert rec.length == len(want.fragment)
            assert rec.fragment_bytes == want.fragment
            assert bytes(rec)[: len(want.header)] == want.header
            counts["messages"] += check_record_content(rec, want.fragment)
    assert counts["records"] > 0
    if not name.endswith("resumed"):
        assert counts["messages"] >= 10  # the whole handshake was compared


def check_record_content(rec: ParticleDtlsRecord, fragment: bytes) -> int:
    """The record's payload layers agree with the fast parser; returns the handshake
    messages compared."""
    if rec.epoch != 0:
        assert isinstance(rec.payload, DtlsCiphertext)
        assert bytes(rec.payload.ciphertext) == fragment
        return 0
    if rec.content_type == 20:
        assert isinstance(rec.payload, DtlsChangeCipherSpec)
        assert rec.payload.type == 1
        return 0
    if rec.content_type == 21:
        assert isinstance(rec.payload, DtlsAlert)
        assert (rec.payload.level, rec.payload.description) == tuple(fragment)
        return 0
    assert rec.content_type == 22
    frags, error = split_handshake_fragments(fragment)
    assert error is None
    chain = handshake_chain(rec.payload)
    assert len(chain) == len(frags)
    compared = 0
    for hs, frag in zip(chain, frags, strict=True):
        assert (
            hs.msg_type,
            hs.length,
            hs.message_seq,
            hs.fragment_offset,
            hs.fragment_length,
        ) == (
            frag.msg_type,
            frag.length,
            frag.message_seq,
            frag.fragment_offset,
            frag.fragment_length,
        )
        assert hs.message_name == HANDSHAKE_TYPE_NAMES[frag.msg_type]
        body = body_of(hs)
        if hs.fragmented:
            assert isinstance(body, DtlsHandshakeFragment)
            assert bytes(body.data) == frag.body
            continue
        body_bytes = bytes(body) if not isinstance(body.payload, DtlsHandshake) else b""
        if not isinstance(body.payload, DtlsHandshake):
            assert body_bytes == frag.body
        parsed = parse_handshake_body(frag.msg_type, frag.body)
        check_body(hs.message_name, body, jsonable(parsed))
        compared += 1
    return compared


# -- a Particle handshake built by hand ------------------------------------------------------

RANDOM = bytes(range(32))
SERVER_RANDOM = bytes(range(32, 64))
COOKIE = bytes.fromhex("6f1a2b3c4d5e6f708192a3b4c5d6e7f8")
CID = bytes.fromhex("4a4cb26e9d174efe")
POINT = b"\x04" + bytes(range(64))
SPKI = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + POINT
SIGNATURE = bytes.fromhex("3045022100") + bytes(32) + bytes.fromhex("0220") + bytes(32)


def particle_flight() -> list[tuple[str, Packet]]:
    """Every handshake message of a Device OS 4.x handshake, built from fields only."""
    ch_ext = [
        DtlsExtCertificateTypes(type=19, certificate_types=["RawPublicKey"]),
        DtlsExtCertificateTypes(type=20, certificate_types=[2]),
        DtlsExtConnectionId(cid=b""),
        DtlsExtSupportedGroups(named_groups=["secp256r1"]),
        DtlsExtEcPointFormats(ec_point_formats=[0]),
        DtlsExtSignatureAlgorithms(signature_algorithms=["ecdsa_secp256r1_sha256"]),
        DtlsExtension(type=0x1234, data=b"\x01\x02"),
    ]
    sh_ext = [
        DtlsExtRenegotiationInfo(),
        DtlsExtConnectionId(cid=CID),
        DtlsExtCertificateType(type=19, certificate_type=2),
        DtlsExtCertificateType(type=20, certificate_type="RawPublicKey"),
        DtlsExtEncryptThenMac(),
        DtlsExtExtendedMasterSecret(),
    ]
    return [
        (
            "ClientHello",
            DtlsClientHello(
                random=RANDOM,
                cookie=COOKIE,
                cipher_suites=[0xC0AE],
                compression_methods=[0],
                extensions=ch_ext,
            ),
        ),
        ("HelloVerifyRequest", DtlsHelloVerifyRequest(cookie=COOKIE)),
        (
            "ServerHello",
            DtlsServerHello(
                random=SERVER_RANDOM, session_id=bytes(32), cipher_suite=0xC0AE, extensions=sh_ext
            ),
        ),
        (
            "ServerKeyExchange",
            DtlsServerKeyExchange(public_point=POINT, signature=SIGNATURE),
        ),
        (
            "CertificateRequest",
            DtlsCertificateRequest(certificate_types=["ecdsa_sign"], signature_algorithms=[0x0403]),
        ),
        ("ServerHelloDone", DtlsServerHelloDone()),
        ("Certificate", DtlsCertificate(raw_public_key=SPKI)),
        ("ClientKeyExchange", DtlsClientKeyExchange(public_point=POINT)),
        ("CertificateVerify", DtlsCertificateVerify(signature=SIGNATURE)),
        ("Finished", DtlsFinished(verify_data=bytes(range(12)))),
    ]


@pytest.mark.parametrize("step", [s for s, _ in particle_flight()])
def test_handshake_messages_built_from_fields_read_back_by_the_fast_parser(step: str) -> None:
    body = dict(particle_flight())[step]
    msg = DtlsHandshake(msg_type=step, message_seq=3) / body
    wire = bytes(msg)
    frags = split_handshake_fragments(wire)[0]
    assert len(frags) == 1 and frags[0].message_seq == 3
    assert frags[0].length == frags[0].fragment_length == len(wire) - 12
    parsed = parse_handshake_body(frags[0].msg_type, frags[0].body)
    check_body(step, body, jsonable(parsed))
    back = DtlsHandshake(wire)
    assert bytes(back) == wire
    assert type(back.payload) is type(body)
    check_body(step, back.payload, jsonable(parsed))
    assert step in back.summary()


def test_the_certificate_is_the_raw_public_key_or_an_x509_chain() -> None:
    rpk = DtlsCertificate(raw_public_key=SPKI)
    assert bytes(rpk) == len(SPKI).to_bytes(3, "big") + SPKI
    assert DtlsCertificate(bytes(rpk)).certificate_type == 2
    chain = DtlsCertificate(certificates=[DtlsCertificateEntry(certificate=b"\x01" * 5)] * 2)
    wire = bytes(chain)
    assert wire == bytes.fromhex("00001000000501010101010000050101010101")
    back = DtlsCertificate(wire)
    assert back.certificate_type == 0
    assert [bytes(c.certificate) for c in back.certificates] == [b"\x01" * 5] * 2
    assert "raw public key" in rpk.mysummary() and "2 X.509" in back.mysummary()


def test_several_handshake_messages_in_one_record_follow_each_other() -> None:
    flight = dict(particle_flight())
    content = bytes(
        DtlsHandshake(message_seq=1)
        / flight["ServerHello"]
        / DtlsHandshake(msg_type="ServerHelloDone", message_seq=2)
        / DtlsServerHelloDone()
    )
    frags, error = split_handshake_fragments(content)
    assert error is None and [f.msg_type for f in frags] == [2, 14]
    record = ParticleDtlsRecord(content_type="handshake", sequence_number=7) / Raw(content)
    wire = bytes(record)
    assert wire == build_record(22, 0, 7, content)
    back = ParticleDtlsRecord(wire)
    chain = handshake_chain(back.payload)
    assert [h.message_name for h in chain] == ["ServerHello", "ServerHelloDone"]
    assert isinstance(chain[1].payload, DtlsServerHelloDone)
    assert bytes(back) == wire
    assert "ServerHello seq=1, ServerHelloDone seq=2" in ParticleDtlsDatagram(wire).summary()


def test_a_fragment_derives_its_lengths_and_keeps_the_message_length() -> None:
    frag = DtlsHandshake(msg_type="Certificate", length=300, message_seq=2, fragment_offset=100)
    frag /= DtlsHandshakeFragment(data=b"\xaa" * 80)
    wire = bytes(frag)
    (parsed,) = split_handshake_fragments(wire)[0]
    assert (parsed.length, parsed.fragment_offset, parsed.fragment_length) == (300, 100, 80)
    back = DtlsHandshake(wire)
    assert back.fragmented and isinstance(back.payload, DtlsHandshakeFragment)
    assert back.payload.reassembled is None
    assert "fragment 100-180/300" in back.mysummary()


def test_alert_change_cipher_spec_and_unprotected_records() -> None:
    alert = ParticleDtlsRecord(content_type="alert") / DtlsAlert(level="fatal", description=40)
    assert bytes(alert) == build_record(21, 0, 0, b"\x02\x28")
    assert ParticleDtlsRecord(bytes(alert)).payload.mysummary() == (
        "DTLS Alert fatal handshake_failure"
    )
    ccs = ParticleDtlsRecord(content_type=20, sequence_number=5) / DtlsChangeCipherSpec()
    assert bytes(ccs) == build_record(20, 0, 5, b"\x01")
    # epoch > 0: whatever the type, the content is protected
    enc = ParticleDtlsRecord(build_record(21, 1, 0, b"\x01\x02\x03"))
    assert isinstance(enc.payload, DtlsCiphertext) and not enc.payload.decrypted
    # a malformed clear handshake stays raw (and still builds back)
    bad = build_record(22, 0, 0, b"\x01\x00\x00\x05")
    assert isinstance(ParticleDtlsRecord(bad).payload, Raw)
    assert bytes(ParticleDtlsRecord(bad)) == bad


def test_cid_records_and_the_move_session_markers() -> None:
    coap = b"\x40\x01\x00\x01"
    cid25 = build_record(25, 1, 3, coap, cid=CID)
    moved253 = build_record(253, 1, 4, coap, cid=CID)
    moved254 = build_record(254, 1, 5, coap) + bytes.fromhex(DEVICE_ID) + b"\x0c"
    for wire, ctype, eff in ((cid25, 25, 25), (moved253, 253, 25)):
        dg = ParticleDtlsDatagram(wire)
        (rec,) = dg.records
        assert (rec.content_type, rec.effective_type, bytes(rec.cid)) == (ctype, eff, CID)
        assert rec.moved == (ctype == 253)
        assert bytes(dg) == wire
        built = ParticleDtlsRecord(content_type=ctype, epoch=1, sequence_number=3, cid=CID)
        assert bytes(built / DtlsCiphertext(ciphertext=coap))[11:19] == CID
    dg = ParticleDtlsDatagram(moved254)
    assert dg.trailer is not None and bytes(dg.trailer.device_id).hex() == DEVICE_ID
    assert dg.trailer.id_length == 12 and dg.records[0].effective_type == 23
    assert "moved device 3b0034000b47343432313031" in dg.summary()
    built = ParticleDtlsDatagram(
        records=[ParticleDtlsRecord(content_type=254, epoch=1, sequence_number=5) / Raw(coap)]
    ) / ParticleDtlsMoveTrailer(device_id=DEVICE_ID)
    assert bytes(built) == moved254
    assert parse_datagram(bytes(built)).device_id == bytes.fromhex(DEVICE_ID)


def test_the_cid_length_comes_from_context() -> None:
    wire = build_record(25, 1, 3, b"abcd", cid=b"\x01\x02\x03\x04")
    assert ParticleDtlsDatagram(wire, cid_len=4).records[0].cid == b"\x01\x02\x03\x04"
    assert ParticleDtlsRecord(wire, cid_len=4).fragment_bytes == b"abcd"
    default = ParticleDtlsDatagram(wire)  # read with Device OS's 8: it does not fit
    assert not default.records and default.undecoded == wire
    assert not parse_datagram(wire).records
    assert ParticleDtlsDatagram(wire, cid_len=4).copy().cid_len == 4


def test_the_inner_plaintext_of_a_cid_record() -> None:
    coap = b"\x40\x01\x00\x01\xb1t"
    inner = build_inner_plaintext(23, coap)
    layer = DtlsInnerPlaintext(inner)
    assert (layer.content_type, layer.padding_length) == (23, len(inner) - len(coap) - 1)
    assert isinstance(layer.payload, CoAP) and layer.payload.uri == "/t"
    assert bytes(layer) == inner
    assert split_inner_plaintext(inner) == (23, coap)
    built = (
        DtlsInnerPlaintext(content_type="handshake", padding_length=3)
        / DtlsHandshake(msg_type="Finished")
        / DtlsFinished(verify_data=bytes(12))
    )
    assert bytes(built).endswith(b"\x16\x00\x00\x00")
    assert isinstance(DtlsInnerPlaintext(bytes(built)).payload.payload, DtlsFinished)
    with pytest.raises(DtlsLayerError):
        DtlsInnerPlaintext(b"\x00" * 16)


def test_keepalives_and_garbage_never_raise() -> None:
    assert ParticleDtlsDatagram(b"\x00").keepalive
    assert "keep-alive" in ParticleDtlsDatagram(b"\x00").summary()
    junk = bytes.fromhex("16fefd0000000000000000ffff01")  # a record longer than the datagram
    dg = ParticleDtlsDatagram(junk)
    assert not dg.records and dg.undecoded == junk and bytes(dg) == junk
    assert parse_datagram(junk).errors


def test_dissecting_a_layer_directly_from_bad_bytes_raises_the_layer_error() -> None:
    with pytest.raises(DtlsLayerError):
        ParticleDtlsRecord(b"\x17\xfe\xfd")
    with pytest.raises(DtlsLayerError):
        DtlsHandshake(b"\x01\x00\x00")
    with pytest.raises(DtlsLayerError):
        DtlsClientHello(b"\xfe\xfd\x00")
    with pytest.raises(DtlsLayerError):
        DtlsServerHelloDone(b"\x00")
    with pytest.raises(DtlsLayerError):
        DtlsCertificate(b"\x00\x00\x05\x30")
    with pytest.raises(HandshakeError):  # the fast parser refuses the same bytes
        parse_handshake_body(1, b"\xfe\xfd\x00")


def test_named_extension_classes_only_when_the_data_decodes_exactly() -> None:
    good = DtlsExtension(bytes.fromhex("00fe000100"))
    assert isinstance(good, DtlsExtConnectionId) and good.cid == b""
    odd = DtlsExtension(bytes.fromhex("000a0003000217"))  # groups list of odd length
    assert type(odd) is DtlsExtension and odd.data == bytes.fromhex("000217")
    trailing = DtlsExtension(bytes.fromhex("00fe00020000"))  # a CID vector and a stray byte
    assert type(trailing) is DtlsExtension
    assert bytes(trailing) == bytes.fromhex("00fe00020000")
    hello = DtlsServerHello(extensions=[DtlsExtension(type=19, data=b"\x02")])
    back = DtlsServerHello(bytes(hello))
    assert isinstance(back.extensions[0], DtlsExtCertificateType)  # single value from a server
    client = DtlsClientHello(extensions=[DtlsExtension(type=19, data=b"\x01\x02")])
    assert isinstance(DtlsClientHello(bytes(client)).extensions[0], DtlsExtCertificateTypes)
    assert DtlsHelloRequest().mysummary() == "DTLS HelloRequest"


def test_hellos_without_and_with_an_empty_extensions_block_round_trip() -> None:
    bare = DtlsClientHello(cipher_suites=[0xC0AE], compression_methods=[0])
    assert bytes(bare).endswith(b"\x01\x00")  # no extensions block at all
    assert parse_handshake_body(1, bytes(bare)).ext.extensions == []
    empty = DtlsClientHello(bytes(bare) + b"\x00\x00")
    assert empty.extensions_length == 0 and bytes(empty) == bytes(bare) + b"\x00\x00"
    assert DtlsClientHello(bytes(bare)).extensions_length is None


def test_layers_show_with_spec_field_names() -> None:
    flight = dict(particle_flight())
    text = (DtlsHandshake() / flight["ClientHello"]).show2(dump=True)
    for name in (
        "msg_type  = ClientHello",
        "message_seq",
        "fragment_offset",
        "fragment_length",
        "client_version= DTLS 1.2",
        "cipher_suites= [TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8]",
        "type      = connection_id (draft)",
        "certificate_types= [RawPublicKey]",
        "named_groups= [secp256r1]",
    ):
        assert name in text, name
    record = ParticleDtlsRecord(content_type=25, epoch=1, sequence_number=9, cid=CID)
    shown = (record / DtlsCiphertext(ciphertext=b"x" * 24)).show2(dump=True)
    assert "content_type= tls12_cid" in shown and "sequence_number= 9" in shown
    assert "cid       = 4a4cb26e9d174efe" in shown
    assert record.mysummary() == "DTLS tls12_cid 1/9 cid=4a4cb26e9d174efe"


ALL_LAYERS = [
    obj
    for name in dir(dissector.scapy)
    if name.startswith(("Dtls", "ParticleDtls"))
    for obj in [getattr(dissector.scapy, name)]
    if isinstance(obj, type) and issubclass(obj, Packet)
]


@pytest.mark.parametrize("cls", ALL_LAYERS, ids=lambda c: c.__name__)
def test_every_layer_builds_with_defaults_dissects_back_and_has_a_summary(cls: type) -> None:
    built = cls()
    wire = bytes(built)
    back = cls(wire) if wire else cls()
    assert bytes(back) == wire
    assert back.mysummary()
    assert built.summary()


# -- properties --------------------------------------------------------------------------------

content_types = st.sampled_from([20, 21, 22, 23, 25, 253, 254])


@settings(max_examples=300, deadline=None)
@given(
    ctype=content_types,
    version=st.sampled_from([0xFEFD, 0xFEFF]),
    epoch=st.integers(0, 0xFFFF),
    seq=st.integers(0, (1 << 48) - 1),
    cid=st.binary(min_size=8, max_size=8),
    fragment=st.binary(max_size=80),
)
def test_records_built_from_fields_match_build_record_and_dissect_back(
    ctype: int, version: int, epoch: int, seq: int, cid: bytes, fragment: bytes
) -> None:
    with_cid = ctype in (25, 253)
    layer = ParticleDtlsRecord(
        content_type=ctype,
        version=version,
        epoch=epoch,
        sequence_number=seq,
        cid=cid if with_cid else b"",
    ) / Raw(fragment)
    wire = bytes(layer)
    assert wire == build_record(
        ctype, epoch, seq, fragment, version=version, cid=cid if with_cid else None
    )
    back = ParticleDtlsRecord(wire)
    assert (back.content_type, back.version, back.epoch, back.sequence_number) == (
        ctype,
        version,
        epoch,
        seq,
    )
    assert back.fragment_bytes == fragment and bytes(back) == wire
    (fast,) = parse_datagram(wire).records
    assert (fast.epoch, fast.seq, fast.fragment, fast.cid) == (
        epoch,
        seq,
        fragment,
        cid if with_cid else None,
    )


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(content_types, st.integers(0, 2), st.binary(max_size=40)), max_size=4).map(
        lambda recs: b"".join(
            build_record(t, e, i, f, cid=CID if t in (25, 253) else None)
            for i, (t, e, f) in enumerate(recs)
        )
    )
    | st.binary(max_size=120)
)
def test_any_datagram_dissects_without_error_like_the_fast_parser(data: bytes) -> None:
    layer = ParticleDtlsDatagram(data)
    assert bytes(layer) == data
    fast = parse_datagram(data)
    assert [bytes(r) for r in layer.records] == [r.header + r.fragment for r in fast.records]
    assert bool(layer.undecoded) + layer.trailer_missing == len(fast.errors) or fast.keepalive
    layer.summary()
    for rec in layer.records:
        assert rec.summary()


def test_coap_in_a_record_body_is_the_codecs_message() -> None:
    coap = b"\x40\x01\x12\x34\xb1t"
    inner = (
        ParticleDtlsRecord(content_type=25, epoch=1, cid=CID)
        / DtlsCiphertext(ciphertext=bytes(40))
        / DtlsInnerPlaintext(padding_length=9)
        / CoAP(coap)
    )
    assert bytes(inner) == build_record(25, 1, 0, bytes(40), cid=CID)  # the view is not written
    assert inner[CoAP].message_id == coap_decode(coap).mid == 0x1234
    assert len(bytes(inner[DtlsInnerPlaintext])) == 16
