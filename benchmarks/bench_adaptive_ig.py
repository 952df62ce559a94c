"""Adaptive IG vs fixed 500-step IG: evaluations and time to 1% error per feature.

Same model (torchvision ResNet-18, random weights, eval mode; and a narrow random
ReLU CNN), same inputs and baseline (black). The fixed peer is Captum's
``IntegratedGradients`` with 500 Gauss-Legendre nodes (the Distill article's 500
points); ours is ``AdaptiveIntegratedGradients(rtol=0.01)``, which stops when the
completeness residual is within 1% and doubling the nodes changes the
attributions by at most 1% in L1 norm. Printed: rows evaluated by the model
(forward+backward rows for gradients, forward rows for the delta), the median wall
time over alternating runs, their ratios, and for each method the share of
examples whose error *per feature*, ``||IG - IG_ref||_1 / ||IG_ref||_1`` against
a reference with 4096 Gauss-Legendre nodes (2048 with ``--quick``), is <= 1%,
and the largest such error.

Run: ``python benchmarks/bench_adaptive_ig.py [--quick]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from captum.attr import IntegratedGradients
from torch import nn
from torchvision.models import resnet18

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

import captum_baselines as cb  # noqa: E402


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.model(x)


def relu_cnn() -> nn.Module:
    """A narrow random ReLU CNN: its path integrand is far less smooth."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).eval()


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    torch.set_flush_denormal(True)
    for name, make in (("ResNet-18", resnet18_10), ("ReLU CNN", relu_cnn)):
        torch.manual_seed(0)
        compare(name, Counting(make()), args)


def resnet18_10() -> nn.Module:
    return resnet18(weights=None, num_classes=10).eval()


def compare(label: str, model: Counting, args: argparse.Namespace) -> None:
    size, batch = (32, 4) if args.quick else (64, 8)
    repeats = args.repeats or (1 if args.quick else 3)
    x = torch.rand(batch, 3, size, size)
    baseline = cb.baselines.black(x)
    target = torch.arange(batch) % 10

    def fixed() -> torch.Tensor:
        attributions, _ = IntegratedGradients(model).attribute(
            x,
            baseline,
            target=target,
            n_steps=500,
            internal_batch_size=250,
            return_convergence_delta=True,
        )
        return attributions

    def adaptive() -> torch.Tensor:
        attributions, _ = cb.AdaptiveIntegratedGradients(model).attribute(
            x,
            baseline,
            target=target,
            rtol=0.01,
            atol=0.0,
            max_n_steps=1024,
            internal_batch_size=250,
            return_convergence_delta=True,
        )
        return attributions

    reference = cb.QuadratureIntegratedGradients(model).attribute(
        x,
        baseline,
        target=target,
        n_steps=2048 if args.quick else 4096,
        internal_batch_size=256,
    )
    counts, within, worst = {}, {}, {}
    for name, run in (("fixed-500", fixed), ("adaptive", adaptive)):
        model.rows = 0
        attributions = run()
        counts[name] = model.rows
        error = (attributions - reference).abs().flatten(1).sum(
            1
        ) / reference.abs().flatten(1).sum(1)
        within[name] = float((error <= 0.01).float().mean())
        worst[name] = float(error.max())
    times = alternating_medians(
        {"fixed-500": fixed, "adaptive": adaptive}, repeats, not args.no_progress
    )
    print(f"{label} (random weights), batch {batch}, {size}x{size}, black baseline")
    for name in ("fixed-500", "adaptive"):
        print(
            f"{name:<10} rows evaluated {counts[name]:>7}   median time "
            f"{times[name]:8.3f} s   examples within 1% per feature: "
            f"{within[name]:.0%} (worst {worst[name]:.2%})"
        )
    print(
        f"ratio adaptive / fixed-500: evaluations "
        f"{counts['adaptive'] / counts['fixed-500']:.3f}, "
        f"time {times['adaptive'] / times['fixed-500']:.3f}"
    )


if __name__ == "__main__":
    main()
