"""Running a comparison: build the registered methods, probe them, estimate the
work, compare, and write the report and figures; the ``demo`` and ``compare``
pipelines on top.

Everything printed while working goes to stderr; the results table goes to
stdout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._hooks import eval_mode
from ..distributed import is_main_process
from ..metrics.compare import CURVES, ComparisonResult, compare_attributions
from . import figures, report
from .errors import OptionError
from .loading import (
    choose_layer,
    load_images,
    load_model,
    model_outputs,
    normalize,
    resolve_targets,
)
from .methods import METHODS, AttributionFn, MethodSpec
from .photos import PHOTO_SCALES, PHOTOS_VARIANT, photo_problem, photo_settings
from .problems import (
    DEMO_SCALES,
    VARIANTS,
    Problem,
    Settings,
    demo_problem,
    internal_batch_size,
)

#: Images each method is tried on before the comparison.
PROBE_IMAGES = 2

#: Images per call of each method: the unit in which torchrun's processes share
#: the images and in which the random draws are made, so that the results do not
#: depend on the number of processes.
BATCH_IMAGES = 8


@dataclass
class Outcome:
    """What one comparison produced.

    Attributes:
        problem: What was compared.
        result: The comparison (table, curves, attributions).
        skipped: ``{label: why}`` for each method that could not run.
        seconds: Wall time of building, probing and comparing.
        curve_seconds: The part of it spent on the removal curves and the
            intervals (the comparison's time less the methods' own).
    """

    problem: Problem
    result: ComparisonResult
    skipped: dict[str, str]
    seconds: float
    curve_seconds: float = 0.0


def available_cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: Most threads ``compare`` tries: beyond 4, a conv net's passes gain little.
MAX_THREADS = 4
#: More threads are used only when a timed pass is at least this much faster:
#: on shared cores the gain is fragile, the loss large (10-20x measured on a tiny
#: conv net with two threads on two busy cores).
THREADS_GAIN = 1.33


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n``, restored on exit."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fastest_threads(
    model: Any, images: Tensor, candidates: Sequence[int]
) -> tuple[int, dict[int, float]]:
    """The thread count among ``candidates`` (smallest first) with the fastest
    forward+backward pass on up to 8 images, and the seconds measured per pass
    (best of 3 after a warm-up).  A larger count must beat the smaller ones by
    :data:`THREADS_GAIN`."""
    x = images[:8].detach().clone().requires_grad_(True)
    seconds: dict[int, float] = {}
    for n in dict.fromkeys(candidates):
        with torch_threads(n), torch.enable_grad():
            runs = []
            for _ in range(4):
                start = time.perf_counter()
                torch.autograd.grad(model(x).sum(), x)
                runs.append(time.perf_counter() - start)
        seconds[n] = min(runs[1:])
    best = next(iter(seconds))
    for n, t in seconds.items():
        if t * THREADS_GAIN < seconds[best]:
            best = n
    return best, seconds


def choose_threads(model: Any, images: Tensor, threads: int | None) -> int:
    """``threads``, or (``None``) 1 or up to :data:`MAX_THREADS` as measured by
    :func:`fastest_threads`; says which on stderr."""
    if threads is not None:
        return threads
    most = min(MAX_THREADS, available_cpus())
    best, seconds = fastest_threads(model, images, (1, most))
    timings = ", ".join(f"{1e3 * t:.3g} ms on {n}" for n, t in seconds.items())
    say(f"threads: {best} (a forward+backward pass of up to 8 images: {timings})")
    return best


def select_methods(names: Sequence[str] | None) -> list[MethodSpec]:
    """The registered methods named (in the registry's order), or all of them."""
    if names is None:
        return list(METHODS.values())
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise OptionError(
            f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}"
        )
    return [spec for name, spec in METHODS.items() if name in names]


def work_estimate(
    problem: Problem, settings: Settings, specs: Sequence[MethodSpec]
) -> str:
    """A line saying how much work the comparison is: methods x images x passes."""
    n = problem.images.shape[0]
    per_image = {spec.label: spec.passes(settings) for spec in specs}
    total = n * sum(per_image.values())
    listed = ", ".join(f"{label} {p}" for label, p in per_image.items())
    shape = "x".join(map(str, problem.images.shape[1:]))
    return (
        f"work: {len(specs)} methods x {n} images of {shape} = {total:,} "
        f"forward+backward passes (per image: {listed}), then the removal curves; "
        f"{torch.get_num_threads()} torch thread(s)"
    )


def build_methods(
    problem: Problem,
    settings: Settings,
    specs: Sequence[MethodSpec],
    required: bool = False,
) -> tuple[dict[str, AttributionFn], dict[str, str]]:
    """``({label: method}, {label: why skipped})``.

    Each method is built and tried on :data:`PROBE_IMAGES` images first.  One that
    cannot run (no layer, not importable, unsupported by this model) is an error
    when the user asked for it (``required``), else skipped with its reason.
    """
    methods: dict[str, AttributionFn] = {}
    skipped: dict[str, str] = {}
    probe = problem.images[:PROBE_IMAGES]
    probe_target = problem.targets[:PROBE_IMAGES]
    for spec in specs:
        try:
            method = spec.build(problem, settings)
            _check_attributions(method(probe, probe_target), probe)
        except OptionError as error:
            if required:
                raise
            skipped[spec.label] = str(error)
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            reason = f"{type(error).__name__}: {error}"
            if isinstance(problem.model, torch.jit.ScriptModule):
                reason += (
                    " (a TorchScript model cannot be hooked; give --model "
                    "package.module:callable for this method)"
                )
            if required:
                raise OptionError(f"--methods: {spec.name} fails: {reason}") from error
            skipped[spec.label] = reason
        else:
            methods[spec.label] = method
    return methods, skipped


def _check_attributions(output: Any, x: Tensor) -> None:
    attributions = output[0] if isinstance(output, tuple) else output
    if not isinstance(attributions, Tensor) or attributions.shape[0] != x.shape[0]:
        raise ValueError("the method returned no attributions for the probe images")
    if not bool(torch.isfinite(attributions).all()):
        raise ValueError("the method returned NaN or infinite attributions")


def run_comparison(
    problem: Problem,
    settings: Settings,
    specs: Sequence[MethodSpec],
    required: bool = False,
) -> Outcome | None:
    """Builds and probes the methods, then compares them on the problem under
    every curve of :data:`~captum_baselines.metrics.compare.CURVES` (ROAD
    included).

    Under ``torchrun`` every process calls it and shares the images; rank 0
    returns the outcome, the others ``None``."""
    start = time.perf_counter()
    say(work_estimate(problem, settings, specs))
    methods, skipped = build_methods(problem, settings, specs, required)
    say(f"{len(methods)} of {len(specs)} methods ran on {PROBE_IMAGES} probe images")
    compared = time.perf_counter()
    result = compare_attributions(
        problem.model,
        problem.images,
        problem.targets,
        methods,
        curves=CURVES,
        fractions=torch.linspace(0, 1, settings.n_fractions, dtype=torch.float64),
        patch_size=problem.patch_size(settings),
        noise_std=problem.road_noise_std(settings),
        generator=torch.Generator().manual_seed(settings.seed),
        batch_size=BATCH_IMAGES,
        internal_batch_size=problem.internal_batch_size(settings),
        show_progress=settings.show_progress,
    )
    if result is None:  # not rank 0 under torchrun: rank 0 reports
        return None
    end = time.perf_counter()
    attributing = sum(r.seconds for r in result.methods.values())
    return Outcome(problem, result, skipped, end - start, end - compared - attributing)


def say(line: str) -> None:
    """A line of progress on stderr (from rank 0 alone under ``torchrun``)."""
    if is_main_process():
        print(line, file=sys.stderr, flush=True)


def write_outcome(outcome: Outcome, settings: Settings, out: Path) -> report.Reading:
    """``results.md``, ``.csv``, ``.json`` and the figures in ``out``; returns
    the reading."""
    out.mkdir(parents=True, exist_ok=True)
    reading = report.write_report(outcome, settings, out)
    figures.write_figures(outcome, settings, out)
    return reading


def output_folder(path: str | Path) -> Path:
    """``--out`` as a folder (created when results are written)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out: {path} exists and is not a folder")
    return out


def _print_table(outcome: Outcome, heading: str, reading: report.Reading) -> None:
    print(f"\n{heading} ({outcome.seconds:.1f} s)\n")
    print(outcome.result.format_table())
    if reading.rankings:
        print("\nRankings, best first ({A, B}: overlapping intervals, not ordered):")
        for line in reading.rankings:
            print(f"- {line}")
    for label, why in outcome.skipped.items():
        print(f"skipped {label}: {why}", file=sys.stderr)


# ----------------------------------------------------------------------------
# The pipelines


def run_demo(
    out: str | Path,
    variants: Sequence[str] = ("inverted",),
    *,
    quick: bool = False,
    n_images: int | None = None,
    seed: int = 0,
    show_progress: bool = True,
    threads: int | None = 1,
) -> list[Outcome]:
    """``captum-baselines demo``: the embedded DigitsCNN on each digits variant,
    or (variant ``"photos"``) the pretrained EfficientNet-Lite0 on real photos.

    With one variant the results go to ``out``; with several, each to
    ``out/<variant>`` and a summary of all to ``out``.  ``threads``: torch
    threads (the tiny digits model runs fastest on one); ``None`` measures.
    Under ``torchrun`` every process builds the same problem and rank 0 alone
    writes and returns the outcomes (the others an empty list).
    """
    folder = output_folder(out)
    unknown = [v for v in variants if v not in VARIANTS and v != PHOTOS_VARIANT.name]
    if unknown:
        raise OptionError(f"--variant: unknown {unknown}")
    outcomes, readings = [], []
    for name in variants:
        with torch_threads(threads or 1):
            problem, settings = demo_problem_and_settings(
                name, quick, n_images, seed, show_progress
            )
        with torch_threads(choose_threads(problem.model, problem.images, threads)):
            written = _demo_variant(problem, settings, folder, len(variants))
        if written is not None:
            outcomes.append(written[0])
            readings.append(written[1])
    if not is_main_process():
        return outcomes
    if len(variants) > 1:
        report.write_summary(folder, outcomes, readings)
    print(f"\nwritten to {folder}")
    return outcomes


def demo_problem_and_settings(
    variant: str, quick: bool, n_images: int | None, seed: int, show_progress: bool
) -> tuple[Problem, Settings]:
    """The problem and settings of one demo variant at its full or quick scale
    (the progress bars on rank 0 alone under ``torchrun``)."""
    show_progress = show_progress and is_main_process()
    if variant == PHOTOS_VARIANT.name:
        photo_scale = PHOTO_SCALES["quick" if quick else "full"]
        if n_images is not None:
            photo_scale = dataclasses.replace(photo_scale, n_images=n_images)
        settings = photo_settings(photo_scale, seed, show_progress)
        return photo_problem(photo_scale, settings), settings
    scale = DEMO_SCALES["quick" if quick else "full"]
    if n_images is not None:
        scale = dataclasses.replace(scale, n_images=n_images)
    settings = Settings(
        n_steps=scale.n_steps,
        n_baselines=scale.n_baselines,
        n_samples=scale.n_samples,
        seed=seed,
        show_progress=show_progress,
    )
    return demo_problem(VARIANTS[variant], scale, settings), settings


def _demo_variant(
    problem: Problem, settings: Settings, folder: Path, n_variants: int
) -> tuple[Outcome, report.Reading] | None:
    if problem.layer is not None:
        layer = problem.layer
        say(f"layer methods explain layer {layer.name!r}: {layer.reason}")
    outcome = run_comparison(problem, settings, list(METHODS.values()))
    if outcome is None:
        return None
    variant = problem.facts["variant"]
    reading = write_outcome(
        outcome, settings, folder / variant if n_variants > 1 else folder
    )
    accuracy = problem.facts.get("test_accuracy")
    heading = problem.title
    if accuracy is not None:
        heading += f", test accuracy {accuracy:.1%}"
    _print_table(outcome, heading, reading)
    return outcome, reading


def run_compare(
    out: str | Path,
    model: str,
    images: str,
    *,
    weights: str | None = None,
    reference_images: str | None = None,
    size: Sequence[int] | None = None,
    grayscale: bool = False,
    targets: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    value_range: Sequence[float] | None = None,
    methods: Sequence[str] | None = None,
    layer: str | None = None,
    n_images: int | None = None,
    settings: Settings | None = None,
    threads: int | None = None,
) -> Outcome | None:
    """``captum-baselines compare``: the comparison on the user's model and images.

    Arguments are the command line's options (see ``captum-baselines compare
    --help``; ``threads=None`` is ``--threads auto``).  Everything is checked
    (model, images, targets, layer) before any attribution; the model runs in
    eval mode and its flags are restored, and so are torch's threads.  Under
    ``torchrun`` rank 0 alone writes and returns the outcome (the others
    ``None``).
    """
    folder = output_folder(out)
    settings = settings or Settings()
    specs = select_methods(None if methods is None else list(dict.fromkeys(methods)))
    network = load_model(model, weights)
    with eval_mode(network):

        def read(path: str, option: str) -> tuple[Tensor, tuple[Any, Any]]:
            raw = load_images(path, size, option, grayscale)
            return normalize(raw, option, mean, std, value_range)

        x, valid_range = read(images, "--images")
        references = x
        if reference_images is not None:
            references = read(reference_images, "--reference-images")[0]
            if references.shape[1:] != x.shape[1:]:
                raise OptionError(
                    f"--reference-images: shape {tuple(references.shape[1:])} "
                    f"differs from the images' {tuple(x.shape[1:])}"
                )
        x = x[:n_images] if n_images is not None else x
        batch = internal_batch_size(x, settings)
        classes = resolve_targets(targets, model_outputs(network, x, batch))
        chosen, note = choose_layer(network, x, layer)
        if chosen is not None:
            say(f"layer methods explain layer {chosen.name!r}: {chosen.reason}")
        if methods is not None and chosen is None:
            needing = [s.name for s in specs if s.needs_layer]
            if needing:
                raise OptionError(f"--layer: {', '.join(needing)}: {note}")
        given = "the classes given by --targets" if targets else "its predictions"
        source = (
            f"`{reference_images}`."
            if reference_images
            else "the images themselves (give --reference-images for training data)."
        )
        problem = Problem(
            model=network,
            images=x,
            targets=classes,
            value_range=valid_range,
            reference_data=references,
            layer=chosen,
            layer_note=note,
            title=f"Baseline comparison: {model}",
            description=(
                f"Model `{model}`"
                + (f" with weights `{weights}`" if weights else "")
                + f", images `{images}`, explained at {given}. Training-data "
                f"baselines, EG and the PGIG patterns draw from {source}"
            ),
            labels=[f"class {int(t)}" for t in classes],
        )
        with torch_threads(choose_threads(network, x, threads)):
            outcome = run_comparison(
                problem, settings, specs, required=methods is not None
            )
            if outcome is not None:
                reading = write_outcome(outcome, settings, folder)
    if outcome is None:
        return None
    _print_table(outcome, problem.title, reading)
    print(f"\nwritten to {folder}")
    return outcome


__all__ = [
    "BATCH_IMAGES",
    "MAX_THREADS",
    "PROBE_IMAGES",
    "Outcome",
    "available_cpus",
    "build_methods",
    "choose_threads",
    "demo_problem_and_settings",
    "fastest_threads",
    "output_folder",
    "run_compare",
    "run_comparison",
    "run_demo",
    "select_methods",
    "torch_threads",
    "work_estimate",
    "write_outcome",
]
