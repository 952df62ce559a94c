"""The methods that ``demo`` and ``compare`` run, in a registry.

Each method is one *builder* decorated with :func:`register`: given the
:class:`~.problems.Problem` and the :class:`~.problems.Settings`, it returns a
callable ``method(inputs, target)`` giving attributions, or ``(attributions,
delta)`` with one completeness delta per example (what
:func:`~captum_baselines.metrics.compare_attributions` takes).  The decorator
records the command-line name, the label in the table and the cost per image;
the order of registration is the order of the table.  A method that draws at
random takes a ``generator`` keyword: the comparison passes one per batch of
images (:func:`~captum_baselines.metrics.compare.batch_generator`), so that the
draws for an image do not depend on how ``torchrun``'s processes share the
images.  Adding a method is one decorated function::

    @register("blur-ig", "Blur IG", passes=steps)
    def blur_ig(problem: Problem, settings: Settings) -> AttributionFn:
        \"\"\"Blur IG (Xu et al. 2020): the path from a maximal blur.\"\"\"
        from ..attr import BlurIntegratedGradients

        return attribute_with(BlurIntegratedGradients(problem.model), problem,
                              settings, delta=True)

Builders import torch and the methods when called, so that importing this module
(for ``--help``) stays instant.  A builder that cannot serve the problem raises
:class:`~.errors.OptionError` naming the option to fix (e.g. ``--layer``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import OptionError
from .problems import Problem, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor

AttributionFn = Callable[["Tensor", Any], Any]
Builder = Callable[[Problem, Settings], AttributionFn]

#: Iterations of the optimization of Lerma & Lucas's uniform-output baseline
#: (the paper's 200): the default of ``Settings.uniform_output_iterations``.
UNIFORM_OUTPUT_ITERATIONS = 200


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    Attributes:
        name: The command-line name (``--methods``).
        label: The name in the table and the figures.
        build: The builder ``(problem, settings) -> method``.
        passes: Forward+backward passes per image under ``settings``, for the
            estimate printed before a run.
        needs_layer: Whether the method explains a layer (``problem.layer``).
        summary: One line saying what the method is (the builder's docstring).
    """

    name: str
    label: str
    build: Builder
    passes: Callable[[Settings], int]
    needs_layer: bool = False
    summary: str = ""


#: The registry: command-line name -> :class:`MethodSpec`, in the table's order.
METHODS: dict[str, MethodSpec] = {}


def register(
    name: str,
    label: str,
    *,
    passes: Callable[[Settings], int],
    needs_layer: bool = False,
) -> Callable[[Builder], Builder]:
    """Registers the decorated builder as method ``name`` with table ``label``.

    Args:
        name: The command-line name, lower case with hyphens.
        label: The label in the table; unique.
        passes: Forward+backward passes per image, e.g. :func:`steps`.
        needs_layer: The method explains ``problem.layer`` (it is skipped with
            the reason when there is none).

    Returns:
        The decorator; it returns the builder unchanged.
    """

    def decorate(build: Builder) -> Builder:
        taken = [m for m in METHODS.values() if name == m.name or label == m.label]
        if taken:
            raise ValueError(f"method {name!r} / {label!r} is already registered")
        summary = (build.__doc__ or "").strip().split("\n\n")[0]
        METHODS[name] = MethodSpec(
            name, label, build, passes, needs_layer, " ".join(summary.split())
        )
        return build

    return decorate


def method_generator(settings: Settings, name: str) -> torch.Generator:
    """One generator per method, so that a method's draws do not depend on which
    other methods run; used where the caller passes none (the probe)."""
    import torch

    return torch.Generator().manual_seed(settings.seed + zlib.crc32(name.encode()))


def steps(settings: Settings) -> int:
    """Cost of one path of ``n_steps`` points."""
    return settings.n_steps


def steps_per_baseline(settings: Settings) -> int:
    """Cost of one path per baseline drawn."""
    return settings.n_steps * settings.n_baselines


def attribute_with(
    attribution: Any,
    problem: Problem,
    settings: Settings,
    *,
    delta: bool,
    **kwargs: Any,
) -> AttributionFn:
    """``method(x, target)`` calling ``attribution.attribute`` with the settings'
    ``n_steps`` and the problem's ``internal_batch_size`` (and the completeness
    delta when the method returns one); ``kwargs`` are passed on (``baselines``
    may be a callable ``x -> baselines``)."""

    def method(x: Tensor, target: Any) -> Any:
        extra = dict(kwargs)
        if callable(extra.get("baselines")):
            extra["baselines"] = extra["baselines"](x)
        if delta:
            extra["return_convergence_delta"] = True
        return attribution.attribute(
            x,
            target=target,
            n_steps=settings.n_steps,
            internal_batch_size=problem.internal_batch_size(settings),
            **extra,
        )

    return method


def integrated_gradients(
    problem: Problem, settings: Settings, baseline: Callable[[Tensor], Tensor]
) -> AttributionFn:
    """IG from one baseline per example, with its completeness delta."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(problem.model)
    return attribute_with(ig, problem, settings, delta=True, baselines=baseline)


def averaged_integrated_gradients(
    problem: Problem,
    settings: Settings,
    name: str,
    draw: Callable[[Tensor, int, torch.Generator], Tensor],
) -> AttributionFn:
    """IG averaged over ``n_baselines`` draws ``draw(x, k, generator)`` of shape
    ``(k, *x.shape)`` from a distribution, with the completeness delta against
    the mean over the draws.  The draws come from the ``generator`` the comparison
    passes per batch, else from :func:`method_generator` of ``name``."""
    from captum.attr import IntegratedGradients

    from ..baselines import average_over_baselines

    ig = IntegratedGradients(problem.model)
    own = method_generator(settings, name)

    def method(x: Tensor, target: Any, generator: torch.Generator | None = None) -> Any:
        return average_over_baselines(
            ig,
            x,
            draw(x, settings.n_baselines, own if generator is None else generator),
            target=target,
            n_steps=settings.n_steps,
            internal_batch_size=problem.internal_batch_size(settings),
            return_convergence_delta=True,
        )

    return method


# ----------------------------------------------------------------------------
# The registered methods, in the table's order


@register("ig-black", "IG black", passes=steps)
def ig_black(problem: Problem, settings: Settings) -> AttributionFn:
    """IG from the bottom of the valid range (Distill's black)."""
    from ..baselines import black

    return integrated_gradients(
        problem, settings, lambda x: black(x, problem.value_range)
    )


@register("ig-white", "IG white", passes=steps)
def ig_white(problem: Problem, settings: Settings) -> AttributionFn:
    """IG from the top of the valid range."""
    from ..baselines import white

    return integrated_gradients(
        problem, settings, lambda x: white(x, problem.value_range)
    )


@register("ig-max-distance", "IG max distance", passes=steps)
def ig_max_distance(problem: Problem, settings: Settings) -> AttributionFn:
    """IG from the farthest point of the valid range in L1."""
    from ..baselines import max_distance

    return integrated_gradients(
        problem, settings, lambda x: max_distance(x, problem.value_range)
    )


@register("ig-blur", "IG blur", passes=steps)
def ig_blur(problem: Problem, settings: Settings) -> AttributionFn:
    """IG from the Gaussian-blurred input."""
    from ..baselines import blur

    sigma = problem.blur_sigma(settings)
    return integrated_gradients(problem, settings, lambda x: blur(x, sigma))


@register("ig-uniform", "IG uniform", passes=steps_per_baseline)
def ig_uniform(problem: Problem, settings: Settings) -> AttributionFn:
    """IG averaged over uniform noise in the valid range."""
    from ..baselines import uniform

    return averaged_integrated_gradients(
        problem,
        settings,
        "ig-uniform",
        lambda x, k, g: uniform(x, problem.value_range, n_samples=k, generator=g),
    )


@register("ig-gaussian", "IG gaussian", passes=steps_per_baseline)
def ig_gaussian(problem: Problem, settings: Settings) -> AttributionFn:
    """IG averaged over Gaussian noise around the input (truncated to the range)."""
    from ..baselines import gaussian

    sigma, vr = problem.gaussian_sigma(), problem.value_range
    return averaged_integrated_gradients(
        problem,
        settings,
        "ig-gaussian",
        lambda x, k, g: gaussian(x, sigma, vr, n_samples=k, generator=g),
    )


@register("ig-training", "IG training data", passes=steps_per_baseline)
def ig_training(problem: Problem, settings: Settings) -> AttributionFn:
    """IG averaged over examples of the reference data."""
    from ..baselines import from_data

    data = problem.reference_data
    return averaged_integrated_gradients(
        problem,
        settings,
        "ig-training",
        lambda x, k, g: from_data(data, x, n_samples=k, generator=g),
    )


@register("eg", "EG training data", passes=lambda s: s.n_samples)
def expected_gradients(problem: Problem, settings: Settings) -> AttributionFn:
    """Expected Gradients over the reference data."""
    from ..attr.expected_gradients import ExpectedGradients

    eg = ExpectedGradients(problem.model)
    own = method_generator(settings, "eg")

    def method(x: Tensor, target: Any, generator: torch.Generator | None = None) -> Any:
        return eg.attribute(
            x,
            baselines=problem.reference_data,
            target=target,
            n_samples=settings.n_samples,
            internal_batch_size=problem.internal_batch_size(settings),
            generator=own if generator is None else generator,
            return_convergence_delta=True,
        )

    return method


@register("pgig", "PGIG black", passes=steps)
def pattern_guided_integrated_gradients(
    problem: Problem, settings: Settings
) -> AttributionFn:
    """Pattern-Guided IG from black (the paper's zero baseline), patterns fitted
    on the reference data; not complete by design."""
    from ..attr.patterns import fit_patterns
    from ..attr.pgig import PatternGuidedIntegratedGradients
    from ..baselines import black

    # Every rank fits on all the data (not the distributed fit, whose sums
    # round differently), so that the table equals a single-process run's.
    patterns = fit_patterns(
        problem.model, problem.reference_data, show_progress=False, distributed=False
    )
    pgig = PatternGuidedIntegratedGradients(problem.model, patterns)
    return attribute_with(
        pgig,
        problem,
        settings,
        delta=False,
        baselines=lambda x: black(x, problem.value_range),
    )


@register(
    "rsi-grad-cam",
    "RSI-Grad-CAM uniform output",
    passes=lambda s: s.n_steps + 1,
    needs_layer=True,
)
def rsi_grad_cam(problem: Problem, settings: Settings) -> AttributionFn:
    """RSI-Grad-CAM at the problem's layer from Lerma & Lucas's uniform-output
    baseline (optimized from black)."""
    from ..attr.layer_rsi_grad_cam import LayerRSIGradCam
    from ..baselines import black, uniform_output

    if problem.layer is None:
        raise OptionError(f"--layer: {problem.layer_note}")
    rsi = LayerRSIGradCam(problem.model, problem.layer.module)
    vr = problem.value_range
    optimized: dict[tuple[Any, ...], Tensor] = {}

    def baseline(x: Tensor) -> Tensor:
        # Optimized from black, the baseline is the same for every image: it is
        # computed once per image shape (settings.uniform_output_iterations
        # passes of one image in all), not once per image.
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if key not in optimized:
            optimized[key] = uniform_output(
                problem.model,
                black(x[:1], vr),
                lr=0.5,
                n_iter=settings.uniform_output_iterations,
                value_range=vr,
            )
        return optimized[key].expand_as(x)

    return attribute_with(rsi, problem, settings, delta=True, baselines=baseline)


# ----------------------------------------------------------------------------
# Path methods that answer the baseline question differently, and IDGI


def quadrature_ig_with_idgi(
    problem: Problem, settings: Settings, baseline: Callable[[Tensor], Tensor]
) -> AttributionFn:
    """The package's IG from one baseline, its rows weighted as IDGI does."""
    from ..attr import QuadratureIntegratedGradients

    ig = QuadratureIntegratedGradients(problem.model)
    return attribute_with(
        ig, problem, settings, delta=True, baselines=baseline, idgi=True
    )


def blur_integrated_gradients(
    problem: Problem, settings: Settings, idgi: bool
) -> AttributionFn:
    """Blur IG from the image blurred at the paper's 50 px per 224 px of side,
    black beyond the border."""
    from ..attr import BlurIntegratedGradients

    blur_ig = BlurIntegratedGradients(problem.model)
    return attribute_with(
        blur_ig,
        problem,
        settings,
        delta=True,
        max_sigma=max(1.0, problem.side * 50 / 224),
        value_range=problem.value_range,
        idgi=idgi,
    )


def guided_integrated_gradients(
    problem: Problem, settings: Settings, idgi: bool
) -> AttributionFn:
    """Guided IG from black with the paper's fraction 0.25 and max_dist 0.02."""
    from ..attr import GuidedIntegratedGradients
    from ..baselines import black

    guided = GuidedIntegratedGradients(problem.model)
    return attribute_with(
        guided,
        problem,
        settings,
        delta=True,
        baselines=lambda x: black(x, problem.value_range),
        idgi=idgi,
    )


@register("ig-black-idgi", "IG black + IDGI", passes=steps)
def ig_black_idgi(problem: Problem, settings: Settings) -> AttributionFn:
    """IG from black, each step weighted as IDGI does (Yang et al. 2023)."""
    from ..baselines import black

    return quadrature_ig_with_idgi(
        problem, settings, lambda x: black(x, problem.value_range)
    )


@register("ig-blur-idgi", "IG blur + IDGI", passes=steps)
def ig_blur_idgi(problem: Problem, settings: Settings) -> AttributionFn:
    """IG from the blurred image, each step weighted as IDGI does."""
    from ..baselines import blur

    sigma = problem.blur_sigma(settings)
    return quadrature_ig_with_idgi(problem, settings, lambda x: blur(x, sigma))


@register("blur-ig", "Blur IG", passes=steps)
def blur_ig(problem: Problem, settings: Settings) -> AttributionFn:
    """Blur IG (Xu et al. 2020): the path through ever lighter blurs, no baseline."""
    return blur_integrated_gradients(problem, settings, idgi=False)


@register("blur-ig-idgi", "Blur IG + IDGI", passes=steps)
def blur_ig_idgi(problem: Problem, settings: Settings) -> AttributionFn:
    """Blur IG with IDGI's weighting."""
    return blur_integrated_gradients(problem, settings, idgi=True)


@register("guided-ig", "Guided IG black", passes=steps)
def guided_ig(problem: Problem, settings: Settings) -> AttributionFn:
    """Guided IG (Kapishnikov et al. 2021): a path adapted to the gradients."""
    return guided_integrated_gradients(problem, settings, idgi=False)


@register("guided-ig-idgi", "Guided IG black + IDGI", passes=steps)
def guided_ig_idgi(problem: Problem, settings: Settings) -> AttributionFn:
    """Guided IG with IDGI's weighting."""
    return guided_integrated_gradients(problem, settings, idgi=True)


__all__ = [
    "METHODS",
    "UNIFORM_OUTPUT_ITERATIONS",
    "AttributionFn",
    "Builder",
    "MethodSpec",
    "attribute_with",
    "averaged_integrated_gradients",
    "integrated_gradients",
    "method_generator",
    "register",
    "steps",
    "steps_per_baseline",
]
