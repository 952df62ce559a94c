"""``ExpectedGradients`` replaces ``GradientShap`` in a Captum pipeline as is.

The pipeline below calls the attribution with GradientShap's positional order
``(inputs, baselines, n_samples, stdevs, target, additional_forward_args,
return_convergence_delta)``.  Swapping the class must give the same estimator:
with GradientShap's own draws replayed (its NumPy reference indices and alphas,
its torch noise), the results agree to 1e-12 in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap
from torch import nn

import captum_baselines.attr.expected_gradients as eg_module
from captum_baselines import ExpectedGradients
from captum_baselines._engine.targets import TargetError

DT = torch.float64


def pipeline(method_class, model, inputs, pool, target, scale):
    """User code written for GradientShap: everything positional."""
    return method_class(model).attribute(inputs, pool, 6, 0.25, target, (scale,))


class ScaledNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(DT)

    def forward(self, x, scale):
        return self.net(x) * scale


def test_expected_gradients_is_a_drop_in_for_gradient_shap(monkeypatch):
    model = ScaledNet()
    n, k, m = 4, 6, 9
    x = torch.randn(n, 5, dtype=DT)
    pool = torch.randn(m, 5, dtype=DT)
    target = torch.tensor([0, 2, 1, 2])
    scale = torch.tensor([[1.0], [2.0], [0.5], [3.0]], dtype=DT)

    np.random.seed(5)
    torch.manual_seed(5)
    expected = pipeline(GradientShap, model, x, pool, target, scale)

    # GradientShap (NoiseTunnel over InputBaselineXGradient) draws, in order:
    # one reference per (example, sample) row from NumPy, the noise from torch,
    # then one alpha per row from NumPy; rows are example-major.
    np.random.seed(5)
    torch.manual_seed(5)
    index = torch.as_tensor(np.random.choice(m, n * k))
    noise = torch.normal(0, torch.tensor(0.25).repeat((n * k, 5)))  # float32, as NT
    alphas = torch.tensor(np.random.uniform(0.0, 1.0, n * k), dtype=DT)
    noisy = x.repeat_interleave(k, 0) + noise

    def references(inputs, n_samples, generator):
        # (draw, example) -> pool row; our callable sources are draw-major
        return pool[index].reshape(n, k, 5).transpose(0, 1)

    monkeypatch.setattr(
        eg_module, "stratified_alphas", lambda *a, **kw: alphas.reshape(n, k)
    )
    monkeypatch.setattr(
        eg_module,
        "_noisy_inputs",
        lambda inputs, stdevs, width, generator: ((noisy,), torch.arange(n * k)),
    )

    class Replayed(ExpectedGradients):
        def attribute(self, inputs, baselines, *args, **kwargs):  # type: ignore[override]
            return super().attribute(inputs, references, *args, **kwargs)

    got = pipeline(Replayed, model, x, pool, target, scale)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_positional_n_samples_is_not_taken_for_the_target():
    # GradientShap's third positional argument is n_samples: so is ours
    model = nn.Linear(5, 3).to(DT)
    x = torch.randn(2, 5, dtype=DT)
    pool = torch.randn(10, 5, dtype=DT)
    with pytest.raises(TargetError, match="target"):
        ExpectedGradients(model).attribute(x, pool, 5)  # no target: 3 outputs
    attr = ExpectedGradients(model).attribute(x, pool, 5, 0.0, 1)
    assert attr.shape == x.shape


def test_bad_target_is_both_a_value_error_and_an_assertion_error():
    model = nn.Linear(5, 3).to(DT)
    x = torch.randn(2, 5, dtype=DT)
    for error in (ValueError, AssertionError):
        with pytest.raises(error, match="target"):
            ExpectedGradients(model).attribute(
                x, torch.zeros(3, 5, dtype=DT), 4, 0.0, 7
            )
