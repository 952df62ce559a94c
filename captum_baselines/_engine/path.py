r"""The loop every path method shares.

A path method explains ``f(x)`` by a weighted sum of gradients taken at points
``gamma(t_r)`` of a path that ends at the input::

    phi_i(x) = sum_r  w_r * df/dx_i(gamma(t_r)) * gamma'_i(t_r)

A *row* ``r`` is one such point, belonging to one example of the batch.
Integrated Gradients takes quadrature nodes on the straight line from a baseline,
Expected Gradients draws references and positions on straight lines, Blur IG
walks through Gaussian blurs; a method is a :class:`Path` (where the points are,
the path's velocity there, the weights) plus a :data:`Weighting` (how a row's
gradient becomes its term: along the path, or IDGI's projection).
:func:`integrate` evaluates the rows in memory-bounded chunks and scatters each
row's term onto its example; :func:`gradients_at` is the one gradient
evaluation underneath, also used by paths that are built step by step from their
own gradients (Guided IG).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from captum._utils.common import _run_forward
from torch import Tensor
from tqdm.auto import tqdm

from .._validation import check_optional_positive_int
from .forward import check_target_shape, require_one_value, row_values
from .targets import select_additional_args, select_target


@dataclass(frozen=True)
class PathChunk:
    """The rows ``rows`` of a path, ready to evaluate.

    Attributes:
        rows: Which rows of the path these are.
        examples: ``(R,)`` the example of each row.
        points: Where the gradients are taken, one tensor per input.
        velocities: ``gamma'(t_r)`` times the row's step in ``t`` where the weight
            does not hold it, one tensor per input; ``None`` for a local
            attribution (the gradient alone).
        weights: ``(R,)`` the weight of each row in its example's sum.
    """

    rows: slice
    examples: Tensor
    points: tuple[Tensor, ...]
    velocities: tuple[Tensor, ...] | None
    weights: Tensor


class Path(Protocol):
    """A set of rows on paths ending at the inputs, produced chunk by chunk."""

    @property
    def n_rows(self) -> int: ...

    def chunk(self, rows: slice) -> PathChunk: ...


def column(values: Tensor, like: Tensor) -> Tensor:
    """``values`` shaped ``(R, 1, ..., 1)`` to broadcast against ``like``."""
    return values.to(device=like.device, dtype=like.dtype).reshape(
        -1, *([1] * (like.dim() - 1))
    )


class StraightLinePath:
    r"""Rows on straight lines ``x'_r + alpha_r (x_r - x'_r)``.

    Starts and ends are pools indexed per row, so that references are never
    copied ``n_samples`` times: Integrated Gradients indexes its per-example
    baselines by the row's example; Expected Gradients a pool of references by
    the draw.  The velocity is ``x_r - x'_r`` (``multiply_by_inputs``), or
    ``None`` for the local attribution.
    """

    def __init__(
        self,
        starts: tuple[Tensor, ...],
        start_index: Tensor,
        ends: tuple[Tensor, ...],
        end_index: Tensor,
        examples: Tensor,
        alphas: Tensor,
        weights: Tensor,
        multiply_by_inputs: bool = True,
    ) -> None:
        self.starts, self.start_index = starts, start_index
        self.ends, self.end_index = ends, end_index
        self.examples, self.alphas, self.weights = examples, alphas, weights
        self.multiply_by_inputs = multiply_by_inputs

    @classmethod
    def from_baselines(
        cls,
        inputs: tuple[Tensor, ...],
        baselines: tuple[Tensor, ...],
        examples: Tensor,
        alphas: Tensor,
        weights: Tensor,
        multiply_by_inputs: bool = True,
    ) -> StraightLinePath:
        """Rows of ``examples`` on the lines from their baselines to the inputs."""
        return cls(
            baselines, examples, inputs, examples, examples, alphas, weights,
            multiply_by_inputs,
        )  # fmt: skip

    @property
    def n_rows(self) -> int:
        return len(self.examples)

    def chunk(self, rows: slice) -> PathChunk:
        start_index, end_index = self.start_index[rows], self.end_index[rows]
        starts = tuple(p[start_index.to(p.device)] for p in self.starts)
        ends = tuple(p[end_index.to(p.device)] for p in self.ends)
        alphas = self.alphas[rows]
        steps = tuple(e - s for s, e in zip(starts, ends))
        # lerp is exact at both ends: the point at alpha = 1 is the input itself
        points = tuple(
            torch.lerp(s, e, column(alphas, s)) for s, e in zip(starts, ends)
        )
        return PathChunk(
            rows,
            self.examples[rows],
            points,
            steps if self.multiply_by_inputs else None,
            self.weights[rows],
        )

    def points_of(self, rows: slice) -> tuple[Tensor, ...]:
        """The points of ``rows`` alone (for forward passes without gradients)."""
        return self.chunk(rows).points


class Terms(NamedTuple):
    """What a weighting makes of one chunk's gradients."""

    terms: tuple[Tensor, ...]
    """Each row's contribution to its example, before the row weight."""
    weights: Tensor
    """``(R,)`` the factor each term enters its example's sum with."""


#: ``weighting(gradients, outputs, chunk)``: each row's term and its weight.
Weighting = Callable[[tuple[Tensor, ...], Tensor, PathChunk], Terms]


def along_path(
    gradients: tuple[Tensor, ...], outputs: Tensor, chunk: PathChunk
) -> Terms:
    """The path integral's term: ``df/dx(gamma(t_r)) * gamma'(t_r)``, weight ``w_r``."""
    if chunk.velocities is None:
        return Terms(gradients, chunk.weights)
    terms = tuple(g * v for g, v in zip(gradients, chunk.velocities))
    return Terms(terms, chunk.weights)


class PathIntegral(NamedTuple):
    """What :func:`integrate` returns."""

    attributions: tuple[Tensor, ...]
    """One ``(N, ...)`` tensor per input: ``sum_r w_r term_r`` per example."""
    row_totals: Tensor
    """``(R,)`` each row's term summed over every feature, before its weight."""


def gradients_at(
    forward_func: Callable[..., Any],
    points: tuple[Tensor, ...],
    examples: Tensor,
    n_examples: int,
    target: Any = None,
    additional_forward_args: Any = None,
    check: bool = False,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """``(gradients, outputs)`` of ``f`` at ``target`` at one chunk of points.

    One forward and one backward pass; ``outputs`` is the ``(R,)`` score of each
    row.  Rows do not interact in the model (eval mode), so the gradient of the
    sum of the scores is each row's own gradient.  With ``check``, ``target`` is
    checked against the model's output first.
    """
    n_rows = len(examples)
    row_target = select_target(target, examples)
    with torch.enable_grad():
        leaves = tuple(p.detach().requires_grad_() for p in points)
        output = _run_forward(
            forward_func,
            leaves,
            None,
            select_additional_args(additional_forward_args, examples, n_examples),
        )
        if not isinstance(output, Tensor):
            raise TypeError(
                f"`forward_func` must return a tensor, got {type(output).__name__}"
            )
        if check and output.dim() > 0:
            check_target_shape(target, output, n_examples)
        if row_target is None:
            require_one_value(output, n_rows)
        values = row_values(output, row_target, n_rows)
        gradients = torch.autograd.grad(values.sum(), leaves)
    return gradients, values.detach()


def integrate(
    forward_func: Callable[..., Any],
    path: Path,
    inputs: tuple[Tensor, ...],
    target: Any = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    weighting: Weighting = along_path,
    show_progress: bool = False,
    desc: str = "path",
) -> PathIntegral:
    """The weighted sum of every row's term onto its example, in bounded chunks.

    Args:
        forward_func: The model.
        path: The rows.
        inputs: The explained inputs; give the shape of the sums.
        target: Any of Captum's target forms, for the ``N`` examples.
        additional_forward_args: Passed to the model; per-example tensors follow
            their rows.
        internal_batch_size: Rows per forward and backward pass; ``None``: all.
        weighting: How a row's gradient becomes its term.
        show_progress: Show a tqdm bar over the rows.
        desc: The bar's label.
    """
    n = inputs[0].shape[0]
    n_rows = path.n_rows
    size = check_optional_positive_int("internal_batch_size", internal_batch_size)
    size = size or max(n_rows, 1)
    sums = tuple(torch.zeros_like(x) for x in inputs)
    totals = torch.zeros(n_rows, dtype=inputs[0].dtype, device=inputs[0].device)
    with tqdm(total=n_rows, desc=desc, unit="point", disable=not show_progress) as bar:
        for start in range(0, n_rows, size):
            chunk = path.chunk(slice(start, min(start + size, n_rows)))
            gradients, outputs = gradients_at(
                forward_func,
                chunk.points,
                chunk.examples,
                n,
                target,
                additional_forward_args,
                check=start == 0,
            )
            terms, weights = weighting(gradients, outputs, chunk)
            rows = len(chunk.examples)
            for acc, term in zip(sums, terms):
                totals[chunk.rows] += term.reshape(rows, -1).sum(1).to(totals.dtype)
                acc.index_add_(
                    0, chunk.examples.to(acc.device), term * column(weights, term)
                )
            bar.update(rows)
    return PathIntegral(sums, totals)


def total(attributions: tuple[Tensor, ...]) -> Tensor:
    """``(N,)``: the sum of every attribution of each example."""
    n = attributions[0].shape[0]
    return torch.stack([a.reshape(n, -1).sum(1) for a in attributions]).sum(0)


__all__ = [
    "Path",
    "PathChunk",
    "PathIntegral",
    "StraightLinePath",
    "Terms",
    "Weighting",
    "along_path",
    "column",
    "gradients_at",
    "integrate",
    "total",
]
