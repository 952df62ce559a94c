"""The embedded default data and model."""

from __future__ import annotations

import pytest
import torch

from captum_baselines.datasets import decoy_patch_size, load_digits_images
from captum_baselines.models import (
    DigitsCNN,
    pretrained_digits_cnn,
    train_classifier,
    train_digits_cnn,
)


def test_variants_are_the_documented_transforms_of_the_digits():
    plain = load_digits_images("digits")
    inverted = load_digits_images("inverted")
    decoy = load_digits_images("decoy", size=32)
    assert plain.train_images.shape[1:] == (1, 8, 8)
    assert len(plain.train_images) + len(plain.test_images) == 1797
    torch.testing.assert_close(inverted.train_images, 1 - plain.train_images)
    assert torch.equal(inverted.train_labels, plain.train_labels)
    assert decoy_patch_size(32) == 4
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
    data = load_digits_images("digits")
    generator = torch.Generator().manual_seed(0)
    model = train_classifier(
        DigitsCNN(generator=generator),
        data.train_images,
        data.train_labels,
        epochs=4,
        generator=generator,
    )
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        accuracy = (model(data.test_images).argmax(1) == data.test_labels).float()
    assert float(accuracy.mean()) > 0.85


def test_initialization_from_a_generator_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = DigitsCNN(16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    # PyTorch's default scheme, drawn in module order: what manual_seed gives.
    torch.manual_seed(3)
    b = DigitsCNN(16)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    assert all(p.device.type == "cpu" for p in a.parameters())


def test_training_is_reproducible_and_does_not_touch_the_global_rng():
    data = load_digits_images("inverted")
    small = data._replace(
        train_images=data.train_images[:256], train_labels=data.train_labels[:256]
    )
    state = torch.get_rng_state()
    a, accuracy_a = train_digits_cnn(small, epochs=2, seed=5)
    b, accuracy_b = train_digits_cnn(small, epochs=2, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert accuracy_a == accuracy_b
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c, _ = train_digits_cnn(small, epochs=2, seed=6)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_pretrained_digits_cnn_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    _, accuracy = pretrained_digits_cnn("digits", size=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert accuracy > 0.85
