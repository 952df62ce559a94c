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
from sklearn.datasets import load_digits
from torch import nn

import captum_baselines as cb


def train_digit_classifier(images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for batch in torch.randperm(len(images)).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimiser.step()
    return model.eval()


def main() -> None:
    torch.set_flush_denormal(True)
    digits = load_digits()
    images = 1.0 - torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target)
    train, test = slice(0, 1400), slice(1400, None)
    model = train_digit_classifier(images[train], labels[train])
    accuracy = (model(images[test]).argmax(1) == labels[test]).float().mean()
    print(f"test accuracy on inverted digits: {accuracy:.3f}")

    x, target = images[test][:32], labels[test][:32]
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
            cb.baselines.from_data(images[train], x, n_samples=10, generator=generator),
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
