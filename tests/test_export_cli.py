"""``particle-dissect export``: inputs, outputs, what is left out, and key logs Wireshark
can use (DTLS ``CLIENT_RANDOM`` lines from a persisted session decrypt the original
capture in tshark)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

from click.testing import CliRunner, Result

from dissector.capture.packets import RawPacket
from dissector.capture.reader import CaptureReader
from dissector.cli.export import export
from tests.helpers import DATA, SPARK, TCP_KEYS
from tests.test_cli_common import records_of

DTLS = DATA / "dtls"
MBEDTLS = DTLS / "particle_mbedtls_ccm8_full"
SPARK_PCAP = f"{SPARK}.pcap"


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(export, [str(a) for a in args], catch_exceptions=False)


def packets(path: Path) -> list[RawPacket]:
    return [p for p in CaptureReader([str(path)]) if isinstance(p, RawPacket)]


def test_one_packet_per_decoded_message_and_a_summary_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "spark.pcapng"
    result = run(SPARK_PCAP, "--keys", TCP_KEYS, "-o", out)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "exported 45 CoAP messages from 1 session" in result.stderr
    assert len(packets(out)) == 45
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_pcap_suffix_writes_classic_pcap_with_link_type_252(tmp_path: Path) -> None:
    out = tmp_path / "spark.pcap"
    assert run(SPARK_PCAP, "--keys", TCP_KEYS, "-o", out).exit_code == 0
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", out.read_bytes()[:24])
    assert (magic, linktype) == (0xA1B2C3D4, 252)
    assert len(packets(out)) == 45


def test_dash_writes_the_capture_to_stdout(tmp_path: Path) -> None:
    out = tmp_path / "spark.pcapng"
    assert run(SPARK_PCAP, "--keys", TCP_KEYS, "-o", out).exit_code == 0
    result = run(SPARK_PCAP, "--keys", TCP_KEYS, "-o", "-")
    assert result.exit_code == 0
    assert result.stdout_bytes == out.read_bytes()


def test_undecrypted_messages_are_left_out_and_said_so(tmp_path: Path) -> None:
    out = tmp_path / "nokeys.pcapng"
    result = run(SPARK_PCAP, "-o", out)
    assert result.exit_code == 0
    assert "exported 0 CoAP messages" in result.stderr
    assert "45 messages could not be decrypted" in result.stderr
    assert "session key unknown" in result.stderr
    assert packets(out) == []


def test_unreadable_capture_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.pcapng"
    result = run(tmp_path / "missing.pcap", "-o", out)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("particle-dissect: error: ")
    assert not out.exists()


def test_not_a_capture_and_bad_key_file_are_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello, not a capture at all")
    assert run(junk, "-o", tmp_path / "a.pcapng").exit_code == 2
    result = run(SPARK_PCAP, "--keylog", tmp_path / "nope.keylog", "-o", tmp_path / "b.pcapng")
    assert result.exit_code == 2
    assert not (tmp_path / "b.pcapng").exists()


def test_output_is_required() -> None:
    result = CliRunner().invoke(export, [SPARK_PCAP])
    assert result.exit_code == 2
    assert "-o" in result.output


def test_port_options_follow_a_cloud_on_another_port(tmp_path: Path) -> None:
    """Without --udp-port the DTLS capture has no Particle traffic; with it, all of it."""
    keylog = f"{MBEDTLS}.keylog"
    default = run(f"{MBEDTLS}.pcap", "--keylog", keylog, "--udp-port", "9", "-o", tmp_path / "a")
    assert default.exit_code == 0
    assert "exported 0 CoAP messages from 0 sessions" in default.stderr
    both = run(f"{MBEDTLS}.pcap", "--keylog", keylog, "--udp-port", "5684", "-o", tmp_path / "b")
    assert "exported 8 CoAP messages from 1 session" in both.stderr


def test_write_keylog_from_a_persisted_session_gives_the_nss_line(tmp_path: Path) -> None:
    keylog = tmp_path / "out.keylog"
    result = run(
        f"{MBEDTLS}.pcap",
        "--session-blob",
        f"{MBEDTLS}.persist.txt",
        "-o",
        tmp_path / "m.pcapng",
        "--write-keylog",
        keylog,
    )
    assert result.exit_code == 0
    assert "wrote 1 key log lines" in result.stderr
    written = keylog.read_text().splitlines()
    reference = [
        line for line in Path(f"{MBEDTLS}.keylog").read_text().splitlines() if line.strip()
    ]
    assert written == reference
    assert written[0].startswith("CLIENT_RANDOM ")


def test_write_keylog_covers_tcp_sessions_too(tmp_path: Path) -> None:
    keylog = tmp_path / "tcp.keylog"
    run(SPARK_PCAP, "--keys", TCP_KEYS, "-o", tmp_path / "s.pcapng", "--write-keylog", keylog)
    assert keylog.read_text().split() == Path(f"{SPARK}.keylog").read_text().split()


def test_tshark_decrypts_the_original_capture_with_the_written_key_log(tmp_path: Path) -> None:
    """The NSS line export writes (here from the device's persisted session, no key log in)
    lets tshark decrypt the original DTLS capture: the cloud's records become the same
    CoAP messages we decode (tshark cannot parse the device's draft-CID records)."""
    tshark = shutil.which("tshark")
    assert tshark, "tshark is required: apt-get install -y tshark"
    keylog = tmp_path / "out.keylog"
    blob = f"{MBEDTLS}.persist.txt"
    run(f"{MBEDTLS}.pcap", "--session-blob", blob, "-o", tmp_path / "m", "--write-keylog", keylog)
    fields = ["-e", "coap.type", "-e", "coap.code", "-e", "coap.mid", "-e", "coap.token"]
    proc = subprocess.run(
        [tshark, "-n", "-r", f"{MBEDTLS}.pcap", "-o", f"tls.keylog_file:{keylog}", "-Y", "coap",
         "-T", "fields", *fields],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    seen = [tuple(line.split("\t")) for line in proc.stdout.splitlines()]
    ours = [
        r["coap"]
        for r in records_of(f"{MBEDTLS}.pcap", "--session-blob", blob)
        if r["record"] == "message" and r["direction"] == "cloud->device"
    ]
    types = ("CON", "NON", "ACK", "RST")
    expected = [
        (
            str(types.index(c["type"])),
            str(int(c["code"].split(".")[0]) * 32 + int(c["code"].split(".")[1])),
            str(c["mid"]),
            c["token"],
        )
        for c in ours
    ]
    assert len(expected) == 4
    assert seen == expected


def test_a_session_that_moves_keeps_each_message_at_its_address(tmp_path: Path) -> None:
    """The mbedTLS session moves to device port 40002 mid-way (followed by its connection
    ID): messages before the move keep the old port, the rest carry the new one."""
    import io
    from dataclasses import replace

    from dissector.capture.linklayer import LinkDecoder
    from dissector.capture.packets import UdpDatagram
    from dissector.capture.writer import PcapWriter, build_udp_frame

    decoder = LinkDecoder()
    units = [decoder.decode(p) for p in packets(Path(f"{MBEDTLS}.pcap"))]
    dgrams = [u for u in units if isinstance(u, UdpDatagram)]
    old_port = next(d.src_port for d in dgrams if d.dst_port == 5684)
    cut = next(i for i, d in enumerate(dgrams) if d.payload[0] == 25) + 2
    moved = dgrams[:cut] + [
        replace(d, src_port=40002) if d.dst_port == 5684 else replace(d, dst_port=40002)
        for d in dgrams[cut:]
    ]
    buf = io.BytesIO()
    pcap = PcapWriter(buf, 1)
    for d in moved:
        pcap.write_packet(
            d.ts, build_udp_frame(1, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload)
        )
    (tmp_path / "moved.pcap").write_bytes(buf.getvalue())
    out = tmp_path / "moved.pcapng"
    result = run(tmp_path / "moved.pcap", "--keylog", f"{MBEDTLS}.keylog", "-o", out)
    assert "exported 8 CoAP messages from 1 session" in result.stderr
    cut_ts = moved[cut].ts
    seen = []
    for pkt in packets(out):
        src_port, dst_port = (
            struct.unpack_from("!I", pkt.data, 36)[0],
            struct.unpack_from("!I", pkt.data, 44)[0],
        )
        device_port = dst_port if src_port == 5684 else src_port
        assert device_port == (40002 if pkt.ts >= cut_ts else old_port), pkt.ts
        seen.append(device_port)
    assert old_port in seen and 40002 in seen
