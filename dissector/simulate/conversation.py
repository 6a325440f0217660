"""Particle exchanges over any transport: message-ID/token counters and one-call helpers.

:class:`Conversation` knows who sends what in reply to what (spec §4.2 and the reference
captures); a transport subclass (:class:`~dissector.simulate.tcp.TcpSessionBuilder`) only
supplies :meth:`Conversation.device_sends` and :meth:`Conversation.cloud_sends`.

Every helper takes ``at`` (absolute capture time of its first message; default: the
previous message plus ``step``) and returns the messages it sent, in order.
"""

from __future__ import annotations

import json
from typing import Any

from dissector.coap import CON, NON, CoapMessage
from dissector.simulate import messages as m

__all__ = ["Conversation"]

Exchange = tuple[CoapMessage, ...]


class Conversation:
    """Counters (device/cloud message IDs and tokens, the clock) plus exchange helpers.

    ``device_mid_seed``: the device's message-ID counter before its first message (the
    Hello carries seed + 1). ``device_token_seed``: same for its 1-byte tokens.
    ``cloud_mid_seed``: the cloud's counter (its Hello carries seed + 1);
    ``cloud_token_seed``: the cloud's token counter (tokens count 1, 2, …, 254, 0 from
    seed 0, like spark-protocol's). ``cloud_hello_token``: spark-protocol
    gives its Hello a token, Brewskey none. ``cloud_ack_token``: token of the cloud's empty
    ACKs (``b"\\x00"`` as spark-protocol 0.1.6 sends it; RFC 7252 says none).

    Transport conventions are class attributes: ``confirmable_messages`` (events and
    separate responses are CON and acknowledged with an empty ACK, as over UDP; False:
    NON, as over TCP) and ``cloud_event_always_ttl`` (cloud events carry Max-Age even for
    the default TTL, as the Node cloud does over TCP).
    """

    confirmable_messages: bool = False
    cloud_event_always_ttl: bool = True

    def __init__(
        self,
        *,
        device_mid_seed: int,
        device_token_seed: int,
        cloud_mid_seed: int,
        cloud_token_seed: int = 0,
        start: float,
        step: float,
        cloud_hello_token: bool = True,
        cloud_ack_token: bytes = b"",
    ) -> None:
        self._device_mid = device_mid_seed & 0xFFFF
        self._device_token = device_token_seed & 0xFF
        self._cloud_mid = cloud_mid_seed & 0xFFFF
        self._cloud_token = cloud_token_seed % 255
        #: Capture time of the latest write (before the first one: of the first one).
        self.now = start
        self.step = step
        self._written = False
        self.cloud_hello_token = cloud_hello_token
        self.cloud_ack_token = bytes(cloud_ack_token)

    # -- transport hooks -------------------------------------------------------------------

    def device_sends(self, msg: CoapMessage | bytes, at: float | None = None) -> bytes:
        """Send one message device → cloud; returns what went on the wire."""
        raise NotImplementedError

    def cloud_sends(self, msg: CoapMessage | bytes, at: float | None = None) -> bytes:
        """Send one message cloud → device; returns what went on the wire."""
        raise NotImplementedError

    # -- clock and counters ----------------------------------------------------------------

    def _tick(self, at: float | None) -> float:
        """Timestamp of the next write: ``at``, else the clock (first write) or the previous
        write plus ``step``."""
        if at is not None:
            self.now = float(at)
        elif self._written:
            self.now += self.step
        self._written = True
        return self.now

    def wait(self, seconds: float) -> float:
        """Let ``seconds`` pass before the next message (instead of ``step``); returns the
        clock, which is the next message's timestamp."""
        self.now += seconds
        self._written = False
        return self.now

    def next_device_mid(self) -> int:
        """The device's next message ID (``++counter``, wrapping at 65536)."""
        self._device_mid = (self._device_mid + 1) & 0xFFFF
        return self._device_mid

    def next_cloud_mid(self) -> int:
        """The cloud's next message ID (pre-incremented, wrapping at 65536)."""
        self._cloud_mid = (self._cloud_mid + 1) & 0xFFFF
        return self._cloud_mid

    def next_device_token(self) -> bytes:
        """The device's next 1-byte token (``++token``, wrapping at 256)."""
        self._device_token = (self._device_token + 1) & 0xFF
        return bytes((self._device_token,))

    def next_cloud_token(self) -> bytes:
        """The cloud's next 1-byte token: 1, 2, …, 254, then 0 (spark-protocol)."""
        self._cloud_token = (self._cloud_token + 1) % 255
        return bytes((self._cloud_token,))

    # -- hellos ----------------------------------------------------------------------------

    def device_hello(
        self, variant: str = "B", *, at: float | None = None, **fields: Any
    ) -> Exchange:
        """The device Hello (NON POST ``h``); ``fields`` go to :func:`~.messages.hello_payload`."""
        msg = m.hello(self.next_device_mid(), m.hello_payload(variant, **fields))
        self.device_sends(msg, at)
        return (msg,)

    def cloud_hello(self, *, at: float | None = None) -> Exchange:
        """The cloud Hello: NON POST ``h``, no payload, a token if ``cloud_hello_token``."""
        token = self.next_cloud_token() if self.cloud_hello_token else b""
        msg = m.hello(self.next_cloud_mid(), token=token)
        self.cloud_sends(msg, at)
        return (msg,)

    # -- device-initiated exchanges --------------------------------------------------------

    def device_event(
        self,
        name: str | bytes,
        data: bytes | str = b"",
        *,
        private: bool = True,
        ttl: int = m.DEFAULT_TTL,
        content_format: int | None = None,
        ack: int | None = None,
        at: float | None = None,
    ) -> Exchange:
        """A device event (POST ``E``/``e``, NON or CON per ``confirmable_messages``); ``ack``
        is the cloud's answer code, if any: 0 = empty ACK (Brewskey for ``spark/*``),
        0x80 = ACK 4.00 (spark-protocol)."""
        msg = m.event(
            self.next_device_mid(),
            name,
            data,
            private=private,
            ttl=ttl,
            content_format=content_format,
            confirmable=self.confirmable_messages,
        )
        self.device_sends(msg, at)
        if ack is None:
            return (msg,)
        return msg, self._cloud_ack(msg, ack)

    def subscribe(
        self, name_filter: str | bytes, *, my_devices: bool = False, at: float | None = None
    ) -> Exchange:
        """Device subscription (CON GET ``e``) and the cloud's empty ACK."""
        msg = m.subscribe(self.next_device_mid(), name_filter, my_devices=my_devices)
        self.device_sends(msg, at)
        return msg, self._cloud_ack(msg, 0)

    def time_request(self, unix_time: int | None = None, *, at: float | None = None) -> Exchange:
        """Device GET ``t`` and the cloud's ACK 2.05 (``unix_time`` default: the clock)."""
        req = m.time_request(self.next_device_mid(), self.next_device_token())
        self.device_sends(req, at)
        when = int(self.now) if unix_time is None else unix_time
        resp = m.time_response(req.mid, req.token, when)
        self.cloud_sends(resp)
        return req, resp

    def ping(self, *, from_device: bool = True, at: float | None = None) -> Exchange:
        """Keep-alive: CON 0.00 and the empty ACK with the same message ID."""
        if from_device:
            req = m.ping(self.next_device_mid())
            self.device_sends(req, at)
            return req, self._cloud_ack(req, 0)
        req = m.ping(self.next_cloud_mid())
        self.cloud_sends(req, at)
        resp = m.empty_ack(req.mid)
        self.device_sends(resp)
        return req, resp

    # -- cloud-initiated exchanges ---------------------------------------------------------

    def function_call(
        self,
        name: str | bytes,
        argument: str | bytes = b"",
        result: int = 0,
        *,
        at: float | None = None,
    ) -> Exchange:
        """Cloud CON POST ``f/<name>``, the device's empty ACK, then its separate 2.04 with
        the result (see :meth:`_separate_response`)."""
        call = m.function_call(self.next_cloud_mid(), self.next_cloud_token(), name, argument)
        self.cloud_sends(call, at)
        ret = m.function_return(
            self.next_device_mid(), call.token, result, confirmable=self.confirmable_messages
        )
        return (call, *self._separate_response(call, ret))

    def variable_read(
        self,
        name: str | bytes,
        value: bytes,
        *,
        piggybacked: bool = True,
        at: float | None = None,
    ) -> Exchange:
        """Cloud CON GET ``v/<name>`` and the value: a piggybacked ACK 2.05 (Core, Device OS
        0.7), or an empty ACK then a separate 2.05 (``piggybacked=False``, see
        :meth:`_separate_response`)."""
        req = m.variable_request(self.next_cloud_mid(), self.next_cloud_token(), name)
        self.cloud_sends(req, at)
        if piggybacked:
            resp = m.variable_value(req.mid, req.token, value)
            self.device_sends(resp)
            return req, resp
        return (req, *self._separate_response(req, self._separate(req, m.CONTENT, value)))

    def describe(
        self,
        description: bytes | str | dict[str, Any],
        *,
        flags: int | None = None,
        piggybacked: bool = True,
        at: float | None = None,
    ) -> Exchange:
        """Cloud CON GET ``d`` (Uri-Query = ``flags``) and the device's piggybacked ACK 2.05
        with the JSON, or (``piggybacked=False``) an empty ACK then a separate 2.05 (see
        :meth:`_separate_response`)."""
        payload = self._describe_payload(description)
        req = m.describe_request(self.next_cloud_mid(), self.next_cloud_token(), flags)
        self.cloud_sends(req, at)
        if piggybacked:
            resp = m.ack(req.mid, m.CONTENT, req.token, payload)
            self.device_sends(resp)
            return req, resp
        return (req, *self._separate_response(req, self._separate(req, m.CONTENT, payload)))

    def cloud_event(
        self,
        name: str | bytes,
        data: bytes | str = b"",
        *,
        private: bool = True,
        ttl: int = m.DEFAULT_TTL,
        at: float | None = None,
    ) -> Exchange:
        """Cloud → device event: POST with the name split on ``/``; NON with Max-Age always
        (Node, TCP) or, with ``confirmable_messages``, CON and the device's empty ACK."""
        msg = m.event(
            self.next_cloud_mid(),
            name,
            data,
            private=private,
            ttl=ttl,
            split_name=True,
            ttl_width=None,
            always_ttl=self.cloud_event_always_ttl,
            confirmable=self.confirmable_messages,
        )
        self.cloud_sends(msg, at)
        if not self.confirmable_messages:
            return (msg,)
        ack = m.empty_ack(msg.mid)
        self.device_sends(ack)
        return msg, ack

    def signal(self, on: bool = True, *, at: float | None = None) -> Exchange:
        """Cloud CON PUT ``s`` and the device's ACK 2.04 with the token."""
        req = m.signal(self.next_cloud_mid(), self.next_cloud_token(), on)
        self.cloud_sends(req, at)
        resp = m.ack(req.mid, m.CHANGED, req.token)
        self.device_sends(resp)
        return req, resp

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _describe_payload(description: bytes | str | dict[str, Any]) -> bytes:
        """The describe JSON as bytes (a dict is serialised compactly)."""
        if isinstance(description, dict):
            description = json.dumps(description, separators=(",", ":"))
        return description.encode() if isinstance(description, str) else bytes(description)

    def _separate(self, request: CoapMessage, code: int, payload: bytes) -> CoapMessage:
        """The device's separate response to ``request`` (its next message ID, the request's
        token; CON or NON per ``confirmable_messages``)."""
        return CoapMessage(
            type=CON if self.confirmable_messages else NON,
            code=code,
            mid=self.next_device_mid(),
            token=request.token,
            payload=payload,
        )

    def _separate_response(self, request: CoapMessage, response: CoapMessage) -> Exchange:
        """The device's empty ACK to ``request``, then ``response``; a CON response is
        acknowledged by the cloud's empty ACK."""
        ack = m.empty_ack(request.mid)
        self.device_sends(ack)
        self.device_sends(response)
        if response.type != CON:
            return ack, response
        return ack, response, self._cloud_ack(response, 0)

    def _cloud_ack(self, request: CoapMessage, code: int) -> CoapMessage:
        """The cloud's ACK with ``code`` (0: empty) to ``request``; sends and returns it."""
        resp = m.ack(request.mid, code, self.cloud_ack_token)
        self.cloud_sends(resp)
        return resp
