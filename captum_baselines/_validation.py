"""Argument checks shared by every public function.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument and
says what was expected, instead of letting a NaN or a deep torch traceback reach
the user.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

ValueRange = tuple[Any, Any]


def check_tensor(name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_finite(name: str, tensor: Tensor) -> None:
    """Raises if ``tensor`` holds NaN or infinite values."""
    if tensor.is_floating_point() or tensor.is_complex():
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"`{name}` contains NaN or infinite values")


def check_inputs(name: str, inputs: Any) -> tuple[Tensor, ...]:
    """Returns ``inputs`` as a tuple of finite tensors with one shared batch size."""
    tensors = inputs if isinstance(inputs, tuple) else (inputs,)
    if len(tensors) == 0:
        raise ValueError(f"`{name}` must hold at least one tensor")
    for i, t in enumerate(tensors):
        label = name if len(tensors) == 1 else f"{name}[{i}]"
        check_tensor(label, t)
        if t.dim() == 0:
            raise ValueError(f"`{label}` must have a batch dimension, got a scalar")
        if t.shape[0] == 0:
            raise ValueError(f"`{label}` is empty (batch size 0)")
        check_finite(label, t)
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        shapes = [tuple(t.shape) for t in tensors]
        raise ValueError(
            f"every tensor of `{name}` must share the batch size: {shapes}"
        )
    return tensors


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1, got {value}")
    return int(value)


def check_optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else check_positive_int(name, value)


def check_nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}")
    value = float(value)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"`{name}` must be finite and >= 0, got {value}")
    return value


def check_generator(name: str, generator: Any) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        got = type(generator).__name__
        raise TypeError(f"`{name}` must be a torch.Generator or None, got {got}")
    return generator


def resolve_value_range(
    value_range: ValueRange, inputs: Tensor, name: str = "value_range"
) -> tuple[Tensor, Tensor]:
    """Returns ``(low, high)`` as tensors on the inputs' device and dtype.

    ``low`` and ``high`` may be floats or tensors broadcastable to one example
    (``inputs.shape[1:]``), e.g. ``(C, 1, 1)`` per-channel bounds.
    """
    if not isinstance(value_range, Sequence) or len(value_range) != 2:
        raise TypeError(f"`{name}` must be a pair (low, high), got {value_range!r}")
    dtype = inputs.dtype if inputs.is_floating_point() else torch.get_default_dtype()
    bounds = []
    for label, bound in zip(("low", "high"), value_range):
        if isinstance(bound, Tensor):
            t = bound.detach().to(device=inputs.device, dtype=dtype)
        elif isinstance(bound, numbers.Real) and not isinstance(bound, bool):
            t = torch.tensor(float(bound), device=inputs.device, dtype=dtype)
        else:
            raise TypeError(
                f"`{name}` {label} must be a float or a tensor, "
                f"got {type(bound).__name__}"
            )
        try:
            torch.broadcast_shapes(t.shape, inputs.shape[1:])
        except RuntimeError:
            raise ValueError(
                f"`{name}` {label} of shape {tuple(t.shape)} does not broadcast to "
                f"one example of shape {tuple(inputs.shape[1:])}"
            ) from None
        if t.dim() > inputs.dim() - 1:
            raise ValueError(
                f"`{name}` {label} of shape {tuple(t.shape)} has more dimensions than "
                f"one example of shape {tuple(inputs.shape[1:])}"
            )
        check_finite(f"{name} {label}", t)
        bounds.append(t)
    low, high = bounds
    if bool((low > high).any()):
        raise ValueError(f"`{name}` must satisfy low <= high everywhere")
    return low, high
