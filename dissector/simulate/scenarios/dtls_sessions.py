"""DTLS scenarios: Particle's UDP protocol (spec §6) as Gen3 and Electron devices speak it.

* ``dtls-gen3-session`` — an Argon (Device OS ≥ 4.0): full handshake with the cookie
  round and a cloud-assigned 8-byte CID (device records of type 25), Hello variant C,
  events, a subscription, describe, a function call, a variable read, pings both ways.
* ``dtls-gen3-resumed`` — the same session after the device slept: a new port, no
  handshake, the first record marked 253, a ping instead of the Hello, then type 25 again.
* ``dtls-electron-session`` — an Electron (Device OS 1.x, before 3.1): no CID, Hello
  variant B, piggybacked variable and describe answers; plain type-23 records that
  Wireshark/tshark also decrypt with the NSS key log.
* ``dtls-electron-resumed`` — that session resumed from a new port: application records
  marked 254 with the ``device ID ‖ 0x0c`` trailer until the cloud's first reply.
* ``dtls-retransmission`` — a Gen3 session whose device event is retransmitted twice
  (4 s and 8 s timers plus jitter) and whose function call the cloud retransmits.

Each build returns a :class:`~dissector.simulate.scenario.Simulation` whose ``key_files``
hold the session's NSS key log, its persisted session (binary ``SessionPersistData`` and
text form), the device private key (SEC1 DER), its ``device_id.txt`` and the 320-byte UDP
server key file, by their paths under ``captures/keys/``. ``python -m
dissector.simulate.scenarios.dtls_sessions [DIR]`` writes them all (default ``captures``).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dissector.capture.writer import PcapWriter
from dissector.model import Direction
from dissector.simulate import messages as m
from dissector.simulate.dtls import DtlsSessionBuilder
from dissector.simulate.dtls_handshake import ephemeral_key
from dissector.simulate.dtls_pcap import UdpFlow, build_udp_packets
from dissector.simulate.dtls_persist import device_key_der, udp_server_key_file
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import (
    BuildContext,
    KeySet,
    LogEntry,
    Scenario,
    SessionResult,
    Simulation,
)

__all__ = [
    "CLOUD",
    "ELECTRON_ID",
    "GEN3_ID",
    "SCENARIOS",
    "SERVER_KEY_NAME",
    "build_electron_resumed",
    "build_electron_session",
    "build_gen3_resumed",
    "build_gen3_session",
    "build_retransmission",
    "ec_key",
    "electron_resumed",
    "electron_session",
    "gen3_resumed",
    "gen3_session",
    "main",
    "retransmission_session",
    "write_scenarios",
]

GEN3_ID = "e00fce681f2c4b7d9a3e5c60"
"""The simulated Argon (nRF52840: fixed ``e00fce68`` prefix + DEVICEID register)."""
ELECTRON_ID = "3b0034000b47343432313031"
"""The simulated Electron (STM32 96-bit unique ID)."""
SERVER_KEY_NAME = "dtls-server"
CLOUD = ("10.0.0.1", 5684)
DEVICE_IP = "10.0.0.2"

_D2C = Direction.DEVICE_TO_CLOUD
_LATENCY = 0.03  # one-way, seconds
_DEVICE_CRYPTO = 0.35  # ECDH + ECDSA on the device before its second flight
_SLEEP = 600.0  # between a session and its resumption

GEN3_HELLO: dict[str, Any] = {
    "product_id": 12,
    "product_version": 0xFFFF,
    "flags": 0x02 | 0x04 | 0x10 | 0x80,
    "platform_id": 12,
    "system_version": 4000,
    "max_message_size": 1152,
    "max_binary_size": 0x000F4000,
    "ota_chunk_size": 1024,
}
ELECTRON_HELLO: dict[str, Any] = {
    "product_id": 10,
    "product_version": 0xFFFF,
    "flags": 0x02,
    "platform_id": 10,
}
APP_DESCRIBE = {"f": ["led"], "v": {"temp": 9, "counter": 2}}


# --------------------------------------------------------------------------- keys


def ec_key(keys: KeySet, name: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 key called ``name`` in ``keys``; derived from the key set's seed and the
    name when missing (and remembered in ``keys.ec`` / ``keys.generated``)."""
    key = keys.ec.get(name)
    if key is None:
        key = ephemeral_key(ByteSource(f"{keys.seed!r}/ec-key/{name}"))
        keys.ec[name] = key
        keys.generated.append(name)
    return key


def _device_files(keys: KeySet, folder: str, device_id: str) -> dict[str, bytes]:
    """A device's key folder as Device OS keeps it: private key, ID, server key file."""
    return {
        f"{folder}/device_key.der": device_key_der(ec_key(keys, device_id)),
        f"{folder}/device_id.txt": f"{device_id}\n".encode(),
        f"{folder}/server_key_udp_with_address.der": udp_server_key_file(
            ec_key(keys, SERVER_KEY_NAME), *CLOUD
        ),
    }


def _session_files(name: str, b: DtlsSessionBuilder, blob_size: int) -> dict[str, bytes]:
    files = {
        f"{name}.persist": b.session_blob(blob_size),
        f"{name}.persist.txt": b.session_text().encode(),
    }
    if b.server_random is not None and b.handshake_messages:
        files[f"{name}.keylog"] = f"{b.keylog_line()}\n".encode()
    return files


# --------------------------------------------------------------------------- sessions


def _new(
    ctx: BuildContext, label: str, device_id: str, start: float, **kw: object
) -> DtlsSessionBuilder:
    return DtlsSessionBuilder(
        ec_key(ctx.keys, device_id),
        ec_key(ctx.keys, SERVER_KEY_NAME),
        device_id,
        rng=ctx.rng(label),
        start=start,
        step=_LATENCY,
        cloud=CLOUD,
        **kw,  # type: ignore[arg-type]
    )


def _handshake(b: DtlsSessionBuilder) -> None:
    """The full handshake with realistic gaps (network latency, device crypto time)."""
    b.client_hello(at=b.now)
    if b.cookie_round:
        b.hello_verify_request()
        b.client_hello()
    b.server_flight()
    b.wait(_DEVICE_CRYPTO)
    b.client_flight()
    b.server_finished()
    b.wait(0.05)


def gen3_session(ctx: BuildContext) -> DtlsSessionBuilder:
    """The Argon's session of ``dtls-gen3-session`` (also the start of ``-resumed``)."""
    b = _new(ctx, "dtls-gen3-session", GEN3_ID, ctx.start)
    _handshake(b)
    b.device_hello("C", **GEN3_HELLO)
    b.device_event("spark/device/last_reset", "power_down")
    b.subscribe("hook-response/temp")
    b.wait(0.2)
    b.describe(APP_DESCRIBE)
    b.wait(1.0)
    b.device_event("temp", "21.5", private=False, ttl=300)
    b.wait(4.0)
    b.function_call("led", "on", 1)
    b.wait(2.0)
    b.variable_read("temp", m.double_value(21.5))
    b.variable_read("counter", m.int32_value(42))
    b.wait(25.0)
    b.ping()
    b.wait(5.0)
    b.ping(from_device=False)
    b.wait(3.0)
    b.device_event("temp", "21.7", private=False, ttl=300)
    return b


def gen3_resumed(ctx: BuildContext) -> tuple[DtlsSessionBuilder, DtlsSessionBuilder]:
    """``dtls-gen3-session`` and its resumption after :data:`_SLEEP` seconds."""
    first = gen3_session(ctx)
    b = DtlsSessionBuilder.resume(
        first.export_session(),
        GEN3_ID,
        rng=ctx.rng("dtls-gen3-resumed"),
        start=first.now + _SLEEP,
        step=_LATENCY,
        cloud=CLOUD,
    )
    b.ping(at=b.now)
    b.device_event("temp", "19.25", private=False, ttl=300)
    b.wait(2.0)
    b.function_call("led", "off", 0)
    b.variable_read("temp", m.double_value(19.25))
    b.wait(1.0)
    b.cloud_event("setpoint", "20")
    return first, b


def electron_session(ctx: BuildContext) -> DtlsSessionBuilder:
    """The Electron's session of ``dtls-electron-session`` (Device OS 1.x, no CID)."""
    b = _new(
        ctx,
        "dtls-electron-session",
        ELECTRON_ID,
        ctx.start,
        connection_id=False,
        pack_flights=False,
    )
    _handshake(b)
    b.device_hello("B", **ELECTRON_HELLO)
    b.device_event("spark/hardware/max_binary", "131072")
    b.subscribe("spark")
    b.time_request()
    b.wait(0.3)
    b.describe(APP_DESCRIBE, piggybacked=True)
    b.wait(2.0)
    b.variable_read("counter", m.int32_value(7), piggybacked=True)
    b.function_call("led", "on", 1)
    b.wait(3.0)
    b.device_event("temp", "18.0")
    b.wait(20.0)
    b.ping()
    return b


def electron_resumed(ctx: BuildContext) -> tuple[DtlsSessionBuilder, DtlsSessionBuilder]:
    """``dtls-electron-session`` and its resumption from a new port (254 trailer)."""
    first = electron_session(ctx)
    b = DtlsSessionBuilder.resume(
        first.export_session(),
        ELECTRON_ID,
        rng=ctx.rng("dtls-electron-resumed"),
        start=first.now + _SLEEP,
        step=_LATENCY,
        cloud=CLOUD,
    )
    b.ping(at=b.now)
    b.device_event("temp", "17.5")
    b.wait(2.0)
    b.variable_read("counter", m.int32_value(8), piggybacked=True)
    return first, b


def retransmission_session(ctx: BuildContext) -> DtlsSessionBuilder:
    """A Gen3 session with retransmitted CONs in both directions."""
    b = _new(ctx, "dtls-retransmission", GEN3_ID, ctx.start)
    _handshake(b)
    b.device_hello("C", **GEN3_HELLO)
    b.wait(1.0)
    (event,) = b.device_event("alarm", "door open", private=False, ack=None)
    # The first two transmissions are lost beyond the capture point: the device retransmits
    # after its ACK timeout (4 s, then 8 s, each plus up to 50 %); the third is acknowledged.
    b.retransmit(event, _D2C, attempt=1)
    b.retransmit(event, _D2C, attempt=2)
    b.cloud_sends(m.empty_ack(event.mid))
    b.wait(2.0)
    call, ack, _ret, _ack2 = b.function_call("unlock", "front", 1)
    # The device's ACK never reached the cloud: it retransmits the call, the device answers
    # the duplicate from its cache with the same ACK.
    b.retransmit(call, Direction.CLOUD_TO_DEVICE, attempt=1)
    b.device_sends(ack)
    return b


# --------------------------------------------------------------------------- simulations


def _result(index: int, b: DtlsSessionBuilder, outcome: str, port: int) -> SessionResult:
    device_log = [
        LogEntry(s.ts, s.direction is _D2C, s.coap, data=s.plaintext)
        for s in b.messages
        if s.coap is not None
    ]
    cloud_log = [LogEntry(e.ts, not e.sent, e.coap, data=e.data) for e in device_log]
    return SessionResult(
        index=index,
        device_id=b.device_id.hex(),
        writes=list(b.datagrams),
        device_log=device_log,
        cloud_log=cloud_log,
        nonce=None,
        credentials=None,
        outcome=outcome,
        closed_by=None,
        end=b.now,
        device_port=port,
        keylog=_keylog_line(b),
    )


def _device_port(ctx: BuildContext, label: str) -> int:
    """The device's ephemeral UDP port for one connection (a resumed connection draws its
    own: the device comes back from a new port)."""
    return ctx.rng(f"{label}/port").uint(49152, 65535)


def _simulation(
    ctx: BuildContext,
    flows: Sequence[tuple[DtlsSessionBuilder, str, str]],
    key_files: dict[str, bytes],
    notes: list[str],
) -> Simulation:
    udp_flows = []
    sessions = []
    for i, (b, outcome, label) in enumerate(flows, 1):
        port = _device_port(ctx, label)
        udp_flows.append(UdpFlow(b.datagrams, (DEVICE_IP, port), CLOUD))
        sessions.append(_result(i, b, outcome, port))
    packets = build_udp_packets(udp_flows, seed=f"{ctx.seed!r}/udp")
    return Simulation(packets, 1, sessions, key_files, notes)


def build_gen3_session(ctx: BuildContext) -> Simulation:
    """``dtls-gen3-session``: full handshake (cookie, CID) and a working session."""
    b = gen3_session(ctx)
    files = _device_files(ctx.keys, "dtls-gen3", GEN3_ID)
    files.update(_session_files("dtls-gen3-session", b, 262))
    return _simulation(
        ctx,
        [(b, "established", "dtls-gen3-session")],
        files,
        [f"CID {b.cid.hex() if b.cid else ''}"],
    )


def build_gen3_resumed(ctx: BuildContext) -> Simulation:
    """``dtls-gen3-resumed``: only the resumed connection is in the capture."""
    _first, b = gen3_resumed(ctx)
    files = _device_files(ctx.keys, "dtls-gen3", GEN3_ID)
    files.update(_session_files("dtls-gen3-resumed", b, 262))
    return _simulation(
        ctx, [(b, "resumed", "dtls-gen3-resumed")], files, ["resumed from dtls-gen3-session"]
    )


def build_electron_session(ctx: BuildContext) -> Simulation:
    """``dtls-electron-session``: Device OS 1.x, no CID (tshark decrypts it too)."""
    b = electron_session(ctx)
    files = _device_files(ctx.keys, "dtls-electron", ELECTRON_ID)
    files.update(_session_files("dtls-electron-session", b, 220))
    return _simulation(ctx, [(b, "established", "dtls-electron-session")], files, [])


def build_electron_resumed(ctx: BuildContext) -> Simulation:
    """``dtls-electron-resumed``: the 254 move-session trailer."""
    _first, b = electron_resumed(ctx)
    files = _device_files(ctx.keys, "dtls-electron", ELECTRON_ID)
    files.update(_session_files("dtls-electron-resumed", b, 220))
    return _simulation(
        ctx,
        [(b, "resumed", "dtls-electron-resumed")],
        files,
        ["resumed from dtls-electron-session"],
    )


def build_retransmission(ctx: BuildContext) -> Simulation:
    """``dtls-retransmission``: retransmitted CONs both ways."""
    b = retransmission_session(ctx)
    files = _device_files(ctx.keys, "dtls-gen3", GEN3_ID)
    files.update(_session_files("dtls-retransmission", b, 262))
    return _simulation(ctx, [(b, "established", "dtls-retransmission")], files, [])


def _scenario(
    name: str, build: Callable[[BuildContext], Simulation], summary: str, shows: str, *tags: str
) -> Scenario:
    return Scenario(name, "udp", build, summary, shows, tags=("dtls", *tags))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _scenario(
            "dtls-gen3-session",
            build_gen3_session,
            "Argon, Device OS ≥ 4: DTLS handshake with cookie and CID, Hello C, events, "
            "describe, function call, variable reads, pings",
            "every CoAP message decrypted from the key log or the persisted session; the "
            "device's raw public key and its CID records (type 25)",
            "gen3",
            "cid",
        ),
        _scenario(
            "dtls-gen3-resumed",
            build_gen3_resumed,
            "the Argon's session resumed from a new port without a handshake (253 marker, "
            "ping instead of Hello)",
            "decrypted from the persisted session alone; the 253 move marker",
            "gen3",
            "cid",
            "resumed",
        ),
        _scenario(
            "dtls-electron-session",
            build_electron_session,
            "Electron, Device OS 1.x: DTLS handshake without CID, Hello B, piggybacked answers",
            "every CoAP message decrypted; tshark decrypts it too with the NSS key log",
            "electron",
        ),
        _scenario(
            "dtls-electron-resumed",
            build_electron_resumed,
            "the Electron's session resumed from a new port (254 + device-ID trailer)",
            "decrypted from the persisted session alone; the device ID from the trailer",
            "electron",
            "resumed",
        ),
        _scenario(
            "dtls-retransmission",
            build_retransmission,
            "Argon session with a device event retransmitted twice and a cloud function call "
            "retransmitted",
            "retransmitted CONs flagged as retransmissions",
            "gen3",
            "cid",
        ),
    )
}


# --------------------------------------------------------------------------- files


def write_scenarios(
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    *,
    seed: int | str = 0,
) -> list[Path]:
    """Build the scenarios and write ``<out>/<name>.pcap`` and their ``<out>/keys/...``
    files; returns the paths written."""
    out = Path(out_dir)
    written: list[Path] = []
    keys = KeySet(seed)
    for name in names or list(SCENARIOS):
        sim = SCENARIOS[name].build(BuildContext(keys, seed))
        buf = io.BytesIO()
        writer = PcapWriter(buf, sim.linktype)
        for ts, frame in sim.packets:
            writer.write_packet(ts, frame)
        pcap = out / f"{name}.pcap"
        pcap.parent.mkdir(parents=True, exist_ok=True)
        pcap.write_bytes(buf.getvalue())
        written.append(pcap)
        for rel, data in sim.key_files.items():
            path = out / "keys" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dissector.simulate.scenarios.dtls_sessions [DIR] [--seed N] [NAME...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", nargs="?", default="captures")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    seed: int | str = int(args.seed) if args.seed.lstrip("-").isdigit() else args.seed
    for path in write_scenarios(args.out, args.only, seed=seed):
        print(path)
    return 0


def _keylog_line(builder: DtlsSessionBuilder) -> str | None:
    """The session's NSS line (a resumed session logs the line of the session it resumes),
    or None before any handshake."""
    try:
        return builder.keylog_line()
    except SimulationError:  # no session secrets (nothing to log)
        return None


if __name__ == "__main__":
    sys.exit(main())
