"""TCP scenarios of whole sessions: a Photon, a Spark Core, several devices, a hidden key."""

from __future__ import annotations

from dissector.simulate.engine import tcp_scenario
from dissector.simulate.scenario import CloudProfile, Scenario, TcpSession, step
from dissector.simulate.scenarios._common import (
    CORE_ID,
    HIDDEN_ID,
    P1_ID,
    PHOTON_B_ID,
    PHOTON_ID,
    core,
    photon,
)

#: Everything a Photon session shows, in the order of the reference captures.
PHOTON_STEPS = (
    step("event", 0.05, name="spark/hardware/max_binary", data="102400"),
    step("subscribe", filter="spark"),
    step("subscribe", filter="peer/", my_devices=True),
    step("time"),
    step("describe", 0.2),
    step("variable", 0.5, name="counter"),
    step("variable", 0.5, name="temp"),
    step("variable", 0.5, name="ready"),
    step("variable", 0.5, name="status"),
    step("event", 1.0, name="peer/hello", data="msg 1"),
    step("event", 0.5, name="temperature", data="21.5", private=False, ttl=3600),
    step("function", 1.0, name="led", arg="on"),
    step("function", 0.5, name="add", arg="40,7"),
    step("cloud_event", 1.0, name="peer/fromserver", data="hello device"),
    step("signal", 1.0, on=True),
    step("signal", 3.0, on=False),
    step("key_change", 1.0),
    step("ping", 15.0),
    step("cloud_ping", 5.0),
    step("event", 0.5, name="peer/hello", data="msg 2", private=True, ttl=21600),
)

PHOTON = tcp_scenario(
    "photon",
    [TcpSession(photon(), PHOTON_STEPS)],
    summary="A Photon (Device OS 1.x) and a spark-protocol cloud: every message kind",
    shows="Handshake (all checks passed), both Hellos, subscriptions, time, describe, "
    "variable reads of every type (int, double, bool, string), private/public events "
    "with TTL (the cloud answers user events with ACK 4.00 and puts token 00 on empty "
    "ACKs: info findings), function calls with results, a cloud event, signal start/stop, "
    "key change, pings both ways.",
    tags=("tcp", "photon"),
)

CORE = tcp_scenario(
    "core",
    [
        TcpSession(
            core(),
            (
                step("time", 0.05),
                step("subscribe", filter="motion/open", my_devices=True),
                step("describe", 0.2),
                step("variable", 0.5, name="temperature"),
                step("function", 0.5, name="brew", arg="32,240"),
                step("event", 1.0, name="motion-detected", private=False),
                step("event", 0.5, name="lake-depth/1", data="28m", ttl=21600),
                step("ping", 15.0),
            ),
        )
    ],
    summary="A Spark Core with 2014 firmware: 52-byte identity, big-endian salt",
    shows="Legacy 52-byte identity (no device public key), Hello variant A (6 bytes), "
    "message IDs seeded big-endian from the salt and first token salt[2]+1 "
    "(salt_convention: big-endian SparkProtocol), time, describe, a variable, a function "
    "call, events, a ping.",
    tags=("tcp", "core"),
)

MULTI = tcp_scenario(
    "multi-device",
    [
        TcpSession(
            photon(PHOTON_ID),
            (
                step("time", 0.05),
                step("event", 1.0, name="peer/hello", data="from A"),
                step("function", 1.0, name="led", arg="on"),
                step("variable", 1.0, name="counter"),
            ),
            cloud=CloudProfile(flavour="brewskey"),
            start=0.0,
        ),
        TcpSession(
            photon(PHOTON_B_ID, firmware="0.7"),
            (
                step("subscribe", 0.05, filter="peer/", my_devices=True),
                step("event", 1.0, name="peer/hello", data="from B"),
                step("describe", 0.5),
                step("function", 0.5, name="add", arg="2,2"),
            ),
            cloud=CloudProfile(flavour="brewskey"),
            start=0.5,
        ),
        TcpSession(
            photon(P1_ID, platform_id=8),
            (
                step("time", 0.05),
                step("variable", 0.5, name="temp"),
                step("event", 0.5, name="spark/status", data="online"),
            ),
            cloud=CloudProfile(flavour="brewskey"),
            start=1.0,
            close="cloud",
        ),
        TcpSession(
            photon(PHOTON_ID),
            (step("time", 0.05), step("event", 0.5, name="peer/hello", data="A is back")),
            cloud=CloudProfile(flavour="brewskey"),
            start=None,
            gap=2.0,
        ),
    ],
    summary="Three devices on one Brewskey cloud, one of them reconnecting",
    shows="Four TCP sessions (tcp-1..tcp-4) of three devices (Photon on Device OS 1.x, "
    "Photon on 0.7 with the big-endian salt, a P1) overlapping in time, the first device "
    "reconnecting after its session ended; a Brewskey cloud (no Hello token, no ACK for "
    "user events).",
    tags=("tcp", "multi"),
)

HIDDEN = tcp_scenario(
    "photon-no-device-key",
    [
        TcpSession(
            photon(HIDDEN_ID),
            (
                step("time", 0.05),
                step("event", 0.5, name="peer/hello", data="secret"),
                step("function", 0.5, name="led", arg="off"),
            ),
        )
    ],
    summary="A Photon whose device key is not in captures/keys",
    shows="With captures/keys only the server key applies: the identity reveals the device ID "
    "and public key, but every frame stays Encrypted (decrypt.missing_key). Add "
    "--keys captures/demo-keys/photon-no-device-key to decrypt everything.",
    key_names=("server",),
    demo_keys=(HIDDEN_ID,),
    tags=("tcp", "demo"),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (PHOTON, CORE, MULTI, HIDDEN)}

__all__ = ["CORE_ID", "PHOTON_STEPS", "SCENARIOS"]
