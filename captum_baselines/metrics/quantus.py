"""A bridge to Quantus: any attribution of this package (or of Captum) as an
``explain_func``.

Quantus (Hedström et al., "Quantus: An Explainable AI Toolkit for Responsible
Evaluation of Neural Network Explanations and Beyond", JMLR 2023,
https://github.com/understandable-machine-intelligence-lab/Quantus) evaluates
explanations with dozens of metrics (ROAD, pixel flipping, MPRT, ...).  Metrics
that re-explain (MPRT randomizes the model and explains it again) take an
``explain_func(model, inputs, targets, **kwargs) -> np.ndarray`` that receives
numpy batches and the (possibly randomized) torch model.
:func:`quantus_explain_func` builds one from an attribution class and its
arguments; nothing here imports Quantus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_tensor

ExplainFunc = Callable[..., np.ndarray]


def quantus_explain_func(
    method: Callable[..., Any],
    *,
    init_kwargs: Mapping[str, Any]
    | Callable[[nn.Module], Mapping[str, Any]]
    | None = None,
    attribute_kwargs: Mapping[str, Any] | None = None,
    inputs_kwargs: Callable[[Tensor], Mapping[str, Any]] | None = None,
    layer: str | None = None,
    generator_seed: int | None = None,
    channel_sum: bool = True,
) -> ExplainFunc:
    r"""Turns an attribution class and its arguments into Quantus's ``explain_func``.

    Every call builds the attribution on the model it is given (so that
    Quantus's randomized copies are explained, not the original), converts
    Quantus's numpy batches to tensors on the model's device and dtype, and
    returns the attributions as a numpy array.

    Args:
        method: An attribution class of this package or of Captum (e.g.
            :class:`~captum_baselines.ExpectedGradients`,
            ``captum.attr.IntegratedGradients``), or any callable
            ``method(model, **init_kwargs)`` (``method(model, layer,
            **init_kwargs)`` with ``layer``) returning an object with an
            ``attribute`` method.
        init_kwargs: Constructor keyword arguments after the model (e.g.
            ``{"multiply_by_inputs": True}``), or a callable
            ``init_kwargs(model) -> dict`` for arguments that depend on the
            model, e.g. ``lambda m: {"patterns": fit_patterns(m, data)}`` so
            that PatternAttribution's patterns are fitted on each model Quantus
            passes (MPRT's randomized copies included).
        attribute_kwargs: Keyword arguments of ``attribute`` besides ``inputs``
            and ``target`` (e.g. ``{"baselines": references, "n_samples": 16}``).
            Keyword arguments that Quantus passes at call time (its
            ``explain_func_kwargs``) override them; its ``device`` is used to
            place the inputs.
        inputs_kwargs: ``inputs_kwargs(inputs) -> dict`` for arguments that
            depend on the batch, e.g. ``lambda x: {"baselines": blur(x, 2.0)}``.
        layer: For layer attributions (``LayerGradCam``, ``LayerRSIGradCam``),
            the module name, looked up in the model of each call; maps of lower
            resolution are upsampled bilinearly to the input size.
        generator_seed: If given, each call passes
            ``generator=torch.Generator().manual_seed(generator_seed)`` to
            ``attribute`` (e.g. for ExpectedGradients), so that explanations of
            the original and of a randomized model use the same draws.
        channel_sum: Sum the attributions over channels, keeping the axis
            (``(N, 1, H, W)``), as Quantus's own Captum wrapper does; metrics
            that rank pixels (ROAD, pixel flipping) expect one value per pixel.

    Returns:
        ``explain_func(model, inputs, targets, **kwargs) -> np.ndarray``.

    Examples::

        >>> import quantus
        >>> explain = quantus_explain_func(
        ...     ExpectedGradients,
        ...     attribute_kwargs={"baselines": train_images, "n_samples": 16},
        ...     generator_seed=0,
        ... )
        >>> quantus.ROAD(noise=0.0)(model, x, y, explain_func=explain)
    """
    if not callable(method):
        raise TypeError(f"`method` must be callable, got {type(method).__name__}")
    if inputs_kwargs is not None and not callable(inputs_kwargs):
        raise TypeError("`inputs_kwargs` must be callable: inputs_kwargs(inputs)")
    fixed_attribute = dict(attribute_kwargs or {})

    def constructor_kwargs(model: nn.Module) -> dict[str, Any]:
        if callable(init_kwargs):
            return dict(init_kwargs(model))
        return dict(init_kwargs or {})

    def explain_func(
        model: nn.Module, inputs: Any, targets: Any, **kwargs: Any
    ) -> np.ndarray:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"`model` must be a torch nn.Module, got {type(model).__name__}"
            )
        device = kwargs.pop("device", None)
        reference = next(model.parameters(), None)
        if device is None:
            device = reference.device if reference is not None else "cpu"
        dtype = reference.dtype if reference is not None else torch.float32
        x = torch.as_tensor(
            np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs
        )
        x = x.to(device=device, dtype=dtype)
        target = _targets(targets, x.shape[0], device)
        if layer is None:
            attribution = method(model, **constructor_kwargs(model))
        else:
            modules = dict(model.named_modules())
            if layer not in modules:
                raise ValueError(f"`layer` {layer!r} is not a module of the model")
            attribution = method(model, modules[layer], **constructor_kwargs(model))
        arguments = dict(fixed_attribute)
        if inputs_kwargs is not None:
            arguments.update(inputs_kwargs(x))
        arguments.update(kwargs)
        if generator_seed is not None:
            arguments["generator"] = torch.Generator(device=x.device).manual_seed(
                generator_seed
            )
        output = attribution.attribute(x, target=target, **arguments)
        if arguments.get("return_convergence_delta"):
            output = output[0]
        if isinstance(output, tuple) and len(output) == 1:
            output = output[0]
        a = check_tensor("attributions", output).detach()
        if a.dim() == x.dim() and a.shape[2:] != x.shape[2:] and a.dim() > 2:
            a = F.interpolate(a.to(x.dtype), size=tuple(x.shape[2:]), mode="bilinear")
        if channel_sum and a.dim() > 2:
            a = a.sum(1, keepdim=True)
        return a.cpu().numpy()

    return explain_func


def _targets(targets: Any, n: int, device: Any) -> Any:
    """Quantus's labels as a ``(N,)`` long tensor (or ``None``)."""
    if targets is None:
        return None
    t = torch.as_tensor(
        np.asarray(targets) if not isinstance(targets, Tensor) else targets
    )
    t = t.to(device=device, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        return t.expand(n)
    return t
