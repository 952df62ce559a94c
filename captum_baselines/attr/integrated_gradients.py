"""Integrated Gradients with correct quadrature and per-example adaptive steps.

Integrated Gradients (Sundararajan, Taly & Yan 2017, https://arxiv.org/abs/1703.01365)
attributes ``f(x) - f(x')`` to the features by the path integral::

    IG_i(x) = (x_i - x'_i) * integral_0^1 df/dx_i(x' + alpha (x - x')) d alpha

which a quadrature rule turns into ``sum_k w_k * grad f(x' + alpha_k (x - x'))``.
Completeness, ``sum_i IG_i = f(x) - f(x')``, holds for the exact integral, so its
residual (the convergence delta) measures the quadrature error.

:class:`QuadratureIntegratedGradients` evaluates a fixed rule; its
``"riemann_trapezoid"`` weights sum to one, unlike Captum 0.9's (see
``docs/captum_trapezoid.md``). :class:`AdaptiveIntegratedGradients` doubles the
number of Gauss-Legendre nodes of each example until its delta is within
``rtol * |f(x) - f(x')| + atol``, re-running only the examples that have not
converged.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import torch
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from .._engine.path import evaluate_rows, forward_inputs, path_gradient_sums
from .._hooks import eval_mode
from .._validation import (
    check_finite,
    check_inputs,
    check_nonnegative,
    check_positive_int,
)

QuadratureMethod = Literal[
    "gausslegendre",
    "riemann_trapezoid",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
]


def quadrature(method: str, n_steps: int) -> tuple[Tensor, Tensor]:
    """Nodes ``alpha_k`` and weights ``w_k`` of a rule for integrals over [0, 1].

    Every rule integrates constants exactly (weights sum to 1);
    ``"riemann_trapezoid"`` uses ``n_steps`` points including both ends, spaced
    ``h = 1 / (n_steps - 1)``, with weights ``h`` and ``h / 2`` at the ends.

    Returns:
        ``(alphas, weights)``, float64 tensors of length ``n_steps``.
    """
    n = check_positive_int("n_steps", n_steps)
    k = torch.arange(n, dtype=torch.float64)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy((nodes + 1) / 2), torch.from_numpy(weights / 2)
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError("`n_steps` must be >= 2 for 'riemann_trapezoid'")
        w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (n - 1)
        return k / (n - 1), w
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if method not in offsets:
        raise ValueError(
            "`method` must be one of 'gausslegendre', 'riemann_trapezoid', "
            f"'riemann_left', 'riemann_right', 'riemann_middle', got {method!r}"
        )
    return (k + offsets[method]) / n, torch.full((n,), 1.0 / n, dtype=torch.float64)


def format_baselines(
    baselines: BaselineType, inputs: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """One baseline tensor per input, expanded to the inputs' shape.

    Accepts what Captum's ``IntegratedGradients`` accepts: ``None`` (zeros), a
    number, a tensor shaped like the input, like one example, or with a first
    dimension of 1; or a tuple of those, one per input tensor.
    """
    items = baselines if isinstance(baselines, tuple) else (baselines,) * len(inputs)
    if len(items) != len(inputs):
        raise ValueError(
            f"`baselines` must hold one entry per input tensor ({len(inputs)}), "
            f"got {len(items)}"
        )
    formatted = []
    for i, (b, x) in enumerate(zip(items, inputs)):
        label = "baselines" if len(inputs) == 1 else f"baselines[{i}]"
        if b is None:
            formatted.append(torch.zeros_like(x))
        elif isinstance(b, numbers.Real) and not isinstance(b, bool):
            formatted.append(torch.full_like(x, float(b)))
        elif isinstance(b, Tensor):
            if (
                b.shape not in (x.shape, x.shape[1:], (1, *x.shape[1:]))
                and b.numel() != 1
            ):
                raise ValueError(
                    f"`{label}` of shape {tuple(b.shape)} does not match inputs of "
                    f"shape {tuple(x.shape)}: expected the same shape, one example's "
                    "shape, a first dimension of 1, or a scalar"
                )
            check_finite(label, b)
            formatted.append(b.to(device=x.device, dtype=x.dtype).expand(x.shape))
        else:
            raise TypeError(
                f"`{label}` must be None, a number or a tensor, got {type(b).__name__}"
            )
    return tuple(formatted)


class AdaptiveResult(NamedTuple):
    """What :func:`adaptive_integrated_gradients` returns."""

    attributions: tuple[Tensor, ...]
    delta: Tensor
    n_steps: Tensor
    """``(N,)`` Gauss-Legendre nodes of the estimate kept for each example."""
    converged: Tensor
    """``(N,)`` whether each example met its tolerance within ``max_n_steps``."""


def _integrated_gradients(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    examples: Tensor,
    method: str,
    n_steps: int,
    target: TargetType,
    additional_forward_args: Any,
    internal_batch_size: int | None,
    multiply_by_inputs: bool = True,
) -> tuple[Tensor, ...]:
    """IG of the given ``examples`` by one rule; other examples' rows stay zero."""
    alphas, weights = quadrature(method, n_steps)
    rows = examples.repeat_interleave(n_steps)
    sums, _ = path_gradient_sums(
        forward_func,
        inputs,
        baselines,
        rows,
        rows,
        alphas.repeat(len(examples)),
        weights.repeat(len(examples)),
        target,
        additional_forward_args,
        internal_batch_size,
        multiply_by_inputs,
    )
    return sums


def _completeness_gap(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Any,
    internal_batch_size: int | None,
) -> Tensor:
    """``f(x) - f(x')`` per example."""
    n = inputs[0].shape[0]
    f_x = forward_inputs(
        forward_func, inputs, target, additional_forward_args, internal_batch_size
    )
    rows = torch.arange(n, device=inputs[0].device)
    f_b = evaluate_rows(
        forward_func,
        baselines,
        rows,
        rows,
        n,
        target,
        additional_forward_args,
        internal_batch_size,
    )
    return f_x - f_b


def _total(attributions: tuple[Tensor, ...]) -> Tensor:
    n = attributions[0].shape[0]
    return torch.stack([a.reshape(n, -1).sum(1) for a in attributions]).sum(0)


def adaptive_integrated_gradients(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: BaselineType = None,
    target: TargetType = None,
    additional_forward_args: Any = None,
    rtol: float = 0.01,
    atol: float = 1e-6,
    initial_n_steps: int = 4,
    max_n_steps: int = 512,
    internal_batch_size: int | None = None,
) -> AdaptiveResult:
    """Integrated Gradients with per-example step doubling (Gauss-Legendre).

    Each example starts with ``initial_n_steps`` nodes; the examples whose
    completeness residual ``|sum(IG) - (f(x) - f(x'))|`` exceeds
    ``rtol * |f(x) - f(x')| + atol`` are recomputed with twice as many nodes, until
    all converge or the next doubling would exceed ``max_n_steps``.

    Returns:
        :class:`AdaptiveResult` with the attributions (a tuple, one tensor per
        input), the ``(N,)`` delta, the ``(N,)`` number of nodes each example used
        and whether it converged.
    """
    x = check_inputs("inputs", inputs)
    b = format_baselines(baselines, x)
    rtol = check_nonnegative("rtol", rtol)
    atol = check_nonnegative("atol", atol)
    n_steps = check_positive_int("initial_n_steps", initial_n_steps)
    cap = check_positive_int("max_n_steps", max_n_steps)
    if cap < n_steps:
        raise ValueError(
            f"`max_n_steps` ({cap}) must be >= `initial_n_steps` ({n_steps})"
        )
    with eval_mode(forward_func):
        return _adaptive(
            forward_func,
            x,
            b,
            target,
            additional_forward_args,
            rtol,
            atol,
            n_steps,
            cap,
            internal_batch_size,
        )


def _adaptive(
    forward_func: Callable[..., Any],
    x: tuple[Tensor, ...],
    b: tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Any,
    rtol: float,
    atol: float,
    n_steps: int,
    cap: int,
    internal_batch_size: int | None,
) -> AdaptiveResult:
    gap = _completeness_gap(
        forward_func, x, b, target, additional_forward_args, internal_batch_size
    )
    tolerance = rtol * gap.abs() + atol
    n = x[0].shape[0]
    attributions = tuple(torch.zeros_like(t) for t in x)
    delta = torch.zeros_like(gap)
    steps = torch.zeros(n, dtype=torch.long)
    converged = torch.zeros(n, dtype=torch.bool)
    active = torch.arange(n, device=x[0].device)
    while True:
        sums = _integrated_gradients(
            forward_func,
            x,
            b,
            active,
            "gausslegendre",
            n_steps,
            target,
            additional_forward_args,
            internal_batch_size,
        )
        for acc, s in zip(attributions, sums):
            acc[active] = s[active]
        residual = _total(tuple(s[active] for s in sums)).to(gap) - gap[active]
        delta[active] = residual
        steps[active.cpu()] = n_steps
        done = residual.abs() <= tolerance[active]
        converged[active[done].cpu()] = True
        active = active[~done]
        if len(active) == 0 or 2 * n_steps > cap:
            break
        n_steps *= 2
    return AdaptiveResult(attributions, delta, steps, converged)


class QuadratureIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients evaluated with a correctly weighted quadrature rule.

    Same estimator as Captum's ``IntegratedGradients`` for ``"gausslegendre"``
    and the ``"riemann_left/right/middle"`` rules; ``"riemann_trapezoid"`` here
    uses ``n_steps`` points with spacing ``1 / (n_steps - 1)`` and halved end
    weights, so the weights sum to one (Captum's sum to ``(n_steps - 1) / n_steps``).

    Paper: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017, https://arxiv.org/abs/1703.01365

    Args:
        forward_func: The model or any function returning its output.
        multiply_by_inputs: ``True`` for global attributions (times ``x - x'``),
            ``False`` for the path-averaged gradient alone.
    """

    def __init__(
        self, forward_func: Callable[..., Any], multiply_by_inputs: bool = True
    ) -> None:
        super().__init__(forward_func)
        self._multiply_by_inputs = multiply_by_inputs

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_trapezoid",
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_trapezoid",
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_trapezoid",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Integrated Gradients by the rule ``method`` with ``n_steps`` nodes.

        Args:
            inputs: Tensor or tuple of tensors; the first dimension is the batch.
            baselines: As for Captum's ``IntegratedGradients`` (``None`` = zeros,
                a number, a tensor shaped like the inputs or like one example),
                e.g. a :mod:`captum_baselines.baselines` generator's output.
            target: Output index for each example, in any of Captum's forms.
            additional_forward_args: Extra arguments of ``forward_func``.
            n_steps: Number of quadrature nodes.
            method: ``"riemann_trapezoid"`` (default), ``"gausslegendre"``,
                ``"riemann_left"``, ``"riemann_right"`` or ``"riemann_middle"``.
            internal_batch_size: Path points per forward/backward pass.
            return_convergence_delta: Also return ``sum(IG) - (f(x) - f(x'))``.

        Returns:
            Attributions shaped like ``inputs``, and the ``(N,)`` delta if asked.

        Examples::

            >>> ig = QuadratureIntegratedGradients(model)
            >>> attr, delta = ig.attribute(x, baselines=black(x), target=3,
            ...                            n_steps=64, return_convergence_delta=True)
        """
        x = check_inputs("inputs", inputs)
        b = format_baselines(baselines, x)
        n = x[0].shape[0]
        with eval_mode(self.forward_func):
            gap = _completeness_gap(
                self.forward_func, x, b, target, additional_forward_args, None
            )
            attributions = _integrated_gradients(
                self.forward_func,
                x,
                b,
                torch.arange(n, device=x[0].device),
                method,
                n_steps,
                target,
                additional_forward_args,
                internal_batch_size,
                self._multiply_by_inputs,
            )
        result = attributions if isinstance(inputs, tuple) else attributions[0]
        if not return_convergence_delta:
            return result  # type: ignore[return-value]
        return result, _total(attributions).to(gap) - gap  # type: ignore[return-value]

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


class AdaptiveIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients that picks the number of steps per example.

    See :func:`adaptive_integrated_gradients`. ``attribute`` follows Captum's
    convention; the number of Gauss-Legendre nodes each example used in the last
    call is kept in ``n_steps_used`` (and whether it converged in ``converged``).

    Paper: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017, https://arxiv.org/abs/1703.01365

    Args:
        forward_func: The model or any function returning its output.
    """

    def __init__(self, forward_func: Callable[..., Any]) -> None:
        super().__init__(forward_func)
        self.n_steps_used: Tensor | None = None
        self.converged: Tensor | None = None

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        rtol: float = 0.01,
        atol: float = 1e-6,
        initial_n_steps: int = 4,
        max_n_steps: int = 512,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        rtol: float = 0.01,
        atol: float = 1e-6,
        initial_n_steps: int = 4,
        max_n_steps: int = 512,
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        rtol: float = 0.01,
        atol: float = 1e-6,
        initial_n_steps: int = 4,
        max_n_steps: int = 512,
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Integrated Gradients to a completeness tolerance.

        Args:
            inputs: Tensor or tuple of tensors; the first dimension is the batch.
            baselines: As for Captum's ``IntegratedGradients``.
            target: Output index for each example, in any of Captum's forms.
            additional_forward_args: Extra arguments of ``forward_func``.
            rtol: Relative tolerance on ``|delta| / |f(x) - f(x')|``.
            atol: Absolute tolerance on ``|delta|``.
            initial_n_steps: Nodes of the first pass.
            max_n_steps: No example gets more nodes than this.
            internal_batch_size: Path points per forward/backward pass.
            return_convergence_delta: Also return the ``(N,)`` delta.

        Returns:
            Attributions shaped like ``inputs``, and the delta if asked.
        """
        result = adaptive_integrated_gradients(
            self.forward_func,
            inputs,
            baselines,
            target,
            additional_forward_args,
            rtol,
            atol,
            initial_n_steps,
            max_n_steps,
            internal_batch_size,
        )
        self.n_steps_used, self.converged = result.n_steps, result.converged
        attributions = (
            result.attributions if isinstance(inputs, tuple) else result.attributions[0]
        )
        if return_convergence_delta:
            return attributions, result.delta  # type: ignore[return-value]
        return attributions  # type: ignore[return-value]

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True
