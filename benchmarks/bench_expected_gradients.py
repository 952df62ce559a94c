"""ExpectedGradients against Captum's GradientShap(stdevs=0) on a ResNet-18 (CPU).

Prints, per image size:
- the median time of ``ExpectedGradients`` over that of ``GradientShap(stdevs=0)``
  at the same ``n_samples`` (runs alternate), and over the floor: plain batched
  forward+backward passes over the same rows, in the same internal batches;
- peak resident memory above the model and data (each measurement in a fresh
  subprocess) of
  ``ExpectedGradients`` at ``n_samples=2000`` with ``internal_batch_size``, and of
  ``GradientShap`` at sizes that fit, with its linear growth extrapolated to 2000
  (Linux only: the peak is read from ``/proc/self/status`` after resetting it).

Usage: ``python benchmarks/bench_expected_gradients.py [--quick] [--no-progress]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision
from captum.attr import GradientShap
from tqdm import tqdm

from captum_baselines.attr.expected_gradients import ExpectedGradients

BATCH = 4


def setup(
    size: int, batch: int = BATCH
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(batch, 3, size, size)
    pool = torch.rand(16, 3, size, size)
    return model, x, pool


def run_ours(model, x, pool, n_samples, ibs):  # type: ignore[no-untyped-def]
    ExpectedGradients(model).attribute(
        x,
        pool,
        target=0,
        n_samples=n_samples,
        internal_batch_size=ibs,
        generator=torch.Generator().manual_seed(0),
    )


def run_shap(model, x, pool, n_samples, ibs):  # type: ignore[no-untyped-def]
    np.random.seed(0)
    GradientShap(model).attribute(x, pool, n_samples=n_samples, stdevs=0.0, target=0)


def run_floor(model, x, pool, n_samples, ibs):  # type: ignore[no-untyped-def]
    """Forward+backward of the same number of rows, same batches, nothing else."""
    rows = len(x) * n_samples
    size = ibs or rows
    for start in range(0, rows, size):
        points = torch.rand(min(size, rows - start), *x.shape[1:], requires_grad=True)
        torch.autograd.grad(model(points)[:, 0].sum(), points)


METHODS = {"ours": run_ours, "shap": run_shap, "floor": run_floor, "none": None}


def child(method: str, size: int, n_samples: int, ibs: int | None, batch: int) -> None:
    torch.set_flush_denormal(True)
    model, x, pool = setup(size, batch)
    fn = METHODS[method]
    # ru_maxrss is dominated by the imports; reset the kernel's high-water mark
    # (VmHWM) so that only the attribution's own peak is measured
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_kib("VmRSS")
    if fn is not None:
        fn(model, x, pool, n_samples, ibs)
    print((status_kib("VmHWM") - before) / 1024)  # MiB


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_mib(
    method: str, size: int, n_samples: int, ibs: int | None, batch: int
) -> float:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            method,
            str(size),
            str(n_samples),
            str(ibs or 0),
            str(batch),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def time_ratios(size: int, n_samples: int, ibs: int, repeats: int, bar: tqdm) -> None:
    model, x, pool = setup(size)
    for fn in (run_ours, run_shap, run_floor):  # warm-up
        fn(model, x[:1], pool, 1, 1)
    times: dict[str, list[float]] = {"ours": [], "shap": [], "floor": []}
    for _ in range(repeats):
        for name in times:  # alternate the methods within each repeat
            start = time.perf_counter()
            METHODS[name](model, x, pool, n_samples, ibs if name != "shap" else None)
            times[name].append(time.perf_counter() - start)
            bar.update(1)
    med = {k: statistics.median(v) for k, v in times.items()}
    bar.write(
        f"{size}x{size} batch {BATCH} n_samples {n_samples} (ibs {ibs}): "
        f"ours {med['ours']:.2f}s  GradientShap {med['shap']:.2f}s  "
        f"floor {med['floor']:.2f}s  | "
        f"ours/GradientShap {med['ours'] / med['shap']:.2f}  "
        f"ours/floor {med['ours'] / med['floor']:.2f}"
    )


def memory(size: int, big_n: int, ibs: int, shap_ns: list[int], bar: tqdm) -> None:
    base = peak_mib("none", size, 1, None, 1)  # ~0: the measurement's own noise
    bar.update(1)
    ours = peak_mib("ours", size, big_n, ibs, 1) - base
    bar.update(1)
    ours_small = peak_mib("ours", size, ibs, ibs, 1) - base
    bar.update(1)
    shap = []
    for n in shap_ns:
        shap.append(peak_mib("shap", size, n, None, 1) - base)
        bar.update(1)
    slope, intercept = np.polyfit(shap_ns, shap, 1)
    bar.write(
        f"peak memory above model+data, {size}x{size}, batch 1: "
        f"ours n_samples {big_n} ibs {ibs}: {ours:.0f} MiB (n_samples {ibs}: "
        f"{ours_small:.0f} MiB); GradientShap "
        + ", ".join(
            f"n_samples {n}: {m:.0f} MiB" for n, m in zip(shap_ns, shap, strict=True)
        )
        + f"; fit {slope:.1f} MiB/sample -> n_samples {big_n}: "
        f"~{(intercept + slope * big_n) / 1024:.1f} GiB (extrapolated) | "
        f"GradientShap/ours at {big_n}: ~{(intercept + slope * big_n) / ours:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--child", nargs=5)
    args = parser.parse_args()
    if args.child:
        method, size, n, ibs, batch = args.child
        child(method, int(size), int(n), int(ibs) or None, int(batch))
        return
    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    if args.quick:
        timing = [(64, 16, 32, 3), (224, 4, 16, 1)]
        mem = [(64, 2000, 32, [32, 64, 128])]
    else:
        timing = [(64, 64, 64, 3), (224, 64, 64, 1)]
        mem = [(64, 2000, 32, [64, 128, 256]), (224, 2000, 16, [8, 16, 32])]
    total = sum(3 * r for *_, r in timing) + sum(3 + len(s) for *_, s in mem)
    with tqdm(total=total, disable=args.no_progress, desc="benchmark") as bar:
        for size, n_samples, ibs, repeats in timing:
            time_ratios(size, n_samples, ibs, repeats, bar)
        for size, big_n, ibs, shap_ns in mem:
            memory(size, big_n, ibs, shap_ns, bar)


if __name__ == "__main__":
    main()
