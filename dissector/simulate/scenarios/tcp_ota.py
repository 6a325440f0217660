"""Legacy OTA firmware transfers over TCP (spec §5.1)."""

from __future__ import annotations

from dissector.simulate.engine import tcp_scenario
from dissector.simulate.scenario import Scenario, TcpSession, step
from dissector.simulate.scenarios._common import P1_ID, PHOTON_ID, photon

OTA_LEGACY = tcp_scenario(
    "ota-legacy",
    [
        TcpSession(
            photon(P1_ID, firmware="0.7", platform_id=8),
            (step("ota", 0.5, size=1000, chunk_size=256, corrupt=[2], stall=True),),
        )
    ],
    summary="Legacy OTA, one chunk at a time: a bad CRC re-sent, ChunkMissed after a stall",
    shows="UpdateBegin (12-byte parameters, fast OTA not offered), empty ACK and UpdateReady; "
    "the cloud stalls, the device (Device OS 0.7, SparkProtocol) asks for chunk 0 with "
    "ChunkMissed after 3 s; chunks of 256 bytes each answered by ChunkReceived 2.04, chunk "
    "2 arrives corrupted (particle.ota.chunk_crc_mismatch) and is answered 4.00 then re-sent; "
    "the last chunk is zero-padded; UpdateDone answered 2.04.",
    tags=("tcp", "ota"),
)

OTA_FAST = tcp_scenario(
    "ota-fast",
    [
        TcpSession(
            photon(PHOTON_ID),
            (step("ota", 0.5, size=1500, chunk_size=256, fast=True, corrupt=[3]),),
        )
    ],
    summary="Fast OTA: chunks streamed with their index, a corrupted one requested again",
    shows="UpdateBegin offering fast OTA, UpdateReady with flag 1, six indexed chunks sent "
    "without waiting (chunk 3 corrupted: crc mismatch, silently dropped by the device), "
    "UpdateDone answered 4.00, ChunkMissed listing chunk 3, the chunk re-sent, UpdateDone "
    "answered 2.04.",
    tags=("tcp", "ota"),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (OTA_LEGACY, OTA_FAST)}
