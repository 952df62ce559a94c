"""Quadrature and adaptive Integrated Gradients against analytic oracles and Captum."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import captum_baselines as cb
from captum_baselines.attr.adaptive_ig import (
    AdaptiveIntegratedGradients,
    adaptive_integrated_gradients,
    open_start_trapezoid,
)
from captum_baselines.attr.integrated_gradients import (
    QuadratureIntegratedGradients,
    line_integral,
    quadrature,
)

from .helpers import FailingForward, model_unchanged

RULES = [
    "gausslegendre",
    "riemann_trapezoid",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
]


class Quadratic(nn.Module):
    """f(x) = x^T A x with A symmetric: IG_i = (x - x')_i (A (x + x'))_i exactly."""

    def __init__(self, d: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(d, d, generator=g, dtype=torch.float64)
        self.a = nn.Parameter(a + a.T)

    def forward(self, x):
        return ((x @ self.a) * x).sum(1, keepdim=True)

    def exact_ig(self, x, b):
        return (x - b) * ((x + b) @ self.a)


class Counting(nn.Module):
    """Counts the rows the wrapped model evaluates."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.model(x)


def _relu_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 3),
    ).double()


@settings(max_examples=25, deadline=None)
@given(method=st.sampled_from(RULES), n=st.integers(2, 40))
def test_every_rule_integrates_constants_and_linear_functions(method, n):
    alphas, weights = quadrature(method, n)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool((alphas >= 0).all() and (alphas <= 1).all())
    if method in ("gausslegendre", "riemann_trapezoid", "riemann_middle"):
        assert float((weights * alphas).sum()) == pytest.approx(0.5, abs=1e-12)


def test_gauss_legendre_is_exact_for_degree_2n_minus_1():
    alphas, weights = quadrature("gausslegendre", 4)
    for k in range(8):
        assert float((weights * alphas**k).sum()) == pytest.approx(
            1 / (k + 1), abs=1e-13
        )


@pytest.mark.parametrize("method,n", [("riemann_trapezoid", 2), ("gausslegendre", 1)])
def test_quadratic_model_is_exact(method, n):
    model = Quadratic(5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    b = torch.randn(4, 5, generator=g, dtype=torch.float64)
    ig = QuadratureIntegratedGradients(model)
    attr, delta = ig.attribute(
        x, baselines=b, n_steps=n, method=method, return_convergence_delta=True
    )
    torch.testing.assert_close(attr, model.exact_ig(x, b).detach(), atol=1e-12, rtol=0)
    assert float(delta.abs().max()) < 1e-12


@pytest.mark.parametrize(
    "method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"]
)
def test_agrees_with_captum_where_the_rules_coincide(method):
    model = _relu_cnn()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    target = [0, 2, 1]
    ours = QuadratureIntegratedGradients(model).attribute(
        x, target=target, n_steps=12, method=method, internal_batch_size=7
    )
    theirs = IntegratedGradients(model).attribute(
        x, target=target, n_steps=12, method=method
    )
    torch.testing.assert_close(ours, theirs, atol=1e-7, rtol=1e-6)


def test_trapezoid_is_exact_on_a_linear_model_where_captums_is_short():
    torch.manual_seed(0)
    model = nn.Linear(6, 2).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    exact = x * model.weight[1].detach()
    ours = QuadratureIntegratedGradients(model).attribute(x, target=1, n_steps=10)
    torch.testing.assert_close(ours, exact, atol=1e-14, rtol=0)
    captums = IntegratedGradients(model).attribute(
        x, target=1, n_steps=10, method="riemann_trapezoid"
    )
    # Captum's trapezoid weights sum to (n - 1) / n: a -10% error at n = 10.
    torch.testing.assert_close(captums, exact * 0.9, atol=1e-12, rtol=1e-7)


def test_local_variant_is_the_path_averaged_gradient():
    torch.manual_seed(0)
    model = nn.Linear(6, 2).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    ig = QuadratureIntegratedGradients(model, multiply_by_inputs=False)
    local = ig.attribute(x, target=0, n_steps=5)
    torch.testing.assert_close(local, model.weight[0].detach().expand(3, 6))
    assert not ig.multiplies_by_inputs


def test_adaptive_meets_its_tolerance_in_sum_and_per_feature():
    model = _relu_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64)
    baseline = cb.baselines.black(x)
    rtol = 0.03
    result = adaptive_integrated_gradients(
        model, x, baseline, target=1, rtol=rtol, atol=0.0, max_n_steps=1025
    )
    gap = (model(x)[:, 1] - model(baseline)[:, 1]).detach()
    assert bool(result.converged.all())
    assert bool((result.delta.abs() <= rtol * gap.abs()).all())
    # per feature: against a 2048-node reference, the L1 error is within rtol
    reference = QuadratureIntegratedGradients(model).attribute(
        x, baseline, target=1, n_steps=2048
    )
    error = (result.attributions[0] - reference).abs().flatten(1).sum(1)
    assert bool((error <= rtol * reference.abs().flatten(1).sum(1)).all())


def test_adaptive_controls_errors_that_cancel_across_features():
    # f = sin(20 x0) - sin(20 x1) at x = (1, 1) from 0: with 4 nodes the sum is
    # right (both terms cancel) while each attribution is far off.
    def f(x):
        return (torch.sin(20 * x[:, 0]) - torch.sin(20 * x[:, 1]))[:, None]

    x = torch.ones(1, 2, dtype=torch.float64)
    exact = torch.tensor([[math.sin(20.0), -math.sin(20.0)]], dtype=torch.float64)
    four = QuadratureIntegratedGradients(f).attribute(x, target=0, n_steps=4)
    assert (four - exact).abs().max() > 10  # +-14.59 instead of +-0.913
    attr, n_steps = AdaptiveIntegratedGradients(f).attribute(
        x, target=0, rtol=1e-3, return_n_steps=True
    )
    torch.testing.assert_close(attr, exact, atol=2e-3, rtol=0)
    assert int(n_steps[0]) > 4


def test_adaptive_warns_when_it_stops_unconverged():
    def f(x):
        return torch.sin(200 * x).sum(1, keepdim=True)

    x = torch.ones(3, 2, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="3 of 3 examples did not converge"):
        result = adaptive_integrated_gradients(f, x, target=0, max_n_steps=20)
    assert not bool(result.converged.any())
    assert result.n_steps.tolist() == [16, 16, 16]  # 4, 8, 16 nodes


def test_adaptive_refines_only_unconverged_examples_and_reuses_every_node():
    model = Counting(_relu_cnn())
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    b = x.clone()
    b[:2] = 0.0  # examples 2 and 3 sit on their baseline: converged at once
    result = adaptive_integrated_gradients(
        model, x, b, target=0, rtol=2e-2, atol=1e-9, initial_n_steps=3
    )
    # two levels (3 and 6 nodes) show that they are stable
    assert result.n_steps[2:].tolist() == [6, 6]
    assert bool((result.n_steps[:2] > 6).all())
    # rows: f(x) and f(x') (N each), then every node of every example once
    assert model.rows == 4 + 4 + int(result.n_steps.sum())
    assert bool((result.attributions[0][2:] == 0).all())


def test_adaptive_estimate_is_its_nested_rule_at_its_node_count():
    model = _relu_cnn()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    result = adaptive_integrated_gradients(
        model, x, target=2, rtol=3e-2, max_n_steps=256
    )
    for i, n in enumerate(result.n_steps.tolist()):
        alphas, weights = open_start_trapezoid(n)
        expected = line_integral(
            model, (x[i : i + 1],), (0 * x[i : i + 1],), torch.arange(1), alphas,
            weights, target=2,
        )[0]  # fmt: skip
        torch.testing.assert_close(
            result.attributions[0][i : i + 1], expected, atol=1e-12, rtol=1e-10
        )


def test_open_start_trapezoid_is_exact_for_linear_integrands():
    for n in (3, 4, 7, 64):
        alphas, weights = open_start_trapezoid(n)
        assert abs(float(weights.sum()) - 1) < 1e-14
        assert abs(float((weights * alphas).sum()) - 0.5) < 1e-14
        assert bool((weights > 0).all()) and float(alphas.min()) > 0


def test_adaptive_is_exact_where_the_gradient_jumps_at_the_baseline():
    # A bias-free ReLU net is homogeneous: from the zero baseline its gradient is
    # constant on (0, 1] and differs at 0. The rule never evaluates alpha = 0.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False)
    ).double()
    x = torch.rand(3, 6, dtype=torch.float64)
    attr, n_steps = AdaptiveIntegratedGradients(model).attribute(
        x, target=1, rtol=1e-9, return_n_steps=True
    )
    exact = x * torch.autograd.functional.jacobian(lambda z: model(z)[:, 1].sum(), x)
    torch.testing.assert_close(attr, exact, atol=1e-13, rtol=0)
    assert n_steps.tolist() == [8, 8, 8]


def test_adaptive_multi_input_and_additional_args():
    torch.manual_seed(0)

    class Model(nn.Module):
        def forward(self, u, v, scale):
            return torch.tanh(u @ torch.ones(3, 2, dtype=u.dtype) + v) * scale

    u = torch.rand(4, 3, dtype=torch.float64)
    v = torch.rand(4, 2, dtype=torch.float64)
    scale = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    ig = AdaptiveIntegratedGradients(Model())
    (au, av), delta, n_steps = ig.attribute(
        (u, v),
        baselines=(0.0, torch.zeros(1, 2, dtype=torch.float64)),
        target=torch.tensor([0, 1, 0, 1]),
        additional_forward_args=(scale,),
        rtol=1e-6,
        return_convergence_delta=True,
        return_n_steps=True,
    )
    assert au.shape == u.shape and av.shape == v.shape
    assert bool((n_steps <= 1024).all()) and bool((delta.abs() < 1e-5).all())
    reference = IntegratedGradients(Model()).attribute(
        (u, v),
        target=torch.tensor([0, 1, 0, 1]),
        additional_forward_args=(scale,),
        n_steps=64,
    )
    torch.testing.assert_close(au, reference[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(av, reference[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("adaptive", [False, True])
def test_model_left_exactly_as_found_also_on_error(adaptive):
    model = _relu_cnn().train()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    make = AdaptiveIntegratedGradients if adaptive else QuadratureIntegratedGradients
    with model_unchanged(model):
        make(model).attribute(x, target=0, return_convergence_delta=True)
    failing = FailingForward(model, fail_at=3)
    with model_unchanged(model), pytest.raises(RuntimeError, match="on purpose"):
        make(failing).attribute(x, target=0, internal_batch_size=4)


def test_bad_input_raises_clear_errors():
    model = _relu_cnn()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    ig = QuadratureIntegratedGradients(model)
    with pytest.raises(ValueError, match="baselines"):
        ig.attribute(x, baselines=torch.zeros(2, 1, 4, 4), target=0)
    with pytest.raises(ValueError, match="target"):
        ig.attribute(x, target=7)
    with pytest.raises(ValueError, match="n_steps"):
        ig.attribute(x, target=0, n_steps=0)
    with pytest.raises(ValueError, match="method"):
        ig.attribute(x, target=0, method="simpson")
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs"):
        ig.attribute(bad, target=0)
    with pytest.raises(ValueError, match="max_n_steps"):
        adaptive_integrated_gradients(
            model, x, target=0, initial_n_steps=8, max_n_steps=4
        )
    with pytest.raises(ValueError, match="rtol"):
        adaptive_integrated_gradients(model, x, target=0, rtol=-1.0)


def test_noise_tunnel_composes():
    from captum.attr import NoiseTunnel

    model = _relu_cnn()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    nt = NoiseTunnel(QuadratureIntegratedGradients(model))
    out = nt.attribute(
        x, nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=0, n_steps=8
    )
    plain = QuadratureIntegratedGradients(model).attribute(x, target=0, n_steps=8)
    torch.testing.assert_close(out, plain)


@pytest.mark.parametrize("adaptive", [False, True])
def test_batchnorm_model_in_train_mode_keeps_its_running_statistics(adaptive):
    from .helpers import small_cnn

    model = small_cnn().double().train()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    make = AdaptiveIntegratedGradients if adaptive else QuadratureIntegratedGradients
    with model_unchanged(model):
        make(model).attribute(x, target=1, return_convergence_delta=True)
