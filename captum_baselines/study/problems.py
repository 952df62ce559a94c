"""What a comparison is about: its settings, the problem, the demo's variants.

A :class:`Problem` is everything the methods and the curves need: the model, the
images and targets, the valid range of one input, the examples that data
baselines draw from and the layer of the layer methods.  The demo's three
variants of the digits are data (:data:`VARIANTS`): a title, the text that
explains what the variant shows, and what the reading of its results computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn


#: Layer maps with fewer cells than this on a side are flagged as too coarse to
#: localize, and the default layer is the last convolution at least this large
#: (7x7 is the last block of a ResNet at 224 px, Grad-CAM's usual layer).
MIN_LAYER_SIDE = 7


@dataclass
class Settings:
    """The knobs of the methods and curves, shared by both subcommands.

    ``None`` for ``blur_sigma``, ``patch_size`` and ``internal_batch_size`` means
    "scaled to the images" (see :class:`Problem`).
    """

    n_steps: int = 32
    n_baselines: int = 8
    n_samples: int = 100
    blur_sigma: float | None = None
    patch_size: int | None = None
    internal_batch_size: int | None = None
    seed: int = 0
    show_progress: bool = True


def internal_batch_size(images: Tensor, settings: Settings) -> int:
    """Rows per forward pass: ``settings.internal_batch_size``, or about a million
    input values at a time (at least 8 rows)."""
    if settings.internal_batch_size is not None:
        return settings.internal_batch_size
    return max(8, (1 << 20) // images[0].numel())


@dataclass(frozen=True)
class LayerChoice:
    """The layer that layer methods (RSI-Grad-CAM) explain, and why it was chosen.

    Attributes:
        name: The module's name in ``model.named_modules()``.
        module: The module.
        map_size: ``(h, w)`` of its output on the images: the resolution of the
            layer maps before upsampling.
        reason: How it was chosen, for the output and the report.
    """

    name: str
    module: nn.Module
    map_size: tuple[int, int]
    reason: str


@dataclass(frozen=True)
class Variant:
    """One of the demo's variants of the digits.

    Attributes:
        name: The ``--variant`` name, also the name of
            :func:`~captum_baselines.datasets.load_digits_images`'s variant.
        title: The report's title.
        description: What the variant shows, in Markdown.
        blind_spots: ``{method label: what it cannot attribute here}``: the reading
            compares these methods with the others.
        decoy: Whether the images carry the label-revealing patch: the reading
            reports each method's share of ``|attribution|`` on it.
    """

    name: str
    title: str
    description: str
    blind_spots: Mapping[str, str] = field(default_factory=dict)
    decoy: bool = False


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="digits",
            title="Digits (white ink on black)",
            description=(
                "scikit-learn's handwritten digits as shipped: white ink on a "
                "black background. Here the black baseline *is* the background, so "
                "IG from black attributes the ink; the white baseline cannot "
                "attribute white ink, since `x - x' = 0` there."
            ),
            blind_spots={"IG white": "white ink, where `x - x' = 0`"},
        ),
        Variant(
            name="inverted",
            title="Inverted digits (black ink on white)",
            description=(
                "The digits inverted, `1 - x`: black ink on white. This is the "
                "Distill article's point on real data: IG from the black baseline "
                "multiplies every gradient by `x - x'`, which is 0 on black ink, so "
                "it cannot attribute the strokes that make the digit."
            ),
            blind_spots={"IG black": "black ink, where `x - x' = 0`"},
        ),
        Variant(
            name="decoy",
            title="Decoy digits (a label-revealing patch)",
            description=(
                "The digits with the top-left corner patch set to `label / 9`, a "
                "shortcut the network learns. A faithful attribution puts much of "
                "its mass on that patch."
            ),
            decoy=True,
        ),
    )
}


@dataclass
class Problem:
    """A model, the images to explain, their targets and where baselines live.

    Attributes:
        model: The model, returning logits ``(N, classes)``.
        images: ``(N, C, H, W)`` in the model's input space.
        targets: ``(N,)`` classes explained.
        value_range: The valid range of one input in the model's space (floats or
            ``(C, 1, 1)`` tensors).
        reference_data: The examples that the training-data baselines, Expected
            Gradients and the patterns of PGIG draw from.
        layer: The layer of the layer methods, or ``None``.
        layer_note: Why there is no layer (when ``layer`` is ``None``).
        title: The report's title.
        description: The report's first paragraph (Markdown).
        labels: One label per image, for the figures.
        facts: Further facts for the JSON report (e.g. the test accuracy).
        variant: The demo variant, whose reading the report adds.
    """

    model: nn.Module
    images: Tensor
    targets: Tensor
    value_range: tuple[Any, Any]
    reference_data: Tensor
    layer: LayerChoice | None
    title: str
    description: str
    labels: list[str] = field(default_factory=list)
    layer_note: str = "no layer given (--layer NAME)"
    facts: dict[str, Any] = field(default_factory=dict)
    variant: Variant | None = None

    @property
    def side(self) -> int:
        """The shorter side of the images in pixels."""
        return min(self.images.shape[-2:])

    def blur_sigma(self, settings: Settings) -> float:
        """Sigma of the blur baseline: Distill's 20 px at 299 px, scaled."""
        if settings.blur_sigma is not None:
            return settings.blur_sigma
        return max(1.0, self.side * 20 / 299)

    def gaussian_sigma(self) -> float:
        """Sigma of the Gaussian baseline: Distill's 1 on inputs in [-1, 1], that
        is half the width of the valid range."""
        import torch

        low, high = self.value_range
        return float(torch.as_tensor(high - low, dtype=torch.float64).mean()) / 2

    def patch_size(self, settings: Settings) -> int:
        """Side of the degradation curve's patches: 9 px, or a quarter of small
        images."""
        if settings.patch_size is not None:
            return settings.patch_size
        return min(9, max(2, self.side // 4))

    def internal_batch_size(self, settings: Settings) -> int:
        """Path points per forward pass (see :func:`internal_batch_size`)."""
        return internal_batch_size(self.images, settings)


@dataclass(frozen=True)
class DemoScale:
    """The size of a demo run: image side, training epochs, images explained."""

    size: int
    epochs: int
    n_images: int
    n_steps: int
    n_baselines: int
    n_samples: int


#: The full demo (about a minute on two cores) and ``--quick`` (seconds).
DEMO_SCALES = {
    "full": DemoScale(
        size=16, epochs=12, n_images=64, n_steps=32, n_baselines=8, n_samples=100
    ),
    "quick": DemoScale(
        size=8, epochs=6, n_images=16, n_steps=16, n_baselines=4, n_samples=32
    ),
}


def demo_problem(variant: Variant, scale: DemoScale, settings: Settings) -> Problem:
    """The embedded DigitsCNN trained on one variant of the digits, and the first
    ``scale.n_images`` correctly classified test images, explained at their true
    class.  The layer of the layer methods follows the rule of ``compare``."""
    import torch

    from ..datasets import load_digits_images
    from ..models import train_digits_cnn
    from .loading import choose_layer

    data = load_digits_images(variant.name, scale.size, seed=settings.seed)  # type: ignore[arg-type]
    model, accuracy = train_digits_cnn(
        data, scale.epochs, settings.seed, settings.show_progress
    )
    with torch.no_grad():
        correct = model(data.test_images).argmax(1) == data.test_labels
    chosen = torch.nonzero(correct).flatten()[: scale.n_images]
    images, labels = data.test_images[chosen], data.test_labels[chosen]
    layer, note = choose_layer(model, images, None)
    description = (
        f"{variant.description}\n\nModel: the embedded DigitsCNN trained for "
        f"{scale.epochs} epochs on {len(data.train_images)} {scale.size}x{scale.size} "
        f"images (test accuracy {accuracy:.1%}). Explained: the true class of the "
        f"first {len(chosen)} correctly classified test images. Training-data "
        "baselines, EG and the PGIG patterns draw from the training images."
    )
    return Problem(
        model=model,
        images=images,
        targets=labels,
        value_range=(0.0, 1.0),
        reference_data=data.train_images,
        layer=layer,
        layer_note=note,
        title=f"Baseline comparison: {variant.title}",
        description=description,
        labels=[f"digit {int(t)}" for t in labels],
        facts={"variant": variant.name, "test_accuracy": accuracy},
        variant=variant,
    )


__all__ = [
    "DEMO_SCALES",
    "MIN_LAYER_SIDE",
    "VARIANTS",
    "DemoScale",
    "LayerChoice",
    "Problem",
    "Settings",
    "Variant",
    "demo_problem",
    "internal_batch_size",
]
