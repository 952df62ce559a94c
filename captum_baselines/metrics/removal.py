"""What every removal curve shares: feature scores, the removal order, fills,
the scoring loop.

A removal curve evaluates the model on copies of each input from which a growing
set of features has been replaced, and reports the target's score relative to
the untouched input.  The curves differ in *which* features go at each step
(most or least relevant first, pixels, boxes or patches) and in *how* they are
replaced (a fixed value per feature, or Noisy Linear Imputation from the kept
pixels); :func:`removal_curve` runs the rest once, in memory-bounded chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, Union

import torch
from captum._utils.typing import TargetType
from torch import Tensor
from tqdm.auto import tqdm

from .._engine.forward import Score, forward_rows, scored
from .._hooks import eval_mode
from .._validation import (
    check_finite,
    check_inputs,
    check_optional_positive_int,
    check_tensor,
)
from .imputation import noisy_linear_imputation

Fill = Union[str, Tensor, Callable[[Tensor], Tensor]]
Direction = Literal["morf", "lerf"]

#: ``replace(examples, removed)`` -> ``(R, C, P)``: the rows of ``examples``
#: (``(R,)`` indices) with the features of ``removed`` (``(R, 1, P)`` bool)
#: replaced.
Replace = Callable[[Tensor, Tensor], Tensor]

#: Elements per imputation call of ``fill="road"``: imputing many rows at once
#: amortizes the solver's per-iteration overhead on small images.
IMPUTATION_ELEMENTS = 1 << 21

#: ``mask_for(examples, steps)`` -> ``(R, P)`` bool: the features removed in each
#: row, a row being one (example, step) pair.
MaskFor = Callable[[Tensor, Tensor], Tensor]


def single_input(name: str, inputs: Any) -> Tensor:
    """The one tensor of ``inputs`` (a tensor or a 1-tuple), checked."""
    tensors = check_inputs(name, inputs)
    if len(tensors) != 1:
        raise TypeError(
            f"`{name}` must be a single tensor: removal curves do not support "
            f"multi-input models (got a tuple of {len(tensors)} tensors)"
        )
    x = tensors[0]
    if not x.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(
            f"`{name}` must be (N, features) or (N, C, ...), got shape {tuple(x.shape)}"
        )
    return x


def channel_view(x: Tensor) -> Tensor:
    """``x`` as ``(N, C, P)``: channels, then positions; ``(N, D)`` has one channel."""
    if x.dim() == 2:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def position_scores(
    attributions: Any, inputs: Tensor, absolute: bool, name: str = "attributions"
) -> Tensor:
    """``(N, P)`` relevance of each position: the channel sum of the attributions.

    Accepts attributions shaped like ``inputs``, or one map per example shaped
    ``(N, 1, *spatial)`` or ``(N, *spatial)`` (e.g. an upsampled Grad-CAM).
    ``absolute=True`` sums ``|a|`` over channels, otherwise the signed values.
    """
    if isinstance(attributions, tuple) and len(attributions) == 1:
        attributions = attributions[0]
    a = check_tensor(name, attributions)
    check_finite(name, a)
    n = inputs.shape[0]
    spatial = inputs.shape[2:] if inputs.dim() > 2 else inputs.shape[1:]
    if a.shape == inputs.shape:
        a = channel_view(a)
    elif inputs.dim() > 2 and a.shape in (
        torch.Size((n, 1, *spatial)),
        torch.Size((n, *spatial)),
    ):
        a = a.reshape(n, 1, -1)
    else:
        allowed = [tuple(inputs.shape)]
        if inputs.dim() > 2:
            allowed += [(n, 1, *spatial), (n, *spatial)]
        raise ValueError(
            f"`{name}` must have one of the shapes {allowed}, got {tuple(a.shape)}"
        )
    a = a.detach().to(device=inputs.device)
    if absolute:
        a = a.abs()
    return a.sum(1)


def check_direction(direction: Any) -> Direction:
    if direction not in ("morf", "lerf"):
        raise ValueError(
            f'`direction` must be "morf" (most relevant first) or "lerf" (least '
            f"relevant first), got {direction!r}"
        )
    return direction  # type: ignore[no-any-return]


def removal_ranks(scores: Tensor, direction: Direction = "morf") -> Tensor:
    """``(N, P)`` position of each feature in the removal order (0 goes first).

    ``"morf"`` removes the most relevant first, ``"lerf"`` the least relevant;
    ties go in index order either way, so a constant map gives the same curve
    in both directions.
    """
    descending = direction == "morf"
    order = torch.sort(scores, dim=1, descending=descending, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(scores.shape[1], device=scores.device)
    ranks.scatter_(1, order, positions.expand_as(order).contiguous())
    return ranks


def replacement(
    fill: Fill,
    inputs: Tensor,
    blur_sigma: float,
    noise_std: float,
    generator: torch.Generator | None,
    mean: Tensor | None = None,
) -> Replace:
    """How a removal curve replaces the removed features.

    ``"road"`` imputes each ablated copy by Noisy Linear Imputation, which
    depends on which pixels are removed; every other fill is a fixed value per
    feature (:func:`fill_values`; ``mean`` overrides what ``"mean"`` means).
    """
    if isinstance(fill, str) and fill == "road":
        if inputs.dim() != 4:
            raise ValueError(
                '`fill="road"` needs (N, C, H, W) images, '
                f"got shape {tuple(inputs.shape)}"
            )
        n, c, height, width = inputs.shape

        def impute(examples: Tensor, removed: Tensor) -> Tensor:
            imputed = noisy_linear_imputation(
                inputs[examples],
                removed.reshape(len(examples), height, width),
                noise_std,
                generator=generator,
            )
            return imputed.reshape(len(examples), c, -1)

        return impute
    if mean is not None and isinstance(fill, str) and fill == "mean":
        values = mean
    else:
        values = fill_values(fill, inputs, blur_sigma)
    x, fixed = channel_view(inputs), channel_view(values)

    def substitute(examples: Tensor, removed: Tensor) -> Tensor:
        return torch.where(removed, fixed[examples], x[examples])

    return substitute


def fill_values(fill: Fill, inputs: Tensor, blur_sigma: float) -> Tensor:
    """The replacement of every feature, shaped like ``inputs``.

    ``"mean"`` is the same image's per-channel mean, ``"blur"`` its Gaussian blur
    (``blur_sigma`` pixels), a tensor must broadcast to ``inputs`` and a callable
    receives ``inputs`` and returns such a tensor.
    """
    if isinstance(fill, str):
        if fill == "mean":
            view = channel_view(inputs)
            means = view.mean(2, keepdim=True).expand_as(view)
            return means.reshape(inputs.shape)
        if fill == "blur":
            if inputs.dim() < 3:
                raise ValueError(
                    '`fill="blur"` needs spatial inputs (N, C, H, W), '
                    f"got shape {tuple(inputs.shape)}"
                )
            from captum_baselines.baselines import blur

            return blur(inputs, blur_sigma).to(inputs.dtype)
        raise ValueError(
            f'`fill` must be "mean", "blur", "road", a tensor or a callable, '
            f"got {fill!r}"
        )
    if callable(fill) and not isinstance(fill, Tensor):
        values = fill(inputs)
        if not isinstance(values, Tensor):
            raise TypeError(
                f"the `fill` callable must return a tensor, got {type(values).__name__}"
            )
    elif isinstance(fill, Tensor):
        values = fill
    else:
        raise TypeError(
            '`fill` must be "mean", "blur", "road", a tensor or a callable, '
            f"got {type(fill).__name__}"
        )
    values = values.detach().to(device=inputs.device, dtype=inputs.dtype)
    try:
        values = values.expand(inputs.shape)
    except RuntimeError:
        raise ValueError(
            f"`fill` of shape {tuple(values.shape)} does not broadcast to the inputs' "
            f"shape {tuple(inputs.shape)}"
        ) from None
    check_finite("fill", values)
    return values


def check_fractions(fractions: Any) -> Tensor:
    """``fractions`` as a 1-D tensor of values in [0, 1]; default 0, 0.1, ..., 1."""
    if fractions is None:
        return torch.linspace(0, 1, 11, dtype=torch.float64)
    if isinstance(fractions, Tensor):
        f = fractions.detach().to(device="cpu", dtype=torch.float64)
    elif isinstance(fractions, Sequence):
        f = torch.tensor([float(v) for v in fractions], dtype=torch.float64)
    else:
        raise TypeError(
            "`fractions` must be a sequence or a 1-D tensor of floats, "
            f"got {type(fractions).__name__}"
        )
    if f.dim() != 1 or f.numel() == 0:
        raise ValueError(f"`fractions` must be non-empty and 1-D, got {tuple(f.shape)}")
    if not bool(torch.isfinite(f).all()) or bool((f < 0).any() | (f > 1).any()):
        raise ValueError(f"`fractions` must lie in [0, 1], got {f.tolist()}")
    return f


def removal_curve(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    replace: Replace,
    mask_for: MaskFor,
    removes_nothing: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    score: Score,
    relative: bool,
    internal_batch_size: int | None,
    show_progress: bool,
    desc: str,
    replace_rows: int | None = None,
) -> Tensor:
    """``(N, S)`` scores after each of ``S`` removal steps.

    Args:
        replace: Builds the ablated rows (see :data:`Replace`).
        mask_for: The removed positions of each (example, step) row.
        removes_nothing: ``(S,)`` bool, steps that remove no feature; their score
            is the untouched input's (exactly 1 when ``relative``), not re-evaluated.
        internal_batch_size: Rows per forward pass; ``None`` uses the batch size,
            so memory stays that of one forward of ``inputs``.
        replace_rows: Rows per ``replace`` call, if more than a forward pass's.
    """
    n = inputs.shape[0]
    chunk = check_optional_positive_int("internal_batch_size", internal_batch_size)
    chunk = chunk or n
    block = max(chunk, replace_rows or 0)
    scores = scored(forward_func, score)
    with eval_mode(forward_func):
        # the untouched inputs' scores; checks every target against the output
        reference = forward_rows(
            scores,
            lambda rows: (inputs[rows],),
            torch.arange(n, device=inputs.device),
            n,
            target,
            additional_forward_args,
            chunk,
        ).to(inputs.dtype)
    n_steps = removes_nothing.numel()
    curve = reference[:, None].repeat(1, n_steps)
    steps = torch.nonzero(~removes_nothing.cpu()).flatten()
    examples = torch.arange(n).repeat_interleave(len(steps))
    row_steps = steps.repeat(n)
    with (
        torch.no_grad(),
        eval_mode(forward_func),
        tqdm(total=len(examples), disable=not show_progress, desc=desc) as bar,
    ):
        for first in range(0, len(examples), block):
            e_block = examples[first : first + block].to(inputs.device)
            s_block = row_steps[first : first + block].to(inputs.device)
            removed = mask_for(e_block, s_block)[:, None, :]
            ablated = replace(e_block, removed).reshape(-1, *inputs.shape[1:])
            values = forward_rows(
                scores,
                partial(_rows, ablated),
                e_block.cpu(),
                n,
                target,
                additional_forward_args,
                chunk,
            )
            curve[e_block, s_block] = values.to(curve.dtype)
            bar.update(len(e_block))
    if relative:
        if bool((reference == 0).any()):
            raise ValueError(
                "the unablated score is 0 for some examples, so the curve cannot be "
                "relative to it; pass relative=False"
            )
        curve = curve / reference[:, None]
    return curve


def _rows(points: Tensor, rows: slice) -> tuple[Tensor, ...]:
    return (points[rows],)


def imputation_rows(fill: Fill, inputs: Tensor) -> int | None:
    """Rows per ``replace`` call: many for ``"road"``, else one forward's worth."""
    if isinstance(fill, str) and fill == "road":
        return max(1, IMPUTATION_ELEMENTS // max(1, inputs[0].numel()))
    return None
