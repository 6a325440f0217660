"""Scenario descriptions: what a simulated capture contains, declaratively.

A :class:`Scenario` is a name, a transport and a ``build`` function turning a
:class:`BuildContext` (keys, seed, start time, segment size) into a :class:`Simulation`
(packets, per-session logs, extra key files). TCP scenarios are written as
:class:`TcpSession` values (a :class:`DeviceProfile`, a :class:`CloudProfile` and a list of
:class:`Step` values with their timing) and built by :func:`tcp_scenario`; any other
transport (DTLS) supplies its own ``build`` returning packets, which is all the CLI, the
pcap writer and the impairments need.

Steps run in order; each one starts ``delay`` seconds after its initiator has seen the
previous one complete. Device steps: ``event``, ``subscribe``, ``time``, ``ping``. Cloud
steps: ``describe``, ``function``, ``variable``, ``cloud_event``, ``signal``,
``key_change``, ``cloud_ping``, ``ota``. The answers (ACKs, results, OTA verdicts) are not
scripted: the simulated device and cloud produce them (see :mod:`.device`, :mod:`.cloud`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dissector.coap import CoapMessage
from dissector.model import Direction
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource

__all__ = [
    "CLOUD_ACTIONS",
    "DEFAULT_START",
    "DEVICE_ACTIONS",
    "FIRMWARES",
    "BuildContext",
    "CloudProfile",
    "DeviceProfile",
    "Firmware",
    "KeySet",
    "LogEntry",
    "Packet",
    "Scenario",
    "SessionResult",
    "Simulation",
    "Step",
    "TcpSession",
    "WireMessage",
    "step",
]

#: Capture time of a scenario's start (2023-11-14T22:13:20Z).
DEFAULT_START = 1_700_000_000.0

Packet = tuple[float, bytes]

#: action → the CoAP request kinds that start it (as the dissector names them).
DEVICE_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "event": ("PublicEvent", "PrivateEvent"),
    "subscribe": ("Subscribe",),
    "time": ("GetTime",),
    "ping": ("Ping",),
}
CLOUD_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "describe": ("Describe",),
    "function": ("FunctionCall",),
    "variable": ("VariableRequest",),
    "cloud_event": ("PublicEvent", "PrivateEvent"),
    "signal": ("SignalStart", "SignalStop"),
    "key_change": ("KeyChange",),
    "cloud_ping": ("Ping",),
    "ota": ("UpdateBegin",),
}


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted action, started ``delay`` seconds after the previous step completed."""

    action: str
    delay: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def by(self) -> str:
        """``"device"`` or ``"cloud"``: who starts it."""
        return "device" if self.action in DEVICE_ACTIONS else "cloud"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The request kinds that start this step."""
        return DEVICE_ACTIONS.get(self.action) or CLOUD_ACTIONS[self.action]


def step(action: str, delay: float = 0.0, **params: Any) -> Step:
    """Build a :class:`Step`; raises :class:`SimulationError` for an unknown action."""
    if action not in DEVICE_ACTIONS and action not in CLOUD_ACTIONS:
        known = ", ".join(sorted([*DEVICE_ACTIONS, *CLOUD_ACTIONS]))
        raise SimulationError(f"unknown step {action!r} (known: {known})")
    if delay < 0:
        raise SimulationError(f"step delay must not be negative ({delay})")
    return Step(action, float(delay), dict(params))


@dataclass(frozen=True, slots=True)
class Firmware:
    """What a device firmware generation does on the wire (spec §2.3, §4.3, §5.1, §11).

    ``salt``: ``"be"`` (SparkProtocol: Core, Photon ≤ 0.7) or ``"le"`` (LightSSL channel).
    ``tokens``: first device token = ``"salt"`` (salt[2] + 1), ``"one"`` (1, as the 0.7.0
    virtual device) or ``"random"`` (LightSSL: a random start).
    """

    label: str
    hello: str
    hello_flags: int
    salt: str
    tokens: str
    legacy_identity: bool = False
    require_cloud_hello: bool = True
    chunk_missed_confirmable: bool = True
    update_ready_flag: bool = True
    fast_ota: bool = True
    chunk_missed_timeout: float | None = None
    key_change_ack: bool = True
    system_version: int = 0


FIRMWARES: Mapping[str, Firmware] = {
    "core-2014": Firmware(
        "Spark Core, 2014 firmware (SparkProtocol)",
        hello="A",
        hello_flags=0,
        salt="be",
        tokens="salt",
        legacy_identity=True,
        require_cloud_hello=False,
        update_ready_flag=False,
        fast_ota=False,
        chunk_missed_timeout=3.0,
        key_change_ack=False,
    ),
    "0.7": Firmware(
        "Photon/P1, Device OS ≤ 0.7 (SparkProtocol)",
        hello="B",
        hello_flags=0,
        salt="be",
        tokens="salt",
        chunk_missed_timeout=3.0,
    ),
    "virtual-0.7": Firmware(
        "Device OS 0.7.0 virtual device (LightSSL channel, as in the reference captures)",
        hello="B",
        hello_flags=0,
        salt="le",
        tokens="one",
    ),
    "1.x": Firmware(
        "Photon/P1, Device OS 0.8 – 2.x (LightSSL channel)",
        hello="B",
        hello_flags=0x02,
        salt="le",
        tokens="random",
        chunk_missed_confirmable=False,
    ),
    "3.x": Firmware(
        "Device OS ≥ 3.0 in TCP mode (Hello variant C)",
        hello="C",
        hello_flags=0x16,
        salt="le",
        tokens="random",
        chunk_missed_confirmable=False,
        system_version=0x1400,
    ),
}


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A simulated device: its identity, firmware generation and application.

    ``functions``: name → result (an int, or a mapping argument → int; other arguments
    give -1). ``variables``: name → ``(type, value)`` with type ``int``, ``double``,
    ``bool`` or ``string``. ``server_key``: name (in the :class:`KeySet`) of the server
    public key the device trusts.
    """

    device_id: str
    firmware: str = "1.x"
    platform_id: int = 6
    product_id: int = 0xFFFF
    product_version: int = 0xFFFF
    functions: Mapping[str, int | Mapping[str, int]] = field(default_factory=dict)
    variables: Mapping[str, tuple[str, Any]] = field(default_factory=dict)
    server_key: str = "server"

    @property
    def fw(self) -> Firmware:
        """The :class:`Firmware` entry; raises :class:`SimulationError` if unknown."""
        try:
            return FIRMWARES[self.firmware]
        except KeyError:
            known = ", ".join(FIRMWARES)
            raise SimulationError(f"unknown firmware {self.firmware!r} ({known})") from None


@dataclass(frozen=True, slots=True)
class CloudProfile:
    """A simulated cloud, after the Node.js reference servers (spec §3.5, §11).

    ``flavour``: ``"spark-protocol"`` (Hello with a token, empty ACKs with token ``00``,
    ACK 4.00 to user events) or ``"brewskey"`` (no Hello token, empty ACKs without token,
    user events not acknowledged). ``key``: name of the server private key that decrypts
    the identity; ``signing_key``: another key to sign the session key with (a device then
    rejects the signature). ``knows_device``: False → close after the identity.
    ``device_key``: name of the device public key the cloud has on file (None: the device's
    real key). ``send_hello``: False reproduces the 2014 firmware test fixtures.
    """

    flavour: str = "spark-protocol"
    key: str = "server"
    signing_key: str | None = None
    knows_device: bool = True
    device_key: str | None = None
    send_hello: bool = True
    mid_start: int | None = None
    token_start: int = 0
    nonce: bytes | None = None
    credentials: bytes | None = None
    session_key_message: bytes | None = None

    def __post_init__(self) -> None:
        if self.flavour not in ("spark-protocol", "brewskey"):
            raise SimulationError(f"unknown cloud flavour {self.flavour!r}")


@dataclass(frozen=True, slots=True)
class TcpSession:
    """One TCP connection of a scenario.

    ``start``: seconds after the scenario start; None = ``gap`` seconds after the previous
    session ended. ``close``: who closes at the end (``"device"``, ``"cloud"``, or None to
    leave the connection open); a failed handshake is closed by the side that gave up.
    """

    device: DeviceProfile
    steps: Sequence[Step] = ()
    cloud: CloudProfile = field(default_factory=CloudProfile)
    start: float | None = 0.0
    gap: float = 1.0
    close: str | None = "device"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What one endpoint sent or received: a CoAP message or a handshake/connection note."""

    ts: float
    sent: bool
    coap: CoapMessage | None = None
    note: str = ""
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class WireMessage:
    """One CoAP message a simulation put on the wire (for comparing with a dissection)."""

    ts: float
    session: int
    direction: Direction
    coap: CoapMessage


@dataclass(slots=True)
class SessionResult:
    """The outcome of one simulated session: stream writes, both logs, secrets."""

    index: int
    device_id: str
    writes: list[tuple[float, Direction, bytes]]
    device_log: list[LogEntry]
    cloud_log: list[LogEntry]
    nonce: bytes | None
    credentials: bytes | None
    outcome: str
    closed_by: str | None
    end: float
    device_port: int = 0
    #: A ready key log line for transports without a nonce (DTLS: NSS CLIENT_RANDOM).
    keylog: str | None = None

    def keylog_line(self) -> str | None:
        """``PARTICLE_TCP <nonce> <credentials>`` when the cloud made a session key, or the
        session's NSS ``CLIENT_RANDOM`` line for DTLS."""
        if self.nonce is None or self.credentials is None:
            return self.keylog
        return f"PARTICLE_TCP {self.nonce.hex()} {self.credentials.hex()}"

    def sent(self) -> list[WireMessage]:
        """Every CoAP message either side sent, in time order."""
        out = [
            WireMessage(e.ts, self.index, Direction.DEVICE_TO_CLOUD, e.coap)
            for e in self.device_log
            if e.sent and e.coap is not None
        ]
        out += [
            WireMessage(e.ts, self.index, Direction.CLOUD_TO_DEVICE, e.coap)
            for e in self.cloud_log
            if e.sent and e.coap is not None
        ]
        out.sort(key=lambda s: s.ts)
        return out


@dataclass(slots=True)
class Simulation:
    """What a scenario build produced: packets (``linktype``), sessions, extra key files."""

    packets: list[Packet]
    linktype: int = 1
    sessions: list[SessionResult] = field(default_factory=list)
    key_files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def keylog(self) -> str:
        """Key log lines of every session with a session key (empty string if none)."""
        lines = [line for s in self.sessions if (line := s.keylog_line())]
        return "".join(f"{line}\n" for line in lines)

    def sent(self) -> list[WireMessage]:
        """Every CoAP message of every session, in time order."""
        out = [m for s in self.sessions for m in s.sent()]
        out.sort(key=lambda s: s.ts)
        return out


class KeySet:
    """The keys a scenario run uses, by name: ``"server"`` (the cloud's RSA-2048 key),
    device IDs (RSA-1024 device keys) and any other name a scenario mentions (stale or
    rogue keys of failure demos). A missing key is generated deterministically from the
    seed and the name (2048 bits when the name contains ``server``, else 1024) and
    remembered in :attr:`generated`. Public-only keys (:meth:`add_public`) serve fixtures
    whose private half is unknown."""

    def __init__(self, seed: int | str | None = 0) -> None:
        self.seed = seed
        self.rsa: dict[str, rsa.RSAPrivateKey] = {}
        self.public: dict[str, rsa.RSAPublicKey] = {}
        self.ec: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.generated: list[str] = []

    def add(self, name: str, key: rsa.RSAPrivateKey) -> None:
        """Use the private ``key`` under ``name``."""
        self.rsa[name] = key

    def add_public(self, name: str, key: rsa.RSAPublicKey) -> None:
        """Use a public-only ``key`` under ``name`` (its private half is unknown)."""
        self.public[name] = key

    def rsa_key(self, name: str, bits: int | None = None) -> rsa.RSAPrivateKey:
        """The private RSA key called ``name``, generated if unknown."""
        key = self.rsa.get(name)
        if key is None:
            if name in self.public:
                raise SimulationError(f"only the public half of key {name!r} is known")
            from dissector.simulate.keygen import generate_rsa_key

            size = bits or (2048 if "server" in name else 1024)
            key = generate_rsa_key(size, ByteSource(f"{self.seed!r}/key/{name}"))
            self.rsa[name] = key
            self.generated.append(name)
        return key

    def any_key(self, name: str) -> rsa.RSAPrivateKey | rsa.RSAPublicKey:
        """The private key called ``name`` if known, else its public half, else generated."""
        if name not in self.rsa and name in self.public:
            return self.public[name]
        return self.rsa_key(name)

    def public_key(self, name: str) -> rsa.RSAPublicKey:
        """The public half of the key called ``name`` (generated if unknown)."""
        key = self.any_key(name)
        return key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key

    def __repr__(self) -> str:
        return (
            f"KeySet(rsa={sorted(self.rsa)}, public={sorted(self.public)}, "
            f"generated={self.generated})"
        )


@dataclass(slots=True)
class BuildContext:
    """Inputs of a scenario build."""

    keys: KeySet
    seed: int | str = 0
    start: float = DEFAULT_START
    segment_size: int = 1460
    latency: float = 0.0004

    def rng(self, label: str) -> ByteSource:
        """An independent byte source for one part of the build."""
        return ByteSource(self.seed).fork(label)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, buildable scenario.

    ``transport``: ``"tcp"`` or ``"udp"`` (DTLS). ``build``: context → :class:`Simulation`.
    ``sessions``: the declarative TCP description (empty for other transports).
    ``summary``: one line; ``shows``: what a user sees when dissecting it (README text).
    ``key_names``: names of the :class:`KeySet` keys that decrypt it (written with the
    capture); ``demo_keys``: names of keys kept apart (wrong/missing-key demos).
    """

    name: str
    transport: str
    build: Callable[[BuildContext], Simulation]
    summary: str = ""
    shows: str = ""
    sessions: tuple[TcpSession, ...] = ()
    key_names: tuple[str, ...] = ()
    demo_keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
