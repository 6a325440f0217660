"""Run a TCP scenario over real sockets: the simulated cloud listens, each simulated device
connects, both exchange the scenario's messages through the kernel's TCP stack.

API (also used by the live-capture tests)::

    from dissector.simulate.sockets import run_over_sockets
    from dissector.simulate.scenarios import get_scenario

    run = run_over_sockets(get_scenario("photon"), "127.0.0.1", 0, seed=1)
    run.port                     # the port the cloud listened on (0 = a free one was chosen)
    run.completed                # every session ended as the scenario says
    run.sessions[0].device_log   # what the device sent and received (LogEntry list)
    run.sessions[0].cloud_log    # same for the cloud
    run.keylog()                 # PARTICLE_TCP lines of the sessions

* :func:`run_over_sockets` blocks (it calls :func:`asyncio.run`); inside a running event
  loop use :func:`run_over_sockets_async`. Both take ``seed`` and ``keys`` (a
  :class:`~dissector.simulate.scenario.KeySet`; default: keys generated from the seed)
  and produce, for the same seed and keys, the same bytes on each connection as
  :meth:`Scenario.build <dissector.simulate.scenario.Scenario.build>` writes to a pcap
  (time values inside messages excepted).
* ``ready(port)`` is called once the cloud listens (start a capture there);
  ``time_scale`` maps scenario seconds to wall-clock seconds (0.01: a 15 s keep-alive
  pause lasts 150 ms); ``timeout`` (wall-clock seconds) bounds the whole run.
* The device and the cloud are separate asyncio tasks with their own connection ends;
  sessions connect one after the other in scenario order (concurrent sessions still
  overlap), so the cloud pairs each accepted connection with its session deterministically.

Only TCP scenarios run over sockets; errors raise :class:`SimulationError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from dissector.model import Direction
from dissector.simulate.endpoint import Endpoint
from dissector.simulate.engine import make_endpoints, session_outcome
from dissector.simulate.errors import SimulationError
from dissector.simulate.scenario import (
    DEFAULT_START,
    BuildContext,
    KeySet,
    Scenario,
    SessionResult,
    TcpSession,
)

__all__ = ["SocketRun", "run_over_sockets", "run_over_sockets_async"]


@dataclass(slots=True)
class SocketRun:
    """The outcome of :func:`run_over_sockets`."""

    host: str
    port: int
    sessions: list[SessionResult] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        """Every session ended the way its scenario intends (completed, or failed as a
        failure scenario must)."""
        return bool(self.sessions) and all(s.outcome != "incomplete" for s in self.sessions)

    def keylog(self) -> str:
        """``PARTICLE_TCP`` key log lines of every session."""
        lines = [line for s in self.sessions if (line := s.keylog_line())]
        return "".join(f"{line}\n" for line in lines)


class _Clock:
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.t0 = asyncio.get_running_loop().time()

    def now(self) -> float:
        return DEFAULT_START + (asyncio.get_running_loop().time() - self.t0) / self.scale

    def delay(self, until: float) -> float:
        return max(0.0, (until - self.now()) * self.scale)


async def _drive(
    ep: Endpoint,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    clock: _Clock,
    closer: bool,
    writes: list[tuple[float, Direction, bytes]],
) -> None:
    """Feed ``ep`` from the socket and write what it sends until the connection ends."""
    direction = ep.sends
    half_closed = False

    async def pump() -> None:
        for ts, data in ep.take():
            writes.append((ts, direction, data))
            writer.write(data)
        await writer.drain()

    try:
        ep.connected(clock.now())
        await pump()
        while not ep.closed:
            if closer and ep.finished and not half_closed:
                half_closed = True
                if writer.can_write_eof():
                    writer.write_eof()
            deadline = ep.next_deadline()
            wait = None if deadline is None else clock.delay(deadline)
            try:
                data = await asyncio.wait_for(reader.read(65536), wait)
            except TimeoutError:
                assert deadline is not None
                ep.tick(max(clock.now(), deadline))
                await pump()
                continue
            if not data:
                ep.peer_closed(clock.now())
                break
            ep.receive(data, clock.now())
            await pump()
    except (ConnectionError, OSError):
        ep.peer_closed(clock.now())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def run_over_sockets_async(
    scenario: Scenario,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: int | str = 0,
    keys: KeySet | None = None,
    time_scale: float = 0.01,
    timeout: float = 60.0,
    ready: Callable[[int], None] | None = None,
) -> SocketRun:
    """Coroutine form of :func:`run_over_sockets`."""
    if scenario.transport != "tcp" or not scenario.sessions:
        raise SimulationError(f"scenario {scenario.name!r} cannot run over TCP sockets")
    if time_scale <= 0:
        raise SimulationError("time_scale must be positive")
    keys = keys if keys is not None else KeySet(seed)
    ctx = BuildContext(keys, seed=seed)
    rng = ctx.rng("sessions")
    clouds: asyncio.Queue[tuple[Endpoint, asyncio.Event, bool]] = asyncio.Queue()
    writes_of: dict[int, list[tuple[float, Direction, bytes]]] = {}
    clock: _Clock | None = None

    failures: list[BaseException] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cloud, accepted, closer = await clouds.get()
        assert clock is not None
        accepted.set()
        try:
            await _drive(cloud, reader, writer, clock, closer, writes_of[id(cloud)])
        except Exception as exc:  # handed to the session task, which raises it
            failures.append(exc)
            cloud.closed = True

    try:
        server = await asyncio.start_server(on_connect, host, port)
    except OSError as exc:
        raise SimulationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = server.sockets[0].getsockname()[1]
    run = SocketRun(host, bound)
    if ready is not None:
        ready(bound)
    clock = _Clock(time_scale)

    async def one(
        i: int, session: TcpSession, begin: float, accepted: asyncio.Event
    ) -> SessionResult:
        assert clock is not None
        device, cloud = make_endpoints(session, keys, rng.fork(f"session{i}"))
        writes: list[tuple[float, Direction, bytes]] = []
        writes_of[id(device)] = writes_of[id(cloud)] = writes
        closer = session.close or "device"
        await clouds.put((cloud, accepted, closer == "cloud"))
        try:
            reader, writer = await asyncio.open_connection(host, bound)
        except OSError as exc:
            raise SimulationError(f"cannot connect to {host}:{bound}: {exc}") from None
        await accepted.wait()
        await _drive(device, reader, writer, clock, closer == "device", writes)
        while not cloud.closed:  # the cloud's side ends on the device's FIN
            await asyncio.sleep(0.001)
        if failures:
            raise failures[0]
        outcome, closed_by = session_outcome(device, cloud)
        writes.sort(key=lambda w: w[0])
        return SessionResult(
            index=i,
            device_id=session.device.device_id,
            writes=writes,
            device_log=device.log,
            cloud_log=cloud.log,
            nonce=getattr(cloud, "nonce", None),
            credentials=getattr(cloud, "credentials", None),
            outcome=outcome,
            closed_by=closed_by or closer,
            end=max((w[0] for w in writes), default=begin),
            device_port=writer.get_extra_info("sockname", ("", 0))[1] if writer else 0,
        )

    async def all_sessions() -> None:
        assert clock is not None
        tasks: list[asyncio.Task[SessionResult]] = []
        previous: asyncio.Task[SessionResult] | None = None
        for i, session in enumerate(scenario.sessions):
            if session.start is None:
                if previous is not None:
                    done = await previous
                    await asyncio.sleep(clock.delay(done.end + session.gap))
            else:
                await asyncio.sleep(clock.delay(DEFAULT_START + session.start))
            accepted = asyncio.Event()
            task = asyncio.create_task(one(i, session, clock.now(), accepted))
            tasks.append(task)
            previous = task
            # connect in order: the next session connects once this one was accepted
            waiter = asyncio.create_task(accepted.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        run.sessions = list(await asyncio.gather(*tasks))

    try:
        async with server:
            await asyncio.wait_for(all_sessions(), timeout)
    except TimeoutError:
        raise SimulationError(
            f"scenario {scenario.name!r} did not finish within {timeout} s over sockets"
        ) from None
    return run


def run_over_sockets(
    scenario: Scenario,
    host: str = "127.0.0.1",
    port: int = 0,
    **kwargs: object,
) -> SocketRun:
    """Run ``scenario`` over TCP sockets on ``host:port`` (port 0: a free port); blocks.

    Keyword arguments are those of :func:`run_over_sockets_async` (``seed``, ``keys``,
    ``time_scale``, ``timeout``, ``ready``).
    """
    return asyncio.run(run_over_sockets_async(scenario, host, port, **kwargs))  # type: ignore[arg-type]
