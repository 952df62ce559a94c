"""The reading of a comparison: flags, tiers and the Distill check computed from
the table, in each curve's direction."""

from __future__ import annotations

import json
import math

import torch
from torch import nn

from captum_baselines.metrics.compare import (
    HIGHER_IS_BETTER,
    ROAD_GAP,
    ComparisonResult,
    MethodResult,
)
from captum_baselines.metrics.intervals import Interval
from captum_baselines.study.problems import (
    VARIANTS,
    LayerChoice,
    Problem,
    Settings,
)
from captum_baselines.study.report import (
    format_tiers,
    pattern_samples,
    read,
    write_report,
)
from captum_baselines.study.runner import Outcome

CURVES = ("top_k", "mass_center")
ROAD = ("top_k", "road_morf", "road_lerf")


def result(
    table: dict[str, dict[str, tuple[float, float, float]]],
    curves: tuple[str, ...] = CURVES,
    deltas: dict[str, float] | None = None,
    attributions: dict[str, torch.Tensor] | None = None,
) -> ComparisonResult:
    """A comparison whose table holds ``{method: {summary: (mean, low, high)}}``."""
    methods = {}
    for name, cells in table.items():
        delta = (deltas or {}).get(name)
        methods[name] = MethodResult(
            name,
            (attributions or {}).get(name, torch.zeros(1)),
            {},
            {},
            None if delta is None else torch.full((2,), delta),
            0.1,
            {s: Interval(*cells[s], confidence=0.95) for s in cells},
        )
    return ComparisonResult(methods, curves, torch.linspace(0, 1, 11), None)


def point(value: float) -> tuple[float, float, float]:
    """A narrow interval around ``value``: apart from any other point."""
    return (value, value - 0.001, value + 0.001)


def outcome(comparison, *, n: int = 4, side: int = 16, layer=None, variant=None):
    images = torch.zeros(n, 1, side, side)
    problem = Problem(
        nn.Identity(),
        images,
        torch.zeros(n, dtype=torch.long),
        (0.0, 1.0),
        images,
        layer,
        "title",
        "description",
        facts={"variant": "x"},
        variant=variant,
    )
    return Outcome(problem, comparison, {}, 1.0, 0.5)


def curves(top_k: float, mass: float) -> dict[str, tuple[float, float, float]]:
    return {"top_k": point(top_k), "mass_center": point(mass)}


def test_every_method_worse_than_random_is_flagged_on_every_curve():
    table = {
        "A": curves(0.1, 0.50),
        "B": curves(0.7, 0.40),
        "C": curves(0.2, 0.46),
        "random": curves(0.6, 0.45),
    }
    reading = read(outcome(result(table)))
    assert reading.data["worse_than_random"] == {
        "top_k": ["B"],
        "mass_center": ["A", "C"],
    }
    (top, mass) = reading.flags
    assert top.startswith(
        "Top-k ablation, lower is better: 1 of 3 methods scores worse"
    )
    assert "**B** 0.700 [0.699, 0.701]" in top
    assert mass.startswith("Mass-center ablation, lower is better: 2 of 3 methods")


def test_worse_than_random_follows_each_summary_direction():
    """On ROAD's LeRF curve and gap a *lower* area than the control's is worse."""
    table = {
        "A": {"top_k": point(0.1), "road_morf": point(0.2), "road_lerf": point(0.9)},
        "B": {"top_k": point(0.2), "road_morf": point(0.3), "road_lerf": point(0.4)},
        "random": {
            "top_k": point(0.6),
            "road_morf": point(0.7),
            "road_lerf": point(0.6),
        },
    }
    comparison = result(table, ROAD)
    # the gap is summarized by the result itself: give it its intervals
    for name, gap in {"A": 0.7, "B": 0.1, "random": -0.1}.items():
        comparison.methods[name].intervals[ROAD_GAP] = Interval(*point(gap), 0.95)
    assert {"road_lerf", ROAD_GAP} <= HIGHER_IS_BETTER
    reading = read(outcome(comparison))
    assert reading.data["worse_than_random"] == {
        "top_k": [],
        "road_morf": [],
        "road_lerf": ["B"],
        ROAD_GAP: [],
    }
    (flag,) = reading.flags
    assert flag.startswith("ROAD LeRF (least relevant first), higher is better:")
    assert reading.data["best"]["road_lerf"] == {"method": "A", "tied": []}
    assert reading.data["best"][ROAD_GAP] == {"method": "A", "tied": []}
    assert any(
        line.startswith("ROAD gap (LeRF - MoRF): the highest mean is **A**'s")
        for line in reading.lines
    )


def test_overlapping_intervals_are_never_ranked():
    table = {
        "A": {"top_k": (0.10, 0.08, 0.12), "mass_center": point(0.3)},
        "B": {"top_k": (0.11, 0.09, 0.13), "mass_center": point(0.3)},  # overlaps A
        "C": {"top_k": (0.30, 0.28, 0.32), "mass_center": point(0.3)},  # apart
    }
    reading = read(outcome(result(table)))
    assert reading.data["best"]["top_k"] == {"method": "A", "tied": ["B"]}
    (line,) = [line for line in reading.lines if line.startswith("Top-k")]
    assert "the intervals of **B** overlap it" in line and "**C**" not in line
    assert reading.data["rankings"]["top_k"] == [["A", "B"], ["C"]]
    assert "Mean fill (top-k, MoRF; lower AUC first): {A, B} > C" in reading.rankings


def test_format_tiers():
    assert format_tiers([["A", "B"], ["C"], ["D", "E"]]) == "{A, B} > C > {D, E}"


def test_one_image_ranks_nothing():
    table = {"A": curves(0.1, 0.3), "B": curves(0.5, 0.3), "random": curves(0.6, 0.4)}
    reading = read(outcome(result(table), n=1))
    assert "rankings" not in reading.data and "best" not in reading.data
    assert any(line.startswith("One image:") for line in reading.lines)


def test_intervals_overlapping_the_control_are_flagged():
    table = {
        "A": {"top_k": (0.40, 0.30, 0.50), "mass_center": point(0.3)},
        "B": {"top_k": (0.10, 0.05, 0.15), "mass_center": point(0.3)},
        "random": {"top_k": (0.45, 0.40, 0.50), "mass_center": point(0.5)},
    }
    reading = read(outcome(result(table)))
    assert reading.data["not_separable_from_random"] == {"top_k": ["A"]}
    assert "worse" not in " ".join(f for f in reading.flags if "Top-k" in f)


def _distill_table(
    black: tuple[float, float, float], morf: dict[str, tuple[float, float, float]]
) -> ComparisonResult:
    others = ("EG training data", "IG uniform", "IG blur", "IG max distance")
    table = {"IG black": {"top_k": point(0.5), "road_morf": black}}
    for name in others:
        table[name] = {"top_k": point(0.15), "road_morf": morf.get(name, point(0.2))}
    comparison = result(table, ("top_k", "road_morf", "road_lerf"))
    for name in table:  # LeRF and the gap: every baseline above black
        high = 0.2 if name == "IG black" else 0.9
        for summary in ("road_lerf", ROAD_GAP):
            comparison.methods[name].intervals[summary] = Interval(*point(high), 0.95)
    return comparison


def test_the_distill_ordering_is_computed_under_the_mean_fill_and_road():
    survives = read(outcome(_distill_table(point(0.6), {})))
    assert survives.data["distill_survives_road"] is True
    assert all(
        verdict == "better"
        for verdicts in survives.data["distill_order"].values()
        for verdict in verdicts.values()
    )
    (line,) = [r for r in survives.rankings if r.startswith("Distill's ordering")]
    assert line.endswith("It survives ROAD (MoRF and the gap).")

    # Under ROAD MoRF, blur's interval reaches black's and max distance is worse.
    broken = read(
        outcome(
            _distill_table(
                (0.3, 0.25, 0.35),
                {"IG blur": (0.28, 0.2, 0.31), "IG max distance": point(0.5)},
            )
        )
    )
    assert broken.data["distill_order"]["road_morf"] == {
        "EG training data": "better",
        "IG uniform": "better",
        "IG blur": "tied",
        "IG max distance": "worse",
    }
    assert broken.data["distill_survives_road"] is False
    (line,) = [r for r in broken.rankings if r.startswith("Distill's ordering")]
    assert (
        "ROAD MoRF (most relevant first): does not hold (IG blur tied with black, "
        "IG max distance worse than black)"
    ) in line
    assert line.endswith("It survives ROAD only in part (on the gap).")


def test_rankings_that_disagree_name_the_flipped_pairs():
    table = {
        "A": {"top_k": point(0.1), "road_morf": point(0.5)},
        "B": {"top_k": point(0.3), "road_morf": point(0.2)},
        "C": {"top_k": point(0.4), "road_morf": (0.45, 0.35, 0.6)},  # tied with A
    }
    reading = read(outcome(result(table, ("top_k", "road_morf"))))
    assert reading.rankings[-1] == (
        "The mean fill and ROAD MoRF order 1 pair of methods in opposite ways, "
        "each with disjoint intervals: A vs B."
    )


def test_completeness_residuals_far_above_the_others_are_flagged():
    deltas = {"A": 0.01, "B": 0.02, "C": 0.015, "D": 0.9}
    table = {m: curves(0.1, 0.1) for m in [*deltas, "E"]}
    reading = read(outcome(result(table, deltas=deltas)))
    assert reading.data["completeness_outliers"] == ["D"]
    assert any(
        flag.startswith("**D**: mean completeness residual 0.9")
        for flag in reading.flags
    )


def test_a_layer_map_too_coarse_to_localize_is_flagged():
    layer = LayerChoice("features.7", nn.Identity(), (2, 2), "given by --layer")
    table = {
        "RSI-Grad-CAM uniform output": curves(0.1, 0.1),
        "IG black": curves(0.2, 0.2),
    }
    reading = read(outcome(result(table), side=64, layer=layer))
    assert reading.data["layer"]["too_coarse"] is True
    (flag,) = [f for f in reading.flags if "too coarse" in f]
    assert "2x2 map of layer `features.7`" in flag and "32x32 px" in flag
    fine = LayerChoice("features.3", nn.Identity(), (8, 8), "chosen")
    reading = read(outcome(result(table), side=64, layer=fine))
    assert not any("too coarse" in f for f in reading.flags)
    assert any(
        "layer `features.3` (8x8 maps for 64x64 px images), chosen." in x
        for x in reading.lines
    )


def test_the_decoy_reading_returns_its_data_and_mutates_nothing(tmp_path):
    side = 16  # decoy patch: 2x2 px
    attributions = torch.zeros(2, 1, side, side)
    attributions[:, :, :2, :2] = 1.0  # all of it on the patch
    attributions[1, :, 8:, 8:] = 4.0 / 64  # image 2: half of its mass elsewhere
    table = {"EG training data": curves(0.1, 0.1), "random": curves(0.5, 0.5)}
    comparison = result(
        table,
        attributions={
            "EG training data": attributions,
            "random": torch.ones(2, 1, side, side),
        },
    )
    done = outcome(comparison, n=2, side=side, variant=VARIANTS["decoy"])
    facts = dict(done.problem.facts)
    reading = write_report(done, Settings(), tmp_path)
    assert reading.data["decoy_share"]["EG training data"] == 0.75
    assert done.problem.facts == facts  # the reading is returned, not stored
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["reading"]["decoy_share"]["EG training data"] == 0.75
    assert document["flags"] == reading.flags
    assert document["rankings"] == reading.rankings
    assert document["settings"]["fractions"][:2] == [0.0, 0.1]
    report = (tmp_path / "results.md").read_text()
    assert "decoy patch (1.6% of the pixels): EG training data 75.0%" in report
    assert "## Rankings" in report and "## Time" in report


def test_blind_spots_of_a_variant_are_read_against_the_others():
    table = {
        "IG black": curves(0.5, 0.3),
        "IG blur": curves(0.1, 0.3),
        "EG training data": curves(0.2, 0.3),
        "random": curves(0.7, 0.3),
    }
    reading = read(outcome(result(table), variant=VARIANTS["inverted"]))
    (line,) = [line for line in reading.lines if "cannot attribute" in line]
    assert line == (
        "**IG black** cannot attribute black ink, where `x - x' = 0`: its Top-k "
        "ablation AUC is 0.500 [0.499, 0.501], against a median of 0.150 for the "
        "other methods and 0.700 [0.699, 0.701] for the random control."
    )


def test_pattern_samples_are_the_samples_the_statistics_see():
    """Every reference example at every output position of a layer is one
    sample of its statistics, as ``accumulate_statistics`` counts them."""
    from captum_baselines.attr.patterns import accumulate_statistics

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, stride=2, groups=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 3 * 3, 2),
    )
    references = torch.rand(6, 3, 8, 8)
    problem = Problem(
        model, references[:2], torch.zeros(2), (0.0, 1.0), references, None, "t", "d"
    )
    done = Outcome(problem, result({"PGIG black": curves(0.1, 0.1)}), {}, 1.0)
    counted = pattern_samples(done)
    statistics = accumulate_statistics(model, references, show_progress=False)
    assert {name: samples for name, (samples, _) in counted.items()} == {
        name: int(stats.count) for name, stats in statistics.items()
    }
    assert counted["2"] == (6 * 3 * 3, 4 * 3 * 3)
    reading = read(done)
    (line,) = [x for x in reading.lines if x.startswith("**PGIG black**")]
    assert "from 6 samples (layer `5`) to 384 (layer `0`)" in line
    assert "`5` (6 for 45)" in line  # fewer samples than input dimensions
    assert math.isclose(done.curve_seconds, 0.0)
