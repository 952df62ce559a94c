"""The figures written next to the report: the baselines, the attribution maps
(split over several figures when there are many methods, so that none is wider
than a page), one plot per removal curve and the intervals of the table, at a
resolution fit for a paper."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import baselines as B
from ..visualization import (
    plot_attributions,
    plot_baselines,
    plot_comparison,
    plot_intervals,
)
from .problems import Problem, Settings

if TYPE_CHECKING:
    from .runner import Outcome

#: Dots per inch of the PNG files: sharp in print at the figures' sizes.
DPI = 200

#: Images shown in ``attributions.png``.
ROWS = 4

#: Methods per attribution figure: with the input column and the colorbar, 0.8 in
#: panels keep a figure of six within a page's 7.2 in.
METHODS_PER_FIGURE = 6
PANEL_INCHES = 0.8
#: Characters per line of a column title at 8 pt in a 0.8 in panel.
TITLE_WIDTH = 14


def method_groups(names: list[str]) -> list[list[str]]:
    """``names`` in order, cut into the fewest groups of at most
    :data:`METHODS_PER_FIGURE`, as even as possible (11 -> 6 + 5, 16 -> 6 + 5 + 5)."""
    n_groups = max(1, math.ceil(len(names) / METHODS_PER_FIGURE))
    size, extra = divmod(len(names), n_groups)
    groups, start = [], 0
    for g in range(n_groups):
        end = start + size + (g < extra)
        groups.append(names[start:end])
        start = end
    return groups


def attribution_figure_names(n_methods: int) -> list[str]:
    """``attributions.png``, then ``attributions_2.png``, ... one per group."""
    n = max(1, math.ceil(n_methods / METHODS_PER_FIGURE))
    return ["attributions.png"] + [f"attributions_{i}.png" for i in range(2, n + 1)]


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
    """``baselines.png``, ``attributions.png`` (and ``attributions_2.png``, ...
    past :data:`METHODS_PER_FIGURE` methods), ``curves_<curve>.png`` and
    ``intervals.png`` in ``out``; returns their paths."""
    import matplotlib.pyplot as plt

    problem, result = outcome.problem, outcome.result
    rows = min(ROWS, problem.images.shape[0])
    figures = {
        "baselines.png": plot_baselines(
            problem.images[0], baseline_gallery(problem, settings), size=PANEL_INCHES
        ),
    }
    groups = method_groups(list(result.methods))
    for filename, group in zip(attribution_figure_names(len(result.methods)), groups):
        figures[filename] = plot_attributions(
            problem.images[:rows],
            {
                textwrap.fill(
                    name, TITLE_WIDTH, break_on_hyphens=False
                ): result.methods[name].attributions[:rows]
                for name in group
            },
            image_titles=problem.labels[:rows] or None,
            # Contours of a one-channel image are its strokes; on photographs
            # they would only clutter the maps.
            outline=problem.images.shape[1] == 1,
            size=PANEL_INCHES,
        )
    for curve in result.curve_names:
        figures[f"curves_{curve}.png"] = plot_comparison(result, curve)
    figures["intervals.png"] = plot_intervals(result)
    written = []
    for filename, figure in figures.items():
        figure.savefig(out / filename, dpi=DPI)
        plt.close(figure)
        written.append(out / filename)
    return written


__all__ = [
    "DPI",
    "METHODS_PER_FIGURE",
    "ROWS",
    "attribution_figure_names",
    "baseline_gallery",
    "method_groups",
    "write_figures",
]
