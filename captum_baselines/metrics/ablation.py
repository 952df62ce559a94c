"""Ablation curves, as in the ablation tests of the Distill article, and ROAD.

Sturmfels, Lundberg & Lee, "Visualizing the Impact of Feature Attribution
Baselines", Distill 2020, https://distill.pub/2020/attribution-baselines/

For each fraction ``k`` of the pixels, the model is evaluated on the input with
those pixels replaced, and the target's score is reported as a fraction of its
value on the untouched input:

* ``order="top_k"``: the ``k`` most relevant pixels go, ranked by the channel sum
  of the attributions (signed, as the article's code ranks; ``absolute=True``
  ranks by the sum of ``|a|``);
* ``order="mass_center"``: a box covering a fraction ``k`` of the image, centered
  on the center of mass of the attribution map, goes.

``direction="lerf"`` removes the least relevant pixels first instead.  With
``fill="road"`` the removed pixels are imputed by Noisy Linear Imputation
(Rong et al., ICML 2022, https://arxiv.org/abs/2202.00449), so that the shape
of the removed set does not leak the class: the ROAD curves.

With the most relevant pixels first (MoRF), a steeper drop (a smaller area under
the curve) means the attributions found the pixels the model relies on; with
the least relevant first (LeRF), a flatter curve (a larger area) does.
:func:`random_attributions` gives the control the article compares against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from captum._utils.typing import TargetType
from torch import Tensor

from .._engine.forward import check_score
from .._validation import check_generator, check_nonnegative
from .intervals import Interval, bootstrap_interval
from .removal import (
    Direction,
    Fill,
    Score,
    check_direction,
    check_fractions,
    imputation_rows,
    position_scores,
    removal_curve,
    removal_ranks,
    replacement,
    single_input,
)

Order = Literal["top_k", "mass_center"]


def ablation_curve(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    fractions: Any = None,
    fill: Fill = "mean",
    order: Order = "top_k",
    *,
    direction: Direction = "morf",
    noise_std: float = 0.01,
    absolute: bool = False,
    blur_sigma: float = 20.0,
    score: Score = "probability",
    relative: bool = True,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> Tensor:
    r"""The model's score at ``target`` as a growing fraction of pixels is removed.

    Args:
        forward_func: The model.
        inputs: ``(N, C, H, W)`` images (or any ``(N, C, ...)``; ``(N, D)`` inputs
            are treated as one channel of ``D`` features).  A pixel is one
            position with all its channels.
        attributions: Shaped like ``inputs``, or one map per example
            ``(N, 1, H, W)`` / ``(N, H, W)`` (e.g. an upsampled Grad-CAM).
        target: Output index, in any of Captum's ``TargetType`` forms.
        fractions: Fractions ``k`` of the pixels to remove, in [0, 1]. Default
            ``0, 0.1, ..., 1.0``.  At ``k``, ``round(k * P)`` of the ``P``
            pixels are removed.
        fill: What a removed pixel becomes: ``"mean"`` (the same image's
            per-channel mean), ``"blur"`` (its Gaussian blur of ``blur_sigma``
            pixels), ``"road"`` (Noisy Linear Imputation from the kept pixels,
            plus Gaussian noise of std ``noise_std``: see
            :func:`~captum_baselines.metrics.imputation.noisy_linear_imputation`;
            needs ``(N, C, H, W)`` images), a tensor broadcastable to
            ``inputs``, or a callable ``fill(inputs) -> tensor``.
        order: ``"top_k"`` or ``"mass_center"``.  The mass-center box has
            ``round(sqrt(k) H) x round(sqrt(k) W)`` pixels, centered on the center
            of mass of the channel sum of ``|a|`` (the image center for an
            all-zero map) and shifted inwards where it would leave the image, so
            that each step removes the same fraction for every method.
        direction: ``"morf"`` (most relevant first, the default) or ``"lerf"``
            (least relevant first).  For ``top_k`` LeRF removes the ``k`` least
            relevant pixels (ties in index order in both directions); for
            ``mass_center`` it removes everything outside the box of fraction
            ``1 - k``.  The ROAD paper reports both: with MoRF a lower curve is
            better, with LeRF a higher one.
        noise_std: Std of the noise of ``fill="road"``, in the units of
            ``inputs`` (0.01, the ROAD authors' default for images in
            ``[0, 1]``); ignored by the other fills.
        absolute: Rank ``top_k`` by ``sum_c |a|`` instead of the signed
            ``sum_c a``.
        blur_sigma: Sigma of ``fill="blur"``, in pixels (the article used 20).
        score: ``"probability"`` (softmax of the output at ``target``, as in the
            article) or ``"logit"`` (the raw output).
        relative: Divide by the untouched input's score, so curves start at 1.
        additional_forward_args: Passed to the model after the inputs.
        internal_batch_size: Ablated images per forward pass; ``None`` uses
            ``N``, so memory stays that of one forward of ``inputs``
            (``fill="road"`` imputes up to about two million values at once).
        generator: Source of the noise of ``fill="road"`` (the global RNG is
            never used); the draws follow the order of the rows, so they
            repeat for the same ``generator`` state and batch sizes.
        show_progress: Show a tqdm bar.

    Returns:
        ``(N, F)`` tensor: the score after removing each fraction; fractions
        that remove no pixel are exactly 1 (``relative=True``).

    Examples::

        >>> ig = IntegratedGradients(model)
        >>> attr = ig.attribute(images, baselines=0 * images, target=labels)
        >>> curve = ablation_curve(model, images, attr, target=labels)
        >>> area_under_curve(curve).mean()  # lower is better
        >>> road_lerf = ablation_curve(
        ...     model, images, attr, labels, fill="road", direction="lerf"
        ... )  # higher is better
    """
    x = single_input("inputs", inputs)
    score = check_score(score)
    if order not in ("top_k", "mass_center"):
        raise ValueError(f'`order` must be "top_k" or "mass_center", got {order!r}')
    direction = check_direction(direction)
    k = check_fractions(fractions)
    blur_sigma = check_nonnegative("blur_sigma", blur_sigma)
    noise_std = check_nonnegative("noise_std", noise_std)
    check_generator("generator", generator)
    relevance = position_scores(attributions, x, absolute)
    n_positions = relevance.shape[1]
    replace = replacement(fill, x, blur_sigma, noise_std, generator)

    if order == "top_k":
        counts = torch.floor(k * n_positions + 0.5).long().to(x.device)
        ranks = removal_ranks(relevance, direction)

        def mask_for(examples: Tensor, steps: Tensor) -> Tensor:
            return ranks[examples] < counts[steps][:, None]

        removes_nothing = counts == 0
    else:
        if x.dim() != 4:
            raise ValueError(
                '`order="mass_center"` needs (N, C, H, W) inputs, '
                f"got shape {tuple(x.shape)}"
            )
        height, width = x.shape[2:]
        # LeRF keeps the box of the complementary fraction and removes the rest.
        box_fractions = k if direction == "morf" else 1 - k
        boxes = mass_center_boxes(
            relevance_map(attributions, x), box_fractions.to(x.device), (height, width)
        )
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        outside = direction == "lerf"

        def mask_for(examples: Tensor, steps: Tensor) -> Tensor:
            top, left, h, w = boxes[examples, steps].unbind(-1)
            inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
            inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
            inside = inside_rows[:, :, None] & inside_cols[:, None, :]
            return inside.reshape(len(examples), -1) ^ outside

        area = boxes[..., 2] * boxes[..., 3]
        kept_all = area == height * width if outside else area == 0
        removes_nothing = kept_all.all(0).cpu()

    return removal_curve(
        forward_func,
        x,
        replace,
        mask_for,
        removes_nothing,
        target,
        additional_forward_args,
        score,
        relative,
        internal_batch_size,
        show_progress,
        desc=f"ablation ({order}, {direction})",
        replace_rows=imputation_rows(fill, x),
    )


def relevance_map(attributions: Tensor, inputs: Tensor) -> Tensor:
    """``(N, H, W)`` non-negative map: the channel sum of ``|a|``."""
    n, _, height, width = inputs.shape
    return position_scores(attributions, inputs, absolute=True).reshape(
        n, height, width
    )


def center_of_mass(relevance: Tensor) -> Tensor:
    """``(N, 2)`` center of mass (row, column) of non-negative ``(N, H, W)`` maps.

    An all-zero map has no mass; its center is taken to be the image center.
    """
    n, height, width = relevance.shape
    rows = torch.arange(height, dtype=relevance.dtype, device=relevance.device)
    cols = torch.arange(width, dtype=relevance.dtype, device=relevance.device)
    mass = relevance.sum((1, 2))
    row = (relevance.sum(2) * rows).sum(1)
    col = (relevance.sum(1) * cols).sum(1)
    empty = mass == 0
    safe = torch.where(empty, torch.ones_like(mass), mass)
    center = torch.stack([row / safe, col / safe], 1)
    middle = torch.tensor(
        [(height - 1) / 2, (width - 1) / 2], dtype=relevance.dtype, device=center.device
    )
    return torch.where(empty[:, None], middle, center)


def mass_center_boxes(
    relevance: Tensor, fractions: Tensor, size: tuple[int, int]
) -> Tensor:
    """``(N, F, 4)`` boxes ``(top, left, height, width)`` around the centers of mass.

    The box of fraction ``k`` has ``round(sqrt(k) H)`` rows and ``round(sqrt(k) W)``
    columns, centered on the center of mass (pixel centers at integer
    coordinates), then shifted the least needed to lie inside the image.  An
    empty box (``k`` too small for one row or column) is ``(0, 0, h, w)``.
    """
    height, width = size
    center = center_of_mass(relevance).to(torch.float64)
    side = torch.sqrt(fractions.to(torch.float64))
    box_h = torch.floor(side * height + 0.5).long()
    box_w = torch.floor(side * width + 0.5).long()
    top = torch.floor(center[:, :1] - (box_h - 1) / 2 + 0.5).long()
    left = torch.floor(center[:, 1:] - (box_w - 1) / 2 + 0.5).long()
    top = torch.minimum(top.clamp(min=0), height - box_h)
    left = torch.minimum(left.clamp(min=0), width - box_w)
    empty = (box_h * box_w == 0).expand_as(top)
    top = torch.where(empty, 0, top)
    left = torch.where(empty, 0, left)
    n = relevance.shape[0]
    return torch.stack(
        [top, left, box_h.expand(n, -1), box_w.expand(n, -1)], dim=-1
    ).to(relevance.device)


def random_attributions(
    inputs: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """The random control: standard Gaussian noise shaped like ``inputs``.

    The Distill article's control for both ablation tests ("Random Noise"): a
    saliency map of i.i.d. Gaussian values, so that rankings are uniformly random.

    Args:
        inputs: The inputs to explain; only their shape, dtype and device are used.
        generator: Source of randomness (the global RNG is never used).
    """
    x = single_input("inputs", inputs)
    check_generator("generator", generator)
    device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    return noise.to(x.device)


def area_under_curve(curve: Tensor, fractions: Any = None) -> Tensor:
    """Area under each curve by the trapezoid rule (lower: a steeper drop).

    Args:
        curve: ``(N, F)`` curves (or one ``(F,)`` curve), e.g. from
            :func:`ablation_curve` or :func:`degradation_curve`.
        fractions: The ``F`` x-coordinates, increasing; default ``F`` evenly
            spaced points on [0, 1] (for a degradation curve: the fraction of
            the ``n_patches`` patches replaced).

    Returns:
        ``(N,)`` areas (a 0-d tensor for a single curve).
    """
    if not isinstance(curve, Tensor):
        raise TypeError(f"`curve` must be a torch.Tensor, got {type(curve).__name__}")
    if curve.dim() not in (1, 2) or curve.shape[-1] < 2:
        raise ValueError(
            f"`curve` must be (F,) or (N, F) with F >= 2, got {tuple(curve.shape)}"
        )
    dtype = curve.dtype if curve.is_floating_point() else torch.float64
    n_points = curve.shape[-1]
    if fractions is None:
        x = torch.linspace(0, 1, n_points, dtype=dtype, device=curve.device)
    else:
        x = check_fractions(fractions).to(device=curve.device, dtype=dtype)
        if x.numel() != n_points:
            raise ValueError(
                f"`fractions` has {x.numel()} values but `curve` has {n_points} points"
            )
        if bool((x[1:] <= x[:-1]).any()):
            raise ValueError("`fractions` must be strictly increasing")
    return torch.trapezoid(curve.to(dtype), x, dim=-1)


def area_under_curve_interval(
    curve: Tensor,
    fractions: Any = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    generator: torch.Generator | None = None,
) -> Interval:
    """The mean area under ``(N, F)`` curves, with a bootstrap interval over images.

    The companion of :func:`area_under_curve`: the areas of the ``N`` curves are
    resampled with replacement (percentile bootstrap, see
    :func:`~captum_baselines.metrics.intervals.bootstrap_interval`).

    Args:
        curve: ``(N, F)`` curves, one per image.
        fractions: Their x-coordinates, as in :func:`area_under_curve`.
        confidence: Nominal coverage of the interval.
        n_resamples: Bootstrap resamples.
        generator: Source of the resampling; default: a generator seeded with
            0, so the interval repeats.

    Returns:
        An :class:`~captum_baselines.metrics.intervals.Interval` with ``mean``,
        ``low``, ``high``; ``a.overlaps(b)`` tells whether two can be ranked.

    Examples::

        >>> area_under_curve_interval(curve).format()
        '0.412 [0.380, 0.441]'
    """
    if isinstance(curve, Tensor) and curve.dim() != 2:
        raise ValueError(
            f"`curve` must be (N, F) curves, one per image, got {tuple(curve.shape)}"
        )
    areas = area_under_curve(curve, fractions)
    return bootstrap_interval(areas, confidence, n_resamples, generator)
