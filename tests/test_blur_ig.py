"""Blur Integrated Gradients against the authors' code (PAIR's ``saliency``)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import captum_baselines as cb
from captum_baselines._engine.targets import TargetError
from captum_baselines.attr.blur_ig import BlurIntegratedGradients, blur_sigmas

from .helpers import FailingForward, model_unchanged, small_cnn

pytest.importorskip("saliency", reason="the reference: pip install saliency==0.2.1")
from . import saliency_reference as reference  # noqa: E402


def smooth_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Softplus(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 4),
    ).double()


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.Tanh(), nn.Linear(16, 4)
    ).double()


MODELS = {"cnn": smooth_cnn, "mlp": mlp}
X = torch.rand(
    2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
)
TARGETS = [1, 3]


def f(model: nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[torch.arange(len(x)), targets]


def assert_relative(ours: torch.Tensor, theirs: torch.Tensor, rtol: float) -> None:
    error = float((ours - theirs).abs().max() / theirs.abs().max())
    assert error <= rtol, f"max relative difference {error:.2e}"


SETTINGS = [
    {},  # the reference's defaults: max_sigma=50, steps=100, grad_step=0.01
    {"max_sigma": 10.0, "n_steps": 20, "grad_step": 0.05},
    {"max_sigma": 30.0, "n_steps": 40, "grad_step": 0.002, "sqrt": True},
]


@pytest.mark.parametrize("kwargs", SETTINGS, ids=["defaults", "coarse", "sqrt"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_equals_saliency_blur_ig(model_name, kwargs):
    model = MODELS[model_name]()
    ours = BlurIntegratedGradients(model).attribute(X, target=TARGETS, **kwargs)
    theirs = reference.blur_ig(model, X, TARGETS, **kwargs)
    assert_relative(ours, theirs, 1e-6)


@settings(max_examples=15, deadline=None)
@given(
    max_sigma=st.floats(0.1, 20.0, allow_subnormal=False),
    n_steps=st.integers(1, 8),
    grad_step=st.floats(1e-3, 1.0, allow_subnormal=False),
    sqrt=st.booleans(),
)
def test_equals_saliency_blur_ig_for_any_setting(max_sigma, n_steps, grad_step, sqrt):
    model = mlp()
    kwargs = dict(max_sigma=max_sigma, n_steps=n_steps, grad_step=grad_step, sqrt=sqrt)
    ours = BlurIntegratedGradients(model).attribute(X[:1], target=1, **kwargs)
    theirs = reference.blur_ig(model, X[:1], [1], **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sqrt", [False, True])
def test_sums_to_the_output_change_from_the_blurred_input_within_its_delta(sqrt):
    model = mlp()
    blur_ig = BlurIntegratedGradients(model)
    coarse, coarse_delta = blur_ig.attribute(
        X,
        target=TARGETS,
        max_sigma=20.0,
        n_steps=10,
        sqrt=sqrt,
        return_convergence_delta=True,
    )
    fine, fine_delta = blur_ig.attribute(
        X,
        target=TARGETS,
        max_sigma=20.0,
        n_steps=400,
        grad_step=1e-3,
        sqrt=sqrt,
        return_convergence_delta=True,
    )
    start = max(blur_sigmas(20.0, 400, sqrt))  # sqrt: the variance goes to 20
    assert start == pytest.approx(20.0**0.5 if sqrt else 20.0)
    blurred = cb.baselines.blur(X, start, mode="constant")
    gap = f(model, X, TARGETS) - f(model, blurred, TARGETS)
    for attr, delta in ((coarse, coarse_delta), (fine, fine_delta)):
        torch.testing.assert_close(attr.sum((1, 2, 3)) - gap, delta, rtol=0, atol=1e-12)
    # the Riemann sum converges, to a floor of about 0.1% here: the kernel is cut
    # at 4 sigma, so its radius grows by whole pixels and L(x, sigma) jumps a little
    assert bool((fine_delta.abs() < 0.02 * gap.abs()).all())
    assert bool((fine_delta.abs() < coarse_delta.abs()).all())


def test_batched_equals_one_at_a_time():
    model = smooth_cnn()
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    targets = [0, 3, 1, 2, 1]
    kwargs = dict(max_sigma=6.0, n_steps=9, return_convergence_delta=True)
    # 7 rows per pass: chunks straddle the scales, which are ordered scale-major
    batched, delta = BlurIntegratedGradients(model).attribute(
        x, target=torch.tensor(targets), internal_batch_size=7, **kwargs
    )
    for i in range(5):
        single, single_delta = BlurIntegratedGradients(model).attribute(
            x[i : i + 1], target=targets[i], **kwargs
        )
        torch.testing.assert_close(batched[i : i + 1], single, rtol=0, atol=1e-12)
        torch.testing.assert_close(delta[i : i + 1], single_delta, rtol=0, atol=1e-12)


def test_multi_input_blurs_each_tensor_over_its_last_two_dimensions():
    a, b = smooth_cnn(0), nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 6, 4)).double()

    def both(x1, x2):
        return a(x1) + b(x2)

    x1 = X
    x2 = torch.rand(2, 2, 5, 6, dtype=torch.float64)
    kwargs = dict(target=TARGETS, max_sigma=4.0, n_steps=6)
    attr1, attr2 = BlurIntegratedGradients(both).attribute((x1, x2), **kwargs)
    # an additive model: each part is explained on its own
    torch.testing.assert_close(
        attr1, BlurIntegratedGradients(a).attribute(x1, **kwargs), rtol=0, atol=1e-13
    )
    torch.testing.assert_close(
        attr2, BlurIntegratedGradients(b).attribute(x2, **kwargs), rtol=0, atol=1e-13
    )


def test_beyond_the_border_the_image_continues_at_the_low_end_of_its_range():
    # in a normalized space "black" is a per-channel value, not 0: the path then
    # is the reference's path of the image shifted so that black is 0
    model = smooth_cnn()
    low, high = cb.baselines.normalized_range([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])

    def shifted(z):
        return model(z + low)

    kwargs = dict(target=TARGETS, max_sigma=5.0, n_steps=8)
    attr, delta = BlurIntegratedGradients(model).attribute(
        X, value_range=(low, high), return_convergence_delta=True, **kwargs
    )
    expected, expected_delta = BlurIntegratedGradients(shifted).attribute(
        X - low, return_convergence_delta=True, **kwargs
    )
    torch.testing.assert_close(attr, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(delta, expected_delta, rtol=1e-9, atol=1e-12)


def test_per_example_additional_forward_args_follow_their_example():
    model = mlp()

    def scaled(x, scale):
        return model(x) * scale[:, None]

    scale = torch.tensor([2.0, -0.5], dtype=torch.float64)
    kwargs = dict(target=TARGETS, max_sigma=5.0, n_steps=7, internal_batch_size=3)
    attr = BlurIntegratedGradients(scaled).attribute(
        X, additional_forward_args=(scale,), **kwargs
    )
    plain = BlurIntegratedGradients(model).attribute(X, **kwargs)
    torch.testing.assert_close(
        attr, plain * scale[:, None, None, None], rtol=1e-12, atol=0
    )


def test_noise_tunnel_wraps_it():
    model = mlp()
    attr = NoiseTunnel(BlurIntegratedGradients(model)).attribute(
        X, nt_samples=2, stdevs=0.1, target=1, max_sigma=3.0, n_steps=4
    )
    assert attr.shape == X.shape and bool(torch.isfinite(attr).all())


def test_model_left_exactly_as_found():
    model = small_cnn().train()
    x = torch.rand(2, 3, 8, 8)
    with model_unchanged(model):
        BlurIntegratedGradients(model).attribute(
            x, target=[0, 1], n_steps=3, idgi=True, return_convergence_delta=True
        )
    with model_unchanged(model), pytest.raises(RuntimeError, match="on purpose"):
        BlurIntegratedGradients(FailingForward(model)).attribute(
            x, target=[0, 1], n_steps=3, internal_batch_size=2
        )


class Untouchable(nn.Module):
    def forward(self, x):
        raise AssertionError("the model was called before the arguments were checked")


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"max_sigma": 0.0}, ValueError, "max_sigma"),
        ({"max_sigma": -1.0}, ValueError, "max_sigma"),
        ({"max_sigma": float("nan")}, ValueError, "max_sigma"),
        ({"n_steps": 0}, ValueError, "n_steps"),
        ({"n_steps": 2.5}, TypeError, "n_steps"),
        ({"grad_step": 0.0}, ValueError, "grad_step"),
        ({"grad_step": -0.01}, ValueError, "grad_step"),
        ({"sqrt": "yes"}, TypeError, "sqrt"),
        ({"idgi": 1}, TypeError, "idgi"),
        ({"internal_batch_size": 0}, ValueError, "internal_batch_size"),
        ({"value_range": (1.0, 0.0)}, ValueError, "value_range"),
        ({"target": [0]}, TargetError, "target"),
    ],
)
def test_bad_arguments_are_named_before_any_work(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        BlurIntegratedGradients(Untouchable()).attribute(X, **kwargs)


def test_inputs_without_two_spatial_dimensions_are_rejected():
    with pytest.raises(ValueError, match="`inputs`.*spatial"):
        BlurIntegratedGradients(Untouchable()).attribute(torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"`inputs\[1\]`"):
        BlurIntegratedGradients(Untouchable()).attribute((X, torch.rand(2, 5)))


def test_a_target_the_model_lacks_is_named():
    with pytest.raises(TargetError, match="`target` 9"):
        BlurIntegratedGradients(mlp()).attribute(X, target=9, n_steps=2)
