"""Test helpers shared by every test module."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


class ModelSnapshot:
    """Everything about a model that an attribution method must leave untouched."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.params = {n: p for n, p in model.named_parameters()}
        self.requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        self.grads = {
            n: None if p.grad is None else p.grad.clone()
            for n, p in model.named_parameters()
        }
        self.training = {n: m.training for n, m in model.named_modules()}
        self.hooks = {
            n: {d: len(getattr(m, d, {})) for d in _HOOK_DICTS}
            for n, m in model.named_modules()
        }
        self.param_hooks = {
            n: len(p._backward_hooks or {}) for n, p in model.named_parameters()
        }

    def assert_unchanged(self) -> None:
        model = self.model
        state = model.state_dict()
        assert state.keys() == self.state.keys(), "state_dict keys changed"
        for k, v in self.state.items():
            assert torch.equal(state[k], v), f"{k} changed"
            assert state[k].dtype == v.dtype, f"{k} dtype changed"
        for n, p in model.named_parameters():
            assert p is self.params[n], f"parameter {n} was replaced"
            assert p.requires_grad == self.requires_grad[n], f"{n}.requires_grad"
            before = self.grads[n]
            if before is None:
                assert p.grad is None, f"{n}.grad accumulated"
            else:
                assert p.grad is not None and torch.equal(p.grad, before), f"{n}.grad"
            assert len(p._backward_hooks or {}) == self.param_hooks[n], f"{n} hooks"
        for n, m in model.named_modules():
            assert m.training == self.training[n], f"{n or 'model'}.training changed"
            for d, count in self.hooks[n].items():
                assert len(getattr(m, d, {})) == count, f"hook left on {n}: {d}"
        globals_ = nn.modules.module
        for d in (
            "_global_forward_hooks",
            "_global_forward_pre_hooks",
            "_global_backward_hooks",
            "_global_backward_pre_hooks",
        ):
            assert len(getattr(globals_, d, {})) == 0, f"global hook left: {d}"


@contextlib.contextmanager
def model_unchanged(model: nn.Module) -> Iterator[ModelSnapshot]:
    """Asserts on exit that ``model`` is exactly as it was on entry."""
    snapshot = ModelSnapshot(model)
    yield snapshot
    snapshot.assert_unchanged()


class FailingForward(nn.Module):
    """Wraps a model and raises from its ``n``-th forward call (``RuntimeError``)."""

    def __init__(self, model: nn.Module, fail_at: int = 2) -> None:
        super().__init__()
        self.model = model
        self.fail_at = fail_at
        self.calls = 0

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("forward failed on purpose")
        return self.model(*args, **kwargs)


def small_cnn(in_channels: int = 3, n_classes: int = 4, seed: int = 0) -> nn.Module:
    """A small CNN with BatchNorm, in-place ReLU and max-pooling, in eval mode."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(in_channels, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, n_classes),
    )
    return model.eval()


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm non-trivial statistics and affine parameters, so that
    folding it into the preceding layer is actually exercised."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model


def tiny_cnn() -> nn.Module:
    """Two 4-channel convolutions (the second, module ``"3"``, at 4x4 on 8x8
    inputs) and a 5-class head, seeded, in eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    ).eval()


def stress_test_model() -> nn.Sequential:
    """The PGIG paper's Sec. 3 network, float64: ``f(x) = 1 - ReLU(1 - w^T x)``
    with ``w = (1, -1)``, as two dense layers."""
    model = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[-1.0, 1.0]]))
        model[0].bias.fill_(1.0)
        model[2].weight.fill_(-1.0)
        model[2].bias.fill_(1.0)
    return model.eval()


ROOT = Path(__file__).resolve().parent.parent


def run_ranks(
    module: str, args: list[str], world: int, timeout: float
) -> tuple[list[int], list[str], float]:
    """Runs ``module._worker(rank, *args)`` in ``world`` fresh Python processes,
    one per rank, from the repository root with one thread each; returns their
    exit codes, their stderr and the seconds taken, and fails the test (killing
    them) if they do not end within ``timeout`` seconds."""
    code = (
        f"import sys; from {module} import _worker; "
        "_worker(int(sys.argv[1]), *sys.argv[2:])"
    )
    environment = {
        k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")
    }
    environment.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(rank), *args],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    errors = []
    for process in processes:
        try:
            errors.append(process.communicate(timeout=timeout)[1])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail("the ranks hang")
    return [p.returncode for p in processes], errors, time.perf_counter() - start
