"""Sanity checks by cascading parameter randomisation, and ``spearman_nz``.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018,
https://arxiv.org/abs/1810.03292, randomise a network's layers from the top down
and compare the attributions with the original ones by Spearman's rank
correlation of their absolute values.  Sundararajan & Taly, "A Note about: Local
Explanation Methods for Deep Neural Networks lack Sensitivity to Parameter
Values", 2018, https://arxiv.org/abs/1806.04205, show that this correlation is
inflated by the features where the input equals the baseline (there integrated
gradients are zero whatever the parameters), and propose ``spearman_nz``: the
correlation over the other features only.  The check reports all three.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from captum._utils.typing import TargetType
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._hooks import registered_hooks
from .._validation import check_generator, check_inputs, check_tensor

Explain = Callable[[nn.Module, Any, TargetType], Any]
Randomize = Callable[[nn.Module, "torch.Generator | None"], None]


def _flat(values: Any, name: str) -> Tensor:
    """``(N, D)``: every tensor of ``values`` flattened per example and joined."""
    tensors = values if isinstance(values, tuple) else (values,)
    for i, t in enumerate(tensors):
        check_tensor(name if len(tensors) == 1 else f"{name}[{i}]", t)
    n = tensors[0].shape[0]
    return torch.cat([t.detach().reshape(n, -1) for t in tensors], 1)


def _ranks(values: Tensor) -> Tensor:
    """Ranks of a 1-D tensor, ties given their average rank (as scipy's rankdata)."""
    order = torch.argsort(values, stable=True)
    ordered = values[order]
    _, inverse, counts = torch.unique_consecutive(
        ordered, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).to(torch.float64)
    average = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty(len(values), dtype=torch.float64, device=values.device)
    ranks[order] = average[inverse]
    return ranks


def _pearson(a: Tensor, b: Tensor) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = torch.sqrt((a * a).sum() * (b * b).sum())
    if len(a) < 2 or denominator == 0:
        return math.nan
    return float((a * b).sum() / denominator)


def _spearman_rows(a: Tensor, b: Tensor, mask: Tensor | None) -> Tensor:
    values = []
    for i in range(a.shape[0]):
        ai, bi = a[i], b[i]
        if mask is not None:
            ai, bi = ai[mask[i]], bi[mask[i]]
        values.append(_pearson(_ranks(ai), _ranks(bi)))
    return torch.tensor(values, dtype=torch.float64)


def spearman(a: Any, b: Any) -> Tensor:
    """``(N,)`` Spearman rank correlation of ``a[i]`` and ``b[i]`` over all features.

    Ties take their average rank; a constant example gives NaN.
    """
    fa, fb = _flat(a, "a"), _flat(b, "b")
    if fa.shape != fb.shape:
        raise ValueError(f"`a` and `b` differ in shape: {fa.shape} vs {fb.shape}")
    return _spearman_rows(fa, fb, None)


def spearman_nz(a: Any, b: Any, inputs: Any, baselines: Any = None) -> Tensor:
    """``(N,)`` signed Spearman correlation over the features where input != baseline.

    Sundararajan & Taly's ``spearman_nz``: features where the input equals the
    baseline get zero attribution from path methods under *any* parameters, and
    counting them pushes the correlation towards 1.

    Args:
        a, b: Attributions shaped like ``inputs`` (tensors or matching tuples).
        inputs: The explained inputs.
        baselines: Same shape (or broadcastable, e.g. a scalar); ``None`` means 0.

    Returns:
        ``(N,)`` float64 correlations; NaN where fewer than two features differ
        from the baseline or either attribution is constant on them.
    """
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
    fa, fb = _flat(a, "a"), _flat(b, "b")
    mask = _flat(differs, "inputs")
    if fa.shape != mask.shape or fb.shape != mask.shape:
        raise ValueError(
            f"`a` {tuple(fa.shape)} and `b` {tuple(fb.shape)} must match `inputs` "
            f"{tuple(mask.shape)} (flattened per example)"
        )
    return _spearman_rows(fa, fb, mask)


@dataclass
class RandomizationResult:
    """The outcome of :func:`randomization_check`.

    Attributes:
        layers: Names of the randomised modules, in the order of the cascade
            (top layer first); row ``l`` holds the model with layers ``0..l``
            randomised.
        spearman_abs: ``(L, N)`` Spearman correlation of ``|a|`` with the original
            ``|a|`` (Adebayo et al.'s measure).
        spearman_signed: ``(L, N)`` of the signed attributions.
        spearman_nz: ``(L, N)`` signed, over features where input != baseline.
        original: The attributions of the unmodified copy.
        randomized: The attributions after each cascade step.
    """

    layers: list[str]
    spearman_abs: Tensor
    spearman_signed: Tensor
    spearman_nz: Tensor
    original: Any
    randomized: list[Any] = field(repr=False)

    def table(self) -> list[dict[str, Any]]:
        """One row per layer with the mean of each correlation over examples."""
        return [
            {
                "layer": name,
                "spearman_abs": float(self.spearman_abs[i].nanmean()),
                "spearman_signed": float(self.spearman_signed[i].nanmean()),
                "spearman_nz": float(self.spearman_nz[i].nanmean()),
            }
            for i, name in enumerate(self.layers)
        ]


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
    """Re-draws the module's own parameters i.i.d. from a centred Gaussian.

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
    layers: Sequence[str] | None = None,
    randomize: Randomize | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> RandomizationResult:
    r"""Cascading parameter randomisation, top-down, on a deep copy of ``model``.

    The copy is explained as is, then its parameterised layers are randomised
    one after another from the output towards the input, explaining after each
    step.  ``model`` itself is never modified.

    Args:
        model: The model to check (deep-copied).
        explain: ``explain(model, inputs, target)`` returning attributions shaped
            like ``inputs`` (e.g. ``lambda m, x, t: IntegratedGradients(m)
            .attribute(x, target=t)``).
        inputs: The inputs to explain.
        target: Passed to ``explain``.
        baselines: The baselines ``explain`` uses, for ``spearman_nz``; ``None``
            means zeros.
        layers: Module names to randomise, top layer first. Default: every module
            with parameters of its own, in reverse forward order.
        randomize: ``randomize(module, generator)`` re-draws a module's
            parameters in place; default :func:`randomize_parameters`.
        generator: Source of randomness for the default ``randomize``.
        progress: Show a tqdm bar over the cascade.

    Returns:
        A :class:`RandomizationResult`.

    Examples::

        >>> explain = lambda m, x, t: IntegratedGradients(m).attribute(x, target=t)
        >>> result = randomization_check(model, explain, images, labels)
        >>> result.table()  # spearman_nz drops once the output layer is random
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    if not callable(explain):
        raise TypeError("`explain` must be callable: explain(model, inputs, target)")
    check_inputs("inputs", inputs)
    check_generator("generator", generator)
    randomize = randomize or randomize_parameters
    copy_ = copy.deepcopy(model)
    modules = dict(copy_.named_modules())
    if layers is None:
        cascade = list(reversed(parameter_layers(copy_, inputs)))
    else:
        cascade = _check_layers(layers, modules)
    if not cascade:
        raise ValueError("`model` has no layer with parameters to randomise")

    original = explain(copy_, inputs, target)
    flat_original = _flat(original, "explain(...)")
    abs_rows, signed_rows, nz_rows, randomized = [], [], [], []
    for name in tqdm(cascade, disable=not progress, desc="randomization"):
        randomize(modules[name], generator)
        attributions = explain(copy_, inputs, target)
        flat = _flat(attributions, "explain(...)")
        abs_rows.append(_spearman_rows(flat_original.abs(), flat.abs(), None))
        signed_rows.append(_spearman_rows(flat_original, flat, None))
        nz_rows.append(spearman_nz(original, attributions, inputs, baselines))
        randomized.append(attributions)
    return RandomizationResult(
        layers=cascade,
        spearman_abs=torch.stack(abs_rows),
        spearman_signed=torch.stack(signed_rows),
        spearman_nz=torch.stack(nz_rows),
        original=original,
        randomized=randomized,
    )


def _check_layers(layers: Iterable[str], modules: dict[str, nn.Module]) -> list[str]:
    if isinstance(layers, str):
        raise TypeError("`layers` must be a sequence of module names, not one string")
    names = list(layers)
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"`layers` names modules the model does not have: {unknown}")
    return names
