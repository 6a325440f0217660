"""A reference Particle DTLS session (device and cloud), byte-exact and deterministic.

:class:`DtlsSessionBuilder` produces both ends of Particle's UDP protocol (spec §6) with
the real cryptography: DTLS 1.2, ``TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`` only, raw public
keys (the cloud sends no Certificate: the device holds its key; the device sends its SPKI
and a CertificateVerify), an optional HelloVerifyRequest cookie round, ECDHE P-256 with
deterministic scalars, deterministic ECDSA (RFC 6979), Finished over the RFC 6347
transcript, the draft connection ID (extension 254, an 8-byte CID assigned by the cloud,
device records of type 25 with the draft-05 additional data), and CoAP on top with the UDP
conventions of §6.9 (:class:`~dissector.simulate.dtls_conversation.UdpConversation`).

Session persistence: :meth:`DtlsSessionBuilder.export_session` is what the device keeps
(``SessionPersistData``), as a :class:`~dissector.dtls.keys.PersistedSession`, a binary
blob (:meth:`~DtlsSessionBuilder.session_blob`) or text; :meth:`DtlsSessionBuilder.resume`
continues it with no handshake on the wire, from a new port, marking the device's records
until the cloud's first reply: type 253 with a CID (Device OS ≥ 4.0), or type 254 plus the
``device_id ‖ 0x0c`` trailer without one (Device OS 0.5 … 3.0).

The output is a list of :class:`Datagram` ``(ts, direction, bytes)``;
:mod:`dissector.simulate.dtls_pcap` turns them into UDP packets. All randomness comes from
one seeded :class:`~dissector.simulate.rng.ByteSource`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import ec

from dissector.coap import CoapError, CoapMessage
from dissector.coap import encode as coap_encode
from dissector.dtls.crypto import RecordProtection, key_block
from dissector.dtls.handshake import (
    HT_CERTIFICATE,
    HT_CERTIFICATE_REQUEST,
    HT_CERTIFICATE_VERIFY,
    HT_CLIENT_HELLO,
    HT_CLIENT_KEY_EXCHANGE,
    HT_FINISHED,
    HT_HELLO_VERIFY_REQUEST,
    HT_SERVER_HELLO,
    HT_SERVER_HELLO_DONE,
    HT_SERVER_KEY_EXCHANGE,
)
from dissector.dtls.keys import PersistedSession
from dissector.dtls.records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CT_MOVED_APPLICATION_DATA,
    CT_MOVED_CID,
    CT_TLS12_CID,
    build_record,
)
from dissector.model import Direction
from dissector.simulate import dtls_handshake as hs
from dissector.simulate.dtls_conversation import UdpConversation
from dissector.simulate.dtls_persist import (
    build_session_persist,
    device_key_der,
    keys_checksum,
    server_address_block,
    session_connection,
    session_persist_text,
    udp_server_key_file,
)
from dissector.simulate.errors import SimulationError
from dissector.simulate.rng import ByteSource
from dissector.simulate.tcp import DEFAULT_START, SentMessage

__all__ = [
    "DEFAULT_DTLS_CLOUD",
    "Datagram",
    "DtlsSessionBuilder",
    "HandshakeRecord",
]

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE

DEFAULT_DTLS_CLOUD = ("10.0.0.1", 5684)
"""Default cloud endpoint (its address goes into the persisted ``connection`` field)."""
CID_LEN = 8
_MASK64 = (1 << 64) - 1


class Datagram(NamedTuple):
    """One UDP payload one side sent at capture time ``ts``."""

    ts: float
    direction: Direction
    data: bytes


class HandshakeRecord(NamedTuple):
    """A handshake message as sent: its direction, type, message_seq and body."""

    direction: Direction
    msg_type: int
    message_seq: int
    body: bytes


def _device_id(value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise SimulationError(f"device ID {value!r} is not hex") from None
    if len(value) != 12:
        raise SimulationError(f"device ID is {len(value)} bytes, expected 12")
    return bytes(value)


class DtlsSessionBuilder(UdpConversation):
    """Both ends of one Particle DTLS session, built datagram by datagram.

    ``device_key`` / ``server_key``: the device's and the cloud's P-256 private keys (both
    sign; neither decrypts). ``device_id``: 12 bytes or 24 hex characters. ``rng``: a
    :class:`ByteSource` or a seed. ``connection_id``: negotiate the draft CID (Device OS ≥
    3.1). ``cookie``: run the HelloVerifyRequest round (the Particle cloud always does).
    ``pack_flights``: the device sends its second flight in one datagram (mbedTLS datagram
    packing, as Particle's fork does); False sends one record per datagram (Device OS
    1.0.1). ``signature_algorithms``: the ClientHello's list (default: the ≥ 3.1 fork's, or
    Device OS 1.0.1's without a CID). ``cloud``: the cloud endpoint the device persists.
    ``device_mid_seed``: the device's CoAP message-ID counter (0 after boot: the Hello gets
    ID 1); ``device_token_seed`` likewise; the cloud's counters are random unless given.
    ``keep_messages=False`` skips the :attr:`messages` record.
    """

    def __init__(
        self,
        device_key: ec.EllipticCurvePrivateKey | None,
        server_key: ec.EllipticCurvePrivateKey | None,
        device_id: bytes | str,
        *,
        rng: ByteSource | int | None = 0,
        start: float = DEFAULT_START,
        step: float = 0.001,
        connection_id: bool = True,
        cookie: bool = True,
        pack_flights: bool = True,
        signature_algorithms: tuple[int, ...] | None = None,
        cloud: tuple[str, int] = DEFAULT_DTLS_CLOUD,
        device_mid_seed: int = 0,
        device_token_seed: int = 0,
        cloud_mid_seed: int | None = None,
        cloud_token_seed: int | None = None,
        keep_messages: bool = True,
    ) -> None:
        self.rng = rng if isinstance(rng, ByteSource) else ByteSource(rng)
        self.device_id = _device_id(device_id)
        self.device_key = device_key
        self.server_key = server_key
        self.connection_id = connection_id
        self.cookie_round = cookie
        self.pack_flights = pack_flights
        if signature_algorithms is None:
            signature_algorithms = (
                hs.SIG_ALGS_DEVICE_OS_3 if connection_id else hs.SIG_ALGS_DEVICE_OS_1
            )
        self.signature_algorithms = signature_algorithms
        self.cloud = cloud
        self.keep_messages = keep_messages
        self.timer_rng = self.rng.fork("coap-timers")
        self._hs_rng = self.rng.fork("handshake")
        cloud_seed = self.rng.uint(0, 0xFFFF) if cloud_mid_seed is None else cloud_mid_seed
        token_seed = self.rng.uint(0, 254) if cloud_token_seed is None else cloud_token_seed
        super().__init__(
            device_mid_seed=device_mid_seed,
            device_token_seed=device_token_seed,
            cloud_mid_seed=cloud_seed,
            cloud_token_seed=token_seed,
            start=start,
            step=step,
            cloud_hello_token=False,
            cloud_ack_token=b"",
        )
        #: Every datagram, in the order sent.
        self.datagrams: list[Datagram] = []
        #: Every CoAP message, in the order sent (``frame`` = the datagram).
        self.messages: list[SentMessage] = []
        #: Every handshake message, in the order sent.
        self.handshake_messages: list[HandshakeRecord] = []
        self.transcript = hs.Transcript()
        self.client_random: bytes | None = None
        self.server_random: bytes | None = None
        self.session_id = b""
        self.master: bytes | None = None
        #: The CID the cloud assigned: the device puts it in its records.
        self.cid: bytes | None = None
        self.cookie: bytes | None = None
        self._epoch = {D2C: 0, C2D: 0}
        self._seq = {D2C: 0, C2D: 0}
        self._hs_seq = {D2C: 0, C2D: 0}
        self._prot: dict[Direction, RecordProtection] = {}
        self._client_eph: ec.EllipticCurvePrivateKey | None = None
        self._server_eph: ec.EllipticCurvePrivateKey | None = None
        self.in_window_top = 0
        self.in_window = 0
        #: Device OS "move session": mark outgoing records until the cloud's first record.
        self.move_session = False
        self.persistent = 0
        self.use_counter = 0
        self.protocol_flags = 0
        self.app_state_flags = 0
        self.keys_checksum: int | None = None
        self.connection: bytes | None = None
        if device_key is not None and server_key is not None:
            host, port = cloud
            self.keys_checksum = keys_checksum(
                udp_server_key_file(server_key, host, port), device_key_der(device_key)
            )
            try:
                self.connection = session_connection(host, port, server_address_block(host, port))
            except SimulationError:
                self.connection = None

    # -- resumption ------------------------------------------------------------------------

    @classmethod
    def resume(
        cls,
        persisted: PersistedSession,
        device_id: bytes | str,
        *,
        rng: ByteSource | int | None = 0,
        start: float = DEFAULT_START,
        step: float = 0.001,
        move_marking: bool = True,
        cloud: tuple[str, int] = DEFAULT_DTLS_CLOUD,
        cloud_mid_seed: int | None = None,
        cloud_token_seed: int | None = None,
        device_token_seed: int = 0,
        keep_messages: bool = True,
    ) -> DtlsSessionBuilder:
        """Continue a persisted session with no handshake (Device OS ``SessionPersist::
        restore``): keys from its master secret and randoms, the device's record counter
        and CoAP message-ID counter from it, the cloud's record counter after its replay
        window. With ``move_marking`` the device's records are marked until the cloud's
        first record: 253 for CID records, 254 + device-ID trailer otherwise."""
        if persisted.master is None:
            raise SimulationError("resuming needs the persisted session's master secret")
        if persisted.ciphersuite != hs.CCM_8_SUITE:
            raise SimulationError(
                f"Device OS sessions use cipher suite 0xC0AE, not 0x{persisted.ciphersuite:04X}"
            )
        b = cls(
            None,
            None,
            device_id,
            rng=rng,
            start=start,
            step=step,
            connection_id=persisted.cid is not None,
            cloud=cloud,
            device_mid_seed=persisted.next_coap_id or 0,
            device_token_seed=device_token_seed,
            cloud_mid_seed=cloud_mid_seed,
            cloud_token_seed=cloud_token_seed,
            keep_messages=keep_messages,
        )
        b.client_random = persisted.client_random
        b.server_random = persisted.server_random
        b.master = persisted.master
        b.session_id = persisted.session_id
        b.cid = persisted.cid
        b._epoch = {D2C: persisted.out_epoch, C2D: persisted.in_epoch}
        b._seq = {D2C: persisted.out_seq, C2D: (persisted.in_window_top or 0) + 1}
        b.in_window_top = persisted.in_window_top or 0
        b.in_window = persisted.in_window or 0
        b.keys_checksum = persisted.keys_checksum
        b.connection = persisted.connection
        b.persistent = 1
        b.use_counter = (persisted.use_counter or 0) + 1
        b.subscriptions_crc = persisted.subscriptions_crc or 0
        b.describe_app_crc = persisted.describe_app_crc or 0
        b.describe_system_crc = persisted.describe_system_crc or 0
        b.protocol_flags = persisted.protocol_flags or 0
        b.app_state_flags = persisted.app_state_flags or 0
        for key in ("system_version", "max_message_size", "max_binary_size", "ota_chunk_size"):
            value = getattr(persisted, key)
            if value is not None:
                b.hello_fields[key] = value
        b._install_keys()
        b.move_session = move_marking
        return b

    # -- secrets and persistence -----------------------------------------------------------

    def keylog_line(self) -> str:
        """This session's NSS key log line ``CLIENT_RANDOM <client random> <master>``."""
        if self.client_random is None or self.master is None:
            raise SimulationError("no session secrets yet (run the handshake first)")
        return f"CLIENT_RANDOM {self.client_random.hex()} {self.master.hex()}"

    def export_session(self) -> PersistedSession:
        """The session as the device persists it now (``SessionPersist::update`` runs after
        every record sent or received): randoms, master, suite, session ID, in epoch, next
        outgoing counter, CoAP message-ID counter, replay window, CID, app state."""
        if self.client_random is None or self.server_random is None or self.master is None:
            raise SimulationError("no established session to export")
        hello = self.hello_fields
        return PersistedSession(
            client_random=self.client_random,
            server_random=self.server_random,
            master=self.master,
            ciphersuite=hs.CCM_8_SUITE,
            session_id=self.session_id,
            compression=0,
            in_epoch=self._epoch[C2D],
            out_epoch=self._epoch[D2C],
            out_seq=self._seq[D2C],
            next_coap_id=self._device_mid,
            cid=self.cid,
            in_window_top=self.in_window_top,
            in_window=self.in_window,
            layout="arm32/262",
            size=262,
            persistent=self.persistent,
            use_counter=self.use_counter,
            keys_checksum=self.keys_checksum,
            connection=self.connection,
            subscriptions_crc=self.subscriptions_crc,
            describe_app_crc=self.describe_app_crc,
            describe_system_crc=self.describe_system_crc,
            protocol_flags=self.protocol_flags,
            app_state_flags=self.app_state_flags,
            max_binary_size=hello.get("max_binary_size", 0),
            system_version=hello.get("system_version", 0),
            max_message_size=hello.get("max_message_size", 0),
            ota_chunk_size=hello.get("ota_chunk_size", 0),
        )

    def session_blob(self, size: int = 262) -> bytes:
        """:meth:`export_session` as the binary ``SessionPersistData`` (262 bytes, or an
        older layout's size such as 220)."""
        return build_session_persist(self.export_session(), size)

    def session_text(self) -> str:
        """:meth:`export_session` in the text form."""
        return session_persist_text(
            self.export_session(), f"Device OS SessionPersistData of {self.device_id.hex()}"
        )

    # -- records and datagrams -------------------------------------------------------------

    def _next_seq(self, direction: Direction) -> int:
        seq = self._seq[direction]
        if seq >= 1 << 48:
            raise SimulationError("record sequence number exhausted")
        self._seq[direction] = seq + 1
        return seq

    def _record(self, direction: Direction, content_type: int, payload: bytes) -> bytes:
        """One record in ``direction``'s current epoch (protected from epoch 1 on)."""
        epoch = self._epoch[direction]
        seq = self._next_seq(direction)
        if epoch == 0:
            return build_record(content_type, 0, seq, payload)
        prot = self._prot.get(direction)
        if prot is None:
            raise SimulationError("no keys for a protected record")
        cid = self.cid if direction is D2C and self.cid is not None else None
        return prot.encrypt(content_type, epoch, seq, payload, cid)

    def _send(self, direction: Direction, records: list[bytes], at: float | None) -> bytes:
        data = b"".join(records)
        if direction is D2C and self.move_session and data:
            if data[0] == CT_TLS12_CID:
                data = bytes((CT_MOVED_CID,)) + data[1:]
            elif data[0] == CT_APPLICATION_DATA:
                data = bytes((CT_MOVED_APPLICATION_DATA,)) + data[1:] + self.device_id + b"\x0c"
        elif direction is C2D:
            self._device_receives(records)
        self.datagrams.append(Datagram(round(self._tick(at), 6), direction, data))
        return data

    def _device_receives(self, records: list[bytes]) -> None:
        """The device reads the cloud's records: replay window, end of the session move."""
        for rec in records:
            epoch = int.from_bytes(rec[3:5], "big")
            if epoch == 0 or epoch != self._epoch[C2D]:
                continue
            seq = int.from_bytes(rec[5:11], "big")
            if seq > self.in_window_top:
                shift = seq - self.in_window_top
                self.in_window = ((self.in_window << shift) | 1) & _MASK64 if shift < 64 else 1
                self.in_window_top = seq
            elif self.in_window_top - seq < 64:
                self.in_window |= 1 << (self.in_window_top - seq)
            if self.move_session or self.use_counter:
                self.move_session = False  # cancel_move_session
                self.use_counter = 0

    def raw(self, direction: Direction, data: bytes, *, at: float | None = None) -> bytes:
        """Send ``data`` as one datagram, unchanged (keep-alives, deliberate garbage)."""
        data = bytes(data)
        self.datagrams.append(Datagram(round(self._tick(at), 6), direction, data))
        return data

    def _coap(self, direction: Direction, msg: CoapMessage | bytes, at: float | None) -> bytes:
        if isinstance(msg, CoapMessage):
            try:
                plaintext = coap_encode(msg)
            except CoapError as exc:
                raise SimulationError(f"cannot encode the CoAP message: {exc}") from None
            coap: CoapMessage | None = msg
        else:
            plaintext = bytes(msg)
            coap = None
        if self._epoch[direction] == 0:
            raise SimulationError("application data before the handshake finished")
        record = self._record(direction, CT_APPLICATION_DATA, plaintext)
        data = self._send(direction, [record], at)
        if self.keep_messages:
            ts = self.datagrams[-1].ts
            self.messages.append(SentMessage(ts, direction, coap, plaintext, data))
        return data

    def device_sends(self, msg: CoapMessage | bytes, at: float | None = None) -> bytes:
        """Encrypt one CoAP message device → cloud in its own datagram; returns it."""
        return self._coap(D2C, msg, at)

    def cloud_sends(self, msg: CoapMessage | bytes, at: float | None = None) -> bytes:
        """Encrypt one CoAP message cloud → device in its own datagram; returns it."""
        return self._coap(C2D, msg, at)

    def alert(
        self, direction: Direction, description: int = 0, level: int = 1, *, at: float | None = None
    ) -> bytes:
        """A DTLS alert (default: warning close_notify), protected once keys are in use."""
        record = self._record(direction, CT_ALERT, bytes((level, description)))
        return self._send(direction, [record], at)

    # -- handshake -------------------------------------------------------------------------

    def _hs(
        self, direction: Direction, msg_type: int, body: bytes, seq: int | None = None
    ) -> bytes:
        """A handshake message as the content of one record; updates the transcript."""
        if seq is None:
            seq = self._hs_seq[direction]
        self._hs_seq[direction] = seq + 1
        self.handshake_messages.append(HandshakeRecord(direction, msg_type, seq, body))
        self.transcript.add(msg_type, seq, body)
        return hs.handshake_fragment(msg_type, seq, body)

    def _server_time_random(self) -> bytes:
        """A cloud random / cookie prefix: mbedTLS puts the Unix time in the first 4 bytes."""
        return struct.pack(">I", int(self.now) & 0xFFFFFFFF) + self._hs_rng(28)

    def handshake(self, *, at: float | None = None) -> None:
        """The full handshake: ClientHello, (HelloVerifyRequest, ClientHello with cookie),
        the cloud's flight, the device's flight, the cloud's ChangeCipherSpec + Finished."""
        self.client_hello(at=at)
        if self.cookie_round:
            self.hello_verify_request()
            self.client_hello()
        self.server_flight()
        self.client_flight()
        self.server_finished()

    def client_hello(self, *, at: float | None = None) -> bytes:
        """The device's ClientHello (with the cookie once a HelloVerifyRequest came)."""
        if self.device_key is None:
            raise SimulationError("the handshake needs the device key")
        if self.client_random is None:
            self.client_random = self._hs_rng(32)
        body = hs.client_hello(
            self.client_random,
            self.cookie or b"",
            connection_id=self.connection_id,
            signature_algorithms=self.signature_algorithms,
        )
        self._tick(at)
        record = self._record(D2C, CT_HANDSHAKE, self._hs(D2C, HT_CLIENT_HELLO, body))
        return self._send(D2C, [record], self.now)

    def hello_verify_request(self, *, at: float | None = None) -> bytes:
        """The cloud's stateless cookie challenge (32-byte cookie: time ‖ 28 bytes)."""
        self._tick(at)
        self.cookie = self._server_time_random()
        body = hs.hello_verify_request(self.cookie)
        # The cloud answers statelessly: message_seq 0, and it restarts at 0 afterwards.
        record = self._record(C2D, CT_HANDSHAKE, self._hs(C2D, HT_HELLO_VERIFY_REQUEST, body, 0))
        return self._send(C2D, [record], self.now)

    def server_flight(self, *, at: float | None = None) -> bytes:
        """ServerHello (+ CID), ServerKeyExchange, CertificateRequest, ServerHelloDone in one
        datagram: no Certificate (the device has the cloud key from flash)."""
        if self.server_key is None or self.client_random is None:
            raise SimulationError("the cloud's flight needs the server key and a ClientHello")
        self._tick(at)
        self.server_random = self._server_time_random()
        self.session_id = self._hs_rng(32)
        self.cid = self._hs_rng(CID_LEN) if self.connection_id else None
        self._server_eph = hs.ephemeral_key(self._hs_rng.fork("server-ecdhe"))
        first_seq = self._hs_seq[D2C] - 1  # the ServerHello answers the last ClientHello
        bodies = [
            (HT_SERVER_HELLO, hs.server_hello(self.server_random, self.session_id, self.cid)),
            (
                HT_SERVER_KEY_EXCHANGE,
                hs.server_key_exchange(
                    self.server_key,
                    self.client_random,
                    self.server_random,
                    hs.point_bytes(self._server_eph),
                ),
            ),
            (HT_CERTIFICATE_REQUEST, hs.certificate_request()),
            (HT_SERVER_HELLO_DONE, hs.server_hello_done()),
        ]
        records = []
        for i, (msg_type, body) in enumerate(bodies):
            frag = self._hs(C2D, msg_type, body, first_seq + i if i == 0 else None)
            records.append(self._record(C2D, CT_HANDSHAKE, frag))
        return self._send(C2D, records, self.now)

    def client_flight(self, *, at: float | None = None) -> list[bytes]:
        """The device's Certificate (raw public key), ClientKeyExchange, CertificateVerify,
        ChangeCipherSpec and Finished (protected; a CID record when a CID was assigned)."""
        if self.device_key is None or self._server_eph is None:
            raise SimulationError("the device's flight needs the device key and the cloud's")
        assert self.client_random is not None and self.server_random is not None
        self._tick(at)
        self._client_eph = hs.ephemeral_key(self._hs_rng.fork("device-ecdhe"))
        cert = self._hs(
            D2C, HT_CERTIFICATE, hs.raw_public_key_certificate(hs.spki_der(self.device_key))
        )
        cke = self._hs(
            D2C, HT_CLIENT_KEY_EXCHANGE, hs.client_key_exchange(hs.point_bytes(self._client_eph))
        )
        cv_body = hs.certificate_verify(self.device_key, self.transcript.data)
        cv = self._hs(D2C, HT_CERTIFICATE_VERIFY, cv_body)
        records = [self._record(D2C, CT_HANDSHAKE, part) for part in (cert, cke, cv)]
        records.append(self._record(D2C, CT_CHANGE_CIPHER_SPEC, b"\x01"))
        premaster = hs.ecdh_premaster(self._client_eph, hs.point_bytes(self._server_eph))
        self.master = hs.master_secret(premaster, self.client_random, self.server_random)
        self._install_keys()
        self._change_epoch(D2C)
        verify = hs.finished_verify_data(self.master, self.transcript.digest(), True)
        records.append(self._record(D2C, CT_HANDSHAKE, self._hs(D2C, HT_FINISHED, verify)))
        if self.pack_flights:
            return [self._send(D2C, records, self.now)]
        out = [self._send(D2C, [records[0]], self.now)]
        out += [self._send(D2C, [r], None) for r in records[1:]]
        return out

    def server_finished(self, *, at: float | None = None) -> bytes:
        """The cloud's ChangeCipherSpec and Finished in one datagram; the device persists
        the session (``prepare_save`` + ``notify_established``)."""
        if self.master is None:
            raise SimulationError("the cloud's Finished needs the device's flight first")
        self._tick(at)
        records = [self._record(C2D, CT_CHANGE_CIPHER_SPEC, b"\x01")]
        self._change_epoch(C2D)
        verify = hs.finished_verify_data(self.master, self.transcript.digest(), False)
        records.append(self._record(C2D, CT_HANDSHAKE, self._hs(C2D, HT_FINISHED, verify)))
        self.in_window_top = 0
        self.in_window = 0
        data = self._send(C2D, records, self.now)
        self.persistent = 1
        return data

    def _change_epoch(self, direction: Direction) -> None:
        self._epoch[direction] += 1
        self._seq[direction] = 0

    def _install_keys(self) -> None:
        assert self.master and self.client_random and self.server_random
        kb = key_block(self.master, self.client_random, self.server_random, hs.CCM_8_SUITE)
        self._prot = {D2C: RecordProtection.for_client(kb), C2D: RecordProtection.for_server(kb)}

    def __repr__(self) -> str:
        return (
            f"DtlsSessionBuilder(device_id={self.device_id.hex()}, "
            f"datagrams={len(self.datagrams)}, cid={self.cid.hex() if self.cid else None})"
        )
