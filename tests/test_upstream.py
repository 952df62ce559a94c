"""The patches in upstream/ apply to the installed Captum and do what they claim.

A copy of the installed ``captum`` package gets the patches (strictly: a patch
whose context no longer matches fails here) and is imported in a subprocess with
the copy first on ``PYTHONPATH``, so that it never meets the installed Captum
that this process imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from upstream.patching import PATCHES, PatchError, apply_patch, patched_captum

ROOT = Path(__file__).resolve().parents[1]

# GradientShap memory check: one example of FEATURES float32 features, so that
# every row costs about 16 KiB per tensor; an unbatched call on LARGE samples
# holds several such (LARGE, FEATURES) tensors (well over 50 MiB), a batched
# call a few (BATCH, FEATURES) ones at every n_samples.
FEATURES = 4096
SMALL, LARGE, BATCH = 64, 1024, 64


def measure_claims() -> dict[str, object]:
    """Runs in the subprocess that imports the patched Captum."""

    import captum
    import torch
    from captum.attr import GradientShap, IntegratedGradients
    from captum.attr._utils.approximation_methods import Riemann, riemann_builders

    import captum_baselines as cb

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    claims: dict[str, object] = {"captum": captum.__file__}

    # trapezoid: step sizes sum to one; exact on a quadratic model (its gradient
    # is linear along the path), as the package's own trapezoid is
    step_sizes, _ = riemann_builders(Riemann.trapezoid)
    claims["trapezoid_weight_sums"] = [sum(step_sizes(n)) for n in (2, 3, 10, 50)]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    a = a + a.T

    def quadratic(x):
        return ((x @ a) * x).sum(1)

    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, 5, generator=g, dtype=torch.float64)
    exact = (x - b) * ((x + b) @ a)
    ours = cb.QuadratureIntegratedGradients(quadratic)
    errors, differences = [], []
    for n_steps in (2, 10, 50):
        captum_ig = IntegratedGradients(quadratic).attribute(
            x, b, n_steps=n_steps, method="riemann_trapezoid"
        )
        package_ig = ours.attribute(x, b, n_steps=n_steps, method="riemann_trapezoid")
        errors.append(float(((captum_ig - exact).abs() / exact.abs().max()).max()))
        differences.append(float((captum_ig - package_ig).abs().max()))
    claims["trapezoid_relative_errors"] = errors
    claims["trapezoid_vs_package"] = differences

    # GradientShap: batched equals unbatched for the same draws (float64,
    # two inputs, noise on one, per-example targets, deltas)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()

    def two_inputs(x1, x2):
        return model(torch.cat([x1, x2], dim=1))

    inputs = (torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 2).double())
    references = (torch.randn(7, 4).double(), torch.randn(7, 2).double())
    results = {}
    for internal_batch_size in (None, 3, 12, 50):
        attributions, delta = GradientShap(two_inputs).attribute(
            inputs,
            references,
            n_samples=17,
            stdevs=(0.2, 0.0),
            target=[0, 2, 1],
            return_convergence_delta=True,
            internal_batch_size=internal_batch_size,
            generator=torch.Generator().manual_seed(5),
        )
        results[internal_batch_size] = torch.cat([*attributions, delta.view(3, 17)], 1)
    claims["gradient_shap_batched_differences"] = [
        float((results[size] - results[None]).abs().max()) for size in (3, 12, 50)
    ]
    other_seed = GradientShap(two_inputs).attribute(
        inputs,
        references,
        n_samples=17,
        stdevs=(0.2, 0.0),
        target=[0, 2, 1],
        generator=torch.Generator().manual_seed(6),
    )
    claims["gradient_shap_other_seed_difference"] = float(
        (other_seed[0] - results[None][:, :4]).abs().max()
    )

    return claims


def measure_memory_claims() -> dict[str, float]:
    """Peak-memory growth of the patched GradientShap's calls, in MiB.

    Linux's high-water mark (``VmHWM``) is reset before each call
    (``/proc/self/clear_refs``), so each figure is that call's own peak above the
    memory in use before it, whatever ran earlier in the process.
    """
    import numpy as np
    import torch
    from captum.attr import GradientShap

    torch.set_num_threads(1)
    wide = torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(FEATURES, 2))
    x = torch.rand(1, FEATURES)
    baselines = torch.rand(8, FEATURES)

    def status_mib(field: str) -> float:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"{field} not in /proc/self/status")

    def peak_growth(n_samples: int, internal_batch_size: int | None) -> float:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = status_mib("VmRSS")
        GradientShap(wide).attribute(
            x,
            baselines,
            n_samples=n_samples,
            target=0,
            internal_batch_size=internal_batch_size,
        )
        return status_mib("VmHWM") - before

    np.random.seed(0)
    peak_growth(SMALL, BATCH)  # warm-up: allocator pools, lazy initialization
    small = peak_growth(SMALL, BATCH)
    large = peak_growth(LARGE, BATCH)
    unbatched = peak_growth(LARGE, None)
    return {
        "batched_growth_mib": large - small,
        "unbatched_growth_mib": unbatched - large,
    }


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> Path:
    return patched_captum(tmp_path_factory.mktemp("patched_captum"))


def _run_with_patched_captum(folder: Path, function: str) -> dict[str, object]:
    """``function()`` of this module in a fresh process importing the patched copy."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]))
    code = (
        f"import json; from tests.test_upstream import {function}; "
        f"print(json.dumps({function}()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def claims(patched) -> dict[str, object]:
    measured = _run_with_patched_captum(patched, "measure_claims")
    assert measured["captum"].startswith(str(patched)), measured["captum"]
    return measured


@pytest.fixture(scope="module")
def memory_claims(patched) -> dict[str, object]:
    return _run_with_patched_captum(patched, "measure_memory_claims")


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_patch_applies_to_installed_captum(name, tmp_path):
    patched_captum(tmp_path, [PATCHES[name]])
    diff = PATCHES[name].read_text()
    assert "a/tests/attr/" in diff  # the pull request carries Captum's tests too


def test_a_patch_that_no_longer_matches_fails(tmp_path):
    diff = (
        PATCHES["trapezoid"]
        .read_text()
        .replace("-        deltas = [1 / n] * n\n", "-        deltas = [2 / n] * n\n")
    )
    patched_captum(tmp_path, [])
    with pytest.raises(PatchError, match="does not match"):
        apply_patch(diff, tmp_path)


def test_trapezoid_weights_sum_to_one(claims):
    assert claims["trapezoid_weight_sums"] == pytest.approx([1.0] * 4, abs=1e-12)


def test_trapezoid_is_exact_where_the_rule_is(claims):
    # Captum's IntegratedGradients uses float32 step sizes: exact up to ~1e-7
    assert max(claims["trapezoid_relative_errors"]) < 1e-6
    assert max(claims["trapezoid_vs_package"]) < 1e-6


def test_gradient_shap_batches_give_the_unbatched_result(claims):
    assert max(claims["gradient_shap_batched_differences"]) < 1e-12
    assert claims["gradient_shap_other_seed_difference"] > 1e-3


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc"
)
def test_gradient_shap_memory_is_flat_in_n_samples_when_batched(memory_claims):
    # the measurement can see growth: the unbatched call adds tens of MiB ...
    assert memory_claims["unbatched_growth_mib"] > 40
    # ... while 16 times more samples in batches add (almost) nothing
    growth = memory_claims["batched_growth_mib"]
    assert growth < 0.25 * memory_claims["unbatched_growth_mib"]
