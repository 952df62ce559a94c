r"""Integrated Gradients that refines its trapezoid rule per example.

Each example starts with the trapezoid rule on ``initial_n_steps`` equally spaced
nodes (both ends included) and halves the spacing until its estimate is
converged, per feature and in sum:

- completeness: ``|sum_i IG_i - (f(x) - f(x'))| <= rtol |f(x) - f(x')| + atol``;
- stability: doubling the nodes changed the attributions by at most
  ``rtol ||IG||_1 + atol`` in L1 norm.

The first alone passes errors that cancel across features (``f = sin(20 x_0) -
sin(20 x_1)`` at ``x = (1, 1)`` from 0 has the right sum at 4 Gauss-Legendre
nodes with attributions ``+-14.6`` instead of ``+-0.913``); the second controls
each feature.

Why the trapezoid rule: halving its spacing keeps every node, so a refinement
costs only the new midpoints, ``T_2m = T_m / 2 + (1 / 2m) sum_midpoints``, with
nothing stored but the running estimate; an example converged at ``m`` intervals
has cost ``m + 1`` gradients.  Gauss-Legendre nodes do not nest, so doubling them
costs every level again (about twice the final count).  Along a ReLU network's
path the integrand is piecewise constant, every rule's error falls as ``1/m``,
and reuse is what counts; on smooth paths the trapezoid rule still converges as
``1/m^2`` and stops within a few levels.  Only unconverged examples are refined.
With ``idgi`` a level cannot reuse the previous one (IDGI's weights depend on the
steps), so each level is computed afresh on the refined trapezoid nodes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, overload

import torch
from captum._utils.common import _format_output, _is_tuple
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from .._engine.inputs import format_baselines, format_inputs
from .._engine.path import total
from .._engine.targets import check_target_form
from .._hooks import eval_mode
from .._validation import (
    check_nonnegative,
    check_optional_positive_int,
    check_positive_int,
)
from .integrated_gradients import (
    check_idgi,
    completeness_gap,
    integrated_gradients,
    line_integral,
)


class AdaptiveResult(NamedTuple):
    """What :func:`adaptive_integrated_gradients` returns."""

    attributions: tuple[Tensor, ...]
    delta: Tensor
    """``(N,)`` completeness residual of the estimate kept for each example."""
    n_steps: Tensor
    """``(N,)`` gradient evaluations (trapezoid nodes) of each example."""
    converged: Tensor
    """``(N,)`` whether each example met both tolerances within ``max_n_steps``."""


def adaptive_integrated_gradients(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: BaselineType = None,
    target: TargetType = None,
    additional_forward_args: Any = None,
    rtol: float = 0.01,
    atol: float = 1e-6,
    initial_n_steps: int = 5,
    max_n_steps: int = 1025,
    internal_batch_size: int | None = None,
    idgi: bool = False,
    show_progress: bool = False,
) -> AdaptiveResult:
    """Integrated Gradients with per-example refinement of the trapezoid rule.

    See the module documentation for the two tolerances; every example needs at
    least two levels (``initial_n_steps`` nodes and ``2 initial_n_steps - 1``) to
    show stability.  Examples still unconverged when the next refinement would
    exceed ``max_n_steps`` nodes keep their last estimate, and a
    ``RuntimeWarning`` says how many there are.

    Returns:
        :class:`AdaptiveResult` with the attributions (a tuple, one tensor per
        input), the ``(N,)`` delta, the ``(N,)`` number of nodes each example used
        and whether it converged.
    """
    x = format_inputs(inputs)
    b = format_baselines(baselines, x)
    rtol = check_nonnegative("rtol", rtol)
    atol = check_nonnegative("atol", atol)
    n_steps = check_positive_int("initial_n_steps", initial_n_steps)
    if n_steps < 2:
        raise ValueError(
            f"`initial_n_steps` must be >= 2 (the trapezoid rule's two ends), "
            f"got {n_steps}"
        )
    cap = check_positive_int("max_n_steps", max_n_steps)
    if cap < 2 * n_steps - 1:
        raise ValueError(
            f"`max_n_steps` ({cap}) must be >= 2 * `initial_n_steps` - 1 "
            f"({2 * n_steps - 1}): convergence is judged by one refinement"
        )
    check_target_form(target, x[0].shape[0])
    check_optional_positive_int("internal_batch_size", internal_batch_size)
    idgi = check_idgi(idgi, True)
    with eval_mode(forward_func):
        gap = completeness_gap(
            forward_func, x, b, target, additional_forward_args, internal_batch_size
        )
        result = _doubling(
            forward_func,
            x,
            b,
            gap,
            target,
            additional_forward_args,
            rtol,
            atol,
            n_steps,
            cap,
            internal_batch_size,
            idgi,
            show_progress,
        )
    unconverged = int((~result.converged).sum())
    if unconverged:
        warnings.warn(
            f"adaptive Integrated Gradients: {unconverged} of {len(gap)} examples "
            f"did not converge within max_n_steps={cap} (rtol={rtol}, atol={atol}); "
            "their last estimate is returned",
            RuntimeWarning,
            stacklevel=3,
        )
    return result


def _doubling(
    forward_func: Callable[..., Any],
    x: tuple[Tensor, ...],
    b: tuple[Tensor, ...],
    gap: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    rtol: float,
    atol: float,
    n_steps: int,
    cap: int,
    internal_batch_size: int | None,
    idgi: bool,
    show_progress: bool,
) -> AdaptiveResult:
    n = x[0].shape[0]
    estimate = tuple(torch.zeros_like(t) for t in x)
    delta = torch.zeros_like(gap)
    steps = torch.zeros(n, dtype=torch.long)
    converged = torch.zeros(n, dtype=torch.bool)
    active = torch.arange(n, device=x[0].device)
    intervals = n_steps - 1
    previous: tuple[Tensor, ...] | None = None
    while True:
        if previous is None or idgi:
            sums = integrated_gradients(
                forward_func,
                x,
                b,
                active,
                "riemann_trapezoid",
                intervals + 1,
                target,
                additional_forward_args,
                internal_batch_size,
                idgi=idgi,
                show_progress=show_progress,
            )
            new = tuple(s[active] for s in sums)
        else:
            # T_2m = T_m / 2 + (1 / 2m) * (sum of the gradients at the midpoints)
            midpoints = (torch.arange(intervals // 2, dtype=torch.float64) + 0.5) / (
                intervals // 2
            )
            weights = torch.full_like(midpoints, 1.0 / intervals)
            sums = line_integral(
                forward_func,
                x,
                b,
                active,
                midpoints,
                weights,
                target,
                additional_forward_args,
                internal_batch_size,
                show_progress=show_progress,
            )
            new = tuple(p / 2 + s[active] for p, s in zip(previous, sums))
        residual = total(new).to(gap) - gap[active]
        done = torch.zeros_like(residual, dtype=torch.bool)
        if previous is not None:
            change = total(tuple((s - p).abs() for s, p in zip(new, previous)))
            size = total(tuple(s.abs() for s in new))
            done = (residual.abs() <= rtol * gap[active].abs() + atol) & (
                change.to(gap) <= rtol * size.to(gap) + atol
            )
        for acc, s in zip(estimate, new):
            acc[active] = s
        delta[active] = residual
        steps[active.cpu()] = intervals + 1
        converged[active[done].cpu()] = True
        keep = ~done
        active = active[keep]
        previous = tuple(s[keep] for s in new)
        if len(active) == 0 or 2 * intervals + 1 > cap:
            break
        intervals *= 2
    return AdaptiveResult(estimate, delta, steps, converged)


class AdaptiveIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients that picks the number of steps per example.

    `Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML
    2017 <https://arxiv.org/abs/1703.01365>`_, evaluated by a trapezoid rule whose
    spacing halves per example, reusing every node, until the estimate is
    complete to ``rtol`` and stable per feature (see
    :func:`adaptive_integrated_gradients`).
    With ``idgi=True`` each pass is weighted as `IDGI
    <https://arxiv.org/abs/2303.14242>`_ does (complete by construction, so the
    stability criterion decides).
    """

    def __init__(self, forward_func: Callable[..., Any]) -> None:
        r"""
        Args:
            forward_func (Callable): The model or any function returning its
                output.
        """
        super().__init__(forward_func)

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        rtol: float = 0.01,
        atol: float = 1e-6,
        initial_n_steps: int = 5,
        max_n_steps: int = 1025,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        return_n_steps: bool = False,
        idgi: bool = False,
        show_progress: bool = False,
    ) -> tuple[Any, ...]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        rtol: float = 0.01,
        atol: float = 1e-6,
        initial_n_steps: int = 5,
        max_n_steps: int = 1025,
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
        *,
        return_n_steps: bool = False,
        idgi: bool = False,
        show_progress: bool = False,
    ) -> Any: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        rtol: float = 0.01,
        atol: float = 1e-6,
        initial_n_steps: int = 5,
        max_n_steps: int = 1025,
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        *,
        return_n_steps: bool = False,
        idgi: bool = False,
        show_progress: bool = False,
    ) -> Any:
        r"""Integrated Gradients to a completeness and stability tolerance.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs ``x``, batch first.
            baselines (scalar, Tensor or tuple, optional): The path starts, in
                the forms :class:`QuadratureIntegratedGradients` accepts.
            target (int, tuple, Tensor or list, optional): Output index per
                example, in any of Captum's forms.
            additional_forward_args (Any, optional): Passed to ``forward_func``.
            rtol (float, optional): Relative tolerance of both criteria.
                Default: 0.01.
            atol (float, optional): Absolute tolerance of both criteria.
                Default: 1e-6.
            initial_n_steps (int, optional): Trapezoid nodes of the first level,
                both ends included (>= 2). Default: 5.
            max_n_steps (int, optional): No example gets more nodes than this.
                Default: 1025.
            internal_batch_size (int, optional): Path points per forward and
                backward pass.
            return_convergence_delta (bool, optional): Also return the ``(N,)``
                completeness residual.
            return_n_steps (bool, optional): Also return, last, the ``(N,)``
                number of gradient evaluations (nodes) each example used.
            idgi (bool, optional): IDGI weighting of each pass.
            show_progress (bool, optional): Show a tqdm bar per pass.

        Returns:
            **attributions** shaped like ``inputs``; then the **delta** if
            ``return_convergence_delta``; then **n_steps** if ``return_n_steps``.
            A ``RuntimeWarning`` names the examples left unconverged.

        Examples::

            >>> aig = AdaptiveIntegratedGradients(model)
            >>> attr, delta, n_steps = aig.attribute(
            ...     x, baselines=blur(x, 5.0), target=3, rtol=0.01,
            ...     return_convergence_delta=True, return_n_steps=True)
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
            idgi,
            show_progress,
        )
        outputs: list[Any] = [_format_output(_is_tuple(inputs), result.attributions)]
        if return_convergence_delta:
            outputs.append(result.delta)
        if return_n_steps:
            outputs.append(result.n_steps)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True


__all__ = [
    "AdaptiveIntegratedGradients",
    "AdaptiveResult",
    "adaptive_integrated_gradients",
]
