"""A NON Hello is never answered: it must not hold its token (cloud tokens wrap)."""

from __future__ import annotations

from dissector.coap import CoapMessage, CoapOption
from dissector.model import Direction
from dissector.particle import ExchangeTracker

D2C = Direction.DEVICE_TO_CLOUD
C2D = Direction.CLOUD_TO_DEVICE


def _hello(mid: int, token: bytes = b"", mtype: int = 1) -> CoapMessage:
    return CoapMessage(type=mtype, code=2, mid=mid, token=token, options=[CoapOption(11, b"h")])


def _var_read(mid: int, token: bytes) -> CoapMessage:
    return CoapMessage(
        type=0, code=1, mid=mid, token=token, options=[CoapOption(11, b"v"), CoapOption(11, b"x")]
    )


def test_cloud_tokens_wrapping_past_the_hello_token_are_not_reuse() -> None:
    """spark-protocol: the cloud Hello carries token 01; tokens count 1..254 then 0, so after
    254 requests token 01 comes back while the Hello is of course still 'unanswered'."""
    tr = ExchangeTracker()
    ts = 1.0
    tr.observe(_hello(100), D2C, ts)
    tr.observe(_hello(5000, b"\x01"), C2D, ts)
    assert tr.pending_count == 0
    findings = []
    for i in range(300):
        ts += 0.01
        token = bytes(
            (i % 255 + 2) % 255 or 255,
        )
        obs = tr.observe(_var_read(5001 + i, token), C2D, ts)
        findings += obs.findings
        reply = CoapMessage(type=2, code=0x45, mid=5001 + i, token=token, payload=b"\0\0\0\1")
        assert tr.observe(reply, D2C, ts).kind == "VariableValue"
    assert [f.code for f in findings] == []


def test_a_confirmable_hello_still_waits_for_its_ack() -> None:
    """UDP: the Hello is CON and the cloud acknowledges it with an empty ACK."""
    tr = ExchangeTracker("udp")
    tr.observe(_hello(7, mtype=0), D2C, 1.0)
    assert tr.pending_count == 1
    ack = tr.observe(CoapMessage(type=2, code=0, mid=7), C2D, 1.5)
    assert ack.kind == "EmptyAck" and ack.request is not None and ack.request.kind == "Hello"
    assert ack.latency == 0.5 and tr.pending_count == 0


def test_reusing_the_token_of_an_unanswered_request_is_still_reported() -> None:
    tr = ExchangeTracker()
    tr.observe(_var_read(1, b"\x01"), C2D, 1.0)
    obs = tr.observe(_var_read(2, b"\x01"), C2D, 2.0)
    assert [f.code for f in obs.findings] == ["coap.token_reuse"]
