r"""Integrated Gradients that doubles its Gauss-Legendre nodes per example.

Each example starts with ``initial_n_steps`` nodes and is recomputed with twice as
many until its estimate is converged, per feature and in sum:

- completeness: ``|sum_i IG_i - (f(x) - f(x'))| <= rtol |f(x) - f(x')| + atol``;
- stability: doubling the nodes changed the attributions by at most
  ``rtol ||IG||_1 + atol`` in L1 norm.

The first alone passes errors that cancel across features (``f = sin(20 x_0) -
sin(20 x_1)`` at ``x = (1, 1)`` from 0 has the right sum at 4 nodes with
attributions ``+-14.6`` instead of ``+-0.913``); the second controls each feature.
Only unconverged examples are re-run; Gauss-Legendre nodes do not nest, so each
pass recomputes its examples from scratch.
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
from .integrated_gradients import check_idgi, completeness_gap, integrated_gradients


class AdaptiveResult(NamedTuple):
    """What :func:`adaptive_integrated_gradients` returns."""

    attributions: tuple[Tensor, ...]
    delta: Tensor
    """``(N,)`` completeness residual of the estimate kept for each example."""
    n_steps: Tensor
    """``(N,)`` Gauss-Legendre nodes of the estimate kept for each example."""
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
    initial_n_steps: int = 4,
    max_n_steps: int = 512,
    internal_batch_size: int | None = None,
    idgi: bool = False,
    show_progress: bool = False,
) -> AdaptiveResult:
    """Integrated Gradients with per-example step doubling (Gauss-Legendre).

    See the module documentation for the two tolerances; every example needs at
    least two passes (``initial_n_steps`` and twice that) to show stability.
    Examples still unconverged when the next doubling would exceed
    ``max_n_steps`` keep their last estimate, and a ``RuntimeWarning`` says how
    many there are.

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
    cap = check_positive_int("max_n_steps", max_n_steps)
    if cap < 2 * n_steps:
        raise ValueError(
            f"`max_n_steps` ({cap}) must be >= 2 * `initial_n_steps` ({2 * n_steps}): "
            "convergence is judged by doubling the nodes"
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
    attributions = tuple(torch.zeros_like(t) for t in x)
    delta = torch.zeros_like(gap)
    steps = torch.zeros(n, dtype=torch.long)
    converged = torch.zeros(n, dtype=torch.bool)
    active = torch.arange(n, device=x[0].device)
    first = True
    while True:
        sums = integrated_gradients(
            forward_func,
            x,
            b,
            active,
            "gausslegendre",
            n_steps,
            target,
            additional_forward_args,
            internal_batch_size,
            idgi=idgi,
            show_progress=show_progress,
        )
        new = tuple(s[active] for s in sums)
        residual = total(new).to(gap) - gap[active]
        done = residual.abs() <= rtol * gap[active].abs() + atol
        if first:
            done = torch.zeros_like(done)
        else:
            change = total(
                tuple((s - a[active]).abs() for s, a in zip(new, attributions))
            )
            size = total(tuple(s.abs() for s in new))
            done &= change.to(gap) <= rtol * size.to(gap) + atol
        for acc, s in zip(attributions, new):
            acc[active] = s
        delta[active] = residual
        steps[active.cpu()] = n_steps
        converged[active[done].cpu()] = True
        active = active[~done]
        first = False
        if len(active) == 0 or 2 * n_steps > cap:
            break
        n_steps *= 2
    return AdaptiveResult(attributions, delta, steps, converged)


class AdaptiveIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients that picks the number of steps per example.

    `Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML
    2017 <https://arxiv.org/abs/1703.01365>`_, evaluated by Gauss-Legendre
    quadrature whose nodes double per example until the estimate is complete to
    ``rtol`` and stable per feature (see :func:`adaptive_integrated_gradients`).
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
        initial_n_steps: int = 4,
        max_n_steps: int = 512,
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
        initial_n_steps: int = 4,
        max_n_steps: int = 512,
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
        initial_n_steps: int = 4,
        max_n_steps: int = 512,
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
            initial_n_steps (int, optional): Nodes of the first pass. Default: 4.
            max_n_steps (int, optional): No example gets more nodes than this.
                Default: 512.
            internal_batch_size (int, optional): Path points per forward and
                backward pass.
            return_convergence_delta (bool, optional): Also return the ``(N,)``
                completeness residual.
            return_n_steps (bool, optional): Also return the ``(N,)`` number of
                nodes each example used, last.
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
