"""Tests of LayerRSIGradCam against hand-computed Riemann-Stieltjes sums,
Captum's Grad-CAM, and the completeness of the layer integral."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerActivation, LayerGradCam, NoiseTunnel
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.testing import assert_close

from captum_baselines.attr.layer_rsi_grad_cam import LayerRSIGradCam
from tests.helpers import FailingForward, model_unchanged, small_cnn

RULES = ("trapezoid", "left", "right")


def smooth_cnn(head: str = "linear", seed: int = 0) -> nn.Sequential:
    """Conv-Tanh-Conv(layer 2)-Softplus-pool-Linear in float64; smooth in x."""
    torch.manual_seed(seed)
    tail: list[nn.Module]
    if head == "linear":
        tail = [nn.Softplus(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)]
    elif head == "gap_linear":
        tail = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)]
    else:  # gap then a nonlinear classifier: dy/dA uniform in space, not in alpha
        tail = [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
            nn.Tanh(),
            nn.Linear(5, 3),
        ]
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 4, 3, padding=1), *tail
    )
    return model.double().eval()


def hand_integrals(
    model: nn.Sequential,
    layer_index: int,
    x: Tensor,
    baseline: Tensor,
    targets: list[int],
    n_steps: int,
    rule: str,
    relu_gradients: bool = False,
) -> Tensor:
    """sum_l G(l) (A(alpha_l) - A(alpha_{l-1})) by a plain loop, per example."""
    head, tail = model[: layer_index + 1], model[layer_index + 1 :]
    out = []
    for i, c in enumerate(targets):
        acts, grads = [], []
        for step in range(n_steps + 1):
            point = baseline[i : i + 1] + (step / n_steps) * (
                x[i : i + 1] - baseline[i : i + 1]
            )
            a = head(point).detach().requires_grad_()
            (g,) = torch.autograd.grad(tail(a)[0, c], a)
            acts.append(a.detach())
            grads.append(F.relu(g) if relu_gradients else g)
        total = torch.zeros_like(acts[0])
        for step in range(1, n_steps + 1):
            height = {
                "right": grads[step],
                "left": grads[step - 1],
                "trapezoid": (grads[step] + grads[step - 1]) / 2,
            }[rule]
            total += height * (acts[step] - acts[step - 1])
        out.append(total)
    return torch.cat(out)


@pytest.fixture
def data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64)
    baseline = 0.1 * torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64)
    return x, baseline


@pytest.mark.parametrize("rule", RULES)
def test_weights_and_map_equal_hand_computed_sum(rule, data):
    x, baseline = data
    model = smooth_cnn()
    rsi = LayerRSIGradCam(model, model[2])
    targets = [0, 2]
    integrals = hand_integrals(model, 2, x, baseline, targets, 4, rule)
    weights = integrals.mean(dim=(2, 3), keepdim=True)
    got = rsi.channel_weights(
        x, baseline, target=torch.tensor(targets), n_steps=4, rule=rule
    )
    assert_close(got, weights, rtol=0, atol=1e-13)
    cam = rsi.attribute(x, baseline, target=targets, n_steps=4, rule=rule)
    expected = F.relu((weights * model[:3](x)).sum(1, keepdim=True))
    assert cam.shape == (2, 1, 6, 6)
    assert_close(cam, expected, rtol=0, atol=1e-13)


def test_gradient_relu_and_positive_units_variants(data):
    x, baseline = data
    model = smooth_cnn()
    rsi = LayerRSIGradCam(model, model[2])
    relu_grads = hand_integrals(model, 2, x, baseline, [1, 1], 3, "trapezoid", True)
    got = rsi.channel_weights(x, baseline, target=1, n_steps=3, relu_gradients=True)
    assert_close(got, relu_grads.mean(dim=(2, 3), keepdim=True), rtol=0, atol=1e-13)

    plain = hand_integrals(model, 2, x, baseline, [1, 1], 3, "trapezoid")
    a, a0 = model[:3](x), model[:3](baseline)
    guided = torch.where((a > 0) & (a - a0 > 0) & (plain > 0), plain, 0.0)
    got = rsi.channel_weights(
        x, baseline, target=1, n_steps=3, positive_units_only=True
    )
    assert_close(got, guided.mean(dim=(2, 3), keepdim=True), rtol=0, atol=1e-13)
    assert bool((got >= 0).all())


def test_one_step_right_rule_is_grad_cam_times_mean_increment(data):
    """With n_steps=1 and rule="right", w_k = 1/Z sum_ij dy/dA_ij(x) dA_ij. Behind a
    global-average-pooling head dy/dA_k is uniform in space, so this is exactly
    Grad-CAM's weight times mean_ij(A_k(x) - A_k(x')): the RSI map is Captum's
    per-channel Grad-CAM map rescaled by each channel's mean activation change,
    even when the classifier after the pooling is nonlinear."""
    x, baseline = data
    model = smooth_cnn("gap_mlp")
    layer = model[2]
    rsi = LayerRSIGradCam(model, layer)
    cam = rsi.attribute(
        x, baseline, target=1, n_steps=1, rule="right", relu_attributions=False
    )
    grad_cam_channels = LayerGradCam(model, layer).attribute(
        x, target=1, relu_attributions=False, attr_dim_summation=False
    )
    activation = LayerActivation(model, layer)
    increment = (activation.attribute(x) - activation.attribute(baseline)).mean(
        dim=(2, 3), keepdim=True
    )
    expected = (grad_cam_channels * increment).sum(1, keepdim=True)
    assert_close(cam, expected, rtol=0, atol=1e-13)
    # the gradient changes along the path there, so other rules differ
    left = rsi.attribute(
        x, baseline, target=1, n_steps=1, rule="left", relu_attributions=False
    )
    assert not torch.allclose(left, expected)


def test_linear_head_every_rule_exact_in_one_step(data):
    x, baseline = data
    model = smooth_cnn("gap_linear")
    rsi = LayerRSIGradCam(model, model[2])
    cams = []
    for rule in RULES:
        cam, delta = rsi.attribute(
            x, baseline, target=0, n_steps=1, rule=rule, return_convergence_delta=True
        )
        assert_close(delta, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
        cams.append(cam)
    assert_close(cams[0], cams[1], rtol=0, atol=1e-13)
    assert_close(cams[0], cams[2], rtol=0, atol=1e-13)


@pytest.mark.parametrize("rule, order", [("trapezoid", 2), ("left", 1), ("right", 1)])
def test_delta_vanishes_at_the_rule_order(rule, order, data):
    x, baseline = data
    model = smooth_cnn()
    rsi = LayerRSIGradCam(model, model[2])
    deltas = []
    for n in (4, 8, 16, 32):
        _, delta = rsi.attribute(
            x,
            baseline,
            target=[0, 2],
            n_steps=n,
            rule=rule,
            return_convergence_delta=True,
        )
        assert delta.shape == (2,)
        deltas.append(delta.abs())
    for coarse, fine in zip(deltas, deltas[1:], strict=False):
        ratio = coarse / fine
        assert bool(((ratio > 0.8 * 2**order) & (ratio < 1.2 * 2**order)).all())
    y = model(x)[[0, 1], [0, 2]] - model(baseline)[[0, 1], [0, 2]]
    relative = {1: 5e-2, 2: 1e-5}[order]  # at n_steps=32
    assert bool((deltas[-1] < relative * y.abs()).all())


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 3),
    n_steps=st.integers(1, 5),
    internal_batch_size=st.integers(1, 20),
)
def test_internal_batch_size_changes_nothing(n, n_steps, internal_batch_size):
    model = small_cnn().double()
    g = torch.Generator().manual_seed(n)
    x = torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64)
    rsi = LayerRSIGradCam(model, model[4])
    kwargs = dict(target=1, n_steps=n_steps, return_convergence_delta=True)
    cam, delta = rsi.attribute(x, 0.2, **kwargs)
    chunked, chunked_delta = rsi.attribute(
        x, 0.2, internal_batch_size=internal_batch_size, **kwargs
    )
    assert_close(chunked, cam, rtol=0, atol=1e-12)
    assert_close(chunked_delta, delta, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "target", [2, torch.tensor(2), torch.tensor([0, 3, 1]), [1, 0, 3]]
)
def test_target_forms_match_one_example_at_a_time(target):
    model = small_cnn().double()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    rsi = LayerRSIGradCam(model, model[4])
    cam, delta = rsi.attribute(
        x, target=target, n_steps=3, return_convergence_delta=True
    )
    if isinstance(target, int) or (isinstance(target, Tensor) and target.numel() == 1):
        per_example = [int(target)] * 3
    else:
        per_example = [int(t) for t in target]
    for i, t in enumerate(per_example):
        one, one_delta = rsi.attribute(
            x[i : i + 1], target=t, n_steps=3, return_convergence_delta=True
        )
        assert_close(cam[i : i + 1], one, rtol=0, atol=1e-12)
        assert_close(delta[i : i + 1], one_delta, rtol=0, atol=1e-12)


def test_tuple_target_and_probability_score():
    model = small_cnn(n_classes=6).double()

    def grid_output(x: Tensor) -> Tensor:
        return model(x).reshape(-1, 2, 3)

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    by_tuple = LayerRSIGradCam(grid_output, model[4]).attribute(
        x, target=(1, 2), n_steps=3
    )
    by_index = LayerRSIGradCam(model, model[4]).attribute(x, target=5, n_steps=3)
    assert_close(by_tuple, by_index, rtol=0, atol=1e-13)

    def probabilities(x: Tensor) -> Tensor:
        return torch.softmax(model(x), dim=1)

    soft, soft_delta = LayerRSIGradCam(model, model[4]).attribute(
        x, target=1, n_steps=3, score="probability", return_convergence_delta=True
    )
    wrapped, wrapped_delta = LayerRSIGradCam(probabilities, model[4]).attribute(
        x, target=1, n_steps=3, return_convergence_delta=True
    )
    assert_close(soft, wrapped, rtol=0, atol=1e-13)
    assert_close(soft_delta, wrapped_delta, rtol=0, atol=1e-13)


class TwoInputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.mix = nn.Conv2d(4, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, image: Tensor, extra: Tensor, scale: Tensor) -> Tensor:
        features = torch.relu(self.mix(torch.cat([self.conv(image), extra], 1)))
        return self.fc(features.mean((2, 3))) * scale[:, None]


def test_multi_input_model_with_per_example_forward_args():
    model = TwoInputNet().double()
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 1, 5, 5, generator=g, dtype=torch.float64)
    extra = torch.rand(3, 1, 5, 5, generator=g, dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    rsi = LayerRSIGradCam(model, model.mix)
    cam, delta = rsi.attribute(
        (image, extra),
        baselines=(0.0, torch.zeros(1, 1, 5, 5, dtype=torch.float64)),
        target=1,
        additional_forward_args=(scale,),
        n_steps=3,
        relu_attributions=False,
        internal_batch_size=5,
        return_convergence_delta=True,
    )
    assert cam.shape == (3, 1, 5, 5)
    for i in range(3):
        one, one_delta = rsi.attribute(
            (image[i : i + 1], extra[i : i + 1]),
            target=1,
            additional_forward_args=(scale[i : i + 1],),
            n_steps=3,
            relu_attributions=False,
            return_convergence_delta=True,
        )
        assert_close(cam[i : i + 1], one, rtol=0, atol=1e-13)
        assert_close(delta[i : i + 1], one_delta, rtol=0, atol=1e-13)


def test_in_place_relu_after_or_as_the_layer():
    model = small_cnn().double()  # model[2] is ReLU(inplace=True)
    copy = small_cnn().double()
    copy[2] = nn.ReLU(inplace=False)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    kwargs = dict(target=0, n_steps=4, return_convergence_delta=True)
    after = LayerRSIGradCam(model, model[1]).attribute(x, **kwargs)
    reference = LayerRSIGradCam(copy, copy[1]).attribute(x, **kwargs)
    as_input = LayerRSIGradCam(model, model[2]).attribute(
        x, attribute_to_layer_input=True, **kwargs
    )
    for got in (after, as_input):
        assert_close(got[0], reference[0], rtol=0, atol=1e-13)
        assert_close(got[1], reference[1], rtol=0, atol=1e-13)


def test_model_left_as_found_also_on_error():
    model = small_cnn()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[4].bias.requires_grad_(False)
    model.train()
    model[1].eval()
    x = torch.rand(2, 3, 8, 8)
    with model_unchanged(model):
        LayerRSIGradCam(model, model[4]).attribute(
            x, target=1, n_steps=3, return_convergence_delta=True
        )
    failing = FailingForward(model, fail_at=3)
    with model_unchanged(failing), model_unchanged(model):
        with pytest.raises(RuntimeError, match="on purpose"):
            LayerRSIGradCam(failing, model[4]).attribute(
                x, target=1, n_steps=5, internal_batch_size=2
            )


def test_noise_tunnel_and_progress_bar(capsys):
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    rsi = LayerRSIGradCam(model, model[4])
    smooth = NoiseTunnel(rsi).attribute(
        x, nt_samples=2, stdevs=0.1, target=0, n_steps=2
    )
    assert smooth.shape == (2, 1, 4, 4)
    rsi.attribute(x, target=0, n_steps=2, internal_batch_size=2, show_progress=True)
    assert "RSI-Grad-CAM" in capsys.readouterr().err


def _vgg11_small_head() -> nn.Module:
    """torchvision's VGG-11 with its 25088x4096 classifier (100M parameters, seconds
    to initialize) swapped for a small head; the convolutional part is VGG-11's."""
    import torchvision

    vgg = torchvision.models.vgg
    return nn.Sequential(
        vgg.make_layers(vgg.cfgs["A"]),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 5),
    )


@pytest.mark.parametrize(
    "arch, layer_name", [("resnet18", "layer4"), ("vgg11", "0.18")]
)
def test_torchvision_models_small_inputs(arch, layer_name):
    import torchvision

    torch.manual_seed(0)
    if arch == "vgg11":
        model = _vgg11_small_head().eval()
    else:
        model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    layer = model.get_submodule(layer_name)
    x = torch.rand(2, 3, 32, 32)
    with model_unchanged(model):
        cam, delta = LayerRSIGradCam(model, layer).attribute(
            x,
            target=[0, 4],
            n_steps=4,
            internal_batch_size=4,
            return_convergence_delta=True,
        )
    h = 1 if arch == "resnet18" else 2
    assert cam.shape == (2, 1, h, h)
    assert bool(torch.isfinite(cam).all()) and bool((cam >= 0).all())
    assert delta.shape == (2,) and bool(torch.isfinite(delta).all())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(rule="midpoint"), ValueError, "rule"),
        (dict(score="probits"), ValueError, "score"),
        (dict(n_steps=0), ValueError, "n_steps"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
        (dict(target=7), ValueError, "target"),
        (dict(target=None), ValueError, "target"),
        (dict(target=[0]), ValueError, "target"),
        (dict(baselines=torch.zeros(2, 3, 4, 4)), ValueError, "baselines"),
        (dict(baselines="black"), TypeError, "baselines"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8)
    args = dict(target=0, n_steps=2)
    args.update(kwargs)
    with model_unchanged(model), pytest.raises(error, match=match):
        LayerRSIGradCam(model, model[4]).attribute(x, **args)


def test_bad_inputs_are_named():
    model = small_cnn()
    rsi = LayerRSIGradCam(model, model[4])
    x = torch.rand(2, 3, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs"):
        rsi.attribute(x, target=0)
    with pytest.raises(TypeError, match="inputs"):
        rsi.attribute(torch.ones(2, 3, 8, 8, dtype=torch.long), target=0)
    with pytest.raises(ValueError, match="baselines"):
        rsi.attribute(torch.rand(2, 3, 8, 8), baselines=float("inf"), target=0)
