"""PGIG vs Captum IG, and the cost of fitting patterns, on VGG-11 and ResNet-18.

Same model (torchvision, random weights, eval mode), same inputs, same ``n_steps``,
``method`` and ``internal_batch_size``. Printed:

- PGIG time / Captum ``IntegratedGradients`` time (median over alternating runs);
  the pattern backward adds one output copy per patterned layer, nothing else;
- ``fit_patterns`` time per image / plain forward time per image (the statistics
  are float64 sums: two weight-gradient-sized products per layer and batch);
- the memory of the statistics, measured for the layers fitted and computed from
  the weight shapes for every layer (VGG-11's 25088 x 4096 layer alone needs
  1.6 GB, so ``classifier.0`` is left out of the VGG fit unless ``--all-layers``).

Run: ``python benchmarks/bench_pgig.py [--quick] [--all-layers] [--no-progress]``
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from captum.attr import IntegratedGradients
from torch import nn
from torchvision.models import resnet18, vgg11

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

from captum_baselines.attr.patterns import Patterns, accumulate_statistics  # noqa: E402
from captum_baselines.attr.pgig import PatternGuidedIntegratedGradients  # noqa: E402

MODELS = {"VGG-11": vgg11, "ResNet-18": resnet18}


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
) -> None:
    internal_batch_size = batch * n_steps // 2
    torch.manual_seed(0)
    model = build(weights=None).eval()
    x = torch.rand(batch, 3, size, size)
    data = torch.rand(n_fit, 3, size, size)
    layers = patterned_layers(model, all_layers)

    start = time.perf_counter()
    statistics = accumulate_statistics(
        model, data, layers=layers, progress=progress, batch_size=16
    )
    fit_time = time.perf_counter() - start
    # Time the backward with every layer patterned: layers not fitted get ones.
    patterns = Patterns(
        {
            name: torch.ones_like(module.weight)
            for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))
        }
        | dict(statistics.patterns(model))
    )
    with torch.no_grad():
        start = time.perf_counter()
        for chunk in data.split(16):
            model(chunk)
        forward_time = time.perf_counter() - start

    ig = IntegratedGradients(model)
    pgig = PatternGuidedIntegratedGradients(model, patterns)
    kwargs = dict(target=3, n_steps=n_steps, internal_batch_size=internal_batch_size)
    medians = alternating_medians(
        {
            "Captum IG": lambda: ig.attribute(x, **kwargs),
            "PGIG": lambda: pgig.attribute(x, **kwargs),
        },
        repeats,
        progress,
    )
    print(f"\n{label} ({len(layers)} of {len(patterns)} layers fitted)")
    print(f"  Captum IG   {medians['Captum IG']:.3f} s")
    print(f"  PGIG        {medians['PGIG']:.3f} s")
    print(f"  PGIG / IG   {medians['PGIG'] / medians['Captum IG']:.3f}")
    print(
        f"  fit_patterns {fit_time / n_fit * 1e3:.1f} ms/image, forward "
        f"{forward_time / n_fit * 1e3:.1f} ms/image, ratio "
        f"{fit_time / forward_time:.2f}"
    )
    print(
        f"  statistics memory: {statistics.nbytes / 2**20:.0f} MiB for the "
        f"layers fitted, {statistics_bytes_from_shapes(model) / 2**20:.0f} MiB "
        "for every layer (float64, from the shapes)"
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--all-layers", action="store_true", help="fit every layer")
    args = p.parse_args()
    progress = not args.no_progress
    size, batch, n_steps, n_fit = (64, 2, 8, 16) if args.quick else (112, 2, 16, 64)
    repeats = args.repeats or (3 if args.quick else 5)
    internal_batch_size = batch * n_steps // 2
    torch.set_flush_denormal(True)
    print(
        f"inputs {batch}x3x{size}x{size}, n_steps={n_steps}, "
        f"internal_batch_size={internal_batch_size}, {repeats} repeats, "
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
        )


if __name__ == "__main__":
    main()
