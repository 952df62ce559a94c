r"""PatternAttribution and Pattern-Guided Integrated Gradients.

With ``d(p)`` the gradient in which every patterned layer backpropagates through
``w * p`` (:func:`~captum_baselines.attr.pattern_backward.pattern_backward`)::

    PA_i(x)   = f(x) * d(p) f(x) / d(p) x_i
    PGIG_i(x) = (x_i - x'_i) * integral_0^1 d(p) f(x' + a (x - x')) / d(p) x_i da

PGIG is the package's quadrature Integrated Gradients run inside the
pattern-replacing backward, so every IG option (``n_steps``, the correctly
weighted rules of ``method``, ``internal_batch_size``, baselines) carries over.

Both follow the equations of the papers by default.  The PGIG authors' code
differs in one respect, offered as ``probability_weighted=True``: it explains the
softmax probability ``p`` of the target, back-propagated through the softmax, and
starts every backward pass from ``p`` itself rather than from 1, so each path
point's patterned gradient is weighted by the probability there::

    PA_i(x)   = p(x) * d(p) p(x) / d(p) x_i
    PGIG_i(x) = (x_i - x'_i) * integral_0^1 p(z) d(p) p(z) / d(p) z_i da,
                z = x' + a (x - x')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor, nn

from .._engine.forward import scored
from .._engine.inputs import format_inputs, format_path_arguments, format_result
from .._engine.path import gradients_at
from .._engine.targets import check_target_form
from .._hooks import eval_mode
from .integrated_gradients import check_rule, integrated_gradients
from .pattern_backward import PatternedWeights, pattern_backward
from .patterns import Patterns


def _as_patterns(model: Any, patterns: Any) -> Patterns:
    if not isinstance(model, nn.Module):
        raise TypeError(
            "`model` must be an nn.Module (its layers carry the patterns), got "
            f"{type(model).__name__}"
        )
    if not isinstance(patterns, Patterns):
        if not isinstance(patterns, Mapping):
            raise TypeError(
                "`patterns` must be Patterns or a mapping from module name to "
                f"tensor, got {type(patterns).__name__}"
            )
        patterns = Patterns(patterns)
    patterns.check(model)
    return patterns


class PatternAttribution(GradientAttribution):
    r"""PatternAttribution: the gradient with every weight ``w`` replaced by ``w * p``.

    `Kindermans et al. 2018, "Learning how to explain neural networks: PatternNet
    and PatternAttribution" <https://arxiv.org/abs/1705.05598>`_.  The backward
    pass uses ``w * p`` for every patterned Linear/Conv layer, with ReLU gates and
    pooling switches from the real forward pass and biases dropped.  As in the
    paper (and in Schwarzenberg & Castle's stress test), the backward starts from
    the target output ``f(x)`` itself rather than from 1, so the attribution is
    ``f(x) * d(p) f / d(p) x``: it is scaled by the explained output and vanishes
    where that output is zero.  Layers without a pattern use their ordinary
    gradient.

    Examples::

        >>> patterns = fit_patterns(model, train_images)
        >>> pa = PatternAttribution(model, patterns)
        >>> attribution = pa.attribute(images, target=labels)
    """

    def __init__(self, model: nn.Module, patterns: Mapping[str, Tensor]) -> None:
        r"""
        Args:
            model (torch.nn.Module): The network; its modules are hooked only
                during ``attribute``.
            patterns (Patterns or Mapping[str, Tensor]): The patterns, e.g. from
                :func:`~captum_baselines.attr.patterns.fit_patterns`, or a mapping
                from module name to a tensor shaped like that module's weight.
        """
        super().__init__(model)
        self.model = model
        self.patterns = _as_patterns(model, patterns)
        self._patterned_weights = PatternedWeights(model, self.patterns)

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        probability_weighted: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""The PatternAttribution of ``inputs`` at ``target``.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs, batch first.
            target (int, tuple, Tensor or list, optional): Output index per
                example, in any of Captum's forms.
            additional_forward_args (Any, optional): Passed to the model after
                ``inputs``; per-example tensors follow their example.
            probability_weighted (bool, optional): Explain the softmax
                probability ``p`` of the target and start the backward from ``p``
                (``p(x) * d(p) p / d(p) x``), as the PGIG authors' code does,
                instead of the paper's ``f(x) * d(p) f / d(p) x`` on the model's
                output. Default: False.

        Returns:
            Attributions shaped like ``inputs`` (a tuple if ``inputs`` is one).

        Examples::

            >>> attribution = PatternAttribution(model, patterns).attribute(x, 3)
        """
        x = format_inputs(inputs)
        n = x[0].shape[0]
        check_target_form(target, n)
        explained = _started_from_output(
            _explained(self.forward_func, probability_weighted)
        )
        with (
            eval_mode(self.model),
            pattern_backward(self.model, self._patterned_weights),
        ):
            gradients, _ = gradients_at(
                explained,
                x,
                torch.arange(n, device=x[0].device),
                n,
                target,
                additional_forward_args,
                check=True,
            )
        return cast(TensorOrTupleOfTensorsGeneric, format_result(inputs, gradients))


class PatternGuidedIntegratedGradients(GradientAttribution):
    r"""Pattern-Guided Integrated Gradients: IG through the pattern backward.

    `Schwarzenberg & Castle 2020, "Pattern-Guided Integrated Gradients"
    <https://arxiv.org/abs/2007.10685>`_, eq. 4::

        PGIG_i(x) = (x_i - x'_i) * integral_0^1 d(p) f(x' + a (x - x')) / d(p) x_i da

    where ``d(p)`` backpropagates through ``w * p`` for every patterned layer
    (PatternAttribution's backward).  The integral is evaluated by the package's
    quadrature (:class:`~captum_baselines.attr.QuadratureIntegratedGradients`),
    whose rules all weigh correctly; with all patterns equal to ones it *is*
    Integrated Gradients.

    PGIG is not complete: its attributions do not sum to ``f(x) - f(x')``, since
    the patterned gradient is not the gradient of ``f``.  It therefore reports no
    convergence delta.  Nor is it implementation invariant (two equivalent networks
    get different patterns).

    Examples::

        >>> patterns = fit_patterns(model, train_images)
        >>> pgig = PatternGuidedIntegratedGradients(model, patterns)
        >>> baselines = cb.baselines.blur(images, sigma=5.0)
        >>> attribution = pgig.attribute(images, baselines, target=labels)
    """

    def __init__(
        self,
        model: nn.Module,
        patterns: Mapping[str, Tensor],
        multiply_by_inputs: bool = True,
    ) -> None:
        r"""
        Args:
            model (torch.nn.Module): The network; its modules are hooked only
                during ``attribute``.
            patterns (Patterns or Mapping[str, Tensor]): The patterns, or a
                mapping from module name to a tensor shaped like that module's
                weight.
            multiply_by_inputs (bool, optional): Multiply the path integral by
                ``x - x'`` (global attribution, the paper's) or not (local).
        """
        super().__init__(model)
        self.model = model
        self.patterns = _as_patterns(model, patterns)
        self._patterned_weights = PatternedWeights(model, self.patterns)
        self._multiply_by_inputs = multiply_by_inputs

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    @log_usage()
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
        probability_weighted: bool = False,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""The PGIG attribution of ``inputs`` at ``target``.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs, batch first.
            baselines (scalar, Tensor or tuple, optional): The path starts, in the
                forms :class:`~captum_baselines.attr.QuadratureIntegratedGradients`
                accepts; ``captum_baselines.baselines`` generators return them.
                Default: zeros.
            target (int, tuple, Tensor or list, optional): Output index per
                example, in any of Captum's forms.
            additional_forward_args (Any, optional): Passed to the model after
                ``inputs``.
            n_steps (int, optional): Quadrature nodes. Default: 50.
            method (str, optional): ``"gausslegendre"`` (default),
                ``"riemann_trapezoid"`` (correctly weighted), ``"riemann_left"``,
                ``"riemann_right"`` or ``"riemann_middle"``.
            internal_batch_size (int, optional): Path points per forward and
                backward pass.
            probability_weighted (bool, optional): Integrate ``p * d(p) p`` of
                the target's softmax probability ``p``, back-propagated through
                the softmax (each path point weighted by its probability), as the
                PGIG authors' code does, instead of the paper's eq. 4 on the
                model's output. Default: False.
            show_progress (bool, optional): Show a tqdm bar over the path points.

        Returns:
            Attributions shaped like ``inputs`` (a tuple if ``inputs`` is one).

        Examples::

            >>> pgig = PatternGuidedIntegratedGradients(model, patterns)
            >>> attribution = pgig.attribute(x, baselines=0.0, target=3)
        """
        x, b = format_path_arguments(inputs, baselines, target, internal_batch_size)
        n_steps = check_rule(method, n_steps)
        explained = _explained(self.forward_func, probability_weighted)
        if probability_weighted:
            explained = _started_from_output(explained)
        with (
            eval_mode(self.model),
            pattern_backward(self.model, self._patterned_weights),
        ):
            attributions = integrated_gradients(
                explained,
                x,
                b,
                torch.arange(x[0].shape[0], device=x[0].device),
                method,
                n_steps,
                target,
                additional_forward_args,
                internal_batch_size,
                self._multiply_by_inputs,
                show_progress=show_progress,
            )
        return cast(TensorOrTupleOfTensorsGeneric, format_result(inputs, attributions))


def _explained(
    forward_func: Callable[..., Any], probability: bool
) -> Callable[..., Any]:
    """The model's output, or its softmax probability (the authors' code)."""
    if not isinstance(probability, bool):
        raise TypeError(
            f"`probability_weighted` must be a bool, got {type(probability).__name__}"
        )
    return scored(forward_func, "probability" if probability else "logit")


def _started_from_output(forward_func: Callable[..., Any]) -> Callable[..., Any]:
    """``f * stop_gradient(f)``: its gradient is ``f(x) * df/dx`` at every output."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        output = forward_func(*args, **kwargs)
        return output * output.detach()

    return forward
