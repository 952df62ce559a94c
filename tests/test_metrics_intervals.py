"""Tests of the bootstrap intervals of mean areas."""

from __future__ import annotations

import pytest
import torch

from captum_baselines.metrics import (
    Interval,
    area_under_curve,
    area_under_curve_interval,
    bootstrap_interval,
)
from captum_baselines.metrics.intervals import bootstrap_indices


def synthetic_curves(n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, 11)`` curves ``1 - s f`` with ``s = u^2``, ``u`` uniform: a skewed
    distribution of areas ``1 - s / 2`` whose mean is exactly ``1 - 1 / 6``."""
    s = torch.rand(n, 1, generator=generator, dtype=torch.float64) ** 2
    return 1 - s * torch.linspace(0, 1, 11, dtype=torch.float64)


def test_coverage_of_a_known_mean_is_about_nominal():
    true_mean = 1 - 1 / 6
    hits = 0
    trials = 200
    for trial in range(trials):
        curves = synthetic_curves(40, torch.Generator().manual_seed(trial))
        interval = area_under_curve_interval(
            curves,
            n_resamples=1000,
            generator=torch.Generator().manual_seed(10_000 + trial),
        )
        hits += interval.low <= true_mean <= interval.high
    # measured: 189 of 200 (94.5%) for the nominal 95% (190 at n = 20); the
    # percentile bootstrap covers slightly less than nominal on small samples
    assert 0.90 <= hits / trials <= 0.98


def test_interval_contains_the_mean_and_repeats_with_the_seed():
    curves = synthetic_curves(30, torch.Generator().manual_seed(0))
    first = area_under_curve_interval(curves)
    again = area_under_curve_interval(curves)
    assert first == again  # the default generator is seeded, not global
    assert first.mean == pytest.approx(float(area_under_curve(curves).mean()))
    assert first.low < first.mean < first.high and first.confidence == 0.95
    wider = area_under_curve_interval(curves, confidence=0.99)
    assert wider.low < first.low and wider.high > first.high
    assert first.format(2).count("[") == 1


def test_shared_indices_pair_the_methods():
    g = torch.Generator().manual_seed(1)
    values = torch.rand(25, generator=g, dtype=torch.float64)
    indices = bootstrap_indices(25, 500, torch.Generator().manual_seed(2))
    a = bootstrap_interval(values, indices=indices)
    b = bootstrap_interval(values + 1, indices=indices)
    assert b.low == pytest.approx(a.low + 1) and b.high == pytest.approx(a.high + 1)
    # a constant has a zero-width interval
    constant = bootstrap_interval(torch.full((5,), 0.3, dtype=torch.float64))
    assert constant.low == pytest.approx(0.3) and constant.high == pytest.approx(0.3)


def test_overlaps():
    a = Interval(0.5, 0.4, 0.6, 0.95)
    assert a.overlaps(Interval(0.7, 0.6, 0.8, 0.95))
    assert not a.overlaps(Interval(0.75, 0.65, 0.85, 0.95))
    assert Interval(0.75, 0.65, 0.85, 0.95).overlaps(Interval(0.7, 0.1, 0.9, 0.95))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: bootstrap_interval(torch.ones(2, 2)), ValueError, "values"),
        (lambda: bootstrap_interval(torch.ones(0)), ValueError, "values"),
        (lambda: bootstrap_interval([1.0, 2.0]), TypeError, "values"),
        (
            lambda: bootstrap_interval(torch.tensor([1.0, float("nan")])),
            ValueError,
            "values",
        ),
        (
            lambda: bootstrap_interval(torch.ones(3), confidence=1.0),
            ValueError,
            "confidence",
        ),
        (
            lambda: bootstrap_interval(torch.ones(3), n_resamples=0),
            ValueError,
            "n_resamples",
        ),
        (
            lambda: bootstrap_interval(torch.ones(3), generator=3),
            TypeError,
            "generator",
        ),
        (
            lambda: bootstrap_interval(torch.ones(3), indices=torch.zeros(4, 2).long()),
            ValueError,
            "indices",
        ),
        (lambda: area_under_curve_interval(torch.ones(5)), ValueError, "curve"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_tiers_rank_only_what_the_intervals_separate():
    from captum_baselines.metrics import Interval, tiers

    intervals = {
        "a": Interval(0.10, 0.05, 0.15, 0.95),
        "b": Interval(0.20, 0.14, 0.25, 0.95),  # overlaps a
        "c": Interval(0.30, 0.24, 0.35, 0.95),  # overlaps b only: chained into a's tier
        "d": Interval(0.60, 0.50, 0.70, 0.95),
        "e": Interval(0.55, 0.52, 0.58, 0.95),  # inside d, smaller mean
    }
    assert tiers(intervals) == [["a", "b", "c"], ["e", "d"]]
    assert tiers(intervals, higher_is_better=True) == [["d", "e"], ["c", "b", "a"]]
    assert tiers({}) == []
