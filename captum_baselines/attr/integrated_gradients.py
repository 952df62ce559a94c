r"""Integrated Gradients with correctly weighted quadrature rules.

Integrated Gradients (Sundararajan, Taly & Yan 2017, https://arxiv.org/abs/1703.01365)
attributes ``f(x) - f(x')`` to the features by the path integral::

    IG_i(x) = (x_i - x'_i) * integral_0^1 df/dx_i(x' + alpha (x - x')) d alpha

which a quadrature rule turns into ``sum_k w_k (x_i - x'_i) df/dx_i(x' + alpha_k
(x - x'))``: rows on the straight line with the rule's nodes and weights.
Completeness, ``sum_i IG_i = f(x) - f(x')``, holds for the exact integral, so its
residual (the convergence delta) measures the quadrature error.  Every rule here
has weights that sum to one; Captum 0.9's ``"riemann_trapezoid"`` does not (see
``docs/captum_trapezoid.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np
import torch
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from .._engine.forward import forward_inputs, forward_rows
from .._engine.inputs import format_path_arguments, format_result
from .._engine.path import StraightLinePath, Weighting, along_path, integrate, total
from .._hooks import eval_mode
from .._validation import check_positive_int
from .idgi import idgi_weighting, step_boundaries

RULES = (
    "gausslegendre",
    "riemann_trapezoid",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
)


def quadrature(method: str, n_steps: int) -> tuple[Tensor, Tensor]:
    """Nodes ``alpha_k`` (increasing) and weights ``w_k`` of a rule on [0, 1].

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
        raise ValueError(f"`method` must be one of {RULES}, got {method!r}")
    return (k + offsets[method]) / n, torch.full((n,), 1.0 / n, dtype=torch.float64)


def check_rule(method: Any, n_steps: Any) -> int:
    """Checks ``method`` and ``n_steps`` together, before any work."""
    if method not in RULES:
        raise ValueError(f"`method` must be one of {RULES}, got {method!r}")
    n = check_positive_int("n_steps", n_steps)
    if method == "riemann_trapezoid" and n < 2:
        raise ValueError("`n_steps` must be >= 2 for 'riemann_trapezoid'")
    return n


def integrated_gradients(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    examples: Tensor,
    method: str,
    n_steps: int,
    target: TargetType = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    multiply_by_inputs: bool = True,
    idgi: bool = False,
    show_progress: bool = False,
) -> tuple[Tensor, ...]:
    """IG of the given ``examples`` by one rule; other examples' rows stay zero."""
    alphas, weights = quadrature(method, n_steps)
    return line_integral(
        forward_func,
        inputs,
        baselines,
        examples,
        alphas,
        weights,
        target,
        additional_forward_args,
        internal_batch_size,
        multiply_by_inputs,
        idgi,
        show_progress,
    )


def line_integral(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    examples: Tensor,
    alphas: Tensor,
    weights: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    multiply_by_inputs: bool = True,
    idgi: bool = False,
    show_progress: bool = False,
) -> tuple[Tensor, ...]:
    """``sum_k w_k (x - x') df/dx(x' + alpha_k (x - x'))`` for ``examples``.

    With ``idgi``, the rows are weighted by :func:`~.idgi.idgi_weighting` over the
    steps of the rule (``alphas`` increasing, weights summing to one); ``f`` is
    evaluated first at the ``len(alphas) + 1`` step boundaries of each example
    (forward passes only).
    """
    n_nodes = len(alphas)
    path = StraightLinePath.from_baselines(
        inputs,
        baselines,
        examples.repeat_interleave(n_nodes),
        alphas.repeat(len(examples)),
        weights.repeat(len(examples)),
        multiply_by_inputs,
    )
    weighting: Weighting = along_path
    if idgi:
        bounds = step_boundaries(weights)
        ends = StraightLinePath.from_baselines(
            inputs,
            baselines,
            examples.repeat_interleave(n_nodes + 1),
            bounds.repeat(len(examples)),
            torch.ones(len(examples) * (n_nodes + 1), dtype=torch.float64),
        )
        values = forward_rows(
            forward_func,
            ends.points_of,
            ends.examples,
            inputs[0].shape[0],
            target,
            additional_forward_args,
            internal_batch_size,
        ).reshape(len(examples), n_nodes + 1)
        weighting = idgi_weighting((values[:, 1:] - values[:, :-1]).reshape(-1))
    return integrate(
        forward_func,
        path,
        inputs,
        target,
        additional_forward_args,
        internal_batch_size,
        weighting,
        show_progress,
        desc="Integrated Gradients",
    ).attributions


def completeness_gap(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Any,
    internal_batch_size: int | None = None,
) -> Tensor:
    """``(N,)``: ``f(x) - f(x')`` per example."""
    f_x = forward_inputs(
        forward_func, inputs, target, additional_forward_args, internal_batch_size
    )
    f_b = forward_inputs(
        forward_func, baselines, target, additional_forward_args, internal_batch_size
    )
    return f_x - f_b


def check_idgi(idgi: Any, multiply_by_inputs: bool) -> bool:
    if not isinstance(idgi, bool):
        raise TypeError(f"`idgi` must be a bool, got {type(idgi).__name__}")
    if idgi and not multiply_by_inputs:
        raise ValueError(
            "`idgi=True` attributes the output change, a global attribution: it "
            "needs multiply_by_inputs=True"
        )
    return idgi


class QuadratureIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients evaluated with a correctly weighted quadrature rule.

    `Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML
    2017 <https://arxiv.org/abs/1703.01365>`_::

        IG_i(x) = (x_i - x'_i) * sum_k w_k df/dx_i(x' + alpha_k (x - x'))

    The same estimator as Captum's ``IntegratedGradients`` for
    ``"gausslegendre"`` (the default of both) and the ``"riemann_left"``,
    ``"riemann_right"`` and ``"riemann_middle"`` rules;
    ``"riemann_trapezoid"`` here uses ``n_steps`` points with spacing
    ``1 / (n_steps - 1)`` and halved end weights, so the weights sum to one
    (Captum's sum to ``(n_steps - 1) / n_steps``).  With ``idgi=True`` the rows
    are re-weighted as in `IDGI (Yang et al., CVPR 2023)
    <https://arxiv.org/abs/2303.14242>`_ (see :mod:`captum_baselines.attr.idgi`).
    """

    def __init__(
        self, forward_func: Callable[..., Any], multiply_by_inputs: bool = True
    ) -> None:
        r"""
        Args:
            forward_func (Callable): The model or any function returning its
                output.
            multiply_by_inputs (bool, optional): ``True`` (default) for global
                attributions (times ``x - x'``), ``False`` for the path-averaged
                gradient alone.
        """
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
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        idgi: bool = False,
        show_progress: bool = False,
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
        *,
        idgi: bool = False,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        *,
        idgi: bool = False,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Integrated Gradients by the rule ``method`` with ``n_steps`` nodes.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs ``x``, batch first.
            baselines (scalar, Tensor or tuple, optional): The path starts ``x'``:
                ``None`` (zeros), a number, a tensor shaped like the inputs, like
                one example, or with a first dimension of 1 (one per input tensor
                for tuples), e.g. a :mod:`captum_baselines.baselines` generator's
                output. Default: None.
            target (int, tuple, Tensor or list, optional): Output index per
                example, in any of Captum's forms. Default: None.
            additional_forward_args (Any, optional): Passed to ``forward_func``
                after the inputs; per-example tensors follow their example.
            n_steps (int, optional): Number of quadrature nodes. Default: 50.
            method (str, optional): ``"gausslegendre"`` (default),
                ``"riemann_trapezoid"``, ``"riemann_left"``, ``"riemann_right"``
                or ``"riemann_middle"``.
            internal_batch_size (int, optional): Path points per forward and
                backward pass; bounds memory, changes no result. Default: all.
            return_convergence_delta (bool, optional): Also return
                ``sum(IG) - (f(x) - f(x'))`` per example. Default: False.
            idgi (bool, optional): Weight the rows as IDGI does (attributions
                then sum to ``f(x) - f(x')`` exactly); costs ``n_steps + 1``
                extra forward passes per example. Default: False.
            show_progress (bool, optional): Show a tqdm bar over the path points.

        Returns:
            *Tensor* or tuple of *Tensors* of **attributions** shaped like
            ``inputs``, and with ``return_convergence_delta=True`` the ``(N,)``
            **delta**.

        Examples::

            >>> ig = QuadratureIntegratedGradients(model)
            >>> attr, delta = ig.attribute(x, baselines=black(x), target=3,
            ...                            n_steps=64, return_convergence_delta=True)
        """
        x, b = format_path_arguments(inputs, baselines, target, internal_batch_size)
        n_steps = check_rule(method, n_steps)
        idgi = check_idgi(idgi, self._multiply_by_inputs)
        with eval_mode(self.forward_func):
            attributions = integrated_gradients(
                self.forward_func,
                x,
                b,
                torch.arange(x[0].shape[0], device=x[0].device),
                method,
                n_steps,
                target,
                additional_forward_args,
                internal_batch_size,
                self._multiply_by_inputs,
                idgi,
                show_progress,
            )
            if return_convergence_delta:
                gap = completeness_gap(
                    self.forward_func,
                    x,
                    b,
                    target,
                    additional_forward_args,
                    internal_batch_size,
                )
        if not return_convergence_delta:
            return format_result(inputs, attributions)  # type: ignore[no-any-return]
        delta = total(attributions).to(gap) - gap
        return format_result(inputs, attributions, delta)  # type: ignore[no-any-return]

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


__all__ = [
    "RULES",
    "QuadratureIntegratedGradients",
    "check_rule",
    "completeness_gap",
    "integrated_gradients",
    "line_integral",
    "quadrature",
]
