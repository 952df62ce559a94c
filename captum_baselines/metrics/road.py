"""ROAD: the MoRF and LeRF curves under Noisy Linear Imputation.

Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods" (Remove And Debias), ICML 2022,
https://arxiv.org/abs/2202.00449

ROAD removes a growing fraction of the pixels in two orders, most relevant first
(MoRF: a good attribution makes the score fall fast, a low curve) and least
relevant first (LeRF: a good attribution keeps the score, a high curve), and
replaces them by Noisy Linear Imputation so that the shape of the removed set
does not leak the class.  The paper reports both curves (its removal
percentages on the x-axis, the model's accuracy on the perturbed images on the
y-axis) and shows that under NLI the two orders rank methods consistently.
:class:`RoadResult` keeps both curves and summarizes them by their areas and
the area between them, ``AUC(LeRF) - AUC(MoRF)`` (higher is better), for which
both orders must agree.  Here the y-axis is the score of
:func:`~captum_baselines.metrics.ablation.ablation_curve` (softmax probability
of the target relative to the untouched image, or the logit); for the paper's
accuracy, pass a ``forward_func`` that returns a one-hot of the predicted class
with ``score="logit", relative=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from captum._utils.typing import TargetType
from torch import Tensor

from .ablation import ablation_curve, area_under_curve
from .intervals import Interval, bootstrap_indices, bootstrap_interval
from .removal import Score, check_fractions


@dataclass
class RoadResult:
    """The MoRF and LeRF curves of :func:`road_curves`.

    Attributes:
        fractions: ``(F,)`` fractions of the pixels removed (the x-axis).
        morf: ``(N, F)`` scores, most relevant pixels removed first.
        lerf: ``(N, F)`` scores, least relevant pixels removed first.
    """

    fractions: Tensor
    morf: Tensor
    lerf: Tensor

    def auc_morf(self) -> Tensor:
        """``(N,)`` area under each MoRF curve (lower is better)."""
        return area_under_curve(self.morf, self.fractions)

    def auc_lerf(self) -> Tensor:
        """``(N,)`` area under each LeRF curve (higher is better)."""
        return area_under_curve(self.lerf, self.fractions)

    def gap(self) -> Tensor:
        """``(N,)`` area between the curves, ``AUC(LeRF) - AUC(MoRF)``
        (higher is better)."""
        return self.auc_lerf() - self.auc_morf()

    def summary(
        self,
        confidence: float = 0.95,
        n_resamples: int = 2000,
        generator: torch.Generator | None = None,
    ) -> dict[str, Interval]:
        """Mean and bootstrap interval of ``"morf"``, ``"lerf"`` and ``"gap"``
        areas, all three from the same resamples of the images."""
        indices = bootstrap_indices(len(self.morf), n_resamples, generator)
        return {
            name: bootstrap_interval(values, confidence, indices=indices)
            for name, values in (
                ("morf", self.auc_morf()),
                ("lerf", self.auc_lerf()),
                ("gap", self.gap()),
            )
        }


def road_curves(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    fractions: Any = None,
    noise_std: float = 0.01,
    *,
    absolute: bool = False,
    score: Score = "probability",
    relative: bool = True,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> RoadResult:
    r"""The ROAD evaluation: MoRF and LeRF curves under Noisy Linear Imputation.

    Both curves are :func:`~captum_baselines.metrics.ablation.ablation_curve`
    with ``fill="road"`` and ``order="top_k"``.

    Args:
        forward_func: The model.
        inputs: ``(N, C, H, W)`` images.
        attributions: Shaped like ``inputs``, or ``(N, 1, H, W)`` / ``(N, H, W)``.
        target: Output index, in any of Captum's ``TargetType`` forms.
        fractions: Fractions of the pixels removed; default ``0, 0.1, ..., 1``.
        noise_std: Std of the imputation noise, in input units (the authors'
            0.01 for images in ``[0, 1]``).
        absolute: Rank pixels by ``sum_c |a|`` instead of ``sum_c a``.
        score: ``"probability"`` or ``"logit"``.
        relative: Divide by the untouched image's score.
        additional_forward_args: Passed to the model after the inputs.
        internal_batch_size: Images per forward pass.
        generator: Source of the imputation noise.
        show_progress: Show tqdm bars.

    Returns:
        A :class:`RoadResult`; ``result.summary()`` gives the areas and the gap
        with bootstrap intervals.

    Examples::

        >>> road = road_curves(model, images, attributions, labels)
        >>> road.summary()["gap"].format()  # AUC(LeRF) - AUC(MoRF), higher is better
    """
    k = check_fractions(fractions)
    curves = {
        direction: ablation_curve(
            forward_func,
            inputs,
            attributions,
            target,
            k,
            "road",
            direction=direction,
            noise_std=noise_std,
            absolute=absolute,
            score=score,
            relative=relative,
            additional_forward_args=additional_forward_args,
            internal_batch_size=internal_batch_size,
            generator=generator,
            show_progress=show_progress,
        )
        for direction in ("morf", "lerf")
    }
    return RoadResult(fractions=k, morf=curves["morf"], lerf=curves["lerf"])
