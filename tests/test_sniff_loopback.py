"""``sniff`` for real: reference conversations replayed over loopback sockets, captured live.

A reference cloud and device talk on 127.0.0.1 with the exact bytes of the reference
captures: for TCP a server socket sends the cloud's stream writes and a client the
device's, in captured order (each write is read by the other end before the next one);
for DTLS two UDP sockets (one per device flow) and the cloud's, datagram by datagram.
``particle-dissect sniff -i lo`` runs as a separate process meanwhile and must decode
exactly the messages of ``tests/data/{tcp,dtls}/*.messages.ndjson``: each once, though
Linux shows a loopback packet socket every packet twice.

These tests capture packets: they need root (CI runs as root) and fail loudly without it.
Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dissector.capture.linklayer import LinkDecoder
from dissector.capture.packets import RawPacket, UdpDatagram
from dissector.capture.reader import CaptureReader
from dissector.model import Direction
from tests.derive import stream_writes
from tests.helpers import DATA, TCP_KEYS, comparable, dissect, expected_messages, ring_with
from tests.sniffing import SniffProcess

ROOT = Path(__file__).resolve().parent.parent
TCP = DATA / "tcp"
DTLS = DATA / "dtls"
TCP_NAMES = sorted(p.name.removesuffix(".messages.ndjson") for p in TCP.glob("*.messages.ndjson"))
DTLS_NAMES = sorted(
    p.name.removesuffix(".messages.ndjson")
    for p in DTLS.glob("*.messages.ndjson")
    if (DTLS / p.name.replace(".messages.ndjson", ".keylog")).exists()
)
SNIFF = [sys.executable, "-c", "from dissector.cli.sniff import sniff; sniff()"]
WAIT = 15.0  # seconds: the most any single wait may take


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the live sniff tests capture on the loopback interface: run them as root")


# -- the sniffer process ---------------------------------------------------------------------


class Sniff(SniffProcess):
    """``particle-dissect sniff ARGS`` in a subprocess; its output read as it comes."""

    def __init__(self, *args: str | os.PathLike[str]) -> None:
        super().__init__(SNIFF, *args, wait=WAIT)


# -- replaying reference conversations --------------------------------------------------------


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "peer closed early"
        buf += chunk
    return buf


@dataclass
class TcpScenario:
    """One reference TCP conversation and the cloud's listening socket."""

    name: str
    server: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(5)

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def replay(self) -> None:
        """Device and cloud write the captured stream chunks in captured order, then close."""
        device = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        cloud, _ = self.server.accept()
        for sock in (device, cloud):
            sock.settimeout(5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ends = {
            Direction.DEVICE_TO_CLOUD: (device, cloud),
            Direction.CLOUD_TO_DEVICE: (cloud, device),
        }
        for direction, data, _ts in stream_writes(TCP / f"{self.name}.pcap"):
            sender, receiver = ends[direction]
            sender.sendall(data)
            assert _recv_exactly(receiver, len(data)) == data
        device.shutdown(socket.SHUT_WR)
        assert cloud.recv(1) == b""
        cloud.close()
        assert device.recv(1) == b""
        device.close()

    def close(self) -> None:
        self.server.close()


def reference_datagrams(path: Path) -> list[UdpDatagram]:
    decoder = LinkDecoder()
    out = []
    for item in CaptureReader([str(path)]):
        if isinstance(item, RawPacket):
            unit = decoder.decode(item)
            if isinstance(unit, UdpDatagram):
                out.append(unit)
    return out


@dataclass
class DtlsScenario:
    """One reference DTLS conversation: the cloud's socket (the 5684 side) and the datagrams."""

    name: str
    cloud: socket.socket = field(init=False)
    datagrams: list[UdpDatagram] = field(init=False)

    def __post_init__(self) -> None:
        self.cloud = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.cloud.bind(("127.0.0.1", 0))
        self.cloud.settimeout(5)
        self.datagrams = reference_datagrams(DTLS / f"{self.name}.pcap")

    @property
    def port(self) -> int:
        return int(self.cloud.getsockname()[1])

    def replay(self) -> None:
        """Every datagram from its sender's socket to its receiver's, in captured order;
        each device flow of the capture gets its own socket (resumptions come from a new
        port, as captured)."""
        socks: dict[tuple[str, int], socket.socket] = {}
        try:
            for d in self.datagrams:
                for ep in ((d.src_ip, d.src_port), (d.dst_ip, d.dst_port)):
                    if ep not in socks:
                        if ep[1] == 5684:
                            socks[ep] = self.cloud
                            continue
                        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        sock.bind(("127.0.0.1", 0))
                        sock.settimeout(5)
                        socks[ep] = sock
                sender = socks[d.src_ip, d.src_port]
                receiver = socks[d.dst_ip, d.dst_port]
                sender.sendto(d.payload, receiver.getsockname())
                assert receiver.recv(65535) == d.payload
        finally:
            for sock in socks.values():
                if sock is not self.cloud:
                    sock.close()

    def close(self) -> None:
        self.cloud.close()


# -- the shared live run -------------------------------------------------------------------


@dataclass
class LiveRun:
    tcp: dict[str, TcpScenario]
    dtls: dict[str, DtlsScenario]
    tcp_records: list[dict[str, Any]]
    dtls_records: list[dict[str, Any]]
    table_lines: list[str]
    tcp_pcap: Path
    dtls_pcap: Path
    dtls_keylog: Path
    codes: dict[str, int]
    stderr: dict[str, str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    """Three sniffers at once on lo: TCP (ndjson, ended by SIGTERM), DTLS (ndjson, ended by
    --count = the number of datagrams sent) and TCP in table format (ended by SIGINT)."""
    need_root()
    tmp = tmp_path_factory.mktemp("sniff")
    tcp = {name: TcpScenario(name) for name in TCP_NAMES}
    dtls = {name: DtlsScenario(name) for name in DTLS_NAMES}
    tcp_ports = [a for s in tcp.values() for a in ("--port", str(s.port))]
    udp_ports = [a for s in dtls.values() for a in ("--udp-port", str(s.port))]
    keylogs = [a for name in dtls for a in ("--keylog", DTLS / f"{name}.keylog")]
    total = sum(len(s.datagrams) for s in dtls.values())
    sniffers = {
        "tcp": Sniff("-i", "lo", "--keys", TCP_KEYS, *tcp_ports, "--udp-port", "9",
                     "--format", "ndjson", "--write", tmp / "tcp.pcap"),
        "dtls": Sniff("-i", "lo", *keylogs, *udp_ports, "--port", "9", "--format", "ndjson",
                      "--write", tmp / "dtls.pcapng", "--count", str(total),
                      "--write-keylog", tmp / "dtls.keylog"),
        "table": Sniff("-i", "lo", "--keys", TCP_KEYS, *tcp_ports, "--udp-port", "9"),
    }  # fmt: skip
    try:
        for sniffer in sniffers.values():
            sniffer.wait_listening()
        for scenario in [*tcp.values(), *dtls.values()]:
            scenario.replay()
        codes = {
            "dtls": sniffers["dtls"].finish(),
            "tcp": sniffers["tcp"].finish(signal.SIGTERM),
            "table": sniffers["table"].finish(signal.SIGINT),
        }
        yield LiveRun(
            tcp,
            dtls,
            sniffers["tcp"].records(),
            sniffers["dtls"].records(),
            list(sniffers["table"].out),
            tmp / "tcp.pcap",
            tmp / "dtls.pcapng",
            tmp / "dtls.keylog",
            codes,
            {k: "".join(s.err) for k, s in sniffers.items()},
        )
    finally:
        for sniffer in sniffers.values():
            sniffer.kill()
        for scenario in [*tcp.values(), *dtls.values()]:
            scenario.close()


def _by_cloud_port(records: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    sessions = {
        r["session"] for r in records if r["record"] == "session" and r["cloud"]["port"] == port
    }
    return [r for r in records if r["record"] == "message" and r["session"] in sessions]


def test_tests_run_as_root() -> None:
    need_root()


def test_sniffers_end_cleanly_on_sigterm_sigint_and_count(live: LiveRun) -> None:
    assert live.codes == {"dtls": 0, "tcp": 0, "table": 0}, live.stderr
    assert "stopped by count" in live.stderr["dtls"]
    assert "stopped by SIGTERM" in live.stderr["tcp"]
    assert "stopped by SIGINT" in live.stderr["table"]


@pytest.mark.parametrize("name", TCP_NAMES)
def test_every_tcp_message_is_decoded_once(live: LiveRun, name: str) -> None:
    got = _by_cloud_port(live.tcp_records, live.tcp[name].port)
    want = expected_messages(TCP / name)
    assert [comparable(m) for m in got] == [comparable(m) for m in want]
    assert all(m["transport"] == "tcp" for m in got)


@pytest.mark.parametrize("name", DTLS_NAMES)
def test_every_dtls_message_is_decoded_once(live: LiveRun, name: str) -> None:
    got = _by_cloud_port(live.dtls_records, live.dtls[name].port)
    want = expected_messages(DTLS / name)
    assert [comparable(m) for m in got] == [comparable(m) for m in want]
    assert all(m["transport"] == "dtls" for m in got)


def test_ndjson_stdout_is_records_only_closing_with_session_records(live: LiveRun) -> None:
    for records in (live.tcp_records, live.dtls_records):
        assert records, "records expected"
        assert all(r.get("schema_version") == 1 for r in records)
        assert {r["record"] for r in records} <= {"message", "handshake", "session", "finding"}
    tcp_sessions = [r for r in live.tcp_records if r["record"] == "session"]
    assert len(tcp_sessions) == len(TCP_NAMES)
    assert all(s["outcome"] == "established" and s["closed_by"] for s in tcp_sessions)
    assert "listening on lo" in live.stderr["tcp"]
    assert "captured " in live.stderr["tcp"]


def test_tcp_sessions_are_reported_as_they_close(live: LiveRun) -> None:
    """A TCP session's record comes when its connection closes, before the next session's
    messages: the output is live, not collected until the end."""
    kinds = [(r["record"], r["session"]) for r in live.tcp_records]
    first_close = kinds.index(("session", "tcp-1"))
    assert ("message", "tcp-2") in kinds[first_close:]
    assert ("message", "tcp-2") not in kinds[:first_close]


def test_written_capture_holds_each_packet_once_and_dissects_the_same(live: LiveRun) -> None:
    total = sum(len(s.datagrams) for s in live.dtls.values())
    dtls_packets = [p for p in CaptureReader([str(live.dtls_pcap)]) if isinstance(p, RawPacket)]
    assert len(dtls_packets) == total  # one copy of each loopback datagram
    tcp_frames = [p.data for p in CaptureReader([str(live.tcp_pcap)]) if isinstance(p, RawPacket)]
    assert len(set(tcp_frames)) == len(tcp_frames)  # no outgoing+incoming twins
    ring = ring_with(TCP_KEYS)
    again = dissect([live.tcp_pcap], ring, tcp_ports=[s.port for s in live.tcp.values()])
    live_msgs = [r for r in live.tcp_records if r["record"] == "message"]
    assert [comparable(r) for r in again if r["record"] == "message"] == [
        comparable(r) for r in live_msgs
    ]
    assert [r["ts"] for r in again if r["record"] == "message"] == [r["ts"] for r in live_msgs]


def test_write_keylog_logs_every_dtls_session_secret(live: LiveRun) -> None:
    given = {
        line
        for name in DTLS_NAMES
        for line in (DTLS / f"{name}.keylog").read_text().splitlines()
        if line.strip()
    }
    written = live.dtls_keylog.read_text().splitlines()
    assert len(written) == len(set(written)) >= len(DTLS_NAMES)
    assert set(written) <= given
    assert all(line.startswith("CLIENT_RANDOM ") for line in written)


def test_table_format_prints_one_line_per_message_then_the_report(live: LiveRun) -> None:
    lines = live.table_lines
    assert lines[0].split()[:3] == ["time", "session", "dir"]
    message_lines = [ln for ln in lines if ln.split()[2:3] in (["D->C"], ["C->D"])]
    finding_lines = [ln for ln in lines if ln.split()[2:3] in (["WARNING"], ["INFO"])]
    assert finding_lines
    total = sum(len(expected_messages(TCP / n)) for n in TCP_NAMES)
    handshakes = [ln for ln in message_lines if "handshake:" in ln]
    assert len(message_lines) - len(handshakes) == total
    assert len(handshakes) == 3 * len(TCP_NAMES)
    text = "".join(lines)
    assert "== Sessions (2)" in text
    assert "5190c68b84cc2643c6b052a7" in text


def test_sighup_reloads_keys_for_new_sessions(tmp_path: Path) -> None:
    """Keys added to the --keys directory mid-capture decrypt the sessions that start after
    SIGHUP; the session before stays encrypted."""
    need_root()
    keys = tmp_path / "keys"
    keys.mkdir()
    name = TCP_NAMES[0]
    scenario = TcpScenario(name)
    sniffer = Sniff("-i", "lo", "--keys", keys, "--port", str(scenario.port), "--udp-port", "9",
                    "--format", "ndjson")  # fmt: skip
    try:
        sniffer.wait_listening()
        scenario.replay()

        def closed(session: str) -> Callable[[], bool]:
            return lambda: any(f'"session":"{session}"' in s and '"record":"session"' in s
                               for s in sniffer.out)  # fmt: skip

        sniffer.wait_for("record of the first session", closed("tcp-1"))
        for key in TCP_KEYS.iterdir():
            shutil.copy(key, keys / key.name)
        sniffer.proc.send_signal(signal.SIGHUP)
        sniffer.wait_for("reload message", lambda: any("keys reloaded" in s for s in sniffer.err))
        scenario.replay()
        sniffer.wait_for("record of the second session", closed("tcp-2"))
        assert sniffer.finish(signal.SIGINT) == 0
    finally:
        sniffer.kill()
        scenario.close()
    records = sniffer.records()
    first = [r for r in records if r["record"] == "message" and r["session"] == "tcp-1"]
    second = [r for r in records if r["record"] == "message" and r["session"] == "tcp-2"]
    want = expected_messages(TCP / name)
    assert len(first) == len(want)
    assert all(r["coap"] is None and r["kind"] == "Encrypted" for r in first)
    assert [comparable(r) for r in second] == [comparable(m) for m in want]


def test_without_cap_net_raw_the_error_says_so(tmp_path: Path) -> None:
    """Root without CAP_NET_RAW (dropped from the bounding set before exec) cannot open a
    packet socket: one clear line on stderr, exit 2, nothing on stdout."""
    need_root()
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def drop_net_raw() -> None:  # runs in the child before exec
        pr_capbset_drop, cap_net_raw = 24, 13
        if libc.prctl(pr_capbset_drop, cap_net_raw, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    proc = subprocess.run(
        [*SNIFF, "-i", "lo", "--duration", "1"],
        capture_output=True, text=True, timeout=WAIT, cwd=ROOT, preexec_fn=drop_net_raw,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "needs root or the CAP_NET_RAW capability" in proc.stderr
