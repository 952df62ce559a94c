"""Tests of the ``captum-baselines`` command line, run in-process via ``main``."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_baselines.baselines import normalized_range
from captum_baselines.cli import build_parser, main
from captum_baselines.study.methods import METHODS
from tests.helpers import model_unchanged, tiny_cnn

LABELS = [spec.label for spec in METHODS.values()]

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")

FIGURES = (
    "baselines.png",
    "attributions.png",
    "attributions_2.png",  # 6 + 5 (or 5 + 4) methods a figure: none wider than a page
    "curves_top_k.png",
    "curves_mass_center.png",
    "curves_degradation.png",
    "curves_road_morf.png",
    "curves_road_lerf.png",
    "intervals.png",
)
SUMMARIES = (
    "auc_top_k",
    "auc_mass_center",
    "auc_degradation",
    "auc_road_morf",
    "auc_road_lerf",
    "road_gap",
)
SMALL = ["--n-steps", "4", "--n-baselines", "2", "--n-samples", "4", "--no-progress"]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A TorchScript file, a module ``tiny_user_model`` on sys.path with a factory
    and a module object, its weights, and a ``.pt`` file of 6 images."""
    root = tmp_path_factory.mktemp("user")
    model = tiny_cnn()
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

            def pooled():
                return nn.Sequential(
                    nn.Conv2d(3, 4, 3, padding=1),
                    nn.ReLU(),
                    nn.AdaptiveAvgPool2d(2),
                    nn.Flatten(),
                    nn.Linear(16, 5),
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
    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        status = main(argv)
    return status, out, printed.getvalue(), errors.getvalue()


def test_demo_quick_writes_the_report_and_figures(demo_run):
    status, out, printed, errors = demo_run
    assert status == 0
    for name in ("results.md", "results.csv", "results.json", *FIGURES):
        assert (out / name).stat().st_size > 0, name
    rows = read_csv(out / "results.csv")
    assert list(rows) == [*LABELS, "random"]
    for method, row in rows.items():
        for column in SUMMARIES:
            low, mean, high = (
                float(row[f"{column}_low"]),
                float(row[column]),
                float(row[f"{column}_high"]),
            )
            assert low <= mean <= high, (method, column)
            assert math.isfinite(mean) and -1.5 <= mean <= 1.5, (method, column)
        gap = float(row["auc_road_lerf"]) - float(row["auc_road_morf"])
        assert math.isclose(float(row["road_gap"]), gap, abs_tol=1e-6)  # float32 means
    document = json.loads((out / "results.json").read_text())
    assert document["variant"] == "inverted" and document["n_images"] == 12
    assert document["skipped"] == {}
    assert [m["method"] for m in document["methods"]] == list(rows)
    # 8x8 images: the first conv (8x8 output) is the last one of at least 7x7.
    assert document["reading"]["layer"] == {
        "name": "0",
        "map_size": [8, 8],
        "reason": document["reading"]["layer"]["reason"],
        "too_coarse": False,
    }
    report = (out / "results.md").read_text()
    assert "| IG black |" in report and "lower is better" in report
    assert "explains layer `0`" in report
    # The inverted digits: IG black's blind spot is read from the table.
    assert "**IG black** cannot attribute black ink" in report
    assert f"work: {len(LABELS)} methods x 12 images" in errors
    assert "| IG blur |" in printed
    # The rankings under the mean fill and under ROAD, and the Distill check,
    # computed from the table, in the report and printed after the table.
    assert document["settings"]["road_noise_std"] == 0.01
    assert set(document["reading"]["rankings"]) == {
        "top_k",
        "road_morf",
        "road_lerf",
        "road_gap",
    }
    assert set(document["reading"]["distill_order"]["road_morf"]) == {
        "EG training data",
        "IG uniform",
        "IG blur",
        "IG max distance",
    }
    assert "## Rankings" in report and "Distill's ordering" in report
    for line in document["rankings"]:
        assert line in report and line in printed
    assert printed.index("| IG blur |") < printed.index("ROAD MoRF (lower AUC first)")


def test_demo_random_control_is_worse_than_the_best_method(demo_run):
    out = demo_run[1]
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
    assert list(rows) == [m for m in LABELS if m not in hooked] + ["random"]
    assert all(math.isfinite(float(r["auc_top_k"])) for r in rows.values())
    skipped = json.loads((out / "results.json").read_text())["skipped"]
    assert sorted(skipped) == hooked
    assert all("TorchScript" in why for why in skipped.values())
    report = (out / "results.md").read_text()
    ran = f"{len(LABELS) - 2} of {len(LABELS)} methods ran"
    assert "## Skipped methods" in report and ran in report
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
        "--n-fractions",
        "3",
        "--road-noise-std",
        "0.5",
        "--uniform-output-iterations",
        "3",
        *SMALL,
    ]
    assert main(argv) == 0
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["fractions"] == [0.0, 0.5, 1.0]
    assert settings["road_noise_std"] == 0.5
    assert settings["uniform_output_iterations"] == 3
    rows = read_csv(out / "results.csv")
    assert list(rows) == ["IG black", "IG max distance"] + [
        "RSI-Grad-CAM uniform output",
        "random",
    ]
    # IG from a black baseline is complete: the delta stays small.
    assert float(rows["IG black"]["abs_delta"]) < 0.05


def test_default_layer_is_the_last_conv_of_at_least_7x7(user_files, tmp_path):
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
    assert [m["method"] for m in document["methods"]] == [*LABELS, "random"]
    # conv "0" outputs 8x8, conv "3" 4x4 (after the pooling): "0" is chosen.
    assert document["reading"]["layer"]["name"] == "0"
    assert "chosen by default" in (out / "results.md").read_text()


def test_without_a_large_enough_layer_rsi_is_skipped_saying_why(
    user_files, tmp_path, capsys
):
    small = tmp_path / "small.pt"
    torch.save(torch.rand(3, 3, 6, 6), small)
    argv = ["compare", "--model", "tiny_user_model:pooled", "--images", str(small)]
    assert main([*argv, "--out", str(tmp_path / "a"), *SMALL]) == 0
    document = json.loads((tmp_path / "a" / "results.json").read_text())
    why = document["skipped"]["RSI-Grad-CAM uniform output"]
    assert "at least 7x7" in why and "0 (6x6)" in why and "--layer" in why
    assert "skipped RSI-Grad-CAM" in capsys.readouterr().err
    # Asked for by name, the missing layer is an error before any work.
    only = ["--methods", "rsi-grad-cam", "--out", str(tmp_path / "b")]
    assert main([*argv, *only, *SMALL]) == 2
    assert "--layer" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_model_from_a_package_in_the_working_directory(
    user_files, tmp_path, monkeypatch
):
    # Not on sys.path, as for users of the console script (file.py:callable and
    # the other forms are tested on load_model in test_study_loading).
    package = tmp_path / "work" / "userpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "from tiny_user_model import make\n\ndef build():\n    return make()\n"
    )
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    argv = ["compare", "--model", "userpkg.nets:build", "--out", str(tmp_path / "o")]
    argv += ["--images", str(user_files / "images.pt"), "--methods", "ig-black"]
    try:
        assert main([*argv, "--n-images", "2", *SMALL]) == 0
    finally:
        for name in ("userpkg", "userpkg.nets"):
            sys.modules.pop(name, None)
    assert str((tmp_path / "work").resolve()) not in sys.path  # put back as found


def test_normalized_images_use_the_normalized_range(user_files, tmp_path):
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
    # The black baseline of the gallery is the bottom of the normalized range:
    from captum_baselines.study.figures import baseline_gallery
    from captum_baselines.study.problems import Problem, Settings

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


def test_help_imports_no_torch_and_documents_every_option():
    code = (
        "import sys\n"
        "from captum_baselines.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stderr
    parser = build_parser()
    (commands,) = [
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ]
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
    compare = commands.choices["compare"].format_help()
    for shown in ("points on each path", "(default: 32)", "(default: 100)"):
        assert shown in " ".join(compare.split())
    demo = " ".join(commands.choices["demo"].format_help().split())
    assert "default: per variant" in demo and "photos" in demo  # --threads
    assert all(name in compare for name in METHODS)  # the registry's methods


def test_threads_option_is_used_and_restored(user_files, tmp_path, capsys):
    before = torch.get_num_threads()
    argv = [
        "compare",
        "--model",
        "tiny_user_model:make",
        "--images",
        str(user_files / "images.pt"),
        "--out",
        str(tmp_path),
        "--methods",
        "ig-black",
        "--threads",
        "1",
        *SMALL,
    ]
    assert main(argv) == 0
    assert torch.get_num_threads() == before
    err = capsys.readouterr().err
    assert "work: 1 methods x 6 images of 3x8x8 = 24 forward+backward passes" in err
    assert "1 torch thread(s)" in err


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
        ({"--layer": "6"}, "--layer"),  # the Linear: no feature maps
        ({"--model": "{root}/tiny_user_model.py"}, "--model"),
        ({"--model": "{root}/weights.pt"}, "--model"),
        ({"--model": "{root}/notes.txt"}, "--model"),
        ({"--model": "{root}/missing.py:make"}, "--model"),
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
    (user_files / "notes.txt").write_text("not a model")
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
    assert "Traceback" not in error and "PytorchStreamReader" not in error
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
