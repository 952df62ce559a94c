"""The image-degradation curve of PatternNet / PGIG.

Kindermans et al., "Learning how to explain neural networks: PatternNet and
PatternAttribution", ICLR 2018, https://arxiv.org/abs/1705.05598, and
Schwarzenberg et al., "Pattern-Guided Integrated Gradients", ICML-W 2020,
https://arxiv.org/abs/2007.10685

The image is tiled into ``patch_size x patch_size`` patches, ranked by their
summed attribution.  Step ``j`` replaces the ``j`` most relevant patches, each by
its own per-channel mean, and scores the model.  Unlike the PGIG reference code,
the top-ranked patch is the first to go, and every channel is replaced whatever
the sign of its mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum._utils.typing import TargetType
from torch import Tensor

from .._validation import check_nonnegative, check_positive_int
from .removal import (
    Fill,
    Score,
    check_score,
    fill_values,
    position_scores,
    ranks_descending,
    removal_curve,
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
    absolute: bool = False,
    blur_sigma: float = 20.0,
    score: Score = "probability",
    relative: bool = True,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    progress: bool = False,
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
            ``"blur"``, a tensor broadcastable to ``inputs``, or a callable.
        absolute: Rank patches by the sum of ``|a|`` instead of the signed sum.
        blur_sigma: Sigma of ``fill="blur"``, in pixels.
        score: ``"probability"`` (softmax at ``target``, the benchmark's choice)
            or ``"logit"``.
        relative: Divide by the untouched input's score, so curves start at 1.
        additional_forward_args: Passed to the model after the inputs.
        internal_batch_size: Degraded images per forward pass; ``None`` uses ``N``.
        progress: Show a tqdm bar.

    Returns:
        ``(N, n_patches + 1)`` tensor: column ``j`` is the score after replacing
        the ``j`` most relevant patches; column 0 is the untouched input.

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
    patch_size = check_positive_int("patch_size", patch_size)
    blur_sigma = check_nonnegative("blur_sigma", blur_sigma)
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
    patch_ranks = ranks_descending(patch_relevance)
    pixel_ranks = patch_ranks[:, patch_of]

    if isinstance(fill, str) and fill == "mean":
        replacement = patch_means(x, patch_of, total)
    else:
        replacement = fill_values(fill, x, blur_sigma)

    def mask_for(examples: Tensor, steps: Tensor) -> Tensor:
        return pixel_ranks[examples] < steps[:, None]

    removes_nothing = torch.arange(n_patches + 1) == 0
    return removal_curve(
        forward_func,
        x,
        replacement,
        mask_for,
        removes_nothing,
        target,
        additional_forward_args,
        score,
        relative,
        internal_batch_size,
        progress,
        desc="degradation",
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
