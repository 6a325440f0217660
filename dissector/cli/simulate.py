"""``particle-dissect simulate``: a reference device and cloud, to a capture or over sockets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dissector.cli.common import fail

if TYPE_CHECKING:
    from dissector.simulate.scenario import KeySet, Scenario


def _seed(value: str) -> int | str:
    try:
        return int(value, 0)
    except ValueError:
        return value


def _list_scenarios() -> None:
    from dissector.simulate.scenarios import all_scenarios

    table = all_scenarios()
    width = max((len(n) for n in table), default=0)
    for name, scenario in table.items():
        click.echo(f"{name:<{width}}  {scenario.transport:<4}  {scenario.summary}")


@click.command()
@click.argument("scenario", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="The capture to write: pcapng when FILE ends in .pcapng, else pcap.",
)
@click.option(
    "--keys",
    "key_paths",
    multiple=True,
    metavar="PATH",
    help="Key files or folders to use (cloud default_key.pem, device <id>.der/.pem); "
    "missing keys are generated from the seed.",
)
@click.option(
    "--seed",
    default="0",
    show_default=True,
    metavar="N",
    help="Seed: the same seed, the same bytes.",
)
@click.option(
    "--write-keys",
    metavar="DIR",
    help="Write the keys that decrypt the capture here (default without --keys: "
    "<output stem>.keys/ next to the output).",
)
@click.option(
    "--write-demo-keys", metavar="DIR", help="Also write the keys of wrong/missing-key demos."
)
@click.option(
    "--keylog", "keylog_path", metavar="FILE", help="Write the sessions' PARTICLE_TCP key log."
)
@click.option(
    "--segment-size",
    type=click.IntRange(min=1),
    default=1460,
    show_default=True,
    help="Largest TCP segment payload (small values: many small segments).",
)
@click.option(
    "--reorder",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Swap rate of neighbouring segments.",
)
@click.option(
    "--duplicate", type=click.FloatRange(0, 1), default=0.0, help="Rate of retransmitted segments."
)
@click.option(
    "--loss",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Rate of segments missing from the capture.",
)
@click.option(
    "--start-after",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Start the capture this long after the first packet (mid-session).",
)
@click.option(
    "--sockets",
    is_flag=True,
    help="Run device and cloud over real TCP sockets instead (capture them yourself).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="With --sockets: address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=5683,
    show_default=True,
    help="With --sockets: the cloud's port (0: any free port).",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.0001),
    default=0.1,
    show_default=True,
    help="With --sockets: wall-clock seconds per scenario second.",
)
def simulate(
    scenario: str | None,
    list_only: bool,
    output: str | None,
    key_paths: tuple[str, ...],
    seed: str,
    write_keys: str | None,
    write_demo_keys: str | None,
    keylog_path: str | None,
    segment_size: int,
    reorder: float,
    duplicate: float,
    loss: float,
    start_after: float,
    sockets: bool,
    host: str,
    port: int,
    time_scale: float,
) -> None:
    """Simulate SCENARIO (a device and a cloud whose every key is known) into a capture.

    Without --keys, fresh keys are generated from the seed and written next to the
    capture so that `particle-dissect dissect FILE --keys DIR` decrypts it. A fixed
    --seed gives byte-identical output. --list shows the scenarios.
    """
    from dissector.simulate import SimulationError
    from dissector.simulate.impair import Impairments
    from dissector.simulate.keyfiles import key_files, load_keyset
    from dissector.simulate.run import simulate as build
    from dissector.simulate.run import write_capture
    from dissector.simulate.scenario import KeySet
    from dissector.simulate.scenarios import get_scenario

    if list_only:
        try:
            _list_scenarios()
        except SimulationError as exc:
            fail(str(exc))
        return
    if scenario is None:
        fail("name a scenario (see --list)")
    assert scenario is not None
    if not sockets and not output:
        fail("-o FILE is required (or --sockets to run over real sockets)")
    the_seed = _seed(seed)
    try:
        sc = get_scenario(scenario)
        keys = load_keyset(key_paths, the_seed) if key_paths else KeySet(the_seed)
        if sockets:
            extra: dict[str, bytes] = {}
            summary = _run_sockets(sc, host, port, the_seed, keys, time_scale, keylog_path)
            default_dir = f"{scenario}.keys"
        else:
            assert output is not None
            impair = Impairments(reorder, duplicate, loss, start_after)
            cap = build(sc, seed=the_seed, keys=keys, segment_size=segment_size, impairments=impair)
            write_capture(output, cap.packets, cap.linktype)
            if keylog_path:
                Path(keylog_path).write_text(cap.simulation.keylog(), encoding="ascii")
            extra = cap.simulation.key_files
            summary = (
                f"wrote {output}: {len(cap.packets)} packets, "
                f"{len(cap.simulation.sessions)} session(s)"
            )
            default_dir = _default_keys_dir(output)
        keys_dir = write_keys
        if keys_dir is None and (not key_paths or keys.generated or extra):
            keys_dir = default_dir
        if keys_dir is not None:
            names = list(sc.key_names)
            if key_paths and not write_keys:
                names = [n for n in names if n in keys.generated]
            _write_tree(keys_dir, {**key_files(keys, names), **extra})
            summary += f"; keys in {keys_dir}"
        if write_demo_keys and sc.demo_keys:
            _write_tree(write_demo_keys, key_files(keys, sc.demo_keys))
    except SimulationError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    click.echo(summary, err=True)


def _default_keys_dir(output: str) -> str:
    base = os.path.basename(output)
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return os.path.join(os.path.dirname(output), f"{stem}.keys")


def _write_tree(directory: str, files: dict[str, bytes]) -> None:
    from dissector.simulate.keygen import write_files

    by_dir: dict[str, dict[str, bytes]] = {}
    for rel, data in files.items():
        sub, _, name = rel.rpartition("/")
        by_dir.setdefault(os.path.join(directory, sub) if sub else directory, {})[name] = data
    for folder, group in by_dir.items():
        write_files(folder, group, overwrite=True)


def _run_sockets(
    sc: Scenario,
    host: str,
    port: int,
    seed: int | str,
    keys: KeySet,
    time_scale: float,
    keylog_path: str | None,
) -> str:
    """Run over sockets, print each session's outcome; returns a summary line."""
    from dissector.simulate.sockets import run_over_sockets_async

    def ready(bound: int) -> None:
        click.echo(f"cloud listening on {host}:{bound}", err=True)

    run = asyncio.run(
        run_over_sockets_async(
            sc,
            host,
            port,
            seed=seed,
            keys=keys,
            time_scale=time_scale,
            ready=ready,
            timeout=3600.0,
        )
    )
    for s in run.sessions:
        click.echo(f"session {s.index} ({s.device_id}): {s.outcome}", err=True)
    if keylog_path:
        Path(keylog_path).write_text(run.keylog(), encoding="ascii")
    return f"ran {sc.name} over {host}:{run.port}: {len(run.sessions)} session(s)"
