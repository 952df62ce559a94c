"""Small image data that ships with scikit-learn: nothing is downloaded.

scikit-learn's 8x8 handwritten digits (1797 images, values 0..16) in three
variants that make the baseline literature's points on real data:

- ``"digits"``: white ink on black, as shipped.
- ``"inverted"``: black ink on white (``1 - x``); a black baseline cannot
  attribute black ink.
- ``"decoy"``: the top-left patch of side :func:`decoy_patch_size` (4 at
  32x32) set to ``label / 9``, a shortcut the classifier learns; attributions
  should find it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

Variant = Literal["digits", "inverted", "decoy"]


class DigitsSplit(NamedTuple):
    """Images ``(N, 1, size, size)`` in [0, 1] and their labels ``(N,)``."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def decoy_patch_size(size: int) -> int:
    """Side in pixels of the label-revealing patch of the ``"decoy"`` variant."""
    return max(1, size // 8)


def load_digits_images(
    variant: Variant = "inverted",
    size: int = 8,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DigitsSplit:
    """scikit-learn's digits as float32 image tensors, split into train and test.

    Args:
        variant: ``"digits"``, ``"inverted"`` or ``"decoy"`` (see the module doc).
        size: Side of the images; 8 is native, larger sizes are bilinear upsampling.
        test_fraction: Share of the images held out, drawn with ``seed``.
        seed: Seed of the split.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "the embedded digits need scikit-learn: pip install "
            "'captum-baselines[demo]' (or scikit-learn)"
        ) from error

    if variant not in ("digits", "inverted", "decoy"):
        raise ValueError(
            f"`variant` must be 'digits', 'inverted' or 'decoy', got {variant!r}"
        )
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}")
    if size < 8:
        raise ValueError(f"`size` must be >= 8, got {size}")
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target, dtype=torch.long)
    if size != 8:
        images = torch.nn.functional.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False
        ).clamp(0, 1)
    if variant == "inverted":
        images = 1 - images
    elif variant == "decoy":
        patch = decoy_patch_size(size)
        images[:, :, :patch, :patch] = (labels.float() / 9).view(-1, 1, 1, 1)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(images)))
    test, train = order[:n_test], order[n_test:]
    return DigitsSplit(images[train], labels[train], images[test], labels[test])
