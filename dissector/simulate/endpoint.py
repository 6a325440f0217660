"""What the simulated device and cloud share: a sans-IO endpoint of one TCP connection.

An :class:`Endpoint` is fed stream bytes (:meth:`~Endpoint.receive`), told about time
(:meth:`~Endpoint.tick`, :meth:`~Endpoint.next_deadline`) and the peer closing
(:meth:`~Endpoint.peer_closed`); it answers with stream writes (:meth:`~Endpoint.take`).
It never does IO and never reads a clock, so the same object runs in a virtual-time
simulation (:mod:`.engine`) and over real sockets (:mod:`.sockets`).

After the handshake both ends use the project's crypto (:class:`~dissector.crypto.CbcEncryptor`
to send, :class:`~dissector.crypto.CbcDirection` to receive, Particle's IV rule) and its
CoAP codec and message classifier. Each endpoint follows the scenario's steps: it starts
its own steps when the previous step is complete from its point of view, and recognises
the peer's steps by their request kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dissector.coap import CoapError, CoapMessage
from dissector.coap import decode as coap_decode
from dissector.coap import encode as coap_encode
from dissector.crypto import CbcDirection, CbcEncryptor
from dissector.model import Direction
from dissector.particle.kinds import classify
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import LogEntry, Step

__all__ = ["Await", "Endpoint"]

#: Simulated processing time between two writes of one endpoint, seconds.
WRITE_GAP = 0.0001


@dataclass(slots=True)
class Await:
    """An answer an endpoint waits for: an ACK with message ID ``mid`` (with a response
    code when ``need_code``), or a separate response carrying ``token``."""

    mid: int | None = None
    token: bytes | None = None
    need_code: bool = False

    def matches(self, msg: CoapMessage) -> bool:
        """True if ``msg`` completes the exchange."""
        if self.mid is not None and msg.type == 2 and msg.mid == self.mid:
            return msg.code != 0 or not self.need_code
        return (
            self.token is not None
            and msg.type in (0, 1)
            and msg.code >= 0x40
            and msg.token == self.token
        )


class Endpoint:
    """Base of :class:`~dissector.simulate.device.SimDevice` and
    :class:`~dissector.simulate.cloud.SimCloud`."""

    role = ""
    #: direction of what this endpoint sends
    sends = Direction.DEVICE_TO_CLOUD

    def __init__(self, steps: Sequence[Step], rng: ByteSource) -> None:
        self.steps = tuple(steps)
        self.rng = rng
        self.now = 0.0
        #: Everything sent and received, in order.
        self.log: list[LogEntry] = []
        self.established = False
        self.closed = False
        self.closed_by_me = False
        self.close_reason = ""
        self._out: list[tuple[float, bytes]] = []
        self._last_write = float("-inf")
        self._rx = bytearray()
        self._enc: CbcEncryptor | None = None
        self._dec: CbcDirection | None = None
        self._mid = 0
        self._token = 0
        self._next = 0
        self._due: float | None = None
        self._await: Await | None = None
        self._timers: dict[str, float] = {}

    # -- IO interface -----------------------------------------------------------------------

    def connected(self, now: float) -> None:
        """The TCP connection is up."""
        self.now = now

    def receive(self, data: bytes, now: float) -> None:
        """Stream bytes from the peer."""
        if self.closed:
            return
        self.now = max(self.now, now)
        self._rx += data
        self._on_bytes()
        self._advance()

    def peer_closed(self, now: float) -> None:
        """The peer closed the connection."""
        self.now = max(self.now, now)
        if not self.closed:
            self.closed = True
            self.close_reason = self.close_reason or "peer closed the connection"
            self.log.append(LogEntry(self.now, False, note="closed by peer"))

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: only input can wake it)."""
        if self.closed:
            return None
        times = list(self._timers.values())
        if self._due is not None:
            times.append(self._due)
        return min(times) if times else None

    def tick(self, now: float) -> None:
        """Let time pass to ``now``; fire due timers and due steps."""
        if self.closed:
            return
        self.now = max(self.now, now)
        for name, when in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if when <= self.now and name in self._timers:
                del self._timers[name]
                self._on_timer(name)
        self._advance()

    def take(self) -> list[tuple[float, bytes]]:
        """The writes made since the last call: ``(ts, bytes)``."""
        out, self._out = self._out, []
        return out

    @property
    def completed(self) -> bool:
        """The handshake succeeded and every step is done, nothing awaited."""
        return self.established and self._next >= len(self.steps) and not self._busy()

    @property
    def finished(self) -> bool:
        """Every step done and nothing awaited (or the connection is closed)."""
        if self.closed:
            return True
        return self.established and self._next >= len(self.steps) and not self._busy()

    # -- sending ----------------------------------------------------------------------------

    def _write(self, data: bytes, note: str = "", coap: CoapMessage | None = None) -> None:
        ts = max(self.now, self._last_write + WRITE_GAP)
        self._last_write = ts
        self._out.append((ts, data))
        self.log.append(LogEntry(ts, True, coap, note, data if coap is None else b""))

    def _send_raw(self, data: bytes, note: str) -> None:
        self._write(bytes(data), note)

    def _send(self, msg: CoapMessage) -> CoapMessage:
        if self._enc is None:
            raise SimulationError(f"the {self.role} sent a message before the handshake")
        try:
            plaintext = coap_encode(msg)
        except CoapError as exc:
            raise SimulationError(f"cannot encode a CoAP message: {exc}") from None
        self._write(self._enc.encrypt_frame(plaintext), coap=msg)
        return msg

    def _next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def _close(self, reason: str) -> None:
        """Give up: close the connection (the engine sends the FIN)."""
        if not self.closed:
            self.closed = True
            self.closed_by_me = True
            self.close_reason = reason
            self.log.append(LogEntry(self.now, True, note=f"close: {reason}"))

    # -- receiving --------------------------------------------------------------------------

    def _take_blob(self, size: int) -> bytes | None:
        if len(self._rx) < size:
            return None
        blob = bytes(self._rx[:size])
        del self._rx[:size]
        return blob

    def _log_received(self, note: str, data: bytes) -> None:
        self.log.append(LogEntry(self.now, False, None, note, data))

    def _start_crypto(self, key: bytes, iv: bytes) -> None:
        self._enc = CbcEncryptor(key, iv)
        self._dec = CbcDirection(key, iv)

    def _frames(self) -> None:
        """Decrypt and handle every complete frame in the buffer."""
        while self._dec is not None and not self.closed and len(self._rx) >= 2:
            size = int.from_bytes(self._rx[:2], "big")
            if len(self._rx) < 2 + size:
                return
            ct = bytes(self._rx[2 : 2 + size])
            del self._rx[: 2 + size]
            result = self._dec.decrypt(ct)
            if result.plaintext is None or not result.ok:
                self.log.append(LogEntry(self.now, False, note="undecryptable frame", data=ct))
                self._close(f"cannot decrypt a frame ({result.reason})")
                return
            try:
                msg = coap_decode(result.plaintext)
            except CoapError as exc:
                self.log.append(
                    LogEntry(self.now, False, note=f"bad CoAP: {exc}", data=result.plaintext)
                )
                continue
            self.log.append(LogEntry(self.now, False, msg))
            self._on_message(msg, classify(msg, self.sends.reverse))

    # -- steps ------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self._await is not None

    def _advance(self) -> None:
        """Start this endpoint's due steps."""
        while not self.closed and self.established and self._next < len(self.steps):
            if self._busy():
                return
            st = self.steps[self._next]
            if st.by != self.role:
                return
            if self._due is None:
                self._due = self.now + st.delay
            if self.now < self._due:
                return
            self._due = None
            self._next += 1
            self._start_step(st)

    def _peer_step_done(self, kind: str | None = None, action: str | None = None) -> None:
        """The peer's current step is complete from this side (its request handled)."""
        if self._next >= len(self.steps):
            return
        st = self.steps[self._next]
        if st.by == self.role:
            return
        if (action is not None and st.action == action) or (
            action is None and kind in st.kinds and st.action != "ota"
        ):
            self._next += 1

    def _check_await(self, msg: CoapMessage) -> bool:
        """Complete the awaited exchange if ``msg`` answers it."""
        if self._await is not None and self._await.matches(msg):
            self._await = None
            return True
        return False

    # -- hooks ------------------------------------------------------------------------------

    def _on_bytes(self) -> None:
        raise NotImplementedError

    def _on_message(self, msg: CoapMessage, kind: str) -> None:
        raise NotImplementedError

    def _start_step(self, st: Step) -> None:
        raise NotImplementedError

    def _on_timer(self, name: str) -> None:
        """A timer set in ``self._timers`` fired."""
