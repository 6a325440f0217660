"""Particle semantics on top of CoAP: message kinds, payload decoders, exchange tracking.

* :func:`classify` names one message (see the kind tables in :mod:`dissector.particle.kinds`).
* :func:`decode_payload` and the ``decode_*`` functions turn payloads into JSON-friendly dicts.
* :class:`ExchangeTracker` pairs responses with requests per session and reports findings.
"""

from __future__ import annotations

from dissector.particle.decode import decode_payload
from dissector.particle.hello import HELLO_FLAGS, PLATFORMS, decode_hello, flag_names, platform_name
from dissector.particle.kinds import KINDS, RESPONSE_KINDS, classify, response_kind
from dissector.particle.ota import (
    decode_chunk,
    decode_chunk_missed,
    decode_chunk_received,
    decode_ota_options,
    decode_update_ack,
    decode_update_begin,
    decode_update_chunk,
    decode_update_done_ack,
    decode_update_finish,
    decode_update_finish_return,
    decode_update_ready,
    decode_update_start,
    decode_update_start_return,
)
from dissector.particle.payloads import (
    VARIABLE_TYPES,
    decode_describe,
    decode_describe_request,
    decode_event,
    decode_function_call,
    decode_function_return,
    decode_goodbye,
    decode_key_change,
    decode_server_moved,
    decode_signal,
    decode_status,
    decode_subscribe,
    decode_time,
    decode_variable_request,
    decode_variable_value,
    protobuf_fields,
)
from dissector.particle.tracker import ExchangeTracker, Observation, RequestRef

__all__ = [
    "HELLO_FLAGS",
    "KINDS",
    "PLATFORMS",
    "RESPONSE_KINDS",
    "VARIABLE_TYPES",
    "ExchangeTracker",
    "Observation",
    "RequestRef",
    "classify",
    "decode_chunk",
    "decode_chunk_missed",
    "decode_chunk_received",
    "decode_describe",
    "decode_describe_request",
    "decode_event",
    "decode_function_call",
    "decode_function_return",
    "decode_goodbye",
    "decode_hello",
    "decode_key_change",
    "decode_ota_options",
    "decode_payload",
    "decode_server_moved",
    "decode_signal",
    "decode_status",
    "decode_subscribe",
    "decode_time",
    "decode_update_ack",
    "decode_update_begin",
    "decode_update_chunk",
    "decode_update_done_ack",
    "decode_update_finish",
    "decode_update_finish_return",
    "decode_update_ready",
    "decode_update_start",
    "decode_update_start_return",
    "decode_variable_request",
    "decode_variable_value",
    "flag_names",
    "platform_name",
    "protobuf_fields",
    "response_kind",
]
