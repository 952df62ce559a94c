"""Pattern statistics and backward on the layers of EfficientNet-style networks.

Convolutions that pad inside their own ``forward`` (TensorFlow's "same"), gates
other than the ReLU (ReLU6, hardtanh, clamp), depthwise convolutions, and the
precision of statistics taken in float32.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_baselines.attr.pattern_graph import RELU, Gate, trace_layer_roles
from captum_baselines.attr.pattern_layers import (
    ConvPaddings,
    batchnorm_scale,
    infer_padding,
    input_gradient,
)
from captum_baselines.attr.patterns import fit_patterns, layer_statistics
from captum_baselines.attr.pgig import PatternAttribution
from tests.helpers import model_unchanged, randomize_batchnorms

torch.set_flush_denormal(True)


class SameConv2d(nn.Conv2d):
    """Pads like TensorFlow's "same" inside ``forward``, as EfficientNet ports do."""

    def forward(self, x):
        pads = []
        for n, k, s, d in zip(
            x.shape[-2:], self.kernel_size, self.stride, self.dilation
        ):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(
            x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


# An 8x7 input: the stem pads rows (0, 1) and columns (1, 1); the depthwise conv
# then pads (0, 1) on both axes of its 4x4 input.
STEM_PADDING = ((0, 1), (1, 1))
DEPTHWISE_PADDING = ((0, 1), (0, 1))


def _same_padded_net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        SameConv2d(3, 6, 3, stride=2),
        nn.BatchNorm2d(6),
        nn.ReLU6(),
        SameConv2d(6, 6, 3, stride=2, groups=6),  # depthwise
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 3),
    ).double()
    randomize_batchnorms(model)
    return model.eval()


def _explicitly_padded_twin(model: nn.Sequential) -> nn.Sequential:
    """The same function with the padding as modules and stock convolutions."""
    stem = nn.Conv2d(3, 6, 3, stride=2).double()
    depthwise = nn.Conv2d(6, 6, 3, stride=2, groups=6).double()
    stem.load_state_dict(model[0].state_dict())
    depthwise.load_state_dict(model[3].state_dict())
    return nn.Sequential(
        nn.ZeroPad2d(_pad_argument(STEM_PADDING)),
        stem,
        model[1],
        model[2],
        nn.ZeroPad2d(_pad_argument(DEPTHWISE_PADDING)),
        depthwise,
        model[4],
        model[5],
        model[6],
    ).eval()


def _pad_argument(padding):
    (top, bottom), (left, right) = padding
    return [left, right, top, bottom]


def _data(n: int = 60) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return 2 * torch.randn(n, 3, 8, 7, generator=generator, dtype=torch.float64)


def _hand_patterns(conv: nn.Conv2d, x_padded, y, regime, weight):
    """A+ by hand: every moment over ``regime``, patches unfolded per group."""
    n, units = y.shape[:2]
    groups = conv.groups
    patches = F.unfold(x_padded, conv.kernel_size, conv.dilation, 0, conv.stride)
    patches = patches.reshape(n, groups, -1, patches.shape[-1])
    patches = patches.repeat_interleave(units // groups, dim=1)  # (N, J, patch, P)
    patches = patches.permute(1, 0, 3, 2).reshape(units, -1, patches.shape[2])
    y = y.permute(1, 0, 2, 3).reshape(units, -1)
    regime = regime.permute(1, 0, 2, 3).reshape(units, -1)
    pattern = torch.zeros(units, patches.shape[-1], dtype=torch.float64)
    for j in range(units):
        x_j, y_j = patches[j][regime[j]], y[j][regime[j]]
        cov = (x_j * y_j[:, None]).mean(0) - x_j.mean(0) * y_j.mean()
        pattern[j] = cov / (weight[j].flatten() @ cov)
    return pattern.reshape(weight.shape)


def test_padding_is_inferred_and_verified_on_the_module():
    model = _same_padded_net()
    paddings = ConvPaddings()
    x = _data(2)
    assert paddings("0", model[0], x) == STEM_PADDING
    depthwise_input = torch.zeros(2, 6, 4, 4, dtype=torch.float64)
    assert paddings("3", model[3], depthwise_input) == DEPTHWISE_PADDING
    stock = nn.Conv2d(3, 2, 4, padding="same")
    assert paddings("stock", stock, torch.zeros(1, 3, 6, 6)) == ((1, 2), (1, 2))
    expected = stock(torch.ones(1, 3, 6, 6))
    padded = F.pad(torch.ones(1, 3, 6, 6), [1, 2, 1, 2])
    torch.testing.assert_close(
        F.conv2d(padded, stock.weight, stock.bias), expected, rtol=1e-6, atol=1e-6
    )


def test_a_forward_that_is_no_zero_padded_convolution_is_refused_by_name():
    class ReflectSame(SameConv2d):
        def forward(self, x):
            x = F.pad(x, [1, 1, 1, 1], mode="reflect")
            return F.conv2d(x, self.weight, self.bias, self.stride)

    model = nn.Sequential(ReflectSame(3, 4, 3), nn.ReLU(), nn.Flatten()).double()
    with pytest.raises(ValueError, match=r"layer `0` \(ReflectSame\).*not supported"):
        infer_padding("0", model[0], _data(1))
    with model_unchanged(model):
        with pytest.raises(ValueError, match="`0`"):
            fit_patterns(model, _data(4), show_progress=False)


def test_patterns_of_same_padded_convs_equal_a_hand_computation():
    model = _same_padded_net()
    twin = _explicitly_padded_twin(model)
    x = _data()
    torch.testing.assert_close(model(x), twin(x), rtol=0, atol=1e-12)
    with model_unchanged(model):
        patterns = fit_patterns(model, x, show_progress=False, batch_size=25)
    roles = trace_layer_roles(model, x[:1], ["0", "3", "6"])
    assert roles["0"].batchnorm == "1" and roles["0"].gate == Gate(0.0, 6.0)
    assert roles["3"].gate == RELU and roles["6"].gate is None

    with torch.no_grad():
        stem_input = twin[0](x)
        stem_output = twin[2](twin[1](stem_input))  # after the folded BatchNorm
        depthwise_input = twin[4](twin[3](stem_output))
        depthwise_output = twin[5](depthwise_input)
        hidden = twin[7](twin[6](depthwise_output))
    scale, _ = batchnorm_scale(model[1])
    stem_weight = model[0].weight.detach() * scale[:, None, None, None]
    expected = _hand_patterns(
        twin[1],
        stem_input,
        stem_output,
        (stem_output > 0) & (stem_output < 6),
        stem_weight,
    )
    torch.testing.assert_close(patterns["0"], expected, rtol=1e-9, atol=1e-12)
    expected = _hand_patterns(
        twin[5],
        depthwise_input,
        depthwise_output,
        depthwise_output > 0,
        model[3].weight.detach(),
    )
    torch.testing.assert_close(patterns["3"], expected, rtol=1e-9, atol=1e-12)
    # The last layer: the linear estimator, every moment over every sample.
    with torch.no_grad():
        output = model(x)
    cov = (hidden[:, None, :] * output[:, :, None]).mean(0) - hidden.mean(0) * (
        output.mean(0)[:, None]
    )
    expected = cov / (model[6].weight.detach() * cov).sum(1, keepdim=True)
    torch.testing.assert_close(patterns["6"], expected, rtol=1e-9, atol=1e-12)


def test_pattern_attribution_through_same_padded_convs_equals_a_hand_computation():
    model = _same_padded_net()
    twin = _explicitly_padded_twin(model)
    patterns = fit_patterns(model, _data(), show_progress=False)
    x = _data(4)[:, :, :, :]
    target = torch.tensor([0, 2, 1, 2])
    with model_unchanged(model):
        attribution = PatternAttribution(model, patterns).attribute(x, target=target)

    # The pattern backward by hand: the network linearized at x (every gate and
    # the BatchNorm's scale fixed), weights w * p, padding explicit, no biases.
    with torch.no_grad():
        stem = twin[2](twin[1](twin[0](x)))
        gate1 = ((stem > 0) & (stem < 6)).double()
        gate2 = (twin[5](twin[4](twin[3](stem))) > 0).double()
        output = model(x)
    scale, _ = batchnorm_scale(model[1])
    probe = x.clone().requires_grad_()
    h = F.conv2d(
        F.pad(probe, _pad_argument(STEM_PADDING)),
        model[0].weight * patterns["0"],
        stride=2,
    )
    h = gate1 * scale[:, None, None] * h
    h = F.conv2d(
        F.pad(h, _pad_argument(DEPTHWISE_PADDING)),
        model[3].weight * patterns["3"],
        stride=2,
        groups=6,
    )
    h = (gate2 * h).flatten(1) @ (model[6].weight * patterns["6"]).T
    selected = h.gather(1, target[:, None]).sum()
    (gradient,) = torch.autograd.grad(selected, probe)
    expected = output.gather(1, target[:, None])[:, :, None, None] * gradient
    torch.testing.assert_close(attribution, expected.detach(), rtol=1e-10, atol=1e-12)


def test_input_gradient_with_asymmetric_padding_is_the_adjoint_of_the_conv():
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 6, 3, stride=2, groups=2).double()
    padding = ((0, 1), (2, 1))
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(F.pad(x, [2, 1, 0, 1]), conv.weight, stride=2, groups=2)
    grad_output = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, grad_output)
    got = input_gradient(conv, conv.weight, grad_output, x.shape, padding)
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------- gates


@pytest.mark.parametrize(
    "activation, gate",
    [
        (nn.ReLU(inplace=True), RELU),
        (nn.ReLU6(), Gate(0.0, 6.0)),
        (nn.ReLU6(inplace=True), Gate(0.0, 6.0)),
        (nn.Hardtanh(-1.0, 2.0), Gate(-1.0, 2.0)),
        (lambda y: y.clamp(0.5, 3.0), Gate(0.5, 3.0)),
        (lambda y: torch.clamp(y, max=3.0), Gate(float("-inf"), 3.0)),
        (lambda y: torch.clamp_min(y, 0.25), Gate(0.25, float("inf"))),
        (lambda y: F.threshold(y, 0.1, 0.0), Gate(0.1, float("inf"))),
        (nn.Hardsigmoid(), Gate(-3.0, 3.0)),
        (nn.SiLU(), None),
        (nn.LeakyReLU(), None),
        (lambda y: torch.relu(y) + F.relu6(y), None),  # two different gates
        (lambda y: torch.relu(y) * torch.relu(y), RELU),  # one gate used twice
    ],
)
def test_roles_recognise_every_gate(activation, gate):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return activation(self.fc(x)).sum(1, keepdim=True)

    roles = trace_layer_roles(Net(), torch.randn(2, 3), ["fc"])
    assert roles["fc"].gate == gate


def test_relu6_statistics_use_the_open_interval():
    torch.manual_seed(3)
    linear = nn.Linear(3, 2).double()
    x = 4 * torch.randn(400, 3, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.5, -0.5], [-1.0, 1.0, 0.25]]))
        linear.bias.fill_(2.0)
        y = linear(x)
        stats = layer_statistics(linear, x, y, "positive", gate=Gate(0.0, 6.0))
        pattern = stats.pattern(linear.weight)
    inside = (y > 0) & (y < 6)
    assert ((y >= 6).sum(0) > 50).all() and ((y <= 0).sum(0) > 50).all()
    torch.testing.assert_close(stats.count_regime, inside.sum(0).double())
    for j in range(2):
        x_j, y_j = x[inside[:, j]], y[inside[:, j], j]
        cov = (x_j * y_j[:, None]).mean(0) - x_j.mean(0) * y_j.mean()
        expected = cov / (linear.weight[j] @ cov)
        torch.testing.assert_close(pattern[j], expected.detach(), rtol=1e-12, atol=0)


def test_relu6_layer_gets_the_interval_estimator_in_fit_patterns():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU6(), nn.Linear(4, 1)).double()
    x = 5 * torch.randn(300, 3, dtype=torch.float64)
    patterns = fit_patterns(model, x, show_progress=False)
    with torch.no_grad():
        y = model[0](x)
        stats = layer_statistics(model[0], x, y, "positive", gate=Gate(0.0, 6.0))
    torch.testing.assert_close(patterns["0"], stats.pattern(model[0].weight))


# ---------------------------------------------------------------- depthwise


@pytest.mark.parametrize("multiplier", [1, 3])
def test_depthwise_statistics_equal_the_unfold_oracle(multiplier):
    torch.manual_seed(5)
    conv = nn.Conv2d(4, 4 * multiplier, 3, stride=2, padding=1, groups=4).double()
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64) + 0.5
    with torch.no_grad():
        y = conv(x)
        for estimator in ("positive", "linear"):
            stats = layer_statistics(conv, x, y, estimator)
            regime = y > 0 if estimator == "positive" else torch.ones_like(y).bool()
            padded = F.pad(x, [1, 1, 1, 1])
            expected = _hand_patterns(conv, padded, y, regime, conv.weight)
            torch.testing.assert_close(
                stats.pattern(conv.weight), expected, rtol=1e-9, atol=1e-12
            )


# ---------------------------------------------------------------- precision


def test_float32_statistics_agree_with_a_float64_oracle():
    """Products in float32, sums in float64, outputs centered: the float32 model's
    patterns equal those of its float64 copy to 1e-4 (relative to each unit's
    pattern), with inputs whose mean is ten times their spread."""
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 3),
    )
    randomize_batchnorms(model).eval()
    with torch.no_grad():
        model[0].bias.fill_(-30.0)  # keeps the first layer's regime partial
    x = 10 + torch.randn(48, 3, 6, 6)
    single = fit_patterns(model, x, show_progress=False, batch_size=16)
    double = fit_patterns(model.double(), x.double(), show_progress=False)
    model.float()
    for name, pattern in double.items():
        scale = pattern.flatten(1).norm(dim=1).clamp_min(1e-12)
        error = (single[name].double() - pattern).flatten(1).norm(dim=1) / scale
        assert error.max() < 1e-4, (name, error.max())


def test_centering_is_what_keeps_float32_products_accurate():
    """The last layer of a network with large activations: statistics in float32
    about the first-batch means agree with float64; about zero they do not."""
    torch.manual_seed(7)
    linear = nn.Linear(16, 3)
    x = 20 + torch.rand(4096, 16)
    with torch.no_grad():
        y = linear(x)
        y64 = linear.double()(x.double())
        linear.float()
        oracle = layer_statistics(linear, x.double(), y64, "linear")
        expected = oracle.pattern(linear.weight.double())
        centered = layer_statistics(linear, x, y, "linear").pattern(linear.weight)
        zero = torch.zeros(3, dtype=torch.float64)
        uncentered = layer_statistics(linear, x, y, "linear", center=zero)
        uncentered = uncentered.pattern(linear.weight)

    def error(pattern):
        return float(((pattern - expected).norm(dim=1) / expected.norm(dim=1)).max())

    assert error(centered) < 1e-5
    assert error(uncentered) > 1e-4


def test_unfolded_products_equal_the_weight_gradient(monkeypatch):
    """Small outputs take the products as a matrix product of unfolded patches,
    in chunks of examples; they equal torch's weight gradient."""
    import captum_baselines.attr.pattern_layers as layers

    torch.manual_seed(8)
    conv = nn.Conv2d(5, 4, 3, stride=2, padding=1, dilation=2).double()
    x = torch.randn(7, 5, 9, 9, dtype=torch.float64)
    signal = torch.randn(7, 10, 4, 4, dtype=torch.float64)
    expected = torch.nn.grad.conv2d_weight(
        x, (10, 5, 3, 3), signal, stride=2, padding=1, dilation=2
    )
    assert signal[0, 0].numel() <= layers.UNFOLD_MAX_POSITIONS
    monkeypatch.setattr(layers, "UNFOLD_CHUNK_BYTES", 3 * 45 * 16 * 8)  # 3 examples
    got = layers.weight_products(conv, x, signal)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
