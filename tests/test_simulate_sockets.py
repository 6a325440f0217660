"""Scenarios over real TCP sockets on 127.0.0.1: both ends complete, logs match the scenario."""

from __future__ import annotations

import asyncio
import io
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dissector.capture.reader import CaptureReader
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.output.records import to_record
from dissector.pipeline import Dissector
from dissector.simulate import SimulationError
from dissector.simulate.engine import session_packets
from dissector.simulate.keyfiles import load_keyset
from dissector.simulate.rng import ByteSource
from dissector.simulate.run import capture_bytes, simulate
from dissector.simulate.scenario import KeySet, SessionResult
from dissector.simulate.scenarios import get_scenario
from dissector.simulate.sockets import SocketRun, run_over_sockets, run_over_sockets_async

ROOT = Path(__file__).parent.parent
D2C = Direction.DEVICE_TO_CLOUD
SCALE = 0.004


@cache
def keys() -> KeySet:
    return load_keyset([ROOT / "captures" / "keys"], "tests")


def coap_log(session: SessionResult, side: str, sent: bool) -> list[tuple[Any, ...]]:
    """What one end sent or received; the clock value in time responses left out."""
    time_mids = {
        e.coap.mid
        for e in session.device_log
        if e.sent and e.coap is not None and e.coap.uri == "/t"
    }
    log = session.device_log if side == "device" else session.cloud_log
    out = []
    for e in log:
        if e.sent != sent or e.coap is None:
            continue
        c = e.coap
        payload = b"<time>" if c.type == 2 and c.mid in time_mids and c.code else c.payload
        out.append((c.type, c.code, c.mid, c.token, tuple(c.options), payload))
    return out


@cache
def demo_keys() -> KeySet:
    demo = sorted((ROOT / "captures" / "demo-keys").iterdir())
    return load_keyset([ROOT / "captures" / "keys", *demo], "tests")


@cache
def photon_run() -> SocketRun:
    return run_over_sockets(
        get_scenario("photon"), "127.0.0.1", 0, seed=3, keys=keys(), time_scale=SCALE
    )


def test_photon_over_sockets_completes_and_matches_the_in_memory_run() -> None:
    run = photon_run()
    assert run.completed and run.port > 0
    (live,) = run.sessions
    (ref,) = simulate(get_scenario("photon"), seed=3, keys=keys()).simulation.sessions
    assert live.outcome == ref.outcome == "completed"
    for side in ("device", "cloud"):
        for sent in (True, False):
            assert coap_log(live, side, sent) == coap_log(ref, side, sent)
    # what one end sent is what the other received
    assert coap_log(live, "device", True) == coap_log(live, "cloud", False)
    assert coap_log(live, "cloud", True) == coap_log(live, "device", False)
    # the device's bytes are the same as in the pcap run (no clock value in them)
    assert b"".join(w[2] for w in live.writes if w[1] is D2C) == b"".join(
        w[2] for w in ref.writes if w[1] is D2C
    )
    assert run.keylog() == f"{live.keylog_line()}\n"


def test_the_live_bytes_dissect_with_the_run_key_log() -> None:
    run = photon_run()
    packets = session_packets(run.sessions, rng=ByteSource(0))
    ring = KeyRing()
    ring.load_bytes(run.keylog().encode(), "live.keylog", role="keylog")
    reader = CaptureReader([io.BytesIO(capture_bytes(packets))])
    recs = [r for e in Dissector(ring).run(iter(reader)) if (r := to_record(e)) is not None]
    got = [r for r in recs if r["record"] == "message"]
    assert len(got) == len(run.sessions[0].sent()) and all(r["coap"] for r in got)


def test_several_devices_connect_concurrently_and_in_order() -> None:
    run = run_over_sockets(get_scenario("multi-device"), seed=5, keys=keys(), time_scale=SCALE)
    assert run.completed
    assert [s.device_id for s in run.sessions] == [
        s.device.device_id for s in get_scenario("multi-device").sessions
    ]
    ref = simulate(get_scenario("multi-device"), seed=5, keys=keys()).simulation.sessions
    for live, expected in zip(run.sessions, ref, strict=True):
        assert live.outcome == "completed"
        assert coap_log(live, "device", True) == coap_log(expected, "device", True)
    assert len({s.device_port for s in run.sessions}) == 4


def test_a_failing_handshake_over_sockets_ends_where_the_cloud_gives_up() -> None:
    ports: list[int] = []
    run = run_over_sockets(
        get_scenario("fail-unknown-device"), keys=keys(), time_scale=SCALE, ready=ports.append
    )
    assert ports == [run.port]
    (session,) = run.sessions
    assert session.closed_by == "cloud" and "unknown device" in session.outcome
    assert [e.note for e in session.device_log] == ["nonce", "identity", "closed by peer"]


def test_async_form_runs_inside_an_event_loop_and_bad_input_is_an_error() -> None:
    async def go() -> SocketRun:
        return await run_over_sockets_async(
            get_scenario("fail-unknown-device"), keys=keys(), time_scale=SCALE
        )

    assert asyncio.run(go()).completed
    with pytest.raises(SimulationError, match="over TCP sockets"):
        run_over_sockets(
            get_scenario("photon").__class__(name="x", transport="udp", build=lambda c: None)
        )  # type: ignore[arg-type, return-value]
    with pytest.raises(SimulationError, match="cannot listen"):
        run_over_sockets(get_scenario("photon"), "203.0.113.1", 1, keys=keys())


@pytest.mark.parametrize(
    "name", ["core", "ota-legacy", "ota-fast", "fail-bad-signature", "fail-wrong-device-key"]
)
def test_tcp_scenarios_end_over_sockets_as_in_the_capture(name: str) -> None:
    run = run_over_sockets(get_scenario(name), seed=1, keys=demo_keys(), time_scale=0.002)
    ref = simulate(get_scenario(name), seed=1, keys=demo_keys()).simulation.sessions
    assert [s.outcome for s in run.sessions] == [s.outcome for s in ref]
    for live, expected in zip(run.sessions, ref, strict=True):
        assert coap_log(live, "device", True) == coap_log(expected, "device", True)
        assert coap_log(live, "cloud", False) == coap_log(expected, "cloud", False)
