"""The image-degradation curve of PatternNet / PGIG.

Kindermans et al., "Learning how to explain neural networks: PatternNet and
PatternAttribution", ICLR 2018, https://arxiv.org/abs/1705.05598, and
Schwarzenberg et al., "Pattern-Guided Integrated Gradients", ICML-W 2020,
https://arxiv.org/abs/2007.10685

The image is tiled into ``patch_size x patch_size`` patches, ranked by their
summed attribution.  Step ``j`` replaces the ``j`` most relevant patches, each by
its own per-channel mean, and scores the model.  Unlike the PGIG reference code,
the top-ranked patch is the first to go, and every channel is replaced whatever
the sign of its mean.  ``direction="lerf"`` replaces the least relevant patches
first, and ``fill="road"`` imputes the removed patches from the kept pixels
(Noisy Linear Imputation, as in ROAD).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum._utils.typing import TargetType
from torch import Tensor

from .._engine.forward import check_score
from .._validation import check_generator, check_nonnegative, check_positive_int
from .removal import (
    Direction,
    Fill,
    Score,
    check_direction,
    imputation_rows,
    position_scores,
    removal_curve,
    removal_ranks,
    replacement,
    single_input,
)


def degradation_curve(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    patch_size: int = 9,
    n_patches: int | None = 100,
    fill: Fill = "mean",
    *,
    direction: Direction = "morf",
    noise_std: float = 0.01,
    absolute: bool = False,
    blur_sigma: float = 20.0,
    score: Score = "probability",
    relative: bool = True,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> Tensor:
    r"""The model's score as the most relevant patches are replaced, one by one.

    Args:
        forward_func: The model.
        inputs: ``(N, C, H, W)`` images.
        attributions: Shaped like ``inputs``, or ``(N, 1, H, W)`` / ``(N, H, W)``.
        target: Output index, in any of Captum's ``TargetType`` forms.
        patch_size: Side of the square patches; the image is tiled from the top
            left, and patches on the right and bottom edges are cut to fit.
        n_patches: Number of patches to replace; ``None`` replaces them all.
        fill: ``"mean"``: each patch becomes its own per-channel mean (the
            benchmark's rule). Otherwise as in :func:`ablation_curve`:
            ``"blur"``, ``"road"`` (Noisy Linear Imputation), a tensor
            broadcastable to ``inputs``, or a callable.
        direction: ``"morf"`` (most relevant patches first, the default) or
            ``"lerf"`` (least relevant first; ties in index order).
        noise_std: Std of the noise of ``fill="road"``, in input units.
        absolute: Rank patches by the sum of ``|a|`` instead of the signed sum.
        blur_sigma: Sigma of ``fill="blur"``, in pixels.
        score: ``"probability"`` (softmax at ``target``, the benchmark's choice)
            or ``"logit"``.
        relative: Divide by the untouched input's score, so curves start at 1.
        additional_forward_args: Passed to the model after the inputs.
        internal_batch_size: Degraded images per forward pass; ``None`` uses ``N``.
        generator: Source of the noise of ``fill="road"``.
        show_progress: Show a tqdm bar.

    Returns:
        ``(N, n_patches + 1)`` tensor: column ``j`` is the score after replacing
        ``j`` patches (the most relevant ones for MoRF); column 0 is the
        untouched input.

    Examples::

        >>> curve = degradation_curve(model, images, attr, labels, n_patches=50)
        >>> area_under_curve(curve).mean()  # lower is better
    """
    x = single_input("inputs", inputs)
    if x.dim() != 4:
        raise ValueError(
            f"`inputs` must be (N, C, H, W) images, got shape {tuple(x.shape)}"
        )
    score = check_score(score)
    direction = check_direction(direction)
    patch_size = check_positive_int("patch_size", patch_size)
    blur_sigma = check_nonnegative("blur_sigma", blur_sigma)
    noise_std = check_nonnegative("noise_std", noise_std)
    check_generator("generator", generator)
    height, width = x.shape[2:]
    patch_of = patch_index(height, width, patch_size).to(x.device)
    total = int(patch_of.max()) + 1
    if n_patches is None:
        n_patches = total
    n_patches = check_positive_int("n_patches", n_patches)
    if n_patches > total:
        raise ValueError(
            f"`n_patches` is {n_patches} but a {height}x{width} image has only "
            f"{total} patches of size {patch_size}; pass n_patches <= {total} or None"
        )

    relevance = position_scores(attributions, x, absolute)
    patch_relevance = torch.zeros(
        x.shape[0], total, dtype=relevance.dtype, device=x.device
    ).index_add_(1, patch_of, relevance)
    patch_ranks = removal_ranks(patch_relevance, direction)
    pixel_ranks = patch_ranks[:, patch_of]
    is_mean = isinstance(fill, str) and fill == "mean"
    mean = patch_means(x, patch_of, total) if is_mean else None
    replace = replacement(fill, x, blur_sigma, noise_std, generator, mean=mean)

    def mask_for(examples: Tensor, steps: Tensor) -> Tensor:
        return pixel_ranks[examples] < steps[:, None]

    removes_nothing = torch.arange(n_patches + 1) == 0
    return removal_curve(
        forward_func,
        x,
        replace,
        mask_for,
        removes_nothing,
        target,
        additional_forward_args,
        score,
        relative,
        internal_batch_size,
        show_progress,
        desc=f"degradation ({direction})",
        replace_rows=imputation_rows(fill, x),
    )


def patch_index(height: int, width: int, patch_size: int) -> Tensor:
    """``(H * W,)`` index of the patch of each pixel, patches in row-major order."""
    per_row = -(-width // patch_size)
    rows = torch.arange(height) // patch_size
    cols = torch.arange(width) // patch_size
    return (rows[:, None] * per_row + cols[None, :]).reshape(-1)


def patch_means(inputs: Tensor, patch_of: Tensor, n_patches: int) -> Tensor:
    """``inputs`` with every pixel replaced by its patch's per-channel mean."""
    n, c = inputs.shape[:2]
    flat = inputs.reshape(n, c, -1)
    sums = torch.zeros(n, c, n_patches, dtype=inputs.dtype, device=inputs.device)
    sums.index_add_(2, patch_of, flat)
    counts = torch.bincount(patch_of, minlength=n_patches).to(inputs.dtype)
    return (sums / counts)[:, :, patch_of].reshape(inputs.shape)
