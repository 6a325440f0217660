"""particle-dissector: see inside Particle (Spark) device-to-cloud traffic.

The package is layered so that each folder is one part of the data path:

* ``capture/``  – IO adapters: pcap/pcapng reading, link/IP decoding, TCP reassembly.
* ``protocol/`` – the sans-IO core: connection objects fed ``(direction, bytes, ts)``
  that emit events (handshake blobs, messages, findings).
* ``crypto/``   – pure primitives (RSA checks, Particle's AES-CBC IV rule); no packets.
* ``keys/``     – the explicit :class:`~dissector.keys.KeyRing` and key file/key log loading.
* ``coap/``     – a strict RFC 7252 codec.
* ``particle/`` – Particle semantics on top of CoAP: message kinds, payloads, exchanges.
* ``output/``   – records (the NDJSON schema) and the table/CSV/Markdown/JSON writers.
* ``cli/``      – the ``particle-dissect`` command.
"""

__version__ = "0.1.0"
