"""DTLS handshake: fragment header, reassembly, retransmissions and message parsers.

The byte strings are datagrams 1–5 of particle_mbedtls_ccm8_full.pcap (Particle's mbedTLS
fork configured like Device OS: RPK, CCM-8, draft CID extension 254).
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.dtls.handshake import (
    HT_CERTIFICATE,
    HT_CLIENT_HELLO,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    HandshakeError,
    HandshakeFragment,
    HandshakeReassembler,
    HelloVerifyRequest,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
    UnknownHandshake,
    parse_certificate,
    parse_handshake_body,
    parse_handshake_fragments,
)
from dissector.dtls.records import parse_datagram

CLIENT_HELLO_1 = bytes.fromhex(
    "16fefd000000000000000000670100005b000000000000005bfefd6b074dd8c47b97f9b08fc90ac2d7943801"
    "12b38e2e03a78c1283de525d98940000000004c0ae00ff0100002d000d000a00080403040103030301000a00"
    "0400020017000b0002010000fe000100001300020102001400020102"
)
HELLO_VERIFY = bytes.fromhex(
    "16fefd0000000000000000002f030000230000000000000023fefd206b074dd8369fcdb443107eff7e321bc5"
    "3086685a93de406fc4117d5726d81d7c"
)
CLIENT_HELLO_2 = bytes.fromhex(
    "16fefd000000000000000100870100007b000100000000007bfefd6b074dd8c47b97f9b08fc90ac2d7943801"
    "12b38e2e03a78c1283de525d98940000206b074dd8369fcdb443107eff7e321bc53086685a93de406fc4117d"
    "5726d81d7c0004c0ae00ff0100002d000d000a00080403040103030301000a000400020017000b0002010000"
    "fe000100001300020102001400020102"
)
SERVER_FLIGHT = bytes.fromhex(
    "16fefd000000000000000100760200006a000100000000006afefd6b074dd83442ab9ced647d581adeca63dc"
    "f634f628554cb2b6f072566baa522d2082c3774436af25d5118df99cb66a896f8f13f4798bcbd37359ccfa36"
    "50af8eecc0ae000022ff0100010000fe000908c1d05e5510000001000b000201000013000102001400010216"
    "fefd0000000000000002009c0c0000900002000000000090030017410438258ee64946ba5ce79d25dacec517"
    "dbfe221346b238d3014db7410c5df77a12bf6c06d068a4caf446e6c78788183d7ea152501b2b570b930dd5ba"
    "ea2f311b1f040300473045022100c33c12c8ab0f23b2ea66b096cafd5c23ebd439f4115614cfcfcabf22163c"
    "1ed80220652b9c7e6efed79b1a981d0eb53330c6dcfeb710b39fb2ad588aa3d5b353de3416fefd0000000000"
    "000003001f0d0000130003000000000013020140000c050105030401040302010203000016fefd0000000000"
    "000004000c0e0000000004000000000000"
)
CLIENT_FLIGHT = bytes.fromhex(
    "16fefd0000000000000002006a0b00005e000200000000005e00005b3059301306072a8648ce3d020106082a"
    "8648ce3d03010703420004fceebaa05101a3f662a5c2497573a2e7a5202459ce3bfa8a7fb6f4bb09e9183593"
    "c7fdce29a775526a27050bce33a000787d3864ecfd2a725be5009b16b7e12d16fefd0000000000000003004e"
    "10000042000300000000004241042358a726a5aec2297a18b1d249001d25ae57b68cb592f5dfb7b81fd0a9ce"
    "0d9b9c753a0f6d9dfdaf855ec63c4ec1b6489c4bbded5d9559b2106499517b286a5d16fefd00000000000000"
    "0400570f00004b000400000000004b040300473045022100b8681f2f97c1076d63fc876200004ced1d55ab0c"
    "4e4510a948e2d694f51f088302206e719b28d5a395963696e152d3e7e2795d4ec0f0c06da7683d92d7853c26"
    "768414fefd000000000000000500010119fefd0001000000000000c1d05e5510000001003000010000000000"
    "006bd833658a50dd1d78c7aedec8638f9efc90161142fe09a0cc24a5548b98046d6fdd7c7c5e3b210c"
)

CLIENT_RANDOM = bytes.fromhex("6b074dd8c47b97f9b08fc90ac2d794380112b38e2e03a78c1283de525d989400")
SERVER_RANDOM = bytes.fromhex("6b074dd83442ab9ced647d581adeca63dcf634f628554cb2b6f072566baa522d")
COOKIE = bytes.fromhex("6b074dd8369fcdb443107eff7e321bc53086685a93de406fc4117d5726d81d7c")
SESSION_ID = bytes.fromhex("82c3774436af25d5118df99cb66a896f8f13f4798bcbd37359ccfa3650af8eec")
CID = bytes.fromhex("c1d05e5510000001")


def messages(datagram: bytes) -> list[tuple[HandshakeFragment, object]]:
    """(fragment, parsed body) for every plaintext handshake record in a datagram."""
    out: list[tuple[HandshakeFragment, object]] = []
    for rec in parse_datagram(datagram).records:
        if rec.content_type == 22 and rec.epoch == 0:
            for frag in parse_handshake_fragments(rec.fragment):
                out.append((frag, parse_handshake_body(frag.msg_type, frag.body)))
    return out


def test_client_hello_without_cookie() -> None:
    ((frag, ch),) = messages(CLIENT_HELLO_1)
    assert (frag.msg_type, frag.message_seq, frag.fragment_offset) == (HT_CLIENT_HELLO, 0, 0)
    assert frag.length == frag.fragment_length == 0x5B
    assert isinstance(ch, ClientHello)
    assert ch.client_version == 0xFEFD and ch.random == CLIENT_RANDOM
    assert ch.session_id == b"" and ch.cookie == b""
    assert ch.cipher_suites == [0xC0AE, 0x00FF] and ch.compression_methods == b"\x00"
    ext = ch.ext
    assert [e.type for e in ext.extensions] == [13, 10, 11, 254, 19, 20]
    assert ext.signature_algorithms == [0x0403, 0x0401, 0x0303, 0x0301]
    assert ext.supported_groups == [23] and ext.ec_point_formats == [0]
    # Device OS offers the draft CID extension with an empty own CID.
    assert ext.connection_id == b"" and ext.connection_id_draft
    assert ext.client_certificate_types == [2] and ext.server_certificate_types == [2]
    assert not ext.encrypt_then_mac and not ext.extended_master_secret


def test_hello_verify_request_and_cookie_echo() -> None:
    ((frag, hvr),) = messages(HELLO_VERIFY)
    assert isinstance(hvr, HelloVerifyRequest) and frag.message_seq == 0
    assert hvr.server_version == 0xFEFD and hvr.cookie == COOKIE
    ((frag2, ch2),) = messages(CLIENT_HELLO_2)
    assert isinstance(ch2, ClientHello) and frag2.message_seq == 1
    assert ch2.cookie == COOKIE and ch2.random == CLIENT_RANDOM


def test_server_flight() -> None:
    parsed = messages(SERVER_FLIGHT)
    assert [f.message_seq for f, _ in parsed] == [1, 2, 3, 4]
    sh, ske, cr, done = (m for _, m in parsed)
    assert isinstance(sh, ServerHello)
    assert sh.random == SERVER_RANDOM and sh.session_id == SESSION_ID
    assert sh.cipher_suite == 0xC0AE and sh.compression_method == 0
    assert sh.ext.connection_id == CID  # the CID the device puts in its records
    assert sh.ext.client_certificate_types == [2] and sh.ext.server_certificate_types == [2]
    assert sh.ext.renegotiation_info == b"" and sh.ext.ec_point_formats == [0]
    assert isinstance(ske, ServerKeyExchange)
    assert (ske.curve_type, ske.named_curve) == (3, 23)
    assert len(ske.public_point) == 65 and ske.public_point[0] == 4
    assert ske.signature_algorithm == 0x0403 and ske.signature[0] == 0x30
    assert ske.params == bytes.fromhex("030017") + b"\x41" + ske.public_point
    assert isinstance(cr, CertificateRequest)
    assert cr.certificate_types == [1, 64] and cr.certificate_authorities == []
    assert 0x0403 in cr.signature_algorithms
    assert isinstance(done, ServerHelloDone)


def test_client_flight_raw_public_key() -> None:
    parsed = messages(CLIENT_FLIGHT)  # the Finished is in an encrypted CID record
    cert, cke, cv = (m for _, m in parsed)
    assert isinstance(cert, Certificate) and cert.certificates == []
    assert cert.raw_public_key is not None and len(cert.raw_public_key) == 91
    assert cert.raw_public_key.startswith(bytes.fromhex("3059301306072a8648ce3d0201"))
    assert isinstance(cke, ClientKeyExchange)
    assert cke.public_point is not None and len(cke.public_point) == 65
    assert isinstance(cv, CertificateVerify) and cv.signature_algorithm == 0x0403


def test_certificate_forms() -> None:
    spki = bytes.fromhex("3059") + bytes(89)
    rpk_body = len(spki).to_bytes(3, "big") + spki
    assert parse_certificate(rpk_body).raw_public_key == spki
    certs = [b"\x30\x03\x02\x01\x01", b"\x30\x01\x00"]
    inner = b"".join(len(c).to_bytes(3, "big") + c for c in certs)
    x509_body = len(inner).to_bytes(3, "big") + inner
    parsed = parse_certificate(x509_body)
    assert parsed.raw_public_key is None and parsed.certificates == certs
    assert parse_certificate(x509_body, raw_public_key=False).certificates == certs
    assert parse_certificate(b"\x00\x00\x00").certificates == []  # no client certificate
    with pytest.raises(HandshakeError):
        parse_certificate(x509_body[:-1])


def test_unknown_message_and_extension_kept() -> None:
    assert parse_handshake_body(99, b"abc") == UnknownHandshake(99, b"abc")
    body = CLIENT_HELLO_1[25:]
    # Append an unknown extension (type 0x1234) to the ClientHello.
    ext_len = int.from_bytes(body[44:46], "big")  # after version, random, ids, suites
    assert ext_len == len(body) - 46 == 0x2D
    new = body[:44] + (ext_len + 6).to_bytes(2, "big") + body[46:] + bytes.fromhex("1234000201ff")
    ch = parse_handshake_body(HT_CLIENT_HELLO, new)
    assert isinstance(ch, ClientHello)
    assert ch.ext.extensions[-1].type == 0x1234 and ch.ext.extensions[-1].data == b"\x01\xff"


def test_malformed_bodies_raise_handshake_error() -> None:
    body = CLIENT_HELLO_1[25:]
    for bad in (body[:-1], body[:40], body + b"\x00"):
        with pytest.raises(HandshakeError):
            parse_handshake_body(HT_CLIENT_HELLO, bad)
    with pytest.raises(HandshakeError):
        parse_handshake_body(14, b"\x00")  # ServerHelloDone must be empty
    with pytest.raises(HandshakeError):
        parse_handshake_fragments(CLIENT_HELLO_1[13:-1])
    with pytest.raises(HandshakeError, match="beyond message length"):
        # fragment_offset + fragment_length > length
        parse_handshake_fragments(bytes.fromhex("0b0000020000000001000002") + b"ab")


def _split(frag: HandshakeFragment, cuts: list[int]) -> list[HandshakeFragment]:
    edges = [0, *cuts, frag.length]
    return [
        HandshakeFragment(frag.msg_type, frag.length, frag.message_seq, a, b - a, frag.body[a:b])
        for a, b in itertools.pairwise(edges)
    ]


def _certificate_fragment() -> HandshakeFragment:
    rec = parse_datagram(CLIENT_FLIGHT).records[0]
    (frag,) = parse_handshake_fragments(rec.fragment)
    assert frag.msg_type == HT_CERTIFICATE
    return frag


def test_reassembly_out_of_order_with_overlap() -> None:
    whole = _certificate_fragment()
    a, b, c = _split(whole, [30, 60])
    overlap = HandshakeFragment(whole.msg_type, whole.length, 2, 20, 20, whole.body[20:40])
    r = HandshakeReassembler()
    assert r.add(c) is None
    assert r.add(overlap) is None
    assert r.add(a) is None
    msg = r.add(b)
    assert msg is not None and msg.body == whole.body and msg.fragmented
    assert not msg.retransmission and msg.message_seq == 2 and msg.name == "Certificate"


def test_retransmitted_flight_is_marked() -> None:
    whole = _certificate_fragment()
    r = HandshakeReassembler()
    first = r.add(whole)
    assert first is not None and not first.retransmission
    again = r.add(whole)
    assert again is not None and again.retransmission
    # Fragmented retransmission of the same message.
    parts = _split(whole, [50])
    assert r.add(parts[0]) is None
    last = r.add(parts[1])
    assert last is not None and last.retransmission
    # Same message_seq with other content (a new handshake on the flow) is not.
    other = HandshakeFragment(whole.msg_type, 3, 2, 0, 3, b"\x00\x00\x00")
    fresh = r.add(other)
    assert fresh is not None and not fresh.retransmission


def test_reassembler_rejects_huge_lengths() -> None:
    with pytest.raises(HandshakeError):
        HandshakeReassembler().add(HandshakeFragment(11, 1 << 23, 0, 0, 1, b"\x00"))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 30), st.binary(max_size=200))
def test_arbitrary_bodies_raise_only_handshake_error(msg_type: int, body: bytes) -> None:
    with contextlib.suppress(HandshakeError):
        parse_handshake_body(msg_type, body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_fragments_raise_only_handshake_error(data: bytes) -> None:
    r = HandshakeReassembler()
    try:
        for frag in parse_handshake_fragments(data):
            r.add(frag)
    except HandshakeError:
        pass
