r"""The pattern-replacing backward pass of PatternAttribution and PGIG.

PatternAttribution (`Kindermans et al. 2018 <https://arxiv.org/abs/1705.05598>`_)
backpropagates through the network as the ordinary gradient does, except that every
patterned Linear or Conv layer uses ``w * p`` instead of its weight ``w``::

    d(p) y / d(p) x  =  (w * p)^T  d(p) y / d(p) out

ReLU gates and max-pooling switches stay those of the real forward pass, and biases
drop out as in any gradient.  This module installs that backward on a model for the
duration of a ``with`` block (:func:`pattern_backward`).  Every modification is a
forward hook from :func:`captum_baselines._hooks.registered_hooks`, removed on
exit, error or not; no parameter is ever written.  A convolution that pads inside
its own ``forward`` (TensorFlow's "same" padding) is backpropagated through the
padding it actually applies
(:class:`~captum_baselines.attr.pattern_layers.ConvPaddings`).

Why forward hooks whose returned output carries the modified backward: a full
backward hook raises with in-place ReLUs (pytorch#61519), and tensor hooks on a
module's input see the gradient already accumulated from skip connections, so they
are wrong on residual networks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .._hooks import registered_hooks
from .pattern_layers import (
    ConvPaddings,
    Padding,
    check_patterned_layer,
    input_gradient,
    layer_weight,
)


class _PatternGradient(torch.autograd.Function):
    """Identity on the layer's real output; backward through ``w * p`` to its input."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        layer_input: Tensor,
        layer_output: Tensor,
        module: nn.Module,
        patterned_weight: Tensor,
        padding: Padding | None,
    ) -> Tensor:
        ctx.module = module
        ctx.patterned_weight = patterned_weight
        ctx.padding = padding
        ctx.input_shape = layer_input.shape
        # Returned in place (not as a view, nor as a copy), so that an in-place ReLU
        # may overwrite it and no activation is copied.
        ctx.mark_dirty(layer_output)
        return layer_output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        grad_input = input_gradient(
            ctx.module, ctx.patterned_weight, grad_output, ctx.input_shape, ctx.padding
        )
        return grad_input, None, None, None, None


def check_patterns(
    model: nn.Module, patterns: Mapping[str, Tensor]
) -> dict[str, nn.Module]:
    """Matches ``patterns`` to the modules of ``model``, or says what does not match.

    Returns:
        The patterned module of every name in ``patterns``.

    Raises:
        ValueError: listing every name that ``model`` lacks, every module that
            cannot carry a pattern and every pattern whose shape differs from its
            module's weight.
    """
    modules = dict(model.named_modules())
    problems = []
    matched = {}
    for name, pattern in patterns.items():
        module = modules.get(name)
        if module is None:
            problems.append(f"`{name}`: no such module in the model")
            continue
        try:
            check_patterned_layer(name, module)
        except ValueError as error:
            problems.append(str(error))
            continue
        weight = layer_weight(module)
        if tuple(pattern.shape) != tuple(weight.shape):
            problems.append(
                f"`{name}`: pattern of shape {tuple(pattern.shape)} does not match "
                f"the weight of shape {tuple(weight.shape)}"
            )
            continue
        matched[name] = module
    if problems:
        raise ValueError(
            "`patterns` do not match the model:\n  " + "\n  ".join(problems)
        )
    return matched


class PatternedWeights:
    """``w * p`` for every patterned layer, recomputed only when ``w`` or ``p`` change.

    Holds one copy of the patterned weights, so that repeated attributions do not
    pay for the products again; a weight updated in place (an optimizer step,
    ``load_state_dict``) or moved is noticed through its version counter and
    storage, and its product recomputed.  It also remembers the padding of every
    convolution that pads inside its own ``forward``, verified once per input size.

    Raises:
        ValueError: if ``patterns`` does not match ``model`` (see
            :func:`check_patterns`).
    """

    def __init__(self, model: nn.Module, patterns: Mapping[str, Tensor]) -> None:
        self.modules = check_patterns(model, patterns)
        self.patterns = patterns
        self.paddings = ConvPaddings()
        self._cache: dict[str, tuple[tuple[Any, ...], Tensor]] = {}

    def __getitem__(self, name: str) -> Tensor:
        weight = layer_weight(self.modules[name]).detach()
        pattern = self.patterns[name]
        key = (
            weight.data_ptr(),
            weight._version,
            weight.dtype,
            weight.device,
            pattern.data_ptr(),
            pattern._version,
        )
        cached = self._cache.get(name)
        if cached is None or cached[0] != key:
            cached = (key, weight * pattern.to(weight))
            self._cache[name] = cached
        return cached[1]


@contextlib.contextmanager
def pattern_backward(
    model: nn.Module, patterns: Mapping[str, Tensor] | PatternedWeights
) -> Iterator[None]:
    """Backpropagates through ``w * p`` for every patterned layer of ``model``.

    Inside the block, each patterned layer's output is its real output (the
    forward pass, and with it every ReLU gate and pooling switch, is unchanged)
    whose backward maps ``g`` to ``(w * p)^T g``.  A BatchNorm after a conv keeps
    its own backward, a per-channel scale ``s`` in eval mode, which makes the
    backward exactly that of the folded layer ``(s w) * p``: patterns fitted on the
    folded layer (as :func:`fit_patterns` does) are therefore used as they are.
    Call ``model.eval()`` first: in training mode a BatchNorm's backward is not a
    per-channel scale.  The hooks are removed on exit, error or not.

    Args:
        model: The network.
        patterns: Module name to a tensor shaped like that module's weight, or
            :class:`PatternedWeights` built for ``model``.

    Raises:
        ValueError: if ``patterns`` does not match ``model`` (see
            :func:`check_patterns`).
    """
    if not isinstance(patterns, PatternedWeights):
        patterns = PatternedWeights(model, patterns)
    modules = check_patterns(model, patterns.patterns)
    with registered_hooks() as hooks:
        for name, module in modules.items():
            hooks.forward_hook(module, _pattern_hook(name, patterns))
        yield


def _pattern_hook(name: str, patterned_weights: PatternedWeights) -> Any:
    patterned_weight = patterned_weights[name]

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Any:
        layer_input = inputs[0]
        if not (torch.is_grad_enabled() and layer_input.requires_grad):
            return None
        padding = patterned_weights.paddings(name, module, layer_input)
        return _PatternGradient.apply(
            layer_input, output.detach(), module, patterned_weight, padding
        )

    return hook


__all__ = [
    "PatternedWeights",
    "check_patterns",
    "pattern_backward",
]
