"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from tqdm import tqdm


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per method")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def alternating_medians(
    runs: dict[str, Callable[[], object]], repeats: int, progress: bool = True
) -> dict[str, float]:
    """Median wall time of each run, the runs interleaved so drift hits all alike.

    Every run is called once untimed first (warm-up).
    """
    torch.set_flush_denormal(True)
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in tqdm(range(repeats), desc="timing", disable=not progress):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
