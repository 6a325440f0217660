"""Derived copies of the real captures decode exactly like the originals.

Re-segmented into 1–48-byte pieces with swaps and duplicates, re-encapsulated as IPv6,
SLL2 and pcapng, and cut mid-session at a frame boundary (decrypted with the key log
alone, by trial decryption).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.derive import (
    LINKTYPE_LINUX_SLL2,
    cut_at_frame_boundary,
    load_segments,
    resegment,
    to_ipv6,
    write,
    write_pcap,
    write_pcapng,
)
from tests.helpers import (
    BREWSKEY,
    DEVICE_ID,
    SPARK,
    TCP_KEYS,
    comparable,
    dissect,
    expected_messages,
    findings,
    messages,
    ring_with,
)

CAPTURES = [SPARK, BREWSKEY]
IDS = ["sparkprotocol", "brewskey"]


def _device_ring():  # type: ignore[no-untyped-def]
    return ring_with(TCP_KEYS / f"{DEVICE_ID}.der", role="device")


def _expected(base: Path) -> list[dict]:
    return [comparable(m) for m in expected_messages(base)]


@pytest.mark.parametrize("base", CAPTURES, ids=IDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_resegmented_with_swaps_and_duplicates(base: Path, seed: int, tmp_path: Path) -> None:
    segments = resegment(load_segments(f"{base}.pcap"), random.Random(seed))
    path = write(tmp_path / "reseg.pcap", write_pcap(segments))
    records = dissect([path], _device_ring())
    assert [comparable(m) for m in messages(records)] == _expected(base)
    assert not findings(records, "tcp.gap")


@pytest.mark.parametrize("base", CAPTURES, ids=IDS)
@pytest.mark.parametrize("variant", ["ipv6", "sll2", "pcapng"])
def test_reencapsulated_copies(base: Path, variant: str, tmp_path: Path) -> None:
    segments = load_segments(f"{base}.pcap")
    if variant == "ipv6":
        data = write_pcap(to_ipv6(segments))
    elif variant == "sll2":
        data = write_pcap(segments, LINKTYPE_LINUX_SLL2)
    else:
        data = write_pcapng(segments)
    path = write(tmp_path / f"copy.{variant}", data)
    records = dissect([path], _device_ring())
    assert [comparable(m) for m in messages(records)] == _expected(base)
    if variant == "ipv6":
        session = next(r for r in records if r["record"] == "session")
        assert session["cloud"]["ip"].startswith("2001:db8::")


@pytest.mark.parametrize("base", CAPTURES, ids=IDS)
def test_cut_mid_session_read_with_key_log_only(base: Path, tmp_path: Path) -> None:
    full = dissect([f"{base}.pcap"], _device_ring())
    rest, cut_ts = cut_at_frame_boundary(load_segments(f"{base}.pcap"), 0.4)
    path = write(tmp_path / "cut.pcap", write_pcap(rest))
    records = dissect([path], ring_with(f"{base}.keylog", role="keylog"))

    after = [m for m in messages(full) if m["ts"] >= cut_ts]
    firsts: dict[str, dict] = {}
    expected = []
    for m in after:
        if m["direction"] not in firsts:
            firsts[m["direction"]] = m
        else:
            expected.append(comparable(m))
    got = messages(records)
    decrypted = [comparable(m) for m in got if m["coap"] is not None]
    assert decrypted == expected
    # The first frame of each direction is a message record too, with what is known of it.
    partial = [m for m in got if m["coap"] is None]
    assert sorted(m["direction"] for m in partial) == sorted(firsts)
    for m in partial:
        first = firsts[m["direction"]]
        enc = m["encrypted"]
        assert enc["known_offset"] == 16
        full_plain = _plaintext(first)
        if enc["known_plaintext"]:
            assert full_plain[16:] == bytes.fromhex(enc["known_plaintext"])
    assert findings(records, "keylog.trial_match")
    assert len(got) == len(after)


def _plaintext(rec: dict) -> bytes:
    from dissector.coap import CoapMessage, CoapOption, encode, parse_code

    coap = rec["coap"]
    types = ["CON", "NON", "ACK", "RST"]
    msg = CoapMessage(
        type=types.index(coap["type"]),
        code=parse_code(coap["code"]),
        mid=coap["mid"],
        token=bytes.fromhex(coap["token"]),
        options=[
            CoapOption(o["number"], _option_bytes(o["number"], o["value"])) for o in coap["options"]
        ],
        payload=bytes.fromhex(coap["payload"]),
    )
    return encode(msg)


def _option_bytes(number: int, value: object) -> bytes:
    from dissector.coap import option_format

    fmt = option_format(number)
    if fmt == "uint":
        assert isinstance(value, int)
        return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    if fmt == "string":
        return str(value).encode()
    if fmt == "empty":
        return b""
    return bytes.fromhex(str(value))


def test_cut_mid_session_without_matching_key_says_what_is_missing(tmp_path: Path) -> None:
    rest, _ = cut_at_frame_boundary(load_segments(f"{SPARK}.pcap"), 0.4)
    path = write(tmp_path / "cut.pcap", write_pcap(rest))
    records = dissect([path], ring_with(f"{BREWSKEY}.keylog", role="keylog"))
    msgs = messages(records)
    assert msgs and all(m["coap"] is None for m in msgs)
    missing = findings(records, "decrypt.missing_key")
    assert missing and "key log" in missing[0]["message"]
