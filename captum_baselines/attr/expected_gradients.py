r"""Expected Gradients: Integrated Gradients averaged over a baseline distribution.

For an input ``x`` and a distribution ``D`` of references (baselines), Expected
Gradients (Erion et al. 2019; Sturmfels, Lundberg & Lee 2020) is::

    phi_i(x) = E_{x' ~ D, alpha ~ U(0,1)} [(x_i - x'_i) df/dx_i(x' + alpha (x - x'))]

and its estimate from ``k`` draws ``(x'_j, alpha_j)``::

    phi_hat_i(x) = 1/k sum_j (x_i - x'_j,i) * df/dx_i(x'_j + alpha_j (x - x'_j))

Each draw is one *row* of :func:`captum_baselines._engine.path.path_gradient_sums`,
with weight ``1/k``. Summed over features, each row's term ``T_j`` is an unbiased
one-point estimate of ``f(x) - f(x'_j)``, so ``sum_i phi_hat_i`` estimates
``f(x) - E f(x')`` and its completeness residual over the references actually
drawn is ``sum_i phi_hat_i - (f(x) - 1/k sum_j f(x'_j))``.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from captum._utils.common import _format_output, _format_tensor_into_tuples, _is_tuple
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr._utils.attribution import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate
from tqdm.auto import tqdm

from .._engine.path import (
    evaluate_rows,
    forward_inputs,
    path_gradient_sums,
    stratified_alphas,
)
from .._hooks import eval_mode
from .._validation import (
    check_finite,
    check_generator,
    check_inputs,
    check_nonnegative,
    check_optional_positive_int,
    check_positive_int,
)
from ..references import draw_without_replacement, reservoir_sample

#: A callable source is called for at most this many draws at a time, so that its
#: random stream (and hence the result) does not depend on ``internal_batch_size``.
DRAWS_PER_CALL = 16

ReferenceSource = (
    Tensor
    | tuple[Tensor, ...]
    | Dataset[Any]
    | DataLoader[Any]
    | Callable[..., Tensor | tuple[Tensor, ...]]
)


@dataclass
class ReferenceChunk:
    """Draws ``samples`` of every example: ``pool[index[n, j]]`` is example n's."""

    pool: tuple[Tensor, ...]
    index: Tensor
    samples: slice


@dataclass
class Estimate:
    """What one pass over the draws produces."""

    attributions: tuple[Tensor, ...]
    sample_totals: Tensor
    reference_outputs: Tensor | None
    smoothgrad: tuple[Tensor, ...] | None = None


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

    Captum's ``GradientShap(stdevs=0)`` computes the same estimator; this one
    bounds memory by ``internal_batch_size``, takes its randomness from a
    ``torch.Generator``, accepts datasets and per-example distributions, and
    reports the estimator's own completeness residual and standard error.

    After every call, ``last_sample_totals`` holds ``T_nj = sum_i`` of the j-th
    draw's term for example n (shape ``(N, n_samples)``), ``last_reference_outputs``
    holds ``f(x'_nj)`` (computed only with ``return_convergence_delta=True``, as it
    costs one more forward pass per draw) and ``last_standard_error`` holds the
    per-example standard error of ``sum_i phi_i``, ``std_j(T_nj) / sqrt(k)`` (see
    :func:`standard_error`).
    If it is not small against ``|sum_i phi_i|``, raise ``n_samples``.

    A ``nn.Module`` model is evaluated in eval mode (a model in training mode
    would update BatchNorm statistics and make each draw depend on its batch);
    its training and ``requires_grad`` flags are restored afterwards.

    Args:
        forward_func (Callable): The model or any function of the inputs.
        multiply_by_inputs (bool, optional): ``True`` (default) multiplies the
            gradients by ``x - x'`` (global attribution, complete); ``False``
            returns the expected gradient itself (local attribution).
    """

    def __init__(
        self, forward_func: Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = multiply_by_inputs
        self.last_sample_totals: Tensor | None = None
        self.last_reference_outputs: Tensor | None = None
        self.last_standard_error: Tensor | None = None

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: ReferenceSource,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_samples: int = 50,
        internal_batch_size: int | None = None,
        generator: torch.Generator | None = None,
        *,
        return_convergence_delta: Literal[True],
        show_progress: bool = False,
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: ReferenceSource,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_samples: int = 50,
        internal_batch_size: int | None = None,
        generator: torch.Generator | None = None,
        return_convergence_delta: Literal[False] = False,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: ReferenceSource,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_samples: int = 50,
        internal_batch_size: int | None = None,
        generator: torch.Generator | None = None,
        return_convergence_delta: bool = False,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Estimates Expected Gradients with ``n_samples`` draws per example.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The inputs ``x``, batch first.
            baselines: Where the references ``x'`` come from, one of

                - a tensor of references ``(M, *inputs.shape[1:])``, or for a
                  multi-input model a tuple of such tensors with the same ``M``
                  (reference ``m`` is the tuple of their ``m``-th rows);
                - a map-style ``Dataset`` or a ``DataLoader`` whose items (or
                  batches) are the references or ``(x, y, ...)`` tuples whose first
                  element is the reference (a tuple of tensors for a multi-input
                  model). Only the items drawn are read, ``DRAWS_PER_CALL`` draws at
                  a time, through the loader's ``collate_fn``; a source without
                  random access (an ``IterableDataset``) is read once and a uniform
                  subset of ``n_samples`` references is kept (reservoir sampling);
                - a callable ``(inputs, n_samples=..., generator=...)`` returning
                  ``(n_samples, *inputs.shape)`` draws per example (a tuple for a
                  multi-input model), e.g. ``functools.partial(cb.baselines.gaussian,
                  sigma=0.5)``. It is called for at most ``DRAWS_PER_CALL`` draws at a
                  time and its draws are the references used.
            target (int, tuple, Tensor or list, optional): Output index per example,
                in any of Captum's forms. Default: None (scalar output).
            additional_forward_args (Any, optional): Passed to ``forward_func``
                after the inputs; tensors whose first dimension is the batch size
                are taken per example.
            n_samples (int, optional): Draws ``(x'_j, alpha_j)`` per example.
                Default: 50.
            internal_batch_size (int, optional): Draws evaluated per forward and
                backward pass; bounds memory. Default: None (all at once).
            generator (torch.Generator, optional): Source of randomness; the same
                seed gives the same result. Default: None (torch's default).
            return_convergence_delta (bool, optional): Also return the completeness
                residual per example, ``sum_i phi_i - (f(x) - 1/k sum_j f(x'_j))``
                over the references drawn (meaningful when ``multiply_by_inputs``).
            show_progress (bool, optional): Show a progress bar over the draws.

        Returns:
            The attributions, shaped like ``inputs`` (a tuple if ``inputs`` is
            one), and with ``return_convergence_delta=True`` also the ``(N,)``
            delta. ``last_standard_error`` is set as a side result.

        Examples::

            >>> eg = ExpectedGradients(model)
            >>> attr, delta = eg.attribute(
            ...     images, baselines=train_images, target=labels, n_samples=200,
            ...     internal_batch_size=64, return_convergence_delta=True)
            >>> eg.last_standard_error  # one value per image
        """
        is_inputs_tuple = _is_tuple(inputs)
        inputs_tuple, n_samples, internal_batch_size = _checked_arguments(
            inputs, n_samples, internal_batch_size, generator
        )

        with eval_mode(self.forward_func):
            input_outputs = forward_inputs(
                self.forward_func,
                inputs_tuple,
                target,
                additional_forward_args,
                internal_batch_size,
            )
            alphas = _alphas(inputs_tuple, n_samples, generator)
            chunks = reference_chunks(
                baselines,
                inputs_tuple,
                n_samples,
                generator,
                samples_per_chunk(inputs_tuple, n_samples, internal_batch_size),
            )
            estimate = estimate_expected_gradients(
                self.forward_func,
                inputs_tuple,
                chunks,
                alphas,
                target,
                additional_forward_args,
                internal_batch_size,
                self._multiply_by_inputs,
                show_progress,
                with_reference_outputs=return_convergence_delta,
            )

        self.last_sample_totals = estimate.sample_totals
        self.last_reference_outputs = estimate.reference_outputs
        self.last_standard_error = standard_error(estimate.sample_totals)
        attributions = _format_output(is_inputs_tuple, estimate.attributions)
        if not return_convergence_delta:
            return cast(TensorOrTupleOfTensorsGeneric, attributions)
        assert estimate.reference_outputs is not None
        delta = completeness_delta(
            estimate.attributions, input_outputs, estimate.reference_outputs
        )
        return cast(TensorOrTupleOfTensorsGeneric, attributions), delta

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


def _checked_arguments(
    inputs: Any,
    n_samples: Any,
    internal_batch_size: Any,
    generator: Any,
) -> tuple[tuple[Tensor, ...], int, int | None]:
    """The checked, detached inputs tuple, ``n_samples`` and batch size."""
    inputs_tuple = check_inputs("inputs", _format_tensor_into_tuples(inputs))
    n_samples = check_positive_int("n_samples", n_samples)
    internal_batch_size = check_optional_positive_int(
        "internal_batch_size", internal_batch_size
    )
    check_generator("generator", generator)
    return tuple(x.detach() for x in inputs_tuple), n_samples, internal_batch_size


def _alphas(
    inputs: tuple[Tensor, ...], n_samples: int, generator: torch.Generator | None
) -> Tensor:
    """One stratified alpha per (example, draw), on the inputs' device and dtype."""
    x = inputs[0]
    return stratified_alphas(
        len(x), n_samples, generator, dtype=x.dtype, device=x.device
    )


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


def completeness_delta(
    attributions: tuple[Tensor, ...], input_outputs: Tensor, reference_outputs: Tensor
) -> Tensor:
    """``sum_i phi_i - (f(x) - mean_j f(x'_j))`` per example."""
    n = len(input_outputs)
    total = sum(a.reshape(n, -1).sum(1) for a in attributions)
    expected_gap = input_outputs - reference_outputs.mean(1)
    return cast(Tensor, total) - expected_gap.to(attributions[0].dtype)


def samples_per_chunk(
    inputs: tuple[Tensor, ...], n_samples: int, internal_batch_size: int | None
) -> int:
    """Draws per example read from the source at a time: one internal batch."""
    if internal_batch_size is None:
        return n_samples
    return max(1, internal_batch_size // len(inputs[0]))


def estimate_expected_gradients(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    chunks: Iterator[ReferenceChunk],
    alphas: Tensor,
    target: Any,
    additional_forward_args: Any,
    internal_batch_size: int | None,
    multiply_by_inputs: bool,
    show_progress: bool,
    with_reference_outputs: bool = True,
    with_smoothgrad: bool = False,
) -> Estimate:
    """Sums the path terms of every draw, chunk by chunk.

    With ``with_smoothgrad``, the same references (noisy copies ``x + eps_j`` of
    the inputs) also give SmoothGrad: ``1/k sum_j (x + eps_j) df/dx(x + eps_j)``.
    """
    n, k = alphas.shape
    attributions = tuple(torch.zeros_like(x) for x in inputs)
    smoothgrad = tuple(torch.zeros_like(x) for x in inputs) if with_smoothgrad else None
    sample_totals = torch.zeros(n, k, dtype=inputs[0].dtype, device=inputs[0].device)
    reference_outputs = (
        torch.zeros_like(sample_totals) if with_reference_outputs else None
    )
    weight = 1.0 / k
    with tqdm(
        total=k, desc="Expected Gradients", unit="draw", disable=not show_progress
    ) as progress:
        for chunk in chunks:
            width = chunk.index.shape[1]
            examples = torch.arange(n, device=chunk.index.device)
            rows = examples.repeat_interleave(width)
            reference_index = chunk.index.reshape(-1)
            weights = torch.full((len(rows),), weight, dtype=torch.float64)
            sums, totals = path_gradient_sums(
                forward_func,
                inputs,
                chunk.pool,
                reference_index,
                rows,
                alphas[:, chunk.samples].reshape(-1),
                weights,
                target,
                additional_forward_args,
                internal_batch_size,
                multiply_by_inputs,
            )
            for total, s in zip(attributions, sums, strict=True):
                total += s
            sample_totals[:, chunk.samples] = totals.reshape(n, width)
            if reference_outputs is not None:
                outputs = evaluate_rows(
                    forward_func,
                    chunk.pool,
                    reference_index,
                    rows,
                    n,
                    target,
                    additional_forward_args,
                    internal_batch_size,
                )
                reference_outputs[:, chunk.samples] = outputs.reshape(n, width).to(
                    reference_outputs
                )
            if smoothgrad is not None:
                # At alpha = 0 on the path from x' towards the origin, a row's term
                # is df/dx(x') * (0 - x'): minus gradient x input at the noisy point.
                origin = tuple(torch.zeros_like(x) for x in inputs)
                sign = -1.0 if multiply_by_inputs else 1.0
                sg_sums, _ = path_gradient_sums(
                    forward_func,
                    origin,
                    chunk.pool,
                    reference_index,
                    rows,
                    torch.zeros(len(rows)),
                    sign * weights,
                    target,
                    additional_forward_args,
                    internal_batch_size,
                    multiply_by_inputs,
                )
                for total, s in zip(smoothgrad, sg_sums, strict=True):
                    total += s
            progress.update(width)
    return Estimate(attributions, sample_totals, reference_outputs, smoothgrad)


# --- reference sources -------------------------------------------------------------


def reference_chunks(
    baselines: Any,
    inputs: tuple[Tensor, ...],
    n_samples: int,
    generator: torch.Generator | None,
    chunk_size: int,
) -> Iterator[ReferenceChunk]:
    """The references of every (example, draw), ``chunk_size`` draws at a time.

    Validates ``baselines`` eagerly, before anything is evaluated.
    """
    if isinstance(baselines, (Tensor, tuple)):
        pool = reference_pool(baselines, inputs)
        index = draw_without_replacement(
            len(pool[0]), len(inputs[0]), n_samples, generator
        )
        return pool_chunks(pool, index, chunk_size)
    if isinstance(baselines, DataLoader) and not isinstance(
        baselines.dataset, IterableDataset
    ):
        collate = (
            baselines.collate_fn
            if baselines.batch_size is not None
            else default_collate
        )
        return dataset_chunks(
            baselines.dataset, collate, inputs, n_samples, generator, chunk_size
        )
    if isinstance(baselines, (DataLoader, IterableDataset)):
        pool = reservoir_pool(baselines, inputs, n_samples, generator)
        index = draw_without_replacement(
            len(pool[0]), len(inputs[0]), n_samples, generator
        )
        return pool_chunks(pool, index, chunk_size)
    if isinstance(baselines, Dataset):
        return dataset_chunks(
            baselines, default_collate, inputs, n_samples, generator, chunk_size
        )
    if callable(baselines):
        return distribution_chunks(baselines, inputs, n_samples, generator)
    raise TypeError(
        "`baselines` must be a tensor (or tuple of tensors) of references, a "
        "Dataset, a DataLoader or a callable (inputs, n_samples, generator), got "
        f"{type(baselines).__name__}"
    )


def reference_pool(baselines: Any, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Checks a tensor pool ``(M, ...)`` per input and moves it to the inputs'."""
    pool = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(pool) != len(inputs):
        raise ValueError(
            f"`baselines` must hold one tensor per input ({len(inputs)}), "
            f"got {len(pool)}"
        )
    checked = []
    for i, (p, x) in enumerate(zip(pool, inputs, strict=True)):
        label = "baselines" if len(pool) == 1 else f"baselines[{i}]"
        if not isinstance(p, Tensor):
            raise TypeError(f"`{label}` must be a tensor, got {type(p).__name__}")
        if p.dim() != x.dim() or p.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"`{label}` must be a pool of references shaped (M, "
                f"{', '.join(map(str, x.shape[1:]))}) like one input example, got "
                f"{tuple(p.shape)}; pass per-example draws as a callable"
            )
        if p.shape[0] == 0:
            raise ValueError(f"`{label}` is empty: it holds no references")
        check_finite(label, p)
        checked.append(p.detach().to(device=x.device, dtype=x.dtype))
    if any(len(p) != len(checked[0]) for p in checked):
        sizes = [len(p) for p in checked]
        raise ValueError(
            f"every tensor of `baselines` must hold the same number of references, "
            f"got {sizes}"
        )
    return tuple(checked)


def pool_chunks(
    pool: tuple[Tensor, ...], index: Tensor, chunk_size: int
) -> Iterator[ReferenceChunk]:
    for start in range(0, index.shape[1], chunk_size):
        samples = slice(start, start + chunk_size)
        yield ReferenceChunk(pool, index[:, samples], samples)


def dataset_chunks(
    dataset: Any,
    collate: Callable[[list[Any]], Any],
    inputs: tuple[Tensor, ...],
    n_samples: int,
    generator: torch.Generator | None,
    chunk_size: int,
) -> Iterator[ReferenceChunk]:
    """Reads only the items drawn for each chunk from a map-style dataset."""
    size = len(dataset)
    if size == 0:
        raise ValueError("`baselines` is an empty dataset: it holds no references")
    index = draw_without_replacement(size, len(inputs[0]), n_samples, generator)

    def chunks() -> Iterator[ReferenceChunk]:
        for start in range(0, n_samples, chunk_size):
            samples = slice(start, start + chunk_size)
            needed, local = torch.unique(index[:, samples], return_inverse=True)
            batch = collate([dataset[i] for i in needed.tolist()])
            pool = batch_references(batch, inputs, "baselines")
            yield ReferenceChunk(pool, local, samples)

    return chunks()


def reservoir_pool(
    source: Any,
    inputs: tuple[Tensor, ...],
    capacity: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, ...]:
    """A uniform random subset of ``capacity`` references from one pass over
    ``source``, for sources that cannot be indexed."""
    batches = (
        iter(source)
        if isinstance(source, DataLoader)
        else (default_collate([item]) for item in source)
    )
    pool = reservoir_sample(
        (batch_references(batch, inputs, "baselines") for batch in batches),
        capacity,
        generator,
    )
    if not pool:
        raise ValueError("`baselines` yielded no references: it is empty")
    return pool


def batch_references(
    batch: Any, inputs: tuple[Tensor, ...], name: str
) -> tuple[Tensor, ...]:
    """The references in a collated batch: the batch itself, or its first element
    for ``(x, y, ...)`` batches (a tuple of tensors for a multi-input model)."""
    if isinstance(batch, Tensor):
        refs: tuple[Any, ...] = (batch,)
    elif isinstance(batch, (tuple, list)) and batch:
        first = batch[0]
        if isinstance(first, (tuple, list)):
            refs = tuple(first)
        elif len(inputs) == 1:
            refs = (first,)
        else:
            refs = tuple(batch[: len(inputs)])
    else:
        raise TypeError(
            f"`{name}` items must be tensors or (x, y) tuples, "
            f"got {type(batch).__name__}"
        )
    return reference_pool(refs, inputs)


def distribution_chunks(
    draw: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    n_samples: int,
    generator: torch.Generator | None,
) -> Iterator[ReferenceChunk]:
    """Calls a per-example distribution for ``DRAWS_PER_CALL`` draws at a time."""
    n = len(inputs[0])
    for start in range(0, n_samples, DRAWS_PER_CALL):
        width = min(DRAWS_PER_CALL, n_samples - start)
        draws = draw(
            inputs if len(inputs) > 1 else inputs[0],
            n_samples=width,
            generator=generator,
        )
        draws = draws if isinstance(draws, tuple) else (draws,)
        if len(draws) != len(inputs) or any(
            not isinstance(d, Tensor) or d.shape != (width, *x.shape)
            for d, x in zip(draws, inputs, strict=True)
        ):
            got = [tuple(d.shape) if isinstance(d, Tensor) else d for d in draws]
            raise ValueError(
                "a callable `baselines` must return (n_samples, *inputs.shape) "
                f"draws per input, n_samples={width}; got {got}"
            )
        for d in draws:
            check_finite("baselines draws", d)
        pool = tuple(
            d.detach()
            .to(device=x.device, dtype=x.dtype)
            .reshape(width * n, *x.shape[1:])
            for d, x in zip(draws, inputs, strict=True)
        )
        # pool row (j, n) -> j * n_examples + n
        index = torch.arange(width) * n + torch.arange(n)[:, None]
        yield ReferenceChunk(pool, index, slice(start, start + width))


# --- the SmoothGrad connection -----------------------------------------------------


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
        target, additional_forward_args, n_samples, internal_batch_size,
        generator, show_progress: As in :meth:`ExpectedGradients.attribute`.
        multiply_by_inputs (bool, optional): Global (default) or local variants.

    Returns:
        ``(expected_gradients, smoothgrad)``, each shaped like ``inputs``.

    Examples::

        >>> eg, sg = expected_gradients_and_smoothgrad(
        ...     model, images, sigma=0.3, target=labels, n_samples=100)
    """
    is_inputs_tuple = _is_tuple(inputs)
    sigma = check_nonnegative("sigma", sigma)
    inputs_tuple, n_samples, internal_batch_size = _checked_arguments(
        inputs, n_samples, internal_batch_size, generator
    )

    def gaussian_around(x: Any, n_samples: int, generator: Any) -> Any:
        return tuple(
            t
            + sigma
            * torch.randn((n_samples, *t.shape), generator=generator, dtype=t.dtype).to(
                t.device
            )
            for t in _format_tensor_into_tuples(x)
        )

    with eval_mode(forward_func):
        forward_inputs(
            forward_func,
            inputs_tuple,
            target,
            additional_forward_args,
            internal_batch_size,
        )
        alphas = _alphas(inputs_tuple, n_samples, generator)
        estimate = estimate_expected_gradients(
            forward_func,
            inputs_tuple,
            distribution_chunks(gaussian_around, inputs_tuple, n_samples, generator),
            alphas,
            target,
            additional_forward_args,
            internal_batch_size,
            multiply_by_inputs,
            show_progress,
            with_reference_outputs=False,
            with_smoothgrad=True,
        )
    assert estimate.smoothgrad is not None
    return (
        cast(
            TensorOrTupleOfTensorsGeneric,
            _format_output(is_inputs_tuple, estimate.attributions),
        ),
        cast(
            TensorOrTupleOfTensorsGeneric,
            _format_output(is_inputs_tuple, estimate.smoothgrad),
        ),
    )


__all__ = [
    "DRAWS_PER_CALL",
    "ExpectedGradients",
    "completeness_delta",
    "expected_gradients_and_smoothgrad",
    "standard_error",
]
