"""Key logs carried inside the capture: pcapng Decryption Secrets Blocks.

``editcap --inject-secrets tls,KEYLOG`` (Wireshark) puts a TLS key log into the pcapng
file itself, before the packets it opens. ``dissect`` takes it into the key ring as it is
read, as if given with ``--keylog``, and says so in a capture-level finding; secrets of
other kinds are counted and said unused.
"""

from __future__ import annotations

import io
from pathlib import Path

from dissector.capture.reader import CaptureReader, DecryptionSecrets
from dissector.capture.writer import PcapngWriter
from dissector.keys import KeyRing
from dissector.output.records import to_record
from dissector.pipeline import Dissector
from tests.helpers import SPARK, findings, messages

DTLS = Path(__file__).parent / "data" / "dtls" / "deviceos-1.0.1_udp_full"


def _with_secrets(capture: Path, blocks: list[tuple[int, bytes]], out: Path) -> Path:
    """``capture`` rewritten as pcapng with ``blocks`` (type, data) before its packets."""
    buf = io.BytesIO()
    writer = PcapngWriter(buf)
    interfaces: dict[int, int] = {}
    with CaptureReader([str(capture)]) as reader:
        packets = [p for p in reader if hasattr(p, "linktype")]
    for kind, data in blocks:
        writer.write_decryption_secrets(kind, data)
    for pkt in packets:
        if pkt.linktype not in interfaces:
            interfaces[pkt.linktype] = writer.add_interface(pkt.linktype)
        writer.write(pkt.ts, pkt.data, interfaces[pkt.linktype])
    writer.flush()
    out.write_bytes(buf.getvalue())
    return out


def _dissect(path: Path) -> list[dict[str, object]]:
    dissector = Dissector(KeyRing())
    out = []
    with CaptureReader([str(path)]) as reader:
        dissector.use_capture_secrets(reader)
        for event in dissector.run(iter(reader)):
            rec = to_record(event)
            if rec is not None:
                out.append(rec)
    return out


def test_a_tls_key_log_in_the_capture_decrypts_its_dtls_session(tmp_path: Path) -> None:
    keylog = Path(f"{DTLS}.keylog").read_bytes()
    path = _with_secrets(
        Path(f"{DTLS}.pcap"), [(DecryptionSecrets.TLS_KEY_LOG, keylog)], tmp_path / "s.pcapng"
    )
    records = _dissect(path)
    msgs = messages(records)
    assert msgs and all(m["coap"] is not None for m in msgs)
    (note,) = [f for f in findings(records) if f["code"] == "capture.decryption_secrets"]
    assert note["details"] == {"blocks": 1, "entries": keylog.count(b"CLIENT_RANDOM")}
    assert not findings(records, "decrypt.missing_key")


def test_particle_tcp_lines_in_a_secrets_block_decrypt_a_tcp_session(tmp_path: Path) -> None:
    keylog = Path(f"{SPARK}.keylog").read_bytes()
    path = _with_secrets(
        Path(f"{SPARK}.pcap"), [(DecryptionSecrets.TLS_KEY_LOG, keylog)], tmp_path / "t.pcapng"
    )
    msgs = messages(_dissect(path))
    assert msgs and all(m["coap"] is not None for m in msgs)


def test_other_secrets_are_said_unused_and_garbage_is_harmless(tmp_path: Path) -> None:
    wireguard = 0x57474B4C  # 'WGKL'
    path = _with_secrets(
        Path(f"{DTLS}.pcap"),
        [
            (wireguard, b"x" * 40),
            (DecryptionSecrets.TLS_KEY_LOG, b"\xff\x00garbage\nCLIENT_RANDOM zz\n"),
        ],
        tmp_path / "o.pcapng",
    )
    records = _dissect(path)
    (unused,) = findings(records, "capture.decryption_secrets.unused")
    assert unused["details"] == {"blocks": 1, "types": [wireguard]}
    (used,) = [f for f in findings(records) if f["code"] == "capture.decryption_secrets"]
    assert used["details"]["entries"] == 0
    assert findings(records, "decrypt.missing_key")  # nothing opened it: said, not silent
