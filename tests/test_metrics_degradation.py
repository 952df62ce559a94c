"""Tests of the image-degradation curve."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_baselines.metrics.ablation import area_under_curve, random_attributions
from captum_baselines.metrics.degradation import (
    degradation_curve,
    patch_index,
    patch_means,
)
from tests.helpers import FailingForward, model_unchanged, small_cnn


def linear_model(shape: tuple[int, ...], bias: float = 0.0) -> nn.Module:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 1)).double()
    with torch.no_grad():
        model[1].bias.fill_(bias)
    return model


def test_patch_index_by_hand():
    index = patch_index(4, 5, 2).reshape(4, 5)
    expected = torch.tensor(
        [
            [0, 0, 1, 1, 2],
            [0, 0, 1, 1, 2],
            [3, 3, 4, 4, 5],
            [3, 3, 4, 4, 5],
        ]
    )
    assert torch.equal(index, expected)


def test_patch_means_by_hand():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float64).reshape(2, 1, 2, 3)
    x[1] *= -1
    means = patch_means(x, patch_index(2, 3, 2), 2)
    # patch 0: columns 0-1, patch 1: column 2
    expected0 = torch.tensor([[2.0, 2.0, 3.5], [2.0, 2.0, 3.5]], dtype=torch.float64)
    assert torch.equal(means[0, 0], expected0)
    assert torch.equal(means[1, 0], -expected0 - 6)


@torch.no_grad()
def test_degradation_order_matches_hand_computation():
    # 6x6 images, 3x3 patches: 4 patches; every channel, of either sign of mean,
    # is replaced by its patch mean; the top patch goes first.
    shape = (2, 6, 6)
    model = linear_model(shape)
    x = torch.randn(1, *shape, dtype=torch.float64)
    x[:, 1] -= 2.0
    a = torch.zeros_like(x)
    relevance = [0.5, 3.0, -1.0, 2.0]  # patch ranking: 1, 3, 0, 2
    for p, value in enumerate(relevance):
        r, c = divmod(p, 2)
        a[0, 0, 3 * r, 3 * c] = value
    curve = degradation_curve(
        model, x, a, 0, patch_size=3, n_patches=4, score="logit", relative=False
    )
    expected = [float(model(x)[0, 0])]
    degraded = x.clone()
    for p in (1, 3, 0, 2):
        r, c = divmod(p, 2)
        block = degraded[0, :, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3]
        block[:] = x[0, :, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3].mean((1, 2))[
            :, None, None
        ]
        expected.append(float(model(degraded)[0, 0]))
    torch.testing.assert_close(
        curve[0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12
    )

    relative = degradation_curve(
        model, x, a, 0, patch_size=3, n_patches=2, score="logit"
    )
    assert relative.shape == (1, 3)
    assert relative[0, 0].item() == 1.0
    torch.testing.assert_close(relative[0], curve[0, :3] / curve[0, 0])


def test_exact_patch_attributions_drop_fastest():
    # IG with the patch-mean image as baseline is exact for patch replacement on
    # a linear model, so ranking by it is the greedy optimum.
    shape = (3, 9, 9)
    model = linear_model(shape, bias=30.0)
    x = torch.rand(4, *shape, dtype=torch.float64)
    w = model[1].weight.detach().reshape(shape)
    exact = w * (x - patch_means(x, patch_index(9, 9, 3), 9))
    kw = dict(patch_size=3, n_patches=None, score="logit")
    top = degradation_curve(model, x, exact, 0, **kw)
    g = torch.Generator().manual_seed(0)
    random = degradation_curve(model, x, random_attributions(x, g), 0, **kw)
    reverse = degradation_curve(model, x, -exact, 0, **kw)
    assert top.shape == (4, 10)
    assert torch.equal(top[:, 0], torch.ones(4, dtype=torch.float64))
    assert bool((top <= random + 1e-12).all()) and bool((top <= reverse + 1e-12).all())
    assert area_under_curve(top).mean() < area_under_curve(random).mean()
    torch.testing.assert_close(top[:, -1], reverse[:, -1])  # all patches gone


def test_other_fills_batching_and_maps():
    model = small_cnn().double()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    a = torch.randn_like(x)
    target = [0, 2, 1]
    full = degradation_curve(model, x, a, target, patch_size=4, n_patches=3)
    for size in (2, 9):
        torch.testing.assert_close(
            degradation_curve(
                model, x, a, target, patch_size=4, n_patches=3, internal_batch_size=size
            ),
            full,
        )
    map_ = a.sum(1, keepdim=True)
    torch.testing.assert_close(
        degradation_curve(model, x, map_, target, patch_size=4, n_patches=3), full
    )
    zero = degradation_curve(
        model,
        x,
        a,
        target,
        patch_size=4,
        n_patches=None,
        fill=torch.zeros(1),
        score="logit",
        relative=False,
    )
    torch.testing.assert_close(zero[:, -1], model(0 * x)[[0, 1, 2], target].detach())


def test_model_unchanged_and_failure_midway():
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    with model_unchanged(model):
        degradation_curve(model, x, x, 1, patch_size=4, n_patches=2)
    failing = FailingForward(model, fail_at=3)
    with model_unchanged(failing), pytest.raises(RuntimeError, match="on purpose"):
        degradation_curve(
            failing, x, x, 1, patch_size=4, n_patches=4, internal_batch_size=2
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(n_patches=5), ValueError, "n_patches"),
        (dict(n_patches=0), ValueError, "n_patches"),
        (dict(patch_size=0), ValueError, "patch_size"),
        (dict(patch_size=2.5), TypeError, "patch_size"),
        (dict(score="rank"), ValueError, "score"),
        (dict(target=7), ValueError, "target"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    args = dict(target=0, patch_size=4, n_patches=2) | kwargs
    with pytest.raises(error, match=match):
        degradation_curve(model, x, x, **args)


def test_needs_images():
    with pytest.raises(ValueError, match="inputs"):
        degradation_curve(nn.Linear(4, 2), torch.rand(2, 4), torch.rand(2, 4), 0)
