"""Tests of the Spearman correlations and the randomization check."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from scipy.stats import spearmanr
from torch import nn

from captum_baselines import (
    PatternAttribution,
    PatternGuidedIntegratedGradients,
    fit_patterns,
)
from captum_baselines.datasets import load_digits_images
from captum_baselines.metrics.sanity import (
    average_ranks,
    parameter_layers,
    randomization_check,
    randomize_parameters,
    spearman,
    spearman_nz,
)
from captum_baselines.models import DigitsCNN, train_classifier
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


def test_the_three_correlations_equal_scipy_with_ties():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 2, 5, 5, generator=g, dtype=torch.float64)
    baselines = x.clone()
    keep = torch.rand(x.shape, generator=g) < 0.4
    baselines[keep] = 0.0
    a = torch.randn(x.shape, generator=g, dtype=torch.float64)
    b = a + torch.randn(x.shape, generator=g, dtype=torch.float64)
    b[0] = torch.round(b[0])  # ties take average ranks, as in scipy
    a[1] = torch.round(a[1] * 2) / 2
    a[2, :, :2] = 0.0  # a run of equal values at the edge of a row
    result = spearman_nz(a, b, x, baselines)
    signed, absolute = spearman(a, b), spearman(a, b, absolute=True)
    for i in range(6):
        ai, bi = a[i].numpy().ravel(), b[i].numpy().ravel()
        mask = (x[i] != baselines[i]).numpy().ravel()
        expected = spearmanr(np.abs(ai[mask]), np.abs(bi[mask])).statistic
        assert result[i].item() == pytest.approx(expected, abs=1e-12)
        assert signed[i].item() == pytest.approx(spearmanr(ai, bi).statistic, abs=1e-12)
        expected = spearmanr(np.abs(ai), np.abs(bi)).statistic
        assert absolute[i].item() == pytest.approx(expected, abs=1e-12)


def test_average_ranks_match_scipy_for_every_row_at_once():
    from scipy.stats import rankdata

    g = torch.Generator().manual_seed(2)
    values = torch.randint(0, 5, (7, 12), generator=g).double()
    valid = torch.rand(7, 12, generator=g) < 0.7
    ranks = average_ranks(values)
    masked = average_ranks(values, valid)
    for i in range(7):
        np.testing.assert_array_equal(ranks[i].numpy(), rankdata(values[i].numpy()))
        keep = valid[i].numpy()
        np.testing.assert_array_equal(
            masked[i].numpy()[keep], rankdata(values[i].numpy()[keep])
        )


def test_spearman_nz_default_baseline_scalar_and_tuples():
    x = sparse_images(2)
    a = torch.randn_like(x)
    b = torch.randn_like(x)
    default = spearman_nz(a, b, x)
    assert torch.equal(default, spearman_nz(a, b, x, 0.0))
    assert torch.equal(default, spearman_nz(a, b, x, torch.zeros(1)))
    mask = (x[0] != 0).numpy()
    expected = spearmanr(
        np.abs(a[0].numpy()[mask]), np.abs(b[0].numpy()[mask])
    ).statistic
    assert default[0].item() == pytest.approx(expected, abs=1e-12)
    # a tuple of inputs joins its features per example
    paired = spearman_nz((a, a), (b, b), (x, x), (0.0, 0.0))
    doubled = np.abs(np.concatenate([a[0].numpy()[mask]] * 2))
    expected = spearmanr(
        doubled, np.abs(np.concatenate([b[0].numpy()[mask]] * 2))
    ).statistic
    assert paired[0].item() == pytest.approx(expected, abs=1e-12)


def test_remark_1_plateau_on_digits():
    """Sundararajan & Taly's Remark 1: ``x * r1`` against ``x * r2`` (Gaussian
    r) gives spearman_nz about 0.4, not 0 (0.424 on MNIST); the signed
    correlation over all features is about 0 (their blue curve)."""
    images = load_digits_images("digits", size=8)
    x = torch.cat([images.train_images, images.test_images]).double()
    g = torch.Generator().manual_seed(0)
    a1 = x * torch.randn(x.shape, generator=g, dtype=torch.float64)
    a2 = x * torch.randn(x.shape, generator=g, dtype=torch.float64)
    nz = spearman_nz(a1, a2, x, 0.0)
    mean = float(nz.mean())
    half_width = 2.576 * float(nz.std()) / math.sqrt(len(nz))  # 99% interval
    # 8x8 digits (all 1797 images): 0.362, 99% CI [0.353, 0.372] (0.360 and
    # 0.362 with seeds 1, 2); the plateau depends on the spread of the ink
    # values among the nonzero pixels (bilinear upsampling to 16x16 gives 0.51).
    assert 0.35 < mean < 0.375 and half_width < 0.012
    # the absolute values are compared: flipping a map's sign changes nothing
    assert torch.equal(spearman_nz(-a1, a2, x, 0.0), nz)
    assert torch.equal(spearman_nz(a1, -a2, x), nz)
    signed = spearman(a1, a2)
    assert abs(float(signed.mean())) < 0.01
    # the green curve: the shared zeros of the background inflate |a| correlation
    assert float(spearman(a1, a2, absolute=True).mean()) > 0.6


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
            model, integrated_gradients, x, 1, 0.0, generator=g, show_progress=False
        )
    assert result.layers == ["5", "3", "0"] and result.mode == "cascading"
    table = result.table()
    # |IG| with a black baseline is 0 on every black pixel whatever the weights:
    # the plain absolute correlation stays near 1 ...
    assert all(row["spearman_abs"] > 0.9 for row in table)
    # ... while spearman_nz, over the stroke only, drops once the output layer
    # is random (this model is untrained, so later rows are noise around the
    # shared factor x of Remark 1)
    assert table[0]["spearman_nz"] < 0.5
    assert all(row["spearman_nz"] < row["spearman_abs"] - 0.15 for row in table)
    for layer, attributions in enumerate(result.randomized):
        torch.testing.assert_close(
            result.spearman_nz[layer], spearman_nz(result.original, attributions, x)
        )
        torch.testing.assert_close(
            result.spearman_abs[layer],
            spearman(result.original, attributions, absolute=True),
        )
        torch.testing.assert_close(
            result.spearman_signed[layer], spearman(result.original, attributions)
        )
    text = result.format_table()
    assert "Fig. 2 red" in text and "Fig. 2 green" in text and "Fig. 2 blue" in text
    assert len(text.splitlines()) == 2 + 3
    # without baselines spearman_nz is not defined
    unknown = randomization_check(model, integrated_gradients, x, 1, generator=g)
    assert bool(unknown.spearman_nz.isnan().all())
    assert "| - |" in unknown.format_table()


def fixed_weights(module, generator):
    """A deterministic 'randomization' that depends on the module only."""
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            p.copy_(torch.linspace(-1, 1, p.numel(), dtype=p.dtype).reshape(p.shape))


def test_independent_mode_randomizes_one_layer_at_a_time():
    model = small_mlp_cnn()
    x = sparse_images(2)
    with model_unchanged(model):
        independent = randomization_check(
            model,
            integrated_gradients,
            x,
            0,
            0.0,
            mode="independent",
            randomize=fixed_weights,
        )
        cascading = randomization_check(
            model, integrated_gradients, x, 0, 0.0, randomize=fixed_weights
        )
    assert independent.mode == "independent" and independent.layers == ["5", "3", "0"]
    for row, layer in enumerate(independent.layers):
        alone = randomization_check(
            model,
            integrated_gradients,
            x,
            0,
            0.0,
            layers=[layer],
            randomize=fixed_weights,
        )
        torch.testing.assert_close(independent.randomized[row], alone.randomized[0])
        torch.testing.assert_close(independent.spearman_nz[row], alone.spearman_nz[0])
    # the first step randomizes the same (top) layer in both modes; later ones differ
    torch.testing.assert_close(independent.randomized[0], cascading.randomized[0])
    assert not torch.allclose(independent.randomized[2], cascading.randomized[2])
    assert "layer randomized" in independent.format_table()


def test_identity_randomization_gives_perfect_correlation_and_seed_repeats():
    model = small_mlp_cnn()
    x = sparse_images(2)
    for mode in ("cascading", "independent"):
        same = randomization_check(
            model,
            integrated_gradients,
            x,
            0,
            0.0,
            mode=mode,
            randomize=lambda module, g: None,
        )
        ones = torch.ones(3, 2, dtype=torch.float64)
        assert torch.equal(same.spearman_signed, ones)
        assert torch.equal(same.spearman_abs, ones)
        assert torch.equal(same.spearman_nz, ones)

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
    with pytest.raises(ValueError, match="mode"):
        randomization_check(model, integrated_gradients, x, 0, mode="top-down")
    with pytest.raises(ValueError, match="`a`"):
        spearman(torch.tensor([[1.0, math.nan]]), torch.ones(1, 2))


def test_pattern_methods_fit_their_patterns_on_the_randomized_copy():
    """Sixt et al. (ICML 2020): modified-backprop methods can ignore the deeper
    layers.  On a digits CNN, randomizing the output layer leaves PGIG's signed
    correlation with its original map high, while IG's falls to about 0;
    PatternAttribution's falls too, but only through its scale, the explained
    output, whose sign the random layer flips."""
    data = load_digits_images("digits", size=8)
    torch.manual_seed(0)  # the CNN's initial weights
    model = train_classifier(
        DigitsCNN(8), data.train_images[:600], data.train_labels[:600], epochs=3
    )
    x, y = data.test_images[:10], data.test_labels[:10]
    reference_data = data.train_images[:200]
    fitted_on = []

    def patterns(m):
        fitted_on.append(m)
        return fit_patterns(m, reference_data, None, False)

    explain = {
        "IG": lambda m, xs, t: IntegratedGradients(m).attribute(
            xs, target=t, n_steps=8
        ),
        "PA": lambda m, xs, t: PatternAttribution(m, patterns(m)).attribute(
            xs, target=t
        ),
        "PGIG": lambda m, xs, t: PatternGuidedIntegratedGradients(
            m, patterns(m)
        ).attribute(xs, target=t, n_steps=8),
        "PA / f(x)": lambda m, xs, t: (
            explain["PA"](m, xs, t)
            / m(xs).gather(1, t[:, None]).reshape(-1, 1, 1, 1).detach()
        ),
    }
    signed = {}
    with model_unchanged(model):
        for name, method in explain.items():
            result = randomization_check(
                model,
                method,
                x,
                y,
                0.0,
                layers=["7"],
                generator=torch.Generator().manual_seed(0),
            )
            signed[name] = float(result.spearman_signed[0].mean())
    # the patterns were fitted on the check's copy, before and after randomizing
    assert len(fitted_on) == 6 and all(m is not model for m in fitted_on)
    assert fitted_on[0] is fitted_on[1]
    # measured: IG -0.07, PA -0.37, PGIG 0.76, PA / f(x) 0.67 (over 5 model
    # seeds and 2 randomization seeds: IG -0.14 to 0.18, PA -0.39 to 0.08,
    # PGIG 0.72 to 0.84; PA / f(x) 0.60 to 0.67 over 3 model seeds)
    assert signed["PGIG"] > 0.5
    assert signed["IG"] < 0.3 and signed["PA"] < 0.3
    # PA's map itself ignores the output layer too: only its scale f(x) changed
    assert signed["PA / f(x)"] > 0.5
