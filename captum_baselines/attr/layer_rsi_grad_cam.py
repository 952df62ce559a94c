r"""Riemann-Stieltjes Integrated Grad-CAM (Lerma & Lucas 2022).

For a layer with feature maps ``A^k`` and the straight input path
``I(alpha) = I_0 + alpha (I - I_0)`` from a baseline ``I_0`` to the input ``I``,
the weight of channel ``k`` is the spatial mean of a Riemann-Stieltjes integral::

    w_k = 1/Z sum_ij  integral_0^1  dy/dA^k_ij(alpha)  dA^k_ij(alpha)

approximated on the grid ``alpha_l = l / m``, ``l = 0..m`` (both ends included) by::

    sum_l  G^k_ij(l) * (A^k_ij(alpha_l) - A^k_ij(alpha_{l-1}))

where ``G(l)`` is the gradient at the right end of step ``l`` (the paper's eq. 6),
at its left end, or the mean of both (the trapezoid of the authors' code).  The
map is ``ReLU(sum_k w_k A^k(I))``.  Summing the integrals over every unit instead
of averaging gives ``y(I) - y(I_0)`` when the layer carries the whole output: the
convergence delta is that residual.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from captum._utils.common import _format_output
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum._utils.typing import BaselineType, TargetType
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module
from tqdm.auto import tqdm

from .._engine.forward import (
    Score,
    check_score,
    forward_inputs,
    probe_target,
    scored,
)
from .._engine.inputs import format_path_arguments
from .._engine.path import StraightLinePath
from .._engine.targets import select_additional_args, select_target
from .._hooks import eval_mode
from .._validation import check_positive_int

Rule = Literal["trapezoid", "left", "right"]
RULES = ("trapezoid", "left", "right")


@dataclass
class PathIntegrals:
    """The Riemann-Stieltjes sums of one attribution call, per layer tensor.

    Attributes:
        integrals: ``sum_l G(l) * dA(l)`` per unit, each ``(N, *layer_shape)``.
        activations: The layer's activations at the inputs ``A(I)``.
        baseline_activations: The layer's activations at the baselines ``A(I_0)``.
    """

    integrals: tuple[Tensor, ...]
    activations: tuple[Tensor, ...]
    baseline_activations: tuple[Tensor, ...]


class LayerRSIGradCam(LayerAttribution, GradientAttribution):
    r"""Riemann-Stieltjes Integrated Grad-CAM.

    Grad-CAM whose channel weights integrate the output's gradient against the
    change of the layer's activations along the straight path from a baseline to
    the input, so that saturated units (zero gradient at the input) still count.
    Paper: Lerma & Lucas, "Baseline Computation for Attribution Methods Based on
    Interpolated Inputs" (2022), https://arxiv.org/abs/2205.10900.

    Cost: ``n_steps + 1`` forward and backward passes per example, bounded in
    memory by ``internal_batch_size``.

    The map has the layer's resolution, ``(N, 1, h, w)`` like Captum's
    ``LayerGradCam``; upsample it to the input with
    ``LayerAttribution.interpolate(attr, (H, W), "bilinear")`` (Captum's default
    there is ``"nearest"``).

    The authors score the post-softmax probability; pass ``score="probability"``
    to :meth:`attribute` for that (the default scores the model's raw output).
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Module,
        device_ids: list[int] | None = None,
    ) -> None:
        r"""
        Args:
            forward_func (Callable): The model or any function of its inputs.
            layer (torch.nn.Module): The layer whose feature maps are weighted.
                If the module runs more than once per forward pass, its last
                call is used (as in Captum).
            device_ids (list[int], optional): Device ids, needed only if
                ``forward_func`` applies a ``DataParallel`` model without being it.
        """
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)

    @typing.overload
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        rule: Rule = "trapezoid",
        score: Score = "logit",
        relu_gradients: bool = False,
        positive_units_only: bool = False,
        show_progress: bool = False,
    ) -> tuple[Tensor | tuple[Tensor, ...], Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
        *,
        rule: Rule = "trapezoid",
        score: Score = "logit",
        relu_gradients: bool = False,
        positive_units_only: bool = False,
        show_progress: bool = False,
    ) -> Tensor | tuple[Tensor, ...]: ...

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        *,
        rule: Rule = "trapezoid",
        score: Score = "logit",
        relu_gradients: bool = False,
        positive_units_only: bool = False,
        show_progress: bool = False,
    ) -> Tensor | tuple[Tensor, ...] | tuple[Tensor | tuple[Tensor, ...], Tensor]:
        r"""The RSI-Grad-CAM map ``ReLU(sum_k w_k A^k(input))`` at the layer.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): Inputs, batch first; a tuple
                for models with several inputs.
            baselines (scalar, Tensor or tuple, optional): Start of each path:
                a number, a tensor shaped like the inputs or with batch size 1
                (one per input tensor for tuples). Default: zeros.
            target (int, tuple, Tensor or list, optional): Output index to
                explain, in any of Captum's forms (one per example or shared).
            additional_forward_args (Any, optional): Passed to ``forward_func``
                after the inputs; per-example tensors follow their example.
            n_steps (int, optional): Number ``m`` of steps of the path; the
                gradient and activations are taken at the ``m + 1`` points
                ``alpha = l / m``, both ends included. Default: 50.
            attribute_to_layer_input (bool, optional): Use the layer's input
                instead of its output as ``A``. Default: False.
            relu_attributions (bool, optional): Apply the final ReLU of the
                paper's eq. 7. Default: True.
            internal_batch_size (int, optional): Path points per forward and
                backward pass (any value >= 1); bounds memory, changes no
                result. Default: all ``N * (n_steps + 1)`` points at once.
            return_convergence_delta (bool, optional): Also return, per
                example, ``sum_k sum_ij integral - (y(input) - y(baseline))``,
                which vanishes as ``n_steps`` grows when the layer carries the
                whole output. Default: False.
            rule (str, optional): Where each step's gradient is taken:
                ``"trapezoid"`` (mean of both ends, the authors' code; error
                ~1/m^2 on smooth models), ``"left"`` or ``"right"`` (the end
                nearer the input, the paper's eq. 6; error ~1/m).
            score (str, optional): ``"logit"`` differentiates the model's
                output as is; ``"probability"`` its softmax over dimension 1
                (the paper's choice). The delta uses the same score.
            relu_gradients (bool, optional): Zero each step's negative
                gradients before integrating (the authors' PyTorch notebook).
                Breaks completeness. Default: False.
            positive_units_only (bool, optional): Keep only the units whose
                activation at the input, activation change along the path and
                integral are all positive before averaging (the guided unit
                mask of the authors' Keras notebook). The delta is then computed
                from the masked integrals. Default: False.
            show_progress (bool, optional): Show a tqdm bar over the internal
                batches. Default: False.

        Returns:
            *Tensor* or tuple of *Tensors* of **attributions**, shaped like the
            layer's output with dimension 1 reduced to size 1 (a tuple when the
            layer returns a tuple), and, with ``return_convergence_delta=True``,
            the ``(N,)`` **delta**.

        Examples::

            >>> net = torchvision.models.resnet18(weights=None).eval()
            >>> rsi = LayerRSIGradCam(net, net.layer4)
            >>> images = torch.rand(2, 3, 64, 64)
            >>> cam, delta = rsi.attribute(
            ...     images, baselines=0.0, target=3, return_convergence_delta=True
            ... )
            >>> cam.shape
            torch.Size([2, 1, 2, 2])
            >>> heatmap = LayerAttribution.interpolate(cam, (64, 64), "bilinear")
        """
        x, x_ref = format_path_arguments(inputs, baselines, target, internal_batch_size)
        weights, path = self._weights_and_path(
            x,
            x_ref,
            target,
            additional_forward_args,
            n_steps,
            attribute_to_layer_input,
            internal_batch_size,
            rule,
            score,
            relu_gradients,
            positive_units_only,
            show_progress,
        )
        maps = tuple(
            torch.sum(w * a, dim=1, keepdim=True)
            for w, a in zip(weights, path.activations, strict=True)
        )
        if relu_attributions:
            maps = tuple(F.relu(m) for m in maps)
        attributions = _format_output(len(maps) > 1, maps)
        if not return_convergence_delta:
            return attributions
        delta = self._completeness_residual(
            path, x, x_ref, target, additional_forward_args, score
        )
        return attributions, delta

    def channel_weights(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        attribute_to_layer_input: bool = False,
        internal_batch_size: int | None = None,
        *,
        rule: Rule = "trapezoid",
        score: Score = "logit",
        relu_gradients: bool = False,
        positive_units_only: bool = False,
        show_progress: bool = False,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""The channel weights ``w_k`` (paper's eq. 6), ``(N, K, 1, ..., 1)``.

        Arguments as in :meth:`attribute`. With ``n_steps=1`` and
        ``rule="right"`` they are ``1/Z sum_ij dy/dA_ij(input) * (A_ij(input) -
        A_ij(baseline))``: Grad-CAM's spatial mean of the gradient at the input,
        each unit's gradient weighted by its activation change. When the
        gradient is spatially uniform per channel (a global-average-pooling
        head) this is exactly Grad-CAM's weight times ``mean_ij(A_k(input) -
        A_k(baseline))``.
        """
        x, x_ref = format_path_arguments(inputs, baselines, target, internal_batch_size)
        weights, _ = self._weights_and_path(
            x,
            x_ref,
            target,
            additional_forward_args,
            n_steps,
            attribute_to_layer_input,
            internal_batch_size,
            rule,
            score,
            relu_gradients,
            positive_units_only,
            show_progress,
        )
        return _format_output(len(weights) > 1, weights)

    def has_convergence_delta(self) -> bool:
        return True

    def _weights_and_path(
        self,
        x: tuple[Tensor, ...],
        x_ref: tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        n_steps: int,
        attribute_to_layer_input: bool,
        internal_batch_size: int | None,
        rule: str,
        score: str,
        relu_gradients: bool,
        positive_units_only: bool,
        show_progress: bool,
    ) -> tuple[tuple[Tensor, ...], PathIntegrals]:
        if rule not in RULES:
            raise ValueError(f"`rule` must be one of {RULES}, got {rule!r}")
        score_fn = scored(self.forward_func, check_score(score))
        n_steps = check_positive_int("n_steps", n_steps)
        with eval_mode(self.forward_func):
            probe_target(score_fn, x, target, additional_forward_args)
            path = riemann_stieltjes_integrals(
                score_fn,
                cast(Module, self.layer),
                x,
                x_ref,
                target,
                additional_forward_args,
                n_steps,
                rule,
                relu_gradients=relu_gradients,
                attribute_to_layer_input=attribute_to_layer_input,
                internal_batch_size=internal_batch_size,
                device_ids=self.device_ids
                or getattr(self.forward_func, "device_ids", None),
                show_progress=show_progress,
            )
        if positive_units_only:
            path = PathIntegrals(
                tuple(
                    torch.where((a > 0) & (a - a0 > 0) & (s > 0), s, 0.0)
                    for s, a, a0 in zip(
                        path.integrals,
                        path.activations,
                        path.baseline_activations,
                        strict=True,
                    )
                ),
                path.activations,
                path.baseline_activations,
            )
        weights = tuple(_spatial_mean(s) for s in path.integrals)
        return weights, path

    def _completeness_residual(
        self,
        path: PathIntegrals,
        x: tuple[Tensor, ...],
        x_ref: tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        score: str,
    ) -> Tensor:
        score_fn = scored(self.forward_func, check_score(score))
        with eval_mode(self.forward_func):
            y_input = forward_inputs(score_fn, x, target, additional_forward_args)
            y_baseline = forward_inputs(
                score_fn, x_ref, target, additional_forward_args
            )
        total = sum(s.reshape(s.shape[0], -1).sum(1) for s in path.integrals)
        return cast(Tensor, total) - (y_input - y_baseline).to(cast(Tensor, total))


def riemann_stieltjes_integrals(
    forward_func: Callable[..., Any],
    layer: Module,
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Any,
    n_steps: int,
    rule: str = "trapezoid",
    *,
    relu_gradients: bool = False,
    attribute_to_layer_input: bool = False,
    internal_batch_size: int | None = None,
    device_ids: list[int] | None = None,
    show_progress: bool = False,
) -> PathIntegrals:
    r"""``sum_l G(l) * (A(alpha_l) - A(alpha_{l-1}))`` for every unit of ``layer``.

    The ``N * (n_steps + 1)`` path points are visited example by example, in
    order of ``alpha``, in chunks of ``internal_batch_size``; the last point of a
    chunk is carried over so that its increment to the next chunk's first point
    is counted, which makes the result independent of the chunk size.
    """
    n = inputs[0].shape[0]
    points_per_path = n_steps + 1
    n_points = n * points_per_path
    size = internal_batch_size or n_points
    alphas = torch.linspace(0.0, 1.0, points_per_path, dtype=torch.float64)
    device = inputs[0].device
    path = StraightLinePath.from_baselines(
        inputs,
        baselines,
        torch.arange(n, device=device).repeat_interleave(points_per_path),
        alphas.repeat(n),
        torch.ones(n_points, dtype=torch.float64),
    )
    sums: list[Tensor] = []
    at_input: list[Tensor] = []
    at_baseline: list[Tensor] = []
    previous: tuple[tuple[Tensor, ...], tuple[Tensor, ...]] | None = None
    starts = range(0, n_points, size)
    for start in tqdm(starts, desc="RSI-Grad-CAM", disable=not show_progress):
        point = torch.arange(start, min(start + size, n_points))
        example, step = point // points_per_path, point % points_per_path
        grads, acts = compute_layer_gradients_and_eval(
            forward_func,
            layer,
            path.points_of(slice(start, start + len(point))),
            select_target(target, example),
            select_additional_args(additional_forward_args, example, n),
            device_ids=device_ids,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        grads = tuple(g.detach() for g in grads)
        if relu_gradients:
            grads = tuple(F.relu(g) for g in grads)
        acts = tuple(a.detach() for a in acts)
        if not sums:
            for a in acts:
                sums.append(a.new_zeros((n, *a.shape[1:])))
                at_input.append(a.new_zeros((n, *a.shape[1:])))
                at_baseline.append(a.new_zeros((n, *a.shape[1:])))
        # the point before each point: the previous row, or for the chunk's first
        # row the last row of the previous chunk (rows with step 0 have none)
        carried = previous if previous is not None else (grads, acts)
        for k, (g, a) in enumerate(zip(grads, acts, strict=True)):
            g_before = torch.cat([carried[0][k][-1:], g[:-1]])
            a_before = torch.cat([carried[1][k][-1:], a[:-1]])
            rows = (step >= 1).to(a.device)
            height = _step_heights(rule, g_before[rows], g[rows])
            increment = a[rows] - a_before[rows]
            sums[k].index_add_(0, example[step >= 1].to(a.device), height * increment)
            ends = (step == n_steps).to(a.device)
            at_input[k][example[step == n_steps].to(a.device)] = a[ends]
            origins = (step == 0).to(a.device)
            at_baseline[k][example[step == 0].to(a.device)] = a[origins]
        previous = (tuple(g[-1:] for g in grads), tuple(a[-1:] for a in acts))
    return PathIntegrals(tuple(sums), tuple(at_input), tuple(at_baseline))


def _step_heights(rule: str, g_before: Tensor, g_after: Tensor) -> Tensor:
    """The gradient that multiplies a step's activation increment."""
    if rule == "left":
        return g_before
    if rule == "right":
        return g_after
    return (g_before + g_after) / 2


def _spatial_mean(t: Tensor) -> Tensor:
    return t.mean(dim=tuple(range(2, t.dim())), keepdim=True) if t.dim() > 2 else t


__all__ = ["LayerRSIGradCam", "PathIntegrals", "riemann_stieltjes_integrals"]
