"""Attribution maps and the figures of the baselines study (matplotlib).

``attribution_map`` follows the convention of Sturmfels, Lundberg & Lee,
"Visualizing the Impact of Feature Attribution Baselines", Distill 2020,
https://distill.pub/2020/attribution-baselines/ : the sum of ``|a|`` over
channels, capped at the 99th percentile.  The plot helpers draw the article's
figures: attribution grids, the gallery of baselines, the model output along the
path (saturation), the cumulative attribution against ``f(x) - f(x')``
(completeness) and ablation / degradation curves with the random control.  Every
helper returns its ``matplotlib.figure.Figure``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from captum._utils.typing import TargetType
from matplotlib.figure import Figure
from torch import Tensor

from ._engine.forward import Score, check_score, forward_rows, scored
from ._engine.inputs import format_baselines
from ._engine.path import StraightLinePath, integrate
from ._hooks import eval_mode
from ._validation import check_positive_int
from .attr.integrated_gradients import check_rule, quadrature
from .metrics.ablation import area_under_curve
from .metrics.removal import single_input

Sign = Literal["absolute", "signed"]


def _as_tensor(name: str, values: Any) -> Tensor:
    if isinstance(values, np.ndarray):
        return torch.from_numpy(values)
    if not isinstance(values, Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor or a numpy array, "
            f"got {type(values).__name__}"
        )
    return values.detach().cpu()


def attribution_map(
    attributions: Any, sign: Sign = "absolute", clip_percentile: float = 99.0
) -> np.ndarray:
    """``(N, H, W)`` maps of attributions, ready to display.

    Args:
        attributions: ``(N, C, H, W)`` (channels are summed) or ``(N, H, W)``.
        sign: ``"absolute"``: the Distill convention, ``sum_c |a|`` capped at the
            ``clip_percentile``-th percentile of the map and divided by that cap,
            so values lie in [0, 1].  ``"signed"``: ``sum_c a``, with positive and
            negative evidence kept apart, capped at the percentile of ``|sum_c a|``
            and divided by it, so values lie in [-1, 1].
        clip_percentile: Percentile (per image) at which to cap, in (0, 100];
            100 only normalises by the maximum.

    Returns:
        A float64 numpy array ``(N, H, W)``; an all-zero map stays zero.
    """
    if sign not in ("absolute", "signed"):
        raise ValueError(f'`sign` must be "absolute" or "signed", got {sign!r}')
    a = _as_tensor("attributions", attributions).to(torch.float64)
    if a.dim() == 4:
        channel_sum = a.abs().sum(1) if sign == "absolute" else a.sum(1)
    elif a.dim() == 3:
        channel_sum = a.abs() if sign == "absolute" else a
    else:
        raise ValueError(
            "`attributions` must be (N, C, H, W) or (N, H, W), "
            f"got shape {tuple(a.shape)}"
        )
    if not 0 < clip_percentile <= 100:
        raise ValueError(
            f"`clip_percentile` must be in (0, 100], got {clip_percentile}"
        )
    maps = channel_sum.numpy()
    if not np.isfinite(maps).all():
        raise ValueError("`attributions` contains NaN or infinite values")
    flat = np.abs(maps).reshape(len(maps), -1)
    cap = np.percentile(flat, clip_percentile, axis=1)[:, None, None]
    safe = np.where(cap > 0, cap, 1.0)
    low = 0.0 if sign == "absolute" else -1.0
    return np.where(cap > 0, np.clip(maps / safe, low, 1.0), 0.0)


def _display_image(image: Tensor) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` -> an array imshow shows as is, min-max scaled to [0, 1]."""
    if image.dim() == 2:
        image = image[None]
    image = image.to(torch.float64)
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    if image.shape[0] == 3:
        return image.permute(1, 2, 0).numpy(), None
    return image.mean(0).numpy(), "gray"


def plot_attributions(
    images: Any,
    attributions: Mapping[str, Any] | Any,
    *,
    sign: Sign = "absolute",
    clip_percentile: float = 99.0,
    cmap: str | None = None,
    overlay: float = 0.0,
    image_titles: list[str] | None = None,
    size: float = 2.0,
) -> Figure:
    """A grid: one row per image, the image then one attribution map per method.

    Args:
        images: ``(N, C, H, W)`` images, shown min-max scaled (RGB for 3 channels,
            grey otherwise).
        attributions: ``{method: attributions}`` (or one tensor), each
            ``(N, C, H, W)`` or ``(N, H, W)``, shown through
            :func:`attribution_map`.
        sign: ``"absolute"`` (colour map ``"magma"``, range [0, 1]) or
            ``"signed"`` (``"bwr"``, range [-1, 1]).
        clip_percentile: See :func:`attribution_map`.
        cmap: Override the colour map.
        overlay: Opacity of the grey image drawn under each map (0: none).
        image_titles: One label per row (e.g. the class).
        size: Inches per panel.

    Returns:
        The figure; column titles are ``"input"`` and the method names.
    """
    x = _as_tensor("images", images)
    if x.dim() != 4:
        raise ValueError(f"`images` must be (N, C, H, W), got shape {tuple(x.shape)}")
    named = (
        dict(attributions)
        if isinstance(attributions, Mapping)
        else {"attribution": attributions}
    )
    maps = {
        name: attribution_map(a, sign, clip_percentile) for name, a in named.items()
    }
    for name, m in maps.items():
        if m.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f"attributions {name!r} give maps of shape {m.shape}, expected "
                f"{(x.shape[0], *x.shape[2:])}"
            )
    if image_titles is not None and len(image_titles) != x.shape[0]:
        raise ValueError("`image_titles` must have one entry per image")
    cmap = cmap or ("magma" if sign == "absolute" else "bwr")
    vmin = 0.0 if sign == "absolute" else -1.0
    n_rows, n_cols = x.shape[0], 1 + len(maps)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(size * n_cols, size * n_rows), squeeze=False
    )
    for i in range(n_rows):
        shown, image_cmap = _display_image(x[i])
        axes[i, 0].imshow(shown, cmap=image_cmap)
        axes[i, 0].set_title("input" if image_titles is None else image_titles[i])
        for j, (name, m) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            if overlay > 0:
                grey = shown if shown.ndim == 2 else shown.mean(2)
                ax.imshow(grey, cmap="gray", alpha=overlay)
            ax.imshow(
                m[i],
                cmap=cmap,
                vmin=vmin,
                vmax=1.0,
                alpha=1 - overlay if overlay else 1,
            )
            ax.set_title(name)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_baselines(
    image: Any, baselines: Mapping[str, Any], *, size: float = 2.0
) -> Figure:
    """A gallery: the input, then each named baseline for it.

    Args:
        image: ``(C, H, W)`` or ``(1, C, H, W)``.
        baselines: ``{name: baseline}``, each shaped like ``image`` (the first
            example is shown if a batch is given).  All panels share the input's
            value range, so a black baseline looks black.
    """
    x = _as_tensor("image", image)
    if x.dim() == 4:
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"`image` must be (C, H, W), got shape {tuple(x.shape)}")
    panels = {"input": x}
    for name, b in baselines.items():
        t = _as_tensor(f"baselines[{name!r}]", b)
        t = t[0] if t.dim() == 4 else t
        if t.shape != x.shape:
            raise ValueError(
                f"baseline {name!r} has shape {tuple(t.shape)}, expected "
                f"{tuple(x.shape)}"
            )
        panels[name] = t
    stacked = torch.stack(list(panels.values())).to(torch.float64)
    low, high = stacked.min(), stacked.max()
    scale = high - low if high > low else torch.tensor(1.0, dtype=torch.float64)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(size * len(panels), size), squeeze=False
    )
    for ax, (name, t) in zip(axes[0], panels.items(), strict=True):
        shown = ((t.to(torch.float64) - low) / scale).clamp(0, 1)
        if shown.shape[0] == 3:
            ax.imshow(shown.permute(1, 2, 0).numpy())
        else:
            ax.imshow(shown.mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _line(
    inputs: Tensor, baselines: Any, alphas: Tensor, weights: Tensor | None = None
) -> StraightLinePath:
    """Rows at ``alphas`` on each example's straight line, example by example."""
    x = (inputs,)
    b = format_baselines(baselines, x)
    n, s = inputs.shape[0], len(alphas)
    return StraightLinePath.from_baselines(
        x,
        b,
        torch.arange(n, device=inputs.device).repeat_interleave(s),
        alphas.repeat(n),
        (torch.ones(s, dtype=torch.float64) if weights is None else weights).repeat(n),
    )


def path_outputs(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    baselines: Any,
    alphas: Tensor,
    target: TargetType = None,
    score: Score = "logit",
    additional_forward_args: Any = None,
) -> Tensor:
    """``(N, S)`` score of ``target`` at ``x' + alpha (x - x')`` for each alpha."""
    x = single_input("inputs", inputs)
    alphas = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
    line = _line(x, baselines, alphas)
    with eval_mode(forward_func):
        values = forward_rows(
            scored(forward_func, check_score(score)),
            line.points_of,
            line.examples,
            x.shape[0],
            target,
            additional_forward_args,
            internal_batch_size=x.shape[0],
        )
    return values.reshape(x.shape[0], len(alphas)).to(x.dtype)


def plot_path_outputs(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    baselines: Any,
    target: TargetType = None,
    *,
    n_steps: int = 50,
    score: Score = "logit",
    additional_forward_args: Any = None,
    labels: list[str] | None = None,
) -> Figure:
    """The saturation figure: the model output along the straight path.

    One line per example: the score of ``target`` at ``x' + alpha (x - x')``
    against ``alpha`` on ``n_steps`` evenly spaced points of [0, 1].  A curve that
    flattens early shows where gradients vanish (the article's saturation).
    """
    n_steps = check_positive_int("n_steps", n_steps)
    score = check_score(score)
    x = single_input("inputs", inputs)
    alphas = torch.linspace(0, 1, max(n_steps, 2), dtype=torch.float64)
    values = path_outputs(
        forward_func, x, baselines, alphas, target, score, additional_forward_args
    )
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i in range(x.shape[0]):
        label = labels[i] if labels is not None else f"example {i}"
        ax.plot(alphas.numpy(), values[i].cpu().double().numpy(), label=label)
    ax.set_xlabel("alpha")
    ax.set_ylabel("probability" if score == "probability" else "model output")
    ax.set_title("model output along the path")
    ax.legend()
    fig.tight_layout()
    return fig


def cumulative_attribution(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    baselines: Any,
    target: TargetType = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    additional_forward_args: Any = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The integrated-gradients sum of each example, accumulated node by node.

    Uses the quadrature's own nodes and weights
    (:func:`~captum_baselines.attr.integrated_gradients.quadrature`), so the last
    value is exactly ``sum_i IG_i`` as
    :class:`~captum_baselines.attr.QuadratureIntegratedGradients` computes it.

    Returns:
        ``(alphas (S,), cumulative (N, S), gap (N,))``: the nodes in increasing
        order, the running sum of ``w_s sum_i (x_i - x'_i) df/dx_i`` up to each
        node, and ``f(x) - f(x')``.
    """
    x = single_input("inputs", inputs)
    n_steps = check_rule(method, n_steps)
    alphas, weights = quadrature(method, n_steps)
    line = _line(x, baselines, alphas, weights)
    with eval_mode(forward_func):
        totals = integrate(
            forward_func, line, (x,), target, additional_forward_args
        ).row_totals
    terms = totals.to(torch.float64).reshape(x.shape[0], n_steps) * weights
    ends = path_outputs(
        forward_func,
        x,
        baselines,
        torch.tensor([0.0, 1.0]),
        target,
        "logit",
        additional_forward_args,
    )
    gap = (ends[:, 1] - ends[:, 0]).to(torch.float64)
    return alphas, terms.cumsum(1), gap


def plot_completeness(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    baselines: Any,
    target: TargetType = None,
    *,
    n_steps: int = 50,
    method: str = "gausslegendre",
    additional_forward_args: Any = None,
    labels: list[str] | None = None,
    size: float = 3.5,
) -> Figure:
    """The completeness figure, one panel per example.

    Each panel draws the integrated-gradients sum accumulated up to ``alpha``
    with the quadrature's own nodes and weights (``"cumulative attribution"``),
    the exact ``f(x' + alpha (x - x')) - f(x')`` it estimates (``"f(path) -
    f(x')"``) and the target ``f(x) - f(x')`` as a horizontal line.  The gap at
    ``alpha = 1`` is the convergence delta.
    """
    x = single_input("inputs", inputs)
    alphas, cumulative, gap = cumulative_attribution(
        forward_func, x, baselines, target, n_steps, method, additional_forward_args
    )
    fine = torch.linspace(0, 1, 101, dtype=torch.float64)
    along = path_outputs(
        forward_func, x, baselines, fine, target, "logit", additional_forward_args
    ).to(torch.float64)
    along = along - along[:, :1]
    n = x.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(size * n, size * 0.8), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.plot(
            fine.numpy(), along[i].cpu().numpy(), color="0.6", label="f(path) - f(x')"
        )
        ax.plot(
            alphas.numpy(),
            cumulative[i].cpu().numpy(),
            marker=".",
            label="cumulative attribution",
        )
        ax.axhline(float(gap[i]), linestyle="--", color="k", label="f(x) - f(x')")
        ax.set_xlabel("alpha")
        title = labels[i] if labels is not None else f"example {i}"
        delta = float(cumulative[i, -1] - gap[i])
        ax.set_title(f"{title} (delta {delta:.2g})")
    axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, Any],
    x: Any = None,
    *,
    control: str | None = "random",
    title: str | None = None,
    xlabel: str = "fraction removed",
    ylabel: str = "score relative to the input",
    band: bool = True,
) -> Figure:
    """Mean ablation / degradation curves, one line per method.

    Args:
        curves: ``{method: (N, F) or (F,) curve}``.
        x: The ``F`` x-coordinates; default evenly spaced on [0, 1].
        control: The name of the control curve, drawn dashed and grey.
        title: Axes title.
        band: Shade the mean +- one standard error over examples.

    Returns:
        The figure; each method's line holds its mean curve and its label the
        area under that mean curve (lower is better).
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, values in curves.items():
        c = _as_tensor(f"curves[{name!r}]", values).to(torch.float64)
        c = c[None] if c.dim() == 1 else c
        if c.dim() != 2:
            raise ValueError(f"curve {name!r} must be (N, F) or (F,), got {c.shape}")
        xs = (
            torch.linspace(0, 1, c.shape[1], dtype=torch.float64)
            if x is None
            else torch.as_tensor(np.asarray(x, dtype=np.float64))
        )
        if xs.shape != (c.shape[1],):
            raise ValueError(
                f"`x` must have {c.shape[1]} values, got {tuple(xs.shape)}"
            )
        mean = c.mean(0)
        area = float(area_under_curve(mean, xs if x is not None else None))
        style: dict[str, Any] = {"label": f"{name} (AUC {area:.3f})"}
        if name == control:
            style.update(linestyle="--", color="0.5")
        (line,) = ax.plot(xs.numpy(), mean.numpy(), **style)
        if band and c.shape[0] > 1:
            sem = c.std(0) / c.shape[0] ** 0.5
            ax.fill_between(
                xs.numpy(),
                (mean - sem).numpy(),
                (mean + sem).numpy(),
                color=line.get_color(),
                alpha=0.2,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_comparison(result: Any, curve: str = "top_k") -> Figure:
    """:func:`plot_curves` of one curve of a ``ComparisonResult``."""
    xlabel = "fraction of patches replaced" if curve == "degradation" else None
    return plot_curves(
        result.curves(curve),
        result.x(curve),
        title=curve,
        xlabel=xlabel or "fraction removed",
    )


__all__ = [
    "attribution_map",
    "cumulative_attribution",
    "path_outputs",
    "plot_attributions",
    "plot_baselines",
    "plot_comparison",
    "plot_completeness",
    "plot_curves",
    "plot_path_outputs",
]
