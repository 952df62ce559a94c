r"""PatternAttribution patterns: statistics, estimators and the :class:`Patterns` map.

For a Linear or Conv layer with output units ``y_j = w_j^T x + b_j``, the pattern
of unit ``j`` (`Kindermans et al. 2018 <https://arxiv.org/abs/1705.05598>`_, eq. 2
of `Schwarzenberg & Castle 2020 <https://arxiv.org/abs/2007.10685>`_) is::

    cov_j = E+[x y_j] - E+[x] E[y_j]
    a_j   = cov_j / (w_j^T cov_j)

where ``E+`` averages over the samples in which the unit is in its positive regime
(``y_j > 0``) when the layer feeds a ReLU (the two-component estimator ``A+``), and
over every sample otherwise (the linear estimator); ``E[y_j]`` is always over every
sample.  By construction ``sum_i w_ij a_ij = 1`` for every live unit.  In a Conv
layer every (example, output position) pair is one sample and ``x`` is the input
patch seen by the unit.  The bias cancels in ``cov`` and gets no pattern.  A
BatchNorm after a layer is folded into it: ``y`` is the post-BatchNorm value and
``w`` the folded weight ``s * w``.

The statistics are sums and counts (:class:`LayerStatistics`), accumulated in
float64 in one streaming pass and mergeable, so that fitting can be sharded.  Conv
sums are computed as weight gradients (``torch.nn.grad.conv2d_weight``), never by
unfolding the input into patches.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.grad import conv1d_weight, conv2d_weight, conv3d_weight
from tqdm.auto import tqdm

from .._hooks import eval_mode, registered_hooks
from .._validation import check_finite, check_positive_int
from .pattern_backward import (
    PATTERNED_LAYER_TYPES,
    LayerRole,
    check_patterned_layer,
    check_patterns,
    conv_padding,
    effective_weight,
    folded_batchnorm,
    layer_weight,
    trace_layer_roles,
)

Estimator = Literal["linear", "positive"]
_ESTIMATORS = ("auto", "linear", "positive")
_FORMAT = "captum_baselines.Patterns"
_VERSION = 1

#: ``|w_j^T cov_j| <= TINY * |w_j| |cov_j|`` triggers a warning: the pattern of such
#: a unit is dominated by rounding.
TINY = 1e-6

_CONV_WEIGHT_SUMS = {1: conv1d_weight, 2: conv2d_weight, 3: conv3d_weight}


@dataclass
class LayerStatistics:
    """The sums from which one layer's patterns are estimated.

    ``sum_input`` and ``sum_input_output`` run over each unit's regime (its
    positive regime for the ``"positive"`` estimator, every sample for
    ``"linear"``), ``sum_output`` and ``count`` over every sample.  For the linear
    estimator of an ungrouped layer ``sum_input`` is shared by all units and kept
    as one row ``(1, *weight.shape[1:])``.

    Attributes:
        estimator: ``"positive"`` (A+) or ``"linear"``.
        count: Number of samples (examples times output positions), a scalar.
        count_regime: ``(J,)`` samples in each unit's regime.
        sum_output: ``(J,)`` sum of ``y_j`` over every sample.
        sum_input: Sum of the unit's input ``x`` over its regime.
        sum_input_output: Sum of ``x y_j`` over the unit's regime, like the weight.
        batchnorm: Name of the BatchNorm folded into the layer, or ``None``.
    """

    estimator: Estimator
    count: Tensor
    count_regime: Tensor
    sum_output: Tensor
    sum_input: Tensor
    sum_input_output: Tensor
    batchnorm: str | None = None

    def merge(self, other: LayerStatistics) -> LayerStatistics:
        """The statistics of both sets of samples together."""
        if other.estimator != self.estimator or other.batchnorm != self.batchnorm:
            raise ValueError(
                "cannot merge statistics of different estimators or foldings: "
                f"{self.estimator}/{self.batchnorm} and "
                f"{other.estimator}/{other.batchnorm}"
            )
        return LayerStatistics(
            estimator=self.estimator,
            count=self.count + other.count,
            count_regime=self.count_regime + other.count_regime,
            sum_output=self.sum_output + other.sum_output,
            sum_input=self.sum_input + other.sum_input,
            sum_input_output=self.sum_input_output + other.sum_input_output,
            batchnorm=self.batchnorm,
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the sums, in bytes."""
        tensors = (
            self.count,
            self.count_regime,
            self.sum_output,
            self.sum_input,
            self.sum_input_output,
        )
        return sum(t.numel() * t.element_size() for t in tensors)

    def covariance(self) -> Tensor:
        """``cov_j = E+[x y_j] - E+[x] E[y_j]`` per unit, shaped like the weight."""
        shape = (-1, *([1] * (self.sum_input_output.dim() - 1)))
        regime = self.count_regime.clamp_min(1).reshape(shape)
        mean_output = (self.sum_output / self.count.clamp_min(1)).reshape(shape)
        return self.sum_input_output / regime - self.sum_input / regime * mean_output

    def pattern(self, weight: Tensor, name: str = "layer") -> Tensor:
        """``a_j = cov_j / (w_j^T cov_j)``; 0 for dead units.

        Args:
            weight: The layer's effective weight (BatchNorm folded in).
            name: Used in warnings.

        Returns:
            The patterns in float64, shaped like ``weight``.
        """
        cov = self.covariance()
        w = weight.detach().to(cov)
        denominator = (w * cov).flatten(1).sum(1)
        live = (self.count_regime > 0) & (denominator != 0)
        scale = w.flatten(1).norm(dim=1) * cov.flatten(1).norm(dim=1)
        tiny = live & (denominator.abs() <= TINY * scale)
        if bool(tiny.any()):
            warnings.warn(
                f"layer `{name}`: {int(tiny.sum())} unit(s) have a near-zero "
                "denominator w^T cov; their patterns are dominated by rounding",
                RuntimeWarning,
                stacklevel=2,
            )
        shape = (-1, *([1] * (cov.dim() - 1)))
        safe = torch.where(live, denominator, torch.ones_like(denominator))
        return torch.where(live.reshape(shape), cov / safe.reshape(shape), 0.0)


def layer_statistics(
    module: nn.Module,
    layer_input: Tensor,
    layer_output: Tensor,
    estimator: Estimator,
    dtype: torch.dtype = torch.float64,
    batchnorm: str | None = None,
) -> LayerStatistics:
    """The statistics of one batch for a Linear or Conv layer.

    Args:
        module: The layer.
        layer_input: Its input ``x``.
        layer_output: Its output ``y`` (after the folded BatchNorm, if any).
        estimator: ``"positive"`` sums over ``y_j > 0``; ``"linear"`` over all.
        dtype: Precision of the sums.
        batchnorm: Recorded in the result.
    """
    x = layer_input.detach().to(dtype)
    y = layer_output.detach().to(dtype)
    weight_shape = tuple(layer_weight(module).shape)
    if isinstance(module, nn.Linear):
        x = x.reshape(-1, x.shape[-1])
        y = y.reshape(-1, y.shape[-1])
        if estimator == "positive":
            regime = (y > 0).to(dtype)
            sum_input = regime.T @ x
            count_regime = regime.sum(0)
            sum_input_output = (y * regime).T @ x
        else:
            sum_input = x.sum(0, keepdim=True)
            count_regime = torch.full_like(y[0], y.shape[0])
            sum_input_output = y.T @ x
        count = torch.tensor(float(y.shape[0]), dtype=dtype, device=y.device)
        sum_output = y.sum(0)
    else:
        assert isinstance(module, nn.modules.conv._ConvNd)
        weight_sums = _CONV_WEIGHT_SUMS[len(module.kernel_size)]
        spatial = tuple(range(2, y.dim()))

        def patch_sums(grad: Tensor, shape: Sequence[int]) -> Tensor:
            # sum over samples n, positions p of grad[n, j, p] * patch(x)[n, p]
            return weight_sums(
                x,
                shape,
                grad,
                stride=module.stride,
                padding=conv_padding("", module),
                dilation=module.dilation,
                groups=module.groups,
            )

        if estimator == "positive":
            regime = (y > 0).to(dtype)
            sum_input = patch_sums(regime, weight_shape)
            count_regime = regime.sum((0, *spatial))
            sum_input_output = patch_sums(y * regime, weight_shape)
        else:
            if module.groups == 1:
                ones = torch.ones_like(y[:, :1])
                sum_input = patch_sums(ones, (1, *weight_shape[1:]))
            else:
                sum_input = patch_sums(torch.ones_like(y), weight_shape)
            n_samples = y[:, 0].numel()
            count_regime = torch.full_like(y[0].flatten(1)[:, 0], n_samples)
            sum_input_output = patch_sums(y, weight_shape)
        count = torch.tensor(float(y[:, 0].numel()), dtype=dtype, device=y.device)
        sum_output = y.sum((0, *spatial))
    return LayerStatistics(
        estimator=estimator,
        count=count,
        count_regime=count_regime,
        sum_output=sum_output,
        sum_input=sum_input,
        sum_input_output=sum_input_output,
        batchnorm=batchnorm,
    )


class Patterns(Mapping[str, Tensor]):
    """PatternAttribution patterns: module name to a tensor shaped like its weight.

    Names are those of ``model.named_modules()``.  Build one by hand with
    ``Patterns({"fc": torch.ones(3, 4)})`` or fit one with :func:`fit_patterns`;
    ``save`` / ``load`` round-trip through ``torch.save`` of plain tensors, loaded
    with ``weights_only=True`` so that no pickled code runs.

    Examples::

        >>> patterns = fit_patterns(model, train_loader)
        >>> patterns.save("patterns.pt")
        >>> patterns = Patterns.load("patterns.pt")
        >>> patterns.check(model)
    """

    def __init__(self, patterns: Mapping[str, Tensor] | None = None) -> None:
        patterns = {} if patterns is None else patterns
        if not isinstance(patterns, Mapping):
            raise TypeError(
                "`patterns` must be a mapping from module name to tensor, got "
                f"{type(patterns).__name__}"
            )
        self._patterns: dict[str, Tensor] = {}
        for name, pattern in patterns.items():
            if not isinstance(name, str):
                raise TypeError(f"pattern names must be str, got {name!r}")
            if not isinstance(pattern, Tensor) or not pattern.is_floating_point():
                raise TypeError(f"pattern `{name}` must be a floating-point tensor")
            check_finite(f"patterns[{name!r}]", pattern)
            self._patterns[name] = pattern.detach()

    def __getitem__(self, name: str) -> Tensor:
        return self._patterns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._patterns)

    def __len__(self) -> int:
        return len(self._patterns)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {tuple(p.shape)}" for n, p in self.items())
        return f"Patterns({{{shapes}}})"

    def to(self, *args: Any, **kwargs: Any) -> Patterns:
        """A copy with every tensor moved, like ``Tensor.to``."""
        return Patterns({n: p.to(*args, **kwargs) for n, p in self.items()})

    def check(self, model: nn.Module) -> None:
        """Raises a ``ValueError`` listing every name or shape ``model`` lacks."""
        check_patterns(model, self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the patterns as a plain dictionary of tensors."""
        torch.save(
            {
                "format": _FORMAT,
                "version": _VERSION,
                "patterns": {n: p.cpu() for n, p in self.items()},
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: Any = "cpu") -> Patterns:
        """Reads patterns written by :meth:`save`, executing no pickled code."""
        content = torch.load(path, map_location=map_location, weights_only=True)
        if (
            not isinstance(content, dict)
            or content.get("format") != _FORMAT
            or not isinstance(content.get("patterns"), dict)
        ):
            raise ValueError(f"{os.fspath(path)!r} is not a saved Patterns file")
        if content.get("version") != _VERSION:
            raise ValueError(
                f"{os.fspath(path)!r} has Patterns format version "
                f"{content.get('version')}; this version reads {_VERSION}"
            )
        return cls(content["patterns"])


class PatternStatistics(Mapping[str, LayerStatistics]):
    """The statistics of every fitted layer; merge shards with :meth:`merge`."""

    def __init__(self, statistics: Mapping[str, LayerStatistics]) -> None:
        self._statistics = dict(statistics)

    def __getitem__(self, name: str) -> LayerStatistics:
        return self._statistics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._statistics)

    def __len__(self) -> int:
        return len(self._statistics)

    def merge(self, other: Mapping[str, LayerStatistics]) -> PatternStatistics:
        """The statistics of both shards together (same layers required)."""
        if set(other) != set(self):
            raise ValueError(
                "cannot merge statistics of different layers: "
                f"{sorted(set(self) ^ set(other))}"
            )
        return PatternStatistics({n: s.merge(other[n]) for n, s in self.items()})

    @property
    def nbytes(self) -> int:
        """Memory held by all the sums, in bytes."""
        return sum(s.nbytes for s in self.values())

    def patterns(self, model: nn.Module) -> Patterns:
        """Estimates the patterns of every layer, in its weight's dtype."""
        modules = dict(model.named_modules())
        patterns = {}
        for name, stats in self.items():
            module = modules[name]
            batchnorm = None if stats.batchnorm is None else modules[stats.batchnorm]
            weight = effective_weight(module, batchnorm, dtype=torch.float64)
            pattern = stats.pattern(weight, name)
            patterns[name] = pattern.to(layer_weight(module).dtype)
        return Patterns(patterns)


def accumulate_statistics(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | Mapping[str, str] | None = None,
    progress: bool = True,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float64,
) -> PatternStatistics:
    """One streaming pass of ``model`` over ``data``, summing pattern statistics.

    Arguments as in :func:`fit_patterns`; ``dtype`` is the precision of the sums.
    The model runs in eval mode without gradients; it is left as found.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    batch_size = check_positive_int("batch_size", batch_size)
    estimators = _resolve_layers(model, layers)
    batches = _batches(data, batch_size)
    first = next(batches, None)
    if first is None:
        raise ValueError("`data` is empty: it yielded no batch")
    modules = dict(model.named_modules())
    statistics: dict[str, LayerStatistics] = {}

    def statistics_hook(name: str, estimator: Estimator, batchnorm: str | None) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            stats = layer_statistics(
                module, inputs[0], output, estimator, dtype, batchnorm
            )
            previous = statistics.get(name)
            statistics[name] = stats if previous is None else previous.merge(stats)

        return hook

    with eval_mode(model):
        roles = trace_layer_roles(model, first[:1], list(estimators))
        chosen = {
            name: _choose_estimator(estimator, roles[name])
            for name, estimator in estimators.items()
        }
        total = _length(data, batch_size)
        with (
            torch.no_grad(),
            folded_batchnorm(model, roles),
            registered_hooks() as hooks,
        ):
            for name, estimator in chosen.items():
                hook = statistics_hook(name, estimator, roles[name].batchnorm)
                hooks.forward_hook(modules[name], hook)
            for batch in tqdm(
                itertools.chain([first], batches),
                total=total,
                disable=not progress,
                desc="fit_patterns",
            ):
                model(batch)
    missing = [name for name in chosen if name not in statistics]
    if missing:
        raise ValueError(
            f"layers {missing} were never called by the model's forward pass"
        )
    return PatternStatistics(statistics)


def fit_patterns(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | Mapping[str, str] | None = None,
    progress: bool = True,
    batch_size: int = 64,
) -> Patterns:
    """Fits PatternAttribution patterns for the Linear and Conv layers of ``model``.

    One streaming pass in eval mode without gradients.  Layers that feed a ReLU
    (after an optional BatchNorm, which is folded in) use the two-component
    estimator ``A+``; the others (the last layer, convs before a residual addition)
    the linear estimator.  Dead units get pattern 0; units with a near-zero
    denominator raise a ``RuntimeWarning``.

    Args:
        model: The network; left exactly as found.
        data: A tensor of examples (split into ``batch_size`` chunks), a
            ``DataLoader`` or any iterable of batches; a batch that is a tuple or
            list (e.g. ``(x, y)``) contributes its first element.
        layers: ``None`` for every Linear/Conv layer, a list of module names, or a
            mapping from name to estimator: ``"auto"``, ``"positive"`` (A+) or
            ``"linear"``.
        progress: Show a tqdm progress bar.
        batch_size: Chunk size when ``data`` is a tensor.

    Returns:
        The :class:`Patterns`, in each layer's weight dtype.

    Examples::

        >>> patterns = fit_patterns(model, train_loader)
        >>> pgig = PatternGuidedIntegratedGradients(model, patterns)
    """
    statistics = accumulate_statistics(model, data, layers, progress, batch_size)
    return statistics.patterns(model)


def _resolve_layers(
    model: nn.Module, layers: Sequence[str] | Mapping[str, str] | None
) -> dict[str, str]:
    modules = dict(model.named_modules())
    if layers is None:
        chosen = {
            name: "auto"
            for name, module in modules.items()
            if isinstance(module, PATTERNED_LAYER_TYPES)
        }
        if not chosen:
            raise ValueError("`model` has no Linear or Conv layer to fit patterns for")
    elif isinstance(layers, Mapping):
        chosen = dict(layers)
    elif isinstance(layers, Sequence) and not isinstance(layers, str):
        chosen = {name: "auto" for name in layers}
    else:
        raise TypeError(
            "`layers` must be None, a list of module names or a mapping from name "
            f"to estimator, got {type(layers).__name__}"
        )
    if not chosen:
        raise ValueError("`layers` is empty")
    for name, estimator in chosen.items():
        if name not in modules:
            raise ValueError(f"`layers`: the model has no module named {name!r}")
        try:
            check_patterned_layer(name, modules[name])
        except ValueError as error:
            raise ValueError(f"`layers`: {error}") from None
        if estimator not in _ESTIMATORS:
            raise ValueError(
                f"`layers`: estimator {estimator!r} of `{name}` must be one of "
                f"{_ESTIMATORS}"
            )
    return chosen


def _choose_estimator(estimator: str, role: LayerRole) -> Estimator:
    if estimator == "auto":
        return "positive" if role.feeds_relu else "linear"
    return "positive" if estimator == "positive" else "linear"


def _batches(data: Any, batch_size: int) -> Iterator[Tensor]:
    if isinstance(data, Tensor):
        if data.dim() == 0:
            raise ValueError("`data` must have a batch dimension, got a scalar")
        items: Iterable[Any] = data.split(batch_size)
    elif isinstance(data, Iterable):
        items = data
    else:
        raise TypeError(
            "`data` must be a tensor, a DataLoader or an iterable of batches, got "
            f"{type(data).__name__}"
        )
    for item in items:
        batch = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(batch, Tensor):
            raise TypeError(
                f"`data` yielded a batch of type {type(batch).__name__}, not a tensor"
            )
        if batch.dim() == 0 or batch.shape[0] == 0:
            raise ValueError("`data` yielded an empty batch")
        check_finite("data", batch)
        yield batch


def _length(data: Any, batch_size: int) -> int | None:
    if isinstance(data, Tensor):
        return -(-data.shape[0] // batch_size)
    try:
        return len(data)
    except TypeError:
        return None


__all__ = [
    "LayerStatistics",
    "PatternStatistics",
    "Patterns",
    "accumulate_statistics",
    "fit_patterns",
    "layer_statistics",
]
