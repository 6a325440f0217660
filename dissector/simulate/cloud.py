"""The simulated cloud: the Node.js reference servers' side of the TCP protocol.

Handshake as spark-protocol does it (spec §2, §3.5): send a 40-byte random nonce, decrypt
the identity with the server private key (close on failure, on a nonce mismatch, or for an
unknown device ID), encrypt 40 fresh credential bytes to the device public key it has on
file, sign HMAC-SHA1(credentials, ciphertext) with a raw type-1 private-key operation, wait
for the device Hello and answer with its own (message IDs from a random start, 1-byte
tokens 1, 2, …, 254, 0).

Flavours (``CloudProfile.flavour``): ``spark-protocol`` 0.1.6 gives its Hello a token,
puts token ``00`` on empty ACKs, ACKs ``spark*`` events with an empty ACK and user events
with ACK 4.00; ``brewskey`` sends no Hello token, tokenless empty ACKs, and does not ACK
user events. Legacy OTA follows ``Flasher.js``: UpdateBegin with the 12-byte parameters,
chunks of ``chunk_size`` bytes (the last zero-padded, CRC-32 over the padded chunk), one at
a time after each ChunkReceived 2.04 (re-sent after 4.00), or all at once with their index
in fast mode; UpdateDone; missed chunks re-sent on ChunkMissed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dissector.coap import CoapMessage
from dissector.crypto import (
    IdentityPlaintextError,
    RsaError,
    hmac_sha1,
    parse_credentials,
    parse_identity_plaintext,
    rsa_decrypt_pkcs1v15,
    rsa_encrypt_pkcs1v15,
    rsa_sign_raw_type1,
)
from dissector.model import Direction
from dissector.simulate import messages as m
from dissector.simulate.endpoint import Await, Endpoint
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource
from dissector.simulate.scenario import CloudProfile, Step

__all__ = ["SimCloud", "firmware_image"]

#: Default OTA image size and chunk size (``Flasher.CHUNK_SIZE``).
DEFAULT_OTA_SIZE = 1000
DEFAULT_CHUNK_SIZE = 256


def firmware_image(size: int, rng: ByteSource) -> bytes:
    """A stand-in firmware image of ``size`` bytes: a readable header, then random bytes."""
    head = b"particle-dissector simulated firmware image\x00"
    return (head + rng(max(0, size - len(head))))[:size]


@dataclass(slots=True)
class _OtaTransfer:
    chunks: list[bytes]
    fast: bool
    corrupt: set[int]
    stall: bool
    state: str = "await_ready"
    begin: CoapMessage | None = None
    current: int = 0
    pending: CoapMessage | None = None
    done: CoapMessage | None = None
    sent: set[int] = field(default_factory=set)


class SimCloud(Endpoint):
    """One connection of a cloud holding ``server_key`` (private; a public key suffices
    only with a verbatim ``profile.session_key_message``) and, for this device, the
    public key ``device_public`` on file (None: unknown device)."""

    role = "cloud"
    sends = Direction.CLOUD_TO_DEVICE

    def __init__(
        self,
        profile: CloudProfile,
        server_key: rsa.RSAPrivateKey | rsa.RSAPublicKey,
        device_public: rsa.RSAPublicKey | None,
        steps: Sequence[Step],
        rng: ByteSource,
        *,
        signing_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        super().__init__(steps, rng)
        self.profile = profile
        self.server_key = server_key
        self.device_public = device_public
        self.signing_key = signing_key
        self.nonce: bytes | None = None
        self.credentials: bytes | None = None
        self.device_id: str | None = None
        self.device_hello: CoapMessage | None = None
        self._phase = "identity"
        self._ack_token = b"\x00" if profile.flavour == "spark-protocol" else b""
        self._token = profile.token_start
        self._ota: _OtaTransfer | None = None

    # -- handshake --------------------------------------------------------------------------

    def connected(self, now: float) -> None:
        super().connected(now)
        p = self.profile
        self.nonce = p.nonce if p.nonce is not None else self.rng(40)
        if len(self.nonce) != 40:
            raise SimulationError(f"nonce is {len(self.nonce)} bytes, expected 40")
        self._send_raw(self.nonce, "nonce")

    def _on_bytes(self) -> None:
        if self._phase == "identity":
            blob = self._take_blob(256)
            if blob is None:
                return
            self._log_received("identity", blob)
            self._accept_identity(blob)
        if self._phase == "frames":
            self._frames()

    def _accept_identity(self, blob: bytes) -> None:
        p = self.profile
        if isinstance(self.server_key, rsa.RSAPrivateKey):
            try:
                plaintext = rsa_decrypt_pkcs1v15(self.server_key, blob)
                identity = parse_identity_plaintext(plaintext)
            except RsaError as exc:
                self._close(f"cannot decrypt the identity with the server key ({exc.reason})")
                return
            except IdentityPlaintextError as exc:
                self._close(f"bad identity ({exc.reason})")
                return
            if identity.nonce != self.nonce:
                self._close("nonces didn't match")
                return
            self.device_id = identity.device_id_hex
            if not p.knows_device or self.device_public is None:
                self._close(f"unknown device {self.device_id}")
                return
            if (
                p.flavour == "brewskey"
                and identity.public_key_der is not None
                and identity.public_key_der != _spki(self.device_public)
            ):
                self._close("the device's public key differs from the one on file")
                return
        elif p.session_key_message is None:
            raise SimulationError("the cloud needs the server private key to read the identity")
        if p.session_key_message is not None:
            if p.credentials is None:
                raise SimulationError("a verbatim session key message needs its credentials")
            creds, message = p.credentials, p.session_key_message
        else:
            message, creds = self._session_key_message()
        self.credentials = creds
        self._send_raw(message, "session_key")
        c = parse_credentials(creds)
        self._start_crypto(c.key, c.iv)
        if p.mid_start is not None:
            self._mid = p.mid_start
        else:
            self._mid = self.rng.uint(1, 0xFFFF)
        self._phase = "frames"

    def _session_key_message(self) -> tuple[bytes, bytes]:
        p = self.profile
        creds = p.credentials if p.credentials is not None else self.rng(40)
        if len(creds) != 40:
            raise SimulationError(f"credentials are {len(creds)} bytes, expected 40")
        assert self.device_public is not None
        signer = self.signing_key or self.server_key
        if not isinstance(signer, rsa.RSAPrivateKey):
            raise SimulationError("signing the session key needs a server private key")
        try:
            ciphertext = rsa_encrypt_pkcs1v15(self.device_public, creds, self.rng)
            signature = rsa_sign_raw_type1(signer, hmac_sha1(creds, ciphertext))
        except RsaError as exc:
            raise SimulationError(f"cannot build the session key message: {exc}") from None
        return ciphertext + signature, creds

    def _next_token(self) -> bytes:
        modulus = 255 if self.profile.flavour == "spark-protocol" else 256
        self._token = (self._token + 1) % modulus
        return bytes((self._token,))

    # -- messages from the device -----------------------------------------------------------

    def _on_message(self, msg: CoapMessage, kind: str) -> None:
        if not self.established:
            if kind != "Hello":
                self._close(f"expected the device Hello, got {kind}")
                return
            self.device_hello = msg
            if self.profile.send_hello:
                token = self._next_token() if self.profile.flavour == "spark-protocol" else b""
                self._send(m.hello(self._next_mid(), token=token))
            self.established = True
            return
        if msg.type in (2, 3) or msg.code >= 0x40:
            if self._ota is not None and self._ota_response(msg):
                return
            self._check_await(msg)
            return
        if kind in ("PublicEvent", "PrivateEvent"):
            self._on_event(msg)
        elif kind in ("Subscribe", "Ping"):
            self._send(m.empty_ack(msg.mid, self._ack_token))
        elif kind == "GetTime":
            self._send(m.time_response(msg.mid, msg.token, int(self.now)))
        elif kind == "ChunkMissed":
            self._on_chunk_missed(msg)
        elif msg.type == 0:
            self._send(m.ack(msg.mid, m.NOT_FOUND, msg.token))
        self._peer_step_done(kind)

    def _on_event(self, msg: CoapMessage) -> None:
        path = msg.uri_path
        name = path[1] if len(path) > 1 else b""
        system = name.lower().startswith(b"spark")
        if system:
            self._send(m.empty_ack(msg.mid, self._ack_token))
        elif self.profile.flavour == "spark-protocol":
            self._send(m.ack(msg.mid, m.BAD_REQUEST, self._ack_token))

    # -- the cloud's own steps ----------------------------------------------------------------

    def _request(self, msg: CoapMessage, wait: Await | None) -> None:
        self._send(msg)
        self._await = wait

    def _start_step(self, st: Step) -> None:
        p = st.params
        a = st.action
        if a == "describe":
            req = m.describe_request(self._next_mid(), self._next_token(), p.get("flags"))
            self._request(req, Await(req.mid, req.token, need_code=True))
        elif a == "function":
            req = m.function_call(
                self._next_mid(), self._next_token(), p["name"], p.get("arg", b"")
            )
            self._request(req, Await(req.mid, req.token, need_code=True))
        elif a == "variable":
            req = m.variable_request(self._next_mid(), self._next_token(), p["name"])
            self._request(req, Await(req.mid, req.token, need_code=True))
        elif a == "cloud_event":
            self._send(
                m.event(
                    self._next_mid(),
                    p["name"],
                    p.get("data", b""),
                    private=p.get("private", True),
                    ttl=p.get("ttl", m.DEFAULT_TTL),
                    split_name=True,
                    ttl_width=None,
                    always_ttl=True,
                )
            )
        elif a == "signal":
            req = m.signal(self._next_mid(), self._next_token(), bool(p.get("on", True)))
            self._request(req, Await(req.mid, req.token, need_code=True))
        elif a == "key_change":
            req = m.key_change(self._next_mid(), self._next_token(), p.get("value"))
            self._request(req, Await(req.mid))
        elif a == "cloud_ping":
            req = m.ping(self._next_mid())
            self._request(req, Await(req.mid))
        elif a == "ota":
            self._start_ota(st)
        else:  # pragma: no cover - Step.by routes only cloud actions here
            raise SimulationError(f"the cloud cannot start {a!r}")

    def _busy(self) -> bool:
        return self._await is not None or self._ota is not None

    # -- legacy OTA -------------------------------------------------------------------------

    def _start_ota(self, st: Step) -> None:
        p = st.params
        image = p.get("image")
        if image is None:
            image = firmware_image(int(p.get("size", DEFAULT_OTA_SIZE)), self.rng.fork("image"))
        size = int(p.get("chunk_size", DEFAULT_CHUNK_SIZE))
        if size < 1 or not image:
            raise SimulationError("an OTA transfer needs an image and a chunk size ≥ 1")
        chunks = [image[i : i + size].ljust(size, b"\x00") for i in range(0, len(image), size)]
        fast = bool(p.get("fast", False))
        ota = _OtaTransfer(chunks, fast, set(p.get("corrupt", ())), bool(p.get("stall", False)))
        self._ota = ota
        payload = b""
        if not p.get("legacy_begin", False):
            payload = m.update_begin_payload(fast=fast, chunk_size=size, file_size=len(image))
        ota.begin = self._send(m.update_begin(self._next_mid(), self._next_token(), payload))

    def _send_chunk(self, index: int, with_index: bool) -> None:
        ota = self._ota
        assert ota is not None
        data = ota.chunks[index]
        crc = zlib.crc32(data)
        if index in ota.corrupt and index not in ota.sent:
            data = bytes((data[0] ^ 0xFF,)) + data[1:]  # corrupted on its first trip
        ota.sent.add(index)
        ota.pending = self._send(
            m.chunk(self._next_mid(), self._next_token(), data, crc, index if with_index else None)
        )

    def _send_done(self) -> None:
        ota = self._ota
        assert ota is not None
        ota.state = "await_done"
        ota.done = self._send(m.update_done(self._next_mid(), self._next_token()))

    def _send_chunks(self) -> None:
        ota = self._ota
        assert ota is not None
        if ota.fast:
            for i in range(len(ota.chunks)):
                self._send_chunk(i, True)
            self._send_done()
        else:
            ota.state = "await_received"
            self._send_chunk(ota.current, False)

    def _ota_response(self, msg: CoapMessage) -> bool:
        """Handle a response during an OTA transfer; True if it belonged to it."""
        ota = self._ota
        assert ota is not None
        if ota.state == "await_ready" and ota.begin is not None:
            if msg.type == 2 and msg.mid == ota.begin.mid and msg.code == 0:
                return True  # the empty ACK; UpdateReady follows
            if msg.token == ota.begin.token and msg.code >= 0x40:
                if msg.code != m.CHANGED:
                    self._ota = None  # refused
                    return True
                ota.fast = ota.fast and msg.payload[:1] == b"\x01"
                if ota.stall:
                    ota.state = "stalled"
                else:
                    self._send_chunks()
                return True
        if ota.state == "await_received" and ota.pending is not None:
            if msg.type == 2 and msg.mid == ota.pending.mid and msg.code == 0:
                return True
            if msg.token == ota.pending.token and msg.code >= 0x40:
                if msg.code == m.CHANGED:
                    ota.current += 1
                if ota.current >= len(ota.chunks):
                    self._send_done()
                else:
                    self._send_chunk(ota.current, False)
                return True
        if (
            ota.state == "await_done"
            and ota.done is not None
            and msg.type == 2
            and msg.mid == ota.done.mid
        ):
            if msg.code == m.CHANGED:
                self._ota = None
            else:
                ota.state = "await_missed"
            return True
        return False

    def _on_chunk_missed(self, msg: CoapMessage) -> None:
        self._send(m.empty_ack(msg.mid, self._ack_token))
        ota = self._ota
        if ota is None:
            return
        p = msg.payload
        missed = [int.from_bytes(p[i : i + 2], "big") for i in range(0, len(p) - 1, 2)]
        if ota.state == "stalled":
            ota.current = missed[0] if missed else 0
            self._send_chunks()
        elif ota.state == "await_missed":
            for index in missed:
                if 0 <= index < len(ota.chunks):
                    self._send_chunk(index, True)
            self._send_done()


def _spki(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
