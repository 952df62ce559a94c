"""Tests of spearman_nz and the cascading randomisation check."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from scipy.stats import spearmanr
from torch import nn

from captum_baselines.metrics.sanity import (
    parameter_layers,
    randomization_check,
    randomize_parameters,
    spearman,
    spearman_nz,
)
from tests.helpers import FailingForward, model_unchanged, small_cnn

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")


def sparse_images(n: int = 3) -> torch.Tensor:
    """MNIST-like: mostly black, a bright stroke."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 8, 8, dtype=torch.float64)
    x[:, :, 2:6, 3:5] = torch.rand(n, 1, 4, 2, generator=g, dtype=torch.float64) + 0.5
    return x


def small_mlp_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    ).double()


def integrated_gradients(model, inputs, target):
    return IntegratedGradients(model).attribute(inputs, target=target, n_steps=16)


def test_spearman_nz_equals_scipy_on_masked_features():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 2, 5, 5, generator=g, dtype=torch.float64)
    baselines = x.clone()
    keep = torch.rand(x.shape, generator=g) < 0.4
    baselines[keep] = 0.0
    a = torch.randn(x.shape, generator=g, dtype=torch.float64)
    b = a + torch.randn(x.shape, generator=g, dtype=torch.float64)
    b[0] = torch.round(b[0])  # ties take average ranks, as in scipy
    result = spearman_nz(a, b, x, baselines)
    for i in range(4):
        mask = (x[i] != baselines[i]).numpy()
        expected = spearmanr(a[i].numpy()[mask], b[i].numpy()[mask]).statistic
        assert result[i].item() == pytest.approx(expected, abs=1e-12)

    unmasked = spearman(a, b)
    for i in range(4):
        expected = spearmanr(a[i].numpy().ravel(), b[i].numpy().ravel()).statistic
        assert unmasked[i].item() == pytest.approx(expected, abs=1e-12)


def test_spearman_nz_default_baseline_scalar_and_tuples():
    x = sparse_images(2)
    a = torch.randn_like(x)
    b = torch.randn_like(x)
    default = spearman_nz(a, b, x)
    assert torch.equal(default, spearman_nz(a, b, x, 0.0))
    assert torch.equal(default, spearman_nz(a, b, x, torch.zeros(1)))
    mask = (x[0] != 0).numpy()
    expected = spearmanr(a[0].numpy()[mask], b[0].numpy()[mask]).statistic
    assert default[0].item() == pytest.approx(expected, abs=1e-12)
    # a tuple of inputs joins its features per example
    paired = spearman_nz((a, a), (b, b), (x, x), (0.0, 0.0))
    doubled = np.concatenate([a[0].numpy()[mask]] * 2)
    expected = spearmanr(doubled, np.concatenate([b[0].numpy()[mask]] * 2)).statistic
    assert paired[0].item() == pytest.approx(expected, abs=1e-12)


def test_spearman_nz_is_nan_without_varying_features():
    x = torch.zeros(2, 4, dtype=torch.float64)
    x[1, :2] = 1.0
    a = torch.randn(2, 4, dtype=torch.float64)
    b = torch.ones(2, 4, dtype=torch.float64)
    result = spearman_nz(a, b, x)
    assert math.isnan(result[0]) and math.isnan(result[1])  # none / constant b


def test_spearman_nz_bad_arguments():
    x = torch.rand(2, 4)
    with pytest.raises(ValueError, match="baselines"):
        spearman_nz(x, x, x, torch.zeros(3))
    with pytest.raises(ValueError, match="`a`"):
        spearman_nz(x[:, :3], x, x)
    with pytest.raises(ValueError, match="baselines"):
        spearman_nz(x, x, x, (x, x))
    with pytest.raises(TypeError, match="`b`"):
        spearman_nz(x, [1, 2], x)


def test_cascade_is_top_down_in_forward_order():
    model = small_cnn()
    x = torch.rand(2, 3, 6, 6)
    assert parameter_layers(model, x) == ["0", "1", "4", "8"]
    with model_unchanged(model):
        result = randomization_check(
            model, lambda m, xs, t: Saliency(m).attribute(xs, target=t), x, 1
        )
    assert result.layers == ["8", "4", "1", "0"]
    assert result.spearman_abs.shape == (4, 2)
    assert torch.equal(result.original, Saliency(model).attribute(x, target=1))


def test_sundararajan_taly_effect_and_model_untouched():
    model = small_mlp_cnn()
    x = sparse_images()
    g = torch.Generator().manual_seed(0)
    with model_unchanged(model):
        result = randomization_check(
            model, integrated_gradients, x, 1, generator=g, progress=False
        )
    assert result.layers == ["5", "3", "0"]
    table = result.table()
    # |IG| with a black baseline is 0 on every black pixel whatever the weights:
    # the plain absolute correlation stays near 1 ...
    assert all(row["spearman_abs"] > 0.9 for row in table)
    # ... while spearman_nz, over the stroke only, collapses.
    assert all(row["spearman_nz"] < 0.5 for row in table)
    for layer, attributions in enumerate(result.randomized):
        torch.testing.assert_close(
            result.spearman_nz[layer], spearman_nz(result.original, attributions, x)
        )
        torch.testing.assert_close(
            result.spearman_abs[layer],
            spearman(result.original.abs(), attributions.abs()),
        )


def test_identity_randomization_gives_perfect_correlation_and_seed_repeats():
    model = small_mlp_cnn()
    x = sparse_images(2)
    same = randomization_check(
        model, integrated_gradients, x, 0, randomize=lambda module, g: None
    )
    assert torch.equal(same.spearman_signed, torch.ones(3, 2, dtype=torch.float64))
    assert torch.equal(same.spearman_nz, torch.ones(3, 2, dtype=torch.float64))

    runs = [
        randomization_check(
            model,
            integrated_gradients,
            x,
            0,
            layers=["5"],
            generator=torch.Generator().manual_seed(4),
        )
        for _ in range(2)
    ]
    assert runs[0].layers == ["5"]
    assert torch.equal(runs[0].spearman_signed, runs[1].spearman_signed)


def test_randomize_parameters_keeps_scale_and_follows_generator():
    layer = nn.Linear(50, 40).double()
    twin = copy.deepcopy(layer)
    before = layer.weight.detach().clone()
    randomize_parameters(layer, torch.Generator().manual_seed(0))
    randomize_parameters(twin, torch.Generator().manual_seed(0))
    assert torch.equal(layer.weight, twin.weight)
    assert not torch.equal(before, layer.weight)
    assert 0.8 < float(layer.weight.detach().std() / before.std()) < 1.2
    norm = nn.BatchNorm2d(3)  # weight all ones: std 0, falls back to a unit scale
    randomize_parameters(norm, torch.Generator().manual_seed(1))
    assert not torch.equal(norm.weight, torch.ones(3))
    assert bool(torch.isfinite(norm.weight).all())


def test_failure_midway_leaves_the_model_untouched():
    model = small_mlp_cnn()
    x = sparse_images(2)
    calls = {"n": 0}

    def explain(m, xs, t):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("explain failed on purpose")
        return integrated_gradients(m, xs, t)

    with model_unchanged(model), pytest.raises(RuntimeError, match="on purpose"):
        randomization_check(model, explain, x, 0)
    failing = FailingForward(small_cnn(), fail_at=3)
    with model_unchanged(failing), pytest.raises(RuntimeError, match="on purpose"):
        randomization_check(
            failing,
            lambda m, xs, t: Saliency(m).attribute(xs, target=t),
            torch.rand(2, 3, 6, 6),
            0,
        )


def test_bad_arguments():
    model = small_mlp_cnn()
    x = sparse_images(1)
    with pytest.raises(TypeError, match="model"):
        randomization_check(lambda t: t, integrated_gradients, x)
    with pytest.raises(TypeError, match="explain"):
        randomization_check(model, None, x)
    with pytest.raises(ValueError, match="layers"):
        randomization_check(model, integrated_gradients, x, 0, layers=["nope"])
    with pytest.raises(TypeError, match="layers"):
        randomization_check(model, integrated_gradients, x, 0, layers="5")
    with pytest.raises(ValueError, match="no layer"):
        randomization_check(nn.ReLU(), integrated_gradients, x)
    with pytest.raises(TypeError, match="generator"):
        randomization_check(model, integrated_gradients, x, 0, generator=1)
