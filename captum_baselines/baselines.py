"""Baselines: inputs that stand for "missing", as the attribution literature uses them.

Every generator returns a tensor shaped like ``inputs`` (or ``(n_samples,
*inputs.shape)`` when ``n_samples`` is given) on the inputs' device and dtype, so
that it can be passed straight to Captum as ``baselines=`` and to
``compute_convergence_delta(..., start_point=...)``.

The semantics follow Sturmfels, Lundberg & Lee, "Visualizing the Impact of Feature
Attribution Baselines", Distill 2020 (https://distill.pub/2020/attribution-baselines/):
"black" is the bottom of the valid range, not zero, so that it stays right for
inputs normalized with ``transforms.Normalize(mean, std)``; pass the range of the
normalized space, e.g. ``value_range=normalized_range(mean, std)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Literal, overload

import torch
from captum._utils.common import _expand_additional_forward_args, _expand_target
from captum._utils.typing import TargetType
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ._engine.forward import forward_inputs, forward_rows
from ._hooks import eval_mode
from ._uniform_output import uniform_output
from ._validation import (
    ValueRange,
    check_finite,
    check_generator,
    check_inputs,
    check_nonnegative,
    check_optional_positive_int,
    check_positive_int,
    check_tensor,
    resolve_value_range,
)
from .references import draw_references

__all__ = [
    "average_over_baselines",
    "black",
    "blur",
    "constant",
    "from_data",
    "gaussian",
    "max_distance",
    "normalized_range",
    "uniform",
    "uniform_output",
    "white",
]

BlurMode = Literal["reflect", "mirror", "nearest", "wrap", "constant"]


def normalized_range(
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    pixel_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[Tensor, Tensor]:
    """The valid range of images in the space of ``transforms.Normalize(mean, std)``.

    Args:
        mean: Per-channel means of the normalization.
        std: Per-channel standard deviations (all > 0).
        pixel_range: The range of pixel values before normalization.

    Returns:
        ``(low, high)``, each of shape ``(C, 1, 1)``: per channel
        ``(pixel_low - mean) / std`` and ``(pixel_high - mean) / std``.

    Examples::

        >>> low, high = normalized_range((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        >>> black_image = black(images, value_range=(low, high))
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    std_t = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
    if mean_t.numel() != std_t.numel():
        raise ValueError(
            f"`mean` and `std` must have the same length, got {mean_t.numel()} "
            f"and {std_t.numel()}"
        )
    if not bool((std_t > 0).all()):
        raise ValueError("`std` must be > 0 in every channel")
    low, high = (float(v) for v in pixel_range)
    if not low <= high:
        raise ValueError(f"`pixel_range` must satisfy low <= high, got {pixel_range}")
    shape = (-1, 1, 1)
    dtype = torch.get_default_dtype()
    return (
        ((low - mean_t) / std_t).reshape(shape).to(dtype),
        ((high - mean_t) / std_t).reshape(shape).to(dtype),
    )


def constant(inputs: Tensor, value: float | Tensor) -> Tensor:
    """A baseline equal to ``value`` everywhere (a float or a tensor broadcastable
    to one example, e.g. ``(C, 1, 1)``)."""
    inputs = _check_batch("inputs", inputs)
    low, _ = resolve_value_range((value, value), inputs, name="value")
    return low.expand(inputs.shape).clone()


def black(inputs: Tensor, value_range: ValueRange = (0.0, 1.0)) -> Tensor:
    """The bottom of the valid range: black for images, per channel when normalized."""
    inputs = _check_batch("inputs", inputs)
    low, _ = resolve_value_range(value_range, inputs)
    return low.expand(inputs.shape).clone()


def white(inputs: Tensor, value_range: ValueRange = (0.0, 1.0)) -> Tensor:
    """The top of the valid range: white for images."""
    inputs = _check_batch("inputs", inputs)
    _, high = resolve_value_range(value_range, inputs)
    return high.expand(inputs.shape).clone()


def max_distance(inputs: Tensor, value_range: ValueRange = (0.0, 1.0)) -> Tensor:
    """The point of the range farthest from ``inputs`` in L1 distance.

    Each feature goes to the end of its range that is farther from it: ``high``
    where ``x < (low + high) / 2``, else ``low``.
    """
    inputs = _check_batch("inputs", inputs)
    low, high = resolve_value_range(value_range, inputs)
    return torch.where(inputs < (low + high) / 2, high, low).expand(inputs.shape)


def blur(
    inputs: Tensor,
    sigma: float | tuple[float, float],
    mode: BlurMode = "reflect",
    truncate: float = 4.0,
) -> Tensor:
    """Gaussian blur of the last two (spatial) dimensions; channels are never mixed.

    Matches ``scipy.ndimage.gaussian_filter(x, (0, .., 0, sigma, sigma))``: a
    separable kernel of radius ``int(truncate * sigma + 0.5)`` pixels and the same
    boundary modes (``"reflect"`` repeats the edge pixel, ``d c b a | a b c d``;
    ``"mirror"`` does not, ``d c b | a b c d``). Kernels wider than the image are
    handled by reflecting as often as needed.

    Args:
        inputs: A tensor with at least two dimensions, blurred along the last two.
        sigma: Standard deviation in pixels, one float or ``(sigma_h, sigma_w)``;
            ``0`` leaves that dimension unchanged.
        mode: How the image is extended beyond its border.
        truncate: Kernel radius in units of sigma.

    Returns:
        The blurred tensor, shaped like ``inputs``.
    """
    inputs = check_tensor("inputs", inputs)
    if inputs.dim() < 2:
        raise ValueError(
            f"`inputs` must have at least two (spatial) dimensions, got {inputs.dim()}"
        )
    check_finite("inputs", inputs)
    pair = (sigma, sigma) if isinstance(sigma, numbers.Real) else tuple(sigma)  # type: ignore[arg-type]
    if len(pair) != 2:
        raise ValueError(f"`sigma` must be a float or a pair, got {sigma!r}")
    sigmas = tuple(check_nonnegative("sigma", s) for s in pair)
    check_nonnegative("truncate", truncate)
    if mode not in ("reflect", "mirror", "nearest", "wrap", "constant"):
        raise ValueError(
            "`mode` must be one of 'reflect', 'mirror', 'nearest', 'wrap', "
            f"'constant', got {mode!r}"
        )
    out = inputs if inputs.is_floating_point() else inputs.to(torch.get_default_dtype())
    for dim, s in zip((-2, -1), sigmas):
        out = _blur_along(out, s, dim, mode, truncate)
    return out if out is not inputs else inputs.clone()


def _gaussian_kernel(sigma: float, radius: int, like: Tensor) -> Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).to(device=like.device, dtype=like.dtype)


def _padding_index(size: int, radius: int, mode: str, device: torch.device) -> Tensor:
    """For each position of the padded axis, the position of the image it copies."""
    i = torch.arange(-radius, size + radius, device=device)
    if mode == "reflect":
        i = i % (2 * size)
        return torch.where(i >= size, 2 * size - 1 - i, i)
    if mode == "mirror":
        if size == 1:
            return torch.zeros_like(i)
        i = i % (2 * size - 2)
        return torch.where(i >= size, 2 * size - 2 - i, i)
    if mode == "nearest":
        return i.clamp(0, size - 1)
    return i % size  # wrap


def _blur_matrix(size: int, sigma: float, radius: int, mode: str) -> Tensor:
    """``(size, size)`` float64 ``M`` with ``blurred = M @ axis``: the banded
    kernel over the padded axis, times the padding's choice of source pixel."""
    kernel = _gaussian_kernel(sigma, radius, torch.empty(0, dtype=torch.float64))
    # positions on the padded axis; zero padding reads nothing beyond the border
    padded = torch.arange(size + 2 * radius)
    if mode == "constant":
        padded = padded[radius : radius + size]
    taps = padded[None, :] - torch.arange(size)[:, None]  # tap of output o at j
    band = torch.where(
        (taps >= 0) & (taps <= 2 * radius), kernel[taps.clamp(0, 2 * radius)], 0.0
    )
    if mode == "constant":
        return band
    source = _padding_index(size, radius, mode, torch.device("cpu"))
    return band @ torch.nn.functional.one_hot(source, size).to(torch.float64)


def _blur_along(
    x: Tensor, sigma: float, dim: int, mode: str, truncate: float
) -> Tensor:
    radius = int(truncate * sigma + 0.5)
    if sigma == 0 or radius == 0:
        return x
    size = x.shape[dim]
    if size <= max(256, 16 * (2 * radius + 1)):
        # A dense product wins unless the axis is long and the kernel narrow:
        # matrix multiplication runs 10-300x faster per multiply-add than the
        # single-channel conv1d below (measured on CPU, float32 and float64).
        matrix = _blur_matrix(size, sigma, radius, mode).to(x.device, x.dtype)
        return matrix @ x if dim == -2 else x @ matrix.T
    moved = x.movedim(dim, -1)
    lead = moved.shape[:-1]
    rows = moved.reshape(-1, 1, size)
    if mode == "constant":
        padded = torch.nn.functional.pad(rows, (radius, radius))
    else:
        padded = rows.index_select(-1, _padding_index(size, radius, mode, x.device))
    kernel = _gaussian_kernel(sigma, radius, x).reshape(1, 1, -1)
    blurred = torch.nn.functional.conv1d(padded, kernel)
    return blurred.reshape(*lead, size).movedim(-1, dim)


@overload
def uniform(
    inputs: Tensor,
    value_range: ValueRange = ...,
    n_samples: None = ...,
    generator: torch.Generator | None = ...,
) -> Tensor: ...
@overload
def uniform(
    inputs: Tensor,
    value_range: ValueRange = ...,
    n_samples: int = ...,
    generator: torch.Generator | None = ...,
) -> Tensor: ...
def uniform(
    inputs: Tensor,
    value_range: ValueRange = (0.0, 1.0),
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Independent uniform draws over the valid range, per feature.

    Args:
        inputs: Gives the shape, device and dtype.
        value_range: ``(low, high)``, floats or tensors broadcastable to one example.
        n_samples: ``None`` for one draw shaped like ``inputs``, else the number of
            draws stacked in a new first dimension.
        generator: Source of randomness (CPU generator), for reproducibility.
    """
    inputs = _check_batch("inputs", inputs)
    low, high = resolve_value_range(value_range, inputs)
    shape = _sample_shape(inputs, n_samples)
    u = _rand(shape, generator, inputs)
    return low + (high - low) * u


def gaussian(
    inputs: Tensor,
    sigma: float,
    value_range: ValueRange = (0.0, 1.0),
    n_samples: int | None = None,
    truncate: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gaussian noise centered on the input, kept inside the valid range.

    With ``truncate=True`` each feature is drawn from the normal distribution
    ``N(x, sigma^2)`` *truncated* to ``[low, high]`` (inverse-CDF sampling), so
    that a huge ``sigma`` tends to :func:`uniform`, as the Distill article claims.
    ``truncate=False`` draws ``x + sigma * eps`` and clips it to the range, as the
    article's code does (mass piles up on the bounds).

    Args:
        inputs: The centers of the distributions.
        sigma: Standard deviation in input units (>= 0).
        value_range: ``(low, high)``, floats or tensors broadcastable to one example.
        n_samples: ``None`` for one draw shaped like ``inputs``, else the number of
            draws stacked in a new first dimension.
        truncate: True truncation (default) or clipping.
        generator: Source of randomness (CPU generator), for reproducibility.
    """
    inputs = _check_batch("inputs", inputs)
    sigma = check_nonnegative("sigma", sigma)
    low, high = resolve_value_range(value_range, inputs)
    shape = _sample_shape(inputs, n_samples)
    center = inputs.expand(shape)
    if sigma == 0:
        return torch.minimum(torch.maximum(center, low), high).clone()
    if not truncate:
        noise = torch.randn(shape, generator=generator, dtype=inputs.dtype)
        noisy = center + sigma * noise.to(inputs.device)
        return torch.minimum(torch.maximum(noisy, low), high)
    return _truncated_normal(center, sigma, low, high, generator)


def _truncated_normal(
    center: Tensor, sigma: float, low: Tensor, high: Tensor, generator: Any
) -> Tensor:
    # Work in float64 on standardised bounds a <= b.  Sampling on the side of the
    # mean where the CDF is not close to 1 keeps the inverse CDF accurate.
    x = center.to(torch.float64)
    a = ((low.to(torch.float64) - x) / sigma).expand(x.shape)
    b = ((high.to(torch.float64) - x) / sigma).expand(x.shape)
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    cdf_lo, cdf_hi = torch.special.ndtr(lo), torch.special.ndtr(hi)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x.device)
    z = torch.special.ndtri(cdf_lo + u * (cdf_hi - cdf_lo))
    # Where the interval lies so far in the tail that its mass underflows, the
    # truncated law is concentrated on the bound nearest the mean.
    z = torch.where(cdf_hi - cdf_lo > 0, z, hi).clamp(lo, hi)
    z = torch.where(flip, -z, z)
    sample = (x + sigma * z).to(center.dtype)
    return torch.minimum(torch.maximum(sample, low), high)


def from_data(
    data: Tensor | Dataset | DataLoader | Iterable[Any],
    inputs: Tensor,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Baselines drawn from data, e.g. the training set, per example.

    Each example draws its own baselines without replacement: with
    ``n_samples <= M`` data examples, no example's baselines repeat a data
    example (beyond that every data example is used equally often).  The same
    draws as :class:`~captum_baselines.attr.ExpectedGradients` makes (see
    :mod:`captum_baselines.references`).

    Args:
        data: A tensor of examples ``(M, *inputs.shape[1:])``, a map-style
            ``Dataset``, a ``DataLoader`` or any iterable of batches. Items or
            batches may be ``(x, y)`` pairs; ``x`` is used.
        inputs: Gives the shape, device and dtype of the result.
        n_samples: ``None`` for one baseline per example, shaped like ``inputs``;
            else ``(n_samples, *inputs.shape)``.
        generator: Source of randomness, for reproducibility.
    """
    inputs = _check_batch("inputs", inputs)
    k = check_optional_positive_int("n_samples", n_samples)
    generator = check_generator("generator", generator)
    (drawn,) = draw_references(data, (inputs,), k or 1, generator, name="data")
    return drawn[:, 0] if k is None else drawn.transpose(0, 1).contiguous()


def average_over_baselines(
    attribution: Any,
    inputs: Tensor | tuple[Tensor, ...],
    baselines: Tensor | tuple[Tensor, ...],
    *,
    target: TargetType = None,
    additional_forward_args: Any = None,
    baseline_batch_size: int | None = None,
    return_convergence_delta: bool = False,
    **attribute_kwargs: Any,
) -> Any:
    """Runs a baseline attribution once per baseline and averages the results.

    For any Captum attribution taking ``baselines=`` (``IntegratedGradients``,
    ``DeepLift``, ``DeepLiftShap`` is already an average, ...), computes
    ``phi(x) = (1/k) sum_j phi(x; x'_j)``. Completeness of each run,
    ``sum phi(x; x'_j) = f(x) - f(x'_j)``, averages to
    ``sum phi(x) = f(x) - (1/k) sum_j f(x'_j)``: the delta returned is the residual
    of that identity.

    Args:
        attribution: A Captum attribution object, e.g. ``IntegratedGradients(model)``.
        inputs: Tensor or tuple of tensors, first dimension the batch ``N``.
        baselines: ``(k, *inputs.shape)`` (a tuple of such for multi-input models),
            e.g. ``uniform(x, n_samples=k)``.
        target: Any of Captum's target forms, for the batch of ``N`` inputs.
        additional_forward_args: Passed to the model, per-example tensors included.
        baseline_batch_size: How many baselines share one call of ``attribute``
            (the inputs are repeated that many times); ``None`` for all at once.
            Bounds memory; changes no result.
        return_convergence_delta: Also return the completeness residual per example.
        **attribute_kwargs: Passed to ``attribution.attribute`` (``n_steps``,
            ``method``, ``internal_batch_size``, ...).

    Returns:
        The mean attributions, shaped like ``inputs``, and with
        ``return_convergence_delta=True`` a ``(N,)`` delta
        ``sum(phi) - (f(x) - mean_j f(x'_j))``.
    """
    is_tuple = isinstance(inputs, tuple)
    x = check_inputs("inputs", inputs)
    refs = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(refs) != len(x):
        raise ValueError(
            f"`baselines` must hold one tensor per input tensor ({len(x)}), "
            f"got {len(refs)}"
        )
    for i, (r, xi) in enumerate(zip(refs, x)):
        check_tensor("baselines", r)
        if r.dim() != xi.dim() + 1 or r.shape[1:] != xi.shape:
            raise ValueError(
                f"`baselines`{'' if len(x) == 1 else f'[{i}]'} must have shape "
                f"(k, *inputs.shape) = (k, {', '.join(map(str, xi.shape))}), "
                f"got {tuple(r.shape)}"
            )
        check_finite("baselines", r)
    k = refs[0].shape[0]
    if k == 0 or any(r.shape[0] != k for r in refs):
        raise ValueError("`baselines` must hold the same number k >= 1 of baselines")
    group = k if baseline_batch_size is None else baseline_batch_size
    group = check_positive_int("baseline_batch_size", group)
    with eval_mode(attribution.forward_func):
        return _average(
            attribution,
            x,
            refs,
            is_tuple,
            group,
            target,
            additional_forward_args,
            return_convergence_delta,
            attribute_kwargs,
        )


def _average(
    attribution: Any,
    x: tuple[Tensor, ...],
    refs: tuple[Tensor, ...],
    is_tuple: bool,
    group: int,
    target: TargetType,
    additional_forward_args: Any,
    return_convergence_delta: bool,
    attribute_kwargs: dict[str, Any],
) -> Any:
    k = refs[0].shape[0]
    n = x[0].shape[0]
    total = tuple(torch.zeros_like(t) for t in x)
    for start in range(0, k, group):
        g = min(group, k - start)
        tiled_x = tuple(t.repeat(g, *([1] * (t.dim() - 1))) for t in x)
        tiled_b = tuple(r[start : start + g].reshape(g * n, *r.shape[2:]) for r in refs)
        attrs = attribution.attribute(
            tiled_x if is_tuple else tiled_x[0],
            baselines=tiled_b if is_tuple else tiled_b[0],
            target=_expand_target(target, g),
            additional_forward_args=_expand_additional_forward_args(
                additional_forward_args, g
            ),
            **_rows_at_least(attribute_kwargs, g * n),
        )
        attrs = attrs if isinstance(attrs, tuple) else (attrs,)
        for acc, a in zip(total, attrs):
            acc += a.detach().reshape(g, *acc.shape).sum(0)
    mean = tuple(t / k for t in total)
    result = mean if is_tuple else mean[0]
    if not return_convergence_delta:
        return result
    forward = attribution.forward_func
    batch = attribute_kwargs.get("internal_batch_size")
    f_x = forward_inputs(forward, x, target, additional_forward_args, batch)
    pool = tuple(r.reshape(k * n, *r.shape[2:]) for r in refs)
    f_b = forward_rows(
        forward,
        lambda rows: tuple(p[rows] for p in pool),
        torch.arange(n, device=x[0].device).repeat(k),
        n,
        target,
        additional_forward_args,
        batch,
    )
    expected = f_x - f_b.reshape(k, n).mean(0)
    attributed = sum(m.reshape(n, -1).sum(1) for m in mean)
    return result, attributed - expected


def _rows_at_least(attribute_kwargs: dict[str, Any], rows: int) -> dict[str, Any]:
    """``attribute_kwargs`` with an ``internal_batch_size`` of at least ``rows``:
    Captum's path methods cannot batch fewer rows than examples (they raise the
    size to that with a warning), and the examples here are the tiled ones."""
    batch = attribute_kwargs.get("internal_batch_size")
    if batch is None or batch >= rows:
        return attribute_kwargs
    return {**attribute_kwargs, "internal_batch_size": rows}


def _check_batch(name: str, inputs: Any) -> Tensor:
    check_tensor(name, inputs)
    if inputs.dim() == 0:
        raise ValueError(f"`{name}` must have a batch dimension, got a scalar")
    check_finite(name, inputs)
    return inputs


def _sample_shape(inputs: Tensor, n_samples: int | None) -> torch.Size:
    n = check_optional_positive_int("n_samples", n_samples)
    return inputs.shape if n is None else torch.Size((n, *inputs.shape))


def _rand(shape: torch.Size, generator: Any, like: Tensor) -> Tensor:
    check_generator("generator", generator)
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    return torch.rand(shape, generator=generator, dtype=dtype).to(like.device)
