"""The README's example runs as written, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

import captum_baselines as cb

ROOT = Path(__file__).parent.parent


def test_readme_python_examples_run() -> None:
    """The blocks run in order in one namespace, as a reader pastes them."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    # the first block ends with the adaptive IG at rtol=0.01 from a blurred baseline
    model, x, delta = namespace["model"], namespace["x"], namespace["delta"]
    with torch.no_grad():
        gap = model(x)[:, 3] - model(cb.baselines.blur(x, sigma=5.0))[:, 3]
    assert namespace["attr"].shape == x.shape
    assert bool((delta.abs() <= 0.01 * gap.abs() + 1e-6).all())

    for block in blocks[1:]:
        exec(compile(block, "README.md", "exec"), namespace)
    # the second block: Expected Gradients' standard error, a path method, ROAD
    assert namespace["standard_error"].shape == (len(x),)
    assert namespace["attr"].shape == x.shape
    gap = namespace["gap"]
    assert gap.low <= gap.mean <= gap.high


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()
