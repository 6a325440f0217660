"""Run TCP scenarios in virtual time: device and cloud endpoints, a wire with latency,
stream writes → packets.

:func:`run_session` plays one :class:`~dissector.simulate.scenario.TcpSession` between a
:class:`~dissector.simulate.device.SimDevice` and a
:class:`~dissector.simulate.cloud.SimCloud` on a discrete-event clock (every write
reaches the peer ``latency`` seconds later) and returns both logs and the stream writes.
:func:`build_tcp` does it for every session of a scenario and turns the writes into
Ethernet/IPv4/TCP packets; :func:`tcp_scenario` wraps sessions into a
:class:`~dissector.simulate.scenario.Scenario`. Everything random comes from the context's
seed, so a seed gives byte-identical packets.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from functools import partial

from dissector.model import Direction
from dissector.simulate.cloud import SimCloud
from dissector.simulate.device import SimDevice
from dissector.simulate.endpoint import Endpoint
from dissector.simulate.errors import SimulationError
from dissector.simulate.pcap import DEFAULT_CLOUD, DEFAULT_DEVICE_IP, TcpFlow, flow_packets
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import (
    BuildContext,
    KeySet,
    Packet,
    Scenario,
    SessionResult,
    Simulation,
    TcpSession,
)

__all__ = [
    "build_tcp",
    "make_endpoints",
    "run_session",
    "run_sessions",
    "session_outcome",
    "session_packets",
    "tcp_scenario",
]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
#: Upper bound of simulation events per session (a runaway scenario is a bug).
MAX_EVENTS = 200_000


def make_endpoints(
    session: TcpSession, keys: KeySet, rng: ByteSource
) -> tuple[SimDevice, SimCloud]:
    """The device and cloud of ``session``, with their keys from ``keys``."""
    dev = session.device
    cloud = session.cloud
    device_key = keys.rsa_key(dev.device_id, 1024)
    device = SimDevice(
        dev, device_key, keys.public_key(dev.server_key), session.steps, rng.fork("device")
    )
    on_file = None
    if cloud.knows_device:
        on_file = keys.public_key(cloud.device_key) if cloud.device_key else device_key.public_key()
    signing = keys.rsa_key(cloud.signing_key) if cloud.signing_key else None
    sim_cloud = SimCloud(
        cloud,
        keys.any_key(cloud.key),
        on_file,
        session.steps,
        rng.fork("cloud"),
        signing_key=signing,
    )
    return device, sim_cloud


def session_outcome(device: Endpoint, cloud: Endpoint) -> tuple[str, str | None]:
    """``(outcome, closed_by)`` of a finished run."""
    for ep in (device, cloud):
        if ep.closed_by_me:
            when = "handshake failed" if not ep.established else "closed"
            return f"{when}: {ep.role} closed ({ep.close_reason})", ep.role
    if device.completed and cloud.completed:
        return "completed", None
    return "incomplete", None


def run_session(
    session: TcpSession,
    keys: KeySet,
    *,
    rng: ByteSource,
    start: float,
    index: int = 0,
    latency: float = 0.0004,
) -> SessionResult:
    """Play ``session`` in virtual time from ``start``; raises :class:`SimulationError` if
    it neither completes nor fails."""
    device, cloud = make_endpoints(session, keys, rng)
    peers = {id(device): cloud, id(cloud): device}
    dirs = {id(device): D2C, id(cloud): C2D}
    writes: list[tuple[float, Direction, bytes]] = []
    queue: list[tuple[float, int, Endpoint, bytes | None]] = []
    order = itertools.count()
    close_sent: set[int] = set()
    cloud.connected(start)
    device.connected(start)

    def flush(ep: Endpoint) -> None:
        peer = peers[id(ep)]
        for ts, data in ep.take():
            writes.append((ts, dirs[id(ep)], data))
            heapq.heappush(queue, (ts + latency, next(order), peer, data))
        if ep.closed_by_me and id(ep) not in close_sent:
            close_sent.add(id(ep))
            heapq.heappush(queue, (ep.now + latency, next(order), peer, None))

    for _ in range(MAX_EVENTS):
        flush(cloud)
        flush(device)
        when = [(t, ep) for ep in (device, cloud) if (t := ep.next_deadline()) is not None]
        timer = min(when, key=lambda te: te[0]) if when else None
        if queue and (timer is None or queue[0][0] <= timer[0]):
            t, _, target, data = heapq.heappop(queue)
            if data is None:
                target.peer_closed(t)
            else:
                target.receive(data, t)
        elif timer is not None:
            timer[1].tick(timer[0])
        else:
            break
    else:
        raise SimulationError(f"session {index} did not settle after {MAX_EVENTS} events")
    outcome, closed_by = session_outcome(device, cloud)
    if outcome == "incomplete":
        raise SimulationError(
            f"session {index} of {session.device.device_id} stalled: the scenario waits for "
            "something neither side sends"
        )
    end = max((w[0] for w in writes), default=start)
    return SessionResult(
        index=index,
        device_id=session.device.device_id,
        writes=writes,
        device_log=device.log,
        cloud_log=cloud.log,
        nonce=cloud.nonce,
        credentials=cloud.credentials,
        outcome=outcome,
        closed_by=closed_by or session.close,
        end=end,
    )


def run_sessions(
    sessions: Sequence[TcpSession],
    keys: KeySet,
    *,
    rng: ByteSource,
    start: float,
    latency: float = 0.0004,
) -> list[SessionResult]:
    """Every session of a scenario, at its start time."""
    results: list[SessionResult] = []
    previous_end = start
    for i, session in enumerate(sessions):
        begin = start + session.start if session.start is not None else previous_end + session.gap
        result = run_session(
            session, keys, rng=rng.fork(f"session{i}"), start=begin, index=i, latency=latency
        )
        previous_end = result.end
        results.append(result)
    return results


def _ports(count: int, rng: ByteSource) -> list[int]:
    used: list[int] = []
    for _ in range(count):
        port = rng.uint(49152, 65535)
        while port in used:
            port = 49152 + (port - 49152 + 1) % 16384
        used.append(port)
    return used


def session_packets(
    results: Iterable[SessionResult],
    *,
    rng: ByteSource,
    segment_size: int = 1460,
    cloud: tuple[str, int] = DEFAULT_CLOUD,
) -> list[Packet]:
    """Ethernet/IPv4/TCP packets of the sessions (SYN, data, FIN by the closing side)."""
    results = list(results)
    per_flow: list[list[Packet]] = []
    for result, port in zip(results, _ports(len(results), rng), strict=True):
        result.device_port = port
        close = result.closed_by if result.closed_by in ("device", "cloud") else None
        flow = TcpFlow(result.writes, (DEFAULT_DEVICE_IP, port), cloud, syn=True, close=close)
        per_flow.append(flow_packets(flow, rng=rng, segment_size=segment_size))
    return list(heapq.merge(*per_flow, key=lambda p: p[0]))


def build_tcp(sessions: Sequence[TcpSession], ctx: BuildContext) -> Simulation:
    """Run the sessions and packetize them (the ``build`` of :func:`tcp_scenario`)."""
    results = run_sessions(
        sessions, ctx.keys, rng=ctx.rng("sessions"), start=ctx.start, latency=ctx.latency
    )
    packets = session_packets(results, rng=ctx.rng("packets"), segment_size=ctx.segment_size)
    return Simulation(packets, 1, results)


def tcp_scenario(
    name: str,
    sessions: Iterable[TcpSession],
    *,
    summary: str,
    shows: str = "",
    key_names: Sequence[str] | None = None,
    demo_keys: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> Scenario:
    """A TCP :class:`Scenario` from its sessions. ``key_names`` (default: ``server`` and
    every device ID) are the keys that decrypt it."""
    sessions = tuple(sessions)
    if not sessions:
        raise SimulationError(f"scenario {name!r} has no session")
    if key_names is None:
        ids = dict.fromkeys(s.device.device_id for s in sessions)
        key_names = ("server", *ids)
    return Scenario(
        name=name,
        transport="tcp",
        build=partial(build_tcp, sessions),
        summary=summary,
        shows=shows,
        sessions=sessions,
        key_names=tuple(key_names),
        demo_keys=tuple(demo_keys),
        tags=tuple(tags),
    )
