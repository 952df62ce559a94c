"""One convention for ``baselines`` across every method and plot.

The same argument is accepted or rejected, with the same message, by Integrated
Gradients, Expected Gradients (where a baseline is a pool of references),
RSI-Grad-CAM, PGIG and the path plots.  One difference is by design: a batch of
``k`` baselines with ``k`` neither 1 nor the batch size is a pool of ``k``
references for Expected Gradients and an error for the per-example methods.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

import captum_baselines as cb
from captum_baselines.visualization import (
    cumulative_attribution,
    path_outputs,
    plot_completeness,
)

X = torch.rand(2, 1, 6, 6)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 36, 4),
    ).eval()


def _ones(model: nn.Module) -> cb.Patterns:
    return cb.Patterns(
        {
            name: torch.ones_like(m.weight)
            for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))
        }
    )


def _calls(model: nn.Module) -> dict:
    def pgig(b):
        return cb.PatternGuidedIntegratedGradients(model, _ones(model)).attribute(
            X, b, target=1, n_steps=2
        )

    def completeness(b):
        plt.close(plot_completeness(model, X, b, target=1, n_steps=2))

    return {
        "IG": lambda b: cb.QuadratureIntegratedGradients(model).attribute(
            X, b, target=1, n_steps=2
        ),
        "adaptive IG": lambda b: cb.AdaptiveIntegratedGradients(model).attribute(
            X, b, target=1, max_n_steps=8, rtol=1.0, atol=1.0
        ),
        "EG": lambda b: cb.ExpectedGradients(model).attribute(X, b, 2, target=1),
        "RSI": lambda b: cb.LayerRSIGradCam(model, model[0]).attribute(
            X, b, target=1, n_steps=2
        ),
        "PGIG": pgig,
        "path_outputs": lambda b: path_outputs(model, X, b, torch.tensor([0.5]), 1),
        "cumulative": lambda b: cumulative_attribution(model, X, b, 1, n_steps=2),
        "completeness plot": completeness,
    }


ACCEPTED = {
    "None": None,
    "number": 0.5,
    "0-d tensor": torch.tensor(0.25),
    "one example": torch.rand(1, 6, 6),
    "batch of one": torch.rand(1, 1, 6, 6),
    "one per example": torch.rand(2, 1, 6, 6),
    "1-tuple": (torch.rand(1, 6, 6),),
}

REJECTED = {
    "wrong example shape": (torch.rand(2, 6, 6), ValueError),
    "wrong rank": (torch.rand(6, 6), ValueError),
    "NaN": (torch.full((1, 6, 6), float("nan")), ValueError),
    "infinite number": (float("inf"), ValueError),
    "string": ("black", TypeError),
    "two entries for one input": ((0.0, 0.0), ValueError),
}


@pytest.mark.parametrize("form", list(ACCEPTED))
def test_every_method_accepts_the_same_forms(form):
    for name, call in _calls(_model()).items():
        try:
            call(ACCEPTED[form])
        except Exception as error:  # pragma: no cover - the message is the point
            pytest.fail(f"{name} rejected {form}: {error}")


@pytest.mark.parametrize("form", list(REJECTED))
def test_every_method_rejects_the_same_forms_with_the_same_message(form):
    value, error = REJECTED[form]
    messages = {}
    for name, call in _calls(_model()).items():
        with pytest.raises(error, match="baselines") as raised:
            call(value)
        messages[name] = str(raised.value)
    assert len(set(messages.values())) == 1, messages


def test_a_batch_of_k_baselines_is_a_pool_for_expected_gradients_only():
    model = _model()
    three = torch.rand(3, 1, 6, 6)
    attr = cb.ExpectedGradients(model).attribute(X, three, 3, target=1)
    assert attr.shape == X.shape
    messages = set()
    for name, call in _calls(model).items():
        if name == "EG":
            continue
        with pytest.raises(ValueError, match="holds 3 baselines") as raised:
            call(three)
        messages.add(str(raised.value))
    assert len(messages) == 1
