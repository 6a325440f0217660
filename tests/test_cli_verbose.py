"""`dissect --verbose` prints each message's layer tree exactly as Scapy's show() does."""

from __future__ import annotations

from click.testing import CliRunner

from dissector.cli.main import main
from tests.helpers import SPARK, TCP_KEYS


def test_verbose_prints_scapy_layer_trees() -> None:
    result = CliRunner().invoke(
        main, ["dissect", f"{SPARK}.pcap", "--keys", str(TCP_KEYS), "--verbose"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("###[ Particle Frame ]###") == 45
    assert out.count("###[ CoAP ]###") == 45
    assert "###[ Particle Hello (B) ]###" in out
    assert "###[ Particle Identity Plaintext ]###" in out
    # Secrets never shown: the session credentials layer is not printed.
    assert "Session Credentials" not in out
    assert "== Sessions (1)" in out


def test_verbose_without_keys_shows_encrypted_frames() -> None:
    result = CliRunner().invoke(main, ["dissect", f"{SPARK}.pcap", "--verbose"])
    assert result.exit_code == 0
    assert result.output.count("###[ Particle Frame ]###") == 45
    assert "###[ CoAP ]###" not in result.output
