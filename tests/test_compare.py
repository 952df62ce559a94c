"""Tests of the comparison harness."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import nn

from captum_baselines.metrics.ablation import ablation_curve, area_under_curve
from captum_baselines.metrics.compare import ComparisonResult, compare_attributions
from captum_baselines.metrics.degradation import degradation_curve
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
            patch_size=4,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
    assert isinstance(result, ComparisonResult)
    assert list(result.methods) == ["IG black", "Saliency", "random"]
    assert result.curve_names == ("top_k", "mass_center", "degradation")
    assert result.n_patches == 4

    ig_attr, ig_delta = methods["IG black"](x, target)
    ig = result.methods["IG black"]
    torch.testing.assert_close(ig.attributions, ig_attr)
    torch.testing.assert_close(ig.delta, ig_delta)
    top_k = ablation_curve(model, x, ig_attr, target)
    mass = ablation_curve(model, x, ig_attr, target, order="mass_center")
    degradation = degradation_curve(model, x, ig_attr, target, 4, None)
    torch.testing.assert_close(ig.curves["top_k"], top_k)
    torch.testing.assert_close(ig.curves["mass_center"], mass)
    torch.testing.assert_close(ig.curves["degradation"], degradation)

    rows = {row["method"]: row for row in result.table()}
    assert rows["IG black"]["auc_top_k"] == pytest.approx(
        float(area_under_curve(top_k).mean())
    )
    assert rows["IG black"]["auc_degradation"] == pytest.approx(
        float(area_under_curve(degradation).mean())
    )
    assert rows["IG black"]["abs_delta"] == pytest.approx(float(ig_delta.abs().mean()))
    assert math.isnan(rows["Saliency"]["abs_delta"])
    assert all(row["seconds"] >= 0 for row in rows.values())
    for r in result.methods.values():
        for curve in r.curves.values():
            assert torch.equal(curve[:, 0], torch.ones(4, dtype=torch.float64))

    text = result.format_table()
    lines = text.splitlines()
    assert lines[0] == (
        "| method | AUC top_k | AUC mass_center | AUC degradation | "
        "mean abs delta | seconds |"
    )
    assert len(lines) == 5 and lines[3].startswith("| Saliency |")
    assert lines[3].split("|")[5].strip() == "-"
    assert set(result.curves("top_k")) == {"IG black", "Saliency", "random"}
    assert result.x("degradation").tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


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
        progress=False,
    )
    rows = {row["method"]: row for row in result.table()}
    assert rows["IG"]["auc_top_k"] < rows["random"]["auc_top_k"]
    assert list(rows["IG"]) == ["method", "auc_top_k", "abs_delta", "seconds"]


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
        progress=False,
    )
    assert seen == [(3, [0, 1, 2]), (1, [3])]
    whole = compare_attributions(
        model,
        x,
        target,
        {"Saliency": methods["Saliency"]},
        curves=("top_k",),
        random_control=False,
        progress=False,
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
            progress=progress,
        )
        for progress in (False, True)
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
            progress=False,
            **kwargs,
        )
