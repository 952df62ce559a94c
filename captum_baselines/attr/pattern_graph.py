r"""Where each patterned layer sits: the gate it feeds and the BatchNorm after it.

The estimator of a layer's patterns depends on what consumes its output
(`Kindermans et al. 2018 <https://arxiv.org/abs/1705.05598>`_): a layer whose
output (after an optional BatchNorm, folded in) goes only to a *gate* takes the
two-component estimator over the gate's open regime; any other layer (the last
one, a conv before a residual addition) takes the linear estimator.
:func:`trace_layer_roles` reads this from the autograd graph of one forward pass.

A gate is an elementwise map that is the identity up to a constant factor and
offset inside an open interval ``lower < y < upper`` and constant outside it, so
that its output, and the gradient through it, carry ``y`` only inside the
interval:

- ReLU (``nn.ReLU``, ``F.relu``, in place or not): ``0 < y``;
- ReLU6 and ``Hardtanh(a, b)``: ``0 < y < 6`` and ``a < y < b``;
- ``clamp(min=a, max=b)``: ``a < y < b`` (a missing bound leaves that side open);
- ``F.threshold(y, t, v)``: ``t < y``;
- ``Hardsigmoid``: ``-3 < y < 3``.

Smooth activations (SiLU/Swish, GELU, Hardswish, LeakyReLU) pass every value on
and are not gates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._hooks import registered_hooks


@dataclass(frozen=True)
class Gate:
    """The open regime ``lower < y < upper`` in which a gate passes its input."""

    lower: float = 0.0
    upper: float = math.inf

    def regime(self, output: Tensor) -> Tensor:
        """A boolean mask of the samples of ``output`` inside the regime."""
        inside = output > self.lower
        if self.upper != math.inf:
            inside &= output < self.upper
        return inside


#: The ReLU's regime, ``y > 0``.
RELU = Gate()


@dataclass(frozen=True)
class LayerRole:
    """Where a patterned layer sits in the network, as seen in one forward pass.

    Attributes:
        batchnorm: Name of the BatchNorm that alone consumes the layer's output
            (folded into the layer), or ``None``.
        gate: The :class:`Gate` that alone consumes the layer's output (after
            that BatchNorm), so that the two-component estimator applies over
            its regime; ``None`` if anything else uses the output.
    """

    batchnorm: str | None
    gate: Gate | None


def trace_layer_roles(
    model: nn.Module,
    inputs: Tensor,
    layers: list[str],
    additional_forward_args: Any = None,
) -> dict[str, LayerRole]:
    """Finds, from the autograd graph of one forward pass, each layer's role.

    A layer feeds a gate when every consumer of its output in the graph is the
    same kind of gate (an in-place one included, functional ones too); a
    residual addition, a view or any other use makes it a linear layer.  A
    BatchNorm with running statistics that is the only consumer of a layer's
    output is folded into it.

    Run it in eval mode; it leaves parameters and their gradients untouched.

    Returns:
        The role of every layer of ``layers`` that the forward pass called;
        layers it never called are left out.
    """
    modules = dict(model.named_modules())
    layer_nodes: dict[str, list[Any]] = {name: [] for name in layers}
    called: set[str] = set()
    batchnorm_nodes: dict[Any, str] = {}
    keep: list[Tensor] = []

    def layer_hook(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            called.add(name)
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
        if name not in called:
            continue
        batchnorms: set[str | None] = set()
        gates: set[Gate | None] = set()
        for node in layer_nodes[name]:
            users = consumers.get(node, [])
            batchnorm = None
            if len(users) == 1 and users[0] in batchnorm_nodes:
                batchnorm = batchnorm_nodes[users[0]]
                users = consumers.get(users[0], [])
            batchnorms.add(batchnorm)
            gates.update(gate_of(user) for user in users)
            if not users:
                gates.add(None)
        batchnorm = batchnorms.pop() if len(batchnorms) == 1 else None
        gate = gates.pop() if len(gates) == 1 else None
        roles[name] = LayerRole(batchnorm=batchnorm, gate=gate)
    keep.clear()
    return roles


def gate_of(node: Any) -> Gate | None:
    """The :class:`Gate` an autograd node applies, or ``None`` if it is no gate."""
    kind = type(node).__name__.rstrip("0123456789")
    if kind == "ReluBackward":
        return RELU
    if kind == "HardtanhBackward":
        return _gate(node._saved_min_val, node._saved_max_val)
    if kind in ("ClampBackward", "ClampMinBackward", "ClampMaxBackward"):
        return _gate(
            getattr(node, "_saved_min", None), getattr(node, "_saved_max", None)
        )
    if kind == "ThresholdBackward":
        return _gate(node._saved_threshold, None)
    if kind == "HardsigmoidBackward":
        return Gate(-3.0, 3.0)
    return None


def _gate(lower: Any, upper: Any) -> Gate | None:
    bounds = []
    for bound, default in ((lower, -math.inf), (upper, math.inf)):
        if isinstance(bound, Tensor):
            if bound.numel() != 1:
                return None  # an elementwise clamp: no single regime
            bound = bound.item()
        bounds.append(default if bound is None else float(bound))
    return Gate(bounds[0], bounds[1]) if bounds[0] < bounds[1] else None


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


def _is_foldable_batchnorm(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        and module.running_mean is not None
        and module.running_var is not None
    )


__all__ = ["RELU", "Gate", "LayerRole", "gate_of", "trace_layer_roles"]
