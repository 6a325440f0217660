"""ParticleSession and show_message: the Scapy ways in, isolation, and the verbose hook."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.config import conf
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.sendrecv import sniff
from scapy.utils import PcapReader, rdpcap

import dissector.scapy
from dissector.capture.reader import CaptureReader
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.pipeline import Dissector
from dissector.protocol.events import HandshakeBlob, MessageEvent
from dissector.scapy import (
    CoAP,
    ParticleFrame,
    ParticleIdentityPlaintext,
    ParticleNonce,
    ParticleSession,
    ParticleSessionCredentials,
    show_message,
)
from tests.helpers import BREWSKEY, DEVICE_ID, SPARK, TCP_KEYS, ring_with

ROOT = Path(__file__).resolve().parent.parent
SPARK_PCAP = f"{SPARK}.pcap"
BREWSKEY_PCAP = f"{BREWSKEY}.pcap"


def summaries(pkts: list[Packet]) -> list[str]:
    return [p.summary() for p in pkts]


def test_the_package_example_runs_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = doctest.testmod(dissector.scapy, raise_on_error=False, report=True)
    assert result.attempted >= 15
    assert result.failed == 0


def test_sniff_decode_and_manual_feeding_give_the_same_packets() -> None:
    ring = ring_with(TCP_KEYS)
    sniffed = sniff(offline=SPARK_PCAP, session=ParticleSession(keyring=ring))
    with PcapReader(SPARK_PCAP) as reader:
        decoded = list(ParticleSession(keyring=ring).decode(reader))
    manual = ParticleSession(keyring=ring)
    fed: list[Packet] = []
    for pkt in rdpcap(SPARK_PCAP):
        fed += manual.feed(pkt)
    fed += manual.finish()
    assert len(sniffed) == len(decoded) == len(fed) == 48
    assert summaries(list(sniffed)) == summaries(decoded) == summaries(fed)
    assert [bytes(p[ParticleFrame]) for p in decoded if p.haslayer(ParticleFrame)] == [
        bytes(p[ParticleFrame]) for p in fed if p.haslayer(ParticleFrame)
    ]
    assert manual.sessions[0].device_id == DEVICE_ID
    assert manual.sessions[0].outcome == "established"


def test_a_session_class_given_to_sniff_decodes_without_keys() -> None:
    pkts = sniff(offline=SPARK_PCAP, session=ParticleSession)
    frames = [p for p in pkts if p.haslayer(ParticleFrame)]
    assert len(frames) == 45
    assert not any(p.haslayer(CoAP) for p in pkts)
    reason = frames[0][ParticleFrame].event.encrypted.reason
    assert "private key" in reason


def test_units_sit_on_the_headers_of_the_packet_that_completed_them() -> None:
    originals = rdpcap(SPARK_PCAP)
    by_time = {float(p.time): p for p in originals}
    pkts = list(ParticleSession(keyring=ring_with(TCP_KEYS)).decode(originals))
    for pkt in pkts:
        layer = pkt.getlayer(ParticleFrame) or pkt.getlayer(ParticleNonce) or pkt[TCP].payload
        event = layer.event
        source = by_time[float(pkt.time)]
        assert float(pkt.time) == event.ts
        assert (pkt[TCP].sport, pkt[TCP].seq) == (source[TCP].sport, source[TCP].seq)
        cloud_sent = pkt[TCP].sport == 5683
        assert cloud_sent == (event.direction is Direction.CLOUD_TO_DEVICE)
    # The rebuilt packet is consistent: lengths and checksums are recomputed.
    rebuilt = Ether(bytes(pkts[3]))
    assert rebuilt[IP].len == len(rebuilt[IP])
    assert bytes(rebuilt[TCP].payload) == bytes(pkts[3][ParticleFrame])


def test_other_traffic_passes_through_and_control_segments_are_consumed() -> None:
    udp = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53) / Raw(b"dns")
    web = Ether() / IP() / TCP(sport=4000, dport=80, flags="PA") / Raw(b"GET /")
    session = ParticleSession()
    assert session.feed(udp) == [udp]
    assert session.feed(web) == [web]
    syn = rdpcap(SPARK_PCAP)[0]
    assert syn[TCP].flags == "S"
    assert session.feed(syn) == []


def test_two_sessions_with_different_keys_never_share_them() -> None:
    """Decoded interleaved in one process: each session sees only its own key ring."""
    spark_log = ring_with(f"{SPARK}.keylog", role="keylog")
    nothing = KeyRing()
    with_keys, without = ParticleSession(keyring=spark_log), ParticleSession(keyring=nothing)
    out_with: list[Packet] = []
    out_without: list[Packet] = []
    for a, b in zip(rdpcap(SPARK_PCAP), rdpcap(SPARK_PCAP), strict=True):
        out_with += with_keys.feed(a)
        out_without += without.feed(b)
    out_with += with_keys.finish()
    out_without += without.finish()
    assert sum(p.haslayer(CoAP) for p in out_with) == 45
    assert sum(p.haslayer(CoAP) for p in out_without) == 0
    assert len(nothing) == 0

    # Each capture with the other one's key log: no frame decrypts.
    brewskey_log = ring_with(f"{BREWSKEY}.keylog", role="keylog")
    crossed = list(ParticleSession(keyring=brewskey_log).decode(rdpcap(SPARK_PCAP)))
    assert not any(p.haslayer(CoAP) for p in crossed)
    own = list(ParticleSession(keyring=brewskey_log).decode(rdpcap(BREWSKEY_PCAP)))
    assert sum(p.haslayer(CoAP) for p in own) == 45


def test_decoding_leaves_scapy_configuration_and_bindings_untouched() -> None:
    before = {k: repr(v) for k, v in vars(conf).items() if not k.startswith("_")}
    tcp_guess = list(TCP.payload_guess)
    udp_guess = list(UDP.payload_guess)
    list(ParticleSession(keyring=ring_with(TCP_KEYS)).decode(rdpcap(SPARK_PCAP)))
    after = {k: repr(v) for k, v in vars(conf).items() if not k.startswith("_")}
    assert after == before
    assert TCP.payload_guess == tcp_guess and UDP.payload_guess == udp_guess
    bound = [cls for _, cls in TCP.payload_guess + UDP.payload_guess]
    assert not any(cls.__module__.startswith("dissector") for cls in bound)


def test_importing_the_package_binds_nothing_and_dissect_never_imports_scapy() -> None:
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from dissector.cli.main import main\n"
        f"r = CliRunner().invoke(main, ['dissect', {SPARK_PCAP!r}, '--keys', {str(TCP_KEYS)!r},"
        " '--format', 'ndjson'])\n"
        "assert r.exit_code == 0, r.output\n"
        "records = [json.loads(line) for line in r.output.splitlines() if line.strip()]\n"
        "assert sum(rec['record'] == 'message' for rec in records) == 45\n"
        "assert not [m for m in sys.modules if m == 'scapy' or m.startswith('scapy.')]\n"
        "from scapy.layers.inet import TCP, UDP\n"
        "guess = (list(TCP.payload_guess), list(UDP.payload_guess))\n"
        "import dissector.scapy\n"
        "assert guess == (list(TCP.payload_guess), list(UDP.payload_guess))\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_the_session_reports_findings_and_hides_its_keys() -> None:
    ring = ring_with(TCP_KEYS)
    session = ParticleSession(keyring=ring)
    list(session.decode(rdpcap(SPARK_PCAP)))
    assert session.findings
    assert all(f.session == "tcp-1" for f in session.findings if f.session)
    creds = bytes.fromhex(Path(f"{SPARK}.keylog").read_text().split()[2])
    assert creds[:16].hex() not in repr(session)
    assert "ParticleSession" in repr(session)


def test_decrypted_handshake_views_are_stacked_on_the_wire_layers() -> None:
    pkts = list(ParticleSession(keyring=ring_with(TCP_KEYS)).decode(rdpcap(SPARK_PCAP)))
    identity = pkts[1][ParticleIdentityPlaintext]
    assert identity.device_id_hex == DEVICE_ID
    assert bytes(identity.nonce) == bytes(pkts[0][ParticleNonce].nonce)
    creds = pkts[2][ParticleSessionCredentials]
    logged = bytes.fromhex(Path(f"{SPARK}.keylog").read_text().split()[2])
    assert bytes(creds.key) + bytes(creds.iv) + bytes(creds.salt) == logged


# -- show_message ---------------------------------------------------------------------------


def pipeline_events(ring: KeyRing) -> list[object]:
    return list(Dissector(ring).run(iter(CaptureReader([SPARK_PCAP]))))


def test_show_message_prints_the_layer_tree_like_packet_show() -> None:
    ring = ring_with(TCP_KEYS)
    events = [e for e in pipeline_events(ring) if isinstance(e, MessageEvent)]
    layers = [
        p[ParticleFrame]
        for p in ParticleSession(keyring=ring).decode(rdpcap(SPARK_PCAP))
        if p.haslayer(ParticleFrame)
    ]
    assert len(events) == len(layers) == 45
    for event, frame in zip(events, layers, strict=True):
        text = show_message(event)
        assert text == frame.show(dump=True)
        assert text.startswith("###[ Particle Frame ]###\n")
        assert "###[ CoAP ]###" in text
    hello = show_message(events[0])
    assert "###[ Particle Hello (B) ]###" in hello
    assert "  code      = 0.02 POST" in hello
    assert "  |  number    = Uri-Path" in hello


def test_show_message_of_undecoded_and_handshake_events() -> None:
    events = pipeline_events(ring_with(TCP_KEYS / "default_key.pem", role="server"))
    messages = [e for e in events if isinstance(e, MessageEvent)]
    # Undecryptable frames are shown as what they are on the wire: encrypted content.
    for e in messages:
        text = show_message(e)
        assert text.startswith("###[ Particle Frame ]###") and "CoAP" not in text
    blobs = {e.step: e for e in events if isinstance(e, HandshakeBlob)}
    assert show_message(blobs["nonce"]).startswith("###[ Particle Nonce ]###")
    assert show_message(blobs["identity"]).startswith("###[ Particle Identity ]###")
    keyed = {
        e.step: e for e in pipeline_events(ring_with(TCP_KEYS)) if isinstance(e, HandshakeBlob)
    }
    text = show_message(keyed["session_key"])
    assert text.startswith("###[ Particle Session Key ]###")
    assert "Credentials" not in text
