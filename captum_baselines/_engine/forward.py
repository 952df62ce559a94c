"""The checked forward: the model's score at ``target``, row by row, in chunks.

Every method, metric and plot that needs ``f(x)`` without a gradient (the ends
of a path, the references of Expected Gradients, the points of a removal curve)
goes through :func:`forward_rows`.  A *row* is one point to evaluate, belonging
to one example of the batch; the example decides the row's target and its
per-example ``additional_forward_args``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from captum._utils.common import _run_forward, _select_targets
from torch import Tensor

from .._validation import check_optional_positive_int
from .targets import TargetError, check_target, select_additional_args, select_target

Score = Literal["logit", "probability"]
SCORES: tuple[str, ...] = ("logit", "probability")

#: ``points_of(rows)``: the points of the rows ``rows`` (a slice of all rows).
PointsOf = Callable[[slice], tuple[Tensor, ...]]


def check_score(score: Any, name: str = "score") -> Score:
    """``score`` if it is ``"logit"`` or ``"probability"``, else a ``ValueError``."""
    if score not in SCORES:
        raise ValueError(f'`{name}` must be "logit" or "probability", got {score!r}')
    return score  # type: ignore[no-any-return]


def scored(forward_func: Callable[..., Any], score: Score) -> Callable[..., Any]:
    """``forward_func`` itself for ``"logit"``; its softmax over dimension 1 for
    ``"probability"`` (gradients then flow through the softmax)."""
    if score == "logit":
        return forward_func

    def probability(*args: Any, **kwargs: Any) -> Tensor:
        output = forward_func(*args, **kwargs)
        if not isinstance(output, Tensor) or output.dim() < 2 or output.shape[1] < 2:
            shape = tuple(output.shape) if isinstance(output, Tensor) else None
            raise ValueError(
                '`score="probability"` needs class scores of shape (N, classes >= 2), '
                f'got output shape {shape}; use score="logit"'
            )
        return torch.softmax(output, dim=1)

    return probability


def row_values(output: Any, target: Any, n_rows: int) -> Tensor:
    """``(R,)``: the output at ``target`` of each row, summed if it has several
    elements (a model returning one scalar for the batch gives it to every row)."""
    if not isinstance(output, Tensor):
        output = torch.as_tensor(output)
    selected = _select_targets(output, target) if target is not None else output
    if selected.dim() == 0:
        return selected.expand(n_rows)
    return selected.reshape(n_rows, -1).sum(1)


def require_one_value(output: Tensor, n_rows: int) -> None:
    """Gradients need one value per row: else ``target`` is missing."""
    if output.dim() > 0 and output.numel() != n_rows:
        raise TargetError(
            "`target` is required: the model returns "
            f"{output.numel() // max(n_rows, 1)} values per example"
        )


def forward_rows(
    forward_func: Callable[..., Any],
    points_of: PointsOf,
    examples: Tensor,
    n_examples: int,
    target: Any = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
) -> Tensor:
    """``(R,)``: ``f`` at ``target`` for every row, without gradients.

    Args:
        points_of: Gives the points of a slice of the rows.
        examples: ``(R,)`` the example of each row.
        n_examples: The batch size (for per-example ``additional_forward_args``).
        internal_batch_size: Rows per forward pass; ``None``: all at once.
    """
    n_rows = len(examples)
    size = check_optional_positive_int("internal_batch_size", internal_batch_size)
    size = size or max(n_rows, 1)
    values = []
    with torch.no_grad():
        for start in range(0, n_rows, size):
            rows = slice(start, min(start + size, n_rows))
            e = examples[rows]
            output = _run_forward(
                forward_func,
                points_of(rows),
                None,
                select_additional_args(additional_forward_args, e, n_examples),
            )
            if start == 0 and isinstance(output, Tensor) and output.dim() > 0:
                check_target_shape(target, output, n_examples)
            values.append(row_values(output, select_target(target, e), len(e)))
    return torch.cat(values) if values else torch.zeros(0)


def check_target_shape(target: Any, output: Tensor, n_examples: int) -> None:
    """Checks the targets of all ``n_examples`` against one chunk's output shape."""
    check_target(target, output[:1].expand(n_examples, *output.shape[1:]), n_examples)


def probe_target(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    target: Any,
    additional_forward_args: Any = None,
    require_target: bool = True,
) -> None:
    """Checks ``target`` with one forward pass of the first example, before a
    method hands the model to code that would fail on a bad target deep inside.

    With ``require_target``, a model returning several values per example needs
    a target.
    """
    n = inputs[0].shape[0]
    first = torch.zeros(1, dtype=torch.long, device=inputs[0].device)
    with torch.no_grad():
        output = _run_forward(
            forward_func,
            tuple(x[:1] for x in inputs),
            None,
            select_additional_args(additional_forward_args, first, n),
        )
    if not isinstance(output, Tensor):
        raise TypeError(
            f"`forward_func` must return a tensor, got {type(output).__name__}"
        )
    if output.dim() > 0:
        check_target_shape(target, output, n)
        if target is None and require_target:
            require_one_value(output, 1)


def forward_inputs(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    target: Any = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
) -> Tensor:
    """``(N,)``: ``f(x)`` at ``target`` per example; checks ``target`` first."""
    n = inputs[0].shape[0]
    return forward_rows(
        forward_func,
        lambda rows: tuple(x[rows] for x in inputs),
        torch.arange(n, device=inputs[0].device),
        n,
        target,
        additional_forward_args,
        internal_batch_size,
    )


__all__ = [
    "SCORES",
    "Score",
    "check_score",
    "check_target_shape",
    "probe_target",
    "forward_inputs",
    "forward_rows",
    "require_one_value",
    "row_values",
    "scored",
]
