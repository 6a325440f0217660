"""``particle-dissect simulate``, driven through its click command object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dissector.cli.main import main as dissect_main
from dissector.cli.simulate import simulate

ROOT = Path(__file__).parent.parent
KEYS = str(ROOT / "captures" / "keys")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(simulate, list(args))


def dissect(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(dissect_main, ["dissect", *args, "--format", "ndjson"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def messages(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["record"] == "message"]


def test_list_names_every_scenario_with_its_transport() -> None:
    result = invoke("--list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split()[1] for line in result.output.splitlines()}
    assert lines["photon"] == "tcp" and lines["ota-legacy"] == "tcp" and len(lines) >= 10


def test_fresh_keys_are_written_next_to_the_capture_and_decrypt_it(tmp_path: Path) -> None:
    out = tmp_path / "s.pcap"
    result = invoke("core", "-o", str(out), "--seed", "11")
    assert result.exit_code == 0, result.output
    keys = tmp_path / "s.keys"
    names = sorted(p.name for p in keys.iterdir())
    assert names == sorted(
        [
            "default_key.pem",
            "default_key.pub.pem",
            "default_key.pub.der",
            "default_key.pub-10_0_0_1-rsa.der",
            "53ff6d065067544853360587.pem",
            "53ff6d065067544853360587.pub.pem",
            "53ff6d065067544853360587.der",
        ]
    )
    recs = dissect(str(out), "--keys", str(keys))
    assert len(messages(recs)) == 19 and all(r["coap"] for r in messages(recs))


def test_a_fixed_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    runs = []
    for name, seed in (("a", "4"), ("b", "4"), ("c", "5")):
        out = tmp_path / f"{name}.pcapng"
        result = invoke("multi-device", "-o", str(out), "--keys", KEYS, "--seed", seed)
        assert result.exit_code == 0, result.output
        assert not (tmp_path / f"{name}.keys").exists()  # every key came from --keys
        runs.append(out.read_bytes())
    assert runs[0] == runs[1] != runs[2]
    assert runs[0][:4] == b"\x0a\x0d\x0d\x0a"  # pcapng by extension


def test_impairments_and_key_log(tmp_path: Path) -> None:
    out, log = tmp_path / "late.pcap", tmp_path / "late.keylog"
    args = ["photon", "-o", str(out), "--keys", KEYS, "--keylog", str(log)]
    result = invoke(*args, "--segment-size", "50", "--duplicate", "0.2", "--start-after", "5")
    assert result.exit_code == 0, result.output
    assert log.read_text().startswith("PARTICLE_TCP ")
    recs = dissect(str(out), "--keylog", str(log))
    assert any(r["record"] == "finding" and r["code"] == "keylog.trial_match" for r in recs)
    assert sum(1 for r in messages(recs) if r["coap"]) >= 5


def test_write_keys_and_demo_keys_go_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "x.pcap"
    result = invoke(
        "photon-no-device-key",
        "-o",
        str(out),
        "--keys",
        KEYS,
        "--keys",
        str(ROOT / "captures" / "demo-keys" / "photon-no-device-key"),
        "--write-keys",
        str(tmp_path / "truth"),
        "--write-demo-keys",
        str(tmp_path / "demo"),
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "truth" / "default_key.pem").is_file()
    assert (tmp_path / "demo" / "410041000b51353432383931.der").is_file()


def test_sockets_mode_runs_device_and_cloud_over_loopback(tmp_path: Path) -> None:
    log = tmp_path / "live.keylog"
    result = invoke(
        "fail-unknown-device", "--sockets", "--port", "0", "--keys", KEYS, "--keylog", str(log)
    )
    assert result.exit_code == 0, result.output
    assert "cloud listening on 127.0.0.1:" in result.output
    assert "unknown device" in result.output
    assert log.read_text() == ""  # the handshake failed: no session key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name a scenario"),
        (("photon",), "-o FILE is required"),
        (("nope", "-o", "x.pcap"), "unknown scenario 'nope'"),
        (("photon", "-o", "x.pcap", "--keys", "/no/such/dir"), "no such file"),
        (("photon", "-o", "/no/such/dir/x.pcap", "--keys", KEYS), "cannot write"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
