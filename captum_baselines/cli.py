"""The ``captum-baselines`` command line: the baseline comparison, end to end.

Two subcommands share one pipeline (a :class:`Problem`, a set of named methods,
:func:`~captum_baselines.metrics.compare.compare_attributions`, a report):

- ``captum-baselines demo --out DIR`` trains the embedded default model, a
  :class:`~captum_baselines.models.DigitsCNN`, on scikit-learn's digits (nothing
  is downloaded) and compares the baselines of Sturmfels, Lundberg & Lee,
  "Visualizing the Impact of Feature Attribution Baselines", Distill 2020,
  https://distill.pub/2020/attribution-baselines/ , with Expected Gradients,
  Pattern-Guided IG, RSI-Grad-CAM and a random control.
- ``captum-baselines compare --model SPEC --images PATH --out DIR`` runs the same
  comparison on the user's model and images.

Both write ``results.md`` (the table and how to read it), ``results.csv``,
``results.json`` and PNG figures to ``DIR`` and print the table.  Bad arguments
exit with status 2 and a message naming the option.
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib
import json
import math
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._hooks import eval_mode

PROG = "captum-baselines"

#: Command-line name -> label in the table, in the table's order.
METHODS: dict[str, str] = {
    "ig-black": "IG black",
    "ig-white": "IG white",
    "ig-max-distance": "IG max distance",
    "ig-blur": "IG blur",
    "ig-uniform": "IG uniform",
    "ig-gaussian": "IG gaussian",
    "ig-training": "IG training data",
    "eg": "EG training data",
    "pgig": "PGIG black",
    "rsi-grad-cam": "RSI-Grad-CAM uniform output",
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

CURVE_MEANING = {
    "top_k": (
        "the explained class's probability (relative to the intact image) as the "
        "top 0%, 10%, ..., 100% of pixels by signed attribution are replaced by "
        "the image's mean: Distill's ablation test"
    ),
    "mass_center": (
        "the same with a growing box around the centre of mass of the "
        "attribution map removed"
    ),
    "degradation": (
        "the probability as patches are replaced by their own mean, most "
        "relevant patch first (Schwarzenberg & Castle's degradation test)"
    ),
}


class CommandLineError(Exception):
    """A bad argument: reported as ``prog: error: message`` with exit status 2."""


# ----------------------------------------------------------------------------
# What a comparison needs


@dataclass
class Settings:
    """The knobs of the methods and curves, shared by both subcommands."""

    n_steps: int = 32
    n_baselines: int = 8
    n_samples: int = 100
    blur_sigma: float | None = None
    patch_size: int | None = None
    internal_batch_size: int | None = None
    seed: int = 0
    progress: bool = True


@dataclass
class Problem:
    """A model, the images to explain, their targets and where baselines live.

    ``value_range`` is the valid range of one input in the model's space (floats
    or ``(C, 1, 1)`` tensors); ``reference_data`` is the pool of examples that
    the training-data baselines, Expected Gradients and the patterns of PGIG
    draw from.
    """

    model: nn.Module
    images: Tensor
    targets: Tensor
    value_range: tuple[Any, Any]
    reference_data: Tensor
    layer: nn.Module | None
    title: str
    description: str
    labels: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def side(self) -> int:
        return min(self.images.shape[-2:])

    def blur_sigma(self, settings: Settings) -> float:
        # Distill's ablations blur 299-pixel images with sigma 20.
        if settings.blur_sigma is not None:
            return settings.blur_sigma
        return max(1.0, self.side * 20 / 299)

    def gaussian_sigma(self) -> float:
        # Distill's sigma = 1 on inputs in [-1, 1]: half the range's width.
        low, high = self.value_range
        return float(torch.as_tensor(high - low, dtype=torch.float64).mean()) / 2

    def patch_size(self, settings: Settings) -> int:
        if settings.patch_size is not None:
            return settings.patch_size
        return min(9, max(2, self.side // 4))

    def internal_batch_size(self, settings: Settings) -> int:
        # Path points per forward pass: about a million input values at a time.
        if settings.internal_batch_size is not None:
            return settings.internal_batch_size
        return max(8, (1 << 20) // self.images[0].numel())


# ----------------------------------------------------------------------------
# The methods, each a callable (inputs, target) -> attributions [, delta]


AttributionFn = Callable[[Tensor, Any], Any]


def _generator(settings: Settings, name: str) -> torch.Generator:
    """One generator per method, so a method's draws do not depend on the others."""
    return torch.Generator().manual_seed(settings.seed + zlib.crc32(name.encode()))


def integrated_gradients(
    problem: Problem, settings: Settings, baseline: Callable[[Tensor], Tensor]
) -> AttributionFn:
    """IG from one baseline per example, with its completeness delta."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(problem.model)

    def method(x: Tensor, target: Any) -> Any:
        return ig.attribute(
            x,
            baselines=baseline(x),
            target=target,
            n_steps=settings.n_steps,
            internal_batch_size=problem.internal_batch_size(settings),
            return_convergence_delta=True,
        )

    return method


def averaged_integrated_gradients(
    problem: Problem, settings: Settings, draw: Callable[[Tensor, int], Tensor]
) -> AttributionFn:
    """IG averaged over ``n_baselines`` draws ``(k, *x.shape)`` of a distribution."""
    from captum.attr import IntegratedGradients

    from .baselines import average_over_baselines

    ig = IntegratedGradients(problem.model)

    def method(x: Tensor, target: Any) -> Any:
        return average_over_baselines(
            ig,
            x,
            draw(x, settings.n_baselines),
            target=target,
            n_steps=settings.n_steps,
            internal_batch_size=problem.internal_batch_size(settings),
            return_convergence_delta=True,
        )

    return method


def expected_gradients(problem: Problem, settings: Settings) -> AttributionFn:
    from .attr.expected_gradients import ExpectedGradients

    eg = ExpectedGradients(problem.model)
    generator = _generator(settings, "eg")

    def method(x: Tensor, target: Any) -> Any:
        return eg.attribute(
            x,
            baselines=problem.reference_data,
            target=target,
            n_samples=settings.n_samples,
            internal_batch_size=problem.internal_batch_size(settings),
            generator=generator,
            return_convergence_delta=True,
        )

    return method


def pattern_guided_integrated_gradients(
    problem: Problem, settings: Settings
) -> AttributionFn:
    """PGIG from the black baseline (the paper's zero baseline), patterns fitted
    on the reference data."""
    from .attr.patterns import fit_patterns
    from .attr.pgig import PatternGuidedIntegratedGradients
    from .baselines import black

    patterns = fit_patterns(problem.model, problem.reference_data, show_progress=False)
    pgig = PatternGuidedIntegratedGradients(problem.model, patterns)

    def method(x: Tensor, target: Any) -> Any:
        return pgig.attribute(
            x,
            baselines=black(x, problem.value_range),
            target=target,
            n_steps=settings.n_steps,
            internal_batch_size=problem.internal_batch_size(settings),
        )

    return method


def rsi_grad_cam(problem: Problem, settings: Settings) -> AttributionFn:
    """RSI-Grad-CAM at ``problem.layer`` from Lerma & Lucas's uniform-output
    baseline (optimised from black)."""
    from .attr.layer_rsi_grad_cam import LayerRSIGradCam
    from .baselines import black, uniform_output

    if problem.layer is None:
        raise CommandLineError("--layer: RSI-Grad-CAM needs the name of a conv layer")
    rsi = LayerRSIGradCam(problem.model, problem.layer)

    def method(x: Tensor, target: Any) -> Any:
        start = black(x, problem.value_range)
        baseline = uniform_output(
            problem.model, start, lr=0.5, value_range=problem.value_range
        )
        return rsi.attribute(
            x,
            baselines=baseline,
            target=target,
            n_steps=settings.n_steps,
            internal_batch_size=problem.internal_batch_size(settings),
            return_convergence_delta=True,
        )

    return method


def build_method(name: str, problem: Problem, settings: Settings) -> AttributionFn:
    """The attribution method of command-line name ``name`` (see :data:`METHODS`)."""
    from . import baselines as B

    vr = problem.value_range
    generator = _generator(settings, name)
    if name == "ig-black":
        return integrated_gradients(problem, settings, lambda x: B.black(x, vr))
    if name == "ig-white":
        return integrated_gradients(problem, settings, lambda x: B.white(x, vr))
    if name == "ig-max-distance":
        return integrated_gradients(problem, settings, lambda x: B.max_distance(x, vr))
    if name == "ig-blur":
        sigma = problem.blur_sigma(settings)
        return integrated_gradients(problem, settings, lambda x: B.blur(x, sigma))
    if name == "ig-uniform":
        return averaged_integrated_gradients(
            problem,
            settings,
            lambda x, k: B.uniform(x, vr, n_samples=k, generator=generator),
        )
    if name == "ig-gaussian":
        sigma = problem.gaussian_sigma()
        return averaged_integrated_gradients(
            problem,
            settings,
            lambda x, k: B.gaussian(x, sigma, vr, n_samples=k, generator=generator),
        )
    if name == "ig-training":
        data = problem.reference_data
        return averaged_integrated_gradients(
            problem,
            settings,
            lambda x, k: B.from_data(data, x, n_samples=k, generator=generator),
        )
    if name == "eg":
        return expected_gradients(problem, settings)
    if name == "pgig":
        return pattern_guided_integrated_gradients(problem, settings)
    if name == "rsi-grad-cam":
        return rsi_grad_cam(problem, settings)
    raise CommandLineError(f"--methods: unknown method {name!r}")


def build_methods(
    problem: Problem, settings: Settings, names: Sequence[str], required: bool
) -> tuple[dict[str, AttributionFn], dict[str, str]]:
    """``({label: method}, {label: why skipped})``.

    Each method is built and tried on two images first.  One that cannot run
    (not importable, unsupported by this model) is an error when the user asked
    for it (``required``), else skipped with its reason.
    """
    methods: dict[str, AttributionFn] = {}
    skipped: dict[str, str] = {}
    probe = problem.images[:2]
    probe_target = problem.targets[:2]
    for name in names:
        label = METHODS[name]
        try:
            method = build_method(name, problem, settings)
            _check_attribution_output(method(probe, probe_target), probe)
        except CommandLineError as error:
            if required:
                raise
            skipped[label] = str(error)
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            reason = f"{type(error).__name__}: {error}"
            if isinstance(problem.model, torch.jit.ScriptModule):
                reason += (
                    " (a TorchScript model cannot be hooked; give --model "
                    "package.module:callable for this method)"
                )
            if required:
                raise CommandLineError(f"--methods: {name} fails: {reason}") from error
            skipped[label] = reason
        else:
            methods[label] = method
    return methods, skipped


def _check_attribution_output(output: Any, x: Tensor) -> None:
    attributions = output[0] if isinstance(output, tuple) else output
    if not isinstance(attributions, Tensor) or attributions.shape[0] != x.shape[0]:
        raise ValueError("the method returned no attributions for the probe images")
    if not bool(torch.isfinite(attributions).all()):
        raise ValueError("the method returned NaN or infinite attributions")


# ----------------------------------------------------------------------------
# Running and reporting


@dataclass
class Outcome:
    """What one comparison produced and where it was written."""

    problem: Problem
    result: Any
    skipped: dict[str, str]
    seconds: float
    out: Path

    def ranking(self, curve: str = "top_k") -> list[tuple[str, float]]:
        rows = self.result.table()
        return sorted(
            ((r["method"], r[f"auc_{curve}"]) for r in rows), key=lambda p: p[1]
        )


def run_comparison(
    problem: Problem,
    settings: Settings,
    names: Sequence[str],
    out: Path,
    required: bool = False,
    reading: Callable[[Outcome], list[str]] | None = None,
) -> Outcome:
    """Builds the methods, compares them, writes the report and figures to ``out``."""
    from .metrics.compare import compare_attributions

    start = time.perf_counter()
    methods, skipped = build_methods(problem, settings, names, required)
    result = compare_attributions(
        problem.model,
        problem.images,
        problem.targets,
        methods,
        patch_size=problem.patch_size(settings),
        generator=torch.Generator().manual_seed(settings.seed),
        internal_batch_size=problem.internal_batch_size(settings),
        progress=settings.progress,
    )
    outcome = Outcome(problem, result, skipped, time.perf_counter() - start, out)
    out.mkdir(parents=True, exist_ok=True)
    paragraphs = generic_reading(outcome) + (reading(outcome) if reading else [])
    write_tables(outcome, settings)
    (out / "results.md").write_text(markdown_report(outcome, settings, paragraphs))
    write_figures(outcome, settings)
    return outcome


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_tables(outcome: Outcome, settings: Settings) -> None:
    rows = outcome.result.table()
    with open(outcome.out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    problem = outcome.problem
    document = {
        "title": problem.title,
        "n_images": problem.images.shape[0],
        "image_shape": list(problem.images.shape[1:]),
        "settings": {
            "n_steps": settings.n_steps,
            "n_baselines": settings.n_baselines,
            "n_samples": settings.n_samples,
            "blur_sigma": problem.blur_sigma(settings),
            "gaussian_sigma": problem.gaussian_sigma(),
            "patch_size": problem.patch_size(settings),
            "seed": settings.seed,
        },
        "methods": [{k: _json_number(v) for k, v in row.items()} for row in rows],
        "skipped": outcome.skipped,
        "seconds": outcome.seconds,
        **{k: _json_number(v) for k, v in problem.extras.items()},
    }
    (outcome.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")


def generic_reading(outcome: Outcome) -> list[str]:
    """Sentences computed from the table: who wins, how the control does."""
    from .metrics.compare import RANDOM

    ranking = outcome.ranking("top_k")
    methods = [(m, a) for m, a in ranking if m != RANDOM]
    control = dict(ranking).get(RANDOM)
    lines = []
    if methods:
        best, best_auc = methods[0]
        worst, worst_auc = methods[-1]
        lines.append(
            f"On the top-k ablation test, **{best}** removes the evidence fastest "
            f"(AUC {best_auc:.3f}) and **{worst}** slowest ({worst_auc:.3f})."
        )
    if control is not None and methods:
        beaten = sum(a < control for _, a in methods)
        lines.append(
            f"The random control scores {control:.3f}: {beaten} of {len(methods)} "
            "methods beat it. A method near the control ranks pixels little better "
            "than chance for this model."
        )
    return lines


def markdown_report(outcome: Outcome, settings: Settings, reading: list[str]) -> str:
    problem, result = outcome.problem, outcome.result
    n, shape = problem.images.shape[0], tuple(problem.images.shape[1:])
    parts = [
        f"# {problem.title}",
        "",
        problem.description,
        "",
        f"{n} images of shape {shape}; IG with {settings.n_steps} Gauss-Legendre "
        f"steps; distributions of baselines averaged over {settings.n_baselines} "
        f"draws; Expected Gradients with {settings.n_samples} samples; blur "
        f"sigma {problem.blur_sigma(settings):.2f} px; gaussian sigma "
        f"{problem.gaussian_sigma():.2f}; degradation patches of "
        f"{problem.patch_size(settings)} px; seed {settings.seed}.",
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
        parts.append(f"- **AUC {curve}**: {CURVE_MEANING[curve]}.")
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
        "## Reading this run",
        "",
    ]
    parts += [f"- {line}" for line in reading]
    if outcome.skipped:
        parts += ["", "## Skipped methods", ""]
        parts += [f"- {m}: {why}" for m, why in outcome.skipped.items()]
    parts += [
        "",
        "## Figures",
        "",
        "- `baselines.png`: the baselines for the first image.",
        "- `attributions.png`: attribution maps (sum of |a| over channels, capped "
        "at the 99th percentile) for the first images.",
    ]
    parts += [f"- `curves_{c}.png`: the mean {c} curves." for c in result.curve_names]
    return "\n".join(parts) + "\n"


def baseline_gallery(problem: Problem, settings: Settings) -> dict[str, Tensor]:
    """One example of each baseline the table compares, for the first image."""
    from . import baselines as B

    x, vr = problem.images[:1], problem.value_range
    generator = torch.Generator().manual_seed(settings.seed)
    gallery = {
        "black": B.black(x, vr),
        "white": B.white(x, vr),
        "max distance": B.max_distance(x, vr),
        "blur": B.blur(x, problem.blur_sigma(settings)),
        "uniform": B.uniform(x, vr, generator=generator),
        "gaussian": B.gaussian(x, problem.gaussian_sigma(), vr, generator=generator),
        "training data": B.from_data(problem.reference_data, x, generator=generator),
    }
    return {name: b.expand_as(x) for name, b in gallery.items()}


def write_figures(outcome: Outcome, settings: Settings, n_rows: int = 4) -> None:
    import matplotlib.pyplot as plt

    from .visualization import plot_attributions, plot_baselines, plot_comparison

    problem, result, out = outcome.problem, outcome.result, outcome.out
    rows = min(n_rows, problem.images.shape[0])
    figures = {
        "baselines.png": plot_baselines(
            problem.images[0], baseline_gallery(problem, settings)
        ),
        "attributions.png": plot_attributions(
            problem.images[:rows],
            {
                name.replace(" ", "\n", 1): r.attributions[:rows]
                for name, r in result.methods.items()
            },
            image_titles=problem.labels[:rows] or None,
            size=1.6,
        ),
    }
    for curve in result.curve_names:
        figures[f"curves_{curve}.png"] = plot_comparison(result, curve)
    for filename, figure in figures.items():
        figure.savefig(out / filename, dpi=100)
        plt.close(figure)


# ----------------------------------------------------------------------------
# demo: the embedded default model


@dataclass
class DemoScale:
    size: int
    epochs: int
    n_images: int
    settings: Settings


def demo_scale(args: argparse.Namespace) -> DemoScale:
    if args.quick:
        settings = Settings(n_steps=16, n_baselines=4, n_samples=32)
        scale = DemoScale(size=8, epochs=6, n_images=16, settings=settings)
    else:
        scale = DemoScale(size=16, epochs=12, n_images=64, settings=Settings())
    if args.n_images is not None:
        scale.n_images = args.n_images
    scale.settings.seed = args.seed
    scale.settings.progress = not args.no_progress
    return scale


VARIANT_TEXT = {
    "digits": (
        "Digits (white ink on black)",
        "scikit-learn's handwritten digits as shipped: white ink on a black "
        "background. Here the black baseline *is* the background, so IG from black "
        "attributes the ink; the white baseline cannot attribute white ink, since "
        "`x - x' = 0` there.",
    ),
    "inverted": (
        "Inverted digits (black ink on white)",
        "The digits inverted, `1 - x`: black ink on white. This is the Distill "
        "article's point on real data: IG from the black baseline multiplies every "
        "gradient by `x - x'`, which is 0 on black ink, so it cannot attribute the "
        "strokes that make the digit.",
    ),
    "decoy": (
        "Decoy digits (a label-revealing patch)",
        "The digits with the top-left corner patch set to `label / 9`, a shortcut "
        "the network learns. A faithful attribution puts much of its mass on that "
        "patch.",
    ),
}


def demo_problem(variant: str, scale: DemoScale) -> Problem:
    """Trains the default DigitsCNN on one variant; picks correctly classified test
    images to explain at their true class."""
    from .datasets import load_digits_images
    from .models import DigitsCNN, train_classifier

    settings = scale.settings
    data = load_digits_images(variant, scale.size, seed=settings.seed)  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = DigitsCNN(scale.size)
    train_classifier(
        model,
        data.train_images,
        data.train_labels,
        epochs=scale.epochs,
        seed=settings.seed,
        progress=settings.progress,
    )
    with torch.no_grad():
        predictions = model(data.test_images).argmax(1)
    correct = predictions == data.test_labels
    accuracy = float(correct.float().mean())
    chosen = torch.nonzero(correct).flatten()[: scale.n_images]
    title, text = VARIANT_TEXT[variant]
    description = (
        f"{text}\n\nModel: the embedded DigitsCNN trained for {scale.epochs} epochs "
        f"on {len(data.train_images)} {scale.size}x{scale.size} images (test "
        f"accuracy {accuracy:.1%}). Explained: the true class of the first "
        f"{len(chosen)} correctly classified test images. Training-data baselines, "
        "EG and the PGIG patterns draw from the training images."
    )
    labels = data.test_labels[chosen]
    return Problem(
        model=model,
        images=data.test_images[chosen],
        targets=labels,
        value_range=(0.0, 1.0),
        reference_data=data.train_images,
        layer=model[3],
        title=f"Baseline comparison: {title}",
        description=description,
        labels=[f"digit {int(t)}" for t in labels],
        extras={"variant": variant, "test_accuracy": accuracy},
    )


def decoy_share(outcome: Outcome) -> dict[str, float]:
    """Per method, the mean share of ``|attribution|`` on the decoy patch."""
    patch = max(1, outcome.problem.side // 8)
    shares = {}
    for name, r in outcome.result.methods.items():
        mass = r.attributions.abs().sum(1)
        on_patch = mass[:, :patch, :patch].flatten(1).sum(1)
        total = mass.flatten(1).sum(1).clamp_min(torch.finfo(mass.dtype).tiny)
        shares[name] = float((on_patch / total).mean())
    return shares


def demo_reading(variant: str) -> Callable[[Outcome], list[str]]:
    def reading(outcome: Outcome) -> list[str]:
        ranking = [m for m, _ in outcome.ranking("top_k")]
        aucs = dict(outcome.ranking("top_k"))
        lines = []
        for label, point in (
            ("IG black", "cannot attribute black pixels"),
            ("IG white", "cannot attribute white pixels"),
        ):
            if label in aucs:
                lines.append(
                    f"{label} ranks {ranking.index(label) + 1} of {len(ranking)} "
                    f"(random control included; AUC {aucs[label]:.3f}); it {point}."
                )
        if variant == "decoy":
            side = outcome.problem.side
            patch = max(1, side // 8)
            shares = decoy_share(outcome)
            outcome.problem.extras["decoy_share"] = shares
            even = patch * patch / (side * side)
            listed = ", ".join(f"{m} {s:.1%}" for m, s in shares.items())
            lines.append(
                f"Share of |attribution| on the {patch}x{patch} decoy patch "
                f"({even:.1%} of the pixels): {listed}."
            )
        return lines

    return reading


def run_demo(args: argparse.Namespace) -> int:
    out = _output_folder(args.out)
    scale = demo_scale(args)
    variants = (
        ["digits", "inverted", "decoy"] if args.variant == "all" else [args.variant]
    )
    names = list(METHODS)
    summaries = []
    for variant in variants:
        start = time.perf_counter()
        problem = demo_problem(variant, scale)
        folder = out / variant if len(variants) > 1 else out
        outcome = run_comparison(
            problem, scale.settings, names, folder, reading=demo_reading(variant)
        )
        seconds = time.perf_counter() - start
        print(
            f"\n{problem.title} (test accuracy "
            f"{problem.extras['test_accuracy']:.1%}, {seconds:.1f} s)\n"
        )
        print(outcome.result.format_table())
        for label, why in outcome.skipped.items():
            print(f"skipped {label}: {why}", file=sys.stderr)
        summaries.append((variant, outcome))
    if len(variants) > 1:
        write_summary(out, summaries)
    print(f"\nwritten to {out}")
    return 0


def write_summary(out: Path, summaries: list[tuple[str, Outcome]]) -> None:
    """``results.md`` / ``.csv`` / ``.json`` at the top of ``out`` for all variants."""
    parts = ["# Baseline comparison on the three digits variants", ""]
    rows: list[dict[str, Any]] = []
    for variant, outcome in summaries:
        parts += [
            f"## {outcome.problem.title}",
            "",
            outcome.result.format_table(),
            "",
            f"Details and figures: `{variant}/results.md`.",
            "",
        ]
        rows += [{"variant": variant, **row} for row in outcome.result.table()]
    (out / "results.md").write_text("\n".join(parts))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    document = [{k: _json_number(v) for k, v in row.items()} for row in rows]
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")


# ----------------------------------------------------------------------------
# compare: the user's model and images


def load_model(spec: str, weights: str | None) -> nn.Module:
    """A TorchScript file, or ``package.module:callable`` (a factory or a module).

    A module object named by ``spec`` is used as is (copied first when
    ``weights`` are loaded); the comparison runs it in eval mode and restores its
    flags afterwards.
    """
    path = Path(spec)
    if path.is_file():
        try:
            with warnings.catch_warnings():  # torch.jit's deprecation notice
                warnings.simplefilter("ignore", FutureWarning)
                model: Any = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:  # noqa: BLE001
            raise CommandLineError(
                f"--model: cannot load {spec!r} as a TorchScript file: {error}"
            ) from error
    else:
        model = _import_model(spec)
        if weights is not None:  # the module may be the user's object: keep it
            model = copy.deepcopy(model)
    if weights is not None:
        _load_weights(model, weights)
    return model


def _import_model(spec: str) -> nn.Module:
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise CommandLineError(
            f"--model: {spec!r} is neither a TorchScript file nor "
            "'package.module:callable'"
        )
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001
        raise CommandLineError(
            f"--model: cannot import module {module_name!r}: {error}"
        ) from error
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise CommandLineError(
                f"--model: {module_name!r} has no attribute {attribute!r}"
            )
        found = getattr(found, part)
    if not isinstance(found, nn.Module):
        if not callable(found):
            raise CommandLineError(
                f"--model: {spec} is a {type(found).__name__}, neither a module nor "
                "callable"
            )
        try:
            found = found()
        except Exception as error:  # noqa: BLE001
            raise CommandLineError(
                f"--model: calling {spec}() failed: {error}"
            ) from error
    if not isinstance(found, nn.Module):
        raise CommandLineError(
            f"--model: {spec} gave a {type(found).__name__}, not a torch.nn.Module"
        )
    return found


def _load_weights(model: nn.Module, weights: str) -> None:
    if not Path(weights).is_file():
        raise CommandLineError(f"--weights: no such file: {weights}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise CommandLineError(
            f"--weights: cannot load {weights!r} as a state_dict: {error}"
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CommandLineError(
            f"--weights: {weights!r} holds a {type(state).__name__}, not a state_dict"
        )
    try:
        model.load_state_dict(state)
    except Exception as error:  # noqa: BLE001
        raise CommandLineError(
            f"--weights: {weights!r} does not fit the model: {error}"
        ) from error


def load_images(
    path: str, size: Sequence[int] | None, option: str, grayscale: bool = False
) -> Tensor:
    """``(N, C, H, W)`` float images from a ``.pt`` tensor file or an image folder
    (pixels scaled to [0, 1], RGB or, with ``grayscale``, one channel)."""
    where = Path(path)
    if where.is_dir():
        return _image_folder(where, size, option, grayscale)
    if not where.is_file():
        raise CommandLineError(f"{option}: no such file or folder: {path}")
    try:
        images = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise CommandLineError(
            f"{option}: cannot load {path!r} as a tensor file: {error}"
        ) from error
    if not isinstance(images, Tensor):
        raise CommandLineError(
            f"{option}: {path!r} holds a {type(images).__name__}, not a tensor "
            "(N, C, H, W)"
        )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[0] == 0:
        raise CommandLineError(
            f"{option}: the tensor in {path!r} must be (N, C, H, W), got shape "
            f"{tuple(images.shape)}"
        )
    images = images.float() if not images.is_floating_point() else images
    if size is not None:
        images = torch.nn.functional.interpolate(
            images, size=_pair(size), mode="bilinear", align_corners=False
        )
    return images


def _pair(size: Sequence[int]) -> tuple[int, int]:
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _image_folder(
    folder: Path, size: Sequence[int] | None, option: str, grayscale: bool
) -> Tensor:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CommandLineError(
            f"{option}: no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}"
        )
    images = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert("L" if grayscale else "RGB")
            if size is not None:
                height, width = _pair(size)
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            images.append(pil_to_tensor(image).float() / 255)
        except OSError as error:
            raise CommandLineError(f"{option}: cannot read {file}: {error}") from error
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise CommandLineError(
            f"{option}: the images have different sizes {sorted(shapes)}; give "
            "--size H W"
        )
    return torch.stack(images)


def normalise(
    images: Tensor, args: argparse.Namespace, option: str
) -> tuple[Tensor, tuple[Any, Any]]:
    """Images in the model's space and their valid range there."""
    from .baselines import normalized_range

    if not bool(torch.isfinite(images).all()):
        raise CommandLineError(f"{option}: the images contain NaN or infinite values")
    pixel_range = tuple(args.value_range) if args.value_range else (0.0, 1.0)
    if pixel_range[0] >= pixel_range[1]:
        raise CommandLineError(
            f"--value-range: low must be below high, got {pixel_range}"
        )
    low, high = float(images.min()), float(images.max())
    if low < pixel_range[0] - 1e-6 or high > pixel_range[1] + 1e-6:
        raise CommandLineError(
            f"--value-range: {option} holds values in [{low:.3g}, {high:.3g}], "
            f"outside the valid range {list(pixel_range)}; give the pixel range "
            "with --value-range LOW HIGH"
        )
    if args.mean is None and args.std is None:
        return images, (pixel_range[0], pixel_range[1])
    if args.mean is None or args.std is None:
        raise CommandLineError("--mean and --std must be given together")
    channels = images.shape[1]
    mean, std = _per_channel(args.mean, channels), _per_channel(args.std, channels)
    if mean is None or std is None:
        raise CommandLineError(
            f"--mean/--std: need 1 or {channels} values (one per channel), got "
            f"{len(args.mean)} and {len(args.std)}"
        )
    if any(s <= 0 for s in std):
        raise CommandLineError(f"--std: every value must be > 0, got {args.std}")
    mean_t = torch.tensor(mean, dtype=images.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype).view(-1, 1, 1)
    value_range = normalized_range(mean, std, pixel_range)  # type: ignore[arg-type]
    return (images - mean_t) / std_t, value_range


def _per_channel(values: list[float], channels: int) -> list[float] | None:
    if len(values) == channels:
        return values
    return values * channels if len(values) == 1 else None


def model_outputs(model: nn.Module, images: Tensor, batch: int) -> Tensor:
    """Logits ``(N, K)`` of the model on the images, with clear errors."""
    try:
        with torch.no_grad():
            outputs = torch.cat(
                [model(images[i : i + batch]) for i in range(0, len(images), batch)]
            )
    except Exception as error:  # noqa: BLE001
        raise CommandLineError(
            f"--images: the model fails on images of shape "
            f"{tuple(images.shape[1:])} (see --size, --grayscale): "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(outputs, Tensor) or outputs.dim() != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else None
        raise CommandLineError(
            f"--model: the model must return logits (N, classes), got {shape}"
        )
    return outputs


def resolve_targets(targets: list[int] | None, outputs: Tensor) -> Tensor:
    n, classes = outputs.shape
    if targets is None:
        return outputs.argmax(1)
    if len(targets) not in (1, n):
        raise CommandLineError(
            f"--targets: give one class or one per image ({n}), got {len(targets)}"
        )
    bad = [t for t in targets if not 0 <= t < classes]
    if bad:
        raise CommandLineError(
            f"--targets: classes must be in [0, {classes}), got {bad}"
        )
    return torch.tensor(targets * n if len(targets) == 1 else targets)


def find_layer(model: nn.Module, name: str | None) -> nn.Module | None:
    if name is None:
        return None
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        convs = [
            n
            for n, m in modules.items()
            if "Conv" in type(m).__name__
            or (getattr(m, "original_name", "").startswith("Conv"))
        ]
        raise CommandLineError(
            f"--layer: the model has no module named {name!r}; its conv layers: "
            f"{', '.join(convs) or 'none'}"
        )
    return modules[name]


def run_compare(args: argparse.Namespace) -> int:
    out = _output_folder(args.out)
    settings = Settings(
        n_steps=args.n_steps,
        n_baselines=args.n_baselines,
        n_samples=args.n_samples,
        blur_sigma=args.blur_sigma,
        patch_size=args.patch_size,
        internal_batch_size=args.internal_batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    model = load_model(args.model, args.weights)
    with eval_mode(model):
        return compare_model(model, args, settings, out)


def compare_model(
    model: nn.Module, args: argparse.Namespace, settings: Settings, out: Path
) -> int:
    images, value_range = normalise(
        load_images(args.images, args.size, "--images", args.grayscale),
        args,
        "--images",
    )
    if args.reference_images is not None:
        references, _ = normalise(
            load_images(
                args.reference_images, args.size, "--reference-images", args.grayscale
            ),
            args,
            "--reference-images",
        )
        if references.shape[1:] != images.shape[1:]:
            raise CommandLineError(
                f"--reference-images: shape {tuple(references.shape[1:])} differs "
                f"from the images' {tuple(images.shape[1:])}"
            )
    else:
        references = images
    if args.n_images is not None:
        images = images[: args.n_images]
    layer = find_layer(model, args.layer)
    if args.methods is None:
        names = [m for m in METHODS if m != "rsi-grad-cam" or layer is not None]
    else:
        names = list(dict.fromkeys(args.methods))
        if "rsi-grad-cam" in names and layer is None:
            raise CommandLineError("--layer: rsi-grad-cam needs --layer NAME")
    problem_batch = max(1, (1 << 20) // images[0].numel())
    outputs = model_outputs(
        model, images, settings.internal_batch_size or problem_batch
    )
    targets = resolve_targets(args.targets, outputs)
    given = "the classes given by --targets" if args.targets else "its predictions"
    source = (
        f"`{args.reference_images}`."
        if args.reference_images
        else "the images themselves (give --reference-images for training data)."
    )
    problem = Problem(
        model=model,
        images=images,
        targets=targets,
        value_range=value_range,
        reference_data=references,
        layer=layer,
        title=f"Baseline comparison: {args.model}",
        description=(
            f"Model `{args.model}`"
            + (f" with weights `{args.weights}`" if args.weights else "")
            + f", images `{args.images}`, explained at {given}. Training-data "
            f"baselines, EG and the PGIG patterns draw from {source}"
        ),
        labels=[f"class {int(t)}" for t in targets],
    )
    outcome = run_comparison(
        problem, settings, names, out, required=args.methods is not None
    )
    print(f"\n{problem.title} ({outcome.seconds:.1f} s)\n")
    print(outcome.result.format_table())
    for label, why in outcome.skipped.items():
        print(f"skipped {label}: {why}", file=sys.stderr)
    print(f"\nwritten to {out}")
    return 0


# ----------------------------------------------------------------------------
# The parser and the entry point


def _output_folder(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CommandLineError(f"--out: {path} exists and is not a folder")
    return out


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite and >= 0, got {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the results")
    parser.add_argument("--n-images", type=_positive_int, help="images to explain")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw")
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars"
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        help="torch CPU threads (demo default: 1; compare default: torch's)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare attribution baselines (Distill 2020) and "
        "baseline-aware methods on a model and images.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="train the embedded DigitsCNN on scikit-learn digits and compare",
        description="Trains the embedded DigitsCNN on scikit-learn's digits and "
        "compares IG with 7 baselines, EG, PGIG, RSI-Grad-CAM and a random control.",
    )
    _add_common(demo)
    demo.add_argument(
        "--variant",
        choices=("digits", "inverted", "decoy", "all"),
        default="inverted",
        help="white ink on black, black ink on white (default: the Distill "
        "point), a label-revealing decoy patch, or all three",
    )
    demo.add_argument(
        "--quick", action="store_true", help="8x8 images, 16 of them, fewer steps"
    )
    # The embedded model is tiny: a second thread only adds synchronisation.
    demo.set_defaults(run=run_demo, threads=1)

    compare = commands.add_parser(
        "compare",
        help="the same comparison on your model and images",
        description="Runs the baseline comparison on your model and images.",
    )
    _add_common(compare)
    compare.add_argument(
        "--model",
        required=True,
        help="a TorchScript file or package.module:callable (a factory returning "
        "an nn.Module, or a module object)",
    )
    compare.add_argument("--weights", help="a state_dict file (loaded weights_only)")
    compare.add_argument(
        "--images",
        required=True,
        help="a .pt tensor file (N, C, H, W) or a folder of image files",
    )
    compare.add_argument(
        "--reference-images",
        help="training data for the data baselines, EG and PGIG patterns "
        "(default: the images)",
    )
    compare.add_argument(
        "--size", type=_positive_int, nargs="+", metavar="PX", help="resize to H [W]"
    )
    compare.add_argument(
        "--grayscale", action="store_true", help="read image files as one channel"
    )
    compare.add_argument(
        "--targets",
        type=int,
        nargs="+",
        help="one class, or one per image (default: the model's predictions)",
    )
    compare.add_argument("--mean", type=float, nargs="+", help="normalisation mean")
    compare.add_argument("--std", type=float, nargs="+", help="normalisation std")
    compare.add_argument(
        "--value-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="pixel range before normalisation (default 0 1)",
    )
    compare.add_argument(
        "--methods", nargs="+", choices=list(METHODS), help="default: all"
    )
    compare.add_argument("--layer", help="conv layer for RSI-Grad-CAM (module name)")
    compare.add_argument("--n-steps", type=_positive_int, default=32)
    compare.add_argument(
        "--n-baselines",
        type=_positive_int,
        default=8,
        help="draws of the uniform, gaussian and training-data baselines",
    )
    compare.add_argument(
        "--n-samples", type=_positive_int, default=100, help="EG samples"
    )
    compare.add_argument("--blur-sigma", type=_nonnegative_float)
    compare.add_argument("--patch-size", type=_positive_int)
    compare.add_argument("--internal-batch-size", type=_positive_int)
    compare.set_defaults(run=run_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``captum-baselines`` with ``argv`` (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for a bad argument (with a message on
        stderr naming the option).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return int(args.run(args))
    except CommandLineError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)


__all__ = ["METHODS", "CommandLineError", "build_parser", "main"]
