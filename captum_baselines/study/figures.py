"""The figures written next to the report: the baselines, the attribution maps
and one plot per removal curve, at a resolution fit for a paper."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import baselines as B
from ..visualization import plot_attributions, plot_baselines, plot_comparison
from .problems import Problem, Settings

if TYPE_CHECKING:
    from .runner import Outcome

#: Dots per inch of the PNG files: sharp in print at the figures' sizes.
DPI = 200

#: Images shown in ``attributions.png``.
ROWS = 4


def baseline_gallery(problem: Problem, settings: Settings) -> dict[str, Tensor]:
    """One example of each baseline the table compares, for the first image."""
    x, vr = problem.images[:1], problem.value_range
    generator = torch.Generator().manual_seed(settings.seed)
    gallery = {
        "black": B.black(x, vr),
        "white": B.white(x, vr),
        "max distance": B.max_distance(x, vr),
        "blur": B.blur(x, problem.blur_sigma(settings)),
        "uniform": B.uniform(x, vr, generator=generator),
        "gaussian": B.gaussian(x, problem.gaussian_sigma(), vr, generator=generator),
        "training data": B.from_data(problem.reference_data, x, generator=generator),
    }
    return {name: b.expand_as(x) for name, b in gallery.items()}


def write_figures(outcome: Outcome, settings: Settings, out: Path) -> list[Path]:
    """``baselines.png``, ``attributions.png`` and ``curves_<curve>.png`` in
    ``out``; returns their paths."""
    import matplotlib.pyplot as plt

    problem, result = outcome.problem, outcome.result
    rows = min(ROWS, problem.images.shape[0])
    figures = {
        "baselines.png": plot_baselines(
            problem.images[0], baseline_gallery(problem, settings)
        ),
        "attributions.png": plot_attributions(
            problem.images[:rows],
            {
                name.replace(" ", "\n", 1): r.attributions[:rows]
                for name, r in result.methods.items()
            },
            image_titles=problem.labels[:rows] or None,
            # Contours of a one-channel image are its strokes; on photographs
            # they would only clutter the maps.
            outline=problem.images.shape[1] == 1,
        ),
    }
    for curve in result.curve_names:
        figures[f"curves_{curve}.png"] = plot_comparison(result, curve)
    written = []
    for filename, figure in figures.items():
        figure.savefig(out / filename, dpi=DPI)
        plt.close(figure)
        written.append(out / filename)
    return written


__all__ = ["DPI", "ROWS", "baseline_gallery", "write_figures"]
