"""Tests of ablation curves, areas under curves and the random control."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from captum_baselines.metrics.ablation import (
    ablation_curve,
    area_under_curve,
    center_of_mass,
    mass_center_boxes,
    random_attributions,
)
from tests.helpers import FailingForward, model_unchanged, small_cnn

FRACTIONS = torch.linspace(0, 1, 11, dtype=torch.float64)


def linear_model(
    shape: tuple[int, ...], n_out: int = 1, bias: float = 5.0
) -> nn.Module:
    torch.manual_seed(1)
    d = math.prod(shape)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, n_out)).double()
    with torch.no_grad():
        model[1].bias.fill_(bias)
    return model


class RemovalProbe(nn.Module):
    """Reports where the sentinel fill landed: count, row sum, column sum."""

    def __init__(self, sentinel: float = -7.0) -> None:
        super().__init__()
        self.sentinel = sentinel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        removed = (x == self.sentinel).all(1).to(x.dtype)  # (N, H, W)
        rows = torch.arange(x.shape[2], dtype=x.dtype)[:, None]
        cols = torch.arange(x.shape[3], dtype=x.dtype)[None, :]
        return torch.stack(
            [
                removed.sum((1, 2)),
                (removed * rows).sum((1, 2)),
                (removed * cols).sum((1, 2)),
            ],
            1,
        )


def test_linear_exact_attributions_top_k_matches_hand_oracle_and_beats_controls():
    shape = (2, 4, 4)
    model = linear_model(shape)
    x = torch.rand(3, *shape, dtype=torch.float64)
    w = model[1].weight.detach().reshape(shape)
    exact = w * x
    ig = IntegratedGradients(model).attribute(x, baselines=0 * x, target=0)
    torch.testing.assert_close(ig, exact, rtol=0, atol=1e-8)

    zeros = torch.zeros(1, dtype=torch.float64)
    kw = dict(target=0, fractions=FRACTIONS, fill=zeros, score="logit")
    top = ablation_curve(model, x, exact, **kw)
    reverse = ablation_curve(model, x, -exact, **kw)
    g = torch.Generator().manual_seed(0)
    random = ablation_curve(model, x, random_attributions(x, g), **kw)

    # Hand oracle: removing a pixel (both channels, fill 0) drops f by its
    # channel-summed exact attribution, pixels ranked by that sum.
    f = model(x)[:, 0]
    pixel = exact.sum(1).reshape(3, -1)
    ordered = pixel.sort(1, descending=True).values
    counts = torch.floor(FRACTIONS * 16 + 0.5).long()
    cumulative = torch.cat([torch.zeros(3, 1, dtype=x.dtype), ordered.cumsum(1)], 1)
    expected = (f[:, None] - cumulative[:, counts]) / f[:, None]
    torch.testing.assert_close(top, expected, rtol=0, atol=1e-12)

    # Greedy by exact contribution is the fastest possible drop.
    assert bool((top <= random + 1e-12).all()) and bool((top <= reverse + 1e-12).all())
    auc_top, auc_random, auc_reverse = (
        area_under_curve(c).mean() for c in (top, random, reverse)
    )
    assert auc_top < auc_random < auc_reverse
    assert torch.equal(top[:, 0], torch.ones(3, dtype=x.dtype))


def test_probability_score_is_softmax_relative_to_unablated():
    shape = (1, 3, 3)
    model = linear_model(shape, n_out=3, bias=0.0)
    x = torch.rand(2, *shape, dtype=torch.float64)
    a = torch.randn(2, *shape, dtype=torch.float64)
    target = torch.tensor([2, 0])
    curve = ablation_curve(model, x, a, target, fractions=[0.0, 1.0])
    fill = x.mean((2, 3), keepdim=True).expand_as(x)  # per-image channel mean
    p_x = torch.softmax(model(x), 1)[[0, 1], target]
    p_fill = torch.softmax(model(fill), 1)[[0, 1], target]
    torch.testing.assert_close(curve[:, 1], (p_fill / p_x).detach())
    assert torch.equal(curve[:, 0], torch.ones(2, dtype=x.dtype))


def test_mean_fill_is_per_image_per_channel_mean():
    shape = (3, 4, 5)
    model = linear_model(shape)
    x = torch.randn(2, *shape, dtype=torch.float64)
    x[:, 1] -= 3.0  # a channel with a negative mean is replaced too
    curve = ablation_curve(
        model, x, x, 0, fractions=[1.0], score="logit", relative=False
    )
    means = x.mean((2, 3), keepdim=True).expand_as(x)
    torch.testing.assert_close(curve[:, 0], model(means)[:, 0].detach())


def test_absolute_ranks_by_magnitude_signed_by_value():
    shape = (1, 2, 2)
    model = linear_model(shape, bias=0.0)
    x = torch.ones(1, *shape, dtype=torch.float64)
    a = torch.tensor([[[[0.1, -5.0], [0.2, 0.3]]]], dtype=torch.float64)
    probe = torch.zeros(1, dtype=torch.float64)
    kw = dict(target=0, fractions=[0.25], fill=probe, score="logit", relative=False)
    w = model[1].weight.detach().reshape(-1)
    signed = ablation_curve(model, x, a, **kw)
    absolute = ablation_curve(model, x, a, absolute=True, **kw)
    # signed removes the largest value (0.3, index 3), absolute the -5 (index 1)
    torch.testing.assert_close(signed[0, 0], (w.sum() - w[3]).detach())
    torch.testing.assert_close(absolute[0, 0], (w.sum() - w[1]).detach())


def test_center_of_mass_and_boxes_by_hand():
    relevance = torch.zeros(3, 6, 6, dtype=torch.float64)
    relevance[0, 2, 3] = 1.0
    relevance[1, 0, 0] = 1.0
    relevance[1, 0, 2] = 3.0  # center (0, 1.5)
    # example 2 is empty: the image center (2.5, 2.5)
    center = center_of_mass(relevance)
    expected = torch.tensor([[2.0, 3.0], [0.0, 1.5], [2.5, 2.5]], dtype=torch.float64)
    torch.testing.assert_close(center, expected)

    fractions = torch.tensor([0.0, 1 / 9, 0.25, 1.0], dtype=torch.float64)
    boxes = mass_center_boxes(relevance, fractions, (6, 6))
    # sides round(sqrt(k) * 6) = 0, 2, 3, 6
    # ex 0, side 2: top = round(2 - 0.5) = 2, left = round(3 - 0.5) = 3
    # ex 0, side 3: top = round(2 - 1) = 1, left = 2
    # ex 1, side 2: top = round(-0.5) = 0 (clamped), left = round(1) = 1
    # ex 1, side 3: top = -1 -> 0, left = round(0.5) = 1
    # ex 2, side 2: round(2) = 2 ; side 3: round(1.5) = 2
    assert boxes[0].tolist() == [[0, 0, 0, 0], [2, 3, 2, 2], [1, 2, 3, 3], [0, 0, 6, 6]]
    assert boxes[1].tolist() == [[0, 0, 0, 0], [0, 1, 2, 2], [0, 1, 3, 3], [0, 0, 6, 6]]
    assert boxes[2].tolist() == [[0, 0, 0, 0], [2, 2, 2, 2], [2, 2, 3, 3], [0, 0, 6, 6]]

    near_edge = torch.zeros(1, 6, 6, dtype=torch.float64)
    near_edge[0, 5, 5] = 1.0
    box = mass_center_boxes(near_edge, torch.tensor([0.25]), (6, 6))
    assert box[0, 0].tolist() == [3, 3, 3, 3]  # shifted inside, area kept


def test_mass_center_curve_removes_the_hand_computed_box():
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64)
    a = torch.zeros_like(x)
    a[0, 1, 2, 3] = -4.0  # mass uses |a|
    fill = torch.full((1,), -7.0, dtype=torch.float64)
    fractions = [0.0, 1 / 9, 0.25]
    values = [
        ablation_curve(
            RemovalProbe(),
            x,
            a,
            target=t,
            fractions=fractions,
            fill=fill,
            order="mass_center",
            score="logit",
            relative=False,
        )[0]
        for t in range(3)
    ]
    count, row_sum, col_sum = values
    # fraction 0 removes nothing: the probe's score on the untouched input
    assert count.tolist() == [0.0, 4.0, 9.0]
    # box rows 2..3, cols 3..4 then rows 1..3, cols 2..4
    assert row_sum.tolist() == [0.0, 2 * (2 + 3), 3 * (1 + 2 + 3)]
    assert col_sum.tolist() == [0.0, 2 * (3 + 4), 3 * (2 + 3 + 4)]


@settings(max_examples=15, deadline=None)
@given(
    channels=st.integers(1, 3),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    fractions=st.lists(st.floats(0, 1, allow_subnormal=False), min_size=1, max_size=4),
)
def test_top_k_removes_round_k_p_pixels(channels, height, width, fractions):
    x = torch.rand(2, channels, height, width, dtype=torch.float64)
    a = torch.randn(2, channels, height, width, dtype=torch.float64)
    fill = torch.full((1,), -7.0, dtype=torch.float64)
    count = ablation_curve(
        RemovalProbe(),
        x,
        a,
        target=0,
        fractions=fractions,
        fill=fill,
        score="logit",
        relative=False,
    )
    p = height * width
    expected = torch.tensor([math.floor(k * p + 0.5) for k in fractions])
    assert count.tolist() == [expected.double().tolist()] * 2


def test_maps_tabular_inputs_and_batching_agree():
    model = small_cnn().double()
    x = torch.rand(5, 3, 6, 6, dtype=torch.float64)
    a = torch.randn_like(x)
    target = torch.tensor([0, 1, 2, 3, 0])
    full = ablation_curve(model, x, a, target)
    channel_sum = a.sum(1, keepdim=True)
    torch.testing.assert_close(ablation_curve(model, x, channel_sum, target), full)
    torch.testing.assert_close(
        ablation_curve(model, x, channel_sum[:, 0], target), full
    )
    for size in (1, 3, 40):
        chunked = ablation_curve(model, x, a, target, internal_batch_size=size)
        torch.testing.assert_close(chunked, full)
    as_list = ablation_curve(model, x, a, target.tolist())
    torch.testing.assert_close(as_list, full)

    tabular = nn.Linear(6, 3).double()
    xt = torch.rand(4, 6, dtype=torch.float64)
    curve = ablation_curve(tabular, xt, xt * tabular.weight[1], 1, fill=torch.zeros(1))
    assert curve.shape == (4, 11) and torch.equal(curve[:, 0], torch.ones(4).double())


def test_callable_fill_equals_tensor_fill():
    model = small_cnn().double()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    a = torch.randn_like(x)
    zero = ablation_curve(model, x, a, 1, fill=torch.zeros(3, 1, 1))
    call = ablation_curve(model, x, a, 1, fill=lambda inputs: torch.zeros_like(inputs))
    torch.testing.assert_close(zero, call)


def test_model_unchanged_and_failure_midway():
    model = small_cnn()
    x = torch.rand(3, 3, 6, 6)
    a = torch.randn_like(x)
    with model_unchanged(model):
        ablation_curve(model, x, a, 1, order="mass_center", internal_batch_size=4)
    failing = FailingForward(model, fail_at=3)
    with model_unchanged(failing), pytest.raises(RuntimeError, match="on purpose"):
        ablation_curve(failing, x, a, 1, internal_batch_size=4)


def test_progress_bar(capsys):
    model = small_cnn()
    x = torch.rand(2, 3, 4, 4)
    ablation_curve(model, x, x, 0, show_progress=True)
    assert "ablation (top_k, morf)" in capsys.readouterr().err
    ablation_curve(model, x, x, 0, show_progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(fractions=[0.5, 1.5]), ValueError, "fractions"),
        (dict(fill="noise"), ValueError, "fill"),
        (dict(fill=torch.zeros(2, 1, 1)), ValueError, "fill"),
        (dict(fill=3), TypeError, "fill"),
        (dict(order="bottom"), ValueError, "order"),
        (dict(score="margin"), ValueError, "score"),
        (dict(target=9), ValueError, "target"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
        (dict(blur_sigma=-1.0), ValueError, "blur_sigma"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model = small_cnn()
    x = torch.rand(2, 3, 4, 4)
    args = dict(target=0) | kwargs
    with pytest.raises(error, match=match):
        ablation_curve(model, x, x, **args)


def test_bad_inputs_and_attributions():
    model = small_cnn()
    x = torch.rand(2, 3, 4, 4)
    nan = x.clone()
    nan[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="inputs"):
        ablation_curve(model, nan, x, 0)
    with pytest.raises(ValueError, match="attributions"):
        ablation_curve(model, x, x[:, :, :3], 0)
    with pytest.raises(ValueError, match="attributions"):
        ablation_curve(model, x, nan, 0)
    with pytest.raises(TypeError, match="single tensor"):
        ablation_curve(model, (x, x), x, 0)
    with pytest.raises(ValueError, match="mass_center"):
        ablation_curve(
            nn.Linear(4, 2), torch.rand(2, 4), torch.rand(2, 4), 0, order="mass_center"
        )
    with pytest.raises(ValueError, match="probability"):
        ablation_curve(nn.Linear(4, 1), torch.rand(2, 4), torch.rand(2, 4), 0)


def test_area_under_curve_by_hand():
    curve = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(
        area_under_curve(curve), torch.tensor([0.5, 1.0], dtype=torch.float64)
    )
    uneven = area_under_curve(curve, [0.0, 0.2, 1.0])
    torch.testing.assert_close(
        uneven, torch.tensor([0.2 * 0.75 + 0.8 * 0.25, 1.0], dtype=torch.float64)
    )
    assert area_under_curve(curve[0]).dim() == 0
    with pytest.raises(ValueError, match="fractions"):
        area_under_curve(curve, [0.0, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        area_under_curve(curve, [0.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="curve"):
        area_under_curve(torch.ones(2, 1))


def test_random_attributions_follow_the_generator():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    a = random_attributions(x, torch.Generator().manual_seed(3))
    b = random_attributions(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    with pytest.raises(TypeError, match="generator"):
        random_attributions(x, 3)  # type: ignore[arg-type]


def test_blur_fill_replaces_with_the_blurred_image():
    from captum_baselines.baselines import blur

    model = small_cnn().double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    curve = ablation_curve(
        model,
        x,
        x,
        1,
        fractions=[0.0, 1.0],
        fill="blur",
        blur_sigma=2.0,
        score="logit",
        relative=False,
    )
    expected = model(blur(x, 2.0))[:, 1].detach()
    torch.testing.assert_close(curve[:, 1], expected)
