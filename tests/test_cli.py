"""Tests of the ``captum-baselines`` command line, run in-process via ``main``."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from captum_baselines.baselines import normalized_range
from captum_baselines.cli import METHODS, load_images, load_model, main
from tests.helpers import model_unchanged

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")

FIGURES = (
    "baselines.png",
    "attributions.png",
    "curves_top_k.png",
    "curves_mass_center.png",
    "curves_degradation.png",
)
SMALL = ["--n-steps", "4", "--n-baselines", "2", "--n-samples", "4", "--no-progress"]


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    ).eval()


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A TorchScript file, a module ``tiny_user_model`` on sys.path with a factory
    and a module object, its weights, and a ``.pt`` file of 6 images."""
    root = tmp_path_factory.mktemp("user")
    model = tiny_model()
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(root / "model.pt"))
    torch.save(model.state_dict(), root / "weights.pt")
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.save(images, root / "images.pt")
    (root / "tiny_user_model.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def make():
                return nn.Sequential(
                    nn.Conv2d(3, 4, 3, padding=1),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                    nn.Conv2d(4, 4, 3, padding=1),
                    nn.ReLU(),
                    nn.Flatten(),
                    nn.Linear(4 * 4 * 4, 5),
                )

            MODEL = make().train()
            NOT_A_MODEL = 3
            """
        )
    )
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("tiny_user_model", None)


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as handle:
        return {row["method"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    argv = ["demo", "--out", str(out), "--quick", "--n-images", "12", "--no-progress"]
    return main(argv), out


def test_demo_quick_writes_the_report_and_figures(demo_run, capsys):
    status, out = demo_run
    assert status == 0
    for name in ("results.md", "results.csv", "results.json", *FIGURES):
        assert (out / name).stat().st_size > 0, name
    rows = read_csv(out / "results.csv")
    assert list(rows) == [*METHODS.values(), "random"]
    for method, row in rows.items():
        for curve in ("top_k", "mass_center", "degradation"):
            auc = float(row[f"auc_{curve}"])
            assert math.isfinite(auc) and 0 <= auc <= 1.5, (method, curve)
    document = json.loads((out / "results.json").read_text())
    assert document["variant"] == "inverted" and document["n_images"] == 12
    assert document["skipped"] == {}
    assert [m["method"] for m in document["methods"]] == list(rows)
    report = (out / "results.md").read_text()
    assert "| IG black |" in report and "lower is better" in report


def test_demo_random_control_is_worse_than_the_best_method(demo_run):
    _, out = demo_run
    rows = read_csv(out / "results.csv")
    control = float(rows.pop("random")["auc_top_k"])
    best = min(float(r["auc_top_k"]) for r in rows.values())
    assert best < control - 0.1
    # Complete methods report a small completeness delta; PGIG reports none.
    assert float(rows["IG blur"]["abs_delta"]) < 0.5
    assert rows["PGIG black"]["abs_delta"] == "nan"


def test_compare_torchscript_model(user_files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "compare",
        "--model",
        str(user_files / "model.pt"),
        "--images",
        str(user_files / "images.pt"),
        "--out",
        str(out),
        "--layer",
        "3",
        "--n-images",
        "3",
        *SMALL,
    ]
    assert main(argv) == 0
    rows = read_csv(out / "results.csv")
    # Methods that hook layers cannot run on TorchScript: skipped, with the reason.
    hooked = ["PGIG black", "RSI-Grad-CAM uniform output"]
    assert list(rows) == [m for m in METHODS.values() if m not in hooked] + ["random"]
    assert all(math.isfinite(float(r["auc_top_k"])) for r in rows.values())
    skipped = json.loads((out / "results.json").read_text())["skipped"]
    assert sorted(skipped) == hooked
    assert all("TorchScript" in why for why in skipped.values())
    assert "## Skipped methods" in (out / "results.md").read_text()
    printed = capsys.readouterr()
    assert "| IG blur |" in printed.out and "skipped PGIG black" in printed.err
    for name in FIGURES:
        assert (out / name).exists()


def test_compare_module_callable_with_weights_targets_and_layer(user_files, tmp_path):
    out = tmp_path / "out"
    argv = [
        "compare",
        "--model",
        "tiny_user_model:make",
        "--weights",
        str(user_files / "weights.pt"),
        "--images",
        str(user_files / "images.pt"),
        "--out",
        str(out),
        "--targets",
        "2",
        "--mean",
        "0.5",
        "--std",
        "0.25",
        "--layer",
        "3",
        "--methods",
        "ig-black",
        "ig-max-distance",
        "rsi-grad-cam",
        *SMALL,
    ]
    assert main(argv) == 0
    rows = read_csv(out / "results.csv")
    assert list(rows) == ["IG black", "IG max distance"] + [
        "RSI-Grad-CAM uniform output",
        "random",
    ]
    # IG from a black baseline is complete: the delta stays small.
    assert float(rows["IG black"]["abs_delta"]) < 0.05


def test_default_methods_skip_what_needs_a_layer(user_files, tmp_path):
    out = tmp_path / "out"
    model = __import__("tiny_user_model").MODEL
    argv = [
        "compare",
        "--model",
        "tiny_user_model:MODEL",
        "--images",
        str(user_files / "images.pt"),
        "--out",
        str(out),
        "--n-images",
        "3",
        *SMALL,
    ]
    with model_unchanged(model):  # a module object: used, left in training mode
        assert main(argv) == 0
    document = json.loads((out / "results.json").read_text())
    assert document["n_images"] == 3
    names = [m["method"] for m in document["methods"]]
    assert "RSI-Grad-CAM uniform output" not in names
    assert names[:8] == list(METHODS.values())[:8]


def test_load_model_weights_and_errors(user_files):
    loaded = load_model("tiny_user_model:make", str(user_files / "weights.pt"))
    for key, value in tiny_model().state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    scripted = load_model(str(user_files / "model.pt"), None)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(scripted(x), tiny_model()(x))


def test_image_folder_is_resized_and_normalised(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, side in enumerate((10, 12)):
        pixels = torch.full((side, side, 3), 40 * i, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    images = load_images(str(folder), [8], "--images")
    assert images.shape == (2, 3, 8, 8)
    torch.testing.assert_close(images[1], torch.full((3, 8, 8), 40 / 255))
    grey = load_images(str(folder), [6, 4], "--images", grayscale=True)
    assert grey.shape == (2, 1, 6, 4)


def test_normalised_images_use_the_normalised_range(user_files, tmp_path):
    out = tmp_path / "out"
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.3, 0.4]
    argv = [
        "compare",
        "--model",
        "tiny_user_model:make",
        "--images",
        str(user_files / "images.pt"),
        "--out",
        str(out),
        "--mean",
        *map(str, mean),
        "--std",
        *map(str, std),
        "--methods",
        "ig-black",
        *SMALL,
    ]
    assert main(argv) == 0
    low, _ = normalized_range(mean, std)
    # The black baseline of the gallery is the bottom of the normalised range:
    from captum_baselines.cli import Problem, Settings, baseline_gallery

    images = torch.load(user_files / "images.pt")
    problem = Problem(
        nn.Identity(),
        images,
        torch.zeros(6),
        normalized_range(mean, std),
        images,
        None,
        "t",
        "d",
    )
    black = baseline_gallery(problem, Settings())["black"]
    torch.testing.assert_close(black[0], low.expand(3, 8, 8))


def test_python_dash_m_help():
    done = subprocess.run(
        [sys.executable, "-m", "captum_baselines", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert "demo" in done.stdout and "compare" in done.stdout


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"--model": "no_such_module_xyz:make"}, "--model"),
        ({"--model": "not-a-spec"}, "--model"),
        ({"--model": "tiny_user_model:missing"}, "--model"),
        ({"--model": "tiny_user_model:NOT_A_MODEL"}, "--model"),
        ({"--model": "{root}/missing.pt"}, "--model"),
        ({"--images": "{root}/missing.pt"}, "--images"),
        ({"--images": "{root}/weights.pt"}, "--images"),
        ({"--images": "{root}/gray.pt"}, "--images"),
        ({"--weights": "{root}/missing.pt"}, "--weights"),
        ({"--weights": "{root}/other_weights.pt"}, "--weights"),
        ({"--targets": "7"}, "--targets"),
        ({"--targets": "1 2"}, "--targets"),
        ({"--layer": "nope"}, "--layer"),
        ({"--methods": "rsi-grad-cam"}, "--layer"),
        ({"--mean": "0.5 0.5", "--std": "0.2 0.2"}, "--mean"),
        ({"--mean": "0.5"}, "--mean"),
        ({"--images": "{root}/bright.pt"}, "--value-range"),
        ({"--methods": "nonsense"}, "--methods"),
        ({"--n-steps": "0"}, "--n-steps"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    user_files, tmp_path, capsys, changes, option
):
    torch.save(torch.rand(2, 1, 8, 8), user_files / "gray.pt")
    torch.save(3 * torch.rand(2, 3, 8, 8), user_files / "bright.pt")
    torch.save(nn.Linear(2, 2).state_dict(), user_files / "other_weights.pt")
    arguments = {
        "--model": "tiny_user_model:make",
        "--images": "{root}/images.pt",
        "--out": str(tmp_path / "out"),
        "--methods": "ig-black",
        **changes,
    }
    argv = ["compare", "--no-progress"]
    for key, value in arguments.items():
        argv += [key, *value.format(root=user_files).split()]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert option in error
    assert "Traceback" not in error
    assert not (tmp_path / "out" / "results.md").exists()


def test_usage_errors(tmp_path, capsys):
    assert main([]) == 2
    assert main(["demo"]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path), "--variant", "cats"]) == 2
    assert "--variant" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["demo", "--out", str(tmp_path / "file"), "--quick"]) == 2
    assert "--out" in capsys.readouterr().err
