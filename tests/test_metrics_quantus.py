"""Tests of the Quantus bridge, and of our ROAD against Quantus's ROAD."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam
from torch import nn

import captum_baselines
from captum_baselines import ExpectedGradients, PatternAttribution, fit_patterns
from captum_baselines.datasets import load_digits_images
from captum_baselines.metrics import (
    ablation_curve,
    noisy_linear_imputation,
    quantus_explain_func,
)
from captum_baselines.models import DigitsCNN, train_classifier
from tests.helpers import model_unchanged, tiny_cnn

quantus = pytest.importorskip("quantus")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture(scope="module")
def digits():
    """A digits CNN trained for a fraction of a second, and 8 test images."""
    data = load_digits_images("digits", size=8)
    torch.manual_seed(0)  # the CNN's initial weights
    model = train_classifier(
        DigitsCNN(8), data.train_images[:600], data.train_labels[:600], epochs=3
    )
    return model, data.train_images[:100], data.test_images[:8], data.test_labels[:8]


def explain_functions(references):
    return {
        "EG": quantus_explain_func(
            ExpectedGradients,
            attribute_kwargs={"baselines": references, "n_samples": 8},
            generator_seed=0,
        ),
        "IG uniform-gray baseline": quantus_explain_func(
            IntegratedGradients,
            attribute_kwargs={"n_steps": 16},
            inputs_kwargs=lambda x: {"baselines": torch.full_like(x, 0.5)},
        ),
    }


def test_explain_func_matches_a_direct_call(digits):
    model, references, x, y = digits
    explain = explain_functions(references)
    with model_unchanged(model):
        eg = explain["EG"](model, x.numpy(), y.numpy())
        ig = explain["IG uniform-gray baseline"](model, x.numpy(), y.numpy())
    direct = ExpectedGradients(model).attribute(
        x,
        baselines=references,
        n_samples=8,
        target=y,
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(eg, np.ndarray) and eg.shape == (8, 1, 8, 8)
    np.testing.assert_allclose(eg, direct.sum(1, keepdim=True).numpy(), atol=1e-6)
    expected = IntegratedGradients(model).attribute(
        x, baselines=torch.full_like(x, 0.5), target=y, n_steps=16
    )
    np.testing.assert_allclose(ig, expected.numpy(), atol=1e-6)
    # Quantus's call-time keyword arguments override, its device is honored
    fewer = explain["IG uniform-gray baseline"](
        model, x.numpy(), y.numpy(), n_steps=4, device="cpu"
    )
    expected = IntegratedGradients(model).attribute(
        x, baselines=torch.full_like(x, 0.5), target=y, n_steps=4
    )
    np.testing.assert_allclose(fewer, expected.numpy(), atol=1e-6)


def test_layer_methods_and_channels():
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    cam = quantus_explain_func(LayerGradCam, layer="3")(model, x.numpy(), [1, 2])
    assert cam.shape == (2, 1, 8, 8)  # upsampled to the input
    full = quantus_explain_func(IntegratedGradients, channel_sum=False)
    assert full(model, x.numpy(), np.array([1, 2])).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="layer"):
        quantus_explain_func(LayerGradCam, layer="9")(model, x.numpy(), [1, 2])
    with pytest.raises(TypeError, match="method"):
        quantus_explain_func(3)
    with pytest.raises(TypeError, match="model"):
        quantus_explain_func(IntegratedGradients)(lambda t: t, x.numpy(), [1, 2])


def test_pattern_attribution_fits_its_patterns_on_each_model(digits):
    model, references, x, y = digits
    fitted = []

    def patterns(m):
        fitted.append(m)
        return {"patterns": fit_patterns(m, references, None, False)}

    explain = quantus_explain_func(PatternAttribution, init_kwargs=patterns)
    a = explain(model, x.numpy(), y.numpy())
    expected = PatternAttribution(model, fit_patterns(model, references, None, False))
    np.testing.assert_allclose(
        a, expected.attribute(x, target=y).sum(1, keepdim=True).numpy(), atol=1e-6
    )
    other = DigitsCNN(8).eval()
    explain(other, x.numpy(), y.numpy())
    assert fitted == [model, other]


def test_real_quantus_metrics_run_on_our_explanations(digits):
    model, references, x, y = digits
    for name, explain in explain_functions(references).items():
        with model_unchanged(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs = dict(
                model=model,
                x_batch=x.numpy(),
                y_batch=y.numpy(),
                a_batch=None,
                explain_func=explain,
                device="cpu",
            )
            road = quantus.ROAD(
                noise=0.0, percentages=[10, 50, 90], disable_warnings=True
            )(**kwargs)
            flipping = quantus.PixelFlipping(
                features_in_step=8, perturb_baseline="black", disable_warnings=True
            )(**kwargs)
            mprt = quantus.MPRT(
                disable_warnings=True, return_average_correlation=False
            )(**kwargs)
        assert set(road) == {10, 50, 90}, name
        assert all(0 <= v <= 1 for v in road.values()), name
        assert np.asarray(flipping).shape == (8, 8), name
        assert "original" in mprt and len(mprt) > 2, name
        # the explanation changes once the output layer is random
        assert np.mean(mprt["7"]) < 0.99, name


def test_our_road_curve_equals_quantus_road(digits):
    """Same model, images, attributions and percentages, no noise.

    Quantus's ROAD reports the accuracy on the imputed images; our curve gives
    it with a forward that returns a one-hot of the predicted class and
    ``score="logit", relative=False``.  Quantus solves the NLI system directly
    (scipy, float64); we iterate to the default ``tol=1e-5`` in float32.  The
    imputed pixels (values in [0, 1]) agree to 3e-5 (measured: 8.2e-6) and the
    softmax outputs to 1e-5 (measured: 1.9e-6), far inside any decision
    margin, so the predicted classes, and with them the accuracies, are equal
    exactly.
    """
    model, references, x, y = digits
    attributions = ExpectedGradients(model).attribute(
        x,
        baselines=references,
        n_samples=8,
        target=y,
        generator=torch.Generator().manual_seed(0),
    )
    # pixels that are black in every reference get exactly 0: break the ties
    # (the same attributions go to both), so that the orders agree whatever the
    # sort's tie rule
    attributions = attributions + 1e-6 * torch.linspace(-1, 1, 64).reshape(8, 8)
    assert all(len(torch.unique(a)) == 64 for a in attributions)
    percentages = [5, 20, 40, 60, 80, 95]
    counts = [int(64 * p / 100) for p in percentages]

    metric = quantus.ROAD(noise=0.0, percentages=percentages, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=attributions.numpy(),
            device="cpu",
        )

    def predicted_class(images):
        return nn.functional.one_hot(model(images).argmax(1), 10).float()

    ours = ablation_curve(
        predicted_class,
        x,
        attributions,
        y,
        [c / 64 for c in counts],
        fill="road",
        noise_std=0.0,
        score="logit",
        relative=False,
    )
    assert ours.mean(0).tolist() == [theirs[p] for p in percentages]

    # the imputed images themselves, pixel by pixel
    perturb = quantus.functions.perturb_func.noisy_linear_imputation
    order = np.argsort(-attributions.reshape(8, -1).numpy(), axis=1)
    for count in counts:
        removed = torch.zeros(8, 64, dtype=torch.bool)
        removed.scatter_(1, torch.as_tensor(order[:, :count]), True)
        mine = noisy_linear_imputation(x, removed.reshape(8, 8, 8), 0.0)
        reference = np.stack(
            [
                perturb(arr=x[i].numpy(), indices=order[i, :count], noise=0.0)
                for i in range(8)
            ]
        )
        np.testing.assert_allclose(mine.numpy(), reference, atol=3e-5, rtol=0)
        with torch.no_grad():
            np.testing.assert_allclose(
                torch.softmax(model(mine), 1).numpy(),
                torch.softmax(model(torch.as_tensor(reference).float()), 1).numpy(),
                atol=1e-5,
            )


def test_no_module_of_the_package_imports_quantus_when_imported():
    """``import captum_baselines`` must not import Quantus (slow, optional): no
    module of the package imports it at module level (checked on the source,
    which is cheaper than a fresh interpreter)."""
    package = Path(captum_baselines.__file__).parent
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "quantus" for n in names), path
