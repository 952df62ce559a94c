"""Loading the user's model, images and layer for ``compare``."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest
import torch
from PIL import Image
from torch import nn

from captum_baselines.baselines import normalized_range
from captum_baselines.study.errors import OptionError
from captum_baselines.study.loading import (
    choose_layer,
    load_images,
    load_model,
    normalize,
    output_shapes,
    resolve_targets,
)


class Net(nn.Module):
    """Convs at 16x16, 8x8 and 4x4, then a block (not a conv) at 4x4, then fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.down = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.deep = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.ReLU(), nn.Identity())
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.deep(self.down(self.stem(x))))
        return self.fc(x.flatten(1))


SOURCE = textwrap.dedent(
    """
    from torch import nn
    from helper_layers import width  # a neighbour of this file

    def make():
        return nn.Sequential(nn.Flatten(), nn.Linear(width(), 2))

    MODEL = make()
    """
)


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "my_models.py").write_text(SOURCE)
    (folder / "helper_layers.py").write_text("def width():\n    return 4\n")
    (folder / "broken.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    yield folder
    for name in ("my_models", "helper_layers", "broken"):
        sys.modules.pop(name, None)


def test_a_python_file_with_a_callable_or_a_module(user_folder, monkeypatch):
    path = sys.path.copy()
    model = load_model(f"{user_folder / 'my_models.py'}:make", None)
    assert isinstance(model, nn.Sequential) and model[1].in_features == 4
    assert load_model(f"{user_folder / 'my_models.py'}:MODEL", None) is (
        sys.modules["my_models"].MODEL
    )
    monkeypatch.chdir(user_folder)
    assert isinstance(load_model("./my_models.py:make", None), nn.Sequential)
    assert sys.path == path  # the file's folder was on sys.path only meanwhile


def test_a_module_from_the_working_directory(user_folder, monkeypatch):
    monkeypatch.chdir(user_folder)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    assert isinstance(load_model("my_models:make", None), nn.Sequential)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{folder}/my_models.py", "is a Python file; name the callable"),
        ("{folder}/missing.py:make", "no such file"),
        ("{folder}/my_models.py:nothing", "has no attribute 'nothing'"),
        ("{folder}/broken.py:make", "broken.py:2"),  # where the user's code failed
        (
            "{folder}/helper_layers.py:width",
            "gave a value of type int, not an nn.Module",
        ),
        ("no_such_module_xyz:make", "no module 'no_such_module_xyz' in the working"),
        ("{folder}/state.pt", "written by torch.save"),
        ("{folder}/helper_layers.py.txt", "no such file"),
        ("{folder}/text.pt", "not a TorchScript file (not a zip archive)"),
    ],
)
def test_wrong_model_specs_say_what_the_option_accepts(user_folder, spec, message):
    torch.save(nn.Linear(2, 2).state_dict(), user_folder / "state.pt")
    (user_folder / "text.pt").write_text("hello")
    with pytest.raises(OptionError) as error:
        load_model(spec.format(folder=user_folder), None)
    text = str(error.value)
    assert text.startswith("--model: ") and message in text
    assert "PytorchStreamReader" not in text


def test_weights_and_torchscript(tmp_path):
    torch.manual_seed(0)
    model = Net().eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(tmp_path / "net.pt"))
    (tmp_path / "nets.py").write_text(
        "from tests.test_study_loading import Net\n\nMODEL = Net()\n"
    )
    try:
        loaded = load_model(
            f"{tmp_path / 'nets.py'}:MODEL", str(tmp_path / "weights.pt")
        )
        original = sys.modules["nets"].MODEL
        assert loaded is not original  # copied before loading weights into it
        x = torch.rand(2, 1, 16, 16)
        torch.testing.assert_close(loaded(x), model(x))
        scripted = load_model(str(tmp_path / "net.pt"), None)
        torch.testing.assert_close(scripted(x), model(x))
        layer, note = choose_layer(scripted, x, None)
        assert layer is None and "TorchScript" in note
    finally:
        sys.modules.pop("nets", None)


def test_default_layer_is_the_last_convolution_of_at_least_7x7():
    model, x = Net(), torch.rand(2, 1, 16, 16)
    assert output_shapes(model, x[:1])["block"] == (1, 2, 4, 4)
    layer, note = choose_layer(model, x, None)
    assert layer is not None and note == ""
    assert (layer.name, layer.module, layer.map_size) == ("down", model.down, (8, 8))
    assert "chosen by default" in layer.reason
    small = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten())  # 8x8 in, 6x6 out
    none, why = choose_layer(small, x[:, :, :8, :8], None)
    assert none is None and "0 (6x6)" in why and "--layer" in why
    assert not model.down._forward_hooks  # the probe's hooks are gone


def test_named_layers_are_checked_before_any_work():
    model, x = Net(), torch.rand(2, 1, 16, 16)
    block, _ = choose_layer(model, x, "block")  # any module with feature maps
    assert block is not None and block.map_size == (4, 4)
    assert block.reason == "given by --layer"
    with pytest.raises(OptionError, match=r"^--layer: 'fc' outputs shape \(1, 3\)"):
        choose_layer(model, x, "fc")
    with pytest.raises(OptionError, match="no module named 'nope'.*stem, down, deep"):
        choose_layer(model, x, "nope")


def test_image_folder_is_resized_and_normalized(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, side in enumerate((10, 12)):
        pixels = torch.full((side, side, 3), 40 * i, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    images = load_images(str(folder), [8], "--images")
    assert images.shape == (2, 3, 8, 8)
    torch.testing.assert_close(images[1], torch.full((3, 8, 8), 40 / 255))
    gray = load_images(str(folder), [6, 4], "--images", grayscale=True)
    assert gray.shape == (2, 1, 6, 4)
    with pytest.raises(OptionError, match="--images: the images have different sizes"):
        load_images(str(folder), None, "--images")


def test_normalize_and_targets():
    x = torch.rand(2, 3, 4, 4)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.3, 0.4]
    normalized, (low, high) = normalize(x, "--images", mean, std)
    expected_low, expected_high = normalized_range(mean, std)
    torch.testing.assert_close(low, expected_low)
    torch.testing.assert_close(high, expected_high)
    back = normalized * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(
        3, 1, 1
    )
    torch.testing.assert_close(back, x)
    assert normalize(x, "--images")[1] == (0.0, 1.0)
    with pytest.raises(OptionError, match="^--value-range"):
        normalize(3 * x + 1, "--images")
    outputs = torch.tensor([[0.0, 2.0], [3.0, 1.0]])
    assert resolve_targets(None, outputs).tolist() == [1, 0]
    assert resolve_targets([1], outputs).tolist() == [1, 1]
    with pytest.raises(OptionError, match="^--targets"):
        resolve_targets([2], outputs)
