"""The user's side of ``compare``: model, weights, images, normalization, targets
and the layer of the layer methods.

Every function checks its input before any heavy work and raises
:class:`~.errors.OptionError` with a message that names the option and says what
it accepts.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import sys
import traceback
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._hooks import registered_hooks
from .errors import OptionError
from .problems import MIN_LAYER_SIDE, LayerChoice

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

MODEL_FORMS = (
    "--model accepts a TorchScript file (torch.jit.save), path/to/file.py:callable "
    "or package.module:callable (importable from the working directory), where the "
    "callable returns an nn.Module or is one"
)


# ----------------------------------------------------------------------------
# The model


def load_model(spec: str, weights: str | None) -> nn.Module:
    """The model named by ``--model`` (see :data:`MODEL_FORMS`), with ``weights``
    (a ``state_dict`` file, loaded with ``weights_only=True``) if given.

    A module object named by ``spec`` is used as is, or copied first when
    ``weights`` are loaded; the comparison runs it in eval mode and restores its
    flags afterwards.
    """
    source, colon, name = spec.rpartition(":")
    if colon and source and name and all(p.isidentifier() for p in name.split(".")):
        model = _from_callable(source, name, spec)
        if weights is not None:  # the module may be the user's object: keep it
            model = copy.deepcopy(model)
    else:
        model = _torchscript(Path(spec), spec)
    if weights is not None:
        _load_weights(model, weights)
    return model


def _torchscript(path: Path, spec: str) -> nn.Module:
    if path.suffix == ".py":
        raise OptionError(
            f"--model: {spec} is a Python file; name the callable that returns the "
            f"model: --model {spec}:make_model ({MODEL_FORMS})"
        )
    if not path.is_file():
        raise OptionError(f"--model: no such file: {spec} ({MODEL_FORMS})")
    if not zipfile.is_zipfile(path):
        raise OptionError(
            f"--model: {spec} is not a TorchScript file (not a zip archive); "
            f"{MODEL_FORMS}"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any("/code/" in n for n in names):
        raise OptionError(
            f"--model: {spec} was written by torch.save (a state_dict or a pickled "
            "model), not torch.jit.save; give the architecture as --model "
            "path/to/file.py:callable (or package.module:callable) and this file "
            "as --weights"
        )
    try:
        with warnings.catch_warnings():  # torch.jit's deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # noqa: BLE001 - reported with the option
        raise OptionError(
            f"--model: cannot load {spec} as a TorchScript file: "
            f"{type(error).__name__}: {str(error).splitlines()[0]}"
        ) from error


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` (as ``python -m`` puts the working
    directory), removed again on exit unless it was there before."""
    entry = str(folder.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _from_callable(source: str, name: str, spec: str) -> nn.Module:
    is_file = source.endswith(".py") or "/" in source or "\\" in source
    folder = Path(source).parent if is_file else Path.cwd()
    with _on_sys_path(folder):  # the user's module may import its neighbours
        module = _import_file(Path(source)) if is_file else _import_module(source)
        found: Any = module
        for part in name.split("."):
            if not hasattr(found, part):
                raise OptionError(f"--model: {source} has no attribute {name!r}")
            found = getattr(found, part)
        if not isinstance(found, nn.Module):
            if not callable(found):
                raise OptionError(
                    f"--model: {spec} is a {type(found).__name__}, neither an "
                    f"nn.Module nor callable ({MODEL_FORMS})"
                )
            try:
                found = found()
            except Exception as error:  # noqa: BLE001
                raise OptionError(
                    f"--model: calling {spec}() failed{_where(error)}: "
                    f"{type(error).__name__}: {error}"
                ) from error
    if not isinstance(found, nn.Module):
        raise OptionError(
            f"--model: {spec} gave a value of type {type(found).__name__}, not an "
            "nn.Module"
        )
    return found


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and name.startswith(error.name):
            raise OptionError(
                f"--model: no module {error.name!r} in the working directory "
                f"({Path.cwd()}) or on sys.path; for a file give "
                "path/to/file.py:callable"
            ) from error
        raise OptionError(
            f"--model: importing {name!r} failed{_where(error)}: {error}"
        ) from error
    except Exception as error:  # noqa: BLE001 - the user's module raised
        raise OptionError(
            f"--model: importing {name!r} failed{_where(error)}: "
            f"{type(error).__name__}: {error}"
        ) from error


def _import_file(path: Path) -> Any:
    if path.suffix != ".py":
        raise OptionError(f"--model: {path} is not a Python file (.py)")
    if not path.is_file():
        raise OptionError(f"--model: no such file: {path}")
    resolved = path.resolve()
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == resolved:
            return existing
        name = f"_captum_baselines_model_{abs(hash(resolved))}"
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise OptionError(f"--model: cannot import {path}")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # classes defined there can be copied and pickled
    try:
        loader_spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's file raised
        del sys.modules[name]
        raise OptionError(
            f"--model: importing {path} failed{_where(error)}: "
            f"{type(error).__name__}: {error}"
        ) from error
    return module


def _where(error: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame that raised ``error``."""
    frames = traceback.extract_tb(error.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _load_weights(model: nn.Module, weights: str) -> None:
    if not Path(weights).is_file():
        raise OptionError(f"--weights: no such file: {weights}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise OptionError(
            f"--weights: cannot load {weights!r} as a state_dict: {error}"
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise OptionError(
            f"--weights: {weights!r} holds a {type(state).__name__}, not a state_dict"
        )
    try:
        model.load_state_dict(state)
    except Exception as error:  # noqa: BLE001
        raise OptionError(
            f"--weights: {weights!r} does not fit the model: {error}"
        ) from error


# ----------------------------------------------------------------------------
# The images


def load_images(
    path: str, size: Sequence[int] | None, option: str, grayscale: bool = False
) -> Tensor:
    """``(N, C, H, W)`` float images from a ``.pt`` tensor file or an image folder
    (pixels scaled to [0, 1], RGB or, with ``grayscale``, one channel)."""
    where = Path(path)
    if where.is_dir():
        return _image_folder(where, size, option, grayscale)
    if not where.is_file():
        raise OptionError(f"{option}: no such file or folder: {path}")
    try:
        images = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise OptionError(
            f"{option}: cannot load {path!r} as a tensor file (torch.save of a "
            f"tensor (N, C, H, W)): {str(error).splitlines()[0]}"
        ) from error
    if not isinstance(images, Tensor):
        raise OptionError(
            f"{option}: {path!r} holds a {type(images).__name__}, not a tensor "
            "(N, C, H, W)"
        )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[0] == 0:
        raise OptionError(
            f"{option}: the tensor in {path!r} must be (N, C, H, W), got shape "
            f"{tuple(images.shape)}"
        )
    images = images.float() if not images.is_floating_point() else images
    if size is not None:
        images = torch.nn.functional.interpolate(
            images, size=_pair(size), mode="bilinear", align_corners=False
        )
    return images


def _pair(size: Sequence[int]) -> tuple[int, int]:
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _image_folder(
    folder: Path, size: Sequence[int] | None, option: str, grayscale: bool
) -> Tensor:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise OptionError(
            f"{option}: no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}"
        )
    images = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert("L" if grayscale else "RGB")
            if size is not None:
                height, width = _pair(size)
                image = image.resize((width, height), Image.Resampling.BILINEAR)
        except OSError as error:
            raise OptionError(f"{option}: cannot read {file}: {error}") from error
        pixels = torch.from_numpy(np.array(image, dtype=np.float32) / 255)
        images.append(pixels[None] if pixels.dim() == 2 else pixels.permute(2, 0, 1))
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise OptionError(
            f"{option}: the images have different sizes {sorted(shapes)}; give "
            "--size H W"
        )
    return torch.stack(images)


def normalize(
    images: Tensor,
    option: str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pixel_range: Sequence[float] | None = None,
) -> tuple[Tensor, tuple[Any, Any]]:
    """Images in the model's space, ``(images - mean) / std``, and their valid
    range there (:func:`~captum_baselines.baselines.normalized_range`)."""
    from ..baselines import normalized_range

    if not bool(torch.isfinite(images).all()):
        raise OptionError(f"{option}: the images contain NaN or infinite values")
    low_high = (0.0, 1.0) if pixel_range is None else tuple(pixel_range)
    if low_high[0] >= low_high[1]:
        raise OptionError(f"--value-range: low must be below high, got {low_high}")
    low, high = float(images.min()), float(images.max())
    if low < low_high[0] - 1e-6 or high > low_high[1] + 1e-6:
        raise OptionError(
            f"--value-range: {option} holds values in [{low:.3g}, {high:.3g}], "
            f"outside the valid range {list(low_high)}; give the pixel range "
            "with --value-range LOW HIGH"
        )
    if mean is None and std is None:
        return images, (low_high[0], low_high[1])
    if mean is None or std is None:
        raise OptionError("--mean and --std must be given together")
    channels = images.shape[1]
    mean_c, std_c = _per_channel(mean, channels), _per_channel(std, channels)
    if mean_c is None or std_c is None:
        raise OptionError(
            f"--mean/--std: need 1 or {channels} values (one per channel), got "
            f"{len(mean)} and {len(std)}"
        )
    if any(s <= 0 for s in std_c):
        raise OptionError(f"--std: every value must be > 0, got {list(std)}")
    mean_t = torch.tensor(mean_c, dtype=images.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std_c, dtype=images.dtype).view(-1, 1, 1)
    value_range = normalized_range(mean_c, std_c, low_high)  # type: ignore[arg-type]
    return (images - mean_t) / std_t, value_range


def _per_channel(values: Sequence[float], channels: int) -> list[float] | None:
    if len(values) == channels:
        return list(values)
    return list(values) * channels if len(values) == 1 else None


# ----------------------------------------------------------------------------
# Outputs, targets and the layer


def model_outputs(model: nn.Module, images: Tensor, batch: int) -> Tensor:
    """Logits ``(N, K)`` of the model on the images, with clear errors."""
    try:
        with torch.no_grad():
            outputs = torch.cat(
                [model(images[i : i + batch]) for i in range(0, len(images), batch)]
            )
    except Exception as error:  # noqa: BLE001
        raise OptionError(
            f"--images: the model fails on images of shape "
            f"{tuple(images.shape[1:])} (see --size, --grayscale): "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(outputs, Tensor) or outputs.dim() != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else None
        raise OptionError(
            f"--model: the model must return logits (N, classes), got {shape}"
        )
    return outputs


def resolve_targets(targets: Sequence[int] | None, outputs: Tensor) -> Tensor:
    """The classes explained: ``targets`` (one, or one per image) or the model's
    predictions."""
    n, classes = outputs.shape
    if targets is None:
        return outputs.argmax(1)
    if len(targets) not in (1, n):
        raise OptionError(
            f"--targets: give one class or one per image ({n}), got {len(targets)}"
        )
    bad = [t for t in targets if not 0 <= t < classes]
    if bad:
        raise OptionError(f"--targets: classes must be in [0, {classes}), got {bad}")
    return torch.tensor(list(targets) * n if len(targets) == 1 else list(targets))


def _is_convolution(module: nn.Module) -> bool:
    if isinstance(module, torch.jit.ScriptModule):
        return getattr(module, "original_name", "").startswith("Conv")
    return isinstance(module, nn.modules.conv._ConvNd)


def output_shapes(model: nn.Module, image: Tensor) -> dict[str, tuple[int, ...]]:
    """``{module name: output shape}`` on one forward of ``image``, in the order
    the modules ran (tensor outputs only)."""
    modules = {m: n for n, m in model.named_modules() if n}
    shapes: dict[str, tuple[int, ...]] = {}

    def record(module: nn.Module, _: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            shapes[modules[module]] = tuple(output.shape)

    with registered_hooks() as hooks, torch.no_grad():
        for module in modules:
            hooks.forward_hook(module, record)
        model(image)
    return shapes


def choose_layer(
    model: nn.Module, image: Tensor, name: str | None
) -> tuple[LayerChoice | None, str]:
    """The layer of the layer methods and, when there is none, why.

    ``name`` (``--layer``) must be a module whose output is a feature map
    ``(N, C, h, w)``; it is checked on one forward of ``image`` before any work.
    Without ``name``, the last convolution whose output is at least
    :data:`MIN_LAYER_SIDE` cells on each side is chosen.
    """
    modules = dict(model.named_modules())
    scripted = isinstance(model, torch.jit.ScriptModule)
    if name is not None and (name == "" or name not in modules):
        names = [n for n, m in modules.items() if n and _is_convolution(m)]
        raise OptionError(
            f"--layer: the model has no module named {name!r}; its convolutional "
            f"layers: {', '.join(names) or 'none'}"
        )
    if scripted:
        if name is not None and not _is_convolution(modules[name]):
            raise OptionError(f"--layer: {name!r} is not a convolutional layer")
        note = (
            "a TorchScript model cannot be hooked; give --model "
            "package.module:callable for layer methods"
        )
        return None, note
    shapes = output_shapes(model, image[:1])
    maps = {n: s for n, s in shapes.items() if len(s) == 4}
    convolutions = {n: s for n, s in maps.items() if _is_convolution(modules[n])}
    listed = ", ".join(f"{n} ({s[2]}x{s[3]})" for n, s in convolutions.items())
    if name is not None:
        if name not in maps:
            got = shapes.get(name)
            what = f"outputs shape {got}" if got else "does not run in the forward"
            raise OptionError(
                f"--layer: {name!r} {what}, not feature maps (N, C, H, W); "
                f"convolutional layers: {listed or 'none'}"
            )
        h, w = maps[name][2:]
        return LayerChoice(name, modules[name], (h, w), "given by --layer"), ""
    large = [n for n, s in convolutions.items() if min(s[2:]) >= MIN_LAYER_SIDE]
    if not large:
        note = (
            f"no convolutional layer has an output of at least {MIN_LAYER_SIDE}x"
            f"{MIN_LAYER_SIDE} (convolutional layers: {listed or 'none'}); name one "
            "with --layer"
        )
        return None, note
    chosen = large[-1]
    h, w = maps[chosen][2:]
    reason = (
        "chosen by default as the last convolutional layer whose output is at "
        f"least {MIN_LAYER_SIDE}x{MIN_LAYER_SIDE}; --layer NAME picks another"
    )
    return LayerChoice(chosen, modules[chosen], (h, w), reason), ""


__all__ = [
    "IMAGE_SUFFIXES",
    "MODEL_FORMS",
    "choose_layer",
    "load_images",
    "load_model",
    "model_outputs",
    "normalize",
    "output_shapes",
    "resolve_targets",
]
