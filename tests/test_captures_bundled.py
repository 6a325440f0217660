"""The bundled captures: each dissects with captures/keys, decodes to exactly what its
scenario sent, and regenerating them gives the same bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dissector.cli.main import main
from dissector.keys import KeyRing
from dissector.output.records import coap_record
from dissector.simulate.make_captures import CAPTURES, CaptureSpec, _keyset, build_captures
from dissector.simulate.run import SimulatedCapture, simulate
from dissector.simulate.scenario import KeySet
from dissector.simulate.scenarios import get_scenario
from tests.helpers import dissect, findings, messages

ROOT = Path(__file__).parent.parent / "captures"
ALL_CAPTURES = sorted(p.name for p in ROOT.iterdir() if p.suffix in (".pcap", ".pcapng"))
SPECS = {spec.file: spec for spec in CAPTURES}
REAL = ("sparkprotocol-deviceos-0.7.0.pcap", "brewskey-deviceos-0.7.0.pcap")

#: Findings each failure capture must show (with captures/keys).
FAILURE_CODES = {
    "fail-unknown-device.pcap": {"handshake.closed_after_identity"},
    "fail-wrong-server-key.pcap": {
        "handshake.identity.wrong_server_key",
        "handshake.closed_after_identity",
    },
    "fail-bad-signature.pcap": {
        "handshake.signature.invalid",
        "handshake.closed_after_session_key",
    },
    "fail-wrong-device-key.pcap": {
        "handshake.session_key.wrong_device_key",
        "handshake.closed_after_session_key",
    },
}

#: Error findings tolerated: bytes lost from the capture; and, for the device whose key is
#: not in the folder, the dissector's trial of the folder's other device keys.
ALLOWED_ERRORS = {
    "photon-loss.pcap": {"frame.bad_padding"},
    "photon-no-device-key.pcap": {"handshake.session_key.wrong_device_key"},
}

PHOTON_KINDS = [
    *("Hello", "Hello", "PrivateEvent", "Subscribe", "EmptyAck", "EmptyAck", "Subscribe"),
    *("EmptyAck", "GetTime", "GetTimeReturn", "Describe", "DescribeReturn"),
    *("VariableRequest", "VariableValue") * 4,
    *("PrivateEvent", "EventSlowdown", "PublicEvent", "EventSlowdown"),
    *("FunctionCall", "EmptyAck", "FunctionReturn") * 2,
    *("PrivateEvent", "SignalStart", "SignalAck", "SignalStop", "SignalAck"),
    *("KeyChange", "EmptyAck", "Ping", "EmptyAck", "Ping", "EmptyAck"),
    *("PrivateEvent", "EventSlowdown"),
]
KINDS = {
    "photon.pcap": PHOTON_KINDS,
    "core.pcap": [
        *("Hello", "Hello", "GetTime", "GetTimeReturn", "Subscribe", "EmptyAck"),
        *("Describe", "DescribeReturn", "VariableRequest", "VariableValue"),
        *("FunctionCall", "EmptyAck", "FunctionReturn", "PublicEvent", "EventSlowdown"),
        *("PrivateEvent", "EventSlowdown", "Ping", "EmptyAck"),
    ],
    "ota-legacy.pcap": [
        *("Hello", "Hello", "UpdateBegin", "EmptyAck", "UpdateReady", "ChunkMissed"),
        "EmptyAck",
        *("Chunk", "EmptyAck", "ChunkReceived") * 5,
        *("UpdateDone", "UpdateDoneAck"),
    ],
    "ota-fast.pcap": [
        *("Hello", "Hello", "UpdateBegin", "EmptyAck", "UpdateReady"),
        *("Chunk",) * 6,
        *("UpdateDone", "UpdateDoneAck", "ChunkMissed", "EmptyAck", "Chunk"),
        *("UpdateDone", "UpdateDoneAck"),
    ],
}


@cache
def ring() -> KeyRing:
    r = KeyRing()
    r.load(str(ROOT / "keys"))
    return r


@cache
def records(name: str) -> list[dict[str, Any]]:
    return dissect([ROOT / name], ring())


@cache
def keyset() -> KeySet:
    return _keyset(ROOT)


@cache
def built(name: str) -> SimulatedCapture:
    spec = SPECS[name]
    return simulate(
        get_scenario(spec.scenario),
        seed=spec.seed,
        keys=keyset(),
        segment_size=spec.segment_size,
        impairments=spec.impairments,
    )


def by_session(recs: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Dissected messages grouped by the simulated device port of their session."""
    port = {r["session"]: r["device"]["port"] for r in recs if r["record"] == "session"}
    out: dict[int, list[dict[str, Any]]] = {}
    for rec in messages(recs):
        out.setdefault(port[rec["session"]], []).append(rec)
    return out


def sent_by_session(cap: SimulatedCapture) -> Iterator[tuple[int, list[Any]]]:
    for session in cap.simulation.sessions:
        yield session.device_port, session.sent()


# -- every capture ---------------------------------------------------------------------------


def test_the_folder_holds_every_capture_of_the_script_and_the_real_ones() -> None:
    assert set(SPECS) | set(REAL) <= set(ALL_CAPTURES)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in [*SPECS, *REAL]:
        assert f"`{name}`" in readme, f"{name} is not described in captures/README.md"
        assert (ROOT / name).stat().st_size < 64 * 1024


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_every_capture_dissects_with_the_shared_key_folder(name: str) -> None:
    recs = records(name)
    assert any(r["record"] == "session" for r in recs)
    errors = {r["code"] for r in recs if r["record"] == "finding" and r["severity"] == "error"}
    assert errors <= FAILURE_CODES.get(name, set()) | ALLOWED_ERRORS.get(name, set())
    assert FAILURE_CODES.get(name, set()) <= errors
    if name not in FAILURE_CODES:
        assert messages(recs)


@pytest.mark.parametrize(
    "name", ["photon.pcap", "photon-midsession.pcapng", "sparkprotocol-deviceos-0.7.0.pcap"]
)
def test_the_dissect_command_reads_captures_with_the_key_folder(name: str) -> None:
    result = CliRunner().invoke(
        main,
        ["dissect", str(ROOT / name), "--keys", str(ROOT / "keys"), "--format", "ndjson"],
    )
    assert result.exit_code == 0, result.output
    recs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r for r in recs if r["record"] == "message"] == messages(records(name))


def test_regenerating_the_captures_gives_byte_identical_files() -> None:
    files = build_captures(ROOT)
    assert {f for f in files if "/" not in f} == set(SPECS)
    for rel, data in files.items():
        assert (ROOT / rel).read_bytes() == data, f"{rel} differs from what the script makes"


@pytest.mark.parametrize(
    "name",
    [s.file for s in CAPTURES if not s.impairments.active and s.scenario != "photon-no-device-key"],
)
def test_simulated_capture_decodes_to_exactly_the_messages_sent(name: str) -> None:
    recs = records(name)
    got = by_session(recs)
    sent = dict(sent_by_session(built(name)))
    assert set(got) == {port for port, msgs in sent.items() if msgs}
    for port, msgs in sent.items():
        dissected = got.get(port, [])
        assert len(dissected) == len(msgs)
        for rec, wire in zip(dissected, msgs, strict=True):
            assert rec["direction"] == wire.direction.value
            assert rec["coap"] == coap_record(wire.coap)
            assert rec["ts"] == pytest.approx(wire.ts, abs=1e-6)
    if name in KINDS:
        assert [r["kind"] for r in messages(recs)] == KINDS[name]
    if name not in FAILURE_CODES:
        sessions = [r for r in recs if r["record"] == "session"]
        assert all(s["outcome"] == "established" for s in sessions)
        assert not findings(recs, "decrypt") and not findings(recs, "handshake")


def test_core_capture_shows_the_legacy_identity_and_big_endian_salt() -> None:
    recs = records("core.pcap")
    identity = next(r for r in recs if r["record"] == "handshake" and r["step"] == "identity")
    assert identity["info"]["legacy"] is True
    session = next(r for r in recs if r["record"] == "session")
    assert session["salt_convention"].startswith("big-endian")
    assert session["hello"]["variant"] == "A"


def test_ota_captures_show_the_crc_mismatch_and_the_missed_chunks() -> None:
    for name, missed in (("ota-legacy.pcap", [0]), ("ota-fast.pcap", [3])):
        recs = records(name)
        assert len(findings(recs, "particle.ota.chunk_crc_mismatch")) == 1
        chunk_missed = next(r for r in messages(recs) if r["kind"] == "ChunkMissed")
        assert chunk_missed["decoded"]["chunks"] == missed
        done = [r for r in messages(recs) if r["kind"] == "UpdateDoneAck"]
        assert done[-1]["coap"]["code"] == "2.04"


# -- impaired variants -----------------------------------------------------------------------


def comparable(rec: dict[str, Any]) -> tuple[str, str]:
    return rec["direction"], json.dumps(rec["coap"], sort_keys=True)


def per_direction(recs: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Decoded messages in stream order, per direction (the interleaving of the two
    directions follows the packets that complete each frame, which impairments move)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for rec in messages(recs):
        out.setdefault(rec["direction"], []).append(comparable(rec))
    return out


def test_small_reordered_duplicated_segments_decode_like_the_clean_capture() -> None:
    clean = records("photon.pcap")
    impaired = records("photon-impaired.pcap")
    assert per_direction(impaired) == per_direction(clean)
    assert [r["kind"] for r in messages(impaired)].count("EventSlowdown") == 3
    assert not findings(impaired, "tcp") and not findings(impaired, "frame")


def test_a_lossy_capture_says_what_was_lost_and_decodes_the_rest() -> None:
    clean = [comparable(r) for r in messages(records("photon.pcap"))]
    lossy = records("photon-loss.pcap")
    gaps = findings(lossy, "tcp.gap")
    assert gaps
    decoded = [comparable(r) for r in messages(lossy) if r["coap"] is not None]
    assert len(decoded) < len(clean)
    assert all(m in clean for m in decoded)
    assert sum(1 for r in messages(lossy) if r["coap"] is None) <= len(gaps) * 2


def test_a_capture_starting_mid_session_decodes_with_the_key_log() -> None:
    clean = per_direction(records("photon.pcap"))
    late = records("photon-midsession.pcapng")
    assert findings(late, "keylog.trial_match")
    for direction, got in per_direction(late).items():
        assert got[0][1] == "null"  # its IV was the first block of an uncaptured frame
        assert got[1:] == clean[direction][len(clean[direction]) - len(got) + 1 :]


# -- keys ------------------------------------------------------------------------------------


def test_device_keys_are_committed_as_particle_cli_names_them() -> None:
    ids = {
        name
        for spec in CAPTURES
        for name in get_scenario(spec.scenario).key_names
        if name != "server"
    }
    assert len(ids) == 4
    for device_id in ids:
        for suffix in (".der", ".pem", ".pub.pem"):
            assert (ROOT / "keys" / f"{device_id}{suffix}").is_file()


def test_demo_keys_are_kept_apart_from_the_shared_folder() -> None:
    shared = {p.name for p in (ROOT / "keys").iterdir()}
    for spec in CAPTURES:
        for name in get_scenario(spec.scenario).demo_keys:
            folder = ROOT / "demo-keys" / spec.stem
            assert any(p.name.startswith(name) for p in folder.iterdir())
            assert not any(n.startswith(name) for n in shared)


def test_the_hidden_device_decrypts_only_with_its_demo_key() -> None:
    name = "photon-no-device-key.pcap"
    assert all(r["coap"] is None for r in messages(records(name)))
    keys = KeyRing()
    keys.load(str(ROOT / "keys"))
    keys.load(str(ROOT / "demo-keys" / "photon-no-device-key"))
    recs = dissect([ROOT / name], keys)
    assert messages(recs) and all(r["coap"] is not None for r in messages(recs))


def spec_of(name: str) -> CaptureSpec:
    return SPECS[name]
