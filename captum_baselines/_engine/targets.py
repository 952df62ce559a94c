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


def check_target_form(target: Any, n_examples: int) -> None:
    """Checks the type and length of ``target`` before any work is done."""
    if target is None or isinstance(target, (int, tuple)):
        if isinstance(target, bool):
            raise TypeError("`target` must be an int, not a bool")
        return
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"`target` tensor must hold integers, got {target.dtype}")
        if target.numel() not in (1, n_examples):
            raise TargetError(
                f"`target` tensor must hold 1 or {n_examples} (batch size) values, "
                f"got {target.numel()}"
            )
        return
    if isinstance(target, list):
        if len(target) != n_examples:
            raise TargetError(
                f"`target` list must have one entry per example ({n_examples}), "
                f"got {len(target)}"
            )
        return
    raise TypeError(
        "`target` must be None, an int, a tuple, a tensor or a list, "
        f"got {type(target).__name__}"
    )


def check_target(target: Any, output: Tensor, n_examples: int) -> None:
    """Raises a :class:`TargetError` for targets that do not index ``output``.

    ``output`` is the model's output for ``n_examples`` rows, ``target`` the
    target of those rows (see :func:`select_target`).
    """
    check_target_form(target, n_examples)
    if target is None:
        return
    if output.dim() < 2:
        raise TargetError(
            "`target` was given but the model returns one value per example "
            f"(output shape {tuple(output.shape)}); pass target=None"
        )
    indices = (
        [target]
        if isinstance(target, (int, tuple))
        else target.reshape(-1).tolist()
        if isinstance(target, Tensor)
        else list(target)
    )
    for index in indices:
        index = index if isinstance(index, tuple) else (int(index),)
        if len(index) != output.dim() - 1 or any(
            not -s <= int(i) < s for i, s in zip(index, output.shape[1:])
        ):
            if output.dim() == 2 and len(index) == 1:
                raise TargetError(
                    f"`target` {index[0]} is out of range for a model with "
                    f"{output.shape[1]} outputs"
                )
            raise TargetError(
                f"`target` {index} does not index an output of shape "
                f"{tuple(output.shape)}"
            )
