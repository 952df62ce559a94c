"""The reading of a comparison and the report: ``results.md``, ``.csv``, ``.json``.

:func:`read` computes what the table says and returns it (nothing is stored on
the problem): the methods ranked under every curve and the ROAD gap, in tiers
that the bootstrap intervals separate (:meth:`ComparisonResult.ranking`), every
method that scores worse than the random control on any curve (in that curve's
direction: a lower area is better, except for ROAD's LeRF curve and gap,
:data:`~captum_baselines.metrics.compare.HIGHER_IS_BETTER`), whether the Distill
article's ordering of baselines holds under the mean fill and under ROAD, layer
maps too coarse to localize, completeness residuals far above the others, and
the demo variant's own reading (blind spots, the decoy patch).

Two methods whose intervals overlap are never ranked against each other: the
report says that their intervals overlap instead.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..metrics.compare import HIGHER_IS_BETTER, RANDOM, ROAD_GAP, ComparisonResult
from ..metrics.intervals import Interval
from ..visualization import curve_title
from .figures import attribution_figure_names
from .methods import METHODS
from .problems import MIN_LAYER_SIDE, Settings

if TYPE_CHECKING:
    from .runner import Outcome

#: What each curve measures, for "How to read the table".
CURVE_MEANING = {
    "top_k": (
        "the explained class's probability (relative to the intact image) as a "
        "growing fraction of the pixels, highest signed attribution first, is "
        "replaced by the image's mean: Distill's ablation test. Lower is better"
    ),
    "mass_center": (
        "the same with a growing box around the center of mass of the "
        "attribution map removed. Lower is better"
    ),
    "degradation": (
        "the probability as patches are replaced by their own mean, most "
        "relevant patch first (Schwarzenberg & Castle's degradation test). Lower "
        "is better"
    ),
    "road_morf": (
        "ROAD (Rong et al., ICML 2022): the top-k test with the removed pixels "
        "imputed from their kept neighbors by Noisy Linear Imputation instead of "
        "a constant, so that the shape of the removed set cannot tell the model "
        "the class; most relevant first. Lower is better"
    ),
    "road_lerf": (
        "ROAD with the least relevant pixels imputed first: a faithful map "
        "removes what the model does not need, so the probability stays up. "
        "**Higher is better**"
    ),
    ROAD_GAP: (
        "per image, AUC(LeRF) - AUC(MoRF): both orders must agree for a large "
        "gap. **Higher is better**"
    ),
}

#: The Distill article's ordering: on images whose informative pixels are dark,
#: these baselines beat black (its top-k areas: EG 0.141, uniform 0.145, blur
#: 0.186, max distance 0.255 against black 0.320).
DISTILL_WORSE = "IG black"
DISTILL_BETTER = ("EG training data", "IG uniform", "IG blur", "IG max distance")

#: The summaries the rankings and the Distill check are read on: the mean fill's
#: top-k test and the three ROAD summaries.
RANKED = ("top_k", "road_morf", "road_lerf", ROAD_GAP)

#: Fewer images than this give intervals of zero width: nothing is ranked.
MIN_IMAGES_TO_RANK = 2

#: Pairs listed when two rankings disagree (the count is always given).
LISTED_PAIRS = 6

#: A completeness residual this many times the median of the methods' residuals
#: (and above :data:`DELTA_FLOOR` logits) is flagged.
DELTA_RATIO = 10.0
DELTA_FLOOR = 0.01


@dataclass
class Reading:
    """What a comparison says: sentences, warnings, and the numbers behind them.

    Attributes:
        lines: Sentences for "Reading this run" (Markdown).
        flags: Warnings a reader must not miss (Markdown).
        rankings: Lines for "Rankings" (Markdown): the tiers under the mean fill
            and under ROAD, and the Distill check; also printed after the table.
        data: The same in machine-readable form, for ``results.json``.
    """

    lines: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    rankings: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def read(outcome: Outcome) -> Reading:
    """The reading of one comparison (see the module's doc)."""
    reading = Reading()
    result = outcome.result
    _layer(outcome, reading)
    rank = outcome.problem.images.shape[0] >= MIN_IMAGES_TO_RANK
    if not rank:
        reading.lines.append(
            "One image: its bootstrap intervals are points, so no method is ranked "
            "(explain more images with --n-images)."
        )
    for summary in result.summary_names:
        if rank:
            _best(result, summary, reading)
        _against_control(result, summary, reading)
    if rank:
        _rankings(result, reading)
        _distill_order(result, reading)
    _completeness(result.table(), reading)
    _pattern_samples(outcome, reading)
    variant = outcome.problem.variant
    if variant is not None:
        _blind_spots(variant.blind_spots, result, reading)
        if variant.decoy:
            _decoy(outcome, reading)
    return reading


def _names(labels: Sequence[str]) -> str:
    return ", ".join(f"**{label}**" for label in labels)


def _better(summary: str) -> str:
    return "highest" if summary in HIGHER_IS_BETTER else "lowest"


def _worse(summary: str, interval: Interval, control: Interval) -> bool:
    """Whether a mean is no better than the control's in the summary's direction."""
    if summary in HIGHER_IS_BETTER:
        return interval.mean <= control.mean
    return interval.mean >= control.mean


def _title(summary: str) -> str:
    return curve_title(summary)


def _layer(outcome: Outcome, reading: Reading) -> None:
    problem = outcome.problem
    layer_methods = [
        s.label
        for s in METHODS.values()
        if s.needs_layer and s.label in outcome.result.methods
    ]
    if problem.layer is None or not layer_methods:
        return
    h, w = problem.layer.map_size
    height, width = problem.images.shape[-2:]
    reading.lines.append(
        f"{_names(layer_methods)} explains layer `{problem.layer.name}` ({h}x{w} "
        f"maps for {height}x{width} px images), {problem.layer.reason}."
    )
    coarse = min(h, w) < MIN_LAYER_SIDE and (h < height or w < width)
    reading.data["layer"] = {
        "name": problem.layer.name,
        "map_size": [h, w],
        "reason": problem.layer.reason,
        "too_coarse": coarse,
    }
    if coarse:
        reading.flags.append(
            f"{_names(layer_methods)}: the {h}x{w} map of layer "
            f"`{problem.layer.name}` is too coarse to localize on {height}x{width} "
            f"px images (each cell covers about {height // h}x{width // w} px); its "
            "curves score a blob, not pixels. Name an earlier layer with --layer."
        )


def _methods(result: ComparisonResult) -> list[str]:
    return [m for m in result.methods if m != RANDOM]


def _best(result: ComparisonResult, summary: str, reading: Reading) -> None:
    """The best method of one summary and those not separable from it."""
    methods = _methods(result)
    if not methods:
        return
    ranked = [[m for m in tier if m != RANDOM] for tier in result.ranking(summary)]
    first = next(tier for tier in ranked if tier)
    best = first[0]
    tied = first[1:]
    sentence = (
        f"{_title(summary)}: the {_better(summary)} mean is {_names([best])}'s "
        f"({result.interval(best, summary).format()})"
    )
    if tied:
        sentence += (
            f"; the intervals of {_names(tied)} overlap it (directly or through a "
            "chain of overlapping intervals): the data do not rank them against it"
        )
    reading.lines.append(sentence + ".")
    reading.data.setdefault("best", {})[summary] = {"method": best, "tied": tied}


def _against_control(result: ComparisonResult, summary: str, reading: Reading) -> None:
    if RANDOM not in result.methods:
        return
    control = result.interval(RANDOM, summary)
    methods = {m: result.interval(m, summary) for m in _methods(result)}
    worse = [m for m, i in methods.items() if _worse(summary, i, control)]
    unseparated = [
        m for m, i in methods.items() if m not in worse and i.overlaps(control)
    ]
    reading.data.setdefault("worse_than_random", {})[summary] = worse
    title = _title(summary)
    direction = "higher" if summary in HIGHER_IS_BETTER else "lower"
    if worse:
        listed = ", ".join(f"**{m}** {methods[m].format()}" for m in worse)
        reading.flags.append(
            f"{title}, {direction} is better: {len(worse)} of {len(methods)} "
            f"methods score{'s' if len(worse) == 1 else ''} worse than the random "
            f"control ({control.format()}): {listed}. On this test "
            f"{'its map ranks' if len(worse) == 1 else 'their maps rank'} features "
            "no better than chance."
        )
    if unseparated:
        reading.data.setdefault("not_separable_from_random", {})[summary] = unseparated
        reading.flags.append(
            f"{title}: the intervals of {_names(unseparated)} overlap the random "
            "control's: not distinguishable from chance on this test."
        )
    if not worse and not unseparated and methods:
        reading.lines.append(
            f"{title}: every method scores better than the random control "
            f"({control.format()}), with intervals apart from it."
        )


def format_tiers(tiers: Sequence[Sequence[str]]) -> str:
    """``{A, B} > C > {D, E}``: braces hold a tier whose intervals overlap."""
    return " > ".join(
        tier[0] if len(tier) == 1 else "{" + ", ".join(tier) + "}" for tier in tiers
    )


def _rankings(result: ComparisonResult, reading: Reading) -> None:
    """The tiers under the mean fill (top-k) and under ROAD, side by side."""
    summaries = [s for s in RANKED if s in result.summary_names]
    if not summaries:
        return
    rankings = {s: result.ranking(s) for s in summaries}
    reading.data["rankings"] = rankings
    labels = {
        "top_k": "Mean fill (top-k, MoRF; lower AUC first)",
        "road_morf": "ROAD MoRF (lower AUC first)",
        "road_lerf": "ROAD LeRF (higher AUC first)",
        ROAD_GAP: "ROAD gap, LeRF - MoRF (higher first)",
    }
    reading.rankings += [
        f"{labels[s]}: {format_tiers(tiers)}" for s, tiers in rankings.items()
    ]
    if "top_k" in rankings and "road_morf" in rankings:
        reading.rankings.append(_agreement(rankings["top_k"], rankings["road_morf"]))


def _agreement(first: list[list[str]], second: list[list[str]]) -> str:
    """Which pairs the two rankings order in opposite ways (each separates them)."""
    tier_a = {m: i for i, tier in enumerate(first) for m in tier}
    tier_b = {m: i for i, tier in enumerate(second) for m in tier}
    common = [m for m in tier_a if m in tier_b]
    flipped = [
        (a, b)
        for i, a in enumerate(common)
        for b in common[i + 1 :]
        if (tier_a[a] - tier_a[b]) * (tier_b[a] - tier_b[b]) < 0
    ]
    if not flipped:
        return (
            "The mean fill and ROAD MoRF order no pair of methods in opposite ways "
            "(pairs separated by one may be tied in the other)."
        )
    listed = "; ".join(f"{a} vs {b}" for a, b in flipped[:LISTED_PAIRS])
    if len(flipped) > LISTED_PAIRS:
        listed += f"; and {len(flipped) - LISTED_PAIRS} more"
    return (
        f"The mean fill and ROAD MoRF order {len(flipped)} pair"
        f"{'s' if len(flipped) > 1 else ''} of methods in opposite ways, each "
        f"with disjoint intervals: {listed}."
    )


def distill_verdicts(result: ComparisonResult) -> dict[str, dict[str, str]]:
    """Per summary of :data:`RANKED`, per method of :data:`DISTILL_BETTER`:
    ``"better"`` / ``"worse"`` than IG black with disjoint intervals, or
    ``"tied"`` (overlapping); empty when the run lacks IG black."""
    if DISTILL_WORSE not in result.methods:
        return {}
    others = [m for m in DISTILL_BETTER if m in result.methods]
    verdicts: dict[str, dict[str, str]] = {}
    for summary in (s for s in RANKED if s in result.summary_names):
        black = result.interval(DISTILL_WORSE, summary)
        higher = summary in HIGHER_IS_BETTER
        verdicts[summary] = {}
        for method in others:
            interval = result.interval(method, summary)
            if interval.overlaps(black):
                verdict = "tied"
            elif (interval.mean > black.mean) == higher:
                verdict = "better"
            else:
                verdict = "worse"
            verdicts[summary][method] = verdict
    return verdicts


def _distill_order(result: ComparisonResult, reading: Reading) -> None:
    """Whether the Distill ordering holds under the mean fill and under ROAD.

    It *survives ROAD* when it holds (every listed baseline better than black,
    with disjoint intervals) under the mean fill and on both ROAD MoRF and the
    ROAD gap, the two ROAD summaries that reward finding what the model needs.
    """
    verdicts = distill_verdicts(result)
    if not verdicts or not any(verdicts.values()):
        return
    reading.data["distill_order"] = verdicts
    holds = {s: all(v == "better" for v in per.values()) for s, per in verdicts.items()}
    parts = []
    for summary, per_method in verdicts.items():
        state = "holds" if holds[summary] else "does not hold"
        exceptions = [
            f"{m} {'tied with' if v == 'tied' else 'worse than'} black"
            for m, v in per_method.items()
            if v != "better"
        ]
        if exceptions:
            state += f" ({', '.join(exceptions)})"
        name = "mean fill" if summary == "top_k" else _title(summary)
        parts.append(f"{name}: {state}")
    methods = ", ".join(next(iter(verdicts.values())))
    sentence = (
        f"Distill's ordering ({methods} better than {DISTILL_WORSE}, with "
        f"disjoint intervals): {'; '.join(parts)}."
    )
    decisive = ("top_k", "road_morf", ROAD_GAP)
    if all(s in holds for s in decisive):
        if not holds["top_k"]:
            verdict = "It does not hold under the mean fill in this run."
        elif holds["road_morf"] and holds[ROAD_GAP]:
            verdict = "It survives ROAD (MoRF and the gap)."
        elif holds["road_morf"] or holds[ROAD_GAP]:
            kept = "MoRF" if holds["road_morf"] else "the gap"
            verdict = f"It survives ROAD only in part (on {kept})."
        else:
            verdict = "It does not survive ROAD."
        reading.data["distill_survives_road"] = holds["top_k"] and (
            holds["road_morf"] and holds[ROAD_GAP]
        )
        sentence += f" {verdict}"
    reading.rankings.append(sentence)


def _completeness(rows: Sequence[dict[str, Any]], reading: Reading) -> None:
    deltas = {
        r["method"]: float(r["abs_delta"])
        for r in rows
        if r.get("abs_delta") is not None and math.isfinite(float(r["abs_delta"]))
    }
    if len(deltas) < 3:
        return
    median = statistics.median(deltas.values())
    far = {
        m: d for m, d in deltas.items() if d > DELTA_RATIO * median and d > DELTA_FLOOR
    }
    reading.data["completeness_outliers"] = sorted(far)
    for method, delta in far.items():
        reading.flags.append(
            f"**{method}**: mean completeness residual {delta:.3g}, "
            f"{delta / median:.0f}x the median of the methods ({median:.3g}): its "
            "attributions do not add up to the output difference they explain; "
            "more steps or samples (--n-steps, --n-samples) should shrink it."
        )


def pattern_samples(outcome: Outcome) -> dict[str, tuple[int, int]]:
    """Per layer that PGIG's patterns are fitted for (every Linear and Conv layer
    the forward runs), ``(samples, dimension)``: the samples its statistics see
    (every reference example at every output position) and the length of the
    input patch whose covariance they estimate."""
    from torch import nn

    from .loading import output_shapes

    problem = outcome.problem
    modules = dict(problem.model.named_modules())
    n = len(problem.reference_data)
    found = {}
    for name, shape in output_shapes(problem.model, problem.images[:1]).items():
        module = modules[name]
        if isinstance(module, nn.modules.conv._ConvNd):
            positions = math.prod(shape[2:])
            found[name] = (n * positions, module.weight[0].numel())
        elif isinstance(module, nn.Linear):
            found[name] = (n * math.prod(shape[1:-1]), module.in_features)
    return found


def _pattern_samples(outcome: Outcome, reading: Reading) -> None:
    spec = METHODS.get("pgig")
    if spec is None or spec.label not in outcome.result.methods:
        return
    samples = pattern_samples(outcome)
    if not samples:
        return
    reading.data["pattern_samples"] = {
        name: {"samples": s, "dimension": d} for name, (s, d) in samples.items()
    }
    fewest = min(samples, key=lambda name: samples[name][0])
    most = max(samples, key=lambda name: samples[name][0])
    short = [name for name, (s, d) in samples.items() if s < d]
    sentence = (
        f"**{spec.label}**: patterns of {len(samples)} layers fitted on "
        f"{len(outcome.problem.reference_data)} reference examples, each example "
        f"at each output position one sample: from {samples[fewest][0]:,} "
        f"samples (layer `{fewest}`) to {samples[most][0]:,} (layer `{most}`)"
    )
    if short:
        listed = ", ".join(
            f"`{name}` ({samples[name][0]:,} for {samples[name][1]:,})"
            for name in short
        )
        sentence += (
            f"; {len(short)} layer{'s' if len(short) > 1 else ''} saw fewer "
            f"samples than the dimension of their input, so the covariance "
            f"behind the pattern has no full rank there: {listed}"
        )
    reading.lines.append(sentence + ".")


def _blind_spots(blind_spots: Any, result: ComparisonResult, reading: Reading) -> None:
    curves = result.curve_names
    curve = "top_k" if "top_k" in curves else curves[0]
    control = (
        result.interval(RANDOM, curve).format() if RANDOM in result.methods else None
    )
    for label, what in blind_spots.items():
        if label not in result.methods:
            continue
        others = [
            result.interval(m, curve).mean
            for m in result.methods
            if m not in (label, RANDOM)
        ]
        sentence = (
            f"**{label}** cannot attribute {what}: its {curve_title(curve)} AUC is "
            f"{result.interval(label, curve).format()}"
        )
        if others:
            median = statistics.median(others)
            sentence += f", against a median of {median:.3f} for the other methods"
        if control is not None:
            sentence += f" and {control} for the random control"
        reading.lines.append(sentence + ".")


def decoy_share(outcome: Outcome) -> dict[str, float]:
    """Per method, the mean share of ``|attribution|`` on the decoy patch."""
    import torch

    from ..datasets import decoy_patch_size

    patch = decoy_patch_size(outcome.problem.side)
    shares = {}
    for name, r in outcome.result.methods.items():
        mass = r.attributions.abs().sum(1)
        on_patch = mass[:, :patch, :patch].flatten(1).sum(1)
        total = mass.flatten(1).sum(1).clamp_min(torch.finfo(mass.dtype).tiny)
        shares[name] = float((on_patch / total).mean())
    return shares


def _decoy(outcome: Outcome, reading: Reading) -> None:
    from ..datasets import decoy_patch_size

    side = outcome.problem.side
    patch = decoy_patch_size(side)
    shares = decoy_share(outcome)
    reading.data["decoy_share"] = shares
    listed = ", ".join(f"{m} {s:.1%}" for m, s in shares.items())
    reading.lines.append(
        f"Share of |attribution| on the {patch}x{patch} decoy patch "
        f"({patch * patch / (side * side):.1%} of the pixels): {listed}."
    )


# ----------------------------------------------------------------------------
# Writing


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def settings_record(outcome: Outcome, settings: Settings) -> dict[str, Any]:
    """The settings of a run, resolved for its problem."""
    problem, result = outcome.problem, outcome.result
    return {
        "n_steps": settings.n_steps,
        "n_baselines": settings.n_baselines,
        "n_samples": settings.n_samples,
        "blur_sigma": problem.blur_sigma(settings),
        "gaussian_sigma": problem.gaussian_sigma(),
        "patch_size": problem.patch_size(settings),
        "road_noise_std": problem.road_noise_std(settings),
        "uniform_output_iterations": settings.uniform_output_iterations,
        "fractions": [round(float(f), 6) for f in result.fractions],
        "confidence": result.confidence,
        "seed": settings.seed,
    }


def json_document(
    outcome: Outcome, settings: Settings, reading: Reading
) -> dict[str, Any]:
    """``results.json``: settings, table rows, skipped methods and the reading."""
    problem = outcome.problem
    rows = outcome.result.table()
    return {
        "title": problem.title,
        **{k: _json_number(v) for k, v in problem.facts.items()},
        "n_images": problem.images.shape[0],
        "image_shape": list(problem.images.shape[1:]),
        "settings": settings_record(outcome, settings),
        "methods": [{k: _json_number(v) for k, v in row.items()} for row in rows],
        "skipped": outcome.skipped,
        "layer_note": None if problem.layer is not None else problem.layer_note,
        "flags": reading.flags,
        "rankings": reading.rankings,
        "reading": reading.data,
        "seconds": outcome.seconds,
        "curve_seconds": outcome.curve_seconds,
    }


def _fractions(fractions: Any) -> str:
    values = [f"{float(f):g}" for f in fractions]
    if len(values) <= 4:
        return ", ".join(values)
    return f"{values[0]}, {values[1]}, ..., {values[-1]}"


def _settings_sentence(outcome: Outcome, settings: Settings) -> str:
    problem, result = outcome.problem, outcome.result
    record = settings_record(outcome, settings)
    n, shape = problem.images.shape[0], tuple(problem.images.shape[1:])
    sentence = (
        f"{n} images of shape {shape}; IG with {settings.n_steps} Gauss-Legendre "
        f"steps; distributions of baselines averaged over {settings.n_baselines} "
        f"draws; Expected Gradients with {settings.n_samples} samples; blur "
        f"sigma {record['blur_sigma']:.2f} px; gaussian sigma "
        f"{record['gaussian_sigma']:.2f}; ablation and ROAD curves at fractions "
        f"{_fractions(result.fractions)} of the pixels; degradation patches of "
        f"{record['patch_size']} px; uniform-output baseline optimized for "
        f"{settings.uniform_output_iterations} steps; seed {settings.seed}."
    )
    if {"road_morf", "road_lerf"} & set(result.curve_names):
        sentence += (
            " ROAD imputes the removed pixels by Noisy Linear Imputation with "
            f"noise std {record['road_noise_std']:.3g} in input units (the "
            "authors' 0.01 for pixels in [0, 1], scaled to the valid range)."
        )
    sentence += (
        f" Intervals: {result.confidence:.0%} percentile bootstrap over the {n} "
        "images, the same resamples for every method and curve."
    )
    return sentence


def markdown_report(outcome: Outcome, settings: Settings, reading: Reading) -> str:
    """``results.md``: the problem, settings, table, how to read it, rankings,
    warnings, the reading, skipped methods and the figures."""
    problem, result = outcome.problem, outcome.result
    parts = [
        f"# {problem.title}",
        "",
        problem.description,
        "",
        _settings_sentence(outcome, settings),
        "",
        result.format_table(),
        "",
        "## How to read the table",
        "",
        "Each cell is the mean over the images of the area under a removal curve "
        "(AUC), with its bootstrap interval in brackets. Two methods whose "
        "intervals overlap are not ranked against each other.",
        "",
    ]
    for summary in result.summary_names:
        meaning = CURVE_MEANING.get(summary, "see `captum_baselines.metrics`")
        column = "ROAD gap" if summary == ROAD_GAP else f"AUC {summary}"
        parts.append(f"- **{column}**, {curve_title(summary)}: {meaning}.")
    parts += [
        "- **mean abs delta**: the completeness residual "
        "`|sum(attributions) - (f(x) - f(baseline))|` in logits (for "
        "distributions: against the mean over the baselines drawn; for "
        "RSI-Grad-CAM: at its layer); `-` where the method has none (PGIG is "
        "not complete by design).",
        "- **seconds**: time spent attributing, curves excluded.",
        "- **random**: a random Gaussian attribution map, the control every "
        "method should beat.",
        "",
    ]
    if reading.rankings:
        parts += [
            "## Rankings",
            "",
            "Best first. Methods in braces form a tier: their intervals overlap, "
            "directly or through a chain, and the data do not order them; `>` "
            "separates tiers whose intervals are disjoint.",
            "",
        ]
        parts += [f"- {line}" for line in reading.rankings] + [""]
    if reading.flags:
        parts += ["## Warnings", ""] + [f"- {flag}" for flag in reading.flags] + [""]
    parts += ["## Reading this run", ""] + [f"- {line}" for line in reading.lines]
    ran = len(result.methods) - (RANDOM in result.methods)
    if outcome.skipped:
        parts += [
            "",
            "## Skipped methods",
            "",
            f"{ran} of {ran + len(outcome.skipped)} methods ran; these could not:",
            "",
        ]
        parts += [f"- **{m}**: {why}" for m, why in outcome.skipped.items()]
    attributed = sum(r.seconds for r in result.methods.values())
    parts += [
        "",
        "## Time",
        "",
        f"{outcome.seconds:.0f} s for building, probing and comparing the methods: "
        f"{attributed:.0f} s attributing, {outcome.curve_seconds:.0f} s for the "
        "removal curves and intervals.",
    ]
    attribution_files = ", ".join(
        f"`{name}`" for name in attribution_figure_names(len(result.methods))
    )
    parts += [
        "",
        "## Figures",
        "",
        "- `baselines.png`: the baselines for the first image.",
        f"- {attribution_files}: attribution maps (sum of |a| over channels, capped "
        "at the 99th percentile) for the first images.",
    ]
    parts += [
        f"- `curves_{c}.png`: the mean curves of {curve_title(c)}."
        for c in result.curve_names
    ]
    parts.append(
        "- `intervals.png`: every cell of the table as a mean with its interval, "
        "the random control's interval shaded."
    )
    return "\n".join(parts) + "\n"


def write_report(outcome: Outcome, settings: Settings, out: Path) -> Reading:
    """Writes ``results.md``, ``results.csv`` and ``results.json`` to ``out``;
    returns the reading."""
    reading = read(outcome)
    _write_csv(out / "results.csv", outcome.result.table())
    document = json_document(outcome, settings, reading)
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "results.md").write_text(markdown_report(outcome, settings, reading))
    return reading


def write_summary(
    out: Path, outcomes: Sequence[Outcome], readings: Sequence[Reading] = ()
) -> None:
    """``results.md`` / ``.csv`` / ``.json`` at the top of ``out`` for several
    demo variants, each detailed in ``out/<variant>/``."""
    parts = ["# Baseline comparison on the digits variants", ""]
    rows: list[dict[str, Any]] = []
    for i, outcome in enumerate(outcomes):
        variant = outcome.problem.facts["variant"]
        parts += [f"## {outcome.problem.title}", "", outcome.result.format_table(), ""]
        if i < len(readings) and readings[i].rankings:
            parts += [f"- {line}" for line in readings[i].rankings] + [""]
        parts += [f"Warnings, reading and figures: `{variant}/results.md`.", ""]
        rows += [{"variant": variant, **row} for row in outcome.result.table()]
    (out / "results.md").write_text("\n".join(parts))
    _write_csv(out / "results.csv", rows)
    document = [{k: _json_number(v) for k, v in row.items()} for row in rows]
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")


__all__ = [
    "CURVE_MEANING",
    "DISTILL_BETTER",
    "DISTILL_WORSE",
    "RANKED",
    "Reading",
    "decoy_share",
    "distill_verdicts",
    "format_tiers",
    "json_document",
    "markdown_report",
    "pattern_samples",
    "read",
    "write_report",
    "write_summary",
]
