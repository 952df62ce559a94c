"""Attribution maps and the figures of the baselines study (matplotlib).

``attribution_map`` follows the convention of Sturmfels, Lundberg & Lee,
"Visualizing the Impact of Feature Attribution Baselines", Distill 2020,
https://distill.pub/2020/attribution-baselines/ : the sum of ``|a|`` over
channels, capped at the 99th percentile.  The plot helpers draw the article's
figures: attribution grids, the gallery of baselines, the model output along the
path (saturation), the cumulative attribution against ``f(x) - f(x')``
(completeness) and ablation / degradation curves with the random control.  Every
helper returns its ``matplotlib.figure.Figure``, sized for a paper (7 in wide
at most, 8 pt text) with every legend outside the data area; matplotlib is
imported when a figure is drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from captum._utils.typing import TargetType
from torch import Tensor

from ._engine.forward import Score, check_score, forward_rows, scored
from ._engine.inputs import format_baselines
from ._engine.path import StraightLinePath, integrate
from ._hooks import eval_mode
from ._validation import check_positive_int
from .attr.integrated_gradients import check_rule, quadrature
from .metrics.ablation import area_under_curve
from .metrics.removal import single_input

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Sign = Literal["absolute", "signed"]

#: Line colors: matplotlib's ten without its gray (so that no method looks like
#: the control, black and dashed), then seven darker or brighter hues unlike
#: them, so that up to 16 methods (the demo's) get 16 colors.
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#000075",
    "#469990",
    "#800000",
    "#f032e6",
    "#808000",
    "#911eb4",
    "#9a6324",
)
#: Line styles, cycled alongside the colors and shifted by one at each turn of
#: the colors: 16 colors x 4 styles give 64 lines that differ in color or
#: style from each other, and in both from their neighbours.
LINESTYLES = ("-", "--", "-.", ":")
CONTROL_STYLE: dict[str, Any] = {"color": "black", "linestyle": "--", "linewidth": 1.6}
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")

#: Human titles and x labels of the removal curves of ``metrics.compare``.
CURVE_TITLES = {
    "top_k": "Top-k ablation",
    "mass_center": "Mass-center ablation",
    "degradation": "Degradation",
    "road_morf": "ROAD MoRF (most relevant first)",
    "road_lerf": "ROAD LeRF (least relevant first)",
    "road_gap": "ROAD gap (LeRF - MoRF)",
}
CURVE_XLABELS = {
    "top_k": "fraction of pixels removed (highest attribution first)",
    "mass_center": "fraction of pixels removed (box around the center of mass)",
    "degradation": "fraction of patches replaced (most relevant first)",
    "road_morf": "fraction of pixels imputed (highest attribution first)",
    "road_lerf": "fraction of pixels imputed (lowest attribution first)",
}

_TEXT = 8  # points: the body text of a paper figure
_SMALL = 7


def curve_title(curve: str) -> str:
    """A human title for a curve name of ``metrics.compare`` (``"top_k"`` ->
    ``"Top-k ablation"``); unknown names are spelled out."""
    return CURVE_TITLES.get(curve, curve.replace("_", " ").capitalize())


def line_styles(n: int) -> list[dict[str, Any]]:
    """``n`` line styles (``color``, ``linestyle``, and a ``marker`` past 64), no
    two alike."""
    styles = []
    for i in range(n):
        style: dict[str, Any] = {
            "color": COLORS[i % len(COLORS)],
            # Shifted at each turn of the colors: 16 is a multiple of 4.
            "linestyle": LINESTYLES[(i + i // len(COLORS)) % len(LINESTYLES)],
        }
        cycle = len(COLORS) * len(LINESTYLES)
        if i >= cycle:
            style["marker"] = _MARKERS[(i // cycle - 1) % len(_MARKERS)]
            style["markersize"] = 3
        styles.append(style)
    return styles


def _pyplot() -> Any:
    import matplotlib.pyplot as plt

    return plt


def _style_axes(ax: Axes) -> None:
    """Paper sizes on one axes: 8 pt labels, 7 pt ticks, no top/right spines."""
    ax.tick_params(labelsize=_SMALL)
    ax.xaxis.label.set_fontsize(_TEXT)
    ax.yaxis.label.set_fontsize(_TEXT)
    ax.title.set_fontsize(_TEXT + 1)
    ax.spines[["top", "right"]].set_visible(False)


def _frame(ax: Axes, color: str = "0.3") -> None:
    """An image panel: no ticks, a thin frame (a white panel stays visible)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color(color)
        spine.set_linewidth(0.8)


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
            100 only normalizes by the maximum.

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
    outline: bool = False,
    image_titles: list[str] | None = None,
    size: float = 1.2,
) -> Figure:
    """A grid: one row per image, the image then one attribution map per method.

    Args:
        images: ``(N, C, H, W)`` images, shown min-max scaled (RGB for 3 channels,
            gray otherwise).
        attributions: ``{method: attributions}`` (or one tensor), each
            ``(N, C, H, W)`` or ``(N, H, W)``, shown through
            :func:`attribution_map`.
        sign: ``"absolute"`` (color map ``"magma"``, range [0, 1]) or
            ``"signed"`` (``"bwr"``, range [-1, 1]).
        clip_percentile: See :func:`attribution_map`.
        cmap: Override the color map.
        overlay: Opacity of the gray image drawn under each map (0: none).
        outline: Draw the contour of the input at mid-gray over each map (the
            strokes of a digit), so that what a map leaves out is visible.
        image_titles: One label per row (e.g. the class), left of the input.
        size: Inches per panel.

    Returns:
        The figure: column titles (``"input"`` and the method names) on the first
        row, and one colorbar for all maps, labelled with the sign convention.
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
    absolute = sign == "absolute"
    cmap = cmap or ("magma" if absolute else "bwr")
    vmin = 0.0 if absolute else -1.0
    # Contours must stand out on the map: cyan on magma's dark end, black on
    # bwr's white middle.
    contour_color = "#00e5ff" if absolute else "black"
    n_rows, n_cols = x.shape[0], 1 + len(maps)
    # A fixed layout in inches (a grid layout engine takes seconds on 50 panels):
    # row labels left and column titles on top (each as many lines as the
    # longest), the colorbar right.
    title_lines = max(name.count("\n") + 1 for name in ["input", *maps])
    label_lines = max(t.count("\n") + 1 for t in image_titles or [""])
    gap, bottom, right = 0.06, 0.08, 0.95
    left = 0.17 + 0.13 * label_lines
    top = 0.1 + 0.15 * max(2, title_lines)
    grid_w, grid_h = (
        n_cols * size + (n_cols - 1) * gap,
        n_rows * size + (n_rows - 1) * gap,
    )
    width, height = left + grid_w + right, top + grid_h + bottom
    fig = _pyplot().figure(figsize=(width, height))
    axes = fig.add_gridspec(
        n_rows,
        n_cols,
        left=left / width,
        right=(left + grid_w) / width,
        bottom=bottom / height,
        top=(bottom + grid_h) / height,
        wspace=gap / size,
        hspace=gap / size,
    ).subplots(squeeze=False)
    drawn = None
    for i in range(n_rows):
        shown, image_cmap = _display_image(x[i])
        gray = shown if shown.ndim == 2 else shown.mean(2)
        axes[i, 0].imshow(shown, cmap=image_cmap)
        if image_titles is not None:
            axes[i, 0].set_ylabel(image_titles[i], fontsize=_TEXT)
        for j, m in enumerate(maps.values(), start=1):
            ax = axes[i, j]
            if overlay > 0:
                ax.imshow(gray, cmap="gray", alpha=overlay)
            drawn = ax.imshow(
                m[i],
                cmap=cmap,
                vmin=vmin,
                vmax=1.0,
                alpha=1 - overlay if overlay else 1,
            )
            if outline and gray.max() > gray.min():
                ax.contour(
                    gray,
                    levels=[0.5 * (gray.min() + gray.max())],
                    colors=contour_color,
                    linewidths=0.7,
                )
    for j, name in enumerate(["input", *maps]):
        axes[0, j].set_title(name, fontsize=_TEXT)
    for ax in axes.flat:
        _frame(ax)
    if drawn is not None:
        label = (
            f"|attribution| / its {clip_percentile:g}th percentile"
            if absolute
            else f"attribution / {clip_percentile:g}th percentile of |attribution|"
        )
        bar_h = min(grid_h, max(size, 0.7 * grid_h))
        cax = fig.add_axes(
            (
                (left + grid_w + 0.12) / width,
                (bottom + (grid_h - bar_h) / 2) / height,
                0.1 / width,
                bar_h / height,
            )
        )
        bar = fig.colorbar(drawn, cax=cax)
        bar.set_label(label, fontsize=_SMALL)
        bar.ax.tick_params(labelsize=_SMALL)
    return fig


def plot_baselines(
    image: Any, baselines: Mapping[str, Any], *, size: float = 1.2
) -> Figure:
    """A gallery: the input, then each named baseline for it.

    Args:
        image: ``(C, H, W)`` or ``(1, C, H, W)``.
        baselines: ``{name: baseline}``, each shaped like ``image`` (the first
            example is shown if a batch is given).  All panels share the input's
            value range, so a black baseline looks black; every panel is framed,
            so a white one stays visible.
        size: Inches per panel.
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
    fig, axes = _pyplot().subplots(
        1,
        len(panels),
        figsize=(size * len(panels), size + 0.3),
        squeeze=False,
        layout="constrained",
    )
    for ax, (name, t) in zip(axes[0], panels.items(), strict=True):
        shown = ((t.to(torch.float64) - low) / scale).clamp(0, 1)
        if shown.shape[0] == 3:
            ax.imshow(shown.permute(1, 2, 0).numpy())
        else:
            ax.imshow(shown.mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=_TEXT)
        _frame(ax, "black")
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
    fig, ax = _pyplot().subplots(figsize=(4.5, 2.6), layout="constrained")
    for i, style in enumerate(line_styles(x.shape[0])):
        label = labels[i] if labels is not None else f"example {i}"
        ax.plot(alphas.numpy(), values[i].cpu().double().numpy(), label=label, **style)
    ax.set_xlabel("alpha (0: baseline, 1: input)")
    ax.set_ylabel("probability" if score == "probability" else "model output")
    ax.set_title("model output along the path")
    _style_axes(ax)
    fig.legend(loc="outside right upper", fontsize=_SMALL, frameon=False)
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
    size: float = 2.4,
) -> Figure:
    """The completeness figure, one panel per example.

    Each panel draws the integrated-gradients sum accumulated up to ``alpha``
    with the quadrature's own nodes and weights (``"cumulative attribution"``),
    the exact ``f(x' + alpha (x - x')) - f(x')`` it estimates (``"f(path) -
    f(x')"``) and the target ``f(x) - f(x')`` as a horizontal line.  The gap at
    ``alpha = 1`` is the convergence delta.  One legend below the panels.
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
    fig, axes = _pyplot().subplots(
        1, n, figsize=(size * n, size * 0.85 + 0.4), squeeze=False, layout="constrained"
    )
    for i, ax in enumerate(axes[0]):
        ax.plot(
            fine.numpy(), along[i].cpu().numpy(), color="0.6", label="f(path) - f(x')"
        )
        ax.plot(
            alphas.numpy(),
            cumulative[i].cpu().numpy(),
            color=COLORS[0],
            marker=".",
            label="cumulative attribution",
        )
        ax.axhline(float(gap[i]), label="f(x) - f(x')", **CONTROL_STYLE)
        ax.set_xlabel("alpha")
        title = labels[i] if labels is not None else f"example {i}"
        delta = float(cumulative[i, -1] - gap[i])
        ax.set_title(f"{title} (delta {delta:.2g})")
        _style_axes(ax)
    fig.legend(
        *axes[0, 0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=3,
        fontsize=_SMALL,
        frameon=False,
    )
    return fig


def plot_curves(
    curves: Mapping[str, Any],
    x: Any = None,
    *,
    control: str | None = "random",
    title: str | None = None,
    xlabel: str = "fraction removed",
    ylabel: str = "score relative to the input",
    band: bool = False,
    width: float = 6.0,
) -> Figure:
    """Mean ablation / degradation curves, one line per method.

    Args:
        curves: ``{method: (N, F) or (F,) curve}``.
        x: The ``F`` x-coordinates; default evenly spaced on [0, 1].
        control: The name of the control curve, drawn black and dashed (no
            method is drawn in black).
        title: Axes title.
        xlabel: Label of the x axis.
        ylabel: Label of the y axis.
        band: Shade the mean +- one standard error over examples (off by
            default: with many methods the bands hide each other; intervals
            belong in the table).
        width: Width in inches (6: a two-column paper's text width, with room for
            the legend).

    Returns:
        The figure; each method's line holds its mean curve and its label the
        area under that mean curve.  Lines differ in color
        and style; the legend sits right of the axes.
    """
    fig, ax = _pyplot().subplots(figsize=(width, width * 0.45), layout="constrained")
    styles = iter(line_styles(len(curves)))
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
        style = dict(CONTROL_STYLE) if name == control else next(styles)
        (line,) = ax.plot(
            xs.numpy(),
            mean.numpy(),
            label=f"{name} (AUC {area:.3f})",
            **{"linewidth": 1.3, **style},
        )
        if band and c.shape[0] > 1:
            sem = c.std(0) / c.shape[0] ** 0.5
            ax.fill_between(
                xs.numpy(),
                (mean - sem).numpy(),
                (mean + sem).numpy(),
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, linewidth=0.5)
    if title:
        ax.set_title(title)
    _style_axes(ax)
    fig.legend(
        loc="outside right upper",
        fontsize=_SMALL,
        frameon=False,
    )
    return fig


def plot_comparison(result: Any, curve: str = "top_k", **kwargs: Any) -> Figure:
    """:func:`plot_curves` of one curve of a ``ComparisonResult``, with its human
    title (saying which way is better) and axis labels; ``kwargs`` go to
    :func:`plot_curves`."""
    from .metrics.compare import HIGHER_IS_BETTER

    score = getattr(result, "score", "probability")
    ylabel = (
        "class probability, relative to the intact input"
        if score == "probability"
        else "class logit, relative to the intact input"
    )
    options: dict[str, Any] = {
        # The direction on a line of its own: one line of both runs into the
        # legend on the right.
        "title": f"{curve_title(curve)}\n"
        f"({'higher' if curve in HIGHER_IS_BETTER else 'lower'} AUC is better)",
        "xlabel": CURVE_XLABELS.get(curve, "fraction removed"),
        "ylabel": ylabel,
        **kwargs,
    }
    return plot_curves(result.curves(curve), result.x(curve), **options)


def plot_intervals(
    result: Any,
    summaries: Sequence[str] | None = None,
    *,
    control: str | None = "random",
    columns: int = 3,
    width: float = 7.0,
) -> Figure:
    """Small multiples of a ``ComparisonResult``'s table: per summary (the area
    under each curve, the ROAD gap), every method's mean area as a dot with its
    bootstrap interval as a bar.

    Methods share the rows of every panel, in the table's order, and the colors
    of :func:`plot_comparison`; the control (``control``) is black with its
    interval shaded across the panel, so a method whose bar reaches into the
    band is not told apart from chance.  Each panel's title says which way is
    better (``metrics.compare.HIGHER_IS_BETTER``).

    Args:
        result: A :class:`~captum_baselines.metrics.ComparisonResult`.
        summaries: The summaries to draw; default ``result.summary_names``.
        control: The name of the control, or ``None``.
        columns: Panels per row.
        width: Width in inches.

    Returns:
        The figure.
    """
    from .metrics.compare import HIGHER_IS_BETTER

    names = list(result.summary_names if summaries is None else summaries)
    if not names:
        raise ValueError("`summaries` is empty")
    columns = min(check_positive_int("columns", columns), len(names))
    methods = list(result.methods)
    n_rows = -(-len(names) // columns)
    # Room for the two-line title and the axis label, then a row per method.
    panel_h = 1.0 + 0.16 * len(methods)
    fig, axes = _pyplot().subplots(
        n_rows,
        columns,
        figsize=(width, n_rows * panel_h + 0.1),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    colors = iter(line_styles(len(methods)))
    looks = {
        m: {"color": "black"} if m == control else {"color": next(colors)["color"]}
        for m in methods
    }
    rows = np.arange(len(methods))[::-1]  # the first method on top
    for ax, summary in zip(axes.flat, names):
        for row, method in zip(rows, methods):
            interval = result.interval(method, summary)
            if method == control:
                ax.axvspan(interval.low, interval.high, color="0.85", linewidth=0)
            ax.plot(
                [interval.low, interval.high],
                [row, row],
                linewidth=1.6,
                solid_capstyle="butt",
                **looks[method],
            )
            ax.plot([interval.mean], [row], marker="o", markersize=3, **looks[method])
        better = "higher" if summary in HIGHER_IS_BETTER else "lower"
        title = textwrap.fill(curve_title(summary), 24)
        ax.set_title(f"{title}\n({better} is better)", fontsize=_TEXT)
        ax.set_yticks(rows, methods)
        ax.set_ylim(-0.7, len(methods) - 0.3)
        ax.grid(axis="x", alpha=0.3, linewidth=0.5)
        ax.set_xlabel(
            "area" if summary in result.curve_names else "difference of areas"
        )
        _style_axes(ax)
        ax.title.set_fontsize(_TEXT)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    confidence = getattr(result, "confidence", 0.95)
    fig.suptitle(
        f"Mean over the images with {confidence:.0%} bootstrap intervals"
        + ("; gray band: the random control's interval" if control in methods else ""),
        fontsize=_TEXT,
    )
    return fig


__all__ = [
    "COLORS",
    "CURVE_TITLES",
    "CURVE_XLABELS",
    "LINESTYLES",
    "attribution_map",
    "cumulative_attribution",
    "curve_title",
    "line_styles",
    "path_outputs",
    "plot_attributions",
    "plot_baselines",
    "plot_comparison",
    "plot_completeness",
    "plot_curves",
    "plot_intervals",
    "plot_path_outputs",
]
