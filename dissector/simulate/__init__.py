"""Reference Particle devices and clouds: byte-exact, deterministic simulated traffic.

* :mod:`.tcp` – :class:`TcpSessionBuilder`: both ends of a Particle TCP session with the
  real cryptography, as stream writes ``(ts, direction, bytes)``.
* :mod:`.conversation` – message-ID/token counters and one-call exchange helpers
  (``device_hello``, ``function_call``, ``variable_read``, ``ping``, …).
* :mod:`.messages` – pure builders of the CoAP messages Particle uses.
* :mod:`.pcap` – stream writes → TCP/IP packets → pcap / pcapng files.
* :mod:`.rng` – the seeded byte source every random value comes from.

Example::

    b = TcpSessionBuilder(device_key, server_key, "5190c68b84cc2643c6b052a7", rng=1)
    b.handshake()
    b.device_hello(platform_id=6)
    b.cloud_hello()
    b.function_call("led", "on", result=1)
    write_pcap("session.pcap", b)
"""

from __future__ import annotations

from dissector.simulate.conversation import Conversation
from dissector.simulate.errors import SimulationError
from dissector.simulate.pcap import (
    TcpFlow,
    TcpPacketizer,
    build_packets,
    flow_packets,
    write_pcap,
    write_pcapng,
)
from dissector.simulate.rng import ByteSource
from dissector.simulate.tcp import SentMessage, StreamWrite, TcpSessionBuilder

__all__ = [
    "ByteSource",
    "Conversation",
    "SentMessage",
    "SimulationError",
    "StreamWrite",
    "TcpFlow",
    "TcpPacketizer",
    "TcpSessionBuilder",
    "build_packets",
    "flow_packets",
    "write_pcap",
    "write_pcapng",
]
