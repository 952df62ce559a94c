"""Hook lifecycles and model-state guards.

Every temporary modification of a user's model in this package goes through one of
the context managers here, so that it is undone in ``finally`` even when the
attribution raises midway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle


class HookRegistry:
    """Collects hook handles so that they can all be removed at once."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def add(self, handle: RemovableHandle) -> RemovableHandle:
        self._handles.append(handle)
        return handle

    def forward_hook(self, module: nn.Module, hook: Callable[..., Any]) -> None:
        self.add(module.register_forward_hook(hook))

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()


@contextlib.contextmanager
def registered_hooks() -> Iterator[HookRegistry]:
    """Yields a :class:`HookRegistry` whose hooks are removed on exit, error or not."""
    registry = HookRegistry()
    try:
        yield registry
    finally:
        registry.remove()


@contextlib.contextmanager
def preserved_model_state(model: Any) -> Iterator[None]:
    """Restores ``training`` flags, ``requires_grad`` flags and ``.grad`` on exit.

    ``model`` may be any callable; only ``nn.Module`` instances (and the modules
    bound to a bound method, e.g. ``model.forward``) are guarded.
    """
    module = _owning_module(model)
    if module is None:
        yield
        return
    training = [(m, m.training) for m in module.modules()]
    params = list(module.parameters())
    requires_grad = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        yield
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag, grad in zip(params, requires_grad, grads):
            p.requires_grad_(flag)
            p.grad = grad


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Puts ``model`` in eval mode for the duration of the block and restores it."""
    with preserved_model_state(model):
        module = _owning_module(model)
        if module is not None:
            module.eval()
        yield


def _owning_module(model: Any) -> nn.Module | None:
    if isinstance(model, nn.Module):
        return model
    owner = getattr(model, "__self__", None)
    if isinstance(owner, nn.Module):
        return owner
    return None


__all__ = [
    "HookRegistry",
    "eval_mode",
    "preserved_model_state",
    "registered_hooks",
]
