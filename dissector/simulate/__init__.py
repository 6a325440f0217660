"""Reference Particle devices and clouds: byte-exact, deterministic simulated traffic.

Two levels:

* Scripted both ends, write by write (exact control, test vectors):
  :mod:`.tcp` – :class:`TcpSessionBuilder` (both ends of a session with the real
  cryptography, as stream writes ``(ts, direction, bytes)``), :mod:`.conversation`
  (message-ID/token counters and one-call exchanges), :mod:`.messages` (pure CoAP
  builders).
* Reactive endpoints driven by scenarios: :mod:`.device` (:class:`SimDevice`, Device OS
  by firmware generation), :mod:`.cloud` (:class:`SimCloud`, the Node.js clouds),
  :mod:`.scenario` (declarative :class:`Scenario` / :class:`TcpSession` / :func:`step`),
  :mod:`.scenarios` (the registry), :mod:`.engine` (virtual time), :mod:`.sockets`
  (:func:`~.sockets.run_over_sockets`: real TCP on 127.0.0.1), :mod:`.run`
  (:func:`simulate` → packets → :func:`write_capture`), :mod:`.impair` (loss, reordering,
  duplicates, mid-session start), :mod:`.keygen` / :mod:`.keyfiles` (keys in the formats
  users have), :mod:`.make_captures` (the bundled captures).

Packets: :mod:`.pcap` (stream writes → TCP/IP packets → pcap / pcapng); randomness:
:mod:`.rng` (one seeded byte source, so a seed gives byte-identical output).

Example::

    from dissector.simulate import get_scenario, simulate, write_capture

    cap = simulate(get_scenario("photon"), seed=1)    # keys generated from the seed
    write_capture("photon.pcap", cap.packets)
    print(cap.simulation.keylog())                    # PARTICLE_TCP lines
"""

from __future__ import annotations

from dissector.simulate.conversation import Conversation
from dissector.simulate.errors import SimulationError
from dissector.simulate.impair import Impairments
from dissector.simulate.pcap import (
    TcpFlow,
    TcpPacketizer,
    build_packets,
    flow_packets,
    write_pcap,
    write_pcapng,
)
from dissector.simulate.rng import ByteSource
from dissector.simulate.run import SimulatedCapture, capture_bytes, simulate, write_capture
from dissector.simulate.scenario import (
    BuildContext,
    CloudProfile,
    DeviceProfile,
    KeySet,
    Scenario,
    Simulation,
    Step,
    TcpSession,
    step,
)
from dissector.simulate.scenarios import all_scenarios, get_scenario, scenario_names
from dissector.simulate.tcp import SentMessage, StreamWrite, TcpSessionBuilder

__all__ = [
    "BuildContext",
    "ByteSource",
    "CloudProfile",
    "Conversation",
    "DeviceProfile",
    "Impairments",
    "KeySet",
    "Scenario",
    "SentMessage",
    "SimulatedCapture",
    "Simulation",
    "SimulationError",
    "Step",
    "StreamWrite",
    "TcpFlow",
    "TcpPacketizer",
    "TcpSession",
    "TcpSessionBuilder",
    "all_scenarios",
    "build_packets",
    "capture_bytes",
    "flow_packets",
    "get_scenario",
    "scenario_names",
    "simulate",
    "step",
    "write_capture",
    "write_pcap",
    "write_pcapng",
]
