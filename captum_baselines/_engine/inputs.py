"""One convention for ``inputs`` and ``baselines``, shared by every method and plot.

A *baseline* (per-example path start) is accepted in Captum's forms and one more:

- ``None``: zeros;
- a number, or a tensor with a single element: that constant everywhere;
- a tensor shaped like one example, ``inputs.shape[1:]``: shared by every example;
- a tensor ``(1, *inputs.shape[1:])``: the same;
- a tensor shaped like ``inputs``: one baseline per example;
- for a multi-input model, a tuple of the above, one per input tensor.

A *reference pool* (Expected Gradients, ``from_data``) is a batch of ``M``
references ``(M, *inputs.shape[1:])``; ``None`` (zeros), a number or a tensor
shaped like one example is a pool of one.  Both go through the same per-tensor
check, so a tensor that does not fit one example is rejected with the same
message everywhere.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from captum._utils.common import _format_output, _is_tuple
from torch import Tensor

from .._validation import check_finite, check_inputs, check_optional_positive_int
from .targets import check_target_form


def format_inputs(inputs: Any, name: str = "inputs") -> tuple[Tensor, ...]:
    """``inputs`` as a tuple of finite floating-point tensors sharing a batch size."""
    tensors = check_inputs(name, inputs)
    for i, t in enumerate(tensors):
        if not t.is_floating_point():
            label = name if len(tensors) == 1 else f"{name}[{i}]"
            raise TypeError(f"`{label}` must be floating point, got {t.dtype}")
    return tensors


def _label(name: str, i: int, n_inputs: int) -> str:
    return name if n_inputs == 1 else f"{name}[{i}]"


def _per_input(value: Any, inputs: tuple[Tensor, ...], name: str) -> tuple[Any, ...]:
    items = value if isinstance(value, tuple) else (value,) * len(inputs)
    if len(items) != len(inputs):
        raise ValueError(
            f"`{name}` must hold one entry per input tensor ({len(inputs)}), "
            f"got {len(items)}"
        )
    return items


def _batch_of_examples(label: str, value: Any, x: Tensor) -> Tensor:
    """``value`` as a batch ``(k, *x.shape[1:])`` on ``x``'s device and dtype."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = torch.tensor(float(value), dtype=x.dtype, device=x.device)
    if not isinstance(value, Tensor):
        raise TypeError(
            f"`{label}` must be None, a number or a tensor, got {type(value).__name__}"
        )
    example = tuple(x.shape[1:])
    if value.numel() == 1 and value.dim() <= 1:
        batch = value.reshape(1, *([1] * len(example))).expand(1, *example)
    elif tuple(value.shape) == example:
        batch = value.unsqueeze(0)
    elif value.dim() == x.dim() and tuple(value.shape[1:]) == example:
        batch = value
    else:
        raise ValueError(
            f"`{label}` of shape {tuple(value.shape)} does not fit `inputs` of shape "
            f"{tuple(x.shape)}: give a number, a tensor shaped like one example "
            f"{example}, or a batch of them (k, {', '.join(map(str, example))})"
        )
    if batch.shape[0] == 0:
        raise ValueError(f"`{label}` is empty: it holds no baseline")
    check_finite(label, batch)
    return batch.detach().to(device=x.device, dtype=x.dtype)


def format_baselines(
    baselines: Any, inputs: tuple[Tensor, ...], name: str = "baselines"
) -> tuple[Tensor, ...]:
    """One baseline per example, expanded to the shape of each input tensor."""
    formatted = []
    for i, (b, x) in enumerate(zip(_per_input(baselines, inputs, name), inputs)):
        if b is None:
            formatted.append(torch.zeros_like(x))
            continue
        label = _label(name, i, len(inputs))
        batch = _batch_of_examples(label, b, x)
        if batch.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"`{label}` holds {batch.shape[0]} baselines but `inputs` holds "
                f"{x.shape[0]} examples: give one baseline per example or one for all"
            )
        formatted.append(batch.expand(x.shape))
    return tuple(formatted)


def format_reference_pool(
    references: Any, inputs: tuple[Tensor, ...], name: str = "baselines"
) -> tuple[Tensor, ...]:
    """A pool of ``M`` references per input tensor, with the same ``M`` for all."""
    pool = []
    for i, (r, x) in enumerate(zip(_per_input(references, inputs, name), inputs)):
        label = _label(name, i, len(inputs))
        pool.append(_batch_of_examples(label, 0.0 if r is None else r, x))
    sizes = [len(p) for p in pool]
    if any(s != sizes[0] for s in sizes):
        raise ValueError(
            f"every tensor of `{name}` must hold the same number of references, "
            f"got {sizes}"
        )
    return tuple(pool)


def format_path_arguments(
    inputs: Any, baselines: Any, target: Any, internal_batch_size: Any
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The checks every path method makes before any work: the inputs and their
    baselines formatted, the target's form and the batch size checked."""
    x = format_inputs(inputs)
    b = format_baselines(baselines, x)
    check_target_form(target, x[0].shape[0])
    check_optional_positive_int("internal_batch_size", internal_batch_size)
    return x, b


def format_result(inputs: Any, attributions: tuple[Tensor, ...], *extras: Any) -> Any:
    """Captum's return convention: the attributions shaped as ``inputs`` came (a
    tuple if and only if ``inputs`` was one), followed by any ``extras``."""
    result = _format_output(_is_tuple(inputs), attributions)
    return (result, *extras) if extras else result


__all__ = [
    "format_baselines",
    "format_inputs",
    "format_path_arguments",
    "format_reference_pool",
    "format_result",
]
