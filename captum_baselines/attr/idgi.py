r"""Integrated Decision Gradients' weighting (Yang et al., CVPR 2023).

`IDGI: A Framework to Eliminate Explanation Noise from Integrated Gradients
<https://arxiv.org/abs/2303.14242>`_ re-calibrates the Riemann sum of any path
method.  Over the step of the path that row ``j`` stands for, from ``gamma_j`` to
``gamma_{j+1}``, only the part of the gradient ``g_j`` along the direction in
which the output changes counts, and that step contributes exactly the change of
the output ``d_j = f(gamma_{j+1}) - f(gamma_j)``::

    IDGI_i(x) = sum_j  g_j,i^2 / ||g_j||^2 * d_j

The steps tile the path, so the attributions sum to ``f(x) - f(gamma_0)``
exactly, whatever the number of steps.  For a quadrature rule whose row ``j``
has weight ``w_j`` on ``[0, 1]``, the step of row ``j`` is the part of the path
its weight stands for, ``[c_j, c_{j+1}]`` with ``c_j = sum_{k<j} w_k``; for the
left Riemann rule that is the paper's ``[alpha_j, alpha_{j+1}]``, and every rule
used here has its node inside its step (for Gauss-Legendre by the
Chebyshev-Markov-Stieltjes separation theorem).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._engine.path import PathChunk, Terms, Weighting


def idgi_weighting(output_change: Tensor) -> Weighting:
    """The IDGI weighting, given ``d_r`` (the output change over each row's step).

    Args:
        output_change: ``(R,)`` ``f(end of row r's step) - f(its start)``, in the
            direction of the path (towards the input).
    """

    def weighting(
        gradients: tuple[Tensor, ...], outputs: Tensor, chunk: PathChunk
    ) -> Terms:
        n_rows = len(chunk.examples)
        squares = tuple(g * g for g in gradients)
        norm = torch.stack([s.reshape(n_rows, -1).sum(1) for s in squares]).sum(0)
        change = output_change[chunk.rows].to(norm)
        # A row with zero gradient has no direction to keep: it contributes 0.
        scale = torch.where(norm > 0, change / torch.where(norm > 0, norm, 1), 0)
        terms = tuple(
            s * scale.reshape(-1, *([1] * (s.dim() - 1))).to(s) for s in squares
        )
        return Terms(terms, torch.ones_like(scale))

    return weighting


def step_boundaries(weights: Tensor) -> Tensor:
    """``(n + 1,)`` the boundaries ``c_j`` of the steps of a rule on [0, 1].

    ``weights`` are the rule's weights in the order of its nodes along the path.
    """
    boundaries = torch.cat([weights.new_zeros(1), torch.cumsum(weights, 0)])
    boundaries[-1] = 1.0
    return boundaries


__all__ = ["idgi_weighting", "step_boundaries"]
