"""Guided Integrated Gradients against the authors' code (PAIR's ``saliency``)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from captum_baselines._engine.targets import TargetError
from captum_baselines.attr.guided_ig import GuidedIntegratedGradients
from captum_baselines.attr.integrated_gradients import QuadratureIntegratedGradients

from .helpers import FailingForward, model_unchanged, small_cnn

pytest.importorskip("saliency", reason="the reference: pip install saliency==0.2.1")
from . import saliency_reference as reference  # noqa: E402
from .test_blur_ig import X, f, mlp, smooth_cnn  # noqa: E402

MODELS = {"cnn": smooth_cnn, "mlp": mlp, "relu-cnn": lambda: small_cnn().double()}
TARGETS = [1, 3]
BASELINES = 0.3 * torch.rand(2, 3, 8, 8, dtype=torch.float64)

SETTINGS = [
    {},  # the reference's defaults: x_steps=200, fraction=0.25, max_dist=0.02
    {"n_steps": 50, "fraction": 0.1, "max_dist": 0.1},
    {"n_steps": 30, "fraction": 0.5, "max_dist": 1.0},
]


@pytest.mark.parametrize("kwargs", SETTINGS, ids=["defaults", "narrow", "unbounded"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_equals_saliency_guided_ig(model_name, kwargs):
    model = MODELS[model_name]()
    ours = GuidedIntegratedGradients(model).attribute(
        X, BASELINES, target=TARGETS, **kwargs
    )
    theirs = reference.guided_ig(model, X, BASELINES, TARGETS, **kwargs)
    error = float((ours - theirs).abs().max() / theirs.abs().max())
    assert error <= 1e-6, f"max relative difference {error:.2e}"


def test_a_float32_model_follows_the_references_float64_path():
    # the reference keeps its path in float64 and hands the model float32 points:
    # so do we, and the results agree although guided paths are chaotic at float32
    # rounding (on a random ResNet-18, a float32 path ends 12% away)
    model = small_cnn().float()
    x, b = X.float(), BASELINES.float()
    ours = GuidedIntegratedGradients(model).attribute(x, b, target=TARGETS)
    assert ours.dtype == torch.float32
    theirs = reference.guided_ig(model, x.double(), b.double(), TARGETS)
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-7)


def test_black_is_the_default_baseline():
    model = mlp()
    ours = GuidedIntegratedGradients(model).attribute(X, target=TARGETS, n_steps=20)
    theirs = reference.guided_ig(model, X, torch.zeros_like(X), TARGETS, n_steps=20)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    n_steps=st.integers(1, 12),
    fraction=st.floats(0.01, 1.0, allow_subnormal=False),
    max_dist=st.floats(0.0, 1.0, allow_subnormal=False),
)
def test_equals_saliency_guided_ig_for_any_setting(n_steps, fraction, max_dist):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 2))
    model = model.double()
    g = torch.Generator().manual_seed(n_steps)
    x = torch.rand(1, 1, 3, 4, dtype=torch.float64, generator=g)
    b = torch.rand(1, 1, 3, 4, dtype=torch.float64, generator=g)
    kwargs = dict(n_steps=n_steps, fraction=fraction, max_dist=max_dist)
    ours = GuidedIntegratedGradients(model).attribute(x, b, target=1, **kwargs)
    theirs = reference.guided_ig(model, x, b, [1], **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "fraction, max_dist", [(1.0, 1.0), (0.25, 0.0)], ids=["all-at-once", "on-the-line"]
)
def test_reduces_to_integrated_gradients_with_the_left_riemann_rule(fraction, max_dist):
    # every feature moves at once (fraction 1, no band) or the band has no width
    # (max_dist 0): the path is the straight line, gamma_k = x' + k/n (x - x'),
    # each step taken with the gradient at its start
    model = smooth_cnn()
    guided = GuidedIntegratedGradients(model).attribute(
        X, BASELINES, target=TARGETS, n_steps=16, fraction=fraction, max_dist=max_dist
    )
    ig = QuadratureIntegratedGradients(model).attribute(
        X, BASELINES, target=TARGETS, n_steps=16, method="riemann_left"
    )
    torch.testing.assert_close(guided, ig, rtol=0, atol=1e-12 * float(ig.abs().max()))
    right = QuadratureIntegratedGradients(model).attribute(
        X, BASELINES, target=TARGETS, n_steps=16, method="riemann_right"
    )
    assert float((guided - right).abs().max()) > 1e-3 * float(ig.abs().max())


def test_sums_to_the_output_change_from_the_baseline_within_its_delta():
    model = mlp()
    attr, delta = GuidedIntegratedGradients(model).attribute(
        X, BASELINES, target=TARGETS, return_convergence_delta=True
    )
    gap = f(model, X, TARGETS) - f(model, BASELINES, TARGETS)
    torch.testing.assert_close(attr.sum((1, 2, 3)) - gap, delta, rtol=0, atol=1e-12)
    assert bool((delta.abs() < 0.01 * gap.abs()).all())


def test_batched_equals_one_at_a_time():
    model = small_cnn().double()
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    b = torch.rand(5, 3, 8, 8, dtype=torch.float64) * 0.2
    x[3] = b[3]  # an input equal to its baseline gets zero attribution
    targets = [0, 3, 1, 2, 1]
    kwargs = dict(
        n_steps=25, fraction=0.2, max_dist=0.05, return_convergence_delta=True
    )
    batched, delta = GuidedIntegratedGradients(model).attribute(
        x, b, target=targets, internal_batch_size=2, **kwargs
    )
    for i in range(5):
        single, single_delta = GuidedIntegratedGradients(model).attribute(
            x[i : i + 1], b[i], target=targets[i], **kwargs
        )
        torch.testing.assert_close(batched[i : i + 1], single, rtol=0, atol=1e-12)
        torch.testing.assert_close(delta[i : i + 1], single_delta, rtol=0, atol=1e-12)
    assert float(batched[3].abs().max()) == 0.0


def test_the_features_of_every_input_tensor_are_selected_together():
    model = mlp()
    split = (slice(None), slice(0, 1)), (slice(None), slice(1, 3))

    def two_inputs(gray, color):
        return model(torch.cat([gray, color], dim=1))

    x1, x2 = X[split[0]], X[split[1]]
    b1, b2 = BASELINES[split[0]], BASELINES[split[1]]
    kwargs = dict(target=TARGETS, n_steps=30, fraction=0.3, max_dist=0.05)
    attr1, attr2 = GuidedIntegratedGradients(two_inputs).attribute(
        (x1, x2), (b1, b2), **kwargs
    )
    whole = GuidedIntegratedGradients(model).attribute(X, BASELINES, **kwargs)
    torch.testing.assert_close(
        torch.cat([attr1, attr2], dim=1), whole, rtol=0, atol=1e-13
    )


def test_per_example_additional_forward_args_follow_their_example():
    model = mlp()

    def scaled(x, scale):
        return model(x) * scale[:, None]

    scale = torch.tensor([2.0, 0.5], dtype=torch.float64)
    kwargs = dict(target=TARGETS, n_steps=10, internal_batch_size=1)
    attr = GuidedIntegratedGradients(scaled).attribute(
        X, BASELINES, additional_forward_args=(scale,), **kwargs
    )
    # a positive scale changes no selection: the path is the same
    plain = GuidedIntegratedGradients(model).attribute(X, BASELINES, **kwargs)
    torch.testing.assert_close(
        attr, plain * scale[:, None, None, None], rtol=1e-12, atol=0
    )


def test_noise_tunnel_wraps_it():
    attr = NoiseTunnel(GuidedIntegratedGradients(mlp())).attribute(
        X, nt_samples=2, stdevs=0.1, target=1, n_steps=4
    )
    assert attr.shape == X.shape and bool(torch.isfinite(attr).all())


def test_model_left_exactly_as_found():
    model = small_cnn().train()
    x = torch.rand(2, 3, 8, 8)
    with model_unchanged(model):
        GuidedIntegratedGradients(model).attribute(
            x, target=[0, 1], n_steps=3, idgi=True, return_convergence_delta=True
        )
    with model_unchanged(model), pytest.raises(RuntimeError, match="on purpose"):
        GuidedIntegratedGradients(FailingForward(model)).attribute(
            x, target=[0, 1], n_steps=3
        )


class Untouchable(nn.Module):
    def forward(self, x):
        raise AssertionError("the model was called before the arguments were checked")


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"fraction": 0.0}, ValueError, "fraction"),
        ({"fraction": 1.5}, ValueError, "fraction"),
        ({"fraction": -0.1}, ValueError, "fraction"),
        ({"fraction": float("nan")}, ValueError, "fraction"),
        ({"max_dist": -0.01}, ValueError, "max_dist"),
        ({"max_dist": float("inf")}, ValueError, "max_dist"),
        ({"n_steps": 0}, ValueError, "n_steps"),
        ({"n_steps": 1.0}, TypeError, "n_steps"),
        ({"idgi": "no"}, TypeError, "idgi"),
        ({"internal_batch_size": 0}, ValueError, "internal_batch_size"),
        ({"baselines": torch.zeros(3, 3, 8, 8)}, ValueError, "baselines"),
        ({"target": [0, 1, 2]}, TargetError, "target"),
    ],
)
def test_bad_arguments_are_named_before_any_work(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        GuidedIntegratedGradients(Untouchable()).attribute(X, **kwargs)


def test_a_target_the_model_lacks_is_named():
    with pytest.raises(TargetError, match="`target` 9"):
        GuidedIntegratedGradients(mlp()).attribute(X, target=9, n_steps=2)
