"""Regenerate the ``openssl_resume_*`` DTLS captures (needs ``openssl`` on PATH; tests don't).

For each variant: one ``openssl s_server -dtls1_2`` (session cache on, no tickets, so the
second connection resumes by session ID) and two ``openssl s_client -dtls1_2`` runs, the
first with ``-sess_out`` (full handshake, client certificate), the second with ``-sess_in``
(abbreviated handshake: ServerHello, the server's ChangeCipherSpec and Finished first).
Both sides talk through a UDP relay on 127.0.0.1:5684 that logs every datagram with its
time; the relay log becomes a pcap (``dissector.capture.writer``), the client's
``-keylogfile`` the key log (one ``CLIENT_RANDOM`` line per connection), and the CoAP
messages sent (real Device OS 1.0.1 messages, decrypted from
``deviceos-1.0.1_udp_full.pcap`` and re-encoded with new message IDs) the
``messages.ndjson`` list. Each CoAP message goes in through the sender's stdin, one write
per message, so each becomes one DTLS record.

Run from the repository root: ``.venv/bin/python tests/data/dtls/make_openssl_captures.py``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import select
import socket
import subprocess
import tempfile
import threading
import time
from functools import cache
from pathlib import Path

from dissector.capture.writer import PcapWriter, build_udp_frame
from dissector.coap import CoapMessage, decode, encode
from dissector.dtls import ApplicationData, DtlsConnection, parse_datagram
from dissector.model import Direction

HERE = Path(__file__).resolve().parent
KEYS = HERE.parent / "keys" / "reference" / "dtls"
SOURCE = HERE / "deviceos-1.0.1_udp_full"
CLOUD_PORT = 5684
SERVER_PORT = 15684
LINKTYPE_ETHERNET = 1

VARIANTS: dict[str, list[str]] = {
    "openssl_resume_default": [],
    "openssl_resume_ccm8": ["-cipher", "ECDHE-ECDSA-AES128-CCM8"],
    "openssl_resume_cbc_sha256_etm": ["-cipher", "ECDHE-ECDSA-AES128-SHA256"],
    "openssl_resume_cbc_sha256_mte": ["-cipher", "ECDHE-ECDSA-AES128-SHA256", "-no_etm"],
}

# (index in deviceos-1.0.1_udp_full.messages.ndjson, new message ID or None to keep it)
FULL: list[tuple[int, int | None]] = [
    (0, 1),
    (1, 1),
    (2, 2),
    (3, 2),
    (6, 3),
    (7, 3),
    (14, None),
    (15, None),
    (20, 4),
    (21, 4),
]
RESUMED: list[tuple[int, int | None]] = [(44, 5), (45, 5), (40, 6), (41, 6), (42, 7), (43, 7)]


@cache
def source_messages() -> list[tuple[Direction, CoapMessage]]:
    """The decrypted CoAP messages of the Device OS 1.0.1 capture."""
    from scapy.layers.inet import UDP
    from scapy.utils import PcapReader

    keys = {}
    for line in Path(f"{SOURCE}.keylog").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "CLIENT_RANDOM":
            keys[bytes.fromhex(parts[1])] = bytes.fromhex(parts[2])
    conn = DtlsConnection(keys.get)
    out = []
    with PcapReader(f"{SOURCE}.pcap") as reader:
        for pkt in reader:
            udp = pkt[UDP]
            d = Direction.DEVICE_TO_CLOUD if udp.dport == CLOUD_PORT else Direction.CLOUD_TO_DEVICE
            for ev in conn.receive(d, bytes(udp.payload), float(pkt.time)):
                if isinstance(ev, ApplicationData) and ev.plaintext is not None:
                    out.append((d, decode(ev.plaintext)))
    return out


def script(picks: list[tuple[int, int | None]]) -> list[tuple[Direction, CoapMessage]]:
    msgs = source_messages()
    out = []
    for index, mid in picks:
        d, m = msgs[index]
        out.append((d, m if mid is None else dataclasses.replace(m, mid=mid)))
    return out


class Relay(threading.Thread):
    """UDP relay 127.0.0.1:5684 -> s_server, logging (ts, client port, to_cloud, payload)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", CLOUD_PORT))
        self.log: list[tuple[float, int, bool, bytes]] = []
        self.up: dict[tuple[str, int], socket.socket] = {}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            socks = [self.sock, *self.up.values()]
            ready, _, _ = select.select(socks, [], [], 0.05)
            for s in ready:
                data, addr = s.recvfrom(65535)
                if s is self.sock:
                    up = self.up.get(addr)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.connect(("127.0.0.1", SERVER_PORT))
                        self.up[addr] = up
                    self.log.append((time.time(), addr[1], True, data))
                    up.send(data)
                else:
                    client = next(a for a, u in self.up.items() if u is s)
                    self.log.append((time.time(), client[1], False, data))
                    self.sock.sendto(data, client)


def talk(
    client: subprocess.Popen[bytes],
    server: subprocess.Popen[bytes],
    relay: Relay,
    msgs: list[tuple[Direction, CoapMessage]],
    known: set[int],
) -> None:
    deadline = time.time() + 10
    while not _handshake_done(relay, known) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    for d, m in msgs:
        proc = client if d is Direction.DEVICE_TO_CLOUD else server
        assert proc.stdin is not None
        proc.stdin.write(encode(m))
        proc.stdin.flush()
        time.sleep(0.25)
    assert client.stdin is not None
    client.stdin.close()  # EOF: s_client sends close_notify and exits
    client.wait(10)


def _handshake_done(relay: Relay, known: set[int]) -> bool:
    """Both ChangeCipherSpecs of a new client's connection (a port not in ``known``) went
    through the relay."""
    seen = set()
    for _, port, to_cloud, data in list(relay.log):
        if port not in known and any(r.content_type == 20 for r in parse_datagram(data).records):
            seen.add(to_cloud)
    return len(seen) == 2


def make(name: str, extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        keylog = Path(tmp) / "keylog"
        sess = Path(tmp) / "sess.pem"
        relay = Relay()
        relay.start()
        server = subprocess.Popen(
            [
                "openssl", "s_server", "-dtls1_2", "-accept", f"127.0.0.1:{SERVER_PORT}",
                "-cert", str(KEYS / "server.crt"), "-key", str(KEYS / "server.key"),
                "-no_ticket", "-quiet", "-naccept", "2", "-verify", "1", *extra,
            ],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        common = [
            "openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{CLOUD_PORT}",
            "-keylogfile", str(keylog), "-no_ticket", "-nocommands", *extra,
        ]  # fmt: skip
        try:
            for picks, args in (
                (
                    FULL,
                    [
                        "-sess_out", str(sess),
                        "-cert", str(KEYS / "device.crt"), "-key", str(KEYS / "device.key"),
                    ],
                ),
                (RESUMED, ["-sess_in", str(sess)]),
            ):  # fmt: skip
                client = subprocess.Popen(
                    [*common, *args],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                talk(client, server, relay, script(picks), {p for _, p, _, _ in relay.log})
                time.sleep(0.5)
        finally:
            server.kill()
            server.wait()
            relay.stop = True
            relay.join()
        write_outputs(name, relay.log, keylog.read_text(), script(FULL) + script(RESUMED))


def write_outputs(
    name: str,
    log: list[tuple[float, int, bool, bytes]],
    keylog: str,
    msgs: list[tuple[Direction, CoapMessage]],
) -> None:
    buf = io.BytesIO()
    writer = PcapWriter(buf, LINKTYPE_ETHERNET)
    for ts, port, to_cloud, data in log:
        if to_cloud:
            frame = build_udp_frame(1, "127.0.0.1", port, "127.0.0.1", CLOUD_PORT, data)
        else:
            frame = build_udp_frame(1, "127.0.0.1", CLOUD_PORT, "127.0.0.1", port, data)
        writer.write_packet(ts, frame)
    writer.flush()
    (HERE / f"{name}.pcap").write_bytes(buf.getvalue())
    lines = [line for line in keylog.splitlines() if line.startswith("CLIENT_RANDOM")]
    (HERE / f"{name}.keylog").write_text("\n".join(lines) + "\n")
    with open(HERE / f"{name}.messages.ndjson", "w", encoding="utf-8") as fh:
        for d, m in msgs:
            paths = [o.value.decode() for o in m.options if o.number == 11]
            coap = {
                "type": m.type_name,
                "code": m.code_str,
                "mid": m.mid,
                "token": m.token.hex(),
                "uri": "/" + "/".join(paths) if paths else "",
                "payload": m.payload.hex(),
            }
            rec = {"record": "message", "transport": "dtls", "direction": d.value, "coap": coap}
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    os.chdir(HERE.parent.parent.parent)
    for variant, args in VARIANTS.items():
        make(variant, args)
        print(variant, "done")
