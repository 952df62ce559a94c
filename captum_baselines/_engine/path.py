"""The loop every path method shares.

A path method explains ``f(x)`` by a weighted sum of gradients taken at points on
straight paths between references ``x'`` and the input ``x``::

    phi_i(x) = sum_r  w_r * (x_i - x'_r,i) * df/dx_i(x'_r + alpha_r (x - x'_r))

Integrated Gradients uses one reference per example and quadrature nodes for
``alpha_r``; Expected Gradients draws both the references and the alphas.  Here a
*row* ``r`` is one (example, reference, alpha, weight) quadruple; this module
draws rows, evaluates them in memory-bounded chunks and scatters the weighted
gradients back onto their examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import _run_forward, _select_targets
from captum._utils.gradient import compute_gradients
from torch import Tensor

from .._validation import check_positive_int
from .targets import check_target, select_additional_args, select_target


def stratified_alphas(
    n_examples: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draws ``(n_examples, n_samples)`` alphas in [0, 1), one per stratum.

    The ``n_samples`` alphas of an example fall one into each interval
    ``[k / n, (k + 1) / n)``, in random order, so that an example's alphas cover
    the path evenly while each alpha is still marginally uniform.
    """
    strata = torch.argsort(torch.rand(n_examples, n_samples, generator=generator), 1)
    jitter = torch.rand(n_examples, n_samples, generator=generator, dtype=torch.float64)
    alphas = (strata.to(torch.float64) + jitter) / n_samples
    return alphas.to(device=device, dtype=dtype)


def _forward_scalars(
    forward_func: Callable[..., Any], inputs: tuple[Tensor, ...], target: Any, args: Any
) -> Tensor:
    out = _run_forward(forward_func, inputs, target, args)
    if not isinstance(out, Tensor):
        out = torch.as_tensor(out)
    n = inputs[0].shape[0]
    return out.reshape(n, -1).sum(1) if out.dim() > 0 else out.expand(n)


def evaluate_rows(
    forward_func: Callable[..., Any],
    pool: tuple[Tensor, ...],
    pool_index: Tensor,
    rows: Tensor,
    n_examples: int,
    target: Any = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
) -> Tensor:
    """``f`` at ``pool[pool_index]`` for each row, the target of ``rows``, no grad."""
    size = internal_batch_size or len(rows)
    values = []
    with torch.no_grad():
        for start in range(0, len(rows), size):
            r = rows[start : start + size]
            idx = pool_index[start : start + size]
            points = tuple(p[idx.to(p.device)] for p in pool)
            values.append(
                _forward_scalars(
                    forward_func,
                    points,
                    select_target(target, r),
                    select_additional_args(additional_forward_args, r, n_examples),
                )
            )
    return torch.cat(values) if values else torch.zeros(0)


def forward_inputs(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    target: Any = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
) -> Tensor:
    """``f(x)`` at ``target`` per example; checks ``target`` against the output.

    The full outputs are kept (one row per example), so that an out-of-range
    target is reported clearly before anything is selected from them.
    """
    n = inputs[0].shape[0]
    size = internal_batch_size or n
    outputs = []
    with torch.no_grad():
        for start in range(0, n, size):
            rows = torch.arange(start, min(start + size, n))
            out = _run_forward(
                forward_func,
                tuple(t[rows.to(t.device)] for t in inputs),
                None,
                select_additional_args(additional_forward_args, rows, n),
            )
            outputs.append(torch.as_tensor(out))
    output = torch.cat(outputs) if outputs[0].dim() > 0 else outputs[0]
    if output.dim() == 0 or output.shape[0] != n:
        return _forward_scalars(
            forward_func, inputs, target, additional_forward_args
        ).detach()
    check_target(target, output, n)
    selected = _select_targets(output, target)
    return selected.reshape(n, -1).sum(1)


def path_gradient_sums(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    references: tuple[Tensor, ...],
    reference_index: Tensor,
    rows: Tensor,
    alphas: Tensor,
    weights: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    multiply_by_inputs: bool = True,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """The weighted path sum of every example, evaluated in bounded chunks.

    Args:
        forward_func: The model.
        inputs: The inputs ``x``, each ``(N, ...)``.
        references: A pool of references, each ``(M, ...)`` matching ``inputs``.
        reference_index: ``(R,)`` index into the pool: the reference of each row.
        rows: ``(R,)`` index into the batch: the example of each row.
        alphas: ``(R,)`` position of each row on its path, 0 at the reference.
        weights: ``(R,)`` weight of each row in its example's sum.
        internal_batch_size: Rows evaluated per forward/backward pass; ``None``
            evaluates all rows at once.
        multiply_by_inputs: Multiply gradients by ``x - x'`` (global attribution)
            or not (local attribution).

    Returns:
        ``(sums, row_totals)``: ``sums`` has one ``(N, ...)`` tensor per input,
        ``sum_r w_r g_r`` over the rows of each example; ``row_totals`` is the
        ``(R,)`` unweighted total of each row's term ``g_r`` over every feature,
        from which sampling methods estimate their standard error.
    """
    n = inputs[0].shape[0]
    size = (
        len(rows)
        if internal_batch_size is None
        else check_positive_int("internal_batch_size", internal_batch_size)
    )
    sums = tuple(torch.zeros_like(x) for x in inputs)
    totals = torch.zeros(len(rows), dtype=inputs[0].dtype, device=inputs[0].device)
    for start in range(0, len(rows), size):
        stop = start + size
        r = rows[start:stop]
        ref = tuple(p[reference_index[start:stop].to(p.device)] for p in references)
        x = tuple(t[r.to(t.device)] for t in inputs)
        steps = tuple(xi - ri for xi, ri in zip(x, ref))
        points = tuple(
            (ri + _column(alphas[start:stop], ri) * si).detach().requires_grad_()
            for ri, si in zip(ref, steps)
        )
        grads = compute_gradients(
            forward_func,
            points,
            target_ind=select_target(target, r),
            additional_forward_args=select_additional_args(
                additional_forward_args, r, n
            ),
        )
        w = weights[start:stop]
        for k, (g, s) in enumerate(zip(grads, steps)):
            term = g * s if multiply_by_inputs else g
            totals[start:stop] += term.reshape(len(r), -1).sum(1).to(totals.dtype)
            sums[k].index_add_(0, r.to(sums[k].device), term * _column(w, term))
    return sums, totals


def _column(values: Tensor, like: Tensor) -> Tensor:
    """``values`` shaped ``(R, 1, ..., 1)`` to broadcast against ``like``."""
    return values.to(device=like.device, dtype=like.dtype).reshape(
        -1, *([1] * (like.dim() - 1))
    )
