r"""The uniform-output baseline of Lerma & Lucas (2022).

A baseline should mean "I don't know": fed to the network, its class
probabilities should be uniform (or any chosen ``target_probs``).  Starting from
a baseline ``b0`` (e.g. black), this module minimises, per example::

    lam * max_k |softmax(f(b))_k - t_k|  +  (1 - lam) * mean_i ((b_i - b0_i) / w_i)^2

with ``b`` kept inside ``[low, high]`` and ``w = high - low`` the width of the
valid range.  Dividing by ``w`` measures the distance to ``b0`` in fractions of
the valid range, so that both terms lie in [0, 1] and ``lam`` means the same
whatever the input normalization (pixels in [0, 1], in [0, 255], or
ImageNet-normalized per channel).

RMSprop runs on the gray levels ``255 (b - low) / w`` of the range, so that its
``lr`` is a step in gray levels whatever the normalization, as in the paper
(pixels 0-255, RMSprop, lr 0.1); keeping ``b`` in range is clamping the gray
levels to [0, 255] after each step.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import _run_forward
from torch import Tensor
from tqdm.auto import tqdm

from ._hooks import eval_mode
from ._validation import (
    ValueRange,
    check_finite,
    check_positive_int,
    check_tensor,
    resolve_value_range,
)

GREY_LEVELS = 255.0


def uniform_output(
    forward_func: Callable[..., Any],
    start: Tensor,
    target_probs: Tensor | None = None,
    lam: float = 0.9,
    n_iter: int = 200,
    lr: float = 0.1,
    value_range: ValueRange = (0.0, 1.0),
    show_progress: bool = False,
    additional_forward_args: Any = None,
) -> Tensor:
    r"""A baseline on which the model's softmax output is (nearly) ``target_probs``.

    Lerma & Lucas, "Baseline Computation for Attribution Methods Based on
    Interpolated Inputs" (2022), https://arxiv.org/abs/2205.10900, section 3.
    Each example's baseline is optimized on its own (the loss is a sum of
    per-example terms and RMSprop acts element-wise) with RMSprop, deterministic
    for a deterministic model; put dropout layers in eval mode first.

    Args:
        forward_func (Callable): The model, returning logits ``(N, K)``; the
            softmax is taken here over dimension 1. The model is left as found:
            no gradient reaches its parameters and no flag changes.
        start (Tensor): The initial baselines ``b0``, ``(N, ...)``, e.g. the
            black baseline. Values outside ``value_range`` are clamped first.
        target_probs (Tensor, optional): The wanted probabilities, ``(K,)`` or
            ``(N, K)``, non-negative and summing to 1. Default: uniform
            ``1 / K``.
        lam (float, optional): Weight in [0, 1] of the output term against the
            distance to ``b0`` (measured in fractions of the valid range).
            The paper uses 0.9, the authors' code 0.99. Default: 0.9.
        n_iter (int, optional): RMSprop steps. Default: 200.
        lr (float, optional): RMSprop learning rate, in gray levels (1/255 of
            the valid range), as in the paper. Small models with few input
            features may need larger steps (e.g. 0.5). Default: 0.1.
        value_range (tuple, optional): ``(low, high)``, floats or tensors
            broadcastable to one example (e.g. ``(C, 1, 1)`` per-channel
            bounds for normalized inputs). Default: ``(0.0, 1.0)``.
        show_progress (bool, optional): Show a tqdm bar. Default: False.
        additional_forward_args (Any, optional): Passed to ``forward_func``
            after the baseline.

    Returns:
        *Tensor* shaped like ``start``: for each example the iterate with the
        lowest loss, inside ``value_range`` (the max term is not smooth, so
        the last iterate may oscillate around it).

    Examples::

        >>> low, high = cb.baselines.normalized_range(mean, std)
        >>> black = cb.baselines.black(images, value_range=(low, high))
        >>> baseline = cb.baselines.uniform_output(
        ...     model, black, value_range=(low, high), show_progress=True
        ... )
        >>> torch.softmax(model(baseline), 1)  # close to 1 / K everywhere
    """
    check_tensor("start", start)
    if not start.is_floating_point():
        raise TypeError(f"`start` must be floating point, got {start.dtype}")
    if start.dim() == 0 or start.shape[0] == 0:
        raise ValueError(f"`start` must be a non-empty batch, got {tuple(start.shape)}")
    check_finite("start", start)
    lam = _check_unit_interval("lam", lam)
    n_iter = check_positive_int("n_iter", n_iter)
    lr = _check_positive_real("lr", lr)
    low, high = resolve_value_range(value_range, start)
    width = high - low
    # a degenerate range (low == high) pins those features at low: their unit
    # coordinate is 0 and no gradient reaches it
    spread = width > 0

    def to_gray(b: Tensor) -> Tensor:
        u = (b - low) / torch.where(spread, width, torch.ones_like(width))
        return GREY_LEVELS * torch.where(spread, u, torch.zeros_like(u)).clamp(0, 1)

    def from_gray(v: Tensor) -> Tensor:
        return low + (v / GREY_LEVELS) * width

    n = start.shape[0]
    anchor = to_gray(start.detach())
    with eval_mode(forward_func):
        with torch.no_grad():
            probs = _probabilities(
                forward_func, from_gray(anchor), additional_forward_args
            )
        targets = _target_probs(target_probs, probs)

        def loss_per_example(v: Tensor) -> Tensor:
            p = _probabilities(forward_func, from_gray(v), additional_forward_args)
            output_term = (p - targets).abs().amax(dim=1)
            distance = (((v - anchor) / GREY_LEVELS) ** 2).reshape(n, -1).mean(dim=1)
            return lam * output_term + (1.0 - lam) * distance

        gray = anchor.clone().requires_grad_(True)
        optimizer = torch.optim.RMSprop([gray], lr=lr)
        best = anchor.clone()
        best_loss = torch.full(
            (n,), float("inf"), dtype=probs.dtype, device=probs.device
        )
        # n_iter steps, n_iter + 1 iterates: the loss of each is computed once,
        # on the forward pass whose gradient makes the next step
        for iteration in tqdm(
            range(n_iter + 1), desc="uniform_output", disable=not show_progress
        ):
            with torch.enable_grad():
                loss = loss_per_example(gray)
            with torch.no_grad():
                improved = loss < best_loss
                best[improved] = gray[improved]
                best_loss = torch.where(improved, loss, best_loss)
            if iteration < n_iter:
                (gray.grad,) = torch.autograd.grad(loss.sum(), gray)
                optimizer.step()
                with torch.no_grad():
                    gray.clamp_(0.0, GREY_LEVELS)
    return torch.minimum(torch.maximum(from_gray(best), low), high).detach()


def _probabilities(
    forward_func: Callable[..., Any], baseline: Tensor, additional_forward_args: Any
) -> Tensor:
    logits = _run_forward(forward_func, baseline, None, additional_forward_args)
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits)
        raise ValueError(
            f"`forward_func` must return logits of shape (N, K), got {shape}"
        )
    return torch.softmax(logits, dim=1)


def _target_probs(target_probs: Tensor | None, probs: Tensor) -> Tensor:
    """``target_probs`` checked and expanded to ``(N, K)`` like ``probs``."""
    n, k = probs.shape
    if target_probs is None:
        return torch.full((n, k), 1.0 / k, dtype=probs.dtype, device=probs.device)
    check_tensor("target_probs", target_probs)
    check_finite("target_probs", target_probs)
    t = target_probs.to(dtype=probs.dtype, device=probs.device)
    if t.shape not in ((k,), (n, k)):
        raise ValueError(
            f"`target_probs` must have shape ({k},) or ({n}, {k}), got {tuple(t.shape)}"
        )
    if bool((t < 0).any()) or not torch.allclose(
        t.sum(-1), torch.ones((), dtype=t.dtype, device=t.device), atol=1e-5
    ):
        raise ValueError("`target_probs` must be non-negative and sum to 1")
    return t.expand(n, k)


def _check_unit_interval(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1], got {value}")
    return float(value)


def _check_positive_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}")
    if not 0.0 < float(value) < float("inf"):
        raise ValueError(f"`{name}` must be finite and > 0, got {value}")
    return float(value)


__all__ = ["uniform_output"]
