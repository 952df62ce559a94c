"""Cross-cutting: every public method leaves a model exactly as it found it.

The model is in *training* mode with BatchNorm (whose running statistics would
change under a training-mode forward), has frozen and trainable parameters and a
pre-existing ``.grad``; each method runs once normally and once with a forward
that raises midway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

import captum_baselines as cb

from .helpers import FailingForward, model_unchanged, small_cnn

X = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
TARGET = torch.tensor([0, 2])


def _model() -> nn.Module:
    model = small_cnn().train()
    model[0].weight.requires_grad_(False)
    model[4].weight.grad = torch.ones_like(model[4].weight)
    return model


def _patterns(model: nn.Module) -> cb.Patterns:
    return cb.Patterns(
        {
            name: torch.ones_like(m.weight)
            for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        }
    )


METHODS: dict[str, Callable[[nn.Module, nn.Module], Any]] = {
    "QuadratureIG": lambda m, f: cb.QuadratureIntegratedGradients(f).attribute(
        X, target=TARGET, n_steps=4, return_convergence_delta=True
    ),
    "AdaptiveIG": lambda m, f: cb.AdaptiveIntegratedGradients(f).attribute(
        X, target=TARGET, max_n_steps=8, return_convergence_delta=True
    ),
    "average_over_baselines": lambda m, f: cb.baselines.average_over_baselines(
        IntegratedGradients(f),
        X,
        torch.zeros(2, *X.shape),
        target=TARGET,
        n_steps=4,
        return_convergence_delta=True,
    ),
    "ExpectedGradients": lambda m, f: cb.ExpectedGradients(f).attribute(
        X,
        torch.rand(5, 3, 8, 8),
        target=TARGET,
        n_samples=4,
        return_convergence_delta=True,
    ),
    "PatternAttribution": lambda m, f: cb.PatternAttribution(m, _patterns(m)).attribute(
        X, target=TARGET
    ),
    "PGIG": lambda m, f: cb.PatternGuidedIntegratedGradients(m, _patterns(m)).attribute(
        X, target=TARGET, n_steps=4
    ),
    "LayerRSIGradCam": lambda m, f: cb.LayerRSIGradCam(f, m[4]).attribute(
        X, target=TARGET, n_steps=4, return_convergence_delta=True
    ),
    "BlurIG": lambda m, f: cb.BlurIntegratedGradients(f).attribute(
        X, target=TARGET, max_sigma=2.0, n_steps=4, return_convergence_delta=True
    ),
    "GuidedIG+IDGI": lambda m, f: cb.GuidedIntegratedGradients(f).attribute(
        X, target=TARGET, n_steps=4, idgi=True, return_convergence_delta=True
    ),
    "QuadratureIG+IDGI": lambda m, f: cb.QuadratureIntegratedGradients(f).attribute(
        X, target=TARGET, n_steps=4, idgi=True, return_convergence_delta=True
    ),
    "road_curves": lambda m, f: cb.metrics.road_curves(
        f, X, torch.rand_like(X), target=TARGET, fractions=[0.0, 0.5, 1.0]
    ),
    "uniform_output": lambda m, f: cb.baselines.uniform_output(f, X, n_iter=3),
    "ablation_curve": lambda m, f: cb.metrics.ablation_curve(
        f, X, torch.rand_like(X), target=TARGET
    ),
    "degradation_curve": lambda m, f: cb.metrics.degradation_curve(
        f, X, torch.rand_like(X), target=TARGET, patch_size=2, n_patches=4
    ),
    "cumulative_attribution": lambda m, f: cb.visualization.cumulative_attribution(
        f, X, 0.0, target=TARGET, n_steps=4
    ),
    "fit_patterns": lambda m, f: cb.fit_patterns(m, X, show_progress=False),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_model_left_exactly_as_found(name: str) -> None:
    model = _model()
    with model_unchanged(model):
        METHODS[name](model, model)
    assert model.training


@pytest.mark.parametrize(
    "name", sorted(set(METHODS) - {"PatternAttribution", "PGIG", "fit_patterns"})
)
def test_model_left_exactly_as_found_when_the_forward_raises(name: str) -> None:
    model = _model()
    failing = FailingForward(model, fail_at=2)
    with model_unchanged(model), pytest.raises(RuntimeError, match="on purpose"):
        METHODS[name](model, failing)
