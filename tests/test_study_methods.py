"""The method registry of the study: what a decorated builder gives the command
line, and what each registered method computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_baselines.baselines import normalized_range
from captum_baselines.cli import build_parser
from captum_baselines.study.loading import choose_layer
from captum_baselines.study.methods import (
    METHODS,
    attribute_with,
    method_generator,
    register,
    steps,
)
from captum_baselines.study.problems import Problem, Settings
from captum_baselines.study.runner import run_comparison, select_methods
from tests.helpers import model_unchanged, small_cnn

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")

SETTINGS = Settings(n_steps=4, n_baselines=2, n_samples=4, show_progress=False)


@pytest.fixture
def registry():
    """The registry as it was, restored after the test."""
    saved = dict(METHODS)
    yield METHODS
    METHODS.clear()
    METHODS.update(saved)


def cnn_problem(n: int = 3, side: int = 8) -> Problem:
    model = small_cnn().double()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, side, side, generator=g, dtype=torch.float64)
    layer, note = choose_layer(model, x, None)
    return Problem(
        model, x, torch.tensor([0, 1, 2][:n]), (0.0, 1.0), x, layer, "t", "d",
        layer_note=note,
    )  # fmt: skip


def test_registry_order_names_and_labels():
    assert list(METHODS) == [
        "ig-black",
        "ig-white",
        "ig-max-distance",
        "ig-blur",
        "ig-uniform",
        "ig-gaussian",
        "ig-training",
        "eg",
        "pgig",
        "rsi-grad-cam",
        "ig-black-idgi",
        "ig-blur-idgi",
        "blur-ig",
        "blur-ig-idgi",
        "guided-ig",
        "guided-ig-idgi",
    ]
    labels = [spec.label for spec in METHODS.values()]
    assert len(set(labels)) == len(labels)
    assert [s.name for s in METHODS.values() if s.needs_layer] == ["rsi-grad-cam"]
    for spec in METHODS.values():
        assert spec.summary and spec.passes(SETTINGS) >= SETTINGS.n_steps // 4


def test_a_new_method_is_one_decorated_builder(registry):
    @register("saliency", "Saliency", passes=lambda s: 1)
    def saliency(problem, settings):
        """Plain gradients."""
        from captum.attr import Saliency

        return lambda x, target: Saliency(problem.model).attribute(x, target=target)

    assert METHODS["saliency"].summary == "Plain gradients."
    # The command line offers it, in its help and as a --methods choice.
    parser = build_parser()
    args = parser.parse_args(
        ["compare", "--model", "m:f", "--images", "i", "--out", "o"]
        + ["--methods", "saliency"]
    )
    assert args.methods == ["saliency"]
    problem = cnn_problem()
    outcome = run_comparison(problem, SETTINGS, select_methods(["saliency"]))
    assert list(outcome.result.methods) == ["Saliency", "random"]
    with pytest.raises(ValueError, match="already registered"):
        register("saliency-2", "Saliency", passes=steps)(saliency)


def test_attribute_with_passes_steps_batch_and_delta():
    calls = []

    class Recorder:
        def attribute(self, x, **kwargs):
            calls.append(kwargs)
            return x

    problem = cnn_problem()
    settings = Settings(n_steps=7, internal_batch_size=5)
    method = attribute_with(
        Recorder(), problem, settings, delta=True, baselines=lambda x: 2 * x, idgi=True
    )
    x = problem.images
    method(x, 1)
    (kwargs,) = calls
    assert kwargs.pop("baselines").equal(2 * x)
    assert kwargs == {
        "target": 1,
        "n_steps": 7,
        "internal_batch_size": 5,
        "idgi": True,
        "return_convergence_delta": True,
    }


def test_ig_black_is_exact_on_a_linear_model_in_a_normalized_range():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).double()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    low, high = normalized_range(mean, std)
    x = low + (high - low) * torch.rand(2, 3, 4, 4, dtype=torch.float64)
    problem = Problem(model, x, torch.tensor([0, 2]), (low, high), x, None, "t", "d")
    with model_unchanged(model):
        attributions, delta = METHODS["ig-black"].build(problem, SETTINGS)(
            x, problem.targets
        )
    w = model[1].weight.detach().view(3, 3, 4, 4)
    expected = (x - low.to(x)) * w[problem.targets]
    torch.testing.assert_close(attributions, expected, rtol=1e-12, atol=1e-12)
    assert float(delta.abs().max()) < 1e-12


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs_and_leaves_the_model_as_found(name):
    problem = cnn_problem()
    model = problem.model
    with model_unchanged(model):
        output = METHODS[name].build(problem, SETTINGS)(problem.images, problem.targets)
    attributions = output[0] if isinstance(output, tuple) else output
    assert bool(torch.isfinite(attributions).all())
    assert attributions.shape[0] == 3
    if METHODS[name].needs_layer:
        assert attributions.shape[1:] == (1, *problem.layer.map_size)
    else:
        assert attributions.shape == problem.images.shape
    if isinstance(output, tuple):
        assert output[1].shape == (3,)


def test_layer_methods_without_a_layer_name_the_option():
    problem = cnn_problem()
    problem.layer, problem.layer_note = None, "no layer here"
    from captum_baselines.study.errors import OptionError

    with pytest.raises(OptionError, match="^--layer: no layer here"):
        METHODS["rsi-grad-cam"].build(problem, SETTINGS)


def test_method_generators_are_seeded_per_method():
    a = torch.rand(3, generator=method_generator(Settings(seed=1), "ig-uniform"))
    b = torch.rand(3, generator=method_generator(Settings(seed=1), "ig-uniform"))
    c = torch.rand(3, generator=method_generator(Settings(seed=1), "ig-gaussian"))
    d = torch.rand(3, generator=method_generator(Settings(seed=2), "ig-uniform"))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)
