"""Targets and per-example forward arguments, in every form Captum accepts.

One target check for the whole package: an index that the model's output does not
have is reported as a :class:`TargetError` naming ``target``, which is both a
``ValueError`` (this package's convention for bad arguments) and an
``AssertionError`` (what Captum raises, so drop-in code that catches it still
works).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


class TargetError(ValueError, AssertionError):
    """A ``target`` that does not index the model's output."""


def select_target(target: Any, rows: Tensor) -> Any:
    """The target of each row, given a target in any of Captum's forms."""
    if target is None or isinstance(target, (int, tuple)):
        return target
    if isinstance(target, Tensor):
        if target.numel() == 1:
            return int(target.item())
        return target[rows.to(target.device)]
    if isinstance(target, list):
        return [target[i] for i in rows.tolist()]
    raise TypeError(
        "`target` must be None, an int, a tuple, a tensor or a list, "
        f"got {type(target).__name__}"
    )


def select_additional_args(args: Any, rows: Tensor, n_examples: int) -> Any:
    """Per-example tensors of ``additional_forward_args`` taken at ``rows``.

    Like Captum, a tensor whose first dimension is the batch size is treated as
    per-example; anything else is passed to every row unchanged.
    """
    if args is None:
        return None
    as_tuple = args if isinstance(args, tuple) else (args,)
    selected = tuple(
        a[rows.to(a.device)]
        if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n_examples
        else a
        for a in as_tuple
    )
    return selected


def check_target(target: Any, output: Tensor, n_examples: int) -> None:
    """Raises a clear error for targets that do not index ``output``."""
    if target is None:
        return
    if output.dim() < 2:
        raise TargetError(
            "`target` was given but the model returns one value per example "
            f"(output shape {tuple(output.shape)}); pass target=None"
        )
    if isinstance(target, tuple):
        index = target
        if len(index) != output.dim() - 1 or any(
            not -s <= i < s for i, s in zip(index, output.shape[1:])
        ):
            raise TargetError(
                f"`target` {target} does not index an output of shape "
                f"{tuple(output.shape)}"
            )
        return
    n_outputs = output.shape[1]
    if isinstance(target, int):
        values = [target]
    elif isinstance(target, Tensor):
        if target.numel() not in (1, n_examples):
            raise TargetError(
                f"`target` tensor must hold 1 or {n_examples} (batch size) values, "
                f"got {target.numel()}"
            )
        values = target.reshape(-1).tolist()
    elif isinstance(target, list):
        if len(target) != n_examples:
            raise TargetError(
                f"`target` list must have one entry per example ({n_examples}), "
                f"got {len(target)}"
            )
        values = [t for t in target if isinstance(t, int)]
    else:
        raise TypeError(
            "`target` must be None, an int, a tuple, a tensor or a list, "
            f"got {type(target).__name__}"
        )
    bad = [v for v in values if not -n_outputs <= int(v) < n_outputs]
    if bad:
        raise TargetError(
            f"`target` {bad[0]} is out of range for a model with {n_outputs} outputs"
        )
