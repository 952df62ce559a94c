r"""PatternAttribution patterns: statistics, estimators and the :class:`Patterns` map.

For a Linear or Conv layer with output units ``y_j = w_j^T x + b_j``, the pattern
of unit ``j`` (`Kindermans et al. 2018 <https://arxiv.org/abs/1705.05598>`_, the
two-component estimator ``A+``) is::

    cov+_j = E+[x y_j] - E+[x] E+[y_j]
    a_j    = cov+_j / (w_j^T cov+_j)

where every ``E+`` averages over the samples in which the unit's gate is open
(its *regime*).  This is the estimator as the authors' own code computes it
(iNNvestigate's ``ReluPositivePattern`` takes every moment over the masked
samples).  A layer whose output goes to a ReLU has the regime ``y_j > 0``; one
that goes to another gate (ReLU6, hardtanh, clamp; see
:mod:`~captum_baselines.attr.pattern_graph`) has the interval ``lower < y_j <
upper`` in which that gate passes ``y_j`` on.  Why the whole open interval, also
for ReLU6's upper side: outside it the gate's output is constant, so those samples
carry nothing of the signal the unit transmits, for the same reason that ``A+``
drops ``y_j <= 0`` for a ReLU; and the pattern backward passes gradient through
exactly these samples, so the patterns are estimated where they are used.  A
layer whose output goes anywhere else (the last layer, a conv before a residual
addition) uses the linear estimator: every moment over every sample.

``output_mean="all"`` takes ``E[y_j]`` over every sample instead,
``cov_j = E+[x y_j] - E+[x] E[y_j]``: the PGIG paper's eq. 2 as printed
(`Schwarzenberg & Castle 2020 <https://arxiv.org/abs/2007.10685>`_).  With a
distractor of nonzero mean that form leaks the distractor into the pattern.

By construction ``sum_i w_ij a_ij = 1`` for every live unit.  In a Conv layer
every (example, output position) pair is one sample and ``x`` is the input patch
seen by the unit (through the padding the convolution actually applies).  The
bias cancels in ``cov`` and gets no pattern.  A BatchNorm after a layer is folded
into it: ``y`` is the post-BatchNorm value and ``w`` the folded weight ``s * w``.

The statistics are sums and counts (:class:`LayerStatistics`), accumulated in
float64 over batches and mergeable, so that fitting can be sharded; under
``torch.distributed`` every rank sums its own shard and the sums are
all-reduced.  Within a batch (:class:`LayerSums`), every weight-shaped sum of a
layer comes from one weight-gradient-shaped product in the model's own
precision: the layer's input against its masked outputs and its masks stacked
along the output channels (a conv's weight gradient,
:func:`~captum_baselines.attr.pattern_layers.weight_products`).  The outputs are
centered on each unit's first-batch mean first, so that ``E+[x y]`` and
``E+[x] E+[y]`` do not cancel in float32 (``tests/test_patterns_layers.py``
compares with float64).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset
from tqdm.auto import tqdm

from .._hooks import eval_mode, registered_hooks
from .._validation import check_finite, check_positive_int
from ..distributed import (
    agree_across_ranks,
    collective,
    collective_device,
    use_distributed,
)
from .pattern_backward import check_patterns
from .pattern_graph import RELU, Gate, LayerRole, trace_layer_roles
from .pattern_layers import (
    PATTERNED_LAYER_TYPES,
    ConvPaddings,
    Padding,
    Workspace,
    apply_batchnorm,
    check_patterned_layer,
    effective_weight,
    layer_groups,
    layer_weight,
    weight_products,
)

Estimator = Literal["linear", "positive"]
OutputMean = Literal["regime", "all"]
_ESTIMATORS = ("auto", "linear", "positive")
_OUTPUT_MEANS = ("regime", "all")
_FORMAT = "captum_baselines.Patterns"
_VERSION = 1

#: Batches with fewer samples (examples times output positions) than this are
#: pooled before their weight-gradient product: see :meth:`LayerSums._defer`.
PRODUCT_MIN_SAMPLES = 1024

#: ``|w_j^T cov_j| <= TINY * |w_j| |cov_j|`` triggers a warning: the pattern of such
#: a unit is dominated by rounding.
TINY = 1e-6

_SUMS = (
    "count",
    "count_regime",
    "sum_output",
    "sum_output_regime",
    "sum_input",
    "sum_input_output",
)


@dataclass
class LayerStatistics:
    """The sums from which one layer's patterns are estimated.

    The outputs enter centered, ``y - c`` with ``c`` the per-unit ``center``
    (chosen on the first batch), which leaves every covariance unchanged and
    keeps the sums from cancelling.  ``sum_input``, ``sum_input_output`` and
    ``sum_output_regime`` run over each unit's regime (every sample for the
    linear estimator); ``sum_output`` and ``count`` over every sample.  For the
    linear estimator of an ungrouped layer ``sum_input`` is shared by all units
    and kept as one row ``(1, *weight.shape[1:])``.

    Attributes:
        estimator: ``"positive"`` (A+) or ``"linear"``.
        count: Number of samples (examples times output positions), a scalar.
        count_regime: ``(J,)`` samples in each unit's regime.
        center: ``(J,)`` the ``c`` subtracted from each unit's output.
        sum_output: ``(J,)`` sum of ``y_j - c_j`` over every sample.
        sum_output_regime: ``(J,)`` sum of ``y_j - c_j`` over the regime.
        sum_input: Sum of the unit's input ``x`` over its regime.
        sum_input_output: Sum of ``x (y_j - c_j)`` over the regime, like the weight.
        gate: The regime of the positive estimator (``None`` for linear).
        batchnorm: Name of the BatchNorm folded into the layer, or ``None``.
    """

    estimator: Estimator
    count: Tensor
    count_regime: Tensor
    center: Tensor
    sum_output: Tensor
    sum_output_regime: Tensor
    sum_input: Tensor
    sum_input_output: Tensor
    gate: Gate | None = None
    batchnorm: str | None = None

    def recentered(self, center: Tensor) -> LayerStatistics:
        """The same statistics with the outputs centered on ``center`` instead."""
        center = center.to(self.center)
        shift = self.center - center
        shape = (-1, *([1] * (self.sum_input_output.dim() - 1)))
        return replace(
            self,
            center=center,
            sum_output=self.sum_output + shift * self.count,
            sum_output_regime=self.sum_output_regime + shift * self.count_regime,
            sum_input_output=self.sum_input_output
            + shift.reshape(shape) * self.sum_input,
        )

    def merge(self, other: LayerStatistics) -> LayerStatistics:
        """The statistics of both sets of samples together."""
        self._check_mergeable(other)
        other = other.recentered(self.center)
        return replace(self, **{f: getattr(self, f) + getattr(other, f) for f in _SUMS})

    def _check_mergeable(self, other: LayerStatistics) -> None:
        mine = (self.estimator, self.gate, self.batchnorm)
        theirs = (other.estimator, other.gate, other.batchnorm)
        if mine != theirs:
            raise ValueError(
                "cannot merge statistics of different estimators, gates or "
                f"foldings: {mine} and {theirs}"
            )

    def _tensors(self) -> list[Tensor]:
        return [getattr(self, f) for f in _SUMS]

    @property
    def nbytes(self) -> int:
        """Memory held by the sums, in bytes."""
        tensors = [*self._tensors(), self.center]
        return sum(t.numel() * t.element_size() for t in tensors)

    def covariance(self, output_mean: OutputMean = "regime") -> Tensor:
        """``cov+_j = E+[x y_j] - E+[x] E+[y_j]`` per unit, shaped like the weight.

        Args:
            output_mean: ``"regime"`` averages ``y_j`` over the regime (A+);
                ``"all"`` over every sample (the PGIG paper's eq. 2).
        """
        _check_output_mean(output_mean)
        shape = (-1, *([1] * (self.sum_input_output.dim() - 1)))
        regime = self.count_regime.clamp_min(1).reshape(shape)
        if output_mean == "regime":
            mean_output = self.sum_output_regime / self.count_regime.clamp_min(1)
        else:
            mean_output = self.sum_output / self.count.clamp_min(1)
        mean_input = self.sum_input / regime
        return self.sum_input_output / regime - mean_input * mean_output.reshape(shape)

    def pattern(
        self, weight: Tensor, name: str = "layer", output_mean: OutputMean = "regime"
    ) -> Tensor:
        """``a_j = cov_j / (w_j^T cov_j)``; 0 for dead units.

        Args:
            weight: The layer's effective weight (BatchNorm folded in).
            name: Used in warnings.
            output_mean: As in :meth:`covariance`.

        Returns:
            The patterns in float64, shaped like ``weight``.
        """
        cov = self.covariance(output_mean)
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
    *,
    gate: Gate | None = None,
    padding: Padding | None = None,
    center: Tensor | None = None,
    batchnorm: str | None = None,
) -> LayerStatistics:
    """The statistics of one batch for a Linear or Conv layer, in float64.

    Args:
        module: The layer.
        layer_input: Its input ``x``, as its hooks see it.
        layer_output: Its output ``y`` (after the folded BatchNorm, if any).
        estimator: ``"positive"`` sums over the gate's regime; ``"linear"`` over
            every sample.
        gate: The regime of the positive estimator; default the ReLU's, ``y > 0``.
        padding: The padding the conv applies (default its declared one).
        center: The per-unit ``c`` to center the outputs on (default this
            batch's mean over the regime).
        batchnorm: Recorded in the result.
    """
    sums = LayerSums(module, estimator, gate, batchnorm, center)
    sums.add(layer_input, layer_output, padding)
    return sums.statistics()


class LayerSums:
    """Accumulates one layer's statistics over batches, in float64.

    Every weight-shaped sum of a batch comes from one weight-gradient product of
    the layer's input with a *signal* that stacks, per channel group, the
    centered outputs masked to the regime and then the masks (positive
    estimator), or the centered outputs and one channel of ones (linear); it is
    taken in the model's precision and added to one float64 accumulator in that
    stacked layout.  The per-unit sums of the signal (over positions in the
    model's precision, exact for the masks, then over examples in float64) give
    the rest.  The center is each unit's mean over its regime in the first batch
    unless given.

    Args:
        module: The layer.
        estimator: ``"positive"`` or ``"linear"``.
        gate: The positive estimator's regime (default the ReLU's).
        batchnorm: Name of the folded BatchNorm, recorded in the statistics.
        center: The per-unit ``c`` (default: from the first batch).
        workspace: Reusable memory for the per-batch signal.
    """

    def __init__(
        self,
        module: nn.Module,
        estimator: Estimator,
        gate: Gate | None = None,
        batchnorm: str | None = None,
        center: Tensor | None = None,
        workspace: Workspace | None = None,
    ) -> None:
        self.module = module
        self.estimator = estimator
        self.gate = None if estimator == "linear" else (gate or RELU)
        self.batchnorm = batchnorm
        self.center = center
        self.workspace = workspace or Workspace()
        self.groups = layer_groups(module)
        self.count = 0.0
        self.products: Tensor | None = None  # (groups * (units + extra), ...)
        self.unit_sums: Tensor | None = None  # (groups, units + extra) per group
        self.output_sums: Tensor | None = None  # (units,) over every sample
        self._pending: list[tuple[Tensor, Tensor, Padding | None]] = []

    def add(
        self, layer_input: Tensor, layer_output: Tensor, padding: Padding | None
    ) -> None:
        """Adds one batch: the layer's input and (post-BatchNorm) output."""
        x = layer_input.detach()
        y = layer_output.detach()
        if isinstance(self.module, nn.Linear):  # rows of samples, channels second
            x = x.reshape(-1, x.shape[-1])
            y = y.reshape(-1, y.shape[-1])
        groups = self.groups
        n, units, spatial = y.shape[0], y.shape[1], tuple(y.shape[2:])
        per_group = units // groups
        extra = 1 if self.gate is None else per_group
        signal = self.workspace.empty(
            "signal", (n, groups, per_group + extra, *spatial), y
        )
        outputs, masks = signal[:, :, :per_group], signal[:, :, per_group:]
        y = y.reshape(n, groups, per_group, *spatial)
        if self.gate is None:
            masks.fill_(1)
        elif self.gate.upper == math.inf:
            torch.gt(y, self.gate.lower, out=masks)
        else:
            masks.copy_(self.gate.regime(y))
        if self.center is None:  # each unit's mean over its regime in this batch
            torch.mul(y, masks, out=outputs)
            sums = _unit_sums(signal)
            counts = sums[:, per_group:]
            self.center = torch.where(
                counts > 0, sums[:, :per_group] / counts.clamp_min(1), 0.0
            ).flatten()
        shift = self.center.to(y.dtype)
        self.center = shift.double()  # the value actually subtracted
        torch.sub(
            y, shift.reshape(groups, per_group, *([1] * len(spatial))), out=outputs
        )
        output_sums = _unit_sums(outputs).flatten()
        if self.gate is not None:
            outputs.mul_(masks)
        unit_sums = _unit_sums(signal)
        if self.products is None:
            weight = layer_weight(self.module)
            self.products = torch.zeros(
                (signal.shape[1] * signal.shape[2], *weight.shape[1:]),
                dtype=torch.float64,
                device=y.device,
            )
            self.unit_sums = torch.zeros_like(unit_sums)
            self.output_sums = torch.zeros_like(output_sums)
        assert self.unit_sums is not None and self.output_sums is not None
        x, signal = x.to(signal.dtype), signal.flatten(1, 2)
        if self._pending or n * _numel(spatial) < PRODUCT_MIN_SAMPLES:
            self._defer(x, signal, padding)
        else:
            weight_products(
                self.module,
                x,
                signal,
                padding,
                out=self.products,
                workspace=self.workspace,
            )
        self.unit_sums += unit_sums
        self.output_sums += output_sums
        self.count += n * _numel(spatial)

    def _defer(self, x: Tensor, signal: Tensor, padding: Padding | None) -> None:
        """Keeps a batch with few samples for one product with the next ones.

        A product of few samples costs little but is added to a weight-sized
        accumulator (a Linear layer on a batch of 16 adds 16 outer products to
        every weight); pooling batches up to :data:`PRODUCT_MIN_SAMPLES`
        amortizes that addition.
        """
        pending = self._pending
        if pending and (
            pending[0][0].shape[1:] != x.shape[1:] or pending[0][2] != padding
        ):
            self._flush()
        pending.append((x.clone(), signal.clone(), padding))
        if sum(s.shape[0] * s[0, 0].numel() for _, s, _ in pending) >= (
            PRODUCT_MIN_SAMPLES
        ):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        inputs, signals, paddings = zip(*self._pending)
        self._pending.clear()
        weight_products(
            self.module,
            torch.cat(inputs),
            torch.cat(signals),
            paddings[0],
            out=self.products,
            workspace=self.workspace,
        )

    def statistics(self) -> LayerStatistics:
        """The statistics of every batch added so far.

        They share memory with this accumulator (a second weight-sized copy
        would double the peak memory of a fit): add no batch after taking them.
        """
        if self.products is None or self.center is None:
            raise ValueError("no batch was added")
        self._flush()
        assert self.unit_sums is not None and self.output_sums is not None
        groups, width = self.unit_sums.shape
        units = self.output_sums.numel()
        per_group = units // groups
        stacked = self.products.unflatten(0, (groups, width))
        sum_input = stacked[:, per_group:].flatten(0, 1)
        count = torch.tensor(self.count, dtype=torch.float64, device=stacked.device)
        if self.gate is None:
            count_regime = count.expand(units).clone()
            if groups > 1:
                sum_input = sum_input.repeat_interleave(per_group, dim=0)
        else:
            count_regime = self.unit_sums[:, per_group:].flatten()
        return LayerStatistics(
            estimator=self.estimator,
            count=count,
            count_regime=count_regime,
            center=self.center,
            sum_output=self.output_sums.clone(),
            sum_output_regime=self.unit_sums[:, :per_group].flatten(),
            sum_input=sum_input,
            sum_input_output=stacked[:, :per_group].flatten(0, 1),
            gate=self.gate,
            batchnorm=self.batchnorm,
        )


def _unit_sums(grouped: Tensor) -> Tensor:
    """Sums of ``(N, groups, channels, *spatial)`` over examples and positions.

    Positions are summed first, in the tensor's precision (contiguous rows;
    exact for 0/1 masks up to 2**24 positions), examples then in float64.
    """
    rows = grouped.flatten(3).sum(3) if grouped.dim() > 3 else grouped
    return rows.double().sum(0)


def _numel(shape: Sequence[int]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _check_output_mean(output_mean: Any) -> None:
    if output_mean not in _OUTPUT_MEANS:
        raise ValueError(
            f"`output_mean` must be one of {_OUTPUT_MEANS}, got {output_mean!r}"
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

    def patterns(
        self, model: nn.Module, output_mean: OutputMean = "regime"
    ) -> Patterns:
        """Estimates the patterns of every layer, in its weight's dtype.

        Args:
            model: The model the statistics were taken on.
            output_mean: As in :meth:`LayerStatistics.covariance`.
        """
        _check_output_mean(output_mean)
        modules = dict(model.named_modules())
        patterns = {}
        for name, stats in self.items():
            module = modules[name]
            batchnorm = None if stats.batchnorm is None else modules[stats.batchnorm]
            weight = effective_weight(module, batchnorm, dtype=torch.float64)
            pattern = stats.pattern(weight, name, output_mean)
            patterns[name] = pattern.to(layer_weight(module).dtype)
        return Patterns(patterns)


def fit_patterns(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | Mapping[str, str] | None = None,
    show_progress: bool = True,
    batch_size: int = 64,
    *,
    output_mean: OutputMean = "regime",
    distributed: bool | None = None,
) -> Patterns:
    """Fits PatternAttribution patterns for the Linear and Conv layers of ``model``.

    One streaming pass in eval mode without gradients.  Layers that feed a gate
    (a ReLU, ReLU6, hardtanh or clamp, after an optional BatchNorm, which is
    folded in) use the two-component estimator ``A+`` over the gate's open
    regime; the others (the last layer, convs before a residual addition) the
    linear estimator (see :mod:`~captum_baselines.attr.patterns`).  Dead units
    get pattern 0; units with a near-zero denominator raise a ``RuntimeWarning``.
    Convolutions that pad inside their own ``forward`` (TensorFlow's "same"
    padding) are handled through the padding they apply, verified on the module.

    Under ``torch.distributed`` (``torchrun``), call it on every rank: each rank
    passes its own shard of the data (a ``DataLoader`` with a
    ``DistributedSampler``, or any iterable of that rank's batches; a tensor is
    split into contiguous shards by rank), the float64 sums are all-reduced, and
    every rank returns the same patterns.  If one rank fails, every rank raises.

    Args:
        model: The network; left exactly as found.
        data: A tensor of examples (split into ``batch_size`` chunks), a
            ``DataLoader`` or any iterable of batches; a batch that is a tuple or
            list (e.g. ``(x, y)``) contributes its first element.
        layers: ``None`` for every Linear/Conv layer the forward pass calls (the
            others are skipped with a warning), a list of module names, or a
            mapping from name to estimator: ``"auto"``, ``"positive"`` (A+, over
            the layer's gate regime, the ReLU's ``y > 0`` if it feeds no gate) or
            ``"linear"``.
        show_progress: Show a tqdm progress bar (on rank 0 only).
        batch_size: Chunk size when ``data`` is a tensor.
        output_mean: Where ``E[y]`` in the covariance is averaged: ``"regime"``
            (A+ as its authors compute it, the default) or ``"all"`` (every
            sample: the PGIG paper's eq. 2 as printed, which leaks a distractor
            of nonzero mean).
        distributed: ``None`` all-reduces when a ``torch.distributed`` process
            group with more than one rank is initialized; ``False`` fits on this
            process's data alone; ``True`` requires a process group.

    Returns:
        The :class:`Patterns`, in each layer's weight dtype.

    Examples::

        >>> patterns = fit_patterns(model, train_loader)
        >>> pgig = PatternGuidedIntegratedGradients(model, patterns)
    """
    _check_output_mean(output_mean)
    statistics = accumulate_statistics(
        model, data, layers, show_progress, batch_size, distributed=distributed
    )
    return statistics.patterns(model, output_mean)


def accumulate_statistics(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | Mapping[str, str] | None = None,
    show_progress: bool = True,
    batch_size: int = 64,
    *,
    distributed: bool | None = None,
) -> PatternStatistics:
    """One streaming pass of ``model`` over ``data``, summing pattern statistics.

    Arguments as in :func:`fit_patterns`.  The model runs in eval mode without
    gradients; it is left as found.  Under ``torch.distributed`` the result is the
    all-reduced statistics of every rank's shard.
    """
    if not use_distributed(distributed):
        return _local_statistics(model, data, layers, show_progress, batch_size)
    rank, world = dist.get_rank(), dist.get_world_size()
    statistics: PatternStatistics | None = None
    error: BaseException | None = None
    try:
        shard = _shard(data, rank, world)
        statistics = _local_statistics(
            model, shard, layers, show_progress and rank == 0, batch_size
        )
    except Exception as caught:  # every rank must learn of it, or the others hang
        error = caught
    facts = None
    if statistics is not None:
        size = sum(t.numel() for s in statistics.values() for t in s._tensors())
        facts = {"models or `layers` (the statistics' sizes)": size}
    agree_across_ranks(WHO, error, facts)
    assert statistics is not None
    return _all_reduced(statistics)


def _local_statistics(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | Mapping[str, str] | None,
    show_progress: bool,
    batch_size: int,
) -> PatternStatistics:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    batch_size = check_positive_int("batch_size", batch_size)
    estimators = _resolve_layers(model, layers)
    batches = _batches(data, batch_size)
    first = next(batches, None)
    if first is None:
        raise ValueError("`data` is empty: it yielded no batch")
    modules = dict(model.named_modules())
    paddings = ConvPaddings()
    workspace = Workspace()
    sums: dict[str, LayerSums] = {}

    def padding_check(name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            paddings(name, module, inputs[0])

        return hook

    def statistics_hook(name: str, sums: LayerSums, role: LayerRole) -> Any:
        batchnorm = None if role.batchnorm is None else modules[role.batchnorm]

        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            layer_input = inputs[0]
            if batchnorm is not None:
                output = apply_batchnorm(batchnorm, output)
            sums.add(layer_input, output, paddings(name, module, layer_input))

        return hook

    with eval_mode(model):
        # One example with gradients: the graph gives each layer's role, and
        # every padding-inside-forward conv is checked before the pass.
        with registered_hooks() as hooks:
            for name in estimators:
                hooks.forward_hook(modules[name], padding_check(name))
            roles = trace_layer_roles(model, first[:1], list(estimators))
        estimators = _called_layers(estimators, roles, explicit=layers is not None)
        with torch.no_grad(), registered_hooks() as hooks:
            for name, estimator in estimators.items():
                role = roles[name]
                sums[name] = LayerSums(
                    modules[name],
                    _choose_estimator(estimator, role),
                    role.gate,
                    role.batchnorm,
                    workspace=workspace,
                )
                hooks.forward_hook(
                    modules[name], statistics_hook(name, sums[name], role)
                )
            for batch in tqdm(
                itertools.chain([first], batches),
                total=_length(data, batch_size),
                disable=not show_progress,
                desc="fit_patterns",
            ):
                model(batch)
    missing = [name for name, layer in sums.items() if layer.products is None]
    if missing:
        raise ValueError(
            f"layers {missing} were never called by the model's forward pass"
        )
    return PatternStatistics({name: layer.statistics() for name, layer in sums.items()})


def _called_layers(
    estimators: dict[str, str], roles: Mapping[str, LayerRole], explicit: bool
) -> dict[str, str]:
    """The layers the traced forward pass called; says which others it skips."""
    uncalled = [name for name in estimators if name not in roles]
    if not uncalled:
        return estimators
    if explicit:
        raise ValueError(
            f"`layers`: {uncalled} are never called by the model's forward pass"
        )
    if len(uncalled) == len(estimators):
        raise ValueError(
            "the model's forward pass calls none of its Linear/Conv layers"
        )
    warnings.warn(
        f"fit_patterns skips {uncalled}: the model's forward pass never calls them",
        UserWarning,
        stacklevel=4,
    )
    return {name: e for name, e in estimators.items() if name in roles}


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
        return "positive" if role.gate is not None else "linear"
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


# ---------------------------------------------------------------- distributed

#: The name in the errors of a distributed fit.
WHO = "fit_patterns"


def _shard(data: Any, rank: int, world: int) -> Any:
    """This rank's share of ``data``: a tensor is split by rank, the rest is kept."""
    if isinstance(data, Tensor):
        if data.dim() == 0 or data.shape[0] < world:
            raise ValueError(
                f"`data` has {len(data) if data.dim() else 0} example(s), fewer "
                f"than the {world} ranks"
            )
        return data.tensor_split(world)[rank]
    sampler = getattr(data, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        if (sampler.rank, sampler.num_replicas) != (rank, world):
            raise ValueError(
                f"`data`'s DistributedSampler is for rank {sampler.rank} of "
                f"{sampler.num_replicas}, but this is rank {rank} of {world}"
            )
        n_examples = len(sampler.dataset)  # type: ignore[arg-type]
        if not sampler.drop_last and n_examples % world:
            warnings.warn(
                f"`data`'s DistributedSampler pads {n_examples} examples to a "
                f"multiple of {world} ranks by repeating some, which then count "
                "twice in the patterns",
                UserWarning,
                stacklevel=4,
            )
    elif isinstance(data, DataLoader) and not isinstance(data.dataset, IterableDataset):
        warnings.warn(
            "`data` is a DataLoader without a DistributedSampler: unless its "
            "dataset is this rank's shard, every rank reads the same examples "
            "(pass DataLoader(dataset, sampler=DistributedSampler(dataset, "
            "shuffle=False)))",
            UserWarning,
            stacklevel=4,
        )
    return data


def _all_reduced(statistics: PatternStatistics) -> PatternStatistics:
    """The sum of every rank's statistics, centered on rank 0's centers."""
    device = collective_device()
    centers = torch.cat([s.center for s in statistics.values()]).to(device)
    collective(WHO, "broadcasting rank 0's centers", lambda: dist.broadcast(centers, 0))
    reduced = {}
    offset = 0
    for name, stats in statistics.items():
        units = stats.center.numel()
        center = centers[offset : offset + units].to(stats.center)
        offset += units
        stats = stats.recentered(center)
        tensors = stats._tensors()
        flat = torch.cat([t.reshape(-1) for t in tensors]).to(device)
        collective(
            WHO,
            f"all-reducing the statistics of `{name}`",
            functools.partial(dist.all_reduce, flat),
        )
        summed = flat.to(stats.center.device).split([t.numel() for t in tensors])
        reduced[name] = replace(
            stats,
            **{
                f: total.reshape(t.shape) for f, total, t in zip(_SUMS, summed, tensors)
            },
        )
    return PatternStatistics(reduced)


__all__ = [
    "LayerStatistics",
    "LayerSums",
    "PatternStatistics",
    "Patterns",
    "accumulate_statistics",
    "fit_patterns",
    "layer_statistics",
]
