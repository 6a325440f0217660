"""Regenerate the simulated TCP captures in ``captures/`` byte for byte.

``python -m dissector.simulate.make_captures [--root captures] [--check] [NAME ...]``

Every capture is a registered scenario built with a fixed seed, the keys committed in
``captures/keys/`` (the cloud's ``default_key.pem`` and the devices' ``<id>.der``/``.pem``)
and in ``captures/demo-keys/<capture>/`` (keys kept apart for wrong/missing-key demos),
plus optional impairments. Keys that are not on disk yet are generated deterministically
(from :data:`KEY_SEED` and their name) and written; committed keys are never replaced.
``--check`` builds everything in memory and reports files that differ from the disk
(exit status 1), writing nothing.

The real-implementation captures (``sparkprotocol-deviceos-0.7.0.pcap``,
``brewskey-deviceos-0.7.0.pcap``) and the DTLS captures (``dtls-*.pcap``, written by
``python -m dissector.simulate.scenarios.dtls_sessions``) are not touched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dissector.simulate.errors import SimulationError
from dissector.simulate.impair import Impairments
from dissector.simulate.keyfiles import key_files, load_keyset
from dissector.simulate.run import capture_bytes, simulate
from dissector.simulate.scenario import KeySet
from dissector.simulate.scenarios import get_scenario

__all__ = ["CAPTURES", "KEY_SEED", "CaptureSpec", "build_captures", "main"]

#: Seed of keys generated for the captures (only used for keys missing on disk).
KEY_SEED = "particle-dissector captures"


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    """One bundled capture: file name, scenario, seed, packet options, key log."""

    file: str
    scenario: str
    seed: int
    segment_size: int = 1460
    impairments: Impairments = field(default_factory=Impairments)
    keylog: bool = False
    note: str = ""

    @property
    def stem(self) -> str:
        return self.file.rsplit(".", 1)[0]


CAPTURES: tuple[CaptureSpec, ...] = (
    CaptureSpec("photon.pcap", "photon", 1),
    CaptureSpec(
        "photon-impaired.pcap",
        "photon",
        1,
        segment_size=40,
        impairments=Impairments(reorder=0.15, duplicate=0.1),
        note="segments of at most 40 bytes, reordered and retransmitted segments",
    ),
    CaptureSpec(
        "photon-loss.pcap",
        "photon",
        1,
        impairments=Impairments(loss=0.06),
        note="the capture lost some segments",
    ),
    CaptureSpec(
        "photon-midsession.pcapng",
        "photon",
        1,
        impairments=Impairments(start_after=3.0),
        keylog=True,
        note="capture starts 3 s into the session; pcapng",
    ),
    CaptureSpec("core.pcap", "core", 2),
    CaptureSpec("ota-legacy.pcap", "ota-legacy", 3),
    CaptureSpec("ota-fast.pcap", "ota-fast", 4),
    CaptureSpec("multi-device.pcap", "multi-device", 5),
    CaptureSpec("fail-unknown-device.pcap", "fail-unknown-device", 6),
    CaptureSpec("fail-wrong-server-key.pcap", "fail-wrong-server-key", 7),
    CaptureSpec("fail-bad-signature.pcap", "fail-bad-signature", 8),
    CaptureSpec("fail-wrong-device-key.pcap", "fail-wrong-device-key", 9),
    CaptureSpec("photon-no-device-key.pcap", "photon-no-device-key", 10),
)


def _keyset(root: Path) -> KeySet:
    paths = [root / "keys"]
    demo = root / "demo-keys"
    if demo.is_dir():
        paths += sorted(p for p in demo.iterdir() if p.is_dir())
    return load_keyset([p for p in paths if p.exists()], KEY_SEED)


def build_captures(root: Path, names: Sequence[str] = ()) -> dict[str, bytes]:
    """Every file of the selected captures (all when ``names`` is empty), relative to
    ``root``: the captures, their new key files, demo keys and key logs."""
    keys = _keyset(root)
    out: dict[str, bytes] = {}
    selected = [c for c in CAPTURES if not names or c.stem in names or c.file in names]
    if names and not selected:
        raise SimulationError(f"no capture called {', '.join(names)}")
    for spec in selected:
        scenario = get_scenario(spec.scenario)
        cap = simulate(
            scenario,
            seed=spec.seed,
            keys=keys,
            segment_size=spec.segment_size,
            impairments=spec.impairments,
        )
        pcapng = spec.file.endswith(".pcapng")
        out[spec.file] = capture_bytes(cap.packets, cap.linktype, pcapng=pcapng)
        truth = [n for n in scenario.key_names if n != "server" or not _has_server(root)]
        for name, data in key_files(keys, truth).items():
            out[f"keys/{name}"] = data
        for name, data in key_files(keys, scenario.demo_keys).items():
            out[f"demo-keys/{spec.stem}/{name}"] = data
        if spec.keylog:
            out[f"keys/{spec.stem}.keylog"] = cap.simulation.keylog().encode()
        for rel, data in cap.simulation.key_files.items():
            out[f"keys/{rel}"] = data
    return out


def _has_server(root: Path) -> bool:
    return (root / "keys" / "default_key.pem").exists()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", help="captures to build (default: all)")
    parser.add_argument("--root", default="captures", help="the captures folder")
    parser.add_argument("--check", action="store_true", help="compare with the disk only")
    args = parser.parse_args(argv)
    root = Path(args.root)
    try:
        files = build_captures(root, args.names)
    except SimulationError as exc:
        print(f"make_captures: error: {exc}", file=sys.stderr)
        return 2
    differ = []
    for rel, data in files.items():
        path = root / rel
        same = path.exists() and path.read_bytes() == data
        if args.check:
            if not same:
                differ.append(rel)
            continue
        if same:
            continue
        if rel.startswith("keys/") and path.exists() and not rel.endswith(".keylog"):
            continue  # committed keys stay as they are
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    if differ:
        print("differ from the disk: " + ", ".join(differ), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
