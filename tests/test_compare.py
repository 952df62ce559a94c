"""Tests of the comparison harness."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import nn

from captum_baselines.metrics.ablation import (
    ablation_curve,
    area_under_curve,
    area_under_curve_interval,
)
from captum_baselines.metrics.compare import (
    CURVES,
    DEFAULT_CURVES,
    HIGHER_IS_BETTER,
    ComparisonResult,
    MethodResult,
    batch_generator,
    compare_attributions,
)
from captum_baselines.metrics.degradation import degradation_curve
from captum_baselines.metrics.intervals import Interval
from tests.helpers import model_unchanged, small_cnn

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")


def setup():
    model = small_cnn().double()
    x = torch.rand(
        4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    target = torch.tensor([0, 1, 2, 3])
    ig = IntegratedGradients(model)
    methods = {
        "IG black": lambda xs, t: ig.attribute(
            xs, baselines=0 * xs, target=t, n_steps=8, return_convergence_delta=True
        ),
        "Saliency": lambda xs, t: Saliency(model).attribute(xs, target=t),
    }
    return model, x, target, methods


def test_table_and_curves_agree_with_direct_calls():
    model, x, target, methods = setup()
    with model_unchanged(model):
        result = compare_attributions(
            model,
            x,
            target,
            methods,
            curves=CURVES,
            patch_size=4,
            generator=torch.Generator().manual_seed(0),
            show_progress=False,
        )
    assert isinstance(result, ComparisonResult)
    assert list(result.methods) == ["IG black", "Saliency", "random"]
    assert result.curve_names == CURVES
    assert CURVES == ("top_k", "mass_center", "degradation", "road_morf", "road_lerf")
    assert result.summary_names == CURVES + ("road_gap",)
    assert result.n_patches == 4

    ig_attr, ig_delta = methods["IG black"](x, target)
    ig = result.methods["IG black"]
    torch.testing.assert_close(ig.attributions, ig_attr)
    torch.testing.assert_close(ig.delta, ig_delta)
    top_k = ablation_curve(model, x, ig_attr, target)
    mass = ablation_curve(model, x, ig_attr, target, order="mass_center")
    degradation = degradation_curve(model, x, ig_attr, target, 4, None)
    # the ROAD noise of each curve and batch comes from a generator of its own,
    # seeded from one draw of `generator`
    seed = int(torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(0)))
    assert result.seed == seed
    road_morf = ablation_curve(
        model,
        x,
        ig_attr,
        target,
        fill="road",
        generator=batch_generator(seed, "curve road_morf", 0),
    )
    road_lerf = ablation_curve(
        model,
        x,
        ig_attr,
        target,
        fill="road",
        direction="lerf",
        generator=batch_generator(seed, "curve road_lerf", 0),
    )
    torch.testing.assert_close(ig.curves["top_k"], top_k)
    torch.testing.assert_close(ig.curves["mass_center"], mass)
    torch.testing.assert_close(ig.curves["degradation"], degradation)
    torch.testing.assert_close(ig.curves["road_morf"], road_morf)
    torch.testing.assert_close(ig.curves["road_lerf"], road_lerf)

    rows = {row["method"]: row for row in result.table()}
    assert rows["IG black"]["auc_top_k"] == pytest.approx(
        float(area_under_curve(top_k).mean())
    )
    assert rows["IG black"]["auc_degradation"] == pytest.approx(
        float(area_under_curve(degradation).mean())
    )
    gap = area_under_curve(road_lerf) - area_under_curve(road_morf)
    assert rows["IG black"]["road_gap"] == pytest.approx(float(gap.mean()))
    for key in ("auc_top_k", "auc_road_morf", "auc_road_lerf", "road_gap"):
        row = rows["IG black"]
        assert row[f"{key}_low"] <= row[key] <= row[f"{key}_high"]
    assert rows["IG black"]["abs_delta"] == pytest.approx(float(ig_delta.abs().mean()))
    assert math.isnan(rows["Saliency"]["abs_delta"])
    assert all(row["seconds"] >= 0 for row in rows.values())
    for r in result.methods.values():
        for curve in r.curves.values():
            assert torch.equal(curve[:, 0], torch.ones(4, dtype=torch.float64))
    interval = result.interval("IG black", "top_k")
    expected = area_under_curve_interval(top_k)  # the same default resamples
    assert interval.low == pytest.approx(expected.low)
    assert interval.high == pytest.approx(expected.high)

    text = result.format_table()
    lines = text.splitlines()
    assert lines[0] == (
        "| method | AUC top_k | AUC mass_center | AUC degradation | "
        "AUC road_morf | AUC road_lerf | ROAD gap (LeRF - MoRF) | "
        "mean abs delta | seconds |"
    )
    assert len(lines) == 5 and lines[3].startswith("| Saliency |")
    assert lines[3].split("|")[8].strip() == "-"
    assert lines[2].split("|")[2].strip() == interval.format(3)
    plain = result.format_table(intervals=False).splitlines()
    assert plain[2].split("|")[2].strip() == f"{interval.mean:.3f}"
    assert set(result.curves("top_k")) == {"IG black", "Saliency", "random"}
    assert result.x("degradation").tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert result.x("road_lerf") is result.fractions


def test_ranking_never_separates_overlapping_intervals():
    model, x, target, methods = setup()
    result = compare_attributions(
        model,
        x,
        target,
        methods,
        curves=("top_k", "road_morf", "road_lerf"),
        generator=torch.Generator().manual_seed(0),
        show_progress=False,
    )
    for curve in result.summary_names:
        tiers = result.ranking(curve)
        assert sorted(m for tier in tiers for m in tier) == sorted(result.methods)
        higher = curve in HIGHER_IS_BETTER
        for tier in tiers:
            means = [result.interval(m, curve).mean for m in tier]
            assert means == sorted(means, reverse=higher)
        for i, upper in enumerate(tiers):
            for lower in tiers[i + 1 :]:
                for a in upper:
                    for b in lower:
                        assert not result.overlaps(a, b, curve)
                        better = result.interval(a, curve).mean
                        worse = result.interval(b, curve).mean
                        assert better > worse if higher else better < worse
    assert HIGHER_IS_BETTER == {"road_lerf", "road_gap"}
    with pytest.raises(ValueError, match="curve"):
        result.ranking("mass_center")
    with pytest.raises(ValueError, match="method"):
        result.interval("nope", "top_k")


def test_ranking_joins_chains_of_overlapping_intervals():
    def result_with(intervals):
        methods = {
            name: MethodResult(
                name,
                torch.zeros(1),
                {},
                {},
                None,
                0.0,
                {"top_k": Interval(mean, low, high, 0.95)},
            )
            for name, (mean, low, high) in intervals.items()
        }
        return ComparisonResult(methods, ("top_k",), torch.zeros(2), None)

    # B overlaps A, C overlaps A but not B: all three share a tier
    chained = result_with(
        {"A": (0.3, 0.1, 0.5), "B": (0.455, 0.45, 0.46), "C": (0.53, 0.47, 0.6)}
    )
    assert chained.ranking("top_k") == [["A", "B", "C"]]
    apart = result_with(
        {"worst": (0.9, 0.8, 1.0), "best": (0.1, 0.0, 0.2), "mid": (0.5, 0.4, 0.6)}
    )
    assert apart.ranking("top_k") == [["best"], ["mid"], ["worst"]]


def test_intervals_follow_the_bootstrap_generator_and_confidence():
    model, x, target, methods = setup()
    runs = [
        compare_attributions(
            model,
            x,
            target,
            {"Saliency": methods["Saliency"]},
            curves=("top_k",),
            random_control=False,
            confidence=confidence,
            n_resamples=300,
            bootstrap_generator=torch.Generator().manual_seed(seed),
            show_progress=False,
        )
        for confidence, seed in ((0.95, 1), (0.95, 1), (0.5, 1))
    ]
    first, again, narrow = (r.interval("Saliency", "top_k") for r in runs)
    assert first == again
    assert narrow.high - narrow.low < first.high - first.low
    assert runs[2].confidence == 0.5


def test_exact_attributions_beat_the_random_control_on_a_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 1)).double()
    with torch.no_grad():
        model[1].bias.fill_(20.0)
    x = torch.rand(6, 2, 6, 6, dtype=torch.float64)
    ig = IntegratedGradients(model)
    result = compare_attributions(
        model,
        x,
        0,
        {"IG": lambda xs, t: ig.attribute(xs, target=t, n_steps=4)},
        curves=("top_k",),
        fill=torch.zeros(1),
        score="logit",
        generator=torch.Generator().manual_seed(1),
        show_progress=False,
    )
    rows = {row["method"]: row for row in result.table()}
    assert rows["IG"]["auc_top_k"] < rows["random"]["auc_top_k"]
    assert list(rows["IG"]) == [
        "method",
        "auc_top_k",
        "auc_top_k_low",
        "auc_top_k_high",
        "abs_delta",
        "seconds",
    ]
    assert result.ranking("top_k") == [["IG"], ["random"]]


def test_batches_targets_and_upsampled_maps():
    model, x, target, methods = setup()
    seen = []

    def recording(xs, t):
        seen.append((len(xs), t.tolist()))
        return methods["Saliency"](xs, t)

    gradcam = LayerGradCam(model, model[4])
    result = compare_attributions(
        model,
        x,
        target,
        {
            "Saliency": recording,
            "Grad-CAM": lambda xs, t: gradcam.attribute(xs, target=t),
        },
        curves=("top_k", "degradation"),
        patch_size=4,
        n_patches=2,
        batch_size=3,
        random_control=False,
        show_progress=False,
    )
    assert seen == [(3, [0, 1, 2]), (1, [3])]
    whole = compare_attributions(
        model,
        x,
        target,
        {"Saliency": methods["Saliency"]},
        curves=("top_k",),
        random_control=False,
        show_progress=False,
    )
    torch.testing.assert_close(
        result.methods["Saliency"].curves["top_k"],
        whole.methods["Saliency"].curves["top_k"],
    )
    cam = result.methods["Grad-CAM"].attributions
    assert cam.shape == (4, 1, 8, 8)
    low = gradcam.attribute(x, target=target)
    expected = LayerGradCam.interpolate(low, (8, 8), interpolate_mode="bilinear")
    torch.testing.assert_close(cam, expected)
    assert result.methods["Grad-CAM"].curves["degradation"].shape == (4, 3)
    assert list(result.methods) == ["Saliency", "Grad-CAM"]


def test_default_curves_are_the_removal_curves_without_road():
    model, x, target, methods = setup()
    result = compare_attributions(
        model, x, target, {"Saliency": methods["Saliency"]}, show_progress=False
    )
    assert result.curve_names == DEFAULT_CURVES == CURVES[:3]
    assert result.summary_names == DEFAULT_CURVES  # no ROAD gap


def test_random_control_follows_the_generator_and_progress(capsys):
    model, x, target, _ = setup()
    runs = [
        compare_attributions(
            model,
            x,
            target,
            {},
            curves=("top_k",),
            generator=torch.Generator().manual_seed(5),
            show_progress=show,
        )
        for show in (False, True)
    ]
    assert torch.equal(
        runs[0].methods["random"].attributions, runs[1].methods["random"].attributions
    )
    assert "compare" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("methods", "kwargs", "error", "match"),
    [
        ({"random": lambda x, t: x}, {}, ValueError, "reserved"),
        ({"a": 3}, {}, TypeError, "callable"),
        ({}, {"random_control": False}, ValueError, "empty"),
        ({"a": lambda x, t: x}, {"curves": ("deletion",)}, ValueError, "curves"),
        ({"a": lambda x, t: x[:1]}, {}, ValueError, "examples"),
        ({"a": lambda x, t: (x, torch.zeros(3))}, {}, ValueError, "deltas"),
        ({"a": lambda x, t: x}, {"batch_size": 0}, ValueError, "batch_size"),
        ({"a": lambda x, t: x}, {"confidence": 2.0}, ValueError, "confidence"),
        ({"a": lambda x, t: x}, {"noise_std": -1.0}, ValueError, "noise_std"),
        ({"a": lambda x, t: x}, {"n_resamples": 0}, ValueError, "n_resamples"),
        (
            {"a": lambda x, t: x},
            {"bootstrap_generator": 1},
            TypeError,
            "bootstrap_generator",
        ),
    ],
)
def test_bad_arguments(methods, kwargs, error, match):
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(error, match=match):
        compare_attributions(
            model,
            x,
            0,
            methods,
            curves=kwargs.pop("curves", ("top_k",)),
            show_progress=False,
            **kwargs,
        )
