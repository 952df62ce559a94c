"""Tests of the pattern-replacing backward, PatternAttribution and PGIG."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from captum_baselines.attr.pattern_backward import pattern_backward
from captum_baselines.attr.patterns import Patterns, fit_patterns
from captum_baselines.attr.pgig import (
    PatternAttribution,
    PatternGuidedIntegratedGradients,
)
from tests.helpers import (
    FailingForward,
    model_unchanged,
    randomize_batchnorms,
    small_cnn,
    stress_test_model,
)

torch.set_flush_denormal(True)


def _random_patterns(model: nn.Module, seed: int = 0, prefix: str = "") -> Patterns:
    generator = torch.Generator().manual_seed(seed)
    return Patterns(
        {
            prefix + name: torch.rand(m.weight.shape, generator=generator).to(m.weight)
            + 0.5
            for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))
        }
    )


def _ones(model: nn.Module) -> Patterns:
    return Patterns(
        {
            name: torch.ones_like(m.weight)
            for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))
        }
    )


# ------------------------------------------------ all patterns ones: Captum IG


@pytest.mark.parametrize(
    "method, n_steps, internal_batch_size",
    [
        ("gausslegendre", 8, None),
        ("riemann_left", 4, 7),
        ("riemann_right", 5, 3),
        ("riemann_middle", 6, None),
    ],
)
def test_pgig_with_ones_equals_captum_ig(method, n_steps, internal_batch_size):
    # where Captum's rules weigh correctly, PGIG with all-ones patterns is IG
    model = randomize_batchnorms(small_cnn()).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    baselines = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 2, 3])
    kwargs = dict(
        target=target,
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal_batch_size,
    )
    expected = IntegratedGradients(model).attribute(x, baselines, **kwargs)
    with model_unchanged(model):
        got = PatternGuidedIntegratedGradients(model, _ones(model)).attribute(
            x, baselines, **kwargs
        )
    # Captum rounds the quadrature weights to float32: agreement to that precision
    torch.testing.assert_close(got, expected, atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize(
    "method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle"]
)
@pytest.mark.parametrize("n_steps", [2, 3, 10, 17])
def test_pgig_integrates_correctly_under_every_rule(method, n_steps):
    # a linear model with all-ones patterns: the integrand is constant, so every
    # correctly weighted rule gives exactly f(x) - f(x'); Captum's trapezoid
    # would give (n - 1) / n of it
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3)).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    baselines = torch.randn(4, 6, dtype=torch.float64)
    got = PatternGuidedIntegratedGradients(model, _ones(model)).attribute(
        x, baselines, target=1, n_steps=n_steps, method=method
    )
    gap = (model(x) - model(baselines))[:, 1].detach()
    torch.testing.assert_close(got.sum(1), gap, atol=1e-10, rtol=0)


def test_pgig_accepts_every_baseline_form_of_captum_ig():
    import captum_baselines.baselines as cbb

    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    pgig = PatternGuidedIntegratedGradients(model, _ones(model))
    ig = IntegratedGradients(model)
    generator = torch.Generator().manual_seed(0)
    for baselines in (
        None,
        0.5,
        torch.rand(1, 3, 8, 8),
        cbb.black(x),
        cbb.uniform(x, generator=generator),
        cbb.blur(x, sigma=1.0),
    ):
        expected = ig.attribute(x, baselines, target=1, n_steps=6)
        got = pgig.attribute(x, baselines, target=1, n_steps=6)
        torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-5)


def test_pgig_local_attribution_and_noise_tunnel():
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    local = PatternGuidedIntegratedGradients(
        model, _ones(model), multiply_by_inputs=False
    )
    assert not local.multiplies_by_inputs
    expected = IntegratedGradients(model, multiply_by_inputs=False).attribute(
        x, target=0, n_steps=5
    )
    assert torch.equal(local.attribute(x, target=0, n_steps=5), expected)
    pgig = PatternGuidedIntegratedGradients(model, _random_patterns(model))
    tunnel = NoiseTunnel(pgig)
    with model_unchanged(model):
        out = tunnel.attribute(x, nt_samples=2, stdevs=0.1, target=0, n_steps=3)
    assert out.shape == x.shape and torch.isfinite(out).all()


# ------------------------------------------------ analytic: linear models


def test_pgig_on_a_linear_model_is_pattern_times_ig():
    """Sec. 4.1 of the paper: for f = w^T x + b, PGIG_i = p_i * IG_i."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 1)).double()
    pattern = torch.randn(1, 5, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    baseline = torch.randn(4, 5, dtype=torch.float64)
    w = model[0].weight.detach()
    got = PatternGuidedIntegratedGradients(model, {"0": pattern}).attribute(
        x, baseline, target=0, n_steps=3
    )
    torch.testing.assert_close(got, pattern * w * (x - baseline))
    pa = PatternAttribution(model, {"0": pattern}).attribute(x, target=0)
    torch.testing.assert_close(pa, model(x).detach() * pattern * w)


def test_pattern_attribution_with_ones_is_output_times_gradient():
    model = small_cnn()
    x = torch.randn(3, 3, 8, 8)
    target = [1, 0, 3]
    gradient = Saliency(model).attribute(
        x.clone().requires_grad_(), target=target, abs=False
    )
    output = model(x).detach()[torch.arange(3), target]
    with model_unchanged(model):
        got = PatternAttribution(model, _ones(model)).attribute(x, target=target)
    torch.testing.assert_close(got, output[:, None, None, None] * gradient)


# ------------------------------------------------ piecewise-linear oracles


def _vgg_like() -> nn.Sequential:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=1, padding=2, dilation=2, groups=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 10),
        nn.ReLU(inplace=True),
        nn.Linear(10, 4),
    ).double()
    return randomize_batchnorms(model).eval()


def _vgg_oracle(model: nn.Sequential, patterns, x, target):
    """Masks and pool switches from the real forward; weights w * p; no biases."""
    h = x
    g = x.clone().requires_grad_()  # the piecewise-linear network, fixed at x
    linear = g
    for name, m in model.named_children():
        if isinstance(m, nn.Conv2d):
            h = m(h)
            w = m.weight * patterns[name]
            g = F.conv2d(g, w, None, m.stride, m.padding, m.dilation, m.groups)
        elif isinstance(m, nn.BatchNorm2d):
            h = m(h)
            scale = m.weight / torch.sqrt(m.running_var + m.eps)
            g = g * scale[:, None, None]
        elif isinstance(m, nn.ReLU):
            gate = h > 0
            h = F.relu(h)
            g = g * gate
        elif isinstance(m, nn.MaxPool2d):
            h, switches = F.max_pool2d(h, m.kernel_size, return_indices=True)
            g = g.flatten(2).gather(2, switches.flatten(2)).view_as(switches)
        elif isinstance(m, nn.Linear):
            h = m(h)
            g = F.linear(g, m.weight * patterns[name])
        else:
            h, g = m(h), m(g)
    rows = torch.arange(len(x))
    (gradient,) = torch.autograd.grad(g[rows, target].sum(), linear)
    return h[rows, target].detach()[:, None, None, None] * gradient


def test_pattern_attribution_matches_piecewise_linear_oracle_vgg_like():
    model = _vgg_like()
    patterns = _random_patterns(model)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 3, 1])
    expected = _vgg_oracle(model, patterns, x, target)
    with model_unchanged(model):
        got = PatternAttribution(model, patterns).attribute(x, target=target)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    ones = _vgg_oracle(model, _ones(model), x, target)
    assert not torch.allclose(ones, expected)  # the patterns do matter


class _ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.shortcut = nn.Conv2d(3, 4, 1, stride=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = self.relu(out)
        return self.fc(out.mean((2, 3)))


def _residual_oracle(model: _ResidualNet, patterns, x, target):
    def bn_scale(bn):
        return (bn.weight / torch.sqrt(bn.running_var + bn.eps))[:, None, None]

    def conv(g, name):
        m = getattr(model, name)
        return F.conv2d(g, m.weight * patterns[name], None, m.stride, m.padding)

    y = model(x).detach()
    a1 = model.bn1(model.conv1(x))
    a2 = model.bn2(model.conv2(F.relu(a1))) + model.shortcut(x)
    lin = x.clone().requires_grad_()
    g = conv(lin, "conv1") * bn_scale(model.bn1) * (a1 > 0)
    g = conv(g, "conv2") * bn_scale(model.bn2) + conv(lin, "shortcut")
    g = (g * (a2 > 0)).mean((2, 3))
    g = F.linear(g, model.fc.weight * patterns["fc"])
    rows = torch.arange(len(x))
    (gradient,) = torch.autograd.grad(g[rows, target].sum(), lin)
    return y[rows, target][:, None, None, None] * gradient


def test_pattern_attribution_matches_piecewise_linear_oracle_residual():
    torch.manual_seed(2)
    model = randomize_batchnorms(_ResidualNet().double()).eval()
    patterns = _random_patterns(model, seed=3)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([2, 0])
    expected = _residual_oracle(model, patterns, x, target)
    with model_unchanged(model):
        got = PatternAttribution(model, patterns).attribute(x, target=target)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_pgig_matches_a_hand_loop_over_pattern_attribution_gradients():
    """PGIG = (x - x') * sum_k w_k d(p)f(x' + a_k (x - x')) / d(p)x."""
    model = _vgg_like()
    patterns = _random_patterns(model, seed=4)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    baseline = torch.zeros_like(x)
    target = torch.tensor([1, 2])
    n = 4
    alphas = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    total = torch.zeros_like(x)
    for alpha in alphas:
        point = (baseline + alpha * (x - baseline)).requires_grad_()
        with pattern_backward(model, patterns):
            out = model(point)
            (grad,) = torch.autograd.grad(out[torch.arange(2), target].sum(), point)
        total += grad / n
    got = PatternGuidedIntegratedGradients(model, patterns).attribute(
        x, baseline, target=target, n_steps=n, method="riemann_middle"
    )
    torch.testing.assert_close(got, (x - baseline) * total)


# ------------------------------------------------ the paper's stress test


def test_stress_test_of_section_3():
    generator = torch.Generator().manual_seed(0)
    z = torch.arange(-2.0, 2.0, 0.01, dtype=torch.float64)
    eps = 0.3 * torch.randn(len(z), generator=generator, dtype=torch.float64)
    x = torch.stack([z + eps, eps], 1)  # signal (1, 0) z + distractor (1, 1) eps
    model = stress_test_model()
    torch.testing.assert_close(model(x)[:, 0], 1 - F.relu(1 - z))

    patterns = fit_patterns(model, x, show_progress=False)
    torch.testing.assert_close(
        patterns["0"],
        torch.tensor([[-1.0, 0.0]], dtype=torch.float64),
        atol=0.05,
        rtol=0,
    )
    torch.testing.assert_close(patterns["2"], -torch.ones(1, 1, dtype=torch.float64))

    plateau, below = z > 1.01, z < 0.99
    ig = IntegratedGradients(model).attribute(x, target=0, n_steps=32)
    torch.testing.assert_close(ig[below, 1], -eps[below])  # IG credits the noise

    pa = PatternAttribution(model, patterns).attribute(x, target=0)
    assert torch.equal(pa[plateau], torch.zeros_like(pa[plateau]))  # PA starves
    assert pa[below, 1].abs().max() < 0.05 * pa[below, 0].abs().max()

    pgig = PatternGuidedIntegratedGradients(model, patterns).attribute(
        x, target=0, n_steps=32
    )
    assert pgig[:, 1].abs().max() < 0.1 * ig[:, 1].abs().max()  # noise bypassed
    assert (pgig[plateau, 0] > 0.5).all()  # the signal still counts on the plateau

    # On the path a x the gate is open while a < 1 / z: PGIG_1 = x_1 (w * p)_1 / z.
    # (Captum backpropagates one root per row, so keep the rows few.)
    on_plateau = x[plateau][::3]
    pgig = PatternGuidedIntegratedGradients(model, patterns).attribute(
        on_plateau, target=0, n_steps=64, method="riemann_middle"
    )
    backward_weight = (model[0].weight[0, 0] * patterns["0"][0, 0]) * (
        model[2].weight[0, 0] * patterns["2"][0, 0]
    )
    expected = on_plateau[:, 0] * backward_weight.detach() / z[plateau][::3]
    torch.testing.assert_close(pgig[:, 0], expected, atol=0.03, rtol=0)


# ------------------------------------------------ torchvision networks


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18"])
def test_torchvision_networks_fit_attribute_and_stay_unchanged(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    randomize_batchnorms(model)
    data = torch.randn(6, 3, 32, 32)
    x = torch.randn(2, 3, 32, 32)
    layers = None
    if name == "vgg11_bn":  # skip the 25088 x 4096 layer: its statistics are 1.6 GB
        layers = [
            n
            for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and n != "classifier.0"
        ]
    with model_unchanged(model):
        patterns = fit_patterns(model, data, layers=layers, show_progress=False)
        pa = PatternAttribution(model, patterns).attribute(x, target=3)
        pgig = PatternGuidedIntegratedGradients(model, patterns).attribute(
            x, target=torch.tensor([1, 4]), n_steps=3, internal_batch_size=3
        )
    assert pa.shape == pgig.shape == x.shape
    assert torch.isfinite(pa).all() and torch.isfinite(pgig).all()
    assert pgig.abs().sum() > 0
    if name == "vgg11_bn":
        return
    with model_unchanged(model):
        ig = IntegratedGradients(model).attribute(x, target=1, n_steps=2)
        ones = PatternGuidedIntegratedGradients(model, _ones(model)).attribute(
            x, target=1, n_steps=2
        )
    torch.testing.assert_close(ones, ig, rtol=1e-5, atol=1e-7)


# ------------------------------------------------ robustness and errors


def test_multi_input_model_and_additional_forward_args():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(2, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x1, x2, scale):
            return self.head(torch.relu(self.a(x1) + self.b(x2))) * scale

    torch.manual_seed(3)
    model = TwoInputs().double()
    x = (torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64))
    ig = IntegratedGradients(model).attribute(
        x, target=1, additional_forward_args=(2.0,), n_steps=5
    )
    got = PatternGuidedIntegratedGradients(model, _ones(model)).attribute(
        x, target=1, additional_forward_args=(2.0,), n_steps=5
    )
    assert isinstance(got, tuple) and len(got) == 2
    for a, b in zip(got, ig, strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-5)  # float32 weights
    pa = PatternAttribution(model, _random_patterns(model)).attribute(
        x, target=0, additional_forward_args=(2.0,)
    )
    assert [t.shape for t in pa] == [t.shape for t in x]


def test_hooks_removed_when_the_block_raises():
    model = small_cnn()
    with model_unchanged(model):
        with pytest.raises(KeyError):
            with pattern_backward(model, _random_patterns(model)):
                model(torch.randn(1, 3, 8, 8))
                raise KeyError("midway")


@pytest.mark.parametrize("fail_at", [1, 3])
def test_pgig_leaves_the_model_as_found_when_forward_fails_midway(fail_at):
    inner = small_cnn()
    patterns = _random_patterns(inner, prefix="model.")
    x = torch.randn(2, 3, 8, 8)
    with model_unchanged(inner):
        with pytest.raises(RuntimeError, match="on purpose"):
            PatternGuidedIntegratedGradients(
                FailingForward(inner, fail_at), patterns
            ).attribute(x, target=0, n_steps=4, internal_batch_size=2)


def test_pattern_attribution_leaves_the_model_as_found_when_forward_fails():
    inner = small_cnn()
    patterns = _random_patterns(inner, prefix="model.")
    with model_unchanged(inner):
        with pytest.raises(RuntimeError, match="on purpose"):
            PatternAttribution(FailingForward(inner, 1), patterns).attribute(
                torch.randn(2, 3, 8, 8), target=0
            )


def test_bad_arguments():
    model = small_cnn()
    patterns = _random_patterns(model)
    x = torch.randn(2, 3, 8, 8)
    pgig = PatternGuidedIntegratedGradients(model, patterns)
    pa = PatternAttribution(model, patterns)
    with pytest.raises(ValueError, match="out of range"):
        pgig.attribute(x, target=9)
    with pytest.raises(ValueError, match="out of range"):
        pa.attribute(x, target=-7)
    with pytest.raises(ValueError, match="NaN"):
        pa.attribute(x.clone().fill_(float("nan")), target=0)
    with pytest.raises(ValueError, match="n_steps"):
        pgig.attribute(x, target=0, n_steps=0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        pgig.attribute(x, target=0, internal_batch_size=0)
    with pytest.raises(ValueError, match="do not match"):
        PatternAttribution(model, {"0": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="no such module"):
        PatternGuidedIntegratedGradients(model, {"missing": torch.ones(2, 2)})
    with pytest.raises(TypeError, match="nn.Module"):
        PatternAttribution(lambda t: t, patterns)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="patterns"):
        PatternAttribution(model, [1, 2])  # type: ignore[arg-type]


# ------------------------------------------------ the authors' probability weighting


def _mlp_and_patterns() -> tuple[nn.Module, Patterns]:
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4)).double()
    return model, _random_patterns(model, seed=3)


def _patterned_probability_gradient(model, patterns, z, target):
    """``p_t(z) * d(p) p_t / d(p) z`` by hand: softmax, then ``(w * p)^T``."""
    w1 = model[0].weight * patterns["0"]
    w2 = model[2].weight * patterns["2"]
    hidden = model[0](z)
    p = torch.softmax(model(z), dim=1)
    p_t = p[torch.arange(len(z)), target]
    one_hot = F.one_hot(target, 4).double()
    grad = p_t[:, None] * (one_hot - p)  # d p_t / d logits
    grad = (grad @ w2) * (hidden > 0)
    return (p_t[:, None] * (grad @ w1)).detach()


def test_pattern_attribution_probability_weighted_matches_hand_computation():
    model, patterns = _mlp_and_patterns()
    x = torch.randn(3, 5, dtype=torch.float64)
    target = torch.tensor([0, 3, 1])
    with model_unchanged(model):
        got = PatternAttribution(model, patterns).attribute(
            x, target=target, probability_weighted=True
        )
    expected = _patterned_probability_gradient(model, patterns, x, target)
    torch.testing.assert_close(got, expected, atol=1e-14, rtol=1e-12)
    # the default is the paper's: started from the output, not the probability
    default = PatternAttribution(model, patterns).attribute(x, target=target)
    assert not torch.allclose(default, got)


def test_pgig_probability_weighted_matches_hand_computation():
    model, patterns = _mlp_and_patterns()
    x = torch.randn(2, 5, dtype=torch.float64)
    baseline = torch.randn(2, 5, dtype=torch.float64)
    target = torch.tensor([2, 1])
    n = 7
    with model_unchanged(model):
        got = PatternGuidedIntegratedGradients(model, patterns).attribute(
            x,
            baseline,
            target=target,
            n_steps=n,
            method="riemann_middle",
            probability_weighted=True,
        )
    expected = (
        sum(
            _patterned_probability_gradient(
                model, patterns, baseline + (k + 0.5) / n * (x - baseline), target
            )
            for k in range(n)
        )
        * (x - baseline)
        / n
    )
    torch.testing.assert_close(got, expected, atol=1e-14, rtol=1e-12)
