"""The DTLS benchmark capture builder: every record decrypts, counts match, output repeats."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from tests.helpers import dissect, findings, messages, ring_with

BUILDER = Path(__file__).resolve().parent.parent / "benchmarks" / "make_big_dtls_capture.py"
N = 301  # odd: the builder fills the last slot with a NON event to hit the count exactly


def _builder() -> ModuleType:
    """``benchmarks/make_big_dtls_capture.py`` imported by path (benchmarks is no package)."""
    name = "make_big_dtls_capture"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_every_record_of_the_built_capture_decrypts_with_its_key_log(tmp_path: Path) -> None:
    info = _builder().build(tmp_path, N, seed=7)
    meta = json.loads((tmp_path / f"big-dtls-{N}.json").read_text())
    assert meta["messages"] == info.messages == N
    assert meta["capture"] == str(tmp_path / f"big-dtls-{N}.pcap")
    keylog = Path(meta["keylog"])
    assert keylog.read_text().startswith("CLIENT_RANDOM ")

    records = dissect([meta["capture"]], ring_with(keylog, role="keylog"))
    msgs = messages(records)
    assert len(msgs) == meta["messages"]
    assert all(r["coap"] is not None and r["transport"] == "dtls" for r in msgs)
    assert {r["device_id"] for r in msgs} == {meta["device_id"]}
    assert not [f for f in findings(records) if f["severity"] == "error"]
    # Both directions and a real mix, not one kind of message.
    assert {r["direction"] for r in msgs} == {"device->cloud", "cloud->device"}
    assert len({r["kind"] for r in msgs}) >= 8
    # Every exchange is 2 or 4 messages: an odd count ends with a NO_ACK (NON) event.
    assert (msgs[-1]["kind"], msgs[-1]["coap"]["type"]) == ("PrivateEvent", "NON")
    (session,) = [r for r in records if r["record"] == "session"]
    assert session["key_source"] == "key log" and session["handshake_seen"]
    # One record per datagram: the handshake's ten datagrams, then one per message.
    assert meta["packets"] == N + 10


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    builder = _builder()
    a = builder.build(tmp_path / "a", N, seed=3)
    b = builder.build(tmp_path / "b", N, seed=3)
    c = builder.build(tmp_path / "c", N, seed=4)
    for suffix in (".pcap", ".keylog"):
        first = Path(a.capture).with_suffix(suffix).read_bytes()
        assert first == Path(b.capture).with_suffix(suffix).read_bytes()
        assert first != Path(c.capture).with_suffix(suffix).read_bytes()
