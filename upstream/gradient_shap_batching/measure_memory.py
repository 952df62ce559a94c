"""Peak memory of ``GradientShap.attribute`` against ``n_samples``, before and after.

Every measurement runs in a fresh Python process (so that no earlier call's
allocations are counted) on one thread: a small CNN on one 3x32x32 image, 20
reference images, target 0. The process makes one warm-up call with
``n_samples=2``, resets the kernel's resident-set high-water mark
(``/proc/self/clear_refs``), reads ``VmRSS``, makes the measured call and reads
``VmHWM``: the figure is ``VmHWM - VmRSS``, the peak resident memory the call
added (Linux only).

"before" is the installed Captum; "after" the same Captum with
``gradient_shap_batching.patch`` applied (``upstream.patching``), called
without and with ``internal_batch_size``.

    python -m upstream.gradient_shap_batching.measure_memory
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from upstream.patching import PATCHES, patched_captum

N_SAMPLES = (64, 256, 2000)
INTERNAL_BATCH_SIZE = 64


def _status_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")
    return int(match.group(1))


def worker(n_samples: int, internal_batch_size: int | None) -> dict[str, float]:
    import time

    import torch
    from captum.attr import GradientShap

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 8 * 8, 10),
    ).eval()
    inputs = torch.rand(1, 3, 32, 32)
    references = torch.rand(20, 3, 32, 32)
    gradient_shap = GradientShap(model)
    kwargs = {}
    if internal_batch_size is not None:
        kwargs["internal_batch_size"] = internal_batch_size
    gradient_shap.attribute(inputs, references, n_samples=2, target=0, **kwargs)

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    gradient_shap.attribute(inputs, references, n_samples=n_samples, target=0, **kwargs)
    seconds = time.perf_counter() - start
    return {
        "peak_mib": (_status_kib("VmHWM") - before) / 1024,
        "seconds": seconds,
    }


def measure(
    pythonpath: str | None, n_samples: int, internal_batch_size: int | None
) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-c", _WORKER, str(n_samples), str(internal_batch_size)]
    result = subprocess.run(
        command,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


_WORKER = """
import json, sys
import captum
from upstream.gradient_shap_batching.measure_memory import worker
n, b = int(sys.argv[1]), None if sys.argv[2] == "None" else int(sys.argv[2])
print(json.dumps(dict(worker(n, b), captum=captum.__file__)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        patched = str(patched_captum(Path(folder), [PATCHES["gradient_shap_batching"]]))
        # the worker imports `upstream` from the repository root, captum from here
        variants = [
            ("before (Captum 0.9.0)", None, None),
            ("after, internal_batch_size=None", patched, None),
            (
                f"after, internal_batch_size={INTERNAL_BATCH_SIZE}",
                patched,
                INTERNAL_BATCH_SIZE,
            ),
        ]
        print("| variant | " + " | ".join(f"n_samples={n}" for n in N_SAMPLES) + " |")
        print("|---|" + "---|" * len(N_SAMPLES))
        for label, pythonpath, internal_batch_size in variants:
            cells = []
            for n_samples in N_SAMPLES:
                runs = [
                    measure(pythonpath, n_samples, internal_batch_size)
                    for _ in range(args.repeats)
                ]
                expected = folder if pythonpath else "site-packages"
                if any(expected not in run["captum"] for run in runs):
                    raise RuntimeError(f"{label}: imported {runs[0]['captum']}")
                peak = statistics.median(run["peak_mib"] for run in runs)
                seconds = statistics.median(run["seconds"] for run in runs)
                cells.append(f"{peak:.1f} MiB, {seconds:.2f} s")
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
