"""Blur IG and Guided IG: ours (batched, on the path engine) vs PAIR's ``saliency``.

The authors' implementations (``saliency.core.BlurIG``, ``saliency.core.GuidedIG``,
NumPy, one image at a time) and ours drive the same model: torchvision ResNet-18
with random weights, eval mode, float32, on a batch of 8 random 3x112x112 images,
2 threads (``--threads``), equal settings (the reference's defaults: Blur IG
max_sigma=50, 100 steps, grad_step=0.01; Guided IG 200 steps, fraction=0.25,
max_dist=0.02, black baseline), each image explained for the model's top class.
The reference's ``call_model_function`` runs the torch model on the points it is
given (HWC moved to CHW).  Blur IG's reference is timed with its default
``batch_size=1`` and with all of an image's steps in one call
(``batch_size=steps``); ours evaluates 100 path points per pass.  The reference
explains one image at a time, so its time per image is taken on the first
``--reference-images`` (2) images of the batch, where the results are compared.

Printed: the median wall time per image over alternating repeated runs (the
machine's cores may be shared: alternation makes drift hit every run alike),
ours / reference, and the largest difference of the attributions relative to
the reference's largest, ``max|ours - ref| / max|ref|``, next to the
reference's own sensitivity to float32 rounding (its Blur IG on float64 images;
its Guided IG on an input nudged by 1e-7), and ours one image at a time.

Run: ``python benchmarks/bench_path_methods.py [--quick] [--threads N]``
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from saliency.core import INPUT_OUTPUT_GRADIENTS, BlurIG, GuidedIG
from torch import nn
from torchvision.models import resnet18

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

import captum_baselines as cb  # noqa: E402


def call_model_function(model: nn.Module, target: int) -> Callable[..., Any]:
    """saliency's interface to the model: gradients of one class score."""

    def call(batch: Any, call_model_args: Any = None, expected_keys: Any = None):
        chw = np.moveaxis(np.asarray(batch, dtype=np.float32), -1, 1)
        x = torch.from_numpy(np.ascontiguousarray(chw)).requires_grad_()
        (gradient,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        return {INPUT_OUTPUT_GRADIENTS: np.moveaxis(gradient.numpy(), 1, -1)}

    return call


def numpy2_quantile() -> None:
    """saliency 0.2.1's Guided IG calls ``np.quantile(..., interpolation=)``,
    removed in NumPy 2: translate it to ``method=``."""
    original = np.quantile

    def quantile(a: Any, q: Any, *args: Any, interpolation: Any = None, **kw: Any):
        if interpolation is not None:
            kw["method"] = interpolation
        return original(a, q, *args, **kw)

    np.quantile = quantile  # type: ignore[assignment]


def per_image(
    method: Callable[[np.ndarray, Callable[..., Any]], np.ndarray],
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
) -> torch.Tensor:
    """The reference's mask of each image, batched back to NCHW."""
    masks = [
        method(
            np.ascontiguousarray(xi.permute(1, 2, 0).numpy()),
            call_model_function(model, t),
        )
        for xi, t in zip(x, targets)
    ]
    return torch.from_numpy(np.stack(masks)).permute(0, 3, 1, 2).float()


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument(
        "--reference-images", type=int, default=2, help="images the reference times"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    numpy2_quantile()
    batch, size = (2, 64) if args.quick else (8, 112)
    blur_steps, guided_steps = (10, 10) if args.quick else (100, 200)
    repeats = args.repeats or (1 if args.quick else 3)
    torch.manual_seed(0)
    model = resnet18(weights=None).eval()
    x = torch.rand(batch, 3, size, size)
    with torch.no_grad():
        targets = model(x).argmax(1).tolist()
    progress = not args.no_progress
    m = min(args.reference_images, batch)

    blur = dict(max_sigma=50.0, grad_step=0.01)
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "ours": lambda: cb.BlurIntegratedGradients(model).attribute(
            x, target=targets, n_steps=blur_steps, internal_batch_size=100, **blur
        ),
        "saliency": lambda: per_image(
            lambda xi, call: BlurIG().GetMask(xi, call, steps=blur_steps, **blur),
            model,
            x[:m],
            targets[:m],
        ),
        "saliency batch_size=steps": lambda: per_image(
            lambda xi, call: BlurIG().GetMask(
                xi, call, steps=blur_steps, batch_size=blur_steps, **blur
            ),
            model,
            x[:m],
            targets[:m],
        ),
    }
    results = report("Blur IG", runs, size, repeats, progress)
    # the reference's own float32 error: its path blurred in float64 instead
    in_float64 = per_image(
        lambda xi, call: BlurIG().GetMask(
            xi.astype(np.float64), call, steps=blur_steps, **blur
        ),
        model,
        x[:1],
        targets[:1],
    )
    print(
        "  saliency on float64 images vs float32 (its own float32 error): "
        f"{relative_difference(results['saliency'][:1], in_float64):.1e}"
    )

    guided = dict(fraction=0.25, max_dist=0.02)
    runs = {
        "ours": lambda: cb.GuidedIntegratedGradients(model).attribute(
            x, target=targets, n_steps=guided_steps, **guided
        ),
        "saliency": lambda: per_image(
            lambda xi, call: GuidedIG().GetMask(
                xi, call, x_steps=guided_steps, **guided
            ),
            model,
            x[:m],
            targets[:m],
        ),
    }
    results = report("Guided IG", runs, size, repeats, progress)
    # A guided path is chaotic at float32 rounding, and the model's float32
    # gradients depend on the batch (about 1e-6 between 8 images and 1):
    # one image at a time ours is the reference's path; the reference itself
    # moves as much when its input moves by 1e-7.
    alone = cb.GuidedIntegratedGradients(model).attribute(
        x[:1], target=targets[:1], n_steps=guided_steps, **guided
    )
    noise = 1 + 1e-7 * torch.randn(x[:1].shape, generator=torch.Generator())
    nudged = per_image(
        lambda xi, call: GuidedIG().GetMask(xi, call, x_steps=guided_steps, **guided),
        model,
        x[:1] * noise,
        targets[:1],
    )
    reference = results["saliency"][:1]
    print(
        "  ours one image at a time vs saliency: "
        f"{relative_difference(alone, reference):.1e}; saliency on x (1 + 1e-7 "
        f"noise) vs on x: {relative_difference(nudged, reference):.1e}"
    )


def report(
    name: str,
    runs: dict[str, Callable[[], torch.Tensor]],
    size: int,
    repeats: int,
    progress: bool,
) -> dict[str, torch.Tensor]:
    """Times the runs and prints the table; returns each run's attributions."""
    results: dict[str, torch.Tensor] = {}

    def keeping(label: str, run: Callable[[], torch.Tensor]) -> Callable[[], None]:
        return lambda: results.__setitem__(label, run())

    times = alternating_medians(
        {label: keeping(label, run) for label, run in runs.items()}, repeats, progress
    )
    images = {label: len(result) for label, result in results.items()}
    print(
        f"{name}: ResNet-18 (random weights), 3x{size}x{size} images, "
        f"{torch.get_num_threads()} threads, median of {repeats} alternating runs"
    )
    seconds = {label: t / images[label] for label, t in times.items()}
    for label, t in seconds.items():
        line = f"  {label:<26} {images[label]} images {t:8.3f} s per image"
        if label != "ours":
            ours = results["ours"][: images[label]]
            line += (
                f"   ours / this {seconds['ours'] / t:6.3f}"
                f"   max relative difference "
                f"{relative_difference(ours, results[label]):.1e}"
            )
        print(line)
    return results


if __name__ == "__main__":
    main()
