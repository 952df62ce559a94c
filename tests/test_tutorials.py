"""Every notebook under tutorials/ executes, fast, and its committed outputs are
current (see ``tutorials/notebooks.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tutorials"))
from notebooks import TUTORIALS, execute, stale_cells, text_outputs  # noqa: E402

#: The guide's limit is two minutes on two cores; a loaded CI machine gets slack.
SECONDS = 180


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_its_committed_outputs_are_current(
    path: Path, tmp_path: Path
) -> None:
    committed = nbformat.read(path, as_version=4)
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert any(c.get("outputs") for c in code), f"{path.name} has no committed outputs"
    fresh, seconds = execute(path, tmp_path)
    errors = [
        text_outputs(cell)
        for cell in fresh.cells
        if cell.cell_type == "code"
        and any(o.get("output_type") == "error" for o in cell.get("outputs", []))
    ]
    assert not errors, errors
    warnings = [
        o.get("text", "")
        for cell in fresh.cells
        for o in cell.get("outputs", [])
        if o.get("name") == "stderr" and "TqdmWarning" in o.get("text", "")
    ]
    assert not warnings, warnings
    stale = stale_cells(committed, fresh)
    assert not stale, (
        f"{path.name}: committed outputs are stale; refresh with "
        f"`python tutorials/notebooks.py {path.relative_to(path.parent.parent)}`:\n"
        + "\n".join(stale)
    )
    assert seconds < SECONDS, f"{path.name} took {seconds:.0f} s"
