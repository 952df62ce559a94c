"""PGIG vs Captum IG, and the cost of fitting patterns, on VGG-11(-BN) and ResNet-18.

Same model (torchvision, random weights, eval mode), same inputs, same ``n_steps``,
``method`` and ``internal_batch_size``.  Printed, every time a median over runs
that alternate with their reference (the machine may be shared):

- PGIG time / Captum ``IntegratedGradients`` time; the pattern backward adds one
  output copy per patterned layer, nothing else;
- ``fit_patterns`` time per image / plain forward time per image, both over the
  same images in batches of 16x3x112x112 (``--quick``: 64x64).  The floor is
  about 3: the forward, plus one weight-gradient product per layer with twice
  the layer's outputs (the masked outputs and the masks of the A+ estimator);
  also printed as the median of the per-run ratios;
- the memory of the statistics, measured for the layers fitted and computed from
  the weight shapes for every layer (VGG-11's 25088 x 4096 layer alone needs
  1.6 GB, so ``classifier.0`` is left out of the VGG fits unless ``--all-layers``).

Run: ``python benchmarks/bench_pgig.py [--quick] [--fit-only] [--all-layers]
[--threads N] [--repeats N] [--no-progress]``
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from captum.attr import IntegratedGradients
from torch import nn
from torchvision.models import resnet18, vgg11, vgg11_bn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

from captum_baselines.attr.patterns import Patterns, accumulate_statistics  # noqa: E402
from captum_baselines.attr.pgig import PatternGuidedIntegratedGradients  # noqa: E402

MODELS = {"VGG-11": vgg11, "VGG-11-BN": vgg11_bn, "ResNet-18": resnet18}
FIT_BATCH = 16


def patterned_layers(model: nn.Module, all_layers: bool) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d))
        and (all_layers or module.weight.numel() < 50_000_000)
    ]


def statistics_bytes_from_shapes(model: nn.Module) -> int:
    """float64 sums for every layer, as if each fed a ReLU (the upper bound)."""
    return sum(
        2 * module.weight.numel() * 8
        for module in model.modules()
        if isinstance(module, (nn.Linear, nn.Conv2d))
    )


def bench_fit(
    model: nn.Module,
    layers: list[str],
    data: torch.Tensor,
    repeats: int,
    progress: bool,
) -> tuple[float, float, float, float]:
    """fit_patterns and forward seconds per image, and their ratio two ways."""
    times: dict[str, list[float]] = {"fit": [], "forward": []}

    def fit() -> None:
        accumulate_statistics(
            model, data, layers=layers, show_progress=False, batch_size=FIT_BATCH
        )

    def forward() -> None:
        with torch.no_grad():
            for chunk in data.split(FIT_BATCH):
                model(chunk)

    runs = {"fit": fit, "forward": forward}
    for run in runs.values():  # warm-up
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    fit_s, forward_s = (statistics.median(times[k]) / len(data) for k in runs)
    per_run = statistics.median(f / b for f, b in zip(times["fit"], times["forward"]))
    return fit_s, forward_s, fit_s / forward_s, per_run


def bench_model(
    label: str,
    build: Callable[..., nn.Module],
    all_layers: bool,
    size: int,
    batch: int,
    n_steps: int,
    n_fit: int,
    repeats: int,
    progress: bool,
    fit_only: bool,
) -> None:
    torch.manual_seed(0)
    model = build(weights=None).eval()
    data = torch.rand(n_fit, 3, size, size)
    layers = patterned_layers(model, all_layers)
    print(f"\n{label} ({len(layers)} layers fitted)")
    fit_s, forward_s, ratio, per_run = bench_fit(model, layers, data, repeats, progress)
    print(
        f"  fit_patterns {fit_s * 1e3:.1f} ms/image, forward {forward_s * 1e3:.1f} "
        f"ms/image: ratio {ratio:.2f} (median of per-run ratios {per_run:.2f})"
    )
    if fit_only:
        return
    statistics = accumulate_statistics(
        model, data[:FIT_BATCH], layers=layers, show_progress=False
    )
    print(
        f"  statistics memory: {statistics.nbytes / 2**20:.0f} MiB for the "
        f"layers fitted, {statistics_bytes_from_shapes(model) / 2**20:.0f} MiB "
        "for every layer (float64, from the shapes)"
    )
    # Time the backward with every layer patterned: layers not fitted get ones.
    patterns = Patterns(
        {
            name: torch.ones_like(module.weight)
            for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))
        }
        | dict(statistics.patterns(model))
    )
    x = torch.rand(batch, 3, size, size)
    ig = IntegratedGradients(model)
    pgig = PatternGuidedIntegratedGradients(model, patterns)
    kwargs = dict(target=3, n_steps=n_steps, internal_batch_size=batch * n_steps // 2)
    medians = alternating_medians(
        {
            "Captum IG": lambda: ig.attribute(x, **kwargs),
            "PGIG": lambda: pgig.attribute(x, **kwargs),
        },
        repeats,
        progress,
    )
    print(f"  Captum IG   {medians['Captum IG']:.3f} s")
    print(f"  PGIG        {medians['PGIG']:.3f} s")
    print(f"  PGIG / IG   {medians['PGIG'] / medians['Captum IG']:.3f}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--all-layers", action="store_true", help="fit every layer")
    p.add_argument("--fit-only", action="store_true", help="time fit_patterns only")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    size, batch, n_steps, n_fit = (64, 2, 8, 32) if args.quick else (112, 2, 16, 64)
    repeats = args.repeats or (3 if args.quick else 7)
    torch.set_flush_denormal(True)
    print(
        f"PGIG inputs {batch}x3x{size}x{size}, n_steps={n_steps}, "
        f"internal_batch_size={batch * n_steps // 2}; fit_patterns on {n_fit} "
        f"images in batches of {FIT_BATCH}x3x{size}x{size}; {repeats} repeats, "
        f"{torch.get_num_threads()} threads"
    )
    for label, build in MODELS.items():
        bench_model(
            label,
            build,
            args.all_layers,
            size,
            batch,
            n_steps,
            n_fit,
            repeats,
            progress,
            args.fit_only,
        )


if __name__ == "__main__":
    main()
