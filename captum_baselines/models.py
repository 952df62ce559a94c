"""The embedded default model: a small CNN for the digits, trained in seconds."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm import tqdm


class DigitsCNN(nn.Sequential):
    """Two conv blocks and a linear classifier for ``(N, 1, size, size)`` images."""

    def __init__(self, size: int = 8, n_classes: int = 10) -> None:
        if size % 2:
            raise ValueError(f"`size` must be even, got {size}")
        super().__init__(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, n_classes),
        )


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """Trains ``model`` with Adam and cross-entropy; returns it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(epochs), desc="training", disable=not progress):
        for batch in torch.randperm(len(images), generator=generator).split(batch_size):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return model.eval()


def pretrained_digits_cnn(
    variant: str = "inverted", size: int = 8, seed: int = 0
) -> tuple[nn.Module, float]:
    """A :class:`DigitsCNN` trained on :func:`~captum_baselines.datasets.
    load_digits_images` (same ``variant`` and ``size``), and its test accuracy."""
    from .datasets import load_digits_images

    data = load_digits_images(variant, size)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    model = train_classifier(
        DigitsCNN(size), data.train_images, data.train_labels, seed=seed
    )
    with torch.no_grad():
        predictions = model(data.test_images).argmax(1)
    return model, float((predictions == data.test_labels).float().mean())
