"""Review of the UDP flow tracker against real-world DTLS capture shapes.

Built with the reference DTLS device and cloud and fed through the whole pipeline:

* Device OS binds its own UDP socket to 5684 (Electron/Gen2 ``socket_create(..., port)``,
  Gen3 over IPv6: "Always binding to 5684"), so a capture taken next to the device has
  5684 on both ends: each datagram must still get its direction from its sender.
* A resumption the cloud does not answer, then a full handshake on the same flow (the
  device's fallback, spec §7): two sessions, not one "resumed" session with a handshake.
* Only the first fragment of a ClientHello carries the client random.
* A session whose keys are unknown keeps its flows together by its connection ID.
* The first record of epoch 1 overtaking the ChangeCipherSpec (no keys) is the Finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from dissector.capture.packets import RawPacket
from dissector.capture.writer import build_udp_frame
from dissector.keys import KeyRing
from dissector.model import Direction
from dissector.output.records import to_record
from dissector.pipeline import Dissector
from dissector.simulate.dtls import Datagram, DtlsSessionBuilder
from dissector.simulate.dtls_handshake import ephemeral_key, handshake_fragment
from dissector.simulate.rng import ByteSource
from tests.helpers import findings, messages

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE
GEN3 = "e00fce681122334455667788"
ELECTRON = "3a0038000d47343432313031"

Flow = tuple[Sequence[Datagram], tuple[str, int], tuple[str, int]]


def builder(seed: int = 1, *, cid: bool = True, **kwargs: Any) -> DtlsSessionBuilder:
    rng = ByteSource(seed)
    return DtlsSessionBuilder(
        ephemeral_key(rng.fork("d")),
        ephemeral_key(rng.fork("s")),
        GEN3 if cid else ELECTRON,
        rng=rng,
        connection_id=cid,
        **kwargs,
    )


def run(flows: Iterable[Flow], ring: KeyRing | None = None) -> list[dict[str, Any]]:
    """Dissect the flows' datagrams, merged by time: ``(datagrams, device, cloud)``."""
    items = []
    for datagrams, device, cloud in flows:
        for ts, direction, data in datagrams:
            src, dst = (device, cloud) if direction is D2C else (cloud, device)
            items.append((ts, src, dst, data))
    items.sort(key=lambda item: item[0])
    packets = []
    for i, (ts, (sip, sport), (dip, dport), data) in enumerate(items):
        frame = build_udp_frame(1, sip, sport, dip, dport, data)
        packets.append(RawPacket(ts, 1, frame, len(frame), i + 1, "<memory>"))
    out = []
    for event in Dissector(ring or KeyRing()).run(iter(packets)):
        rec = to_record(event)
        if rec is not None:
            out.append(rec)
    return out


def keylog(*builders: DtlsSessionBuilder) -> KeyRing:
    ring = KeyRing()
    for b in builders:
        assert b.client_random is not None and b.master is not None
        ring.add_nss_secret("CLIENT_RANDOM", b.client_random, b.master)
    return ring


def sessions(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["session"]: r for r in records if r["record"] == "session"}


def sent(b: DtlsSessionBuilder, start: int = 0) -> list[tuple[str, str, int]]:
    """What the builder sent as CoAP: (direction, code, message ID)."""
    out = []
    for msg in b.messages[start:]:
        assert msg.coap is not None
        out.append(
            (msg.direction.value, f"{msg.coap.code >> 5}.{msg.coap.code & 31:02d}", msg.coap.mid)
        )
    return out


def seen(records: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [
        (m["direction"], m["coap"]["code"], m["coap"]["mid"])
        for m in messages(records)
        if m["coap"]
    ]


def conversation(b: DtlsSessionBuilder) -> None:
    b.handshake()
    b.device_hello()
    b.ping()
    b.ping(from_device=False)
    b.device_event("temp", b"21.5")


# ------------------------------------------------------------- both ends on port 5684


@pytest.mark.parametrize(
    ("cid", "device", "cloud"),
    [
        (False, ("192.168.1.20", 5684), ("18.214.10.1", 5684)),  # Electron-style bind
        (True, ("2001:db8::20", 5684), ("2001:db8:1::1", 5684)),  # Gen3 over IPv6
    ],
)
def test_both_ports_5684_every_datagram_gets_its_senders_direction(
    cid: bool, device: tuple[str, int], cloud: tuple[str, int]
) -> None:
    b = builder(cid=cid)
    conversation(b)
    records = run([(b.datagrams, device, cloud)], keylog(b))
    assert seen(records) == sent(b)
    assert len(sessions(records)) == 1
    steps = [(r["direction"], r["step"]) for r in records if r["record"] == "handshake"]
    assert steps[:3] == [
        ("device->cloud", "ClientHello"),
        ("cloud->device", "HelloVerifyRequest"),
        ("device->cloud", "ClientHello"),
    ]
    (ses,) = sessions(records).values()
    assert ses["outcome"] == "established"
    assert not findings(records, "decrypt.")


def test_both_ports_5684_cut_mid_session_starting_with_the_cloud() -> None:
    """No handshake, the cloud's datagram first: the persisted session's keys say which
    direction opens it."""
    b = builder()
    conversation(b)
    first_cloud = next(i for i, d in enumerate(b.datagrams) if d.direction is C2D and d.ts > 0)
    cut = [i for i, d in enumerate(b.datagrams) if d.direction is C2D][-2]
    assert cut > first_cloud
    ring = KeyRing()
    ring.load_bytes(b.session_blob(), "device.session")
    flows = [(b.datagrams[cut:], ("10.1.1.20", 5684), ("10.1.1.1", 5684))]
    records = run(flows, ring)
    want = [
        (msg.direction.value, msg.plaintext)
        for msg in b.messages
        if msg.frame in {d.data for d in b.datagrams[cut:]}
    ]
    got = [(m["direction"], bytes.fromhex(m["coap"]["payload"])) for m in messages(records)]
    assert [d for d, _ in got] == [d for d, _ in want]
    assert all(m["coap"] is not None for m in messages(records))


def test_both_ports_5684_without_keys_the_private_address_is_the_device() -> None:
    b = builder(cid=False)
    conversation(b)
    cut = [i for i, d in enumerate(b.datagrams) if d.direction is C2D][-2]
    flows = [(b.datagrams[cut:], ("192.168.1.20", 5684), ("18.214.10.1", 5684))]
    records = run(flows)
    want = [d.direction.value for d in b.datagrams[cut:]]
    assert [m["direction"] for m in messages(records)] == want
    (ses,) = sessions(records).values()
    assert ses["device"] == {"ip": "192.168.1.20", "port": 5684}
    assert ses["cloud"] == {"ip": "18.214.10.1", "port": 5684}


def test_ephemeral_device_port_is_unchanged() -> None:
    b = builder()
    conversation(b)
    records = run([(b.datagrams, ("10.0.0.2", 40000), ("10.0.0.1", 5684))], keylog(b))
    assert seen(records) == sent(b)


# ------------------------------------------------------------- new sessions on a flow


def test_unanswered_resumption_then_full_handshake_on_the_same_flow_are_two_sessions() -> None:
    first = builder(seed=1)
    conversation(first)
    resumed = DtlsSessionBuilder.resume(first.export_session(), GEN3, rng=2, start=first.now + 600)
    resumed.ping()
    resumed.ping()
    attempts = [d for d in resumed.datagrams if d.direction is D2C]  # the cloud never answers
    fresh = builder(seed=3, start=resumed.now + 30)
    conversation(fresh)
    flow = (attempts + list(fresh.datagrams), ("10.0.0.2", 40001), ("10.0.0.1", 5684))
    records = run([flow], keylog(fresh))  # only the new session's key
    by_id = sessions(records)
    assert len(by_id) == 2
    old, new = by_id["dtls-1"], by_id["dtls-2"]
    assert old["outcome"] == "resumed"
    assert new["outcome"] == "established"
    assert new["key_source"] == "key log"
    assert [m["session"] for m in messages(records)] == ["dtls-1"] * 2 + ["dtls-2"] * len(
        fresh.messages
    )
    assert seen([m for m in messages(records) if m["session"] == "dtls-2"]) == sent(fresh)
    (missing,) = findings(records, "decrypt.missing_key")
    assert missing["session"] == "dtls-1" and "persisted session" in missing["message"]


def test_second_fragment_of_a_client_hello_does_not_start_a_session() -> None:
    b = builder()
    conversation(b)
    hello = next(h for h in b.handshake_messages if h.msg_type == 1 and h.message_seq == 1)
    half = len(hello.body) // 2
    parts = [
        handshake_fragment(1, hello.message_seq, hello.body, 0, half),
        handshake_fragment(1, hello.message_seq, hello.body, half, len(hello.body) - half),
    ]
    # The second fragment's bytes where a random would be differ from the real random.
    assert parts[1][14:46] != hello.body[2:34]
    out: list[Datagram] = []
    for d in b.datagrams:
        whole = d.data[25:] == hello.body and d.data[13] == 1 and d.data[14:17] != b"\x00\x00\x00"
        if d.direction is D2C and d.data[0] == 22 and whole:
            seq = int.from_bytes(d.data[5:11], "big")
            for i, frag in enumerate(parts):
                record = bytes((22,)) + d.data[1:5] + (seq + i).to_bytes(6, "big")
                record += len(frag).to_bytes(2, "big") + frag
                out.append(Datagram(d.ts + i * 1e-4, D2C, record))
        else:
            out.append(d)
    assert len(out) == len(b.datagrams) + 1
    records = run([(out, ("10.0.0.2", 40000), ("10.0.0.1", 5684))], keylog(b))
    assert len(sessions(records)) == 1
    assert seen(records)[: len(sent(b))] == sent(b)


def test_unknown_session_moving_again_keeps_its_connection_id() -> None:
    first = builder()
    conversation(first)
    resumed = DtlsSessionBuilder.resume(first.export_session(), GEN3, rng=2, start=first.now + 600)
    resumed.ping()
    split = len(resumed.datagrams)
    resumed.ping()
    resumed.ping()
    flows = [
        (resumed.datagrams[:split], ("10.0.0.2", 40001), ("10.0.0.1", 5684)),
        (resumed.datagrams[split:], ("10.0.0.9", 40002), ("10.0.0.1", 5684)),
    ]
    records = run(flows)  # no key at all
    assert list(sessions(records)) == ["dtls-1"]
    (moved,) = [f for f in findings(records, "dtls.session.moved") if "new address" in f["message"]]
    assert "connection ID" in moved["message"]
    assert len(findings(records, "dtls.session.unknown_resume")) == 1


# ------------------------------------------------------------- Finished before CCS


def test_finished_overtaking_its_change_cipher_spec_without_keys_is_no_message() -> None:
    b = builder(pack_flights=False)
    conversation(b)
    dgrams = list(b.datagrams)
    i = next(i for i, d in enumerate(dgrams) if d.direction is D2C and d.data[0] == 20)
    assert dgrams[i + 1].data[0] == 25  # the device's Finished in a CID record
    dgrams[i], dgrams[i + 1] = (
        dgrams[i + 1]._replace(ts=dgrams[i].ts),
        dgrams[i]._replace(ts=dgrams[i + 1].ts),
    )
    records = run([(dgrams, ("10.0.0.2", 40000), ("10.0.0.1", 5684))])
    device_steps = [
        r["step"]
        for r in records
        if r["record"] == "handshake" and r["direction"] == "device->cloud"
    ]
    assert device_steps[-2:] == ["EncryptedHandshake", "ChangeCipherSpec"]
    # every CoAP message is a message, the Finished is not
    assert len(messages(records)) == len(b.messages)


def test_encrypted_alert_finding_code_is_dotted() -> None:
    b = builder(cid=False)
    conversation(b)
    b.alert(C2D, 0)
    records = run([(b.datagrams, ("10.0.0.2", 40000), ("10.0.0.1", 5684))])
    alerts = findings(records, "dtls.alert.")
    assert [f["code"] for f in alerts] == ["dtls.alert.encrypted"]
    with_keys = run([(b.datagrams, ("10.0.0.2", 40000), ("10.0.0.1", 5684))], keylog(b))
    assert [f["code"] for f in findings(with_keys, "dtls.alert.")] == ["dtls.alert.close_notify"]
