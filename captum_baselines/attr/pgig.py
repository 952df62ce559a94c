r"""PatternAttribution and Pattern-Guided Integrated Gradients.

With ``d(p)`` the gradient in which every patterned layer backpropagates through
``w * p`` (:func:`~captum_baselines.attr.pattern_backward.pattern_backward`)::

    PA_i(x)   = f(x) * d(p) f(x) / d(p) x_i
    PGIG_i(x) = (x_i - x'_i) * integral_0^1 d(p) f(x' + a (x - x')) / d(p) x_i da

PGIG is Captum's :class:`~captum.attr.IntegratedGradients` run inside the
pattern-replacing backward, so every IG option (``n_steps``, ``method``,
``internal_batch_size``, baselines) carries over unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, cast

from captum._utils.common import (
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
)
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import IntegratedGradients
from captum.attr._utils.attribution import GradientAttribution
from captum.log import log_usage
from torch import Tensor, nn

from .._engine.targets import check_target
from .._hooks import eval_mode
from .._validation import check_inputs, check_positive_int
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

    Args:
        model: The network; its modules are hooked only during ``attribute``.
        patterns: :class:`~captum_baselines.attr.patterns.Patterns` (e.g. from
            :func:`~captum_baselines.attr.patterns.fit_patterns`) or a mapping
            from module name to a tensor shaped like that module's weight.

    Examples::

        >>> patterns = fit_patterns(model, train_images)
        >>> pa = PatternAttribution(model, patterns)
        >>> attribution = pa.attribute(images, target=labels)
    """

    def __init__(self, model: nn.Module, patterns: Mapping[str, Tensor]) -> None:
        self.patterns = _as_patterns(model, patterns)
        self.model = model
        self._patterned_weights = PatternedWeights(model, self.patterns)
        GradientAttribution.__init__(self, model)

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""The PatternAttribution of ``inputs`` at ``target``.

        Args:
            inputs: A tensor or a tuple of tensors, batch first.
            target: Output index per example, in any form Captum accepts.
            additional_forward_args: Passed to the model after ``inputs``.

        Returns:
            Attributions shaped like ``inputs`` (a tuple if ``inputs`` is one).

        Examples::

            >>> attribution = PatternAttribution(model, patterns).attribute(x, 3)
        """
        is_inputs_tuple = _is_tuple(inputs)
        inputs_tuple = _format_tensor_into_tuples(inputs)
        check_inputs("inputs", inputs_tuple)
        points = tuple(t.detach().requires_grad_() for t in inputs_tuple)
        forward = _target_checked(self.forward_func, target, len(points[0]))
        with (
            eval_mode(self.model),
            pattern_backward(self.model, self._patterned_weights),
        ):
            gradients = self.gradient_func(
                _started_from_output(forward),
                points,
                target,
                additional_forward_args,
            )
        return cast(
            TensorOrTupleOfTensorsGeneric, _format_output(is_inputs_tuple, gradients)
        )


class PatternGuidedIntegratedGradients(GradientAttribution):
    r"""Pattern-Guided Integrated Gradients: IG through the pattern backward.

    `Schwarzenberg & Castle 2020, "Pattern-Guided Integrated Gradients"
    <https://arxiv.org/abs/2007.10685>`_::

        PGIG_i(x) = (x_i - x'_i) * integral_0^1 d(p) f(x' + a (x - x')) / d(p) x_i da

    where ``d(p)`` backpropagates through ``w * p`` for every patterned layer
    (PatternAttribution's backward).  It is computed by Captum's
    :class:`~captum.attr.IntegratedGradients` with that backward installed, so it
    takes every option IG takes; with all patterns equal to ones it *is* IG.

    PGIG is not complete: its attributions do not sum to ``f(x) - f(x')``, since
    the patterned gradient is not the gradient of ``f``.  It therefore reports no
    convergence delta.  Nor is it implementation invariant (two equivalent networks
    get different patterns).

    Args:
        model: The network; its modules are hooked only during ``attribute``.
        patterns: :class:`~captum_baselines.attr.patterns.Patterns` or a mapping
            from module name to a tensor shaped like that module's weight.
        multiply_by_inputs: Multiply the path integral by ``x - x'`` (global
            attribution, the paper's) or not (local).

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
        self.patterns = _as_patterns(model, patterns)
        self.model = model
        self._patterned_weights = PatternedWeights(model, self.patterns)
        GradientAttribution.__init__(self, model)
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
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""The PGIG attribution of ``inputs`` at ``target``.

        Args:
            inputs: A tensor or a tuple of tensors, batch first.
            baselines: Anything Captum's IG accepts: ``None`` (zeros), a scalar,
                a tensor shaped like ``inputs`` or with first dimension 1, or a
                tuple of these; ``captum_baselines.baselines`` generators return
                such tensors.
            target: Output index per example, in any form Captum accepts.
            additional_forward_args: Passed to the model after ``inputs``.
            n_steps: Points on the path.
            method: Captum's quadrature: ``"gausslegendre"``, ``"riemann_left"``,
                ``"riemann_right"``, ``"riemann_middle"``, ``"riemann_trapezoid"``.
            internal_batch_size: Path points per forward/backward pass.

        Returns:
            Attributions shaped like ``inputs`` (a tuple if ``inputs`` is one).

        Examples::

            >>> pgig = PatternGuidedIntegratedGradients(model, patterns)
            >>> attribution = pgig.attribute(x, baselines=0.0, target=3)
        """
        inputs_tuple = _format_tensor_into_tuples(inputs)
        check_inputs("inputs", inputs_tuple)
        check_positive_int("n_steps", n_steps)
        if internal_batch_size is not None:
            check_positive_int("internal_batch_size", internal_batch_size)
        integrated_gradients = IntegratedGradients(
            _target_checked(self.forward_func, target, len(inputs_tuple[0])),
            multiply_by_inputs=self._multiply_by_inputs,
        )
        with (
            eval_mode(self.model),
            pattern_backward(self.model, self._patterned_weights),
        ):
            return cast(
                TensorOrTupleOfTensorsGeneric,
                integrated_gradients.attribute(
                    inputs,
                    baselines=baselines,
                    target=target,
                    additional_forward_args=additional_forward_args,
                    n_steps=n_steps,
                    method=method,
                    internal_batch_size=internal_batch_size,
                    return_convergence_delta=False,
                ),
            )


def _started_from_output(forward_func: Callable[..., Any]) -> Callable[..., Any]:
    """``f * stop_gradient(f)``: its gradient is ``f(x) * df/dx`` at every output."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        output = forward_func(*args, **kwargs)
        return output * output.detach()

    return forward


def _target_checked(
    forward_func: Callable[..., Any], target: TargetType, n_examples: int
) -> Callable[..., Any]:
    """``forward_func`` that checks ``target`` against its first output.

    Checking inside the attribution's own first forward pass costs no extra pass.
    """
    checked = False

    def forward(*args: Any, **kwargs: Any) -> Any:
        nonlocal checked
        output = forward_func(*args, **kwargs)
        if not checked and isinstance(output, Tensor):
            check_target(target, output, n_examples)
            checked = True
        return output

    return forward
