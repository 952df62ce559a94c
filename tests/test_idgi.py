"""IDGI (Yang et al., CVPR 2023) on every path method, against the formula by hand.

Over the path points ``gamma_0, ..., gamma_n`` (in the path's direction) with the
gradients ``g_j`` a method takes at ``gamma_j``::

    IDGI_i = sum_{j<n} g_j,i^2 / ||g_j||^2 * (f(gamma_{j+1}) - f(gamma_j))

The points come from independent sources: scipy's filter for the blurs, the
reference ``saliency`` code for the guided path, NumPy's Gauss-Legendre nodes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import captum_baselines as cb

pytest.importorskip("saliency", reason="the reference: pip install saliency==0.2.1")
from scipy import ndimage  # noqa: E402

from . import saliency_reference as reference  # noqa: E402
from .test_blur_ig import TARGETS, X, mlp, smooth_cnn  # noqa: E402

BASELINES = 0.3 * torch.rand(2, 3, 8, 8, dtype=torch.float64)


def gradient_and_value(model: nn.Module, point: Tensor, target: int):
    point = point.detach().clone().unsqueeze(0).requires_grad_()
    value = model(point)[0, target]
    (gradient,) = torch.autograd.grad(value, point)
    return gradient[0], float(value.detach())


def idgi_by_hand(model: nn.Module, points: list[Tensor], target: int) -> Tensor:
    """The formula over ``points`` in order, each gradient at the start of its
    step: ``sum_j g_j^2 / ||g_j||^2 * (f(points[j + 1]) - f(points[j]))``."""
    evaluated = [gradient_and_value(model, p, target) for p in points]
    total = torch.zeros_like(points[0])
    for (g, value), (_, next_value) in zip(evaluated[:-1], evaluated[1:]):
        total += g**2 / (g**2).sum() * (next_value - value)
    return total


def scipy_blur(x: Tensor, sigma: float) -> Tensor:
    return torch.from_numpy(
        ndimage.gaussian_filter(x.numpy(), [0, sigma, sigma], mode="constant")
    )


@pytest.mark.parametrize("sqrt", [False, True])
def test_blur_ig(sqrt):
    model = smooth_cnn()
    max_sigma, n = 6.0, 12
    attr, delta = cb.BlurIntegratedGradients(model).attribute(
        X,
        target=TARGETS,
        max_sigma=max_sigma,
        n_steps=n,
        sqrt=sqrt,
        idgi=True,
        return_convergence_delta=True,
    )
    for i, t in enumerate(TARGETS):
        sigmas = [(k * max_sigma / n) ** (0.5 if sqrt else 1) for k in range(n + 1)]
        # the blur path's rule takes the gradient at sigma_k for the step between
        # sigma_k and sigma_k+1: listed from the input outwards, each gradient
        # starts its step, and the output change towards the input is the
        # negative of the change outwards
        points = [scipy_blur(X[i], s) for s in sigmas]
        expected = -idgi_by_hand(model, points, t)
        torch.testing.assert_close(attr[i], expected, rtol=1e-9, atol=1e-14)
    # IDGI telescopes: complete whatever the number of steps
    assert float(delta.abs().max()) < 1e-12


def test_guided_ig():
    model = mlp()
    kwargs = dict(n_steps=40, fraction=0.25, max_dist=0.05)
    attr, delta = cb.GuidedIntegratedGradients(model).attribute(
        X, BASELINES, target=TARGETS, idgi=True, return_convergence_delta=True, **kwargs
    )
    visited: list[list[np.ndarray]] = []
    reference.guided_ig(model, X, BASELINES, TARGETS, visited=visited, **kwargs)
    for i, t in enumerate(TARGETS):
        assert len(visited[i]) == kwargs["n_steps"]
        # the reference's path: the points it took gradients at, then the input
        points = [reference.chw(p) for p in visited[i]] + [X[i]]
        expected = idgi_by_hand(model, points, t)
        # the path ends within 1e-9 (L1) of the input
        torch.testing.assert_close(attr[i], expected, rtol=1e-7, atol=1e-12)
    assert float(delta.abs().max()) < 1e-8


@pytest.mark.parametrize("method", ["riemann_left", "gausslegendre"])
def test_quadrature_integrated_gradients(method):
    model = smooth_cnn()
    n = 8
    attr, delta = cb.QuadratureIntegratedGradients(model).attribute(
        X,
        BASELINES,
        target=TARGETS,
        n_steps=n,
        method=method,
        idgi=True,
        return_convergence_delta=True,
    )
    if method == "riemann_left":
        nodes, weights = np.arange(n) / n, np.full(n, 1 / n)
    else:
        nodes, weights = np.polynomial.legendre.leggauss(n)
        nodes, weights = (nodes + 1) / 2, weights / 2
    # each node stands for the step its weight covers: [c_j, c_j+1]
    bounds = np.concatenate([[0.0], np.cumsum(weights)])
    bounds[-1] = 1.0
    for i, t in enumerate(TARGETS):

        def at(alpha, i=i):
            return BASELINES[i] + float(alpha) * (X[i] - BASELINES[i])

        expected = torch.zeros_like(X[i])
        for j in range(n):
            g, _ = gradient_and_value(model, at(nodes[j]), t)
            _, start = gradient_and_value(model, at(bounds[j]), t)
            _, end = gradient_and_value(model, at(bounds[j + 1]), t)
            expected += g**2 / (g**2).sum() * (end - start)
        torch.testing.assert_close(attr[i], expected, rtol=1e-9, atol=1e-14)
    assert float(delta.abs().max()) < 1e-12


def test_adaptive_integrated_gradients_is_complete():
    attr, delta = cb.AdaptiveIntegratedGradients(mlp()).attribute(
        X, BASELINES, target=TARGETS, idgi=True, return_convergence_delta=True
    )
    assert float(delta.abs().max()) < 1e-12


class Flat(nn.Module):
    """An output that does not depend on the input: no gradient, no direction."""

    def forward(self, x):
        return (0.0 * x).flatten(1).sum(1, keepdim=True) + 1.0


@pytest.mark.parametrize(
    "explain",
    [
        lambda m: cb.BlurIntegratedGradients(m).attribute(
            X, max_sigma=2.0, n_steps=3, idgi=True
        ),
        lambda m: cb.GuidedIntegratedGradients(m).attribute(X, n_steps=3, idgi=True),
        lambda m: cb.QuadratureIntegratedGradients(m).attribute(
            X, n_steps=3, idgi=True
        ),
    ],
    ids=["blur", "guided", "quadrature"],
)
def test_a_step_without_gradient_contributes_zero_not_nan(explain):
    attr = explain(Flat())
    assert bool((attr == 0).all())
