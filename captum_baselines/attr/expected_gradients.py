r"""Expected Gradients: Integrated Gradients averaged over a baseline distribution.

For an input ``x`` and a distribution ``D`` of references (baselines), Expected
Gradients (Erion et al. 2019; Sturmfels, Lundberg & Lee 2020) is::

    phi_i(x) = E_{x' ~ D, alpha ~ U(0,1)} [(x_i - x'_i) df/dx_i(x' + alpha (x - x'))]

and its estimate from ``k`` draws ``(x'_j, alpha_j)``::

    phi_hat_i(x) = 1/k sum_j (x_i - x'_j,i) * df/dx_i(x'_j + alpha_j (x - x'_j))

Each draw is one row of a :class:`~captum_baselines._engine.path.StraightLinePath`
with weight ``1/k``.  Summed over features, each row's term ``T_j`` is an unbiased
one-point estimate of ``f(x) - f(x'_j)``, so ``sum_i phi_hat_i`` estimates
``f(x) - E f(x')`` and its completeness residual over the references actually
drawn is ``sum_i phi_hat_i - (f(x) - 1/k sum_j f(x'_j))``.  GradientShap's
``stdevs`` (Gaussian noise ``eps_j`` on the input of each draw) replaces ``x`` by
``x + eps_j`` in the draw's row, as Captum's ``GradientShap`` does.
"""

from __future__ import annotations

import math
import numbers
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple, cast

import torch
from captum._utils.common import _format_output, _is_tuple
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from tqdm.auto import tqdm

from .._engine.forward import forward_inputs, forward_rows
from .._engine.inputs import format_inputs, format_result
from .._engine.path import StraightLinePath, integrate, total
from .._engine.targets import check_target_form
from .._hooks import eval_mode
from .._validation import (
    check_generator,
    check_nonnegative,
    check_optional_positive_int,
    check_positive_int,
)
from ..references import ReferenceBlock, ReferenceSource, reference_blocks


def stratified_alphas(
    n_examples: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draws ``(n_examples, n_samples)`` alphas in [0, 1), one per stratum.

    The ``n_samples`` alphas of an example fall one into each interval
    ``[k / n, (k + 1) / n)``, in random order, so that an example's alphas cover
    the path evenly while each alpha is still marginally uniform.
    """
    strata = torch.argsort(torch.rand(n_examples, n_samples, generator=generator), 1)
    jitter = torch.rand(n_examples, n_samples, generator=generator, dtype=torch.float64)
    alphas = (strata.to(torch.float64) + jitter) / n_samples
    return alphas.to(device=device, dtype=dtype)


def standard_error(sample_totals: Tensor) -> Tensor:
    """Per-example standard error of ``sum_i phi_i`` from the per-draw totals.

    ``sample_totals`` is ``(N, k)``: ``T_nj``, the j-th draw's term summed over
    features, whose mean is ``sum_i phi_i``. Returns ``std_j(T_nj) / sqrt(k)``
    (NaN when ``k == 1``). Draws without replacement and stratified alphas make
    the true error somewhat smaller, so this errs on the safe side.
    """
    k = sample_totals.shape[1]
    if k < 2:
        return torch.full_like(sample_totals[:, 0], float("nan"))
    return sample_totals.std(dim=1) / math.sqrt(k)


class Estimate(NamedTuple):
    """What one pass over the draws produces."""

    attributions: tuple[Tensor, ...]
    sample_totals: Tensor
    """``(N, k)`` each draw's term summed over features."""
    path_ends: Tensor | None
    """``(N, k)`` ``f(x + eps_j) - f(x'_j)`` per draw, when asked for."""
    smoothgrad: tuple[Tensor, ...] | None = None


def _noisy_inputs(
    inputs: tuple[Tensor, ...],
    stdevs: tuple[float, ...],
    width: int,
    generator: torch.Generator | None,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """The ends of a block's rows: ``x`` itself, or ``width`` noisy copies of it.

    Returns the pool of ends and the index of each (example, draw) row into it.
    """
    n = inputs[0].shape[0]
    rows = torch.arange(n).repeat_interleave(width)
    if not any(stdevs):
        return inputs, rows
    noisy = tuple(
        x[rows.to(x.device)]
        + s
        * torch.randn((n * width, *x.shape[1:]), generator=generator, dtype=x.dtype).to(
            x.device
        )
        for x, s in zip(inputs, stdevs)
    )
    return noisy, torch.arange(n * width)


def estimate_expected_gradients(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    blocks: Iterator[ReferenceBlock],
    alphas: Tensor,
    target: Any,
    additional_forward_args: Any,
    internal_batch_size: int | None,
    multiply_by_inputs: bool,
    show_progress: bool,
    stdevs: tuple[float, ...] | None = None,
    generator: torch.Generator | None = None,
    input_outputs: Tensor | None = None,
    with_smoothgrad: bool = False,
) -> Estimate:
    """Sums the path terms of every draw, block by block.

    With ``input_outputs`` (``f(x)`` per example), also returns each draw's
    ``f(x + eps_j) - f(x'_j)``.  With ``with_smoothgrad``, the same references
    (noisy copies ``x + eps_j`` of the inputs) also give SmoothGrad:
    ``1/k sum_j (x + eps_j) df/dx(x + eps_j)``.
    """
    n, k = alphas.shape
    stdevs = stdevs or (0.0,) * len(inputs)
    attributions = tuple(torch.zeros_like(x) for x in inputs)
    smoothgrad = tuple(torch.zeros_like(x) for x in inputs) if with_smoothgrad else None
    sample_totals = torch.zeros(n, k, dtype=inputs[0].dtype, device=inputs[0].device)
    path_ends = None if input_outputs is None else torch.zeros_like(sample_totals)
    with tqdm(
        total=k, desc="Expected Gradients", unit="draw", disable=not show_progress
    ) as progress:
        for block in blocks:
            width = block.index.shape[1]
            examples = torch.arange(n, device=inputs[0].device).repeat_interleave(width)
            weights = torch.full((n * width,), 1.0 / k, dtype=torch.float64)
            ends, end_index = _noisy_inputs(inputs, stdevs, width, generator)
            path = StraightLinePath(
                block.pool,
                block.index.reshape(-1),
                ends,
                end_index,
                examples,
                alphas[:, block.draws].reshape(-1),
                weights,
                multiply_by_inputs,
            )
            integral = integrate(
                forward_func,
                path,
                inputs,
                target,
                additional_forward_args,
                internal_batch_size,
            )
            for acc, s in zip(attributions, integral.attributions, strict=True):
                acc += s
            sample_totals[:, block.draws] = integral.row_totals.reshape(n, width)
            if path_ends is not None:
                ends_at = (
                    _outputs(forward_func, path, ends, end_index, n, target,
                             additional_forward_args, internal_batch_size)
                    if any(stdevs)
                    else input_outputs[examples]  # type: ignore[index]
                )  # fmt: skip
                starts_at = _outputs(
                    forward_func, path, block.pool, path.start_index, n, target,
                    additional_forward_args, internal_batch_size,
                )  # fmt: skip
                path_ends[:, block.draws] = (
                    (ends_at - starts_at).reshape(n, width).to(path_ends)
                )
            if smoothgrad is not None:
                # At alpha = 0 on the path from x' towards the origin, a row's term
                # is df/dx(x') * (0 - x'): minus gradient x input at the noisy point.
                origin = tuple(torch.zeros_like(x[:1]) for x in inputs)
                sign = -1.0 if multiply_by_inputs else 1.0
                at_reference = StraightLinePath(
                    block.pool,
                    block.index.reshape(-1),
                    origin,
                    torch.zeros(n * width, dtype=torch.long),
                    examples,
                    torch.zeros(n * width),
                    sign * weights,
                    multiply_by_inputs,
                )
                sg = integrate(
                    forward_func,
                    at_reference,
                    inputs,
                    target,
                    additional_forward_args,
                    internal_batch_size,
                )
                for acc, s in zip(smoothgrad, sg.attributions, strict=True):
                    acc += s
            progress.update(width)
    return Estimate(attributions, sample_totals, path_ends, smoothgrad)


def _outputs(
    forward_func: Callable[..., Any],
    path: StraightLinePath,
    pool: tuple[Tensor, ...],
    index: Tensor,
    n_examples: int,
    target: Any,
    additional_forward_args: Any,
    internal_batch_size: int | None,
) -> Tensor:
    """``f`` at ``pool[index[r]]`` for every row ``r`` of ``path``."""
    return forward_rows(
        forward_func,
        lambda rows: tuple(p[index[rows].to(p.device)] for p in pool),
        path.examples,
        n_examples,
        target,
        additional_forward_args,
        internal_batch_size,
    )


class ExpectedGradients(GradientAttribution):
    r"""Expected Gradients (Erion et al. 2019), the attribution of
    `Learning Explainable Models Using Attribution Priors
    <https://arxiv.org/abs/1906.10670>`_, as discussed in
    `Visualizing the Impact of Feature Attribution Baselines
    <https://distill.pub/2020/attribution-baselines/>`_.

    Integrated Gradients averaged over references ``x'`` drawn from a
    distribution (usually the training data), estimated by Monte Carlo::

        phi_i(x) ~= 1/k sum_{j=1..k} (x_i - x'_j,i) df/dx_i(x'_j + alpha_j (x - x'_j))

    with ``k = n_samples`` draws per example:

    - references ``x'_j`` without replacement while the source has at least
      ``k`` of them (beyond that, every reference is used equally often); for a
      multi-input model one index per draw is shared by every input tensor, so
      reference tuples are never mixed;
    - ``alpha_j`` stratified: one in each interval ``[m/k, (m+1)/k)``, in random
      order, so the path is covered evenly and each alpha is still uniform.

    A drop-in replacement for Captum's ``GradientShap``: ``attribute`` takes its
    positional order ``(inputs, baselines, n_samples, stdevs, target,
    additional_forward_args, return_convergence_delta)`` with its meaning
    (``GradientShap(stdevs=0)`` is this estimator), and bounds memory by
    ``internal_batch_size``, takes its randomness from a ``torch.Generator``,
    accepts datasets and per-example distributions, and reports the estimator's
    own completeness residual and standard error.

    Under Captum's ``NoiseTunnel``, pass ``draw_baseline_from_distrib=True`` with a
    pool of references: ``NoiseTunnel`` then draws one reference per noisy copy
    (with replacement, from NumPy's global RNG) and this method draws its
    ``n_samples`` per copy from those; with ``False`` every copy draws from the
    whole pool (a pool of exactly ``N > 1`` references is repeated per copy by
    ``NoiseTunnel``).  Either way the result estimates Expected Gradients
    smoothed by the noise.

    A ``nn.Module`` model is evaluated in eval mode (a model in training mode
    would update BatchNorm statistics and make each draw depend on its batch);
    its flags are restored afterwards.
    """

    def __init__(
        self, forward_func: Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        r"""
        Args:
            forward_func (Callable): The model or any function of the inputs.
            multiply_by_inputs (bool, optional): ``True`` (default) multiplies the
                gradients by ``x - x'`` (global attribution, complete); ``False``
                returns the expected gradient itself (local attribution).
        """
        super().__init__(forward_func)
        self._multiply_by_inputs = multiply_by_inputs

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: ReferenceSource,
        n_samples: int = 50,
        stdevs: float | tuple[float, ...] = 0.0,
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        return_convergence_delta: Literal[True],
        internal_batch_size: int | None = None,
        generator: torch.Generator | None = None,
        return_standard_error: bool = False,
        show_progress: bool = False,
    ) -> tuple[Any, ...]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: ReferenceSource,
        n_samples: int = 50,
        stdevs: float | tuple[float, ...] = 0.0,
        target: TargetType = None,
        additional_forward_args: Any = None,
        return_convergence_delta: Literal[False] = False,
        *,
        internal_batch_size: int | None = None,
        generator: torch.Generator | None = None,
        return_standard_error: bool = False,
        show_progress: bool = False,
    ) -> Any: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: ReferenceSource,
        n_samples: int = 50,
        stdevs: float | tuple[float, ...] = 0.0,
        target: TargetType = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        *,
        internal_batch_size: int | None = None,
        generator: torch.Generator | None = None,
        return_standard_error: bool = False,
        show_progress: bool = False,
    ) -> Any:
        r"""Estimates Expected Gradients with ``n_samples`` draws per example.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs ``x``, batch first.
            baselines: Where the references ``x'`` come from (see
                :mod:`captum_baselines.references`): a tensor of references
                ``(M, *inputs.shape[1:])`` (a tuple of such tensors with the same
                ``M`` for a multi-input model), a number or one example's tensor
                (a single reference), a map-style ``Dataset`` or a ``DataLoader``
                (items may be ``(x, y)`` tuples; only the items drawn are read), an
                ``IterableDataset`` or iterable of batches (reservoir-sampled), or
                a callable ``(inputs, n_samples=..., generator=...)`` returning
                ``(n_samples, *inputs.shape)`` per-example draws, e.g.
                ``functools.partial(cb.baselines.gaussian, sigma=0.5)``.
            n_samples (int, optional): Draws ``(x'_j, alpha_j)`` per example.
                Default: 50.
            stdevs (float or tuple[float, ...], optional): Standard deviation of
                the Gaussian noise added to the input of each draw, as in
                ``GradientShap`` (one per input tensor for a tuple). Default: 0.
            target (int, tuple, Tensor or list, optional): Output index per
                example, in any of Captum's forms. Default: None (scalar output).
            additional_forward_args (Any, optional): Passed to ``forward_func``
                after the inputs; tensors whose first dimension is the batch size
                are taken per example.
            return_convergence_delta (bool, optional): Also return the completeness
                residual per example, ``sum_i phi_i - 1/k sum_j (f(x + eps_j) -
                f(x'_j))`` over the draws made (meaningful with
                ``multiply_by_inputs``); costs one more forward pass per draw (two
                with ``stdevs``). Default: False.
            internal_batch_size (int, optional): Draws evaluated per forward and
                backward pass; bounds memory, changes no result. Default: None
                (all the draws of a block of 16 per example at once).
            generator (torch.Generator, optional): Source of randomness; the same
                seed gives the same result. Default: None (torch's default).
            return_standard_error (bool, optional): Also return, last, the
                per-example standard error of ``sum_i phi_i``,
                ``std_j(T_nj) / sqrt(k)`` (see :func:`standard_error`); if it is
                not small against ``|sum_i phi_i|``, raise ``n_samples``.
            show_progress (bool, optional): Show a progress bar over the draws.

        Returns:
            **attributions** shaped like ``inputs`` (a tuple if ``inputs`` is
            one); then the ``(N,)`` **delta** if ``return_convergence_delta``;
            then the ``(N,)`` **standard error** if ``return_standard_error``.

        Examples::

            >>> eg = ExpectedGradients(model)
            >>> attr, delta, se = eg.attribute(
            ...     images, train_images, 200, target=labels,
            ...     internal_batch_size=64, return_convergence_delta=True,
            ...     return_standard_error=True)
        """
        x, n_samples, stdevs_t = _checked_arguments(
            inputs, n_samples, stdevs, target, internal_batch_size, generator
        )
        with eval_mode(self.forward_func):
            input_outputs = (
                forward_inputs(
                    self.forward_func, x, target, additional_forward_args,
                    internal_batch_size,
                )
                if return_convergence_delta
                else None
            )  # fmt: skip
            alphas = stratified_alphas(
                len(x[0]), n_samples, generator, x[0].dtype, x[0].device
            )
            blocks = reference_blocks(baselines, x, n_samples, generator)
            estimate = estimate_expected_gradients(
                self.forward_func,
                x,
                blocks,
                alphas,
                target,
                additional_forward_args,
                internal_batch_size,
                self._multiply_by_inputs,
                show_progress,
                stdevs_t,
                generator,
                input_outputs,
            )
        extras = []
        if estimate.path_ends is not None:
            extras.append(total(estimate.attributions) - estimate.path_ends.mean(1))
        if return_standard_error:
            extras.append(standard_error(estimate.sample_totals))
        return format_result(inputs, estimate.attributions, *extras)

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


def _checked_arguments(
    inputs: Any,
    n_samples: Any,
    stdevs: Any,
    target: Any,
    internal_batch_size: Any,
    generator: Any,
) -> tuple[tuple[Tensor, ...], int, tuple[float, ...]]:
    """The checked, detached inputs, ``n_samples`` and per-input ``stdevs``."""
    x = tuple(t.detach() for t in format_inputs(inputs))
    n_samples = check_positive_int("n_samples", n_samples)
    if isinstance(stdevs, tuple):
        if len(stdevs) != len(x):
            raise ValueError(
                f"`stdevs` must hold one value per input tensor ({len(x)}), "
                f"got {len(stdevs)}"
            )
        values = tuple(check_nonnegative("stdevs", s) for s in stdevs)
    elif isinstance(stdevs, numbers.Real):
        values = (check_nonnegative("stdevs", stdevs),) * len(x)
    else:
        got = type(stdevs).__name__
        raise TypeError(f"`stdevs` must be a float or a tuple of floats, got {got}")
    check_target_form(target, len(x[0]))
    check_optional_positive_int("internal_batch_size", internal_batch_size)
    check_generator("generator", generator)
    return x, n_samples, values


def expected_gradients_and_smoothgrad(
    forward_func: Callable[..., Any],
    inputs: TensorOrTupleOfTensorsGeneric,
    sigma: float,
    target: TargetType = None,
    additional_forward_args: Any = None,
    n_samples: int = 50,
    internal_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    multiply_by_inputs: bool = True,
    show_progress: bool = False,
) -> tuple[TensorOrTupleOfTensorsGeneric, TensorOrTupleOfTensorsGeneric]:
    r"""Expected Gradients with a Gaussian baseline and SmoothGrad, from the same
    noise draws (the connection in section "Expectations, and Connections to
    SmoothGrad" of https://distill.pub/2020/attribution-baselines/).

    With ``eps_j ~ N(0, sigma^2 I)`` and noisy copies ``x'_j = x + eps_j``::

        EG_i = 1/k sum_j (x_i - x'_j,i) df/dx_i(x'_j + alpha_j (x - x'_j))
             = 1/k sum_j -eps_j,i df/dx_i(x + (1 - alpha_j) eps_j)
        SG_i = 1/k sum_j x'_j,i df/dx_i(x'_j)      (SmoothGrad, gradient x input)

    The two differ only in the multiplier (``-eps_j`` against ``x + eps_j``) and
    in where the gradient is taken (uniformly along the path against its noisy
    end, ``alpha = 0``). The noise is not truncated; EG with a noise distribution
    kept inside the valid range is ``ExpectedGradients.attribute(x,
    baselines=partial(cb.baselines.gaussian, sigma=...))``.

    ``EG`` here equals ``ExpectedGradients(forward_func).attribute(inputs,
    baselines=lambda x, n_samples, generator: x + sigma * torch.randn(
    (n_samples, *x.shape), generator=generator, dtype=x.dtype), ...)`` with the
    same generator state. With ``multiply_by_inputs=False`` both are local
    (plain expected gradient and vanilla SmoothGrad).

    Args:
        forward_func (Callable): The model.
        inputs (Tensor or tuple[Tensor, ...]): The inputs ``x``, batch first.
        sigma (float): Standard deviation of the noise, in input units.
        target, additional_forward_args, n_samples: As in
            :meth:`ExpectedGradients.attribute`.
        internal_batch_size, generator, show_progress: As in
            :meth:`ExpectedGradients.attribute`.
        multiply_by_inputs (bool, optional): Global (default) or local variants.

    Returns:
        ``(expected_gradients, smoothgrad)``, each shaped like ``inputs``.

    Examples::

        >>> eg, sg = expected_gradients_and_smoothgrad(
        ...     model, images, sigma=0.3, target=labels, n_samples=100)
    """
    sigma = check_nonnegative("sigma", sigma)
    x, n_samples, _ = _checked_arguments(
        inputs, n_samples, 0.0, target, internal_batch_size, generator
    )

    def gaussian_around(
        points: Any, n_samples: int, generator: Any
    ) -> tuple[Tensor, ...]:
        return tuple(
            t
            + sigma
            * torch.randn((n_samples, *t.shape), generator=generator, dtype=t.dtype).to(
                t.device
            )
            for t in (points if isinstance(points, tuple) else (points,))
        )

    with eval_mode(forward_func):
        forward_inputs(forward_func, x, target, additional_forward_args)
        alphas = stratified_alphas(
            len(x[0]), n_samples, generator, x[0].dtype, x[0].device
        )
        estimate = estimate_expected_gradients(
            forward_func,
            x,
            reference_blocks(gaussian_around, x, n_samples, generator),
            alphas,
            target,
            additional_forward_args,
            internal_batch_size,
            multiply_by_inputs,
            show_progress,
            with_smoothgrad=True,
        )
    assert estimate.smoothgrad is not None
    is_tuple = _is_tuple(inputs)
    return (
        cast(
            TensorOrTupleOfTensorsGeneric,
            _format_output(is_tuple, estimate.attributions),
        ),
        cast(
            TensorOrTupleOfTensorsGeneric,
            _format_output(is_tuple, estimate.smoothgrad),
        ),
    )


__all__ = [
    "ExpectedGradients",
    "expected_gradients_and_smoothgrad",
    "standard_error",
    "stratified_alphas",
]
