r"""Blur Integrated Gradients (Xu, Venugopalan, Sundararajan, Modi & Taly, CVPR 2020).

`Attribution in Scale and Space <https://arxiv.org/abs/2004.03383>`_ needs no
baseline: the path runs through Gaussian blurs ``L(x, sigma)`` of the input
itself, from a heavy blur at ``sigma_max`` down to the input at ``sigma = 0``::

    BlurIG_i(x) = integral_{sigma_max}^{0} df/dx_i(L(x, s)) dL_i(x, s)/ds ds

On the grid ``0 = sigma_0 < sigma_1 < ... < sigma_n`` the step from
``sigma_{k+1}`` down to ``sigma_k`` is taken with the gradient at its end,
``sigma_k``, and the blur's derivative in sigma by a forward difference of
``h = grad_step``, as the authors' code (PAIR's ``saliency.core.BlurIG``) does::

    BlurIG_i(x) ~ sum_{k<n} (sigma_{k+1} - sigma_k) * df/dx_i(L(x, sigma_k))
                            * -(L_i(x, sigma_k + h) - L_i(x, sigma_k)) / h

A row is one ``(k, example)``: its point ``L(x, sigma_k)``, its velocity the
negated difference quotient (the path goes towards smaller sigma) and its
weight ``sigma_{k+1} - sigma_k``.  ``L`` is :func:`captum_baselines.baselines.blur`
of the last two dimensions, each channel on its own, with zeros beyond the
border (``mode="constant"``, as the reference's ``scipy`` filter), or the low
end of ``value_range`` (black in a normalized space).  The sum
approximates ``f(x) - f(L(x, sigma_n))``; its residual is the convergence delta.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import torch
from captum._utils.common import _format_output, _is_tuple
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from .._engine.forward import forward_rows
from .._engine.inputs import format_inputs
from .._engine.path import PathChunk, Weighting, along_path, integrate, total
from .._engine.targets import check_target_form
from .._hooks import eval_mode
from .._validation import (
    ValueRange,
    check_nonnegative,
    check_optional_positive_int,
    check_positive_int,
    resolve_value_range,
)
from ..baselines import blur
from .idgi import idgi_weighting
from .integrated_gradients import check_idgi, completeness_gap


def blur_sigmas(max_sigma: float, n_steps: int, sqrt: bool = False) -> list[float]:
    """The ``n_steps + 1`` sigmas of the path grid, increasing from 0.

    ``sigma_k = k max_sigma / n_steps``; with ``sqrt``, ``sigma_k = sqrt(k max_sigma
    / n_steps)`` as in the reference: the *variances* are then evenly spaced up to
    ``max_sigma`` (in pixels squared), and the path starts at
    ``L(x, sqrt(max_sigma))``.
    """
    if sqrt:
        return [math.sqrt(k * max_sigma / n_steps) for k in range(n_steps + 1)]
    return [k * max_sigma / n_steps for k in range(n_steps + 1)]


Pads = tuple[Tensor, ...] | None


def blurred(
    inputs: tuple[Tensor, ...], sigma: float, pads: Pads = None
) -> tuple[Tensor, ...]:
    """``L(x, sigma)`` of every input tensor; beyond the border the image
    continues at ``pads`` (one per tensor, broadcast to one example), else 0."""
    if pads is None:
        return tuple(blur(x, sigma, mode="constant") for x in inputs)
    return tuple(blur(x - p, sigma, mode="constant") + p for x, p in zip(inputs, pads))


def blur_rows(
    inputs: tuple[Tensor, ...], sigmas: Sequence[float], rows: slice, pads: Pads = None
) -> tuple[Tensor, ...]:
    """``L(x_e, sigma_k)`` of the rows ``r = k N + e`` in ``rows``.

    Rows are ordered scale by scale, so one blur serves every example of a chunk
    at the same sigma.
    """
    n = inputs[0].shape[0]
    parts = []
    for k in range(rows.start // n, -(-rows.stop // n)):
        first, last = max(rows.start - k * n, 0), min(rows.stop - k * n, n)
        parts.append(blurred(tuple(x[first:last] for x in inputs), sigmas[k], pads))
    return tuple(torch.cat(p) for p in zip(*parts))


class BlurPath:
    """The rows of the blur path of every example, scale by scale."""

    def __init__(
        self,
        inputs: tuple[Tensor, ...],
        sigmas: Sequence[float],
        grad_step: float,
        pads: Pads = None,
    ) -> None:
        self.inputs, self.sigmas, self.grad_step = inputs, sigmas, grad_step
        self.pads = pads
        self.n_examples = inputs[0].shape[0]
        self.n_steps = len(sigmas) - 1
        steps = torch.tensor(sigmas, dtype=torch.float64).diff()
        self.weights = steps.repeat_interleave(self.n_examples)

    @property
    def n_rows(self) -> int:
        return self.n_steps * self.n_examples

    def chunk(self, rows: slice) -> PathChunk:
        points = blur_rows(self.inputs, self.sigmas, rows, self.pads)
        later = [s + self.grad_step for s in self.sigmas]
        ahead = blur_rows(self.inputs, later, rows, self.pads)
        # d/dsigma by the forward difference, negated: the path runs to sigma = 0
        velocities = tuple((p - a) / self.grad_step for p, a in zip(points, ahead))
        device = self.inputs[0].device
        examples = torch.arange(rows.start, rows.stop, device=device)
        return PathChunk(
            rows,
            examples % self.n_examples,
            points,
            velocities,
            self.weights[rows],
        )


def blur_integrated_gradients(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    sigmas: Sequence[float],
    grad_step: float,
    target: TargetType = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    idgi: bool = False,
    show_progress: bool = False,
    pads: Pads = None,
) -> tuple[Tensor, ...]:
    """Blur IG on the grid ``sigmas`` (increasing from 0), every example at once.

    With ``idgi``, row ``(k, e)`` keeps, as :func:`~.idgi.idgi_weighting` does,
    the output change over its step, ``f(L(x_e, sigma_k)) - f(L(x_e,
    sigma_{k+1}))``: ``n_steps + 1`` forward passes per example first.
    """
    path = BlurPath(inputs, sigmas, grad_step, pads)
    n = inputs[0].shape[0]
    weighting: Weighting = along_path
    if idgi:
        values = forward_rows(
            forward_func,
            lambda rows: blur_rows(inputs, sigmas, rows, pads),
            torch.arange(len(sigmas) * n, device=inputs[0].device) % n,
            n,
            target,
            additional_forward_args,
            internal_batch_size,
        ).reshape(len(sigmas), n)
        weighting = idgi_weighting((values[:-1] - values[1:]).reshape(-1))
    return integrate(
        forward_func,
        path,
        inputs,
        target,
        additional_forward_args,
        internal_batch_size,
        weighting,
        show_progress,
        desc="Blur IG",
    ).attributions


def _check_positive(name: str, value: Any) -> float:
    value = check_nonnegative(name, value)
    if value == 0:
        raise ValueError(f"`{name}` must be > 0, got {value}")
    return value


def _check_spatial(inputs: tuple[Tensor, ...]) -> None:
    for i, x in enumerate(inputs):
        if x.dim() < 3:
            label = "inputs" if len(inputs) == 1 else f"inputs[{i}]"
            raise ValueError(
                f"`{label}` of shape {tuple(x.shape)} has no two spatial dimensions "
                "after the batch: Blur IG blurs the last two dimensions"
            )


class BlurIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients along the path of Gaussian blurs, without a baseline.

    `Xu et al., "Attribution in Scale and Space", CVPR 2020
    <https://arxiv.org/abs/2004.03383>`_::

        BlurIG_i(x) = sum_{k<n} (sigma_{k+1} - sigma_k) * df/dx_i(L(x, sigma_k))
                      * -(L_i(x, sigma_k + h) - L_i(x, sigma_k)) / h

    ``L(x, sigma)`` blurs the last two dimensions of each input tensor, every
    channel on its own, with zeros beyond the border; ``sigma_k = k
    max_sigma / n_steps``.  It equals PAIR's ``saliency.core.BlurIG`` with the
    same settings, batched over examples and path points.  The attributions
    sum to about ``f(x) - f(L(x, sigma_n))``.  With ``idgi=True`` the rows are
    weighted as in `IDGI (Yang et al., CVPR 2023)
    <https://arxiv.org/abs/2303.14242>`_ (see :mod:`captum_baselines.attr.idgi`).
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
        target: TargetType = None,
        additional_forward_args: Any = None,
        max_sigma: float = 50.0,
        n_steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        idgi: bool = False,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        value_range: ValueRange | None = None,
        show_progress: bool = False,
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        max_sigma: float = 50.0,
        n_steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        idgi: bool = False,
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
        *,
        value_range: ValueRange | None = None,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        max_sigma: float = 50.0,
        n_steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        idgi: bool = False,
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        *,
        value_range: ValueRange | None = None,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Blur IG from ``L(x, max_sigma)`` to ``x`` in ``n_steps`` steps.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs ``x``, batch first,
                each with two spatial dimensions last (e.g. ``(N, C, H, W)``).
            target (int, tuple, Tensor or list, optional): Output index per
                example, in any of Captum's forms. Default: None.
            additional_forward_args (Any, optional): Passed to ``forward_func``
                after the inputs; per-example tensors follow their example.
            max_sigma (float, optional): The blur at the start of the path, in
                pixels. Default: 50.
            n_steps (int, optional): Riemann steps between ``max_sigma`` and 0.
                Default: 100.
            grad_step (float, optional): The step ``h`` of the forward difference
                that estimates ``dL/dsigma``. Default: 0.01.
            sqrt (bool, optional): The reference's alternative grid
                ``sigma_k = sqrt(k max_sigma / n_steps)``: evenly spaced
                variances up to ``max_sigma`` (pixels squared), so the path then
                starts at ``L(x, sqrt(max_sigma))``. Default: False.
            idgi (bool, optional): Weight the rows as IDGI does (attributions
                then sum to ``f(x) - f(L(x, sigma_n))`` exactly); costs
                ``n_steps + 1`` extra forward passes per example.
                Default: False.
            internal_batch_size (int, optional): Path points per forward and
                backward pass; bounds memory, changes no result. Default: all.
            return_convergence_delta (bool, optional): Also return
                ``sum(BlurIG) - (f(x) - f(L(x, sigma_n)))`` per example.
                Default: False.
            value_range (tuple, optional): The valid range ``(low, high)`` of
                the inputs, floats or tensors broadcastable to one example (e.g.
                :func:`~captum_baselines.baselines.normalized_range` for
                normalized images): beyond the border the image continues at
                ``low`` (black), as the reference's zeros do for images in
                ``[0, 1]``. Default: None, zeros in any space (the reference).
            show_progress (bool, optional): Show a tqdm bar over the path points.

        Returns:
            *Tensor* or tuple of *Tensors* of **attributions** shaped like
            ``inputs``, and with ``return_convergence_delta=True`` the ``(N,)``
            **delta**.

        Examples::

            >>> blur_ig = BlurIntegratedGradients(model)
            >>> attr, delta = blur_ig.attribute(images, target=labels,
            ...                                 internal_batch_size=64,
            ...                                 return_convergence_delta=True)
        """
        x = format_inputs(inputs)
        _check_spatial(x)
        max_sigma = _check_positive("max_sigma", max_sigma)
        n_steps = check_positive_int("n_steps", n_steps)
        grad_step = _check_positive("grad_step", grad_step)
        if not isinstance(sqrt, bool):
            raise TypeError(f"`sqrt` must be a bool, got {type(sqrt).__name__}")
        idgi = check_idgi(idgi, True)
        check_target_form(target, x[0].shape[0])
        check_optional_positive_int("internal_batch_size", internal_batch_size)
        pads = (
            None
            if value_range is None
            else tuple(resolve_value_range(value_range, t)[0] for t in x)
        )
        sigmas = blur_sigmas(max_sigma, n_steps, sqrt)
        with eval_mode(self.forward_func):
            attributions = blur_integrated_gradients(
                self.forward_func,
                x,
                sigmas,
                grad_step,
                target,
                additional_forward_args,
                internal_batch_size,
                idgi,
                show_progress,
                pads,
            )
            if return_convergence_delta:
                gap = completeness_gap(
                    self.forward_func,
                    x,
                    blurred(x, sigmas[-1], pads),
                    target,
                    additional_forward_args,
                    internal_batch_size,
                )
        result = _format_output(_is_tuple(inputs), attributions)
        if not return_convergence_delta:
            return result  # type: ignore[return-value]
        return result, total(attributions).to(gap) - gap  # type: ignore[return-value]

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True


__all__ = [
    "BlurIntegratedGradients",
    "BlurPath",
    "blur_integrated_gradients",
    "blur_rows",
    "blur_sigmas",
    "blurred",
]
