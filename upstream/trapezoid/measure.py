"""Captum's ``riemann_trapezoid`` before and after ``trapezoid.patch``.

Prints, for the installed Captum and for a copy with the patch applied
(``upstream.patching``), each run in its own Python process:

* the sum of the step sizes,
* IntegratedGradients completeness on a linear model (float64):
  ``sum(attributions) / (f(x) - f(x'))``, which any rule whose step sizes sum
  to one gets exactly,
* the largest relative error of IntegratedGradients on a quadratic model,
  ``x^T A x``, whose gradient is linear along the path, so the trapezoid rule
  is exact there (the other Riemann rules for reference),
* InternalInfluence on Captum's ``BasicModel_MultiLayer`` for the input and
  baseline of its test ``test_simple_with_baseline_internal_inf``, whose exact
  value is ``[0.7, 0.81, 0.81, 0.81]``.

    python -m upstream.trapezoid.measure
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from upstream.patching import PATCHES, patched_captum

N_STEPS = (2, 5, 10, 50, 300)
RULES = ("riemann_trapezoid", "riemann_left", "riemann_middle")


def worker() -> dict[str, Any]:
    import captum
    import torch
    from captum.attr import IntegratedGradients, InternalInfluence
    from captum.attr._utils.approximation_methods import approximation_parameters
    from captum.testing.helpers.basic_models import BasicModel_MultiLayer

    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 1).double()
    x = torch.randn(4, 8, dtype=torch.float64)
    gap = (linear(x) - linear(torch.zeros_like(x))).squeeze(1)
    a = torch.randn(8, 8, dtype=torch.float64)
    a = a + a.T

    def quadratic(inputs):
        return ((inputs @ a) * inputs).sum(1)

    exact = x * (x @ a)  # IG of x^T A x from the zero baseline
    result: dict[str, Any] = {"captum": captum.__file__}
    step_sizes, _ = approximation_parameters("riemann_trapezoid")
    result["step_size_sum"] = [sum(step_sizes(n)) for n in N_STEPS]
    result["linear_completeness"] = [
        float(
            (
                IntegratedGradients(linear)
                .attribute(x, n_steps=n, method="riemann_trapezoid")
                .sum(1)
                / gap
            ).mean()
        )
        for n in N_STEPS
    ]
    for rule in RULES:
        result[f"quadratic_error_{rule}"] = [
            float(
                (
                    (
                        IntegratedGradients(quadratic).attribute(
                            x, n_steps=n, method=rule
                        )
                        - exact
                    ).abs()
                ).max()
                / exact.abs().max()
            )
            for n in N_STEPS
        ]
    net = BasicModel_MultiLayer()
    result["internal_influence"] = (
        InternalInfluence(net, net.linear1)
        .attribute(
            torch.tensor([[0.0, 80.0, 0.0]]),
            baselines=torch.tensor([[0.0, -20.0, 0.0]]),
            target=0,
            n_steps=500,
            method="riemann_trapezoid",
        )
        .squeeze(0)
        .tolist()
    )
    return result


def run(pythonpath: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    code = (
        "import json; from upstream.trapezoid.measure import worker; "
        "print(json.dumps(worker()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def _row(label: str, values: list[float], fmt: str) -> str:
    return f"| {label} | " + " | ".join(format(v, fmt) for v in values) + " |"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        patched = str(patched_captum(Path(folder), [PATCHES["trapezoid"]]))
        results = {"before": run(None), "after": run(patched)}
        if folder not in results["after"]["captum"]:
            raise RuntimeError(f"imported {results['after']['captum']}")
    print("| n_steps | " + " | ".join(str(n) for n in N_STEPS) + " |")
    print("|---|" + "---|" * len(N_STEPS))
    for when, result in results.items():
        print(_row(f"{when}: step sizes sum", result["step_size_sum"], ".4f"))
        print(
            _row(
                f"{when}: linear model, sum(attr) / (f(x) - f(x'))",
                result["linear_completeness"],
                ".4f",
            )
        )
    for when, result in results.items():
        for rule in RULES:
            print(
                _row(
                    f"{when}: quadratic model, max rel. error, {rule}",
                    result[f"quadratic_error_{rule}"],
                    ".1e",
                )
            )
    print()
    for when, result in results.items():
        values = ", ".join(f"{v:.4f}" for v in result["internal_influence"])
        print(f"InternalInfluence {when}: [{values}]  (exact [0.7, 0.81, 0.81, 0.81])")


if __name__ == "__main__":
    main()
