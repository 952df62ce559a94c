"""Bootstrap confidence intervals of a mean over examples.

A curve's mean area over a few dozen images is an estimate; two methods whose
intervals overlap should not be ranked.  The interval is the percentile
bootstrap (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch.
13): resample the examples with replacement, take the mean of each resample,
and report the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
of those means.  Passing the same resampling ``indices`` for several methods
pairs them: every method is judged on the same resamples of the same images.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validation import (
    check_finite,
    check_generator,
    check_positive_int,
    check_tensor,
)


@dataclass(frozen=True)
class Interval:
    """A mean over examples and its bootstrap confidence interval.

    Attributes:
        mean: The mean over the examples.
        low, high: The interval's bounds.
        confidence: Its nominal coverage, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    confidence: float

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share a point (then do not rank them)."""
        return self.low <= other.high and other.low <= self.high

    def format(self, digits: int = 3) -> str:
        """``"mean [low, high]"``."""
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def check_confidence(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise TypeError(
            f"`confidence` must be a float in (0, 1), got {type(confidence).__name__}"
        )
    value = float(confidence)
    if not 0 < value < 1:
        raise ValueError(f"`confidence` must lie in (0, 1), got {value}")
    return value


def bootstrap_indices(
    n_examples: int, n_resamples: int = 2000, generator: torch.Generator | None = None
) -> Tensor:
    """``(n_resamples, n_examples)`` example indices drawn with replacement.

    ``generator`` defaults to a fresh one seeded with 0, so that intervals
    repeat from run to run (the global RNG is never used).
    """
    n_examples = check_positive_int("n_examples", n_examples)
    n_resamples = check_positive_int("n_resamples", n_resamples)
    check_generator("generator", generator)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return torch.randint(
        n_examples,
        (n_resamples, n_examples),
        generator=generator,
        device=generator.device,
    )


def bootstrap_interval(
    values: Tensor,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    generator: torch.Generator | None = None,
    *,
    indices: Tensor | None = None,
) -> Interval:
    """Percentile bootstrap interval of the mean of ``values`` over examples.

    Args:
        values: ``(N,)`` one value per example (e.g. areas under curves).
        confidence: Nominal coverage of the interval.
        n_resamples: Bootstrap resamples.
        generator: Source of the resampling (default: seeded with 0).
        indices: ``(B, N)`` resampling indices to use instead of drawing them
            (e.g. the same ones for every method, which pairs the comparison).

    Returns:
        An :class:`Interval`.

    Examples::

        >>> areas = area_under_curve(curve)
        >>> bootstrap_interval(areas).format()
        '0.412 [0.380, 0.441]'
    """
    v = check_tensor("values", values).detach()
    if v.dim() != 1 or v.numel() == 0:
        raise ValueError(
            f"`values` must be a non-empty (N,) tensor, got {tuple(v.shape)}"
        )
    check_finite("values", v)
    confidence = check_confidence(confidence)
    v = v.to(torch.float64)
    if indices is None:
        indices = bootstrap_indices(len(v), n_resamples, generator)
    elif indices.dim() != 2 or indices.shape[1] != len(v):
        raise ValueError(f"`indices` must be (B, {len(v)}), got {tuple(indices.shape)}")
    means = v[indices.to(v.device)].mean(1)
    tail = (1 - confidence) / 2
    bounds = torch.quantile(
        means, torch.tensor([tail, 1 - tail], dtype=torch.float64, device=v.device)
    )
    return Interval(
        mean=float(v.mean()),
        low=float(bounds[0]),
        high=float(bounds[1]),
        confidence=confidence,
    )


def tiers(
    intervals: Mapping[str, Interval], higher_is_better: bool = False
) -> list[list[str]]:
    """The names best first, in tiers that the intervals separate.

    Names whose intervals overlap, directly or through a chain of overlapping
    intervals, share a tier (ordered by mean, best first); every interval of a
    tier lies wholly on the better side of every interval of the next, so names
    are ranked only where the data separate them.

    Args:
        intervals: An interval per name (e.g. per method).
        higher_is_better: Best is the largest mean (else the smallest).
    """
    groups: list[list[str]] = []
    reach = -math.inf
    for name in sorted(intervals, key=lambda n: intervals[n].low):
        if groups and intervals[name].low <= reach:
            groups[-1].append(name)
        else:
            groups.append([name])
        reach = max(reach, intervals[name].high)
    if higher_is_better:
        groups.reverse()
    return [
        sorted(group, key=lambda n: intervals[n].mean, reverse=higher_is_better)
        for group in groups
    ]
