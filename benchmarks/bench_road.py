"""Cost of a ROAD curve (Noisy Linear Imputation) relative to the mean-fill curve.

``cb.metrics.ablation_curve(..., fill="road")`` against the same curve with
``fill="mean"`` (11 fractions, 10 evaluated steps per image, MoRF), on

* the embedded DigitsCNN (random weights) on scikit-learn's 8x8 digits, and
* a torchvision ResNet-18 with random weights on 3x112x112 images,

each with two kinds of attribution maps: *scattered* (i.i.d. Gaussian, like a
noisy gradient map: many small removed regions) and *smooth* (a Gaussian bump
at a random place, like an upsampled Grad-CAM: one large removed region, the
hard case for the solver).  Printed: milliseconds per image and the ratio
ROAD / mean fill (the goal is at most 3).  Timings alternate the runs and take
medians.

Run: ``python benchmarks/bench_road.py [--quick]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

import captum_baselines as cb  # noqa: E402
from captum_baselines.datasets import load_digits_images  # noqa: E402
from captum_baselines.models import DigitsCNN  # noqa: E402


def smooth_maps(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """``(n, 1, H, W)`` Gaussian bumps of width H / 4 at random centers."""
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    center = torch.rand(n, 2, generator=g) * torch.tensor([height, width])
    distance = (rows - center[:, 0, None, None]) ** 2
    distance = distance + (cols - center[:, 1, None, None]) ** 2
    return torch.exp(-distance / (2 * (height / 4) ** 2))[:, None]


def compare(name: str, model, x, repeats: int, progress: bool) -> list[float]:
    g = torch.Generator().manual_seed(0)
    maps = {
        "scattered": torch.randn(x.shape, generator=g),
        "smooth": smooth_maps(x.shape[0], x.shape[2], x.shape[3], g),
    }
    with torch.no_grad():
        target = model(x).argmax(1)
    runs = {}
    for kind, attributions in maps.items():
        for fill in ("mean", "road"):
            runs[f"{kind} {fill}"] = lambda a=attributions, f=fill: (
                cb.metrics.ablation_curve(
                    model, x, a, target, fill=f, generator=torch.Generator()
                )
            )
    times = alternating_medians(runs, repeats, progress)
    n = x.shape[0]
    print(f"{name}: {n} images {tuple(x.shape[1:])}, 11 fractions")
    ratios = []
    for kind in maps:
        mean, road = times[f"{kind} mean"], times[f"{kind} road"]
        ratios.append(road / mean)
        print(
            f"  {kind:<9} mean fill {1000 * mean / n:8.2f} ms/image, "
            f"ROAD {1000 * road / n:8.2f} ms/image, ROAD / mean {road / mean:5.2f}"
        )
    return ratios


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    # one thread, as in the test suite: on shared cores two threads spin-wait
    # and distort the small convolutions of the digits model
    torch.set_num_threads(1)
    progress = not args.no_progress
    repeats = args.repeats or (2 if args.quick else 5)
    print(f"{torch.get_num_threads()} threads")

    torch.manual_seed(0)
    digits = load_digits_images("digits", size=8).test_images
    n_digits = 32 if args.quick else 128
    ratios = compare(
        "DigitsCNN", DigitsCNN(size=8).eval(), digits[:n_digits], repeats, progress
    )

    import torchvision

    resnet = torchvision.models.resnet18(num_classes=10).eval()
    n_images = 4 if args.quick else 16
    images = torch.rand(
        n_images, 3, 112, 112, generator=torch.Generator().manual_seed(1)
    )
    ratios += compare("ResNet-18", resnet, images, repeats, progress)
    print(f"worst ROAD / mean fill: {max(ratios):.2f} (goal: <= 3)")


if __name__ == "__main__":
    main()
