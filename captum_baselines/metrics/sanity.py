"""Sanity checks by parameter randomization, and the Spearman correlations of
Sundararajan & Taly.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018,
https://arxiv.org/abs/1810.03292, randomize a network's layers, from the top down
one after another (*cascading*) or one at a time (*independent*), and compare
the attributions with the original ones by Spearman's rank correlation of their
absolute values.  Sundararajan & Taly, "A Note about: Local Explanation Methods
for Deep Neural Networks lack Sensitivity to Parameter Values", 2018,
https://arxiv.org/abs/1806.04205, Fig. 2, plot three correlations:

* blue, :func:`spearman`: the signed attributions over all features;
* green, ``spearman(a, b, absolute=True)``: the absolute attributions over all
  features (Adebayo et al.'s measure), inflated by the features where the input
  equals the baseline (there integrated gradients are 0 whatever the
  parameters);
* red, :func:`spearman_nz`: the absolute attributions over the features where
  the input differs from the baseline only.

Their Remark 1: once the output layer is random, integrated gradients behave
like ``x * r`` for a random ``r``, and ``spearman_nz`` of two such maps is about
0.4 (0.424 on MNIST), not 0: the factor ``x`` is shared.  The check reports all
three correlations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from captum._utils.typing import TargetType
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._hooks import registered_hooks
from .._validation import check_finite, check_generator, check_inputs, check_tensor

Explain = Callable[[nn.Module, Any, TargetType], Any]
Randomize = Callable[[nn.Module, "torch.Generator | None"], None]
Mode = Literal["cascading", "independent"]

#: What each correlation of :class:`RandomizationResult` is, in the words of
#: Sundararajan & Taly's Fig. 2.
LABELS = {
    "spearman_signed": "Spearman, signed, all features (Fig. 2 blue)",
    "spearman_abs": "Spearman, absolute, all features (Fig. 2 green)",
    "spearman_nz": "spearman_nz: absolute, input != baseline (Fig. 2 red)",
}


def _flat(values: Any, name: str) -> Tensor:
    """``(N, D)`` float64: every tensor of ``values`` flattened per example, joined."""
    tensors = values if isinstance(values, tuple) else (values,)
    for i, t in enumerate(tensors):
        check_tensor(name if len(tensors) == 1 else f"{name}[{i}]", t)
    n = tensors[0].shape[0]
    flat = torch.cat([t.detach().reshape(n, -1) for t in tensors], 1)
    return flat.to(torch.float64)


def average_ranks(values: Tensor, valid: Tensor | None = None) -> Tensor:
    """``(N, D)`` rank of each entry within its row, ties given their average rank.

    The ranks of scipy's ``rankdata`` (1 for the smallest), for every row at
    once.  Entries where ``valid`` is False are ranked after all valid ones and
    do not change the valid entries' ranks.
    """
    if valid is not None:
        values = values.masked_fill(~valid, math.inf)
    ordered, order = torch.sort(values, dim=1, stable=True)
    n_columns = values.shape[1]
    position = torch.arange(n_columns, device=values.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    # First and last position of each run of equal values, spread over the run.
    first = torch.where(starts, position, 0).cummax(1).values
    last = torch.where(ends, position, n_columns - 1).flip(1).cummin(1).values.flip(1)
    average = (first + last).to(torch.float64) / 2 + 1
    return torch.empty_like(average).scatter_(1, order, average)


def _pearson_rows(a: Tensor, b: Tensor, valid: Tensor | None) -> Tensor:
    """``(N,)`` Pearson correlation of each row pair over its valid entries."""
    weight = torch.ones_like(a) if valid is None else valid.to(torch.float64)
    count = weight.sum(1, keepdim=True)
    safe = count.clamp(min=1)
    a = (a - (a * weight).sum(1, keepdim=True) / safe) * weight
    b = (b - (b * weight).sum(1, keepdim=True) / safe) * weight
    denominator = torch.sqrt((a * a).sum(1) * (b * b).sum(1))
    correlation = (a * b).sum(1) / torch.where(denominator > 0, denominator, 1)
    undefined = (denominator == 0) | (count.squeeze(1) < 2)
    return torch.where(undefined, math.nan, correlation)


def _spearman_rows(a: Tensor, b: Tensor, valid: Tensor | None = None) -> Tensor:
    check_finite("a", a)
    check_finite("b", b)
    return _pearson_rows(average_ranks(a, valid), average_ranks(b, valid), valid)


def spearman(a: Any, b: Any, absolute: bool = False) -> Tensor:
    """``(N,)`` Spearman rank correlation of ``a[i]`` and ``b[i]`` over all features.

    ``absolute=False`` correlates the signed attributions (Sundararajan &
    Taly's Fig. 2, blue curve); ``absolute=True`` their absolute values (the
    green curve, Adebayo et al.'s measure).  Ties take their average rank; a
    constant example gives NaN.  Every example is ranked at once.

    Args:
        a, b: Attributions: tensors (or matching tuples of tensors) with the
            batch first; each example's features are flattened and joined.
        absolute: Correlate ``|a|`` and ``|b|``.

    Returns:
        ``(N,)`` float64 correlations.
    """
    fa, fb = _flat(a, "a"), _flat(b, "b")
    if fa.shape != fb.shape:
        raise ValueError(
            f"`a` and `b` differ in shape: {tuple(fa.shape)} vs {tuple(fb.shape)}"
        )
    if absolute:
        fa, fb = fa.abs(), fb.abs()
    return _spearman_rows(fa, fb)


def spearman_nz(a: Any, b: Any, inputs: Any, baselines: Any = None) -> Tensor:
    """``(N,)`` Spearman correlation of ``|a|`` and ``|b|`` where input != baseline.

    Sundararajan & Taly's ``spearman_nz`` (their Fig. 2, red curve): features
    where the input equals the baseline get zero attribution from path methods
    under *any* parameters, and counting them pushes the correlation of absolute
    attributions towards 1; this correlation leaves them out.  As in the paper,
    the attributions are normalized by taking absolute values, so flipping the
    sign of a map does not change it.  For ``a = x * r1`` and ``b = x * r2``
    with random ``r`` it is not 0 but about 0.4 (the note's Remark 1: 0.424
    on MNIST, 0.36 on scikit-learn's 8x8 digits).

    Args:
        a, b: Attributions shaped like ``inputs`` (tensors or matching tuples).
        inputs: The explained inputs.
        baselines: Same shape (or broadcastable, e.g. a scalar); ``None`` means 0.

    Returns:
        ``(N,)`` float64 correlations; NaN where fewer than two features differ
        from the baseline or either attribution is constant on them.
    """
    mask = nonzero_features(inputs, baselines)
    fa, fb = _flat(a, "a"), _flat(b, "b")
    if fa.shape != mask.shape or fb.shape != mask.shape:
        raise ValueError(
            f"`a` {tuple(fa.shape)} and `b` {tuple(fb.shape)} must match `inputs` "
            f"{tuple(mask.shape)} (flattened per example)"
        )
    return _spearman_rows(fa.abs(), fb.abs(), mask)


def nonzero_features(inputs: Any, baselines: Any = None) -> Tensor:
    """``(N, D)`` bool: the features where ``inputs`` differ from ``baselines``."""
    x = check_inputs("inputs", inputs)
    if baselines is None:
        refs: tuple[Any, ...] = tuple(torch.zeros_like(t) for t in x)
    elif isinstance(baselines, tuple):
        refs = baselines
    else:
        refs = (baselines,)
    if len(refs) != len(x):
        raise ValueError(
            f"`baselines` has {len(refs)} tensors but `inputs` has {len(x)}"
        )
    try:
        differs = tuple(
            torch.ne(t, torch.as_tensor(r, dtype=t.dtype, device=t.device)).expand(
                t.shape
            )
            for t, r in zip(x, refs, strict=True)
        )
    except RuntimeError:
        raise ValueError("`baselines` does not broadcast to `inputs`") from None
    n = x[0].shape[0]
    return torch.cat([d.reshape(n, -1) for d in differs], 1)


@dataclass
class RandomizationResult:
    """The outcome of :func:`randomization_check`.

    Attributes:
        layers: Names of the randomized modules, top layer first.  In the
            cascading mode row ``l`` holds the model with layers ``0..l``
            randomized; in the independent mode only layer ``l``.
        spearman_abs: ``(L, N)`` Spearman correlation of ``|a|`` with the original
            ``|a|`` over all features (Adebayo et al.'s measure; Sundararajan &
            Taly's Fig. 2 green).
        spearman_signed: ``(L, N)`` of the signed attributions (Fig. 2 blue).
        spearman_nz: ``(L, N)`` of ``|a|`` over the features where input !=
            baseline (Fig. 2 red; NaN when no ``baselines`` were given).
        original: The attributions of the unmodified copy.
        randomized: The attributions after each step.
        mode: ``"cascading"`` or ``"independent"``.
    """

    layers: list[str]
    spearman_abs: Tensor
    spearman_signed: Tensor
    spearman_nz: Tensor
    original: Any
    randomized: list[Any] = field(repr=False)
    mode: Mode = "cascading"

    def table(self) -> list[dict[str, Any]]:
        """One row per layer with the mean of each correlation over examples
        (keys ``layer`` and those of :data:`LABELS`)."""
        return [
            {
                "layer": name,
                "spearman_signed": float(self.spearman_signed[i].nanmean()),
                "spearman_abs": float(self.spearman_abs[i].nanmean()),
                "spearman_nz": float(self.spearman_nz[i].nanmean()),
            }
            for i, name in enumerate(self.layers)
        ]

    def format_table(self, digits: int = 2) -> str:
        """The table as Markdown, columns labeled like Sundararajan & Taly's Fig. 2."""
        heading = (
            "layers randomized" if self.mode == "cascading" else "layer randomized"
        )
        lines = [
            f"| {heading} | " + " | ".join(LABELS.values()) + " |",
            "|---|" + "---|" * len(LABELS),
        ]
        for row in self.table():
            cells = [
                "-" if math.isnan(row[key]) else f"{row[key]:.{digits}f}"
                for key in LABELS
            ]
            lines.append(f"| {row['layer']} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def parameter_layers(model: nn.Module, inputs: Any, forward: Any = None) -> list[str]:
    """Modules that hold parameters of their own, in the order a forward calls them.

    Modules that never run in the forward (or run only through ``forward``'s
    callable if given) are left out.
    """
    owners = {
        name: module
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    }
    called: list[str] = []

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if name not in called:
                called.append(name)

        return hook

    with registered_hooks() as hooks, torch.no_grad():
        for name, module in owners.items():
            hooks.forward_hook(module, record(name))
        tensors = inputs if isinstance(inputs, tuple) else (inputs,)
        (forward or model)(*tensors)
    return called


def randomize_parameters(module: nn.Module, generator: torch.Generator | None) -> None:
    """Re-draws the module's own parameters i.i.d. from a centered Gaussian.

    Each parameter's scale is kept: the standard deviation of its current values,
    or ``1 / sqrt(fan_in)`` when those are constant (biases at 0, norm weights
    at 1), so that activations keep a comparable magnitude.
    """
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            std = float(p.std()) if p.numel() > 1 else 0.0
            if not std > 0 or not math.isfinite(std):
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                std = 1.0 / math.sqrt(max(fan_in, 1))
            device = generator.device if generator is not None else p.device
            noise = torch.randn(p.shape, generator=generator, device=device)
            p.copy_(noise.to(device=p.device, dtype=p.dtype) * std)


def randomization_check(
    model: nn.Module,
    explain: Explain,
    inputs: Any,
    target: TargetType = None,
    baselines: Any = None,
    *,
    mode: Mode = "cascading",
    layers: Sequence[str] | None = None,
    randomize: Randomize | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> RandomizationResult:
    r"""Parameter randomization, cascading or independent, on a deep copy of ``model``.

    The copy is explained as is, then its parameterized layers are randomized
    from the output towards the input, explaining after each step:
    ``mode="cascading"`` keeps the layers randomized so far (Adebayo et al.'s
    main test), ``mode="independent"`` restores the original weights before
    randomizing each layer, so row ``l`` shows layer ``l`` alone.  ``model``
    itself is never modified.

    A method that passes the check changes its attributions once the layers it
    claims to explain are random.  Modified-backpropagation methods such as
    PatternAttribution (and PGIG's pattern backward) can fail it silently:
    Sixt, Granz & Landgraf, "When Explanations Lie: Why Many Modified BP
    Attributions Fail", ICML 2020, https://arxiv.org/abs/1912.09818, show that
    their backward rules converge to a rank-1 map that ignores the deeper
    (output-side) layers, so the explanation barely depends on those layers'
    parameters or on which logit is explained (their random-logit test).  For
    such a method, correlations that stay high after the top layers are
    randomized mean the explanation ignores those layers, not that it is
    robust.  On a small digits CNN (this package's tests), randomizing the
    output layer leaves PGIG's signed correlation with its original map at
    0.72 to 0.84, while IG's falls to about 0 (-0.14 to 0.18);
    PatternAttribution's falls too (-0.39 to 0.08), but only because it is
    scaled by the explained output, whose sign the random layer changes:
    divided by that output, its map keeps 0.60 to 0.67.  An ``explain``
    built on
    :class:`~captum_baselines.PatternAttribution` or
    :class:`~captum_baselines.PatternGuidedIntegratedGradients` should fit
    the patterns on the ``model`` it is given (the randomized copy), e.g.
    ``lambda m, x, t: PatternAttribution(m, fit_patterns(m, data)).attribute(x,
    target=t)``; patterns fitted on the trained model would describe weights
    that are no longer there.

    Args:
        model: The model to check (deep-copied).
        explain: ``explain(model, inputs, target)`` returning attributions shaped
            like ``inputs`` (e.g. ``lambda m, x, t: IntegratedGradients(m)
            .attribute(x, target=t)``).
        inputs: The inputs to explain.
        target: Passed to ``explain``.
        baselines: The baselines ``explain`` uses, for ``spearman_nz``; ``None``
            means zeros.
        mode: ``"cascading"`` (default) or ``"independent"``.
        layers: Module names to randomize, top layer first. Default: every module
            with parameters of its own, in reverse forward order.
        randomize: ``randomize(module, generator)`` re-draws a module's
            parameters in place; default :func:`randomize_parameters`.
        generator: Source of randomness for the default ``randomize``.
        show_progress: Show a tqdm bar over the layers.

    Returns:
        A :class:`RandomizationResult`; ``result.format_table()`` prints the
        three correlations per layer, labeled like Sundararajan & Taly's Fig. 2.

    Examples::

        >>> explain = lambda m, x, t: IntegratedGradients(m).attribute(x, target=t)
        >>> result = randomization_check(model, explain, images, labels)
        >>> print(result.format_table())  # spearman_nz drops to about 0.4
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    if not callable(explain):
        raise TypeError("`explain` must be callable: explain(model, inputs, target)")
    if mode not in ("cascading", "independent"):
        raise ValueError(f'`mode` must be "cascading" or "independent", got {mode!r}')
    check_inputs("inputs", inputs)
    check_generator("generator", generator)
    randomize = randomize or randomize_parameters
    copy_ = copy.deepcopy(model)
    modules = dict(copy_.named_modules())
    if layers is None:
        order = list(reversed(parameter_layers(copy_, inputs)))
    else:
        order = _check_layers(layers, modules)
    if not order:
        raise ValueError("`model` has no layer with parameters to randomize")
    trained = (
        {k: v.detach().clone() for k, v in copy_.state_dict().items()}
        if mode == "independent"
        else None
    )

    original = explain(copy_, inputs, target)
    flat_original = _flat(original, "explain(...)")
    abs_rows, signed_rows, nz_rows, randomized = [], [], [], []
    for name in tqdm(order, disable=not show_progress, desc=f"randomization ({mode})"):
        if trained is not None:
            copy_.load_state_dict(trained)
        randomize(modules[name], generator)
        attributions = explain(copy_, inputs, target)
        flat = _flat(attributions, "explain(...)")
        if flat.shape != flat_original.shape:
            raise ValueError(
                f"`explain` returned {tuple(flat.shape)} features after randomizing "
                f"{name!r} but {tuple(flat_original.shape)} before"
            )
        abs_rows.append(_spearman_rows(flat_original.abs(), flat.abs()))
        signed_rows.append(_spearman_rows(flat_original, flat))
        if baselines is None:
            nz_rows.append(torch.full((len(flat),), math.nan, dtype=torch.float64))
        else:
            nz_rows.append(spearman_nz(original, attributions, inputs, baselines))
        randomized.append(attributions)
    return RandomizationResult(
        layers=order,
        spearman_abs=torch.stack(abs_rows),
        spearman_signed=torch.stack(signed_rows),
        spearman_nz=torch.stack(nz_rows),
        original=original,
        randomized=randomized,
        mode=mode,
    )


def _check_layers(layers: Iterable[str], modules: dict[str, nn.Module]) -> list[str]:
    if isinstance(layers, str):
        raise TypeError("`layers` must be a sequence of module names, not one string")
    names = list(layers)
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"`layers` names modules the model does not have: {unknown}")
    return names
