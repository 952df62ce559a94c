"""Quickstart: why the baseline matters, on real data, in about ten seconds.

Trains a small CNN on scikit-learn's 8x8 digits drawn as *black ink on white*
(``1 - x``), then explains its predictions with Integrated Gradients from several
baselines. A black baseline cannot attribute black ink: the share of attribution
that lands on the ink shows it.

Run: ``python examples/quickstart.py``
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients

import captum_baselines as cb
from captum_baselines.datasets import load_digits_images
from captum_baselines.models import pretrained_digits_cnn


def main() -> None:
    torch.set_flush_denormal(True)
    data = load_digits_images("inverted")
    model, accuracy = pretrained_digits_cnn("inverted")
    print(f"test accuracy on inverted digits: {accuracy:.3f}")

    x, target = data.test_images[:32], data.test_labels[:32]
    ink = x < 0.5
    generator = torch.Generator().manual_seed(0)
    ig = IntegratedGradients(model)
    runs = {
        "black": lambda: ig.attribute(
            x, cb.baselines.black(x), target=target, return_convergence_delta=True
        ),
        "blur (sigma=2)": lambda: ig.attribute(
            x, cb.baselines.blur(x, 2.0), target=target, return_convergence_delta=True
        ),
        "max distance": lambda: ig.attribute(
            x,
            cb.baselines.max_distance(x),
            target=target,
            return_convergence_delta=True,
        ),
        "uniform (x10)": lambda: cb.baselines.average_over_baselines(
            ig,
            x,
            cb.baselines.uniform(x, n_samples=10, generator=generator),
            target=target,
            return_convergence_delta=True,
        ),
        "training data (x10)": lambda: cb.baselines.average_over_baselines(
            ig,
            x,
            cb.baselines.from_data(
                data.train_images, x, n_samples=10, generator=generator
            ),
            target=target,
            return_convergence_delta=True,
        ),
    }
    print(f"{'baseline':<22}{'|attr| on ink':>15}{'max |delta|':>14}")
    for name, run in runs.items():
        attributions, delta = run()
        share = (attributions.abs() * ink).sum() / attributions.abs().sum()
        print(f"{name:<22}{share:>15.3f}{delta.abs().max():>14.2e}")
    print(
        f"ink covers {ink.float().mean():.3f} of the pixels; the black baseline "
        "gives pure black ink (value 0) exactly zero attribution."
    )


if __name__ == "__main__":
    main()
