"""LayerRSIGradCam vs Captum's LayerGradCam and LayerConductance on ResNet-18.

Same model (torchvision ResNet-18, random weights, eval mode), same inputs,
layer ``layer4``, black baseline. Peers:

- Captum ``LayerGradCam``: one forward+backward per example; RSI-Grad-CAM needs
  ``n_steps + 1`` of them, so ``GradCAM x (n_steps + 1)`` is the floor;
- Captum ``LayerConductance`` at the same ``n_steps`` (riemann_trapezoid grid,
  which also includes both ends of the path) and the same internal batch size:
  the closest Captum computation (a Riemann-Stieltjes sum through the layer).

Printed: median wall time over alternating runs and ratios, and the peak resident
memory of one call, each method measured in a fresh subprocess (the largest
resident set size sampled every millisecond during the call, minus the resident
set size just before it, model and inputs built).

Run: ``python benchmarks/bench_layer_rsi_grad_cam.py [--quick]``
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from captum.attr import LayerConductance, LayerGradCam
from torchvision.models import resnet18

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternating_medians, parser  # noqa: E402

from captum_baselines.attr.layer_rsi_grad_cam import LayerRSIGradCam  # noqa: E402

METHODS = ("gradcam", "rsi", "conductance")


def setup(size: int, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = resnet18(weights=None).eval()
    return model, torch.rand(batch, 3, size, size)


def runs(
    model: torch.nn.Module, x: torch.Tensor, n_steps: int, internal_batch_size: int
) -> dict[str, Callable[[], object]]:
    layer = model.layer4
    target = 7
    return {
        "gradcam": lambda: LayerGradCam(model, layer).attribute(x, target=target),
        "rsi": lambda: LayerRSIGradCam(model, layer).attribute(
            x,
            baselines=0.0,
            target=target,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
        ),
        "conductance": lambda: LayerConductance(model, layer).attribute(
            x,
            baselines=0.0,
            target=target,
            n_steps=n_steps,
            method="riemann_trapezoid",
            internal_batch_size=internal_batch_size,
        ),
    }


def peak_memory_mib(
    method: str, size: int, batch: int, n_steps: int, ibs: int
) -> float:
    """Growth of the peak RSS during one call, in a fresh interpreter."""
    config = json.dumps([method, size, batch, n_steps, ibs, torch.get_num_threads()])
    out = subprocess.run(
        [sys.executable, __file__, "--memory-of", config],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


class PeakRSS:
    """Samples this process's resident set size in a thread; ``peak`` in bytes."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def _memory_child(config: str) -> None:
    method, size, batch, n_steps, ibs, threads = json.loads(config)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    model, x = setup(size, batch)
    run = runs(model, x, n_steps, ibs)[method]
    with torch.no_grad():
        model(x[:1])  # allocator and kernels warmed up before the baseline reading
    before = PeakRSS.current()
    with PeakRSS() as rss:
        run()
    print((rss.peak - before) / 2**20)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--memory-of", default=None, help=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of is not None:
        _memory_child(args.memory_of)
        return
    if args.quick:
        size, batch, n_steps, ibs, repeats = 64, 2, 10, 11, 3
    else:
        size, batch, n_steps, ibs, repeats = 224, 1, 50, 17, 3
    repeats = args.repeats or repeats
    model, x = setup(size, batch)
    medians = alternating_medians(
        runs(model, x, n_steps, ibs), repeats, progress=not args.no_progress
    )
    memory = {m: peak_memory_mib(m, size, batch, n_steps, ibs) for m in METHODS}
    print(
        f"ResNet-18 layer4, input {batch}x3x{size}x{size}, n_steps={n_steps}, "
        f"internal_batch_size={ibs}, torch threads={torch.get_num_threads()}, "
        f"{repeats} alternating runs (median)"
    )
    print(f"{'method':<34}{'time [s]':>10}{'peak RSS growth [MiB]':>24}")
    labels = {
        "gradcam": "Captum LayerGradCam (1 pass)",
        "rsi": "LayerRSIGradCam (ours)",
        "conductance": "Captum LayerConductance",
    }
    for m in METHODS:
        print(f"{labels[m]:<34}{medians[m]:>10.3f}{memory[m]:>24.1f}")
    floor = medians["gradcam"] * (n_steps + 1)
    ratios = {
        "RSI / (GradCAM x (n_steps + 1)) time": medians["rsi"] / floor,
        "RSI / LayerConductance time": medians["rsi"] / medians["conductance"],
        "RSI / LayerConductance peak memory": memory["rsi"] / memory["conductance"],
    }
    for label, ratio in ratios.items():
        print(f"{label + ':':<38}{ratio:.2f}")


if __name__ == "__main__":
    main()
