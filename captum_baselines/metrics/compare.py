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

The images are evaluated in batches, each with generators of its own
(:func:`batch_generator`), so that under ``torch.distributed`` (``torchrun``)
the ranks can share the batches out and rank 0 can gather a result equal to a
single process's.

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

import hashlib
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from captum._utils.typing import TargetType
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._engine.targets import select_target
from .._validation import (
    check_generator,
    check_nonnegative,
    check_optional_positive_int,
    check_positive_int,
    check_tensor,
)
from ..distributed import agree_across_ranks, digest, gather_to_main, use_distributed
from .ablation import ablation_curve, area_under_curve, random_attributions
from .degradation import degradation_curve
from .intervals import (
    Interval,
    bootstrap_indices,
    bootstrap_interval,
    check_confidence,
    tiers,
)
from .removal import Fill, Score, check_fractions, single_input

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
        seed: The number drawn from the comparison's ``generator`` that seeds
            every batch's generators (:func:`batch_generator`).
    """

    methods: dict[str, MethodResult]
    curve_names: tuple[str, ...]
    fractions: Tensor
    n_patches: int | None
    confidence: float = 0.95
    seed: int | None = None

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
        return tiers(intervals, higher_is_better=curve in HIGHER_IS_BETTER)

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
    distributed: bool | None = None,
) -> ComparisonResult | None:
    r"""Attributes with each named method and scores the attributions.

    The images are processed in batches of ``batch_size``: each method is called
    on a batch and the batch's curves are evaluated at once.  Every batch draws
    its randomness (the random control, the ROAD noise, and the methods that take
    a ``generator`` keyword) from generators of its own, seeded from one number
    drawn from ``generator``, the batch's index and the use
    (:func:`batch_generator`), so that an image's results do not depend on which
    process or in which order its batch is evaluated.

    Under ``torch.distributed`` (``torchrun``), call it on every rank with the
    same arguments: the batches are shared out across the ranks in contiguous
    runs, and rank 0 gathers the attributions, curves, deltas and seconds and
    computes the table, with bootstrap intervals over all images.  The result
    equals a single-process run with the same ``batch_size`` and ``generator``
    (the ``seconds``, wall-clock times summed over the ranks, aside).  The ranks
    first check that they were given the same inputs, targets, model (when it is
    an ``nn.Module``), methods and settings; a rank that raises makes every other
    rank raise :class:`~captum_baselines.distributed.DistributedError` naming it.

    Args:
        model: The model (any forward function).
        inputs: ``(N, C, H, W)`` images (``mass_center``, ``degradation`` and the
            ROAD curves need 4-D inputs; ``top_k`` takes any shape).
        target: The class explained, in any of Captum's ``TargetType`` forms.
        methods: ``{name: method}``; ``method(inputs, target)`` returns
            attributions shaped like ``inputs`` or ``(N, 1, h, w)`` maps (upsampled
            bilinearly to the input size), or a pair ``(attributions, delta)``
            with one completeness delta per example.  A method with a parameter
            named ``generator`` is called as ``method(inputs, target,
            generator=g)`` with a fresh ``torch.Generator`` per batch; draw all
            of its randomness from it.
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
        generator: Source of the seed of every batch's generators (one draw);
            they live on its device.  Default: a generator seeded with 0, so
            the results repeat.  The ROAD noise of a batch is the same for every
            method.
        confidence: Nominal coverage of the bootstrap intervals.
        n_resamples: Bootstrap resamples of the images.
        bootstrap_generator: Source of the resampling, shared by every method
            and curve so that they are judged on the same resamples; default:
            a generator seeded with 0, so the intervals repeat.
        batch_size: Examples per call of each method (``None``: all at once);
            the unit of randomness and of sharing out the work, so required
            under ``torch.distributed``.
        internal_batch_size: Examples per forward pass of the curves.
        additional_forward_args: Passed to ``model`` by the curves (methods
            receive only ``(inputs, target)``: bind extra arguments yourself).
        show_progress: Show a tqdm bar over methods and batches (on rank 0).
        distributed: ``None`` shares the work when a ``torch.distributed``
            process group with more than one rank is initialized; ``False``
            works alone; ``True`` requires a process group.

    Returns:
        A :class:`ComparisonResult` (``None`` on ranks other than 0 when the work
        is shared); ``result.format_table()`` prints it and
        ``result.ranking(curve)`` orders the methods without separating those
        whose intervals overlap.
    """
    shared = use_distributed(distributed)

    def prepare() -> _Comparison:
        return _Comparison.check(
            model,
            inputs,
            target,
            methods,
            curves=curves,
            fractions=fractions,
            fill=fill,
            patch_size=patch_size,
            n_patches=n_patches,
            noise_std=noise_std,
            score=score,
            random_control=random_control,
            generator=generator,
            confidence=confidence,
            n_resamples=n_resamples,
            bootstrap_generator=bootstrap_generator,
            batch_size=batch_size,
            internal_batch_size=internal_batch_size,
            additional_forward_args=additional_forward_args,
            shared=shared,
        )

    if not shared:
        comparison = prepare()
        batches = range(len(comparison.batches))
        return comparison.assemble(comparison.evaluate(batches, show_progress))
    return _compare_on_every_rank(prepare, show_progress)


#: The name in the errors of a distributed comparison.
WHO = "compare_attributions"


def _compare_on_every_rank(
    prepare: Callable[[], _Comparison], show_progress: bool
) -> ComparisonResult | None:
    """Shares the batches out, gathers them on rank 0; every rank learns of a
    failure elsewhere before it would wait for the failed rank."""
    rank, world = dist.get_rank(), dist.get_world_size()
    comparison: _Comparison | None = None
    facts: dict[str, Any] | None = None
    error: Exception | None = None
    try:
        comparison = prepare()
        facts = comparison.facts()
    except Exception as caught:  # every rank must learn of it, or the others hang
        error = caught
    agree_across_ranks(WHO, error, facts)
    assert comparison is not None
    pieces: dict[str, list[_Piece]] = {}
    try:
        share = _share(len(comparison.batches), rank, world)
        pieces = comparison.evaluate(share, show_progress and rank == 0)
        pieces = {name: [p.to("cpu") for p in ps] for name, ps in pieces.items()}
    except Exception as caught:
        error = caught
    agree_across_ranks(WHO, error)
    gathered = gather_to_main(WHO, "gathering the curves on rank 0", pieces)
    if gathered is None:
        return None
    every = {
        name: [
            p.to(comparison.x.device)
            for rank_pieces in gathered
            for p in rank_pieces[name]
        ]
        for name in comparison.methods
    }
    return comparison.assemble(every)


def _share(n_batches: int, rank: int, world: int) -> range:
    """The contiguous run of batches of ``rank``: sizes differ by at most one."""
    quotient, remainder = divmod(n_batches, world)
    start = rank * quotient + min(rank, remainder)
    return range(start, start + quotient + (rank < remainder))


def batch_generator(
    seed: int, use: str, batch: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """The generator of one use in one batch of :func:`compare_attributions`.

    Seeded with a hash of ``seed`` (the number drawn from the comparison's
    ``generator``, :attr:`ComparisonResult.seed`), ``use`` (``"method
    <name>"`` for a method, the random control included, ``"curve <curve>"``
    for the ROAD noise) and the batch's index, so that the draws of different
    uses and batches are independent and do not depend on the order in which
    batches are evaluated.
    """
    key = hashlib.blake2b(f"{seed}/{use}/{batch}".encode(), digest_size=8).digest()
    generator = torch.Generator(device)
    return generator.manual_seed(int.from_bytes(key, "little") >> 1)


@dataclass
class _Piece:
    """What one method gave on one batch: attributions, delta, curves, seconds."""

    batch: int
    attributions: Tensor
    delta: Tensor | None
    curves: dict[str, Tensor]
    seconds: float

    def to(self, device: torch.device | str) -> _Piece:
        return _Piece(
            self.batch,
            self.attributions.to(device),
            None if self.delta is None else self.delta.to(device),
            {c: v.to(device) for c, v in self.curves.items()},
            self.seconds,
        )


@dataclass
class _Comparison:
    """A comparison's checked arguments: what to evaluate on which batches."""

    model: Callable[..., Any]
    x: Tensor
    target: TargetType
    methods: dict[str, Callable[..., Any]]
    takes_generator: dict[str, bool]
    curve_names: tuple[str, ...]
    fractions: Tensor
    fill: Fill
    patch_size: int
    n_patches: int | None
    noise_std: float
    score: Score
    confidence: float
    n_resamples: int
    bootstrap_generator: torch.Generator | None
    batches: list[Tensor]
    batch_size: int
    internal_batch_size: int | None
    additional_forward_args: Any
    seed: int
    device: torch.device

    @classmethod
    def check(
        cls,
        model: Callable[..., Any],
        inputs: Tensor,
        target: TargetType,
        methods: Mapping[str, AttributionFn],
        *,
        curves: Sequence[str],
        fractions: Any,
        fill: Fill,
        patch_size: int,
        n_patches: int | None,
        noise_std: float,
        score: Score,
        random_control: bool,
        generator: torch.Generator | None,
        confidence: float,
        n_resamples: int,
        bootstrap_generator: torch.Generator | None,
        batch_size: int | None,
        internal_batch_size: int | None,
        additional_forward_args: Any,
        shared: bool,
    ) -> _Comparison:
        x = single_input("inputs", inputs)
        if not isinstance(methods, Mapping) or not all(
            isinstance(k, str) for k in methods
        ):
            raise TypeError("`methods` must be a mapping from names to callables")
        for name, method in methods.items():
            if not callable(method):
                raise TypeError(f"`methods[{name!r}]` must be callable, got {method!r}")
        if random_control and RANDOM in methods:
            raise ValueError(
                f"`methods` uses the name {RANDOM!r} reserved for the random "
                "control; rename it or pass random_control=False"
            )
        if not methods and not random_control:
            raise ValueError("`methods` is empty and random_control is False")
        curve_names = tuple(curves)
        unknown = [c for c in curve_names if c not in CURVES]
        if unknown or not curve_names:
            raise ValueError(
                f"`curves` must be a non-empty subset of {CURVES}: {unknown}"
            )
        check_generator("generator", generator)
        check_generator("bootstrap_generator", bootstrap_generator)
        check_positive_int("n_resamples", n_resamples)
        batch = check_optional_positive_int("batch_size", batch_size)
        if batch is None and shared:
            raise ValueError(
                "`batch_size` must be given under torch.distributed: the batches "
                "are what the ranks share out, and what the results are the same "
                "for in a single process"
            )
        batch = batch or x.shape[0]
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        seed = int(
            torch.randint(2**62, (1,), generator=generator, device=generator.device)
        )
        named: dict[str, Callable[..., Any]] = dict(methods)
        if random_control:
            named[RANDOM] = _random_control
        return cls(
            model=model,
            x=x,
            target=target,
            methods=named,
            takes_generator={n: _takes_generator(m) for n, m in named.items()},
            curve_names=curve_names,
            fractions=check_fractions(fractions),
            fill=fill,
            patch_size=patch_size,
            n_patches=n_patches,
            noise_std=check_nonnegative("noise_std", noise_std),
            score=score,
            confidence=check_confidence(confidence),
            n_resamples=n_resamples,
            bootstrap_generator=bootstrap_generator,
            batches=_batches(x.shape[0], batch),
            batch_size=batch,
            internal_batch_size=check_optional_positive_int(
                "internal_batch_size", internal_batch_size
            ),
            additional_forward_args=additional_forward_args,
            seed=seed,
            device=generator.device,
        )

    def facts(self) -> dict[str, Any]:
        """What every rank must agree on: the data as digests, the settings."""
        facts = {
            "inputs": digest(self.x),
            "targets": digest(self.target),
            "methods": list(self.methods),
            "curves": self.curve_names,
            "batch_size": self.batch_size,
            "generator states": self.seed,
            "curve settings": (
                self.fractions.tolist(),
                self.fill if isinstance(self.fill, str) else None,
                self.patch_size,
                self.n_patches,
                self.noise_std,
                self.score,
            ),
        }
        if isinstance(self.model, nn.Module):
            facts["models"] = digest(self.model)
        return facts

    def evaluate(
        self, batches: Sequence[int], show_progress: bool
    ) -> dict[str, list[_Piece]]:
        """Every method and its curves on the ``batches`` (indices)."""
        pieces: dict[str, list[_Piece]] = {name: [] for name in self.methods}
        total = len(self.methods) * len(batches) * (1 + len(self.curve_names))
        with tqdm(total=total, disable=not show_progress, desc="compare") as bar:
            for name, method in self.methods.items():
                bar.set_postfix_str(name)
                for index in batches:
                    pieces[name].append(self._evaluate(name, method, index, bar))
        return pieces

    def _evaluate(
        self, name: str, method: Callable[..., Any], index: int, bar: Any
    ) -> _Piece:
        rows = self.batches[index]
        x, target = self.x[rows], select_target(self.target, rows)
        keywords = {}
        if self.takes_generator[name]:
            keywords["generator"] = self.generator(f"method {name}", index)
        start = time.perf_counter()
        output = method(x, target, **keywords)
        seconds = time.perf_counter() - start
        attributions, delta = _split_output(name, output, len(rows))
        attributions = _to_input_size(name, attributions, x)
        bar.update(1)
        curves = {}
        for curve in self.curve_names:
            curves[curve] = self._curve(curve, x, attributions, target, index)
            bar.update(1)
        return _Piece(index, attributions, delta, curves, seconds)

    def _curve(
        self, curve: str, x: Tensor, attributions: Tensor, target: Any, index: int
    ) -> Tensor:
        if curve == "degradation":
            return degradation_curve(
                self.model,
                x,
                attributions,
                target,
                patch_size=self.patch_size,
                n_patches=self.n_patches,
                score=self.score,
                additional_forward_args=self.additional_forward_args,
                internal_batch_size=self.internal_batch_size,
            )
        road = curve.startswith("road_")
        return ablation_curve(
            self.model,
            x,
            attributions,
            target,
            fractions=self.fractions,
            fill="road" if road else self.fill,
            order="top_k" if road else curve,  # type: ignore[arg-type]
            direction="lerf" if curve == "road_lerf" else "morf",
            noise_std=self.noise_std,
            score=self.score,
            additional_forward_args=self.additional_forward_args,
            internal_batch_size=self.internal_batch_size,
            generator=self.generator(f"curve {curve}", index) if road else None,
        )

    def generator(self, use: str, index: int) -> torch.Generator:
        return batch_generator(self.seed, use, index, self.device)

    def assemble(self, pieces: Mapping[str, list[_Piece]]) -> ComparisonResult:
        """The result from every batch's pieces, with intervals over all images."""
        resamples = bootstrap_indices(
            self.x.shape[0], self.n_resamples, self.bootstrap_generator
        )
        results: dict[str, MethodResult] = {}
        for name in self.methods:
            ordered = sorted(pieces[name], key=lambda p: p.batch)
            assert [p.batch for p in ordered] == list(range(len(self.batches)))
            deltas = [p.delta for p in ordered]
            curves = {
                c: torch.cat([p.curves[c] for p in ordered]) for c in self.curve_names
            }
            auc = {
                c: area_under_curve(v, None if c == "degradation" else self.fractions)
                for c, v in curves.items()
            }
            if {"road_morf", "road_lerf"} <= set(self.curve_names):
                auc[ROAD_GAP] = auc["road_lerf"] - auc["road_morf"]
            results[name] = MethodResult(
                name=name,
                attributions=torch.cat([p.attributions for p in ordered]),
                curves=curves,
                auc=auc,
                delta=None if None in deltas else torch.cat(deltas),  # type: ignore[arg-type]
                seconds=sum(p.seconds for p in ordered),
                intervals={
                    summary: bootstrap_interval(
                        areas, self.confidence, indices=resamples
                    )
                    for summary, areas in auc.items()
                },
            )
        n_degradation = None
        if "degradation" in self.curve_names:
            n_degradation = (
                next(iter(results.values())).curves["degradation"].shape[1] - 1
            )
        return ComparisonResult(
            methods=results,
            curve_names=self.curve_names,
            fractions=self.fractions,
            n_patches=n_degradation,
            confidence=self.confidence,
            seed=self.seed,
        )


def _random_control(
    inputs: Tensor, target: TargetType, generator: torch.Generator
) -> Tensor:
    return random_attributions(inputs, generator)


def _takes_generator(method: Callable[..., Any]) -> bool:
    """Whether ``method`` has a parameter named ``generator``, to pass by keyword."""
    try:
        parameter = inspect.signature(method).parameters.get("generator")
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
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
    "batch_generator",
    "compare_attributions",
]
