"""TCP handshakes that fail, as the real implementations fail them (spec §2.4)."""

from __future__ import annotations

from dissector.simulate.engine import tcp_scenario
from dissector.simulate.scenario import CloudProfile, DeviceProfile, Scenario, TcpSession, step
from dissector.simulate.scenarios._common import PHOTON_ID, photon

_STEPS = (step("time", 0.05),)

UNKNOWN_DEVICE = tcp_scenario(
    "fail-unknown-device",
    [TcpSession(photon(), _STEPS, cloud=CloudProfile(knows_device=False))],
    summary="The cloud does not know the device and closes after the identity",
    shows="Nonce and identity only; the server key reads the identity (device ID, nonce echo "
    "ok) and the cloud closes: handshake.closed_after_identity.",
    tags=("tcp", "failure"),
)

WRONG_SERVER_KEY = tcp_scenario(
    "fail-wrong-server-key",
    [TcpSession(DeviceProfile(PHOTON_ID, server_key="old-server"), _STEPS)],
    summary="The device holds a stale server key: the cloud cannot read the identity",
    shows="The device encrypted its identity to an old server key: the cloud's key cannot "
    "decrypt it (handshake.identity.wrong_server_key) and the cloud closes "
    "(handshake.closed_after_identity). The old key is in "
    "captures/demo-keys/fail-wrong-server-key/ and reads the identity.",
    demo_keys=("old-server",),
    tags=("tcp", "failure"),
)

BAD_SIGNATURE = tcp_scenario(
    "fail-bad-signature",
    [TcpSession(photon(), _STEPS, cloud=CloudProfile(signing_key="rogue-server"))],
    demo_keys=("rogue-server",),
    summary="The session key is signed with a key the device does not trust",
    shows="The cloud decrypts the identity with the right key but signs with another one "
    "(a misconfigured or impostor cloud): the device rejects the signature "
    "(AUTHENTICATION_ERROR) and closes without a frame: handshake.signature.invalid and "
    "handshake.closed_after_session_key. The key it signed with is in "
    "captures/demo-keys/fail-bad-signature/.",
    tags=("tcp", "failure"),
)

WRONG_DEVICE_KEY = tcp_scenario(
    "fail-wrong-device-key",
    [TcpSession(photon(), _STEPS, cloud=CloudProfile(device_key="stale-device"))],
    demo_keys=("stale-device",),
    summary="The cloud has a stale device public key on file",
    shows="The session key is encrypted to the stale key: the device cannot decrypt it "
    "(DECRYPTION_ERROR) and closes; with the device key the dissector says "
    "handshake.session_key.wrong_device_key. The stale key is in "
    "captures/demo-keys/fail-wrong-device-key/.",
    tags=("tcp", "failure"),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (UNKNOWN_DEVICE, WRONG_SERVER_KEY, BAD_SIGNATURE, WRONG_DEVICE_KEY)
}
