"""Devices and applications shared by the TCP scenarios (not a scenario module)."""

from __future__ import annotations

from dissector.simulate.scenario import DeviceProfile

#: Device IDs of the simulated devices (their keys live in captures/keys).
PHOTON_ID = "2c0021000447353138383138"
PHOTON_B_ID = "1e003c000c47343438323536"
P1_ID = "3a0038000d47343432313031"
CORE_ID = "53ff6d065067544853360587"
#: A Photon whose key is kept apart (captures/demo-keys/photon-no-device-key/).
HIDDEN_ID = "410041000b51353432383931"

#: The application of the simulated Photons: functions and variables of every type.
FUNCTIONS = {"led": {"on": 1, "off": 0}, "add": {"40,7": 47, "2,2": 4}}
VARIABLES = {
    "counter": ("int", 42),
    "temp": ("double", 21.5),
    "ready": ("bool", True),
    "status": ("string", "led:on"),
}


def photon(
    device_id: str = PHOTON_ID, firmware: str = "1.x", platform_id: int = 6
) -> DeviceProfile:
    """A Photon (or P1 with ``platform_id=8``) running the shared application."""
    return DeviceProfile(
        device_id,
        firmware=firmware,
        platform_id=platform_id,
        functions=FUNCTIONS,
        variables=VARIABLES,
    )


def core(device_id: str = CORE_ID) -> DeviceProfile:
    """A Spark Core with 2014 firmware (platform 0): Hello variant A, 52-byte identity."""
    return DeviceProfile(
        device_id,
        firmware="core-2014",
        platform_id=0,
        functions={"brew": {"32,240": 456}},
        variables={"temperature": ("int", -98765)},
    )
