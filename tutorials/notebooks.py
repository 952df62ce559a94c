"""Execute the tutorials and check their committed outputs.

The notebooks are committed *with* their outputs, so that a repository browser
shows the figures.  ``tests/test_tutorials.py`` re-executes each one and fails
when a committed output is stale: the text outputs (printed numbers, tables)
must match the fresh run, numbers within the precision they were printed with
(figures are not compared byte for byte).  After editing a notebook, refresh it::

    python tutorials/notebooks.py tutorials/01_baselines.ipynb   # or: --all

A cell tagged ``nondeterministic`` (timings, for instance) is executed but its
text is not compared.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
SKIP_TAG = "nondeterministic"
#: Per cell; the whole notebook must stay under two minutes on two cores.
CELL_TIMEOUT = 120

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def execute(path: Path, workdir: Path | None = None) -> tuple[Any, float]:
    """The notebook at ``path`` executed top to bottom, and the seconds it took.

    The kernel imports the package from this checkout (``PYTHONPATH``), draws
    figures off-screen and runs torch on one thread, so that its numbers do not
    depend on the machine's core count.
    """
    notebook = nbformat.read(path, as_version=4)
    env_path = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    saved = {
        k: os.environ.get(k) for k in ("PYTHONPATH", "MPLBACKEND", "OMP_NUM_THREADS")
    }
    os.environ.update(PYTHONPATH=env_path, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    try:
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(workdir or path.parent)}},
        )
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook, seconds


def text_outputs(cell: Any) -> str:
    """The text a code cell printed or returned (streams and ``text/plain``)."""
    parts = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(output.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "text/plain" in data and not any(k.startswith("image/") for k in data):
                parts.append(data["text/plain"])
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
    return "\n".join(p.rstrip() for p in "".join(parts).splitlines())


def _tolerance(printed: str) -> float:
    """Two units of the last digit the number was printed with."""
    mantissa, _, exponent = printed.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 2 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def differences(committed: str, fresh: str) -> list[str]:
    """Where two cell outputs disagree: text, or numbers beyond their precision."""
    old_text, new_text = _NUMBER.split(committed), _NUMBER.split(fresh)
    if old_text != new_text:
        return [f"text differs:\n--- committed\n{committed}\n--- fresh\n{fresh}"]
    problems = []
    for old, new in zip(_NUMBER.findall(committed), _NUMBER.findall(fresh)):
        a, b = float(old), float(new)
        allowed = max(_tolerance(old), _tolerance(new), 0.01 * max(abs(a), abs(b)))
        if abs(a - b) > allowed:
            problems.append(f"{old} (committed) vs {new} (fresh)")
    return problems


def stale_cells(committed: Any, fresh: Any) -> list[str]:
    """One message per code cell whose committed output no longer matches."""
    messages = []
    pairs = zip(committed.cells, fresh.cells, strict=True)
    for index, (old, new) in enumerate(pairs):
        if old.cell_type != "code" or SKIP_TAG in old.get("metadata", {}).get(
            "tags", []
        ):
            continue
        for problem in differences(text_outputs(old), text_outputs(new)):
            messages.append(f"cell {index}: {problem}")
        old_images = sum(
            "image/png" in o.get("data", {}) for o in old.get("outputs", [])
        )
        new_images = sum(
            "image/png" in o.get("data", {}) for o in new.get("outputs", [])
        )
        if old_images != new_images:
            messages.append(
                f"cell {index}: {old_images} committed figure(s), {new_images} now"
            )
    return messages


def refresh(path: Path) -> float:
    """Executes ``path`` and writes it back with its outputs; returns the seconds."""
    notebook, seconds = execute(path)
    nbformat.write(notebook, path)
    return seconds


if __name__ == "__main__":
    targets = (
        TUTORIALS if sys.argv[1:] == ["--all"] else [Path(a) for a in sys.argv[1:]]
    )
    if not targets:
        sys.exit(__doc__)
    for target in targets:
        print(f"{target.name}: {refresh(target.resolve()):.1f} s")
