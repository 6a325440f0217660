"""A capture taken with a small snap length (``tcpdump -s 128``): every packet cut short.

TCP segments keep the bytes they have; the missing ones are exact stream gaps, so a frame
cut short is still a message record (with what was lost) and, its first ciphertext block
being captured, the next frame of that direction decrypts. (Frames wholly inside a hole
cannot be counted: their headers were not captured.)
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.helpers import BREWSKEY, SPARK, comparable, dissect, findings, messages, ring_with


def snap(src: Path, length: int, dst: Path) -> Path:
    """``src`` (classic pcap) as if captured with snap length ``length``."""
    data = src.read_bytes()
    header = bytearray(data[:24])
    struct.pack_into("<I", header, 16, length)
    out = bytearray(header)
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        body = data[pos + 16 : pos + 16 + incl][:length]
        pos += 16 + incl
        out += struct.pack("<IIII", sec, usec, len(body), orig) + body
    dst.write_bytes(out)
    return dst


@pytest.mark.parametrize("base", [SPARK, BREWSKEY], ids=["sparkprotocol", "brewskey"])
@pytest.mark.parametrize("length", [128, 200])
def test_small_snap_length_keeps_every_frame_accounted_for(
    base: Path, length: int, tmp_path: Path
) -> None:
    ring = ring_with(f"{base}.keylog", role="keylog")
    full = messages(dissect([f"{base}.pcap"], ring))
    records = dissect([snap(Path(f"{base}.pcap"), length, tmp_path / "snap.pcap")], ring)
    got = messages(records)

    # What decrypts is exactly what the full capture shows; cut frames say what was lost.
    by_key = {(m["ts"], m["direction"], m["coap"]["mid"]): m for m in full}
    assert len(by_key) == len(full)
    decrypted = [m for m in got if m["coap"] is not None]
    for m in decrypted:
        assert comparable(m) == comparable(by_key[(m["ts"], m["direction"], m["coap"]["mid"])])
    if length < max(m["length"] for m in full) + 66:  # some frames do not fit
        cut = [m for m in got if m["coap"] is None]
        assert any("were not captured" in m["encrypted"]["reason"] for m in cut)
    # The handshake blobs are cut short, yet the frames after them decrypt (the hole
    # ends exactly where the blob does), and so do most others.
    assert [m["kind"] for m in decrypted if m["kind"] == "Hello"] == ["Hello", "Hello"]
    assert len(decrypted) >= 0.8 * len(full)
    (note,) = findings(records, "capture.segments_truncated")
    assert note["details"]["count"] > 0
    assert findings(records, "tcp.gap")


@pytest.mark.parametrize("base", [SPARK, BREWSKEY], ids=["sparkprotocol", "brewskey"])
def test_snap_length_that_cuts_the_nonce_finds_the_key_log_entry_by_trial(
    base: Path, tmp_path: Path
) -> None:
    """``-s 96`` leaves 30 of the nonce's 40 bytes: the key log cannot be looked up by the
    nonce, so the first frames after the handshake find the entry by trial decryption."""
    ring = ring_with(f"{base}.keylog", role="keylog")
    full = messages(dissect([f"{base}.pcap"], ring))
    records = dissect([snap(Path(f"{base}.pcap"), 96, tmp_path / "snap.pcap")], ring)
    assert findings(records, "handshake.nonce.incomplete")
    (match,) = findings(records, "keylog.trial_match")
    assert "nonce was not captured whole" in match["message"]
    by_key = {(m["ts"], m["direction"], m["coap"]["mid"]): m for m in full}
    decrypted = [m for m in messages(records) if m["coap"] is not None]
    assert [m["kind"] for m in decrypted if m["kind"] == "Hello"] == ["Hello", "Hello"]
    for m in decrypted:
        assert comparable(m) == comparable(by_key[(m["ts"], m["direction"], m["coap"]["mid"])])
    assert len(decrypted) >= 0.5 * len(full)
    assert not findings(records, "decrypt.missing_key")
