"""One comparison of named attribution methods on one model and set of images.

Each method is a callable ``method(inputs, target)`` returning attributions, or
``(attributions, delta)`` with the per-example completeness delta.  The harness
times each method, upsamples lower-resolution maps (Grad-CAM style) to the input
size, and evaluates every requested removal curve on the attributions, adding
the random control.  The result holds the curves and a table: per method the
mean area under each curve, the mean ``|delta|`` where the method returns one,
and the seconds spent attributing.

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
from .._validation import check_generator, check_optional_positive_int, check_tensor
from .ablation import ablation_curve, area_under_curve, random_attributions
from .degradation import degradation_curve
from .removal import Fill, Score, check_fractions, single_input

AttributionFn = Callable[[Tensor, TargetType], Any]

#: The curves the harness knows, in the order of the table's columns.
CURVES = ("top_k", "mass_center", "degradation")

RANDOM = "random"


@dataclass
class MethodResult:
    """What one method produced: its attributions, curves, areas, delta, time."""

    name: str
    attributions: Tensor = field(repr=False)
    curves: dict[str, Tensor] = field(repr=False)
    auc: dict[str, Tensor] = field(repr=False)
    delta: Tensor | None
    seconds: float


@dataclass
class ComparisonResult:
    """The outcome of :func:`compare_attributions`.

    Attributes:
        methods: One :class:`MethodResult` per method, in the order given, the
            random control last.
        curve_names: The curves evaluated, e.g. ``("top_k", "degradation")``.
        fractions: x-coordinates of the ``top_k`` / ``mass_center`` curves.
        n_patches: Number of patches of the degradation curve (or ``None``).
    """

    methods: dict[str, MethodResult]
    curve_names: tuple[str, ...]
    fractions: Tensor
    n_patches: int | None

    def curves(self, curve: str) -> dict[str, Tensor]:
        """``{method: (N, F) curve}`` for one curve name, ready for plotting."""
        if curve not in self.curve_names:
            raise ValueError(
                f"`curve` must be one of {self.curve_names}, got {curve!r}"
            )
        return {name: r.curves[curve] for name, r in self.methods.items()}

    def x(self, curve: str) -> Tensor:
        """The x-coordinates of a curve: fractions, or patches replaced / total."""
        if curve == "degradation":
            assert self.n_patches is not None
            return torch.linspace(0, 1, self.n_patches + 1, dtype=torch.float64)
        return self.fractions

    def table(self) -> list[dict[str, Any]]:
        """One row per method: ``method``, ``auc_<curve>`` (means over examples),
        ``abs_delta`` (mean ``|delta|``, NaN if the method returns none), and
        ``seconds``."""
        rows = []
        for name, r in self.methods.items():
            row: dict[str, Any] = {"method": name}
            for curve in self.curve_names:
                row[f"auc_{curve}"] = float(r.auc[curve].mean())
            row["abs_delta"] = (
                math.nan if r.delta is None else float(r.delta.abs().mean())
            )
            row["seconds"] = r.seconds
            rows.append(row)
        return rows

    def format_table(self, digits: int = 3) -> str:
        """The table as Markdown (areas: lower is better)."""
        rows = self.table()
        headers = ["method"] + [f"AUC {c}" for c in self.curve_names]
        headers += ["mean abs delta", "seconds"]
        keys = ["method"] + [f"auc_{c}" for c in self.curve_names]
        keys += ["abs_delta", "seconds"]

        def cell(value: Any) -> str:
            if isinstance(value, float):
                return "-" if math.isnan(value) else f"{value:.{digits}f}"
            return str(value)

        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---" for _ in headers) + "|",
        ]
        for row in rows:
            lines.append("| " + " | ".join(cell(row[k]) for k in keys) + " |")
        return "\n".join(lines)


def compare_attributions(
    model: Callable[..., Any],
    inputs: Tensor,
    target: TargetType,
    methods: Mapping[str, AttributionFn],
    *,
    curves: Sequence[str] = CURVES,
    fractions: Any = None,
    fill: Fill = "mean",
    patch_size: int = 9,
    n_patches: int | None = None,
    score: Score = "probability",
    random_control: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    internal_batch_size: int | None = None,
    additional_forward_args: Any = None,
    progress: bool = True,
) -> ComparisonResult:
    r"""Attributes with each named method and scores the attributions.

    Args:
        model: The model (any forward function).
        inputs: ``(N, C, H, W)`` images (``mass_center`` and ``degradation``
            need 4-D inputs; ``top_k`` takes any shape).
        target: The class explained, in any of Captum's ``TargetType`` forms.
        methods: ``{name: method}``; ``method(inputs, target)`` returns
            attributions shaped like ``inputs`` or ``(N, 1, h, w)`` maps (upsampled
            bilinearly to the input size), or a pair ``(attributions, delta)``
            with one completeness delta per example.
        curves: Which of ``"top_k"``, ``"mass_center"``, ``"degradation"`` to
            evaluate.
        fractions: Fractions of :func:`ablation_curve`; default ``0, 0.1, ..., 1``.
        fill: Replacement for the ablation curves (see :func:`ablation_curve`);
            the degradation curve always uses each patch's own mean.
        patch_size: Patch side of the degradation curve.
        n_patches: Patches replaced by the degradation curve; ``None``: all.
        score: ``"probability"`` or ``"logit"``, as in :func:`ablation_curve`.
        random_control: Add the random Gaussian attribution control, named
            ``"random"``.
        generator: Source of randomness of the control.
        batch_size: Examples per call of each method (``None``: all at once).
        internal_batch_size: Examples per forward pass of the curves.
        additional_forward_args: Passed to ``model`` by the curves (methods
            receive only ``(inputs, target)``: bind extra arguments yourself).
        progress: Show a tqdm bar over methods and curves.

    Returns:
        A :class:`ComparisonResult`; ``result.format_table()`` prints it.
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
    check_generator("generator", generator)
    batch = check_optional_positive_int("batch_size", batch_size) or x.shape[0]

    named: dict[str, AttributionFn] = dict(methods)
    if random_control:
        named[RANDOM] = lambda xs, t: random_attributions(xs, generator)
    batches = _batches(x.shape[0], batch)
    results: dict[str, MethodResult] = {}
    total = len(named) * (len(batches) + len(curve_names))
    with tqdm(total=total, disable=not progress, desc="compare") as bar:
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
                    values = ablation_curve(
                        model,
                        x,
                        attributions,
                        target,
                        fractions=k,
                        fill=fill,
                        order=curve,  # type: ignore[arg-type]
                        score=score,
                        additional_forward_args=additional_forward_args,
                        internal_batch_size=internal_batch_size,
                    )
                    auc[curve] = area_under_curve(values, k)
                method_curves[curve] = values
                bar.update(1)
            results[name] = MethodResult(
                name=name,
                attributions=attributions,
                curves=method_curves,
                auc=auc,
                delta=delta_all,
                seconds=seconds,
            )
    n_degradation = (
        results[next(iter(results))].curves["degradation"].shape[1] - 1
        if "degradation" in curve_names
        else None
    )
    return ComparisonResult(
        methods=results, curve_names=curve_names, fractions=k, n_patches=n_degradation
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
    "ComparisonResult",
    "MethodResult",
    "compare_attributions",
]
