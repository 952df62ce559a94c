r"""The pattern-replacing backward pass of PatternAttribution and PGIG.

PatternAttribution (`Kindermans et al. 2018 <https://arxiv.org/abs/1705.05598>`_)
backpropagates through the network as the ordinary gradient does, except that every
patterned Linear or Conv layer uses ``w * p`` instead of its weight ``w``::

    d(p) y / d(p) x  =  (w * p)^T  d(p) y / d(p) out

ReLU gates and max-pooling switches stay those of the real forward pass, and biases
drop out as in any gradient.  This module installs that backward on a model for the
duration of a ``with`` block (:func:`pattern_backward`), finds which layers feed a
ReLU and which are followed by a BatchNorm (:func:`trace_layer_roles`), and folds
those BatchNorms into their layers for the pattern statistics
(:func:`folded_batchnorm`).  Every modification is a forward hook from
:func:`captum_baselines._hooks.registered_hooks`, removed on exit, error or not; no
parameter is ever written.

Why forward hooks whose returned output carries the modified backward: a full
backward hook raises with in-place ReLUs (pytorch#61519), and tensor hooks on a
module's input see the gradient already accumulated from skip connections, so they
are wrong on residual networks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv1d_input, conv2d_input, conv3d_input

from .._hooks import registered_hooks

#: The layers that can carry a pattern.
PATTERNED_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
)

_CONV_INPUT_GRADIENT = {1: conv1d_input, 2: conv2d_input, 3: conv3d_input}


def check_patterned_layer(name: str, module: nn.Module) -> None:
    """Raises a ``ValueError`` if ``module`` cannot carry a pattern."""
    if not isinstance(module, PATTERNED_LAYER_TYPES):
        kinds = ", ".join(t.__name__ for t in PATTERNED_LAYER_TYPES)
        raise ValueError(
            f"layer `{name}` is a {type(module).__name__}; patterns are supported "
            f"for {kinds} only"
        )
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.padding_mode != "zeros":
            raise ValueError(
                f"layer `{name}` uses padding_mode={module.padding_mode!r}; only "
                "'zeros' is supported"
            )
        conv_padding(name, module)


def conv_padding(name: str, conv: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    """The symmetric zero padding of ``conv`` as integers (resolving 'same'/'valid')."""
    if not isinstance(conv.padding, str):
        return tuple(int(p) for p in conv.padding)
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    padding = []
    for k, d in zip(conv.kernel_size, conv.dilation, strict=True):
        total = d * (k - 1)
        if total % 2:
            raise ValueError(
                f"layer `{name}` uses padding='same' with an asymmetric padding "
                f"(kernel {conv.kernel_size}, dilation {conv.dilation}); "
                "not supported"
            )
        padding.append(total // 2)
    return tuple(padding)


def input_gradient(
    module: nn.Module, weight: Tensor, grad_output: Tensor, input_shape: torch.Size
) -> Tensor:
    """``weight^T grad_output``: the input gradient of ``module`` with ``weight``."""
    if isinstance(module, nn.Linear):
        return grad_output @ weight
    assert isinstance(module, nn.modules.conv._ConvNd)
    conv_input = _CONV_INPUT_GRADIENT[len(module.kernel_size)]
    return conv_input(
        input_shape,
        weight,
        grad_output,
        stride=module.stride,
        padding=conv_padding("", module),
        dilation=module.dilation,
        groups=module.groups,
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
    ) -> Tensor:
        ctx.module = module
        ctx.patterned_weight = patterned_weight
        ctx.input_shape = layer_input.shape
        # Returned in place (not as a view, nor as a copy), so that an in-place ReLU
        # may overwrite it and no activation is copied.
        ctx.mark_dirty(layer_output)
        return layer_output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        grad_input = input_gradient(
            ctx.module, ctx.patterned_weight, grad_output, ctx.input_shape
        )
        return grad_input, None, None, None


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
    storage, and its product recomputed.

    Raises:
        ValueError: if ``patterns`` does not match ``model`` (see
            :func:`check_patterns`).
    """

    def __init__(self, model: nn.Module, patterns: Mapping[str, Tensor]) -> None:
        self.modules = check_patterns(model, patterns)
        self.patterns = patterns
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
            hooks.forward_hook(module, _pattern_hook(patterns[name]))
        yield


def layer_weight(module: nn.Module) -> Tensor:
    """The ``weight`` parameter of a Linear or Conv layer."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    return weight


def _pattern_hook(patterned_weight: Tensor) -> Any:
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Any:
        layer_input = inputs[0]
        if not (torch.is_grad_enabled() and layer_input.requires_grad):
            return None
        return _PatternGradient.apply(
            layer_input, output.detach(), module, patterned_weight
        )

    return hook


@dataclass(frozen=True)
class LayerRole:
    """Where a patterned layer sits in the network, as seen in one forward pass.

    Attributes:
        batchnorm: Name of the BatchNorm that alone consumes the layer's output
            (folded into the layer), or ``None``.
        feeds_relu: Whether the layer's output (after that BatchNorm) goes to ReLUs
            and nothing else, so that the positive-regime estimator applies.
    """

    batchnorm: str | None
    feeds_relu: bool


def trace_layer_roles(
    model: nn.Module,
    inputs: Tensor,
    layers: list[str],
    additional_forward_args: Any = None,
) -> dict[str, LayerRole]:
    """Finds, from the autograd graph of one forward pass, each layer's role.

    A layer feeds a ReLU when every consumer of its output in the graph is a ReLU
    (an in-place ReLU included); a residual addition, a view or any other use makes
    it a linear layer.  A BatchNorm with running statistics that is the only
    consumer of a layer's output is folded into it.  Functional ReLUs
    (``torch.relu``, ``F.relu``) are recognised as well as ``nn.ReLU``.

    Run it in eval mode; it leaves parameters and their gradients untouched.
    """
    modules = dict(model.named_modules())
    layer_nodes: dict[str, list[Any]] = {name: [] for name in layers}
    batchnorm_nodes: dict[Any, str] = {}
    keep: list[Tensor] = []

    def layer_hook(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, Tensor) and output.grad_fn is not None:
                layer_nodes[name].append(output.grad_fn)
                keep.append(output)

        return hook

    def batchnorm_hook(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, Tensor) and output.grad_fn is not None:
                batchnorm_nodes[output.grad_fn] = name
                keep.append(output)

        return hook

    probe = inputs.detach().clone()
    if probe.is_floating_point():
        probe.requires_grad_()
    args = () if additional_forward_args is None else additional_forward_args
    args = args if isinstance(args, tuple) else (args,)
    with registered_hooks() as hooks, torch.enable_grad():
        for name in layers:
            hooks.forward_hook(modules[name], layer_hook(name))
        for name, module in modules.items():
            if _is_foldable_batchnorm(module):
                hooks.forward_hook(module, batchnorm_hook(name))
        output = model(probe, *args)
    consumers = _consumers(output)

    roles = {}
    for name in layers:
        batchnorms: set[str | None] = set()
        feeds_relu = bool(layer_nodes[name])
        for node in layer_nodes[name]:
            users = consumers.get(node, [])
            batchnorm = None
            if len(users) == 1 and users[0] in batchnorm_nodes:
                batchnorm = batchnorm_nodes[users[0]]
                users = consumers.get(users[0], [])
            batchnorms.add(batchnorm)
            feeds_relu &= bool(users) and all(_is_relu(u) for u in users)
        batchnorm = batchnorms.pop() if len(batchnorms) == 1 else None
        roles[name] = LayerRole(batchnorm=batchnorm, feeds_relu=feeds_relu)
    keep.clear()
    return roles


def _consumers(output: Any) -> dict[Any, list[Any]]:
    """Maps each autograd node reachable from ``output`` to the nodes that use it."""
    roots = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
    consumers: dict[Any, list[Any]] = {}
    seen = set(roots)
    stack = list(roots)
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            consumers.setdefault(child, []).append(node)
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return consumers


def _tensors(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    if isinstance(output, Mapping):
        return [t for item in output.values() for t in _tensors(item)]
    return []


def _is_relu(node: Any) -> bool:
    return type(node).__name__.startswith("ReluBackward")


def _is_foldable_batchnorm(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        and module.running_mean is not None
        and module.running_var is not None
    )


def batchnorm_scale(batchnorm: nn.Module) -> tuple[Tensor, Tensor]:
    """``(s, t)`` with ``batchnorm(y) = s * y + t`` per channel, in eval mode."""
    assert isinstance(batchnorm, nn.modules.batchnorm._BatchNorm)
    assert batchnorm.running_mean is not None and batchnorm.running_var is not None
    mean = batchnorm.running_mean.detach()
    var = batchnorm.running_var.detach()
    scale = torch.rsqrt(var + batchnorm.eps)
    if batchnorm.weight is not None:
        scale = scale * batchnorm.weight.detach()
    shift = -mean * scale
    if batchnorm.bias is not None:
        shift = shift + batchnorm.bias.detach()
    return scale, shift


def effective_weight(
    module: nn.Module, batchnorm: nn.Module | None = None, dtype: Any = None
) -> Tensor:
    """The weight of ``module`` with ``batchnorm`` folded in: ``s * w`` per output."""
    weight = layer_weight(module).detach()
    weight = weight if dtype is None else weight.to(dtype)
    if batchnorm is None:
        return weight
    scale, _ = batchnorm_scale(batchnorm)
    return weight * scale.to(weight).reshape(-1, *([1] * (weight.dim() - 1)))


@contextlib.contextmanager
def folded_batchnorm(
    model: nn.Module, roles: Mapping[str, LayerRole]
) -> Iterator[None]:
    """Folds each layer's BatchNorm into the layer for the duration of the block.

    The layer returns the BatchNorm of its output (its eval-mode affine map) and
    the BatchNorm passes its input through, so that the layer's own forward hooks
    registered inside the block see the post-BatchNorm value, before any in-place
    ReLU overwrites it.  The model computes the same function; nothing is written
    to it, and the hooks are removed on exit.

    Raises:
        ValueError: if a folded BatchNorm is in training mode.
    """
    modules = dict(model.named_modules())
    with registered_hooks() as hooks:
        for name, role in roles.items():
            if role.batchnorm is None:
                continue
            batchnorm = modules[role.batchnorm]
            if batchnorm.training:
                raise ValueError(
                    f"BatchNorm `{role.batchnorm}` after layer `{name}` is in "
                    "training mode; call model.eval() first"
                )
            hooks.forward_hook(modules[name], _apply_batchnorm_hook(batchnorm))
            hooks.forward_hook(batchnorm, _pass_input_hook)
        yield


def _apply_batchnorm_hook(batchnorm: Any) -> Any:
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
        return F.batch_norm(
            output,
            batchnorm.running_mean,
            batchnorm.running_var,
            batchnorm.weight,
            batchnorm.bias,
            False,
            0.0,
            batchnorm.eps,
        )

    return hook


def _pass_input_hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
    return inputs[0]


__all__ = [
    "PATTERNED_LAYER_TYPES",
    "PatternedWeights",
    "LayerRole",
    "batchnorm_scale",
    "check_patterned_layer",
    "check_patterns",
    "effective_weight",
    "folded_batchnorm",
    "input_gradient",
    "layer_weight",
    "pattern_backward",
    "trace_layer_roles",
]
