"""Session-ID resumption through `dissect`: OpenSSL captures of a full handshake
(``-sess_out``) followed by an abbreviated one (``-sess_in``), four cipher configurations.

The resumed connection decrypts with its own key log line (OpenSSL logs one for it) or,
with only the first connection's line, from the first session's master secret by session
ID; its session record says it was resumed and by what.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dissector.keys import KeyRing
from tests.helpers import dissect, findings, messages, ring_with
from tests.test_dissect_dtls_impairments import (
    DTLS,
    checks,
    direction,
    got,
    keylog_lines,
    keylog_ring,
    sessions,
    udp_datagrams,
    want,
    write_udp,
)

VARIANTS = [
    "openssl_resume_default",
    "openssl_resume_ccm8",
    "openssl_resume_cbc_sha256_etm",
    "openssl_resume_cbc_sha256_mte",
]
# cipher suite, encrypt-then-MAC (extension 22 in the ServerHello)
SUITES = {
    "openssl_resume_default": (0xC02C, False),
    "openssl_resume_ccm8": (0xC0AE, False),
    "openssl_resume_cbc_sha256_etm": (0xC023, True),
    "openssl_resume_cbc_sha256_mte": (0xC023, False),
}
DEVICE_ID = "ad2cc13702ed03012d837cd1"  # from the Hello of the full connection


def _resumed_only(base: Path, tmp_path: Path) -> Path:
    dgrams = udp_datagrams(base)
    port = [d.src_port for d in dgrams if direction(d).value == "device->cloud"][-1]
    resumed = [d for d in dgrams if port in (d.src_port, d.dst_port)]
    return write_udp(tmp_path / "resumed_only.pcap", resumed)


@pytest.mark.parametrize("name", VARIANTS)
def test_key_log_decrypts_both_connections(name: str) -> None:
    base = DTLS / name
    records = dissect_base(base)
    assert got(records) == want(base)
    assert [m["session"] for m in messages(records)] == ["dtls-1"] * 10 + ["dtls-2"] * 6
    assert not findings(records, "decrypt.")
    assert not findings(records, "dtls.decrypt")
    hello = [r for r in records if r["record"] == "handshake" and r["step"] == "ServerHello"]
    assert hello[0]["info"]["session_id"] == hello[1]["info"]["session_id"]
    s1, s2 = sessions(records).values()
    assert s1["key_source"] == s2["key_source"] == "key log"
    for s in (s1, s2):
        assert s["handshake_seen"] and checks(s)["finished"][0] == "passed"
        assert checks(s)["keys"][0] == "passed"
    assert s1["outcome"] == "established" and s1["device_id"] == DEVICE_ID
    assert checks(s1)["device_hello"][0] == "passed"
    stats = s2["stats"]
    assert stats["device->cloud"]["decrypted"] == stats["cloud->device"]["decrypted"] == 3


def dissect_base(base: Path, ring: KeyRing | None = None) -> list[dict[str, Any]]:
    return dissect([f"{base}.pcap"], ring or ring_with(f"{base}.keylog", role="keylog"))


@pytest.mark.parametrize("name", VARIANTS)
def test_resumed_session_record(name: str) -> None:
    base = DTLS / name
    s2 = sessions(dissect_base(base))["dtls-2"]
    assert s2["outcome"] == "resumed"
    c = checks(s2)
    assert c["client_hello"][0] == c["server_hello"][0] == c["cookie"][0] == "passed"
    assert c["device_certificate"] == (
        "not_seen",
        "abbreviated handshake (session ID resumption): no certificates",
    )
    # A resumed Particle session opens with a ping instead of a Hello.
    assert c["device_hello"] == ("passed", "resumed session: ping instead of Hello")
    # The session ID ties it to the first session, which knows the device.
    assert s2["device_id"] == DEVICE_ID
    assert s2["device_id_source"] == "session ID resumption of dtls-1"


@pytest.mark.parametrize("name", VARIANTS)
def test_first_sessions_key_log_line_decrypts_the_resumption(name: str, tmp_path: Path) -> None:
    base = DTLS / name
    first, _ = keylog_lines(base)
    records = dissect_base(base, keylog_ring(tmp_path, [first]))
    assert all(m["coap"] for m in messages(records))
    assert got(records) == want(base)
    assert not findings(records, "decrypt.missing_key")
    s2 = sessions(records)["dtls-2"]
    assert s2["key_source"] == "session ID resumption of dtls-1"
    assert checks(s2)["keys"] == ("passed", "session ID resumption of dtls-1")


def test_resumed_connection_alone_decrypts_with_its_own_line(tmp_path: Path) -> None:
    base = DTLS / "openssl_resume_ccm8"
    records = dissect([_resumed_only(base, tmp_path)], ring_with(f"{base}.keylog"))
    assert got(records) == want(base)[-6:]
    (s,) = sessions(records).values()
    assert s["key_source"] == "key log" and s["handshake_seen"]
    handshake = [r["step"] for r in records if r["record"] == "handshake"]
    assert handshake[:6] == [
        "ClientHello",
        "HelloVerifyRequest",
        "ClientHello",
        "ServerHello",
        "ChangeCipherSpec",
        "Finished",
    ]


def test_resumed_connection_alone_without_its_line_names_both_keys(tmp_path: Path) -> None:
    base = DTLS / "openssl_resume_ccm8"
    first, second = keylog_lines(base)
    records = dissect([_resumed_only(base, tmp_path)], keylog_ring(tmp_path, [first]))
    assert all(m["coap"] is None for m in messages(records))
    assert len(messages(records)) == 6
    (missing,) = findings(records, "decrypt.missing_key")
    assert second.split()[1] in missing["message"]


def test_resumed_connection_alone_missing_key_mentions_the_session_id(tmp_path: Path) -> None:
    base = DTLS / "openssl_resume_ccm8"
    first, _ = keylog_lines(base)
    records = dissect([_resumed_only(base, tmp_path)], keylog_ring(tmp_path, [first]))
    (missing,) = findings(records, "decrypt.missing_key")
    hello = next(r for r in records if r["record"] == "handshake" and r["step"] == "ServerHello")
    assert hello["info"]["session_id"] in missing["message"]
    assert "abbreviated handshake" in missing["message"]


def test_persisted_session_with_its_session_id_decrypts_a_resumption(tmp_path: Path) -> None:
    # A persisted session (text form) carrying the session ID: the abbreviated handshake
    # that resumes it decrypts with no key log at all.
    base = DTLS / "openssl_resume_ccm8"
    first, _ = keylog_lines(base)
    records = dissect_base(base, keylog_ring(tmp_path, [first]))
    hello = [r for r in records if r["record"] == "handshake" and r["step"] in ("ClientHello",)]
    server = [r for r in records if r["record"] == "handshake" and r["step"] == "ServerHello"]
    blob = tmp_path / "session.persist.txt"
    blob.write_text(
        f"client_random {hello[0]['info']['random']}\n"
        f"server_random {server[0]['info']['random']}\n"
        f"master {first.split()[2]}\n"
        f"session_id {server[0]['info']['session_id']}\n"
        "ciphersuite 0xC0AE\n"
    )
    records = dissect([_resumed_only(base, tmp_path)], ring_with(blob, role="session"))
    assert all(m["coap"] for m in messages(records))
    assert got(records) == want(base)[-6:]
    (s,) = sessions(records).values()
    assert s["key_source"].startswith("session ID resumption of persisted session")


@pytest.mark.parametrize("name", VARIANTS)
def test_suites_and_encrypt_then_mac_are_what_the_variant_asked_for(name: str) -> None:
    suite, etm = SUITES[name]
    records = dissect_base(DTLS / name)
    server = [r for r in records if r["record"] == "handshake" and r["step"] == "ServerHello"]
    assert [s["info"]["cipher_suite"] for s in server] == [suite, suite]
    assert [s["info"]["ext"]["encrypt_then_mac"] for s in server] == [etm, etm]
