"""PAIR's ``saliency`` package (the authors' Blur IG and Guided IG) driving a torch
model: the oracle of ``test_blur_ig``, ``test_guided_ig`` and ``test_idgi``.

``saliency`` works on one HWC image at a time in NumPy; the wrapper moves the
channels to the front for the model and back for the gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from saliency.core import INPUT_OUTPUT_GRADIENTS, BlurIG, GuidedIG
from torch import Tensor, nn


def call_model_function(
    model: nn.Module, target: int, visited: list[np.ndarray] | None = None
) -> Callable[..., dict[str, np.ndarray]]:
    """saliency's ``call_model_function``: gradients of ``model[:, target]``.

    Every point the reference asks about is appended to ``visited`` (HWC).
    """

    def call(
        batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None
    ) -> dict[str, np.ndarray]:
        batch = np.asarray(batch)
        if visited is not None:
            visited.extend(np.array(b) for b in batch)
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(batch, -1, 1)))
        # the model's own dtype, as a user's function would cast
        x = x.to(next(model.parameters()).dtype).requires_grad_()
        (gradient,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        return {INPUT_OUTPUT_GRADIENTS: np.moveaxis(gradient.numpy(), 1, -1)}

    return call


def hwc(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().movedim(0, -1).numpy())


def chw(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 0)))


@contextlib.contextmanager
def numpy2_quantile() -> Iterator[None]:
    """saliency 0.2.1 calls ``np.quantile(..., interpolation=...)``, which NumPy 2
    removed: translate it to ``method=`` while the reference runs."""
    original = np.quantile

    def quantile(a: Any, q: Any, *args: Any, interpolation: Any = None, **kw: Any):
        if interpolation is not None:
            kw["method"] = interpolation
        return original(a, q, *args, **kw)

    np.quantile = quantile  # type: ignore[assignment]
    try:
        yield
    finally:
        np.quantile = original  # type: ignore[assignment]


def blur_ig(
    model: nn.Module,
    x: Tensor,
    targets: list[int],
    max_sigma: float = 50.0,
    n_steps: int = 100,
    grad_step: float = 0.01,
    sqrt: bool = False,
) -> Tensor:
    """``saliency.core.BlurIG`` of each example of ``x`` ``(N, C, H, W)``."""
    return torch.stack(
        [
            chw(
                BlurIG().GetMask(
                    hwc(xi),
                    call_model_function(model, t),
                    max_sigma=max_sigma,
                    steps=n_steps,
                    grad_step=grad_step,
                    sqrt=sqrt,
                )
            )
            for xi, t in zip(x, targets)
        ]
    )


def guided_ig(
    model: nn.Module,
    x: Tensor,
    baselines: Tensor,
    targets: list[int],
    n_steps: int = 200,
    fraction: float = 0.25,
    max_dist: float = 0.02,
    visited: list[list[np.ndarray]] | None = None,
) -> Tensor:
    """``saliency.core.GuidedIG`` of each example; ``visited`` collects, per
    example, the path points where it took gradients (HWC)."""
    masks = []
    with numpy2_quantile():
        for xi, bi, t in zip(x, baselines, targets):
            points: list[np.ndarray] | None = None
            if visited is not None:
                points = []
                visited.append(points)
            masks.append(
                chw(
                    GuidedIG().GetMask(
                        hwc(xi),
                        call_model_function(model, t, points),
                        x_baseline=hwc(bi),
                        x_steps=n_steps,
                        fraction=fraction,
                        max_dist=max_dist,
                    )
                )
            )
    return torch.stack(masks)
