"""The reading of a comparison and the report: ``results.md``, ``.csv``, ``.json``.

:func:`read` computes what the table says and returns it (nothing is stored on
the problem): which method has the lowest area under each curve and which are
not separable from it, every method that scores worse than the random control on
any curve, layer maps too coarse to localize, completeness residuals far above
the others, and the demo variant's own reading (blind spots, the decoy patch).

Differences are only called differences when the table gives intervals: a row
with ``auc_<curve>_low`` and ``auc_<curve>_high`` has a confidence interval for
that curve, and two methods whose intervals overlap are not ranked.  Without
intervals no method is ranked above another; the report says which mean is
lowest and that the order is not established.
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

from ..metrics.compare import RANDOM
from ..visualization import curve_title
from .methods import METHODS
from .problems import MIN_LAYER_SIDE, Settings

if TYPE_CHECKING:
    from .runner import Outcome

#: What each curve measures, for "How to read the table".
CURVE_MEANING = {
    "top_k": (
        "the explained class's probability (relative to the intact image) as the "
        "top 0%, 10%, ..., 100% of pixels by signed attribution are replaced by "
        "the image's mean: Distill's ablation test"
    ),
    "mass_center": (
        "the same with a growing box around the center of mass of the "
        "attribution map removed"
    ),
    "degradation": (
        "the probability as patches are replaced by their own mean, most "
        "relevant patch first (Schwarzenberg & Castle's degradation test)"
    ),
}

#: A completeness residual this many times the median of the methods' residuals
#: (and above :data:`DELTA_FLOOR` logits) is flagged.
DELTA_RATIO = 10.0
DELTA_FLOOR = 0.01


@dataclass(frozen=True)
class Score:
    """A method's mean area under one curve, with its interval when the table
    gives one."""

    mean: float
    low: float | None = None
    high: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def separable_from(self, other: Score) -> bool:
        """Whether the two intervals are disjoint; ``False`` without intervals."""
        if not (self.has_interval and other.has_interval):
            return False
        assert self.low is not None and self.high is not None
        assert other.low is not None and other.high is not None
        return self.low > other.high or other.low > self.high

    def __str__(self) -> str:
        if self.has_interval:
            return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"
        return f"{self.mean:.3f}"


def scores(rows: Sequence[dict[str, Any]], curve: str) -> dict[str, Score]:
    """``{method: Score}`` for one curve from the result's table rows."""
    found = {}
    for row in rows:
        low, high = row.get(f"auc_{curve}_low"), row.get(f"auc_{curve}_high")
        found[row["method"]] = Score(
            float(row[f"auc_{curve}"]),
            None if low is None else float(low),
            None if high is None else float(high),
        )
    return found


@dataclass
class Reading:
    """What a comparison says: sentences, warnings, and the numbers behind them.

    Attributes:
        lines: Sentences for "Reading this run" (Markdown).
        flags: Warnings a reader must not miss (Markdown).
        data: The same in machine-readable form, for ``results.json``.
    """

    lines: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def read(outcome: Outcome) -> Reading:
    """The reading of one comparison (see the module's doc)."""
    reading = Reading()
    rows = outcome.result.table()
    _layer(outcome, reading)
    for curve in outcome.result.curve_names:
        curve_scores = scores(rows, curve)
        _lowest(curve, curve_scores, reading)
        _against_control(curve, curve_scores, reading)
    _completeness(rows, reading)
    variant = outcome.problem.variant
    if variant is not None:
        _blind_spots(variant.blind_spots, rows, outcome.result.curve_names, reading)
        if variant.decoy:
            _decoy(outcome, reading)
    return reading


def _names(labels: Sequence[str]) -> str:
    return ", ".join(f"**{label}**" for label in labels)


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


def _lowest(curve: str, curve_scores: dict[str, Score], reading: Reading) -> None:
    methods = {m: s for m, s in curve_scores.items() if m != RANDOM}
    if not methods:
        return
    best = min(methods, key=lambda m: methods[m].mean)
    title = curve_title(curve)
    if not methods[best].has_interval:
        reading.lines.append(
            f"{title}: the lowest mean AUC is {_names([best])}'s "
            f"({methods[best]}). The table has no confidence intervals, so this run "
            "does not rank the methods; differences of a few hundredths may be noise."
        )
        return
    tied = [
        m
        for m, s in methods.items()
        if m != best and not s.separable_from(methods[best])
    ]
    sentence = f"{title}: the lowest AUC is {_names([best])}'s ({methods[best]})"
    if tied:
        sentence += (
            f"; {_names(tied)} overlap its interval and are not ranked against it"
        )
    reading.lines.append(sentence + ".")
    reading.data.setdefault("lowest", {})[curve] = {"method": best, "tied": tied}


def _against_control(
    curve: str, curve_scores: dict[str, Score], reading: Reading
) -> None:
    control = curve_scores.get(RANDOM)
    if control is None:
        return
    methods = {m: s for m, s in curve_scores.items() if m != RANDOM}
    worse = [m for m, s in methods.items() if s.mean >= control.mean]
    unseparated = [
        m
        for m, s in methods.items()
        if m not in worse and s.has_interval and not s.separable_from(control)
    ]
    reading.data.setdefault("worse_than_random", {})[curve] = worse
    title = curve_title(curve)
    if worse:
        listed = ", ".join(f"**{m}** {methods[m]}" for m in worse)
        reading.flags.append(
            f"{title}: {len(worse)} of {len(methods)} methods "
            f"score{'s' if len(worse) == 1 else ''} worse than the random control "
            f"({control}): {listed}. On this test "
            f"{'its map ranks' if len(worse) == 1 else 'their maps rank'} features "
            "no better than chance."
        )
    if unseparated:
        reading.data.setdefault("not_separable_from_random", {})[curve] = unseparated
        reading.flags.append(
            f"{title}: the intervals of {_names(unseparated)} overlap the random "
            "control's: not distinguishable from chance on this test."
        )
    if not worse and not unseparated and methods:
        reading.lines.append(
            f"{title}: every method scores better than the random control ({control})."
        )


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


def _blind_spots(
    blind_spots: Any,
    rows: Sequence[dict[str, Any]],
    curves: Sequence[str],
    reading: Reading,
) -> None:
    curve = "top_k" if "top_k" in curves else curves[0]
    curve_scores = scores(rows, curve)
    control = curve_scores.get(RANDOM)
    for label, what in blind_spots.items():
        if label not in curve_scores:
            continue
        others = [s.mean for m, s in curve_scores.items() if m not in (label, RANDOM)]
        sentence = (
            f"**{label}** cannot attribute {what}: its {curve_title(curve)} AUC is "
            f"{curve_scores[label]}"
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
    problem = outcome.problem
    return {
        "n_steps": settings.n_steps,
        "n_baselines": settings.n_baselines,
        "n_samples": settings.n_samples,
        "blur_sigma": problem.blur_sigma(settings),
        "gaussian_sigma": problem.gaussian_sigma(),
        "patch_size": problem.patch_size(settings),
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
        "reading": reading.data,
        "seconds": outcome.seconds,
    }


def markdown_report(outcome: Outcome, settings: Settings, reading: Reading) -> str:
    """``results.md``: the problem, settings, table, how to read it, warnings,
    the reading, skipped methods and the figures."""
    problem, result = outcome.problem, outcome.result
    record = settings_record(outcome, settings)
    n, shape = problem.images.shape[0], tuple(problem.images.shape[1:])
    parts = [
        f"# {problem.title}",
        "",
        problem.description,
        "",
        f"{n} images of shape {shape}; IG with {settings.n_steps} Gauss-Legendre "
        f"steps; distributions of baselines averaged over {settings.n_baselines} "
        f"draws; Expected Gradients with {settings.n_samples} samples; blur "
        f"sigma {record['blur_sigma']:.2f} px; gaussian sigma "
        f"{record['gaussian_sigma']:.2f}; degradation patches of "
        f"{record['patch_size']} px; seed {settings.seed}.",
        "",
        result.format_table(),
        "",
        "## How to read the table",
        "",
        "Every AUC is the area under a mean removal curve; **lower is better** "
        "(the method found what the model needs).",
        "",
    ]
    for curve in result.curve_names:
        meaning = CURVE_MEANING.get(curve, "see `captum_baselines.metrics`")
        parts.append(f"- **AUC {curve}** ({curve_title(curve)}): {meaning}.")
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
    parts += [
        "",
        "## Figures",
        "",
        "- `baselines.png`: the baselines for the first image.",
        "- `attributions.png`: attribution maps (sum of |a| over channels, capped "
        "at the 99th percentile) for the first images.",
    ]
    parts += [
        f"- `curves_{c}.png`: the mean curves of {curve_title(c).lower()}."
        for c in result.curve_names
    ]
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


def write_summary(out: Path, outcomes: Sequence[Outcome]) -> None:
    """``results.md`` / ``.csv`` / ``.json`` at the top of ``out`` for several
    demo variants, each detailed in ``out/<variant>/``."""
    parts = ["# Baseline comparison on the digits variants", ""]
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        variant = outcome.problem.facts["variant"]
        parts += [
            f"## {outcome.problem.title}",
            "",
            outcome.result.format_table(),
            "",
            f"Warnings, reading and figures: `{variant}/results.md`.",
            "",
        ]
        rows += [{"variant": variant, **row} for row in outcome.result.table()]
    (out / "results.md").write_text("\n".join(parts))
    _write_csv(out / "results.csv", rows)
    document = [{k: _json_number(v) for k, v in row.items()} for row in rows]
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")


__all__ = [
    "CURVE_MEANING",
    "Reading",
    "Score",
    "decoy_share",
    "json_document",
    "markdown_report",
    "read",
    "scores",
    "write_report",
    "write_summary",
]
