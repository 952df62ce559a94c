"""Tests of Noisy Linear Imputation, both removal orders, and the ROAD curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import lil_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

from captum_baselines.metrics import (
    ablation_curve,
    area_under_curve,
    degradation_curve,
    noisy_linear_imputation,
    road_curves,
)
from tests.helpers import FailingForward, model_unchanged, small_cnn

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")

WEIGHTS = {(-1, 0): 1 / 6, (1, 0): 1 / 6, (0, -1): 1 / 6, (0, 1): 1 / 6}
WEIGHTS.update({(dy, dx): 1 / 12 for dy in (-1, 1) for dx in (-1, 1)})


def direct_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The ROAD equations solved directly (scipy), one (H, W) channel: the oracle."""
    height, width = image.shape
    unknown = list(zip(*np.nonzero(removed)))
    index = {pixel: i for i, pixel in enumerate(unknown)}
    a = lil_matrix((len(unknown), len(unknown)))
    b = np.zeros(len(unknown))
    for i, (y, x) in enumerate(unknown):
        for (dy, dx), w in WEIGHTS.items():
            ny, nx = y + dy, x + dx
            if not (0 <= ny < height and 0 <= nx < width):
                continue
            a[i, i] += w
            if removed[ny, nx]:
                a[i, index[ny, nx]] -= w
            else:
                b[i] += w * image[ny, nx]
    result = image.copy()
    if unknown:
        solution = np.atleast_1d(spsolve(a.tocsc(), b))
        for i, pixel in enumerate(unknown):
            result[pixel] = solution[i]
    return result


def random_mask(n, height, width, fraction, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, height, width, generator=g) < fraction


def test_equals_the_direct_solution_of_the_road_equations():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 9, 7, generator=g, dtype=torch.float64)
    removed = random_mask(3, 9, 7, 0.6, 1)
    removed[0, 2:7, 1:6] = True  # a large hole, away from every kept pixel
    imputed = noisy_linear_imputation(x, removed, 0.0, tol=1e-12)
    for i in range(3):
        for c in range(2):
            expected = direct_imputation(x[i, c].numpy(), removed[i].numpy())
            np.testing.assert_allclose(imputed[i, c].numpy(), expected, atol=1e-10)


def test_linear_ramp_is_reproduced_to_solver_tolerance():
    # A ramp along the columns is its own weighted neighbor mean everywhere except
    # on the left and right borders (where the neighborhood is one-sided), so
    # those columns stay kept.
    height, width = 20, 24
    ramp = torch.linspace(-1, 2, width, dtype=torch.float64).expand(height, width)
    x = torch.stack([ramp, 3 * ramp + 1])[None].repeat(2, 1, 1, 1)
    removed = random_mask(2, height, width, 0.7, 2)
    removed[1, 3:18, 4:20] = True
    removed[..., 0] = removed[..., -1] = False
    for tol in (1e-6, 1e-10):
        imputed = noisy_linear_imputation(x, removed, 0.0, tol=tol)
        error = float((imputed - x).abs().max())
        # the residual test bounds the error by tol times the ramp's scale (7)
        # and the conditioning of the largest hole; measured: 8.0e-6 at tol 1e-6,
        # 8.5e-10 at 1e-10
        assert error < 10 * tol * float(x.abs().max())


def test_constant_image_stays_constant_without_noise():
    x = torch.full((2, 3, 10, 12), 0.37, dtype=torch.float64)
    removed = random_mask(2, 10, 12, 0.8, 3)
    exact = noisy_linear_imputation(x, removed, 0.0, tol=1e-12)
    torch.testing.assert_close(exact, x, rtol=0, atol=1e-11)
    # the default tol=1e-5 bounds the relative residual (measured error:
    # 8.9e-6 in float64 and in float32)
    default = noisy_linear_imputation(x, removed, 0.0)
    torch.testing.assert_close(default, x, rtol=0, atol=1e-4 * 0.37)
    single = noisy_linear_imputation(x.float(), removed, 0.0)
    torch.testing.assert_close(single, x.float(), rtol=0, atol=1e-4 * 0.37)


def test_kept_pixels_are_untouched_and_channels_share_the_mask():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 8, 8, generator=g)
    removed = random_mask(2, 8, 8, 0.5, 5)
    imputed = noisy_linear_imputation(
        x, removed, 0.05, generator=torch.Generator().manual_seed(0)
    )
    keep = ~removed[:, None].expand_as(x)
    assert torch.equal(imputed[keep], x[keep])
    assert bool((imputed[~keep] != x[~keep]).all())
    # per-channel masks are allowed too, and channels are imputed independently
    per_channel = removed[:, None].repeat(1, 3, 1, 1)
    per_channel[:, 1] = False
    out = noisy_linear_imputation(x, per_channel, 0.0)
    assert torch.equal(out[:, 1], x[:, 1])
    torch.testing.assert_close(
        out[:, 0], noisy_linear_imputation(x[:, :1], removed, 0.0)[:, 0]
    )


def test_batched_equals_one_by_one():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(5, 2, 11, 9, generator=g, dtype=torch.float64)
    removed = random_mask(5, 11, 9, 0.75, 7)
    removed[2] = True  # everything removed: no value to interpolate from
    removed[3] = False  # nothing removed
    batched = noisy_linear_imputation(x, removed, 0.0)
    for i in range(5):
        alone = noisy_linear_imputation(x[i : i + 1], removed[i : i + 1], 0.0)
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=0, atol=1e-12)
    assert torch.equal(batched[2], torch.zeros_like(x[2]))
    assert torch.equal(batched[3], x[3])


def test_noise_follows_the_generator_and_has_the_given_std():
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(8))
    removed = random_mask(4, 32, 32, 0.5, 9)
    plain = noisy_linear_imputation(x, removed, 0.0)
    draws = [
        noisy_linear_imputation(
            x, removed, 0.2, generator=torch.Generator().manual_seed(1)
        )
        for _ in range(2)
    ]
    assert torch.equal(draws[0], draws[1])
    noise = (draws[0] - plain)[removed[:, None]]
    assert abs(float(noise.std()) - 0.2) < 0.01 and abs(float(noise.mean())) < 0.01


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    channels=st.integers(1, 3),
    fraction=st.floats(0.0, 1.0, allow_subnormal=False),
    seed=st.integers(0, 2**16),
)
def test_every_imputed_pixel_is_the_weighted_mean_of_its_neighbors(
    height, width, channels, fraction, seed
):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, height, width, generator=g, dtype=torch.float64)
    removed = torch.rand(2, height, width, generator=g) < fraction
    imputed = noisy_linear_imputation(x, removed, 0.0, tol=1e-13)
    padded = torch.nn.functional.pad(imputed, (1, 1, 1, 1))
    ones = torch.ones(height, width, dtype=torch.float64)
    inside = torch.nn.functional.pad(ones, (1, 1, 1, 1))
    total = torch.zeros_like(imputed)
    weight = torch.zeros(height, width, dtype=torch.float64)
    for (dy, dx), w in WEIGHTS.items():
        window = (..., slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width))
        total += w * padded[window]
        weight += w * inside[window]
    removed_x = removed[:, None].expand_as(x)
    # an image with every pixel removed has no value to interpolate from: 0
    everything = removed.flatten(1).all(1)[:, None, None, None].expand_as(x)
    assert torch.equal(imputed[everything], torch.zeros_like(imputed[everything]))
    residual = (imputed - total / weight)[removed_x & ~everything]
    if residual.numel():
        assert float(residual.abs().max()) < 1e-9
    keep = ~removed[:, None].expand_as(x)
    assert torch.equal(imputed[keep], x[keep])


class Recorder(nn.Module):
    """Records every batch it sees, and scores each image by its pixel sum."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], 1)


def removed_sets(recorder: Recorder, x: torch.Tensor) -> torch.Tensor:
    """``(N, S, H, W)`` pixels that differ from ``x`` in the ablated batches.

    The first ``N`` rows are the untouched inputs (whose scores also check the
    target); the ablated rows then come example by example, step by step."""
    n = x.shape[0]
    seen = torch.cat(recorder.seen)[n:]
    changed = (seen.reshape(n, -1, *x.shape[1:]) != x[:, None]).any(2)
    return changed


@pytest.mark.parametrize("direction", ["morf", "lerf"])
def test_removed_sets_follow_the_fractions_in_both_orders(direction):
    x = torch.rand(3, 2, 6, 7, generator=torch.Generator().manual_seed(10)) + 1
    relevance = torch.randn(3, 1, 6, 7, generator=torch.Generator().manual_seed(11))
    fractions = [0.1, 0.25, 0.5, 0.9]
    recorder = Recorder()
    ablation_curve(
        recorder,
        x,
        relevance,
        0,
        fractions,
        fill="road",
        direction=direction,
        noise_std=0.5,
        score="logit",
        internal_batch_size=3,
        generator=torch.Generator().manual_seed(0),
    )
    removed = removed_sets(recorder, x)
    order = relevance.flatten(1).argsort(1, descending=direction == "morf")
    for step, fraction in enumerate(fractions):
        count = int(np.floor(fraction * 42 + 0.5))
        for i in range(3):
            expected = torch.zeros(42, dtype=torch.bool)
            expected[order[i, :count]] = True
            assert torch.equal(removed[i, step].flatten(), expected)


def test_mass_center_lerf_removes_everything_outside_the_complementary_box():
    x = torch.rand(2, 1, 10, 10) + 1
    relevance = torch.zeros(2, 1, 10, 10)
    relevance[0, 0, 1, 1] = 1.0  # mass at the top left
    fractions = [0.0, 0.36, 0.64, 1.0]
    recorder = Recorder()
    curve = ablation_curve(
        recorder,
        x,
        relevance,
        0,
        fractions,
        fill=torch.zeros(1),
        order="mass_center",
        direction="lerf",
        score="logit",
    )
    assert torch.equal(curve[:, 0], torch.ones(2))
    removed = removed_sets(recorder, x)
    # 0.36 keeps the 8x8 box of fraction 0.64, 0.64 keeps the 6x6 box of 0.36
    for step, side in ((0, 8), (1, 6)):
        kept_first = ~removed[0, step]
        assert int(kept_first.sum()) == side * side
        assert bool(kept_first[:side, :side].all())  # shifted into the corner
        kept_second = ~removed[1, step]  # an empty map: the box is centered
        start = (10 - side) // 2
        assert bool(kept_second[start : start + side, start : start + side].all())
    assert bool(removed[:, 2].all())


def test_degradation_lerf_replaces_the_least_relevant_patches_first():
    x = torch.rand(1, 1, 4, 4) + 1
    relevance = torch.zeros(1, 1, 4, 4)
    relevance[..., :2, :2] = 4.0
    relevance[..., :2, 2:] = 3.0
    relevance[..., 2:, :2] = 2.0
    relevance[..., 2:, 2:] = 1.0
    recorder = Recorder()
    degradation_curve(
        recorder, x, relevance, 0, 2, None, fill=torch.zeros(1), direction="lerf"
    )
    removed = removed_sets(recorder, x)[0]
    assert bool(removed[0, 2:, 2:].all()) and int(removed[0].sum()) == 4
    assert bool(removed[1, 2:].all()) and int(removed[1].sum()) == 8


def test_degradation_with_road_imputes_the_removed_patches():
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(15)) + 1
    relevance = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(16))
    recorder = Recorder()
    degradation_curve(recorder, x, relevance, 0, 3, None, fill="road", noise_std=0.0)
    seen = torch.cat(recorder.seen)[2:].reshape(2, 4, 2, 6, 6)
    removed = removed_sets(recorder, x)
    for step in range(3):  # the last step removes every patch
        expected = noisy_linear_imputation(x, removed[:, step], 0.0)
        torch.testing.assert_close(seen[:, step], expected)
    assert [int(removed[0, step].sum()) for step in range(4)] == [9, 18, 27, 36]


def test_road_curves_summary_and_model_untouched():
    model = small_cnn(in_channels=1, n_classes=3).double()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(12)).double()
    attributions = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with model_unchanged(model):
        result = road_curves(
            model, x, attributions, 1, generator=torch.Generator().manual_seed(5)
        )
    g = torch.Generator().manual_seed(5)
    morf = ablation_curve(model, x, attributions, 1, fill="road", generator=g)
    lerf = ablation_curve(
        model, x, attributions, 1, fill="road", direction="lerf", generator=g
    )
    torch.testing.assert_close(result.morf, morf)
    torch.testing.assert_close(result.lerf, lerf)
    assert torch.equal(result.morf[:, 0], torch.ones(4, dtype=torch.float64))
    # at k = 1 both orders remove everything: the same image (the noise aside)
    torch.testing.assert_close(
        result.morf[:, -1], result.lerf[:, -1], atol=0.05, rtol=0
    )
    torch.testing.assert_close(
        result.gap(),
        area_under_curve(lerf, result.fractions)
        - area_under_curve(morf, result.fractions),
    )
    summary = result.summary()
    assert set(summary) == {"morf", "lerf", "gap"}
    assert summary["gap"].mean == pytest.approx(float(result.gap().mean()))
    failing = FailingForward(model, fail_at=2)
    with model_unchanged(failing), pytest.raises(RuntimeError, match="on purpose"):
        road_curves(failing, x, attributions, 1)


def test_uninformative_map_gives_the_same_curve_in_both_orders():
    model = small_cnn(in_channels=1, n_classes=3).double()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(13)).double()
    flat = torch.zeros_like(x)
    result = road_curves(model, x, flat, 0, noise_std=0.0)
    torch.testing.assert_close(result.morf, result.lerf)
    assert torch.equal(result.gap(), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x, m: noisy_linear_imputation(x[:, 0], m), ValueError, "inputs"),
        (lambda x, m: noisy_linear_imputation(x, m[:, :2]), ValueError, "removed"),
        (lambda x, m: noisy_linear_imputation(x, m.float()), TypeError, "removed"),
        (lambda x, m: noisy_linear_imputation(x, m, -1.0), ValueError, "noise_std"),
        (lambda x, m: noisy_linear_imputation(x, m, tol=-1), ValueError, "tol"),
        (lambda x, m: noisy_linear_imputation(x, m, max_iter=0), ValueError, "max_it"),
        (lambda x, m: noisy_linear_imputation(x, m, generator=1), TypeError, "gener"),
        (
            lambda x, m: ablation_curve(
                small_cnn(), x.flatten(1), x.flatten(1), 0, fill="road"
            ),
            ValueError,
            "road",
        ),
        (
            lambda x, m: ablation_curve(small_cnn(), x, x, 0, direction="up"),
            ValueError,
            "direction",
        ),
        (
            lambda x, m: degradation_curve(small_cnn(), x, x, 0, 2, direction="most"),
            ValueError,
            "direction",
        ),
        (
            lambda x, m: ablation_curve(small_cnn(), x, x, 0, noise_std=-0.1),
            ValueError,
            "noise_std",
        ),
    ],
)
def test_bad_arguments(call, error, match):
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(error, match=match):
        call(x, torch.rand(2, 4, 4) < 0.5)


def test_unconverged_systems_warn():
    x = torch.rand(1, 1, 30, 30, generator=torch.Generator().manual_seed(14))
    removed = torch.ones(1, 30, 30, dtype=torch.bool)
    removed[0, 0, 0] = False
    with pytest.warns(RuntimeWarning, match="1 of 1"):
        noisy_linear_imputation(x, removed, 0.0, tol=1e-12, max_iter=1)
