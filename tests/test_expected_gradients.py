"""Tests of ExpectedGradients and the EG / SmoothGrad pair."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from captum.attr import (
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
)
from captum.metrics import infidelity, sensitivity_max
from captum.testing.helpers.basic import assertTensorAlmostEqual
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import captum_baselines.attr.expected_gradients as eg_module
from captum_baselines.attr.expected_gradients import (
    ExpectedGradients,
    expected_gradients_and_smoothgrad,
    standard_error,
)
from tests.helpers import FailingForward, model_unchanged, small_cnn

DT = torch.float64


def linear_model(n_features: int = 5, n_outputs: int = 3, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_features, n_outputs).to(DT)


def tanh_net(n_features: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(n_features, 16), nn.Tanh(), nn.Linear(16, 1), nn.Softplus()
    ).to(DT)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- exact results on analytic models ---------------------------------------------


@pytest.mark.parametrize("repeats", [1, 3])
def test_linear_model_equals_input_minus_mean_reference_times_weight(repeats):
    model = linear_model()
    x = torch.randn(4, 5, dtype=DT)
    pool = torch.randn(7, 5, dtype=DT)
    # n_samples a multiple of M: every reference is drawn equally often
    attr, delta = ExpectedGradients(model).attribute(
        x,
        baselines=pool,
        target=1,
        n_samples=7 * repeats,
        generator=seeded(),
        return_convergence_delta=True,
    )
    expected = (x - pool.mean(0)) * model.weight[1].detach()
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")
    assertTensorAlmostEqual(None, delta, torch.zeros(4, dtype=DT), 1e-12, mode="max")


def test_local_variant_on_linear_model_is_the_gradient():
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    eg = ExpectedGradients(model, multiply_by_inputs=False)
    attr = eg.attribute(x, torch.randn(10, 5, dtype=DT), target=2, n_samples=6)
    assert not eg.multiplies_by_inputs
    expected = model.weight[2].detach().expand(3, 5)
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 4),
    m=st.integers(1, 6),
    repeats=st.integers(1, 3),
    batch=st.one_of(st.none(), st.integers(1, 9)),
)
def test_linear_exactness_over_shapes_and_batching(n, m, repeats, batch):
    model = linear_model()
    x = torch.randn(n, 5, dtype=DT)
    pool = torch.randn(m, 5, dtype=DT)
    attr = ExpectedGradients(model).attribute(
        x,
        pool,
        target=0,
        n_samples=m * repeats,
        internal_batch_size=batch,
        generator=seeded(n),
    )
    expected = (x - pool.mean(0)) * model.weight[0].detach()
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")


def test_delta_and_standard_error_are_those_of_the_drawn_samples():
    # n_samples == M: every example draws every reference exactly once, so the
    # references drawn are known; on a linear model each draw's term is exactly
    # f(x) - f(x'_j), which gives the standard error in closed form
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    pool = torch.randn(20, 5, dtype=DT)
    attr, delta, se = ExpectedGradients(model).attribute(
        x,
        pool,
        20,
        target=0,
        generator=seeded(),
        return_convergence_delta=True,
        return_standard_error=True,
    )
    f_x, f_pool = model(x).detach()[:, 0], model(pool).detach()[:, 0]
    terms = f_x[:, None] - f_pool[None, :]
    assertTensorAlmostEqual(None, attr.sum(1), terms.mean(1), 1e-12, mode="max")
    expected_delta = attr.sum(1) - (f_x - f_pool.mean())
    assertTensorAlmostEqual(None, delta, expected_delta, 1e-12, mode="max")
    assertTensorAlmostEqual(None, se, standard_error(terms), delta=1e-12, mode="max")
    assertTensorAlmostEqual(None, se, terms.std(1) / 20**0.5, delta=1e-12, mode="max")
    assert torch.isnan(standard_error(terms[:, :1])).all()
    # the tanh net: the delta is that of the draws made
    net = tanh_net()
    attr, delta = ExpectedGradients(net).attribute(
        x[:, :4], pool[:, :4], 20, generator=seeded(), return_convergence_delta=True
    )
    f_x, f_pool = net(x[:, :4]).detach()[:, 0], net(pool[:, :4]).detach()[:, 0]
    expected_delta = attr.sum(1) - (f_x - f_pool.mean())
    assertTensorAlmostEqual(None, delta, expected_delta, 1e-12, mode="max")


def test_converges_to_integrated_gradients_with_one_reference():
    model = tanh_net()
    x = torch.randn(3, 4, dtype=DT)
    b = torch.randn(1, 4, dtype=DT)
    ig = IntegratedGradients(model).attribute(x, b, n_steps=64)
    errors = []
    for n_samples in (4, 256):
        attr = ExpectedGradients(model).attribute(
            x, b, n_samples=n_samples, generator=seeded()
        )
        errors.append((attr - ig).abs().max().item())
    assert errors[1] < errors[0] / 4
    assert errors[1] < 2e-3 * ig.abs().max().item()


@pytest.mark.parametrize("multi_input", [False, True])
def test_equals_gradient_shap_given_the_same_references_and_alphas(
    monkeypatch, multi_input
):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(DT)

    def model(a, b=None):
        return net(a if b is None else torch.cat([a, b], 1))

    n, k, m = 3, 5, 11
    inputs = (torch.randn(n, 6, dtype=DT),)
    pools = (torch.randn(m, 6, dtype=DT),)
    if multi_input:
        inputs = (inputs[0][:, :4], inputs[0][:, 4:])
        pools = (torch.randn(m, 4, dtype=DT), torch.randn(m, 2, dtype=DT))
    target = torch.tensor([0, 2, 1])

    np.random.seed(3)
    shap = GradientShap(model).attribute(
        inputs, pools, n_samples=k, stdevs=0.0, target=target
    )
    # replay GradientShap's numpy draws: one reference index per input tensor
    # and per (example, sample) row, then one alpha per row
    np.random.seed(3)
    indices = [np.random.choice(m, n * k) for _ in pools]
    alphas = torch.tensor(np.random.uniform(0.0, 1.0, n * k), dtype=DT)
    references = tuple(
        p[torch.as_tensor(i)].reshape(n, k, -1).transpose(0, 1)
        for p, i in zip(pools, indices, strict=True)
    )

    def replay(x, n_samples, generator):
        return references if multi_input else references[0]

    monkeypatch.setattr(
        eg_module, "stratified_alphas", lambda *a, **kw: alphas.reshape(n, k)
    )
    ours = ExpectedGradients(model).attribute(
        inputs, replay, n_samples=k, target=target
    )
    for a, b in zip(ours, shap, strict=True):
        assertTensorAlmostEqual(None, a, b, delta=1e-12, mode="max")


# --- statistical properties --------------------------------------------------------


def test_completeness_delta_shrinks_like_inverse_sqrt_n_samples():
    model = tanh_net(seed=2)
    x = torch.randn(8, 4, dtype=DT)
    pool = 2 * torch.randn(4000, 4, dtype=DT)
    mean_abs = {}
    for n_samples in (16, 256):
        deltas = [
            ExpectedGradients(model)
            .attribute(
                x,
                pool,
                n_samples=n_samples,
                generator=seeded(seed),
                return_convergence_delta=True,
            )[1]
            .abs()
            .mean()
            for seed in range(3)
        ]
        mean_abs[n_samples] = torch.stack(deltas).mean().item()
    # 16x the samples: 1/sqrt(n) predicts a factor 4 (stratification may do better)
    assert mean_abs[256] < mean_abs[16] / 2.5


def test_standard_error_covers_the_true_error():
    model = tanh_net(seed=3)
    x = torch.randn(40, 4, dtype=DT)
    pool = 2 * torch.randn(2000, 4, dtype=DT)
    eg = ExpectedGradients(model)
    attr, se = eg.attribute(
        x, pool, n_samples=64, generator=seeded(), return_standard_error=True
    )
    with torch.no_grad():
        truth = model(x).squeeze(1) - model(pool).mean()
    z = (attr.sum(1) - truth) / se
    assert (z.abs() < 2.5).float().mean() > 0.85


def test_same_seed_same_result_and_batching_does_not_change_it():
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    pool = torch.rand(9, 3, 8, 8)
    eg = ExpectedGradients(model)
    first = eg.attribute(x, pool, target=1, n_samples=12, generator=seeded(5))
    again = eg.attribute(
        x, pool, target=1, n_samples=12, generator=seeded(5), internal_batch_size=5
    )
    other = eg.attribute(x, pool, target=1, n_samples=12, generator=seeded(6))
    assertTensorAlmostEqual(None, first, again, delta=1e-5, mode="max")
    assert not torch.allclose(first, other)


# --- reference sources -----------------------------------------------------------


class CountingDataset(Dataset):
    def __init__(self, data: torch.Tensor, labelled: bool) -> None:
        self.data, self.labelled, self.reads = data, labelled, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        return (self.data[i], i % 3) if self.labelled else self.data[i]


class Stream(IterableDataset):
    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __iter__(self):
        return iter((row, 0) for row in self.data)


@pytest.mark.parametrize(
    "make_source",
    [
        lambda d: CountingDataset(d, labelled=True),
        lambda d: CountingDataset(d, labelled=False),
        lambda d: DataLoader(TensorDataset(d, torch.zeros(len(d))), batch_size=3),
        lambda d: DataLoader(Stream(d), batch_size=4),
        lambda d: Stream(d),
    ],
    ids=["dataset_xy", "dataset_x", "loader", "iterable_loader", "iterable"],
)
def test_data_sources_on_linear_model(make_source):
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    data = torch.randn(10, 5, dtype=DT)
    attr = ExpectedGradients(model).attribute(
        x,
        make_source(data),
        target=2,
        n_samples=10,
        generator=seeded(),
        internal_batch_size=7,
    )
    expected = (x - data.mean(0)) * model.weight[2].detach()
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")


def test_dataset_reads_only_the_drawn_items():
    model = linear_model()
    data = CountingDataset(torch.randn(1000, 5, dtype=DT), labelled=True)
    ExpectedGradients(model).attribute(
        torch.randn(2, 5, dtype=DT), data, target=0, n_samples=8
    )
    assert data.reads <= 2 * 8


def test_callable_source_is_used_as_the_references():
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    drawn = []

    def shifted(inputs, n_samples, generator):
        draws = inputs + torch.randn((n_samples, *inputs.shape), generator=generator)
        drawn.append(draws)
        return draws

    attr = ExpectedGradients(model).attribute(
        x, shifted, target=0, n_samples=40, generator=seeded()
    )
    assert sum(len(d) for d in drawn) == 40 and len(drawn) > 1
    mean_reference = torch.cat(drawn).mean(0)
    expected = (x - mean_reference) * model.weight[0].detach()
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")


def test_multi_input_shares_one_reference_index():
    # f = sum(x1 * x2) and x1 == x2: with the same reference for both tensors the
    # two attributions are identical; mixed references would make them differ
    def model(a, b):
        return (a * b).sum(1)

    x = torch.randn(3, 4, dtype=DT)
    pool = torch.randn(50, 4, dtype=DT)
    a1, a2 = ExpectedGradients(model).attribute(
        (x, x.clone()), (pool, pool.clone()), n_samples=5, generator=seeded()
    )
    assertTensorAlmostEqual(None, a1, a2, delta=1e-12, mode="max")
    assert a1.abs().sum() > 0


# --- Captum conventions ---------------------------------------------------------


@pytest.mark.parametrize(
    "target", [1, torch.tensor(1), torch.tensor([0, 2, 1]), [0, 2, 1]]
)
def test_every_target_form(target):
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    pool = torch.randn(4, 5, dtype=DT)
    attr = ExpectedGradients(model).attribute(x, pool, target=target, n_samples=4)
    per_example = isinstance(target, list) or (
        isinstance(target, torch.Tensor) and target.numel() == 3
    )
    rows = [0, 2, 1] if per_example else [1, 1, 1]
    expected = (x - pool.mean(0)) * model.weight[rows].detach()
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")


def test_tuple_target_and_additional_forward_args():
    weight = torch.randn(2, 3, 5, dtype=DT)

    def model(x, scale):
        return torch.einsum("nf,ocf->noc", x, weight) * scale[:, None, None]

    x = torch.randn(4, 5, dtype=DT)
    scale = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=DT)
    pool = torch.randn(6, 5, dtype=DT)
    attr, delta = ExpectedGradients(model).attribute(
        x,
        pool,
        target=(1, 2),
        additional_forward_args=(scale,),
        n_samples=6,
        internal_batch_size=5,
        return_convergence_delta=True,
    )
    expected = (x - pool.mean(0)) * weight[1, 2] * scale[:, None]
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")
    assertTensorAlmostEqual(None, delta, torch.zeros(4, dtype=DT), 1e-12, mode="max")


def test_noise_tunnel_composition():
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    b = torch.randn(1, 5, dtype=DT)
    nt = NoiseTunnel(ExpectedGradients(model))
    attr, delta = nt.attribute(
        x,
        nt_type="smoothgrad",
        nt_samples=4,
        stdevs=0.0,
        baselines=b,
        target=0,
        n_samples=3,
        return_convergence_delta=True,
    )
    expected = (x - b) * model.weight[0].detach()
    assertTensorAlmostEqual(None, attr, expected, delta=1e-12, mode="max")
    assert delta.shape == (12,) and delta.abs().max() < 1e-12


def test_infidelity_and_sensitivity_max_accept_it():
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    pool = torch.rand(6, 3, 8, 8)
    eg = ExpectedGradients(model)
    attr = eg.attribute(x, pool, target=0, n_samples=6, generator=seeded())

    def perturb(inputs):
        noise = 0.01 * torch.randn_like(inputs)
        return noise, inputs - noise

    score = infidelity(model, perturb, x, attr, target=0, n_perturb_samples=3)
    sens = sensitivity_max(
        eg.attribute, x, target=0, baselines=pool, n_samples=4, n_perturb_samples=2
    )
    assert score.shape == (2,) and torch.isfinite(score).all()
    assert sens.shape == (2,) and torch.isfinite(sens).all()


def test_works_under_no_grad_and_with_inputs_requiring_grad():
    model = linear_model()
    x = torch.randn(2, 5, dtype=DT, requires_grad=True)
    with torch.no_grad():
        attr = ExpectedGradients(model).attribute(x, x.detach() * 0, target=0)
    assertTensorAlmostEqual(
        None, attr, x.detach() * model.weight[0].detach(), 1e-12, mode="max"
    )


# --- the model is left as found ---------------------------------------------------


def test_model_unchanged_including_training_mode_and_grads():
    # in training mode BatchNorm would update its running statistics: the
    # attribution runs in eval mode and restores the flags
    model = small_cnn().train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[4].weight.requires_grad_(False)
    with model_unchanged(model):
        ExpectedGradients(model).attribute(
            torch.rand(2, 3, 8, 8),
            torch.rand(5, 3, 8, 8),
            target=3,
            n_samples=6,
            internal_batch_size=4,
        )
    assert model.training and model[1].training


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_model_unchanged_when_forward_raises_midway(fail_at):
    model = small_cnn()
    failing = FailingForward(model, fail_at=fail_at)
    with model_unchanged(model):
        with pytest.raises(RuntimeError, match="on purpose"):
            ExpectedGradients(failing).attribute(
                torch.rand(2, 3, 8, 8),
                torch.rand(5, 3, 8, 8),
                target=0,
                n_samples=10,
                internal_batch_size=4,
            )


# --- clear errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"baselines": torch.zeros(0, 5)}, ValueError, "empty"),
        ({"baselines": torch.zeros(4, 6)}, ValueError, "shaped"),
        ({"baselines": torch.zeros(4, 1, 5)}, ValueError, "does not fit"),
        ({"baselines": (torch.zeros(4, 5), torch.zeros(4, 5))}, ValueError, "one"),
        ({"baselines": torch.full((4, 5), float("nan"))}, ValueError, "NaN"),
        ({"baselines": TensorDataset(torch.zeros(0, 5))}, ValueError, "empty"),
        ({"baselines": DataLoader(Stream(torch.zeros(0, 5)))}, ValueError, "empty"),
        ({"baselines": "references"}, TypeError, "baselines"),
        ({"baselines": [object()]}, TypeError, "baselines"),
        ({"baselines": lambda x, n_samples, generator: x}, ValueError, "n_samples"),
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"n_samples": 2.5}, TypeError, "n_samples"),
        ({"internal_batch_size": 0}, ValueError, "internal_batch_size"),
        ({"target": 3}, ValueError, "target"),
        ({"target": [0]}, ValueError, "target"),
        ({"generator": 0}, TypeError, "generator"),
    ],
)
def test_clear_errors(kwargs, error, match):
    model = linear_model(n_outputs=3)
    arguments = {"baselines": torch.zeros(4, 5, dtype=DT), "target": 0}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        ExpectedGradients(model).attribute(torch.randn(2, 5, dtype=DT), **arguments)


def test_mismatched_reference_counts_in_a_tuple():
    def model(a, b):
        return a.sum(1) + b.sum(1)

    with pytest.raises(ValueError, match="same number of references"):
        ExpectedGradients(model).attribute(
            (torch.randn(2, 3), torch.randn(2, 4)),
            (torch.randn(5, 3), torch.randn(6, 4)),
        )


def test_nan_inputs_rejected():
    with pytest.raises(ValueError, match="inputs"):
        ExpectedGradients(linear_model()).attribute(
            torch.full((2, 5), float("nan"), dtype=DT), torch.zeros(3, 5, dtype=DT)
        )


# --- the SmoothGrad connection ------------------------------------------------------


def test_eg_plus_smoothgrad_is_gradient_times_input_on_linear_model():
    # EG = mean_j(-eps_j) w and SG = mean_j(x + eps_j) w: same eps, so they sum
    # to x * w exactly
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    eg, sg = expected_gradients_and_smoothgrad(
        model, x, sigma=0.7, target=1, n_samples=20, generator=seeded()
    )
    w = model.weight[1].detach()
    assertTensorAlmostEqual(None, eg + sg, x * w, delta=1e-12, mode="max")
    assert eg.abs().max() > 1e-3


def test_eg_half_matches_expected_gradients_with_the_same_noise():
    model = tanh_net()
    x = torch.randn(3, 4, dtype=DT)
    sigma = 0.5

    def gaussian(inputs, n_samples, generator):
        noise = torch.randn((n_samples, *inputs.shape), generator=generator, dtype=DT)
        return inputs + sigma * noise

    eg, _ = expected_gradients_and_smoothgrad(
        model, x, sigma, n_samples=20, generator=seeded(4), internal_batch_size=7
    )
    reference = ExpectedGradients(model).attribute(
        x, gaussian, n_samples=20, generator=seeded(4)
    )
    assertTensorAlmostEqual(None, eg, reference, delta=1e-12, mode="max")


def test_smoothgrad_at_zero_noise_is_input_x_gradient():
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    with model_unchanged(model):
        eg, sg = expected_gradients_and_smoothgrad(
            model, x, sigma=0.0, target=2, n_samples=3
        )
        _, local = expected_gradients_and_smoothgrad(
            model, x, 0.0, target=2, n_samples=3, multiply_by_inputs=False
        )
    input_x_gradient = InputXGradient(model).attribute(
        x.clone().requires_grad_(), target=2
    )
    assertTensorAlmostEqual(None, sg, input_x_gradient, 1e-6, mode="max")
    assert eg.abs().max() == 0
    grad = input_x_gradient / x
    assertTensorAlmostEqual(None, local, grad, 1e-4, mode="max")


def test_smoothgrad_multi_input_and_errors():
    def model(a, b):
        return (a * b).sum(1)

    a, b = torch.randn(2, 3, dtype=DT), torch.randn(2, 3, dtype=DT)
    eg, sg = expected_gradients_and_smoothgrad(model, (a, b), 0.1, n_samples=4)
    assert isinstance(eg, tuple) and len(sg) == 2
    with pytest.raises(ValueError, match="sigma"):
        expected_gradients_and_smoothgrad(model, (a, b), -1.0)
    with pytest.raises(ValueError, match="n_samples"):
        expected_gradients_and_smoothgrad(model, (a, b), 1.0, n_samples=0)


def test_progress_bar_can_be_shown(capsys):
    model = linear_model()
    ExpectedGradients(model).attribute(
        torch.randn(2, 5, dtype=DT),
        torch.randn(3, 5, dtype=DT),
        target=0,
        n_samples=4,
        internal_batch_size=2,
        show_progress=True,
    )
    assert "Expected Gradients" in capsys.readouterr().err


def test_gaussian_partial_is_a_valid_source():
    # per-example draws built the way cb.baselines.gaussian will be called
    def gaussian(inputs, sigma, n_samples=None, generator=None):
        return inputs + sigma * torch.randn(
            (n_samples, *inputs.shape), generator=generator, dtype=inputs.dtype
        )

    model = tanh_net()
    attr, delta = ExpectedGradients(model).attribute(
        torch.randn(2, 4, dtype=DT),
        functools.partial(gaussian, sigma=0.3),
        n_samples=33,
        return_convergence_delta=True,
    )
    assert attr.shape == (2, 4) and delta.abs().max() < 0.05


def test_noise_tunnel_drawing_baselines_from_the_pool():
    # NoiseTunnel(draw_baseline_from_distrib=True) draws one reference per noisy
    # copy and EG draws its n_samples from those: on a linear model every term
    # is w (x + eps - x'), so the result is w (x - mean of the references drawn)
    model = linear_model()
    x = torch.randn(3, 5, dtype=DT)
    pool = torch.randn(40, 5, dtype=DT)
    np.random.seed(0)
    attr, delta = NoiseTunnel(ExpectedGradients(model)).attribute(
        x,
        nt_type="smoothgrad",
        nt_samples=8,
        stdevs=0.0,
        draw_baseline_from_distrib=True,
        baselines=pool,
        target=1,
        n_samples=4,
        return_convergence_delta=True,
    )
    assert attr.shape == x.shape and delta.shape == (24,)
    assert delta.abs().max() < 1e-12  # complete over the references drawn
    # the references drawn are pool members: the attribution lies between the
    # extremes the pool allows, and converges to EG over the whole pool
    w = model.weight[1].detach()
    assert bool(((x - attr / w) - pool.min(0).values >= -1e-9).all())
    assert bool(((x - attr / w) - pool.max(0).values <= 1e-9).all())
