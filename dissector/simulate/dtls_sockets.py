"""Send a DTLS scenario's datagrams over real UDP sockets on 127.0.0.1 (or another host).

The DTLS reference sessions are built up front (:meth:`Scenario.build
<dissector.simulate.scenario.Scenario.build>`: every datagram, with the real handshake and
cryptography); this module puts those exact datagrams on the wire between a cloud socket
(bound to the given port) and one device socket per session (a resumed session comes from
a new port, as a device does), in scenario order, with the scenario's relative timing
scaled down. Each datagram is read by its receiver before the next one is sent, so the
kernel carries every datagram once, in order.

API (used by the live-capture tests)::

    from dissector.simulate.dtls_sockets import run_dtls_over_sockets
    from dissector.simulate.scenarios import get_scenario

    run = run_dtls_over_sockets(get_scenario("dtls-gen3-session"), seed=1)
    run.port                       # the cloud's UDP port (0 asked: a free one was chosen)
    run.sent                       # every datagram as sent: SentDatagram list
    run.simulation.sessions[0]     # device and cloud logs, key log line, …
    run.simulation.key_files       # the files that decrypt it (key log, persisted session)

To have the keys before the traffic, build first and send later:
``sim = simulate(scenario, seed=1).simulation`` (write ``sim.key_files``, start a capture),
then :func:`send_dtls_over_sockets(sim, port=...) <send_dtls_over_sockets>`. ``ready(port)``
is called once the cloud's socket is bound, before the first datagram.

Errors (a TCP scenario, a port in use, a datagram that does not arrive intact, the
``timeout``) raise :class:`~dissector.simulate.errors.SimulationError`.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from dissector.model import Direction
from dissector.simulate.errors import SimulationError
from dissector.simulate.scenario import BuildContext, KeySet, Scenario, Simulation

__all__ = ["DtlsSocketRun", "SentDatagram", "run_dtls_over_sockets", "send_dtls_over_sockets"]

_MAX_DATAGRAM = 65535


@dataclass(frozen=True, slots=True)
class SentDatagram:
    """One datagram as sent: wall-clock time, scenario time, session index (0-based in
    ``simulation.sessions``), direction, the device's local port and the bytes."""

    wall: float
    ts: float
    session: int
    direction: Direction
    device_port: int
    data: bytes


@dataclass(slots=True)
class DtlsSocketRun:
    """The outcome of :func:`send_dtls_over_sockets` / :func:`run_dtls_over_sockets`."""

    host: str
    port: int
    simulation: Simulation
    sent: list[SentDatagram] = field(default_factory=list)

    @property
    def device_ports(self) -> list[int]:
        """Each session's device port, in session order (0 for a session that sent nothing)."""
        ports = {d.session: d.device_port for d in self.sent}
        return [ports.get(i, 0) for i in range(len(self.simulation.sessions))]

    def keylog(self) -> str:
        """NSS ``CLIENT_RANDOM`` lines of the sessions with a handshake."""
        return self.simulation.keylog()


def _ordered(sim: Simulation) -> Iterator[tuple[float, int, Direction, bytes]]:
    """Every session's datagrams ``(ts, session, direction, data)`` in scenario order
    (time; ties in session order, then in the order each session sent them)."""
    flows = [
        [
            (float(ts), i, n, direction, bytes(data))
            for n, (ts, direction, data) in enumerate(s.writes)
        ]
        for i, s in enumerate(sim.sessions)
    ]
    for ts, i, _n, direction, data in heapq.merge(*flows):
        yield ts, i, direction, data


def _udp_socket(host: str, port: int, timeout: float) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
    except (OSError, UnicodeError) as exc:
        raise SimulationError(f"cannot resolve {host!r}: {exc}") from None
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SimulationError(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from None
    sock.settimeout(timeout)
    return sock


def send_dtls_over_sockets(
    simulation: Simulation,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    time_scale: float = 0.01,
    max_pause: float | None = None,
    timeout: float = 60.0,
    ready: Callable[[int], None] | None = None,
) -> DtlsSocketRun:
    """Send ``simulation``'s datagrams between a cloud socket on ``host:port`` (0: a free
    port) and one device socket per session; blocks until the last one was received.

    ``time_scale`` maps scenario seconds to wall-clock seconds (0.01: a 25 s pause lasts
    250 ms); ``max_pause`` caps any single pause (wall-clock seconds); ``timeout`` bounds
    the whole run and each receive.
    """
    if time_scale < 0:
        raise SimulationError("time_scale must not be negative")
    if timeout <= 0:
        raise SimulationError("timeout must be positive")
    if not any(s.writes for s in simulation.sessions):
        raise SimulationError("the simulation has no datagrams to send")
    for s in simulation.sessions:
        for w in s.writes:
            if len(w) != 3 or not isinstance(w[2], bytes | bytearray):
                raise SimulationError("the simulation's writes are not datagrams")
            if len(w[2]) > _MAX_DATAGRAM - 28:
                raise SimulationError(f"a {len(w[2])}-byte datagram does not fit in UDP")
    cloud = _udp_socket(host, port, timeout)
    devices: dict[int, socket.socket] = {}
    run = DtlsSocketRun(host, int(cloud.getsockname()[1]), simulation)
    try:
        if ready is not None:
            ready(run.port)
        start = time.monotonic()
        deadline = start + timeout
        wall = start
        previous: float | None = None
        for ts, i, direction, data in _ordered(simulation):
            if previous is not None:
                pause = max(0.0, (ts - previous) * time_scale)
                wall += pause if max_pause is None else min(pause, max_pause)
            previous = ts
            if wall > deadline:
                raise SimulationError(
                    f"the datagrams do not fit in {timeout} s at time scale {time_scale}"
                )
            delay = wall - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            device = devices.get(i)
            if device is None:
                device = devices[i] = _udp_socket(host, 0, timeout)
            if direction is Direction.DEVICE_TO_CLOUD:
                sender, receiver = device, cloud
            else:
                sender, receiver = cloud, device
            run.sent.append(
                SentDatagram(time.time(), ts, i, direction, device.getsockname()[1], data)
            )
            _deliver(sender, receiver, data, deadline)
    finally:
        for sock in (cloud, *devices.values()):
            with contextlib.suppress(OSError):
                sock.close()
    return run


def _deliver(sender: socket.socket, receiver: socket.socket, data: bytes, deadline: float) -> None:
    """``data`` from ``sender`` to ``receiver``; raises unless it arrives intact in time."""
    target = receiver.getsockname()
    try:
        sender.sendto(data, target)
        receiver.settimeout(max(0.001, deadline - time.monotonic()))
        got, origin = receiver.recvfrom(_MAX_DATAGRAM)
    except TimeoutError:
        raise SimulationError(f"a {len(data)}-byte datagram to {target} did not arrive") from None
    except OSError as exc:
        raise SimulationError(f"cannot send a datagram to {target}: {exc}") from None
    if got != data or origin[1] != sender.getsockname()[1]:
        raise SimulationError(f"the datagram received at {target} is not the one sent")


def run_dtls_over_sockets(
    scenario: Scenario,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: int | str = 0,
    keys: KeySet | None = None,
    time_scale: float = 0.01,
    max_pause: float | None = None,
    timeout: float = 60.0,
    ready: Callable[[int], None] | None = None,
) -> DtlsSocketRun:
    """Build the DTLS ``scenario`` (keys generated from ``seed`` when ``keys`` is None)
    and send it with :func:`send_dtls_over_sockets`."""
    if scenario.transport != "udp":
        raise SimulationError(f"scenario {scenario.name!r} is not a DTLS (UDP) scenario")
    keys = keys if keys is not None else KeySet(seed)
    sim = scenario.build(BuildContext(keys, seed=seed))
    return send_dtls_over_sockets(
        sim, host, port, time_scale=time_scale, max_pause=max_pause, timeout=timeout, ready=ready
    )
