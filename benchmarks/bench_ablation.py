"""Cost of ``cb.metrics.ablation_curve``: batched rows vs one forward per row.

The embedded DigitsCNN (random weights) at 32x32, 64 images, 11 fractions
(10 ablated steps per image, the unablated step is not re-evaluated). Printed:
milliseconds per image of the batched curve, of a loop with
``internal_batch_size=1``, and of the bare forward passes over the same rows
(the floor), with their ratios.

Run: ``python benchmarks/bench_ablation.py [--quick]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

import captum_baselines as cb  # noqa: E402
from captum_baselines.models import DigitsCNN  # noqa: E402


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    torch.manual_seed(0)
    n = 16 if args.quick else 64
    repeats = args.repeats or (2 if args.quick else 5)
    model = DigitsCNN(size=32).eval()
    x = torch.rand(n, 1, 32, 32)
    attributions = torch.randn_like(x)
    target = model(x).argmax(1)
    rows = x.repeat(10, 1, 1, 1)

    def floor() -> None:
        with torch.no_grad():
            model(rows)

    times = alternating_medians(
        {
            "batched": lambda: cb.metrics.ablation_curve(
                model, x, attributions, target=target
            ),
            "one row at a time": lambda: cb.metrics.ablation_curve(
                model, x, attributions, target=target, internal_batch_size=1
            ),
            "bare forwards": floor,
        },
        repeats,
        not args.no_progress,
    )
    print(
        f"DigitsCNN 32x32, {n} images, 11 fractions, {torch.get_num_threads()} threads"
    )
    for name, t in times.items():
        print(f"{name:<18} {1000 * t / n:8.2f} ms/image")
    print(
        f"batched / bare forwards {times['batched'] / times['bare forwards']:.2f}, "
        f"batched / one row at a time "
        f"{times['batched'] / times['one row at a time']:.3f}"
    )


if __name__ == "__main__":
    main()
