r"""Guided Integrated Gradients (Kapishnikov et al., CVPR 2021).

`Guided Integrated Gradients: an Adaptive Path Method for Removing Noise
<https://arxiv.org/abs/2106.09788>`_ adapts the path from the baseline ``x'`` to
the input ``x`` to the model: it is built step by step from its own gradients,
moving first the features whose gradient is smallest in magnitude, so that the
path avoids the regions where the output changes fast for the wrong reasons::

    GuidedIG_i(x) = sum_{k<n} df/dx_i(gamma_k) * (gamma_{k+1, i} - gamma_{k, i})

a left Riemann-Stieltjes sum over ``gamma_0 = x', gamma_1, ..., gamma_n = x``.
Step ``k`` (``alpha = (k + 1) / n``) brings the L1 distance to the input down to
``(1 - alpha) ||x - x'||_1``, every feature staying within ``max_dist`` of the
straight line: in ``[x'_i + a_lo (x_i - x'_i), x'_i + a_hi (x_i - x'_i)]`` with
``a_lo, a_hi = alpha -+ max_dist`` clipped to ``[0, 1]``.  Within a step, as the
authors' code (PAIR's ``saliency.core.GuidedIG``) does, repeatedly:

1. features behind the band (below ``a_lo``) catch up to it;
2. if the distance target is met (to ``1e-9``), the step ends;
3. the features not yet at ``a_hi`` whose ``|df/dx_i|`` is at most the
   ``fraction`` quantile (the lower order statistic) of ``|df/dx|`` over all
   features, counting those at ``a_hi`` as infinite, are selected;
4. they move to ``a_hi``, or, if that would overshoot the target, all by the
   same fraction ``gamma`` of their way there that meets it exactly.

Here every example of the batch takes its step at once: the selection is
per-example order statistics over the flattened features (every input tensor
together), and the gradients come from the path engine's
:func:`~captum_baselines._engine.path.gradients_at`.  As in the reference, the
path is kept in float64 and the model evaluated in the inputs' dtype.  With
``fraction=1`` and ``max_dist=1`` every feature moves at once and the path is
the straight line: Integrated Gradients with the left Riemann rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, overload

import torch
from captum._utils.common import _format_output, _is_tuple
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from tqdm.auto import tqdm

from .._engine.forward import forward_inputs
from .._engine.inputs import format_baselines, format_inputs
from .._engine.path import PathChunk, Weighting, along_path, column, gradients_at, total
from .._engine.targets import check_target_form
from .._hooks import eval_mode
from .._validation import (
    check_nonnegative,
    check_optional_positive_int,
    check_positive_int,
)
from .idgi import idgi_weighting
from .integrated_gradients import check_idgi, completeness_gap

#: The distance target of a step counts as met within this (the reference's).
TOLERANCE = 1e-9


def flatten(tensors: tuple[Tensor, ...]) -> Tensor:
    """``(N, F)``: the features of every tensor of each example, side by side."""
    n = tensors[0].shape[0]
    return torch.cat([t.reshape(n, -1) for t in tensors], dim=1)


def unflatten(flat: Tensor, like: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The inverse of :func:`flatten` for tensors shaped like ``like``."""
    sizes = [t[0].numel() for t in like]
    return tuple(
        part.reshape(-1, *t.shape[1:]) for part, t in zip(flat.split(sizes, 1), like)
    )


class GuidedPath:
    """The straight line the guided path stays near, per example, flattened.

    Attributes:
        start: ``(N, F)`` the baselines ``x'``.
        end: ``(N, F)`` the inputs ``x``.
        span: ``x - x'``.
        length: ``(N,)`` ``||x - x'||_1``.
    """

    def __init__(self, start: Tensor, end: Tensor) -> None:
        self.start, self.end = start, end
        self.span = end - start
        self.length = self.span.abs().sum(1)

    def at(self, alpha: float) -> Tensor:
        """The straight line's point at ``alpha``."""
        return self.start + self.span * alpha

    def alpha_of(self, x: Tensor, default: float) -> Tensor:
        """Each feature's position along its line; ``default`` where ``x = x'``."""
        return torch.where(self.span != 0, (x - self.start) / self.span, default)


def guided_step(
    x: Tensor,
    gradient: Tensor,
    line: GuidedPath,
    alpha: float,
    fraction: float,
    max_dist: float,
) -> Tensor:
    """``gamma_{k+1}``: the point after the step to ``alpha``, for every example.

    Args:
        x: ``(N, F)`` the point ``gamma_k``.
        gradient: ``(N, F)`` ``df/dx`` there.
        line: The straight lines from the baselines to the inputs.
        alpha: ``(k + 1) / n``, the share of the distance covered after the step.
        fraction: The quantile of ``|df/dx|`` below which features move.
        max_dist: How far (in alpha) a feature may stray from the line.
    """
    low, high = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
    bottom, top = line.at(low), line.at(high)
    goal = line.length * (1.0 - alpha)
    rank = math.floor((x.shape[1] - 1) * fraction)  # the lower order statistic
    magnitude = gradient.abs()
    moving = torch.ones(len(x), dtype=torch.bool, device=x.device)
    while bool(moving.any()):
        behind = (line.alpha_of(x, high) < low) & moving[:, None]
        x = torch.where(behind, bottom, x)
        distance = (x - line.end).abs().sum(1)
        moving &= (distance - goal).abs() > torch.clamp(
            TOLERANCE * torch.maximum(distance, goal), min=TOLERANCE
        )
        done = x == top
        ranked = torch.where(done, math.inf, magnitude)
        threshold = ranked.kthvalue(rank + 1, dim=1).values
        selected = (ranked <= threshold[:, None]) & ~done & moving[:, None]
        room = ((top - x).abs() * selected).sum(1)
        gamma = torch.where(room > 0, (distance - goal) / room, math.inf)
        # all the way to the top if that is not enough, else the share gamma
        moved = torch.where(column(gamma, x) > 1, top, x + (top - x) * column(gamma, x))
        x = torch.where(selected, moved, x)
        # Selected features that all reach the band's top leave the target unmet:
        # select again.  With nothing left to select (every feature at the top)
        # nothing can move, and the step ends rather than loop forever.
        moving &= (gamma > 1) & (room > 0)
    return x


def gradients_of_examples(
    forward_func: Callable[..., Any],
    x: Tensor,
    like: tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Any,
    internal_batch_size: int | None,
    check: bool = False,
) -> tuple[Tensor, Tensor]:
    """``(df/dx, f)`` at one point per example, ``(N, F)`` and ``(N,)``, in chunks
    of ``internal_batch_size`` examples."""
    n = len(x)
    size = internal_batch_size or n
    points = tuple(p.to(t.dtype) for p, t in zip(unflatten(x, like), like))
    gradients, values = [], []
    for start in range(0, n, size):
        rows = torch.arange(start, min(start + size, n), device=x.device)
        g, v = gradients_at(
            forward_func,
            tuple(p[start : start + size] for p in points),
            rows,
            n,
            target,
            additional_forward_args,
            check=check and start == 0,
        )
        gradients.append(flatten(g).to(x.dtype))
        values.append(v)
    return torch.cat(gradients), torch.cat(values).to(x)


def guided_integrated_gradients(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    n_steps: int,
    fraction: float,
    max_dist: float,
    target: TargetType = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    idgi: bool = False,
    show_progress: bool = False,
) -> tuple[Tensor, ...]:
    """Guided IG of every example, the path built for all of them step by step.

    Step ``k``'s term ``df/dx(gamma_k) * (gamma_{k+1} - gamma_k)`` goes through the
    engine's weighting: :func:`~captum_baselines._engine.path.along_path`, or with
    ``idgi`` :func:`~.idgi.idgi_weighting` with the output change
    ``f(gamma_{k+1}) - f(gamma_k)`` (known once the next step's gradient pass has
    scored ``gamma_{k+1}``; one forward pass at the end scores ``gamma_n``).
    """
    n = inputs[0].shape[0]
    # The path is kept in float64, as the reference keeps it, wherever the device
    # has float64; the model sees points in the inputs' dtype.  A guided path is
    # chaotic at float32 rounding: on a random ResNet-18, a 1e-7 relative change
    # of the input moves the reference's attributions by 17% of their largest.
    exact = torch.float64 if inputs[0].device.type != "mps" else inputs[0].dtype
    line = GuidedPath(flatten(baselines).to(exact), flatten(inputs).to(exact))
    x = line.start.clone()
    sums = torch.zeros_like(x)
    rows = torch.arange(n, device=x.device)

    def add_term(step: PathChunk, gradient: Tensor, f: Tensor, f_next: Tensor) -> None:
        weighting: Weighting = idgi_weighting(f_next - f) if idgi else along_path
        (term,), weights = weighting((gradient,), f, step)
        sums.add_(term * column(weights, term))

    last = None
    for k in tqdm(range(n_steps), desc="Guided IG", disable=not show_progress):
        gradient, f = gradients_of_examples(
            forward_func,
            x,
            inputs,
            target,
            additional_forward_args,
            internal_batch_size,
            check=k == 0,
        )
        if last is not None:
            add_term(*last, f)
        x_next = guided_step(x, gradient, line, (k + 1) / n_steps, fraction, max_dist)
        step = PathChunk(slice(0, n), rows, (x,), (x_next - x,), torch.ones_like(f))
        last, x = (step, gradient, f), x_next
    assert last is not None
    f_end = (
        forward_inputs(
            forward_func,
            tuple(p.to(t.dtype) for p, t in zip(unflatten(x, inputs), inputs)),
            target,
            additional_forward_args,
            internal_batch_size,
        ).to(x)
        if idgi
        else last[2]  # along the path the output change is not used
    )
    add_term(*last, f_end)
    return tuple(s.to(t.dtype) for s, t in zip(unflatten(sums, inputs), inputs))


class GuidedIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients along a path adapted to the model's gradients.

    `Kapishnikov et al., "Guided Integrated Gradients: an Adaptive Path Method
    for Removing Noise", CVPR 2021 <https://arxiv.org/abs/2106.09788>`_::

        GuidedIG_i(x) = sum_{k<n} df/dx_i(gamma_k) * (gamma_{k+1, i} - gamma_{k, i})

    Each step of the path from ``x'`` to ``x`` moves the features with the
    smallest ``|df/dx_i|`` first (a ``fraction`` of them at a time) until a
    ``(k + 1) / n`` share of the L1 distance is covered, keeping every feature
    within ``max_dist`` of the straight line (see
    :mod:`captum_baselines.attr.guided_ig`).  It equals PAIR's
    ``saliency.core.GuidedIG`` with the same settings, every example of the
    batch at once.  The attributions sum to about ``f(x) - f(x')``.  With
    ``fraction=1`` and ``max_dist=1`` it is Integrated Gradients with the left
    Riemann rule.  With ``idgi=True`` the steps are weighted as in `IDGI (Yang et
    al., CVPR 2023) <https://arxiv.org/abs/2303.14242>`_.
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
        n_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        idgi: bool = False,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        show_progress: bool = False,
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        idgi: bool = False,
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
        *,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        idgi: bool = False,
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        *,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Guided IG from ``baselines`` to ``inputs`` in ``n_steps`` steps.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs ``x``, batch first.
                The features of every tensor of a tuple are selected together.
            baselines (scalar, Tensor or tuple, optional): The path starts ``x'``:
                ``None`` (zeros, black), a number, a tensor shaped like the
                inputs, like one example, or with a first dimension of 1 (one per
                input tensor for tuples). Default: None.
            target (int, tuple, Tensor or list, optional): Output index per
                example, in any of Captum's forms. Default: None.
            additional_forward_args (Any, optional): Passed to ``forward_func``
                after the inputs; per-example tensors follow their example.
            n_steps (int, optional): Steps of the path, one gradient pass each.
                Default: 200.
            fraction (float, optional): In ``(0, 1]``: the quantile of
                ``|df/dx|`` up to which features are selected to move within a
                step. Default: 0.25.
            max_dist (float, optional): How far, as a share of the straight
                line from ``x'`` to ``x``, a feature may lead or lag it: ``0``
                keeps to the line (IG), ``1`` allows any point of the box between
                ``x'`` and ``x``. Default: 0.02.
            idgi (bool, optional): Weight the steps as IDGI does (attributions
                then sum to ``f(gamma_n) - f(x')``, ``gamma_n`` the path's end,
                ``x`` to 1e-9 in L1); costs one extra forward pass per example.
                Default: False.
            internal_batch_size (int, optional): Examples per forward and
                backward pass; bounds memory, changes no result. Default: all.
            return_convergence_delta (bool, optional): Also return
                ``sum(GuidedIG) - (f(x) - f(x'))`` per example. Default: False.
            show_progress (bool, optional): Show a tqdm bar over the steps.

        Returns:
            *Tensor* or tuple of *Tensors* of **attributions** shaped like
            ``inputs``, and with ``return_convergence_delta=True`` the ``(N,)``
            **delta**.

        Examples::

            >>> guided_ig = GuidedIntegratedGradients(model)
            >>> attr, delta = guided_ig.attribute(images, target=labels,
            ...                                   return_convergence_delta=True)
        """
        x = format_inputs(inputs)
        b = format_baselines(baselines, x)
        n_steps = check_positive_int("n_steps", n_steps)
        fraction = check_nonnegative("fraction", fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"`fraction` must be in (0, 1], got {fraction}")
        max_dist = check_nonnegative("max_dist", max_dist)
        idgi = check_idgi(idgi, True)
        check_target_form(target, x[0].shape[0])
        check_optional_positive_int("internal_batch_size", internal_batch_size)
        with eval_mode(self.forward_func):
            attributions = guided_integrated_gradients(
                self.forward_func,
                x,
                b,
                n_steps,
                fraction,
                max_dist,
                target,
                additional_forward_args,
                internal_batch_size,
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
    "GuidedIntegratedGradients",
    "GuidedPath",
    "guided_integrated_gradients",
    "guided_step",
]
