"""Run the notebooks top to bottom and store their outputs, or check the stored ones.

    python notebooks/execute.py                 # execute every notebook, save outputs
    python notebooks/execute.py 02-tcp-handshake.ipynb
    python notebooks/execute.py --check         # execute, compare with the stored outputs

A code cell tagged ``nondeterministic`` (its output legitimately varies: fresh random
keys, live capture, wall-clock times) still runs but its output is not compared. The
kernel is ``python3`` as seen from this interpreter (run it with the project's venv).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NONDETERMINISTIC = "nondeterministic"
#: Output MIME types compared with a fresh run.
COMPARED = ("text/plain", "text/html", "text/markdown", "image/svg+xml")
CELL_TIMEOUT = 120


def notebooks() -> list[Path]:
    """Every notebook in this folder, in reading order."""
    return sorted(HERE.glob("[0-9][0-9]-*.ipynb"))


def execute(
    path: Path, *, kernel_name: str = "python3", env: dict[str, str] | None = None
) -> tuple[Any, float]:
    """Run a copy of the notebook at ``path`` in a fresh kernel started in its folder (with
    the environment ``env``, default: this process's); return the executed notebook and the
    seconds it took. Raises on a failing cell."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT,
        record_timing=False,  # no wall-clock times in the stored notebooks
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.monotonic()
    if env is None:
        client.execute()
    else:
        client.execute(env=env)
    seconds = time.monotonic() - start
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = _coalesced(cell.outputs)
    return nb, seconds


def _coalesced(outputs: list[Any]) -> list[Any]:
    """Consecutive stream outputs of one name merged (how a kernel splits them varies)."""
    out: list[Any] = []
    for output in outputs:
        last = out[-1] if out else None
        if (
            last is not None
            and output.output_type == "stream"
            and last.output_type == "stream"
            and last.name == output.name
        ):
            last.text = "".join(last.text) + "".join(output.text)
        else:
            out.append(output)
    return out


def _text(value: Any) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def cell_outputs(cell: Any) -> list[tuple[str, ...]]:
    """A code cell's outputs in comparable form (streams merged, compared MIME types)."""
    out: list[tuple[str, ...]] = []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            text = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
            if out and out[-1][0] == "stream" and out[-1][1] == output["name"]:
                out[-1] = ("stream", output["name"], out[-1][2] + text)
            else:
                out.append(("stream", output["name"], text))
        elif kind in ("display_data", "execute_result"):
            data = output.get("data", {})
            for mime in COMPARED:
                if mime in data:
                    out.append(("data", mime, _text(data[mime])))
        elif kind == "error":
            out.append(("error", output["ename"], output["evalue"]))
    return [(o[0], o[1], _text(o[2])) if o[0] == "stream" else o for o in out]


def is_nondeterministic(cell: Any) -> bool:
    return NONDETERMINISTIC in cell.get("metadata", {}).get("tags", [])


def differences(stored: Any, fresh: Any) -> list[str]:
    """Where the stored outputs differ from a fresh run (cells tagged nondeterministic
    skipped); empty when they match."""
    a = [c for c in stored.cells if c.cell_type == "code"]
    b = [c for c in fresh.cells if c.cell_type == "code"]
    if len(a) != len(b):
        return [f"{len(a)} code cells stored, {len(b)} run"]
    problems = []
    for i, (old, new) in enumerate(zip(a, b, strict=True), 1):
        if is_nondeterministic(old):
            continue
        if cell_outputs(old) != cell_outputs(new):
            first = _first_line(old.source)
            problems.append(f"code cell {i} ({first}): stored output differs from a fresh run")
    return problems


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.startswith("#"):
            return re.sub(r"\s+", " ", line.strip())[:60]
    return source[:60]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    paths = [HERE / n for n in args.names] if args.names else notebooks()
    status = 0
    for path in paths:
        fresh, seconds = execute(path)
        if args.check:
            problems = differences(nbformat.read(path, as_version=4), fresh)
            for p in problems:
                print(f"{path.name}: {p}")
            status |= bool(problems)
            print(f"{path.name}: {seconds:.1f} s, {'differs' if problems else 'matches'}")
        else:
            nbformat.write(fresh, path)
            print(f"{path.name}: {seconds:.1f} s, outputs stored")
    return status


if __name__ == "__main__":
    sys.exit(main())
