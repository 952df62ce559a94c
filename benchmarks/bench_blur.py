"""``cb.baselines.blur`` on a 32x3x224x224 batch vs one ResNet-18 forward pass.

Also times ``scipy.ndimage.gaussian_filter`` (the Distill article's blur) on the
same batch, where scipy is installed. sigma = 20 (the article's ablation setting)
and sigma = 5. Median wall time over alternating runs.

Run: ``python benchmarks/bench_blur.py [--quick]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchvision.models import resnet18

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

import captum_baselines as cb  # noqa: E402


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    torch.manual_seed(0)
    batch = 8 if args.quick else 32
    repeats = args.repeats or (2 if args.quick else 5)
    x = torch.rand(batch, 3, 224, 224)
    model = resnet18(weights=None).eval()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    runs = {
        "resnet18 forward": forward,
        "blur sigma=5": lambda: cb.baselines.blur(x, 5.0),
        "blur sigma=20": lambda: cb.baselines.blur(x, 20.0),
    }
    try:
        from scipy.ndimage import gaussian_filter

        array = x.numpy()
        runs["scipy sigma=20"] = lambda: gaussian_filter(array, (0, 0, 20, 20))
    except ImportError:
        pass
    times = alternating_medians(runs, repeats, not args.no_progress)
    floor = times["resnet18 forward"]
    print(f"batch {batch}x3x224x224, {torch.get_num_threads()} threads")
    for name, t in times.items():
        print(f"{name:<18} {t:8.3f} s   ratio to ResNet-18 forward {t / floor:6.3f}")


if __name__ == "__main__":
    main()
