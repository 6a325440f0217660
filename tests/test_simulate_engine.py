"""The reactive simulated device and cloud: test vectors, firmware conventions, failures."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dissector.coap import decode as coap_decode
from dissector.crypto import CbcDirection, parse_credentials
from dissector.keys import der_total_length
from dissector.model import Direction
from dissector.particle.hello import decode_hello
from dissector.simulate import SimulationError
from dissector.simulate import messages as m
from dissector.simulate.device import SimDevice, describe_json, variable_bytes
from dissector.simulate.engine import run_session, tcp_scenario
from dissector.simulate.keyfiles import load_keyset
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import (
    FIRMWARES,
    BuildContext,
    CloudProfile,
    DeviceProfile,
    KeySet,
    SessionResult,
    TcpSession,
    step,
)

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "simulate"
PHOTON_ID = "2c0021000447353138383138"
D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


@cache
def capture_keys() -> KeySet:
    """The committed keys of the bundled captures (no key generation in these tests)."""
    return load_keyset([ROOT / "captures" / "keys"], "tests")


@cache
def demo_keys() -> KeySet:
    """The committed keys plus the demo keys (stale, rogue and old keys)."""
    demo = sorted((ROOT / "captures" / "demo-keys").iterdir())
    return load_keyset([ROOT / "captures" / "keys", *demo], "tests")


@cache
def fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "core_fixture.json").read_text())
    more = json.loads((DATA / "core_vectors_more.json").read_text())
    data["frames"] = data["frames"] + more["frames"]
    return data


def vector(test: str, direction: str) -> bytes:
    for f in fixture()["frames"]:
        if f["test"] == test and f["direction"] == direction:
            return bytes.fromhex(f["frame"])
    raise KeyError(test)


def fixture_keys() -> KeySet:
    fx = fixture()
    slot = bytes.fromhex(fx["device_private_slot"])
    key = serialization.load_der_private_key(slot[: der_total_length(slot)], None)
    server = serialization.load_der_public_key(bytes.fromhex(fx["server_public_der"]))
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(server, rsa.RSAPublicKey)
    keys = KeySet("fixture")
    keys.add(fx["device_id"], key)
    keys.add_public("server", server)
    return keys


def fixture_session(steps: Any, **cloud: Any) -> TcpSession:
    fx = fixture()
    profile = CloudProfile(
        nonce=bytes.fromhex(fx["nonce"]),
        credentials=bytes.fromhex(fx["credentials"]),
        session_key_message=bytes.fromhex(fx["session_key_message"]),
        send_hello=False,
        **cloud,
    )
    device = DeviceProfile(fx["device_id"], firmware="core-2014", platform_id=0)
    return TcpSession(device, tuple(steps), cloud=profile)


def run(session: TcpSession, keys: KeySet | None = None, seed: int = 0) -> SessionResult:
    return run_session(
        session, keys or capture_keys(), rng=ByteSource(seed).fork("s"), start=1000.0
    )


def frames(result: SessionResult, direction: Direction) -> list[bytes]:
    """The framed messages one side wrote (handshake blobs left out)."""
    skip = 1 if direction is D2C else 2
    return [w[2] for w in result.writes if w[1] is direction][skip:]


def sent(result: SessionResult, direction: Direction) -> list[Any]:
    log = result.device_log if direction is D2C else result.cloud_log
    return [e.coap for e in log if e.sent and e.coap is not None]


# -- the spec's test vectors, byte for byte -------------------------------------------------


def test_core_scenario_reproduces_the_fixture_hello_and_time_request() -> None:
    result = run(fixture_session([step("time")]), fixture_keys())
    assert result.outcome == "completed"
    assert result.writes[2][2] == bytes.fromhex(fixture()["session_key_message"])
    assert len(result.writes[1][2]) == 256  # the 52-byte legacy identity, RSA-2048
    hello, time_request = frames(result, D2C)[:2]
    assert hello == vector("HandshakeSendsExpectedHello", "d2s")
    assert time_request == vector("TimeRequestMatchesOpenSSL", "d2s")


def test_core_ota_stall_reproduces_update_begin_ready_and_chunk_missed() -> None:
    steps = [step("ota", legacy_begin=True, stall=True, size=600)]
    result = run(fixture_session(steps, mid_start=0xABCF, token_start=0x32), fixture_keys())
    assert result.outcome == "completed"
    cloud, device = frames(result, C2D), frames(result, D2C)
    assert cloud[0] == vector("EventLoopRespondsToUpdateBeginWithACK", "s2d")
    assert device[1] == vector("EventLoopRespondsToUpdateBeginWithACK", "d2s")
    assert device[2] == vector("EventLoopRespondsToUpdateBeginWithUpdateReady", "d2s")
    assert device[3] == vector("EventLoopSendsChunkMissedOnTimeout", "d2s")
    chunk_missed = result.device_log[-1].ts  # the transfer then completes
    assert [e.coap.code for e in result.device_log if e.sent and e.coap][-1] == m.CHANGED
    assert chunk_missed > result.writes[0][0] + 3.0  # the 3 s timer of the 2014 code


def test_core_signal_frames_match_the_fixture() -> None:
    steps = [step("signal", on=True), step("signal", on=False)]
    result = run(fixture_session(steps, mid_start=0xABCC, token_start=0xEE), fixture_keys())
    assert frames(result, C2D)[0] == vector("EventLoopCallsSignalWithTrueOnSignalStart", "s2d")
    acks = sent(result, D2C)[1:]
    assert [(a.type, a.code, a.mid, a.token) for a in acks] == [
        (2, m.CHANGED, 0xABCD, b"\xef"),
        (2, m.CHANGED, 0xABCE, b"\xf0"),
    ]


def sans_io_core_device() -> tuple[SimDevice, list[bytes]]:
    """A fixture Core fed nonce and session key directly (no engine), after its Hello."""
    fx = fixture()
    keys = fixture_keys()
    profile = DeviceProfile(fx["device_id"], firmware="core-2014", platform_id=0)
    device = SimDevice(
        profile, keys.rsa_key(fx["device_id"]), keys.public_key("server"), (), ByteSource(1)
    )
    device.connected(0.0)
    device.receive(bytes.fromhex(fx["nonce"]), 0.1)
    device.receive(bytes.fromhex(fx["session_key_message"]), 0.2)
    return device, [data for _, data in device.take()]


@pytest.mark.parametrize(
    ("request_test", "expected"),
    [
        (
            "EventLoopRespondsToChunkWithACK",
            [
                "EventLoopRespondsToChunkWithACK",
                "EventLoopRespondsToChunkWithChunkReceivedBADOnCRCMismatch",
            ],
        ),
        ("EventLoopRespondsToUpdateDoneWithACK", ["EventLoopRespondsToUpdateDoneWithACK"]),
    ],
)
def test_sans_io_core_device_answers_fixture_requests_byte_for_byte(
    request_test: str, expected: list[str]
) -> None:
    device, written = sans_io_core_device()
    assert written[1] == vector("HandshakeSendsExpectedHello", "d2s")
    device.receive(vector(request_test, "s2d"), 0.3)  # the fixture chunk's CRC is wrong
    assert [data for _, data in device.take()] == [vector(t, "d2s") for t in expected]


# -- firmware generations -------------------------------------------------------------------


@pytest.mark.parametrize("firmware", sorted(FIRMWARES))
def test_each_firmware_generation_has_its_hello_salt_and_tokens(firmware: str) -> None:
    fw = FIRMWARES[firmware]
    profile = DeviceProfile(PHOTON_ID, firmware=firmware, platform_id=6)
    session = TcpSession(profile, (step("time"), step("time")))
    result = run(session)
    assert result.outcome == "completed"
    assert result.credentials is not None
    creds = parse_credentials(result.credentials)
    hello, first, second = sent(result, D2C)[:3]
    seed = creds.message_id_seed_be if fw.salt == "be" else creds.message_id_seed_le
    assert hello.mid == (seed + 1) & 0xFFFF
    assert (first.mid, second.mid) == ((seed + 2) & 0xFFFF, (seed + 3) & 0xFFFF)
    assert second.token[0] == (first.token[0] + 1) & 0xFF
    if fw.tokens == "salt":
        assert first.token[0] == (creds.token_seed + 1) & 0xFF
    elif fw.tokens == "one":
        assert first.token == b"\x01"
    decoded = decode_hello(hello.payload)
    assert len(hello.payload) == {"A": 6, "B": 8, "C": 20}[fw.hello]
    assert str(decoded["variant"]).startswith(fw.hello)
    assert decoded["flags"] == fw.hello_flags
    assert result.device_log[1].note == "identity" and len(result.device_log[1].data) == 256


def test_photon_application_values_and_description() -> None:
    profile = DeviceProfile(
        PHOTON_ID,
        functions={"led": {"on": 1}, "add": 5},
        variables={
            "i": ("int", -2),
            "d": ("double", 1.5),
            "b": ("bool", False),
            "s": ("string", "x"),
        },
    )
    assert json.loads(describe_json(profile)) == {
        "f": ["led", "add"],
        "v": {"i": 2, "d": 9, "b": 1, "s": 4},
    }
    assert variable_bytes("int", -2) == b"\xff\xff\xff\xfe"
    assert variable_bytes("double", 1.5) == bytes.fromhex("000000000000f83f")
    with pytest.raises(SimulationError):
        variable_bytes("float", 1)
    steps = [
        step("function", name="led", arg="on"),
        step("function", name="led", arg="blink"),
        step("function", name="add", arg="anything"),
        step("function", name="nope"),
        step("variable", name="s"),
        step("variable", name="missing"),
    ]
    result = run(TcpSession(profile, steps))
    answers = [msg for msg in sent(result, D2C) if msg.code]
    assert [(a.code, a.payload) for a in answers[1:]] == [
        (m.CHANGED, m.int32_value(1)),
        (m.CHANGED, m.int32_value(-1)),
        (m.CHANGED, m.int32_value(5)),
        (m.NOT_FOUND, b""),
        (m.CONTENT, b"x"),
        (m.NOT_FOUND, b""),
    ]


# -- the clouds -----------------------------------------------------------------------------


def test_spark_protocol_and_brewskey_clouds_differ_as_observed() -> None:
    steps = (step("event", name="spark/x"), step("event", name="user"), step("ping"))
    spark = run(TcpSession(DeviceProfile(PHOTON_ID), steps))
    brew = run(TcpSession(DeviceProfile(PHOTON_ID), steps, cloud=CloudProfile("brewskey")))
    s_hello, *s_rest = sent(spark, C2D)
    b_hello, *b_rest = sent(brew, C2D)
    assert s_hello.token == b"\x01" and b_hello.token == b""
    assert [(a.code, a.token) for a in s_rest] == [
        (0, b"\x00"),
        (m.BAD_REQUEST, b"\x00"),
        (0, b"\x00"),
    ]
    assert [(a.code, a.token) for a in b_rest] == [(0, b""), (0, b"")]  # no ACK for "user"
    mids = {
        sent(run(TcpSession(DeviceProfile(PHOTON_ID), ()), seed=s), C2D)[0].mid for s in range(4)
    }
    assert len(mids) == 4  # a random message-ID start per session


def test_cloud_tokens_count_like_spark_protocol() -> None:
    steps = [step("cloud_event", name="e")] + [step("describe")] * 300
    result = run(TcpSession(DeviceProfile(PHOTON_ID), tuple(steps)))
    tokens = [msg.token[0] for msg in sent(result, C2D) if msg.token and msg.code == 1]
    assert tokens[252:256] == [254, 0, 1, 2]  # the Hello took token 1


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "closed_by", "reason", "writes"),
    [
        (
            TcpSession(DeviceProfile(PHOTON_ID), cloud=CloudProfile(knows_device=False)),
            "cloud",
            "unknown device",
            2,
        ),
        (
            TcpSession(DeviceProfile(PHOTON_ID, server_key="old-server")),
            "cloud",
            "cannot decrypt the identity",
            2,
        ),
        (
            TcpSession(DeviceProfile(PHOTON_ID), cloud=CloudProfile(signing_key="rogue-server")),
            "device",
            "AUTHENTICATION_ERROR",
            3,
        ),
        (
            TcpSession(DeviceProfile(PHOTON_ID), cloud=CloudProfile(device_key="stale-device")),
            "device",
            "DECRYPTION_ERROR",
            3,
        ),
    ],
)
def test_handshake_failures_close_where_the_firmware_and_cloud_give_up(
    session: TcpSession, closed_by: str, reason: str, writes: int
) -> None:
    result = run(session, demo_keys())
    assert result.outcome.startswith("handshake failed")
    assert result.closed_by == closed_by and reason in result.outcome
    assert len(result.writes) == writes  # no frame was sent


def test_brewskey_rejects_a_device_key_that_differs_from_its_records() -> None:
    cloud = CloudProfile("brewskey", device_key="stale-device")
    result = run(TcpSession(DeviceProfile(PHOTON_ID), cloud=cloud), demo_keys())
    assert result.closed_by == "cloud" and "differs" in result.outcome


def test_a_scenario_waiting_for_an_answer_that_never_comes_is_an_error() -> None:
    core = DeviceProfile(PHOTON_ID, firmware="core-2014")  # the Core ignores key changes
    with pytest.raises(SimulationError, match="stalled"):
        run(TcpSession(core, (step("key_change"),)))


def test_bad_steps_and_profiles_raise_simulation_error() -> None:
    with pytest.raises(SimulationError):
        step("dance")
    with pytest.raises(SimulationError):
        step("time", -1)
    with pytest.raises(SimulationError):
        _ = DeviceProfile(PHOTON_ID, firmware="9.9").fw
    with pytest.raises(SimulationError):
        CloudProfile("apache")
    with pytest.raises(SimulationError):
        tcp_scenario("empty", [], summary="")
    with pytest.raises(SimulationError):
        run(TcpSession(DeviceProfile("zz" * 12)))


def test_scenario_build_is_deterministic_per_seed() -> None:
    session = TcpSession(DeviceProfile(PHOTON_ID), (step("time"), step("describe")))
    scenario = tcp_scenario("t", [session], summary="t")
    one = scenario.build(BuildContext(capture_keys(), seed=5))
    two = scenario.build(BuildContext(capture_keys(), seed=5))
    other = scenario.build(BuildContext(capture_keys(), seed=6))
    assert one.packets == two.packets and one.packets != other.packets
    assert one.keylog() == two.keylog() != other.keylog()


def test_frames_decrypt_with_the_logged_credentials() -> None:
    result = run(TcpSession(DeviceProfile(PHOTON_ID), (step("time"), step("describe"))))
    assert result.credentials is not None
    creds = parse_credentials(result.credentials)
    for direction in (D2C, C2D):
        dec = CbcDirection(creds.key, creds.iv)
        got = [coap_decode(dec.decrypt(f[2:]).plaintext or b"") for f in frames(result, direction)]
        assert got == sent(result, direction)
