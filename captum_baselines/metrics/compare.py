"""One comparison of named attribution methods on one model and set of images.

Each method is a callable ``method(inputs, target)`` returning attributions, or
``(attributions, delta)`` with the per-example completeness delta.  The harness
times each method, upsamples lower-resolution maps (Grad-CAM style) to the input
size, and evaluates every requested removal curve on the attributions, adding
the random control.  The result holds the curves and a table: per method the
mean area under each curve with a bootstrap confidence interval over the images
(the same resamples for every method), the ROAD gap ``AUC(LeRF) - AUC(MoRF)``
when both ROAD curves are evaluated, the mean ``|delta|`` where the method
returns one, and the seconds spent attributing.  Methods whose intervals overlap
are not ranked against each other (:meth:`ComparisonResult.ranking`).

Example::

    ig = IntegratedGradients(model)
    methods = {
        "IG black": lambda x, t: ig.attribute(
            x, baselines=0 * x, target=t, return_convergence_delta=True
        ),
        "Saliency": lambda x, t: Saliency(model).attribute(x, target=t),
    }
    result = compare_attributions(model, images, labels, methods)
    print(result.format_table())
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from captum._utils.typing import TargetType
from torch import Tensor
from tqdm.auto import tqdm

from .._engine.targets import select_target
from .._validation import (
    check_generator,
    check_nonnegative,
    check_optional_positive_int,
    check_tensor,
)
from .ablation import ablation_curve, area_under_curve, random_attributions
from .degradation import degradation_curve
from .intervals import Interval, bootstrap_indices, bootstrap_interval, check_confidence
from .removal import Fill, Score, check_fractions, resolve_show_progress, single_input

AttributionFn = Callable[[Tensor, TargetType], Any]

#: The curves the harness knows, in the order of the table's columns:
#: ``top_k`` and ``mass_center`` (:func:`ablation_curve` with ``fill``),
#: ``degradation``, and the ROAD curves ``road_morf`` / ``road_lerf``
#: (``top_k`` with Noisy Linear Imputation, most / least relevant first).
CURVES = ("top_k", "mass_center", "degradation", "road_morf", "road_lerf")

#: What :func:`compare_attributions` evaluates unless told otherwise; pass
#: ``curves=CURVES`` for the ROAD curves too.
DEFAULT_CURVES = ("top_k", "mass_center", "degradation")

#: The ROAD summary: ``AUC(road_lerf) - AUC(road_morf)`` per image.
ROAD_GAP = "road_gap"

#: Summaries for which a larger value is better; for every other curve a
#: smaller area (a steeper drop) is better.
HIGHER_IS_BETTER = frozenset({"road_lerf", ROAD_GAP})

RANDOM = "random"


@dataclass
class MethodResult:
    """What one method produced: its attributions, curves, areas, delta, time.

    ``auc`` holds the ``(N,)`` areas per curve (and the ROAD gap under
    ``"road_gap"``), ``intervals`` their means with bootstrap intervals.
    """

    name: str
    attributions: Tensor = field(repr=False)
    curves: dict[str, Tensor] = field(repr=False)
    auc: dict[str, Tensor] = field(repr=False)
    delta: Tensor | None
    seconds: float
    intervals: dict[str, Interval] = field(default_factory=dict, repr=False)


@dataclass
class ComparisonResult:
    """The outcome of :func:`compare_attributions`.

    Attributes:
        methods: One :class:`MethodResult` per method, in the order given, the
            random control last.
        curve_names: The curves evaluated, e.g. ``("top_k", "degradation")``.
        fractions: x-coordinates of the ``top_k`` / ``mass_center`` / ROAD curves.
        n_patches: Number of patches of the degradation curve (or ``None``).
        confidence: Nominal coverage of the intervals.
    """

    methods: dict[str, MethodResult]
    curve_names: tuple[str, ...]
    fractions: Tensor
    n_patches: int | None
    confidence: float = 0.95

    @property
    def summary_names(self) -> tuple[str, ...]:
        """The curves, then ``"road_gap"`` when both ROAD curves were evaluated."""
        road = {"road_morf", "road_lerf"} <= set(self.curve_names)
        return self.curve_names + ((ROAD_GAP,) if road else ())

    def curves(self, curve: str) -> dict[str, Tensor]:
        """``{method: (N, F) curve}`` for one curve name, ready for plotting."""
        self._check_curve(curve, self.curve_names)
        return {name: r.curves[curve] for name, r in self.methods.items()}

    def x(self, curve: str) -> Tensor:
        """The x-coordinates of a curve: fractions, or patches replaced / total."""
        if curve == "degradation":
            assert self.n_patches is not None
            return torch.linspace(0, 1, self.n_patches + 1, dtype=torch.float64)
        return self.fractions

    def interval(self, method: str, curve: str) -> Interval:
        """Mean area of ``curve`` (or the ROAD gap) of ``method``, with interval."""
        self._check_curve(curve, self.summary_names)
        if method not in self.methods:
            raise ValueError(
                f"`method` must be one of {list(self.methods)}, got {method!r}"
            )
        return self.methods[method].intervals[curve]

    def overlaps(self, first: str, second: str, curve: str) -> bool:
        """Whether two methods' intervals for ``curve`` overlap: if so, the data
        do not rank them."""
        return self.interval(first, curve).overlaps(self.interval(second, curve))

    def ranking(self, curve: str) -> list[list[str]]:
        """Methods best first, in tiers that the intervals separate.

        Best means the smallest area, or the largest for the summaries in
        :data:`HIGHER_IS_BETTER`.  Methods whose intervals overlap, directly or
        through a chain of overlapping intervals, share a tier (ordered by
        mean); every interval of a tier lies wholly on the better side of every
        interval of the next, so methods are ranked only where the data
        separate them.
        """
        self._check_curve(curve, self.summary_names)
        intervals = {m: self.interval(m, curve) for m in self.methods}
        tiers: list[list[str]] = []
        reach = -math.inf
        for method in sorted(intervals, key=lambda m: intervals[m].low):
            if tiers and intervals[method].low <= reach:
                tiers[-1].append(method)
            else:
                tiers.append([method])
            reach = max(reach, intervals[method].high)
        higher = curve in HIGHER_IS_BETTER
        if higher:
            tiers.reverse()
        return [
            sorted(tier, key=lambda m: intervals[m].mean, reverse=higher)
            for tier in tiers
        ]

    def table(self) -> list[dict[str, Any]]:
        """One row per method: ``method``; per curve ``auc_<curve>`` (the mean
        over examples) with ``auc_<curve>_low`` / ``auc_<curve>_high`` (its
        bootstrap interval); ``road_gap`` with ``road_gap_low`` /
        ``road_gap_high`` when both ROAD curves were evaluated; ``abs_delta``
        (mean ``|delta|``, NaN if the method returns none); and ``seconds``."""
        rows = []
        for name, r in self.methods.items():
            row: dict[str, Any] = {"method": name}
            for summary in self.summary_names:
                key = _column(summary)
                interval = r.intervals[summary]
                row[key] = interval.mean
                row[f"{key}_low"] = interval.low
                row[f"{key}_high"] = interval.high
            row["abs_delta"] = (
                math.nan if r.delta is None else float(r.delta.abs().mean())
            )
            row["seconds"] = r.seconds
            rows.append(row)
        return rows

    def format_table(self, digits: int = 3, intervals: bool = True) -> str:
        """The table as Markdown.  Areas of MoRF curves (``top_k``,
        ``mass_center``, ``degradation``, ``road_morf``): lower is better;
        ``road_lerf`` and the ROAD gap: higher is better.  With ``intervals``
        each cell reads ``mean [low, high]``."""
        headers = ["method"]
        headers += [
            "ROAD gap (LeRF - MoRF)" if s == ROAD_GAP else f"AUC {s}"
            for s in self.summary_names
        ]
        headers += ["mean abs delta", "seconds"]

        def number(value: float) -> str:
            return "-" if math.isnan(value) else f"{value:.{digits}f}"

        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---" for _ in headers) + "|",
        ]
        for name, r in self.methods.items():
            cells = [name]
            for summary in self.summary_names:
                interval = r.intervals[summary]
                cells.append(
                    interval.format(digits) if intervals else number(interval.mean)
                )
            delta = math.nan if r.delta is None else float(r.delta.abs().mean())
            cells += [number(delta), number(r.seconds)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    @staticmethod
    def _check_curve(curve: str, known: tuple[str, ...]) -> None:
        if curve not in known:
            raise ValueError(f"`curve` must be one of {known}, got {curve!r}")


def _column(summary: str) -> str:
    return summary if summary == ROAD_GAP else f"auc_{summary}"


def compare_attributions(
    model: Callable[..., Any],
    inputs: Tensor,
    target: TargetType,
    methods: Mapping[str, AttributionFn],
    *,
    curves: Sequence[str] = DEFAULT_CURVES,
    fractions: Any = None,
    fill: Fill = "mean",
    patch_size: int = 9,
    n_patches: int | None = None,
    noise_std: float = 0.01,
    score: Score = "probability",
    random_control: bool = True,
    generator: torch.Generator | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    bootstrap_generator: torch.Generator | None = None,
    batch_size: int | None = None,
    internal_batch_size: int | None = None,
    additional_forward_args: Any = None,
    show_progress: bool = True,
    progress: bool | None = None,
) -> ComparisonResult:
    r"""Attributes with each named method and scores the attributions.

    Args:
        model: The model (any forward function).
        inputs: ``(N, C, H, W)`` images (``mass_center``, ``degradation`` and the
            ROAD curves need 4-D inputs; ``top_k`` takes any shape).
        target: The class explained, in any of Captum's ``TargetType`` forms.
        methods: ``{name: method}``; ``method(inputs, target)`` returns
            attributions shaped like ``inputs`` or ``(N, 1, h, w)`` maps (upsampled
            bilinearly to the input size), or a pair ``(attributions, delta)``
            with one completeness delta per example.
        curves: Which of :data:`CURVES` to evaluate: ``"top_k"``,
            ``"mass_center"`` (ablation with ``fill``), ``"degradation"``,
            ``"road_morf"`` and ``"road_lerf"`` (ROAD: top-k removal with Noisy
            Linear Imputation, most / least relevant first; together they add
            the ROAD gap).  Default :data:`DEFAULT_CURVES`, the first three;
            ``curves=CURVES`` evaluates all five.
        fractions: Fractions of the ablation and ROAD curves; default
            ``0, 0.1, ..., 1``.
        fill: Replacement for the ``top_k`` and ``mass_center`` curves (see
            :func:`ablation_curve`); the degradation curve always uses each
            patch's own mean, the ROAD curves always impute.
        patch_size: Patch side of the degradation curve.
        n_patches: Patches replaced by the degradation curve; ``None``: all.
        noise_std: Std of the ROAD imputation noise, in input units.
        score: ``"probability"`` or ``"logit"``, as in :func:`ablation_curve`.
        random_control: Add the random Gaussian attribution control, named
            ``"random"``.
        generator: Source of randomness of the control and of the ROAD noise.
        confidence: Nominal coverage of the bootstrap intervals.
        n_resamples: Bootstrap resamples of the images.
        bootstrap_generator: Source of the resampling, shared by every method
            and curve so that they are judged on the same resamples; default:
            a generator seeded with 0, so the intervals repeat.
        batch_size: Examples per call of each method (``None``: all at once).
        internal_batch_size: Examples per forward pass of the curves.
        additional_forward_args: Passed to ``model`` by the curves (methods
            receive only ``(inputs, target)``: bind extra arguments yourself).
        show_progress: Show a tqdm bar over methods and curves.
        progress: Deprecated alias of ``show_progress``.

    Returns:
        A :class:`ComparisonResult`; ``result.format_table()`` prints it and
        ``result.ranking(curve)`` orders the methods without separating those
        whose intervals overlap.
    """
    x = single_input("inputs", inputs)
    if not isinstance(methods, Mapping) or not all(isinstance(k, str) for k in methods):
        raise TypeError("`methods` must be a mapping from names to callables")
    for name, method in methods.items():
        if not callable(method):
            raise TypeError(f"`methods[{name!r}]` must be callable, got {method!r}")
    if random_control and RANDOM in methods:
        raise ValueError(
            f"`methods` uses the name {RANDOM!r} reserved for the random control; "
            "rename it or pass random_control=False"
        )
    if not methods and not random_control:
        raise ValueError("`methods` is empty and random_control is False")
    curve_names = tuple(curves)
    unknown = [c for c in curve_names if c not in CURVES]
    if unknown or not curve_names:
        raise ValueError(f"`curves` must be a non-empty subset of {CURVES}: {unknown}")
    k = check_fractions(fractions)
    noise_std = check_nonnegative("noise_std", noise_std)
    check_generator("generator", generator)
    confidence = check_confidence(confidence)
    check_generator("bootstrap_generator", bootstrap_generator)
    resamples = bootstrap_indices(x.shape[0], n_resamples, bootstrap_generator)
    batch = check_optional_positive_int("batch_size", batch_size) or x.shape[0]
    show_progress = resolve_show_progress(show_progress, progress)

    named: dict[str, AttributionFn] = dict(methods)
    if random_control:
        named[RANDOM] = lambda xs, t: random_attributions(xs, generator)
    batches = _batches(x.shape[0], batch)
    results: dict[str, MethodResult] = {}
    total = len(named) * (len(batches) + len(curve_names))
    with tqdm(total=total, disable=not show_progress, desc="compare") as bar:
        for name, method in named.items():
            bar.set_postfix_str(name)
            pieces, deltas, seconds = [], [], 0.0
            for rows in batches:
                start = time.perf_counter()
                output = method(x[rows], select_target(target, rows))
                seconds += time.perf_counter() - start
                attributions, delta = _split_output(name, output, len(rows))
                pieces.append(_to_input_size(name, attributions, x[rows]))
                deltas.append(delta)
                bar.update(1)
            attributions = torch.cat(pieces)
            have_delta = [d for d in deltas if d is not None]
            delta_all = (
                torch.cat(have_delta) if len(have_delta) == len(deltas) else None
            )
            method_curves: dict[str, Tensor] = {}
            auc: dict[str, Tensor] = {}
            for curve in curve_names:
                if curve == "degradation":
                    values = degradation_curve(
                        model,
                        x,
                        attributions,
                        target,
                        patch_size=patch_size,
                        n_patches=n_patches,
                        score=score,
                        additional_forward_args=additional_forward_args,
                        internal_batch_size=internal_batch_size,
                    )
                    auc[curve] = area_under_curve(values)
                else:
                    road = curve.startswith("road_")
                    values = ablation_curve(
                        model,
                        x,
                        attributions,
                        target,
                        fractions=k,
                        fill="road" if road else fill,
                        order="top_k" if road else curve,  # type: ignore[arg-type]
                        direction="lerf" if curve == "road_lerf" else "morf",
                        noise_std=noise_std,
                        score=score,
                        additional_forward_args=additional_forward_args,
                        internal_batch_size=internal_batch_size,
                        generator=generator,
                    )
                    auc[curve] = area_under_curve(values, k)
                method_curves[curve] = values
                bar.update(1)
            if {"road_morf", "road_lerf"} <= set(curve_names):
                auc[ROAD_GAP] = auc["road_lerf"] - auc["road_morf"]
            results[name] = MethodResult(
                name=name,
                attributions=attributions,
                curves=method_curves,
                auc=auc,
                delta=delta_all,
                seconds=seconds,
                intervals={
                    summary: bootstrap_interval(areas, confidence, indices=resamples)
                    for summary, areas in auc.items()
                },
            )
    n_degradation = (
        results[next(iter(results))].curves["degradation"].shape[1] - 1
        if "degradation" in curve_names
        else None
    )
    return ComparisonResult(
        methods=results,
        curve_names=curve_names,
        fractions=k,
        n_patches=n_degradation,
        confidence=confidence,
    )


def _batches(n: int, size: int) -> list[Tensor]:
    return [torch.arange(s, min(s + size, n)) for s in range(0, n, size)]


def _split_output(name: str, output: Any, n: int) -> tuple[Tensor, Tensor | None]:
    """``(attributions, delta)`` from what a method returned."""
    if isinstance(output, tuple) and len(output) == 2:
        attributions, delta = output
        delta = check_tensor(f"delta of {name!r}", delta).detach().reshape(-1)
        if delta.numel() != n:
            raise ValueError(
                f"method {name!r} returned {delta.numel()} deltas for {n} examples"
            )
    else:
        attributions, delta = output, None
    if isinstance(attributions, tuple) and len(attributions) == 1:
        attributions = attributions[0]
    attributions = check_tensor(f"attributions of {name!r}", attributions)
    return attributions.detach(), delta


def _to_input_size(name: str, attributions: Tensor, inputs: Tensor) -> Tensor:
    """Maps of lower resolution (``(N, 1, h, w)``) upsampled bilinearly."""
    if (
        inputs.dim() == 4
        and attributions.dim() == 4
        and attributions.shape[:2] == (inputs.shape[0], 1)
        and attributions.shape[2:] != inputs.shape[2:]
    ):
        return F.interpolate(
            attributions.to(inputs.dtype),
            size=tuple(inputs.shape[2:]),
            mode="bilinear",
            align_corners=False,
        )
    if attributions.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"method {name!r} returned attributions for {attributions.shape[0]} "
            f"examples, expected {inputs.shape[0]}"
        )
    return attributions


__all__ = [
    "CURVES",
    "DEFAULT_CURVES",
    "HIGHER_IS_BETTER",
    "ROAD_GAP",
    "ComparisonResult",
    "MethodResult",
    "compare_attributions",
]
