"""``sniff`` against the reference device and cloud, for real, on the loopback interface.

TCP: :func:`~dissector.simulate.sockets.run_over_sockets` runs the ``photon`` scenario (the
simulated cloud listens on a free port of 127.0.0.1, the simulated device connects; both
are asyncio tasks speaking the real handshake, cryptography and CoAP through the kernel's
TCP stack). DTLS: :func:`~dissector.simulate.dtls_sockets.send_dtls_over_sockets` sends the
datagrams of the ``dtls-gen3-session`` scenario (Argon: cookie, CID) together with those of
``dtls-electron-session`` (Electron: no CID) between real UDP sockets, one cloud port and a
device port each, in scenario order with the timing scaled down.

Meanwhile the installed ``particle-dissect sniff -i lo --format ndjson`` runs as a separate
process, with only the key files the simulator wrote for the scenario (``--keys``), watching
the cloud's port (``--port`` / ``--udp-port``). Every CoAP message the device's and the
cloud's logs say they sent must appear decoded exactly once, in order per direction, and
each session record must name the device, say ``established`` and pass every handshake
check.

These tests capture packets: they need root (CI runs as root) and fail, never skip,
without it. Every wait is bounded; the file takes a few seconds.
"""

from __future__ import annotations

import heapq
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dissector.coap import CoapMessage
from dissector.model import Direction
from dissector.simulate import SimulationError
from dissector.simulate.dtls_sockets import (
    DtlsSocketRun,
    run_dtls_over_sockets,
    send_dtls_over_sockets,
)
from dissector.simulate.keyfiles import key_files
from dissector.simulate.run import simulate
from dissector.simulate.scenario import KeySet, SessionResult, Simulation
from dissector.simulate.scenarios import get_scenario
from dissector.simulate.scenarios.dtls_sessions import ELECTRON_ID, GEN3_ID
from dissector.simulate.sockets import SocketRun, run_over_sockets
from tests.sniffing import SniffProcess

ROOT = Path(__file__).resolve().parent.parent
#: The installed entry point, next to the interpreter running the tests.
PARTICLE_DISSECT = Path(sys.executable).parent / "particle-dissect"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
DIRECTIONS = {D2C: "device->cloud", C2D: "cloud->device"}
SEED = "sniff-simulator"
SCALE = 0.005  # scenario seconds → wall-clock seconds: the 40 s sessions last 0.2 s
WAIT = 10.0  # seconds: the most any single wait may take
QUIET_PORT = "9"  # the transport a run does not use watches the discard port
PHOTON_ID = get_scenario("photon").sessions[0].device.device_id
DTLS_SCENARIOS = {"dtls-gen3-session": GEN3_ID, "dtls-electron-session": ELECTRON_ID}


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the live sniff tests capture on the loopback interface: run them as root")


# -- the sniffer process ---------------------------------------------------------------------


class Sniff(SniffProcess):
    """``particle-dissect sniff -i lo --format ndjson ARGS`` (the installed entry point)."""

    def __init__(self, *args: str | os.PathLike[str]) -> None:
        if not PARTICLE_DISSECT.exists():
            pytest.fail(f"{PARTICLE_DISSECT} is missing: install the package (make test)")
        command = [str(PARTICLE_DISSECT), "sniff", "-i", "lo", "--format", "ndjson"]
        super().__init__(command, *args, wait=WAIT)


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


# -- the live runs -----------------------------------------------------------------------------


@dataclass
class Live:
    """One simulator run sniffed live: the simulator's sessions and the sniffer's output."""

    sessions: list[SessionResult]
    cloud_port: int
    device_ports: list[int]
    records: list[dict[str, Any]]
    code: int
    stderr: str


@pytest.fixture(scope="module")
def tcp_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The ``photon`` scenario over TCP on 127.0.0.1, sniffed; the sniffer starts once the
    cloud listens (``ready``) and is stopped with SIGTERM after the session record."""
    need_root()
    tmp = tmp_path_factory.mktemp("sniff-tcp")
    scenario = get_scenario("photon")
    keys = KeySet(SEED)  # fresh keys, generated from the seed
    keydir = write_files(tmp / "keys", key_files(keys, scenario.key_names))
    sniffers: list[Sniff] = []

    def ready(port: int) -> None:
        sniffer = Sniff("--keys", keydir, "--port", str(port), "--udp-port", QUIET_PORT)
        sniffers.append(sniffer)
        sniffer.wait_listening()

    try:
        run: SocketRun = run_over_sockets(
            scenario, "127.0.0.1", 0, seed=SEED, keys=keys, time_scale=SCALE, timeout=WAIT,
            ready=ready,
        )  # fmt: skip
        (sniffer,) = sniffers
        sniffer.wait_for(
            "session record", lambda: any('"record":"session"' in line for line in sniffer.out)
        )
        code = sniffer.finish(signal.SIGTERM)
        yield Live(
            run.sessions,
            run.port,
            [s.device_port for s in run.sessions],
            sniffer.records(),
            code,
            sniffer.stderr,
        )
    finally:
        for sniffer in sniffers:
            sniffer.kill()


def dtls_simulation() -> Simulation:
    """The Argon's and the Electron's sessions, both at the scenario start: one cloud, two
    devices talking at once."""
    keys = KeySet(SEED)
    sims = [
        simulate(get_scenario(name), seed=SEED, keys=keys).simulation for name in DTLS_SCENARIOS
    ]
    files = {rel: data for sim in sims for rel, data in sim.key_files.items()}
    return Simulation([], 1, [s for sim in sims for s in sim.sessions], files)


@pytest.fixture(scope="module")
def dtls_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The DTLS sessions over UDP on 127.0.0.1, sniffed; the sniffer ends at ``--count``:
    the number of datagrams sent (each is seen once on lo)."""
    need_root()
    tmp = tmp_path_factory.mktemp("sniff-dtls")
    sim = dtls_simulation()
    keydir = write_files(tmp / "keys", sim.key_files)
    total = sum(len(s.writes) for s in sim.sessions)
    sniffers: list[Sniff] = []

    def ready(port: int) -> None:
        sniffer = Sniff("--keys", keydir, "--udp-port", str(port), "--port", QUIET_PORT,
                        "--count", str(total))  # fmt: skip
        sniffers.append(sniffer)
        sniffer.wait_listening()

    try:
        run: DtlsSocketRun = send_dtls_over_sockets(
            sim, "127.0.0.1", 0, time_scale=SCALE, timeout=WAIT, ready=ready
        )
        (sniffer,) = sniffers
        code = sniffer.finish()
        yield Live(
            sim.sessions,
            run.port,
            run.device_ports,
            sniffer.records(),
            code,
            sniffer.stderr,
        )
    finally:
        for sniffer in sniffers:
            sniffer.kill()


# -- comparing ---------------------------------------------------------------------------------


def coap_fields(coap: CoapMessage) -> dict[str, Any]:
    """A CoAP message as a ``message`` record's ``coap`` shows it (the compared fields)."""
    return {
        "type": coap.type_name,
        "code": coap.code_str,
        "mid": coap.mid,
        "token": coap.token.hex(),
        "uri": coap.uri,
        "payload": coap.payload.hex(),
    }


def sent_by_logs(session: SessionResult, direction: Direction) -> list[dict[str, Any]]:
    """What the sending side's log says it sent in ``direction``, in order."""
    log = session.device_log if direction is D2C else session.cloud_log
    return [coap_fields(e.coap) for e in log if e.sent and e.coap is not None]


def session_record(live: Live, index: int) -> dict[str, Any]:
    """The sniffer's ``session`` record of the simulator's session ``index`` (by ports)."""
    port = live.device_ports[index]
    found = [
        r
        for r in live.records
        if r["record"] == "session"
        and r["device"]["port"] == port
        and r["cloud"]["port"] == live.cloud_port
    ]
    assert len(found) == 1, f"one session record for device port {port}: {found}"
    return found[0]


def sniffed(live: Live, index: int, direction: Direction) -> list[dict[str, Any]]:
    """The decoded ``coap`` of the sniffed messages of session ``index`` in ``direction``."""
    session = session_record(live, index)["session"]
    got = [
        r
        for r in live.records
        if r["record"] == "message"
        and r["session"] == session
        and r["direction"] == DIRECTIONS[direction]
    ]
    undecoded = [r for r in got if r["coap"] is None]
    assert not undecoded, f"not decoded: {undecoded[:3]}"
    return [
        {k: r["coap"][k] for k in ("type", "code", "mid", "token", "uri", "payload")} for r in got
    ]


def merged_by_time(session: SessionResult) -> list[tuple[str, dict[str, Any]]]:
    both = [
        [(e.ts, n, DIRECTIONS[d], coap_fields(e.coap)) for n, e in enumerate(log)
         if e.sent and e.coap is not None]
        for d, log in ((D2C, session.device_log), (C2D, session.cloud_log))
    ]  # fmt: skip
    return [(d, fields) for _ts, _n, d, fields in heapq.merge(*both, key=lambda x: (x[0], x[1]))]


# -- the tests ---------------------------------------------------------------------------------


def test_tests_run_as_root() -> None:
    need_root()


def test_tcp_simulator_completed_and_sniff_ended_on_sigterm(tcp_live: Live) -> None:
    assert [s.outcome for s in tcp_live.sessions] == ["completed"], tcp_live.stderr
    assert tcp_live.code == 0, tcp_live.stderr
    assert "stopped by SIGTERM" in tcp_live.stderr
    assert "listening on lo" in tcp_live.stderr
    assert all(r.get("schema_version") == 1 for r in tcp_live.records)


@pytest.mark.parametrize("direction", [D2C, C2D], ids=["device->cloud", "cloud->device"])
def test_every_tcp_message_the_logs_sent_is_decoded_once_in_order(
    tcp_live: Live, direction: Direction
) -> None:
    (session,) = tcp_live.sessions
    want = sent_by_logs(session, direction)
    assert len(want) > 15  # the photon scenario: every message kind
    assert sniffed(tcp_live, 0, direction) == want
    assert all(r["transport"] == "tcp" for r in tcp_live.records if r["record"] == "message")


def test_tcp_session_record_names_the_device_and_passes_every_handshake_check(
    tcp_live: Live,
) -> None:
    (rec,) = [r for r in tcp_live.records if r["record"] == "session"]
    assert rec is session_record(tcp_live, 0)
    assert rec["device_id"] == PHOTON_ID
    assert rec["outcome"] == "established"
    assert rec["closed_by"] == "device"
    assert rec["key_source"].startswith("device key")  # no key log given
    checks = {c["check"]: c["status"] for c in rec["handshake"]}
    assert set(checks) >= {"identity_decrypted", "session_key", "signature", "device_hello"}
    assert set(checks.values()) == {"passed"}, rec["handshake"]
    steps = [r["step"] for r in tcp_live.records if r["record"] == "handshake"]
    assert steps == ["nonce", "identity", "session_key"]
    (session,) = tcp_live.sessions
    for direction, name in DIRECTIONS.items():
        stats = rec["stats"][name]
        assert stats["messages"] == stats["decrypted"] == len(sent_by_logs(session, direction))


def test_tcp_findings_are_only_the_clouds_known_rfc_deviations(tcp_live: Live) -> None:
    findings = [r for r in tcp_live.records if r["record"] == "finding"]
    assert {f["severity"] for f in findings} <= {"info"}, findings
    assert {f["code"] for f in findings} <= {"coap.rfc_violation", "coap.ack_token_mismatch"}


def test_dtls_sockets_carried_every_datagram_and_sniff_ended_at_count(dtls_live: Live) -> None:
    assert dtls_live.code == 0, dtls_live.stderr
    assert "stopped by count" in dtls_live.stderr
    assert len(set(dtls_live.device_ports)) == len(DTLS_SCENARIOS)


@pytest.mark.parametrize("name", list(DTLS_SCENARIOS))
@pytest.mark.parametrize("direction", [D2C, C2D], ids=["device->cloud", "cloud->device"])
def test_every_dtls_message_the_logs_sent_is_decoded_once_in_order(
    dtls_live: Live, name: str, direction: Direction
) -> None:
    index = list(DTLS_SCENARIOS).index(name)
    want = sent_by_logs(dtls_live.sessions[index], direction)
    assert len(want) >= 10
    assert sniffed(dtls_live, index, direction) == want


@pytest.mark.parametrize("name", list(DTLS_SCENARIOS))
def test_dtls_messages_come_in_the_order_they_were_sent(dtls_live: Live, name: str) -> None:
    """Across both directions too: a datagram is delivered before the next is sent."""
    index = list(DTLS_SCENARIOS).index(name)
    session = session_record(dtls_live, index)["session"]
    got = [
        (
            r["direction"],
            {k: r["coap"][k] for k in ("type", "code", "mid", "token", "uri", "payload")},
        )
        for r in dtls_live.records
        if r["record"] == "message" and r["session"] == session
    ]
    assert got == merged_by_time(dtls_live.sessions[index])


@pytest.mark.parametrize("name", list(DTLS_SCENARIOS))
def test_dtls_session_record_names_the_device_and_passes_every_handshake_check(
    dtls_live: Live, name: str
) -> None:
    index = list(DTLS_SCENARIOS).index(name)
    rec = session_record(dtls_live, index)
    assert rec["transport"] == "dtls"
    assert rec["device_id"] == DTLS_SCENARIOS[name]
    assert rec["outcome"] == "established"
    checks = {c["check"]: c["status"] for c in rec["handshake"]}
    assert set(checks) >= {"client_hello", "cookie", "server_hello", "finished", "keys"}
    assert set(checks.values()) == {"passed"}, rec["handshake"]
    session = dtls_live.sessions[index]
    for direction, dname in DIRECTIONS.items():
        stats = rec["stats"][dname]
        assert stats["messages"] == stats["decrypted"] == len(sent_by_logs(session, direction))
    assert len([r for r in dtls_live.records if r["record"] == "session"]) == len(DTLS_SCENARIOS)
    assert not [r for r in dtls_live.records if r["record"] == "finding"]


def test_traffic_while_sniff_starts_is_not_reported_as_kernel_drops() -> None:
    """Packets the capture never wanted are not "dropped by the kernel": while the filter
    is attached (Scapy shrinks the socket's buffer to nothing meanwhile, on a socket not yet
    bound to lo) every packet of the host is dropped on purpose; those must not count."""
    need_root()
    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        target = sink.getsockname()

        def flood() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                deadline = time.monotonic() + WAIT
                while not stop.is_set() and time.monotonic() < deadline:
                    for _ in range(20):
                        out.sendto(b"not particle", target)
                    time.sleep(0.0005)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        sniffer = Sniff("--port", QUIET_PORT, "--udp-port", QUIET_PORT, "--duration", "0.3")
        try:
            sniffer.wait_listening()
            stop.set()
            flooder.join(WAIT)
            assert sniffer.finish() == 0
        finally:
            stop.set()
            sniffer.kill()
    assert "captured 0 packets" in sniffer.stderr
    assert "0 dropped by the kernel" in sniffer.stderr, sniffer.stderr


# -- the UDP replay helper on its own ----------------------------------------------------------


def test_dtls_replay_keeps_scenario_order_and_scaled_timing() -> None:
    sim = dtls_simulation()
    run = send_dtls_over_sockets(sim, time_scale=0.001, timeout=WAIT)
    ordered = sorted(
        ((w[0], i, n, w[2]) for i, s in enumerate(sim.sessions) for n, w in enumerate(s.writes)),
        key=lambda x: x[:3],
    )
    assert [(d.ts, d.session, d.data) for d in run.sent] == [(t, i, b) for t, i, _n, b in ordered]
    span = ordered[-1][0] - ordered[0][0]
    assert run.sent[-1].wall - run.sent[0].wall >= span * 0.001 * 0.9
    for i, session in enumerate(sim.sessions):
        mine = [d for d in run.sent if d.session == i]
        assert [(d.direction, d.data) for d in mine] == [(w[1], w[2]) for w in session.writes]
        assert len({d.device_port for d in mine}) == 1
    assert run.port > 0 and run.port not in run.device_ports


def test_dtls_replay_refuses_tcp_scenarios_busy_ports_and_empty_simulations() -> None:
    with pytest.raises(SimulationError, match="not a DTLS"):
        run_dtls_over_sockets(get_scenario("photon"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(SimulationError, match="cannot bind"):
            run_dtls_over_sockets(get_scenario("dtls-gen3-resumed"), port=port, time_scale=0)
    with pytest.raises(SimulationError, match="no datagrams"):
        send_dtls_over_sockets(Simulation([]))
    ports: list[int] = []
    run = run_dtls_over_sockets(
        get_scenario("dtls-gen3-resumed"), seed=SEED, time_scale=0, ready=ports.append
    )
    assert ports == [run.port] and len(run.sent) == len(run.simulation.sessions[0].writes)
    assert run.keylog() == f"{run.simulation.sessions[0].keylog}\n"
