"""The embedded default data and model."""

from __future__ import annotations

import pytest
import torch

from captum_baselines.datasets import load_digits_images
from captum_baselines.models import DigitsCNN, train_classifier


def test_variants_are_the_documented_transforms_of_the_digits():
    plain = load_digits_images("digits")
    inverted = load_digits_images("inverted")
    decoy = load_digits_images("decoy", size=32)
    assert plain.train_images.shape[1:] == (1, 8, 8)
    assert len(plain.train_images) + len(plain.test_images) == 1797
    torch.testing.assert_close(inverted.train_images, 1 - plain.train_images)
    assert torch.equal(inverted.train_labels, plain.train_labels)
    patch = decoy.train_images[:, 0, :4, :4]
    expected = (decoy.train_labels.float() / 9).view(-1, 1, 1).expand_as(patch)
    assert torch.equal(patch, expected)
    for split in (plain, decoy):
        for images in (split.train_images, split.test_images):
            assert images.min() >= 0 and images.max() <= 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        load_digits_images("mnist")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        load_digits_images(size=4)
    with pytest.raises(ValueError, match="size"):
        DigitsCNN(size=9)


def test_training_learns_the_digits_quickly():
    torch.manual_seed(0)
    data = load_digits_images("digits")
    model = train_classifier(
        DigitsCNN(), data.train_images, data.train_labels, epochs=4
    )
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        accuracy = (model(data.test_images).argmax(1) == data.test_labels).float()
    assert float(accuracy.mean()) > 0.85
