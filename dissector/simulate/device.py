"""The simulated device: Device OS's side of the TCP protocol (spec §2–§5).

Handshake as the firmware does it: wait for the 40-byte nonce, send the identity
RSA-encrypted to the server key it trusts (52 bytes on the 2014 Core, 214 later), read the
384-byte session key message, RSA-decrypt the credentials with its own key (failure:
``DECRYPTION_ERROR``, close), check the raw type-1 signature with the server key (failure:
``AUTHENTICATION_ERROR``, close), seed its counters from the salt (big-endian on
SparkProtocol firmware, little-endian on the LightSSL channel), send its Hello (variant by
firmware generation) and wait for the cloud's.

Then it answers the cloud: describe and variable reads piggybacked (ACK 2.05), function
calls with an empty ACK and a separate NON 2.04, signals with ACK 2.04, pings and key
changes with empty ACKs, and the legacy OTA transfer (UpdateReady, CRC check per chunk,
ChunkReceived verdicts, ChunkMissed for chunks missing at UpdateDone or, on the Core,
after 3 s without a chunk).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dissector.coap import CoapMessage
from dissector.crypto import (
    RsaError,
    build_identity_plaintext,
    parse_credentials,
    rsa_decrypt_pkcs1v15,
    rsa_encrypt_pkcs1v15,
    verify_server_signature,
)
from dissector.model import Direction
from dissector.simulate import messages as m
from dissector.simulate.endpoint import Await, Endpoint
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import DeviceProfile, Step

__all__ = ["SimDevice", "describe_json", "variable_bytes"]

_TYPE_DIGITS = {"bool": 1, "int": 2, "string": 4, "double": 9}


def variable_bytes(kind: str, value: Any) -> bytes:
    """A variable value as the device sends it (spec §4.5)."""
    if kind == "int":
        return m.int32_value(int(value))
    if kind == "double":
        return m.double_value(float(value))
    if kind == "bool":
        return m.bool_value(bool(value))
    if kind == "string":
        return value.encode() if isinstance(value, str) else bytes(value)
    raise SimulationError(f"unknown variable type {kind!r} (int, double, bool, string)")


def describe_json(profile: DeviceProfile) -> bytes:
    """The application describe JSON: ``{"f":[...],"v":{name: type digit}}``."""
    variables = {}
    for name, (kind, _) in profile.variables.items():
        if kind not in _TYPE_DIGITS:
            raise SimulationError(f"unknown variable type {kind!r} (int, double, bool, string)")
        variables[name] = _TYPE_DIGITS[kind]
    body = {"f": list(profile.functions), "v": variables}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(slots=True)
class _Ota:
    fast: bool
    count: int | None
    received: set[int] = field(default_factory=set)
    next_index: int = 0
    chunks: int = 0


class SimDevice(Endpoint):
    """A device running ``profile.firmware``, holding ``device_key`` and trusting
    ``server_public`` (the key in its server key file)."""

    role = "device"
    sends = Direction.DEVICE_TO_CLOUD

    def __init__(
        self,
        profile: DeviceProfile,
        device_key: rsa.RSAPrivateKey,
        server_public: rsa.RSAPublicKey,
        steps: Sequence[Step],
        rng: ByteSource,
    ) -> None:
        super().__init__(steps, rng)
        self.profile = profile
        self.fw = profile.fw
        try:
            self.device_id = bytes.fromhex(profile.device_id)
        except ValueError:
            raise SimulationError(f"device ID {profile.device_id!r} is not hex") from None
        if len(self.device_id) != 12:
            raise SimulationError(f"device ID {profile.device_id!r} is not 12 bytes")
        self.device_key = device_key
        self.server_public = server_public
        self._phase = "nonce"
        self._ota: _Ota | None = None

    # -- handshake --------------------------------------------------------------------------

    def _on_bytes(self) -> None:
        if self._phase == "nonce":
            nonce = self._take_blob(40)
            if nonce is None:
                return
            self._log_received("nonce", nonce)
            self._send_identity(nonce)
            self._phase = "session_key"
        if self._phase == "session_key":
            blob = self._take_blob(384)
            if blob is None:
                return
            self._log_received("session_key", blob)
            self._accept_session_key(blob)
        if self._phase == "frames":
            self._frames()

    def _send_identity(self, nonce: bytes) -> None:
        public = None
        if not self.fw.legacy_identity:
            public = self.device_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        plaintext = build_identity_plaintext(nonce, self.device_id, public)
        try:
            blob = rsa_encrypt_pkcs1v15(self.server_public, plaintext, self.rng)
        except RsaError as exc:
            raise SimulationError(f"the device cannot encrypt its identity: {exc}") from None
        self._send_raw(blob, "identity")

    def _accept_session_key(self, blob: bytes) -> None:
        ciphertext, signature = blob[:128], blob[128:]
        try:
            creds = rsa_decrypt_pkcs1v15(self.device_key, ciphertext)
        except RsaError as exc:
            self._close(f"DECRYPTION_ERROR: the session key is not for this device ({exc.reason})")
            return
        if len(creds) != 40:
            self._close(f"DECRYPTION_ERROR: {len(creds)} credential bytes, expected 40")
            return
        check = verify_server_signature(self.server_public, creds, ciphertext, signature)
        if not check.valid:
            self._close(f"AUTHENTICATION_ERROR: bad server signature ({check.reason})")
            return
        c = parse_credentials(creds)
        self._start_crypto(c.key, c.iv)
        fw = self.fw
        self._mid = c.message_id_seed_be if fw.salt == "be" else c.message_id_seed_le
        if fw.tokens == "salt":
            self._token = c.token_seed
        elif fw.tokens == "random":
            self._token = self.rng(1)[0]
        else:
            self._token = 0
        self._phase = "frames"
        self._send(m.hello(self._next_mid(), self._hello_payload()))
        if not fw.require_cloud_hello:
            self.established = True

    def _hello_payload(self) -> bytes:
        p, fw = self.profile, self.fw
        fields: dict[str, Any] = {
            "product_id": p.product_id,
            "product_version": p.product_version,
            "flags": fw.hello_flags,
        }
        if fw.hello != "A":
            fields["platform_id"] = p.platform_id
        if fw.hello == "C":
            fields["system_version"] = fw.system_version
        return m.hello_payload(fw.hello, **fields)

    def _next_token(self) -> bytes:
        self._token = (self._token + 1) & 0xFF
        return bytes((self._token,))

    # -- the device's own steps -------------------------------------------------------------

    def _start_step(self, st: Step) -> None:
        p = st.params
        if st.action == "event":
            self._send(
                m.event(
                    self._next_mid(),
                    p["name"],
                    p.get("data", b""),
                    private=p.get("private", True),
                    ttl=p.get("ttl", m.DEFAULT_TTL),
                    content_format=p.get("content_format"),
                )
            )
        elif st.action == "subscribe":
            req = self._send(
                m.subscribe(self._next_mid(), p["filter"], my_devices=p.get("my_devices", False))
            )
            self._await = Await(mid=req.mid)
        elif st.action == "time":
            req = self._send(m.time_request(self._next_mid(), self._next_token()))
            self._await = Await(mid=req.mid, token=req.token, need_code=True)
        elif st.action == "ping":
            req = self._send(m.ping(self._next_mid()))
            self._await = Await(mid=req.mid)
        else:  # pragma: no cover - Step.by routes only device actions here
            raise SimulationError(f"the device cannot start {st.action!r}")

    # -- answering the cloud ----------------------------------------------------------------

    def _on_message(self, msg: CoapMessage, kind: str) -> None:
        if msg.type in (2, 3) or msg.code >= 0x40:
            self._check_await(msg)
            return
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(msg)
        elif msg.type == 0:
            self._send(m.ack(msg.mid, m.NOT_FOUND, msg.token))
        if kind not in ("UpdateBegin", "Chunk", "UpdateDone"):
            self._peer_step_done(kind)

    def _on_Hello(self, msg: CoapMessage) -> None:
        self.established = True

    def _on_Ping(self, msg: CoapMessage) -> None:
        self._send(m.empty_ack(msg.mid))

    def _on_Describe(self, msg: CoapMessage) -> None:
        self._send(m.ack(msg.mid, m.CONTENT, msg.token, describe_json(self.profile)))

    def _on_FunctionCall(self, msg: CoapMessage) -> None:
        path = msg.uri_path
        name = path[1].decode(errors="replace") if len(path) > 1 else ""
        arg = msg.queries[0].decode(errors="replace") if msg.queries else ""
        self._send(m.empty_ack(msg.mid))
        known = self.profile.functions.get(name)
        if known is None:
            self._send(CoapMessage(type=1, code=m.NOT_FOUND, mid=self._next_mid(), token=msg.token))
            return
        result = known if isinstance(known, int) else known.get(arg, -1)
        self._send(m.function_return(self._next_mid(), msg.token, result))

    def _on_VariableRequest(self, msg: CoapMessage) -> None:
        path = msg.uri_path
        name = path[1].decode(errors="replace") if len(path) > 1 else ""
        var = self.profile.variables.get(name)
        if var is None:
            self._send(m.ack(msg.mid, m.NOT_FOUND, msg.token))
            return
        self._send(m.variable_value(msg.mid, msg.token, variable_bytes(*var)))

    def _on_event(self, msg: CoapMessage) -> None:
        if msg.type == 0:
            self._send(m.empty_ack(msg.mid))

    _on_PublicEvent = _on_event
    _on_PrivateEvent = _on_event

    def _on_signal(self, msg: CoapMessage) -> None:
        self._send(m.ack(msg.mid, m.CHANGED, msg.token))

    _on_SignalStart = _on_signal
    _on_SignalStop = _on_signal

    def _on_KeyChange(self, msg: CoapMessage) -> None:
        if self.fw.key_change_ack:
            self._send(m.empty_ack(msg.mid))

    # -- legacy OTA -------------------------------------------------------------------------

    def _on_UpdateBegin(self, msg: CoapMessage) -> None:
        p = msg.payload
        fast, count = False, None
        if len(p) == 12:
            fast = bool(p[0] & 1) and self.fw.fast_ota
            chunk_size = int.from_bytes(p[1:3], "big")
            file_size = int.from_bytes(p[3:7], "big")
            if chunk_size:
                count = math.ceil(file_size / chunk_size)
        self._ota = _Ota(fast, count)
        self._send(m.empty_ack(msg.mid))
        flag = fast if self.fw.update_ready_flag else None
        self._send(m.update_ready(self._next_mid(), msg.token, flag))
        if self.fw.chunk_missed_timeout is not None:
            self._timers["chunk_missed"] = self.now + self.fw.chunk_missed_timeout

    def _on_Chunk(self, msg: CoapMessage) -> None:
        ota = self._ota
        self._timers.pop("chunk_missed", None)
        queries = msg.queries
        crc = int.from_bytes(queries[0], "big") if queries else None
        ok = crc is not None and zlib.crc32(msg.payload) == crc
        index = int.from_bytes(queries[1], "big") if len(queries) > 1 else None
        if ota is not None and ota.fast and index is not None:
            if ok:
                ota.received.add(index)
            return  # fast OTA: no ACK, no verdict
        self._send(m.empty_ack(msg.mid))
        self._send(m.chunk_received(self._next_mid(), msg.token, ok))
        if ok and ota is not None:
            ota.received.add(ota.next_index if index is None else index)
            ota.next_index += 1

    def _on_UpdateDone(self, msg: CoapMessage) -> None:
        ota = self._ota
        self._timers.pop("chunk_missed", None)
        missing: list[int] = []
        if ota is not None and ota.count is not None:
            missing = [i for i in range(ota.count) if i not in ota.received]
        if not missing:
            self._send(m.update_done_ack(msg.mid, msg.token, complete=True))
            self._ota = None
            self._peer_step_done(action="ota")
            return
        self._send(m.update_done_ack(msg.mid, msg.token, complete=False))
        self._send(
            m.chunk_missed(
                self._next_mid(),
                missing[: m.CHUNK_MISSED_MAX],
                confirmable=self.fw.chunk_missed_confirmable,
            )
        )

    def _on_timer(self, name: str) -> None:
        if name == "chunk_missed" and self._ota is not None:
            index = self._ota.next_index
            self._send(
                m.chunk_missed(
                    self._next_mid(), [index], confirmable=self.fw.chunk_missed_confirmable
                )
            )
