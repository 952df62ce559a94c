"""Tests of the uniform-output baseline (Lerma & Lucas 2022, section 3)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.testing import assert_close

from captum_baselines._uniform_output import uniform_output
from tests.helpers import FailingForward, model_unchanged


@pytest.fixture(scope="module")
def digits_classifier() -> nn.Module:
    """An MLP trained on scikit-learn's 8x8 digits (pixels in [0, 1])."""
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(labels)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    accuracy = (model(x).argmax(1) == y).float().mean()
    assert accuracy > 0.95
    return model.eval()


def distance_to_uniform(model: nn.Module, baseline: Tensor) -> Tensor:
    with torch.no_grad():
        probs = torch.softmax(model(baseline), dim=1)
    return (probs - 1.0 / probs.shape[1]).abs().amax(dim=1)


def test_trained_classifier_output_tenfold_closer_to_uniform(digits_classifier):
    black = torch.zeros(1, 1, 8, 8)
    with model_unchanged(digits_classifier):
        baseline = uniform_output(digits_classifier, black, lr=0.5)
    before = distance_to_uniform(digits_classifier, black)
    after = distance_to_uniform(digits_classifier, baseline)
    assert bool((after * 10 <= before).all()), (before, after)
    assert baseline.min() >= 0.0 and baseline.max() <= 1.0
    # the paper's step size (0.1 gray levels) moves less but still helps
    small_steps = uniform_output(digits_classifier, black)
    assert bool((distance_to_uniform(digits_classifier, small_steps) < before).all())


def test_other_target_distribution(digits_classifier):
    black = torch.zeros(2, 1, 8, 8)
    wanted = torch.tensor([0.5, 0.5] + [0.0] * 8)
    baseline = uniform_output(digits_classifier, black, target_probs=wanted, lr=0.5)
    with torch.no_grad():
        before = (torch.softmax(digits_classifier(black), 1) - wanted).abs().amax(1)
        after = (torch.softmax(digits_classifier(baseline), 1) - wanted).abs().amax(1)
    assert bool((after < 0.5 * before).all())


def _rgb_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(64, 5)
    ).double()


def test_normalization_does_not_change_the_baseline():
    """Optimizing on normalized inputs with the matching per-channel range gives
    the normalized version of the pixel-space baseline: lam, lr and the range
    constraint all mean the same in both spaces."""
    model = _rgb_model()
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).reshape(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).reshape(3, 1, 1)

    def on_normalized(z: Tensor) -> Tensor:
        return model(z * std + mean)

    start = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    start = start.double()
    in_pixels = uniform_output(model, start, lam=0.8, n_iter=25, lr=2.0)
    in_normalized = uniform_output(
        on_normalized,
        (start - mean) / std,
        lam=0.8,
        n_iter=25,
        lr=2.0,
        value_range=((0 - mean) / std, (1 - mean) / std),
    )
    assert not torch.allclose(in_pixels, start)
    assert_close(in_normalized, (in_pixels - mean) / std, rtol=0, atol=1e-9)


def test_gray_level_scale_makes_lam_and_lr_scale_free():
    model = _rgb_model()

    def on_255(b: Tensor) -> Tensor:
        return model(b / 255.0)

    start = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1)).double()
    unit = uniform_output(model, start, n_iter=20, lr=1.0)
    gray = uniform_output(on_255, 255 * start, n_iter=20, lr=1.0, value_range=(0, 255))
    assert_close(gray, 255 * unit, rtol=0, atol=1e-8)


def test_deterministic_and_per_example():
    model = _rgb_model()
    start = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(2)).double()
    batch = uniform_output(model, start, n_iter=30, lr=1.0)
    assert torch.equal(batch, uniform_output(model, start, n_iter=30, lr=1.0))
    for i in range(3):
        alone = uniform_output(model, start[i : i + 1], n_iter=30, lr=1.0)
        assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-12)


def test_lam_zero_keeps_the_start_and_range_is_respected():
    model = _rgb_model()
    start = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(3)).double()
    kept = uniform_output(model, start, lam=0.0, n_iter=10)
    assert_close(kept, start, rtol=0, atol=1e-15)
    # out-of-range starts are clamped; a degenerate channel stays pinned
    low = torch.tensor([0.0, 0.2, 0.5], dtype=torch.float64).reshape(3, 1, 1)
    high = torch.tensor([1.0, 0.6, 0.5], dtype=torch.float64).reshape(3, 1, 1)
    wide = 3 * start - 1
    baseline = uniform_output(
        model, wide, lam=1.0, n_iter=30, lr=20.0, value_range=(low, high)
    )
    assert bool((baseline >= low).all()) and bool((baseline <= high).all())
    assert bool((baseline[:, 2] == 0.5).all())


def test_model_left_as_found_also_on_error():
    model = _rgb_model().float()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[3].bias.requires_grad_(False)
    model.train()
    start = torch.rand(2, 3, 6, 6)
    with model_unchanged(model):
        uniform_output(model, start, n_iter=5)
    failing = FailingForward(model, fail_at=4)
    with model_unchanged(failing), model_unchanged(model):
        with pytest.raises(RuntimeError, match="on purpose"):
            uniform_output(failing, start, n_iter=10)


def test_progress_bar(capsys):
    uniform_output(
        _rgb_model(), torch.zeros(1, 3, 6, 6).double(), n_iter=3, show_progress=True
    )
    assert "uniform_output" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lam=1.5), ValueError, "lam"),
        (dict(lam="high"), TypeError, "lam"),
        (dict(n_iter=0), ValueError, "n_iter"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(target_probs=torch.full((4,), 0.25)), ValueError, "target_probs"),
        (dict(target_probs=torch.full((5,), 0.5)), ValueError, "target_probs"),
        (dict(value_range=(1.0, 0.0)), ValueError, "value_range"),
        (dict(start=torch.zeros(1, 3, 6, 6).long()), TypeError, "start"),
        (dict(start=torch.full((1, 3, 6, 6), float("nan"))), ValueError, "start"),
        (dict(forward_func=lambda b: b.sum()), ValueError, "forward_func"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    model = _rgb_model().float()
    args = dict(forward_func=model, start=torch.zeros(1, 3, 6, 6), n_iter=2)
    args.update(kwargs)
    with model_unchanged(model), pytest.raises(error, match=match):
        uniform_output(**args)
