"""The notebooks in ``notebooks/`` run top to bottom and say what the code does.

Each notebook is executed in a fresh ``python3`` kernel of this interpreter (nbclient), with
no network; its cells assert what the prose claims, so a notebook that drifts from the code
fails here. The stored outputs (kept so the notebooks read well on a code host) must equal a
fresh run's, except in cells tagged ``nondeterministic`` (fresh random keys, live capture),
which still run. After changing the code or the captures, refresh them with
``python notebooks/execute.py`` (``make notebooks-run``).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MAX_SECONDS = 20.0


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"notebooks_{name}", NOTEBOOKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


runner = _load("execute")
nbviz = _load("nbviz")
NAMES = [p.name for p in runner.notebooks()]


def _read(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _code(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_topic_of_the_series_has_its_notebook() -> None:
    assert NAMES == [
        "01-identities-and-keys.ipynb",
        "02-tcp-handshake.ipynb",
        "03-decrypting-a-capture.ipynb",
        "04-design-and-weaknesses.ipynb",
        "05-udp-dtls.ipynb",
        "06-reports-and-live-sniffing.ipynb",
    ]


@pytest.fixture(scope="module")
def fresh_runs() -> dict[str, tuple[Any, float] | BaseException]:
    """Every notebook executed once, three kernels at a time (each run or its error)."""

    def run(name: str) -> tuple[Any, float] | BaseException:
        try:
            return runner.execute(NOTEBOOKS / name)  # raises on any failing cell
        except Exception as exc:  # reported by that notebook's test
            return exc

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(NAMES, pool.map(run, NAMES), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_matches_its_stored_outputs(
    name: str, fresh_runs: dict[str, tuple[Any, float] | BaseException]
) -> None:
    result = fresh_runs[name]
    if isinstance(result, BaseException):
        raise result
    fresh, seconds = result
    assert runner.differences(_read(name), fresh) == [], (
        f"{name}: refresh the stored outputs with `python notebooks/execute.py {name}`"
    )
    assert seconds < MAX_SECONDS, f"{name} took {seconds:.1f} s to execute"


def test_live_capture_notebook_without_capture_feeds_the_simulator_instead() -> None:
    name = "06-reports-and-live-sniffing.ipynb"
    env = {**os.environ, "NOTEBOOKS_NO_LIVE_CAPTURE": "1"}
    fresh, _ = runner.execute(NOTEBOOKS / name, env=env)
    assert runner.differences(_read(name), fresh) == []
    live = next(c for c in _code(fresh) if runner.is_nondeterministic(c))
    text = "".join(o.get("text", "") for o in live.outputs)
    assert "no live capture (NOTEBOOKS_NO_LIVE_CAPTURE is set)" in text
    assert "fed in process to the same pipeline" in text


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_is_a_clean_top_to_bottom_run(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    cells = _code(nb)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_reads_only_bundled_captures_and_no_network(name: str) -> None:
    source = "\n".join(c.source for c in _code(_read(name)))
    for forbidden in ("tests/data", "shared/", "http://", "https://"):
        assert forbidden not in source, f"{name} mentions {forbidden!r}"
    network = re.findall(r"^\s*(?:import|from)\s+(requests|urllib|httpx|http\b)", source, re.M)
    assert not network, f"{name} imports {network}"
    paths = set(re.findall(r"captures/[\w./-]*[\w]", source))
    assert paths, f"{name} uses no bundled capture or key"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"{name} refers to files that do not exist: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_compared_except_in_a_few_tagged_cells(name: str) -> None:
    cells = _code(_read(name))
    tags = {t for c in cells for t in c.metadata.get("tags", [])}
    assert tags <= {runner.NONDETERMINISTIC}
    assert sum(runner.is_nondeterministic(c) for c in cells) <= 2
    assert sum(bool(c.outputs) for c in cells if not runner.is_nondeterministic(c)) >= 6


@pytest.mark.parametrize("name", NAMES)
def test_every_picture_is_well_formed_svg_with_a_text_twin(name: str) -> None:
    pictures = 0
    for cell in _code(_read(name)):
        for output in cell.outputs:
            data = output.get("data", {})
            if "image/svg+xml" in data:
                root = ET.fromstring(data["image/svg+xml"])
                assert root.tag == "{http://www.w3.org/2000/svg}svg"
                assert data.get("text/plain", "").strip()
                pictures += 1
    assert pictures >= 1, f"{name} has no picture"


def test_comparison_catches_a_changed_output_and_skips_tagged_cells() -> None:
    stored = _read(NAMES[1])
    fresh = copy.deepcopy(stored)
    assert runner.differences(stored, fresh) == []
    target = next(c for c in _code(fresh) if c.outputs and not runner.is_nondeterministic(c))
    output = target.outputs[0]
    if output.output_type == "stream":
        output.text = output.text + "drift\n"
    else:
        output.data["text/plain"] = "drift"
    assert len(runner.differences(stored, fresh)) == 1
    tagged = copy.deepcopy(stored)
    _code(tagged)[0].metadata["tags"] = [runner.NONDETERMINISTIC]
    fresh_tagged = copy.deepcopy(tagged)
    _code(fresh_tagged)[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x")]
    assert runner.differences(tagged, fresh_tagged) == []


def test_stream_outputs_split_differently_compare_equal() -> None:
    one = nbformat.v4.new_code_cell(
        outputs=[nbformat.v4.new_output("stream", name="stdout", text="a\nb\n")]
    )
    two = nbformat.v4.new_code_cell(
        outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="a\n"),
            nbformat.v4.new_output("stream", name="stdout", text="b\n"),
        ]
    )
    assert runner.cell_outputs(one) == runner.cell_outputs(two)


def test_byte_map_shows_every_byte_and_lists_the_fields() -> None:
    data = bytes(range(40))
    picture = nbviz.byte_map(
        data, [(0, 16, "key"), (16, 32, "iv"), (32, 40, "salt")], title="creds", changed=[3]
    )
    root = ET.fromstring(picture.svg)
    svg = "{http://www.w3.org/2000/svg}"
    rows = [e for e in root.iter(f"{svg}text") if e.get("class") == "hex"]
    assert "".join(e.text or "" for e in rows) == data.hex()
    assert all(len(e.get("x", "").split()) == 2 * len(e.text or "") // 2 for e in rows)
    changed = [e for e in root.iter(f"{svg}rect") if e.get("fill") == "#ff8a80"]
    assert [e.get("width") for e in changed] == ["22", "14"]  # the byte, and its legend swatch
    assert "key" in repr(picture) and "salt" in repr(picture) and "[ 32:40 ]" in repr(picture)


def test_sequence_and_report_figures_are_standalone_svg() -> None:
    steps = [nbviz.Step("A", "B", "hello <&>", "detail"), nbviz.Step("B", None, "think")]
    picture = nbviz.sequence(steps, ["A", "B"], title="t")
    ET.fromstring(picture.svg)
    assert "A → B: hello <&> (detail)" in repr(picture)
    figure = nbviz.report_figure('<svg class="seq" width="10" height="20"><line/></svg>')
    root = ET.fromstring(figure.svg)
    style = root.find("{http://www.w3.org/2000/svg}style")
    assert style is not None and "--accent" in (style.text or "")
    assert "@media" not in (style.text or "")
