"""The defining property of every baseline generator, and their use with Captum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, IntegratedGradients
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.ndimage import gaussian_filter
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import captum_baselines as cb
from captum_baselines import baselines as B

from .helpers import FailingForward, model_unchanged, small_cnn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _images(n: int = 2, c: int = 3, h: int = 8, w: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------- constant ranges


def test_black_in_normalized_space_unnormalizes_to_pixel_zero():
    low, high = B.normalized_range(IMAGENET_MEAN, IMAGENET_STD)
    x = (_images() - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(3, 1, 1)
    black = B.black(x, value_range=(low, high))
    white = B.white(x, value_range=(low, high))
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(3, 1, 1)
    torch.testing.assert_close(
        black * std + mean, torch.zeros_like(x), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        white * std + mean, torch.ones_like(x), atol=1e-6, rtol=0
    )
    assert black.shape == x.shape and black.dtype == x.dtype


def test_constant_and_per_channel_value():
    x = _images()
    torch.testing.assert_close(B.constant(x, 0.25), torch.full_like(x, 0.25))
    per_channel = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).view(3, 1, 1)
    out = B.constant(x, per_channel)
    assert torch.equal(out[1, 2], torch.full((8, 8), 0.3, dtype=x.dtype))


@pytest.mark.parametrize("per_channel", [False, True])
def test_max_distance_attains_the_maximum_l1_distance(per_channel):
    # Brute force: the L1-farthest point of a box is one of its vertices.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 2, 1, 2, generator=g, dtype=torch.float64)
    if per_channel:
        low = torch.tensor([-1.0, 0.5], dtype=torch.float64).view(2, 1, 1)
        high = torch.tensor([2.0, 3.0], dtype=torch.float64).view(2, 1, 1)
        x = low + (high - low) * x
    else:
        low, high = torch.tensor(0.0), torch.tensor(1.0)
    farthest = B.max_distance(x, value_range=(low, high))
    lo, hi = low.expand(x.shape[1:]).flatten(), high.expand(x.shape[1:]).flatten()
    for example, far in zip(x, farthest):
        best = max(
            float(
                (torch.where(torch.tensor(v), hi, lo) - example.flatten()).abs().sum()
            )
            for v in itertools.product([False, True], repeat=example.numel())
        )
        assert float((far - example).abs().sum()) == pytest.approx(best, abs=1e-12)
        assert bool(((far == lo.view_as(far)) | (far == hi.view_as(far))).all())


# ---------------------------------------------------------------------- blur


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
@pytest.mark.parametrize("sigma", [0.7, 3.0, 20.0])
@pytest.mark.parametrize("width", [32, 300], ids=["matrix", "convolution"])
def test_blur_matches_scipy_gaussian_filter(mode, sigma, width):
    # a narrow kernel along a long axis (sigma <= 3, width 300) is convolved;
    # every other axis is multiplied by the blur's matrix
    x = _images(2, 3, 32, width)
    expected = gaussian_filter(x.numpy(), (0, 0, sigma, sigma), mode=mode)
    torch.testing.assert_close(
        B.blur(x, sigma, mode=mode), torch.from_numpy(expected), atol=1e-12, rtol=0
    )


def test_blur_keeps_a_constant_image_and_never_mixes_channels():
    x = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    x[:, 1] = 0.7
    out = B.blur(x, 20.0)
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)
    x[0, 1, 5, 5] = 5.0
    out = B.blur(x, 2.0)
    assert bool((out[:, [0, 2]] == 0).all())


def test_blur_sigma_zero_is_identity_and_a_new_tensor():
    x = _images()
    out = B.blur(x, 0.0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_blur_rejects_negative_sigma_and_bad_mode():
    with pytest.raises(ValueError, match="sigma"):
        B.blur(_images(), -1.0)
    with pytest.raises(ValueError, match="mode"):
        B.blur(_images(), 1.0, mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inputs"):
        B.blur(torch.tensor([1.0, float("nan")]).view(1, 2), 1.0)


# --------------------------------------------------------------- random baselines


def test_uniform_is_in_range_reproducible_and_shaped():
    x = _images()
    low, high = B.normalized_range(IMAGENET_MEAN, IMAGENET_STD)
    draws = B.uniform(
        x,
        value_range=(low, high),
        n_samples=5,
        generator=torch.Generator().manual_seed(3),
    )
    again = B.uniform(
        x,
        value_range=(low, high),
        n_samples=5,
        generator=torch.Generator().manual_seed(3),
    )
    assert draws.shape == (5, *x.shape) and draws.dtype == x.dtype
    assert torch.equal(draws, again)
    assert bool((draws >= low.to(x.dtype)).all() and (draws <= high.to(x.dtype)).all())


def test_truncated_gaussian_follows_scipy_truncnorm():
    x = torch.full((1, 1, 1, 1), 0.8, dtype=torch.float64)
    draws = B.gaussian(
        x, 0.3, n_samples=4000, generator=torch.Generator().manual_seed(0)
    ).flatten()
    assert bool((draws >= 0).all() and (draws <= 1).all())
    a, b = (0 - 0.8) / 0.3, (1 - 0.8) / 0.3
    result = stats.kstest(draws.numpy(), stats.truncnorm(a, b, loc=0.8, scale=0.3).cdf)
    assert result.pvalue > 0.01


def test_truncated_gaussian_tends_to_uniform_as_sigma_grows():
    x = torch.full((1, 1, 1, 1), 0.9, dtype=torch.float64)
    ks = []
    for sigma in (0.1, 1.0, 100.0):
        draws = B.gaussian(
            x, sigma, n_samples=4000, generator=torch.Generator().manual_seed(0)
        )
        ks.append(stats.kstest(draws.flatten().numpy(), "uniform").statistic)
    assert ks[0] > ks[1] > ks[2]
    assert ks[2] < 0.03  # indistinguishable from U(0, 1) at this sample size


def test_clipped_gaussian_piles_mass_on_the_bounds():
    x = torch.full((1, 1, 1, 1), 0.9, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    clipped = B.gaussian(x, 100.0, n_samples=1000, truncate=False, generator=g)
    assert float(((clipped == 0) | (clipped == 1)).double().mean()) > 0.9


def test_gaussian_sigma_zero_returns_the_input():
    x = _images()
    assert torch.equal(B.gaussian(x, 0.0), x)


@settings(max_examples=20, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    n_samples=st.one_of(st.none(), st.integers(1, 3)),
    sigma=st.floats(0.0, 50.0, allow_subnormal=False),
)
def test_random_generators_respect_shape_and_range(shape, n_samples, sigma):
    x = torch.rand(*shape, dtype=torch.float64)
    expected = tuple(shape) if n_samples is None else (n_samples, *shape)
    for out in (
        B.uniform(x, n_samples=n_samples),
        B.gaussian(x, sigma, n_samples=n_samples),
        B.from_data(torch.rand(7, *shape[1:], dtype=torch.float64), x, n_samples),
    ):
        assert out.shape == expected and out.dtype == x.dtype
        assert bool((out >= 0).all() and (out <= 1).all())


# ------------------------------------------------------------------ from_data


def _pool(m: int = 12):
    return torch.arange(m, dtype=torch.float64).view(m, 1, 1, 1).expand(m, 1, 2, 2)


@pytest.mark.parametrize("kind", ["tensor", "dataset", "loader", "batches"])
def test_from_data_never_repeats_when_enough_examples_exist(kind):
    pool = _pool(12)
    labels = torch.zeros(12, dtype=torch.long)
    data = {
        "tensor": pool,
        "dataset": TensorDataset(pool, labels),
        "loader": DataLoader(TensorDataset(pool, labels), batch_size=5),
        "batches": [pool[i : i + 5] for i in range(0, 12, 5)],
    }[kind]
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    drawn = B.from_data(
        data, x, n_samples=4, generator=torch.Generator().manual_seed(0)
    )
    ids = drawn[..., 0, 0, 0]
    assert drawn.shape == (4, 3, 1, 2, 2)
    # each example draws its own baselines, none of them twice
    for example in range(3):
        assert len(set(ids[:, example].tolist())) == 4
    if kind != "batches":  # a stream is reservoir-sampled down to n_samples
        assert len(set(ids.flatten().tolist())) > 4
    # every drawn baseline is a whole example of the pool
    assert bool((drawn == drawn[..., :1, :1, :1]).all())


def test_from_data_reuses_examples_evenly_when_too_few():
    x = torch.zeros(5, 1, 2, 2, dtype=torch.float64)
    drawn = B.from_data(_pool(3), x, n_samples=7)
    for example in range(5):
        counts = torch.bincount(drawn[:, example, 0, 0, 0].long(), minlength=3)
        assert counts.tolist() in ([3, 2, 2], [2, 3, 2], [2, 2, 3])


def test_from_data_errors():
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="empty"):
        B.from_data(torch.zeros(0, 1, 2, 2), x)
    with pytest.raises(ValueError, match="shape"):
        B.from_data(torch.zeros(4, 1, 3, 3), x)
    with pytest.raises(ValueError, match="empty"):
        B.from_data([], x)
    with pytest.raises(ValueError, match="n_samples"):
        B.from_data(torch.zeros(4, 1, 2, 2), x, n_samples=0)
    with pytest.raises(TypeError, match="data"):
        B.from_data(42, x)  # type: ignore[arg-type]


# -------------------------------------------------------------------- errors


def test_bad_arguments_raise_clear_errors():
    x = _images()
    with pytest.raises(ValueError, match="value_range"):
        B.black(x, value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="value_range"):
        B.uniform(x, value_range=(torch.zeros(5, 1, 1), 1.0))
    with pytest.raises(ValueError, match="sigma"):
        B.gaussian(x, -0.1)
    with pytest.raises(ValueError, match="n_samples"):
        B.uniform(x, n_samples=0)
    with pytest.raises(TypeError, match="n_samples"):
        B.uniform(x, n_samples=2.5)  # type: ignore[arg-type]
    bad = x.clone()
    bad[0, 0, 0, 0] = float("inf")
    for fn in (B.black, B.max_distance, B.uniform):
        with pytest.raises(ValueError, match="inputs"):
            fn(bad)
    with pytest.raises(TypeError, match="inputs"):
        B.black(np.zeros((1, 3)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        B.uniform(x, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std"):
        B.normalized_range((0.5,), (0.0,))


# ------------------------------------------------- with Captum's attributions


def _float64_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Softplus(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    ).double()


@pytest.mark.parametrize(
    "make",
    [
        lambda x: B.black(x),
        lambda x: B.white(x),
        lambda x: B.max_distance(x),
        lambda x: B.blur(x, 2.0),
        lambda x: B.uniform(x, generator=torch.Generator().manual_seed(0)),
        lambda x: B.gaussian(x, 0.5, generator=torch.Generator().manual_seed(0)),
        lambda x: B.from_data(torch.rand(5, 3, 8, 8, dtype=torch.float64), x),
    ],
)
def test_captum_ig_with_each_baseline_is_complete_and_blind_to_the_baseline(make):
    model = _float64_cnn()
    x = _images()
    baseline = make(x)
    # make some features equal to the baseline: IG must give them exactly zero
    x[:, :, :3, :3] = baseline[:, :, :3, :3]
    ig = IntegratedGradients(model)
    attr, delta = ig.attribute(
        x, baselines=baseline, target=1, n_steps=32, return_convergence_delta=True
    )
    assert float(delta.abs().max()) < 1e-6
    assert bool((attr[:, :, :3, :3] == 0).all())
    start_delta = ig.compute_convergence_delta(
        attr, start_point=baseline, end_point=x, target=1
    )
    torch.testing.assert_close(start_delta, delta)


def test_average_over_baselines_equals_the_mean_of_runs_and_is_complete():
    model = _float64_cnn()
    x = _images(3)
    refs = B.uniform(x, n_samples=4, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 2, 1])
    ig = IntegratedGradients(model)
    with model_unchanged(model):
        mean, delta = B.average_over_baselines(
            ig,
            x,
            refs,
            target=target,
            n_steps=32,
            baseline_batch_size=3,
            return_convergence_delta=True,
        )
    runs = [ig.attribute(x, baselines=r, target=target, n_steps=32) for r in refs]
    torch.testing.assert_close(mean, torch.stack(runs).mean(0), atol=1e-12, rtol=0)
    f_x = model(x)[torch.arange(3), target]
    f_b = torch.stack([model(r)[torch.arange(3), target] for r in refs]).mean(0)
    expected = mean.flatten(1).sum(1) - (f_x - f_b)
    torch.testing.assert_close(delta, expected.detach(), atol=1e-12, rtol=0)
    assert float(delta.abs().max()) < 1e-6
    for size in (1, None):
        again = B.average_over_baselines(
            ig, x, refs, target=target, n_steps=32, baseline_batch_size=size
        )
        torch.testing.assert_close(again, mean, atol=1e-12, rtol=0)


def test_average_over_baselines_with_deeplift_and_multiple_inputs():
    torch.manual_seed(0)

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(2, 3)
            self.relu = nn.ReLU()

        def forward(self, u, v, scale):
            return self.relu(self.a(u) + self.b(v)) * scale

    model = TwoInputs().double()
    u, v = torch.rand(5, 4, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
    refs = (
        torch.rand(3, 5, 4, dtype=torch.float64),
        torch.rand(3, 5, 2, dtype=torch.float64),
    )
    scale = torch.rand(5, 1, dtype=torch.float64) + 0.5
    dl = DeepLift(model)
    (au, av), delta = B.average_over_baselines(
        dl,
        (u, v),
        refs,
        target=1,
        additional_forward_args=(scale,),
        return_convergence_delta=True,
    )
    runs = [
        dl.attribute(
            (u, v),
            baselines=(refs[0][j], refs[1][j]),
            target=1,
            additional_forward_args=(scale,),
        )
        for j in range(3)
    ]
    torch.testing.assert_close(au, torch.stack([r[0] for r in runs]).mean(0))
    torch.testing.assert_close(av, torch.stack([r[1] for r in runs]).mean(0))
    assert float(delta.abs().max()) < 1e-10  # DeepLift is complete per baseline


def test_average_over_baselines_errors_and_leaves_model_on_error():
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    ig = IntegratedGradients(model)
    with pytest.raises(ValueError, match="baselines"):
        B.average_over_baselines(ig, x, torch.zeros(3, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="baselines"):
        B.average_over_baselines(ig, x, torch.zeros(0, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="baseline_batch_size"):
        B.average_over_baselines(
            ig, x, torch.zeros(2, 2, 3, 8, 8), baseline_batch_size=0
        )
    failing = FailingForward(model, fail_at=2)
    with model_unchanged(model), pytest.raises(RuntimeError, match="on purpose"):
        B.average_over_baselines(
            IntegratedGradients(failing),
            x,
            torch.zeros(2, 2, 3, 8, 8),
            target=0,
            baseline_batch_size=1,
            n_steps=4,
        )


def test_public_names():
    for name in (
        "constant",
        "black",
        "white",
        "max_distance",
        "blur",
        "uniform",
        "gaussian",
        "from_data",
        "normalized_range",
        "average_over_baselines",
    ):
        assert callable(getattr(cb.baselines, name))


def test_average_over_baselines_keeps_batchnorm_statistics_of_a_training_model():
    model = small_cnn().train()
    x = torch.rand(2, 3, 8, 8)
    refs = B.uniform(x, n_samples=3, generator=torch.Generator().manual_seed(0))
    with model_unchanged(model):
        B.average_over_baselines(
            IntegratedGradients(model),
            x,
            refs,
            target=0,
            n_steps=4,
            return_convergence_delta=True,
        )
    assert model.training
