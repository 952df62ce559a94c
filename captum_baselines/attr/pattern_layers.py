r"""The layers that carry a pattern: their weights, products and padding.

A patterned layer is a Linear or Conv layer, ``y = w x + b``.  Both the pattern
statistics and the pattern backward need three products with it, and each exists
once, here:

- the weight-gradient-shaped product ``sum_samples g x^T`` of a signal ``g``
  shaped like the output with the layer's input patches (:func:`weight_products`;
  for a conv, ``torch.nn.grad.conv*d_weight``, so nothing is unfolded);
- the input gradient ``w^T g`` with any weight ``w`` (:func:`input_gradient`);
- the effective weight ``s * w`` with a following BatchNorm folded in
  (:func:`effective_weight`).

Convolutions that pad inside their own ``forward``
(`TensorFlow's "same" padding <https://www.tensorflow.org/api_docs/python/tf/nn#notes_on_padding_2>`_
as in EfficientNet ports and timm's ``Conv2dSame``) see an input that the module's
hooks never see.  Their padding is inferred from the input and output sizes and
verified against the module's own ``forward`` (:class:`ConvPaddings`), so that
the products above use the convolution that actually ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import (
    conv1d_input,
    conv1d_weight,
    conv2d_input,
    conv2d_weight,
    conv3d_input,
    conv3d_weight,
)

#: The layers that can carry a pattern.
PATTERNED_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
)

#: ``(before, after)`` zero padding per spatial dimension, in dimension order.
Padding = tuple[tuple[int, int], ...]

_STOCK_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_INPUT_GRADIENT = {1: conv1d_input, 2: conv2d_input, 3: conv3d_input}
_CONV_WEIGHT_GRADIENT = {1: conv1d_weight, 2: conv2d_weight, 3: conv3d_weight}


def check_patterned_layer(name: str, module: nn.Module) -> None:
    """Raises a ``ValueError`` if ``module`` cannot carry a pattern."""
    if not isinstance(module, PATTERNED_LAYER_TYPES):
        kinds = ", ".join(t.__name__ for t in PATTERNED_LAYER_TYPES)
        raise ValueError(
            f"layer `{name}` is a {type(module).__name__}; patterns are supported "
            f"for {kinds} only"
        )
    if (
        isinstance(module, nn.modules.conv._ConvNd)
        and not pads_in_forward(module)
        and module.padding_mode != "zeros"
    ):
        raise ValueError(
            f"layer `{name}` uses padding_mode={module.padding_mode!r}; only "
            "'zeros' is supported"
        )


def layer_weight(module: nn.Module) -> Tensor:
    """The ``weight`` parameter of a Linear or Conv layer."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    return weight


def batchnorm_scale(batchnorm: nn.Module) -> tuple[Tensor, Tensor]:
    """``(s, t)`` with ``batchnorm(y) = s * y + t`` per channel, in eval mode."""
    assert isinstance(batchnorm, nn.modules.batchnorm._BatchNorm)
    assert batchnorm.running_mean is not None and batchnorm.running_var is not None
    mean = batchnorm.running_mean.detach()
    var = batchnorm.running_var.detach()
    scale = torch.rsqrt(var + batchnorm.eps)
    if batchnorm.weight is not None:
        scale = scale * batchnorm.weight.detach()
    shift = -mean * scale
    if batchnorm.bias is not None:
        shift = shift + batchnorm.bias.detach()
    return scale, shift


def effective_weight(
    module: nn.Module, batchnorm: nn.Module | None = None, dtype: Any = None
) -> Tensor:
    """The weight of ``module`` with ``batchnorm`` folded in: ``s * w`` per output."""
    weight = layer_weight(module).detach()
    weight = weight if dtype is None else weight.to(dtype)
    if batchnorm is None:
        return weight
    scale, _ = batchnorm_scale(batchnorm)
    return weight * scale.to(weight).reshape(-1, *([1] * (weight.dim() - 1)))


def apply_batchnorm(batchnorm: nn.Module, output: Tensor) -> Tensor:
    """``batchnorm(output)`` with its running statistics (its eval-mode map)."""
    assert isinstance(batchnorm, nn.modules.batchnorm._BatchNorm)
    return F.batch_norm(
        output,
        batchnorm.running_mean,
        batchnorm.running_var,
        batchnorm.weight,
        batchnorm.bias,
        False,
        0.0,
        batchnorm.eps,
    )


# ---------------------------------------------------------------- padding


def pads_in_forward(conv: nn.modules.conv._ConvNd) -> bool:
    """Whether ``conv``'s class replaces the convolution's own ``forward``.

    Such a layer (EfficientNet's ``Conv2dStaticSamePadding``, timm's
    ``Conv2dSame``) may pad its input before convolving, so its declared
    ``padding`` is not what it applies.
    """
    stock = _STOCK_CONV[len(conv.kernel_size)]
    kind = type(conv)
    return kind.forward is not stock.forward or (
        kind._conv_forward is not stock._conv_forward  # type: ignore[attr-defined]
    )


def declared_padding(conv: nn.modules.conv._ConvNd) -> Padding:
    """The zero padding a stock convolution applies, resolving ``'same'``.

    PyTorch (like TensorFlow) pads an odd ``'same'`` total one more after than
    before.
    """
    if not isinstance(conv.padding, str):
        return tuple((int(p), int(p)) for p in conv.padding)
    if conv.padding == "valid":
        return ((0, 0),) * len(conv.kernel_size)
    totals = (d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation))
    return tuple((t // 2, t - t // 2) for t in totals)


def is_symmetric(padding: Padding) -> bool:
    return all(before == after for before, after in padding)


def _padding_candidates(
    conv: nn.modules.conv._ConvNd,
    input_size: Sequence[int],
    output_size: Sequence[int],
) -> list[Padding]:
    """Every padding that maps ``input_size`` to ``output_size``, likeliest first.

    Per dimension, the totals ``T`` with ``(n + T - d (k - 1) - 1) // s + 1 == o``
    (the smallest first: TensorFlow's "same"), each split with the larger half
    after (TensorFlow, PyTorch) and then before.
    """
    per_dimension = []
    for n, o, k, s, d in zip(
        input_size, output_size, conv.kernel_size, conv.stride, conv.dilation
    ):
        smallest = max((o - 1) * s + d * (k - 1) + 1 - n, 0)
        options: list[tuple[int, int]] = []
        for total in range(smallest, smallest + s):
            for split in (
                (total // 2, total - total // 2),
                (total - total // 2, total // 2),
            ):
                if split not in options:
                    options.append(split)
        per_dimension.append(options)
    declared = declared_padding(conv)
    candidates = [tuple(c) for c in itertools.product(*per_dimension)]
    if declared in candidates:  # a subclass that pads as declared
        candidates.remove(declared)
        candidates.insert(0, declared)
    return candidates


def _pad_argument(padding: Padding) -> list[int]:
    """``padding`` in ``F.pad``'s order: last dimension first."""
    return [p for pair in reversed(padding) for p in pair]


def pad_input(layer_input: Tensor, padding: Padding) -> Tensor:
    """``layer_input`` zero-padded as ``padding`` says."""
    return F.pad(layer_input, _pad_argument(padding))


def _convolve(conv: nn.modules.conv._ConvNd, x: Tensor, padding: Padding) -> Tensor:
    return _CONV[len(conv.kernel_size)](
        pad_input(x, padding),
        conv.weight,
        conv.bias,
        conv.stride,
        0,
        conv.dilation,
        conv.groups,
    )


def infer_padding(
    name: str, conv: nn.modules.conv._ConvNd, layer_input: Tensor
) -> Padding:
    """The zero padding ``conv`` applies to inputs shaped like ``layer_input``.

    Runs the module's own ``forward`` (without hooks, gradients or any change to
    the module) on a fixed random probe shaped like one example of
    ``layer_input``, and returns the first padding, among those consistent with
    the input and output sizes, whose convolution of the zero-padded probe with
    the module's weight, bias, stride, dilation and groups reproduces it.  A
    random probe, not the data, so that the answer is unique (an input with a
    zero border, e.g. a black baseline, fits several paddings).

    Raises:
        ValueError: naming the layer, if no padding does (e.g. a forward that
            pads with other values or transforms its weight).
    """
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(
        (1, *layer_input.shape[1:]), generator=generator, dtype=torch.float64
    ).to(dtype=layer_input.dtype, device=layer_input.device)
    spatial = len(conv.kernel_size)
    with torch.no_grad():
        expected = type(conv).forward(conv, probe)
        candidates = _padding_candidates(
            conv, probe.shape[-spatial:], expected.shape[-spatial:]
        )
        tolerance = 1e-10 if expected.dtype == torch.float64 else 1e-4
        scale = max(float(expected.abs().max()), 1e-30)
        for padding in candidates:
            got = _convolve(conv, probe, padding)
            if got.shape == expected.shape and torch.allclose(
                got, expected, rtol=tolerance, atol=tolerance * scale
            ):
                return padding
    raise ValueError(
        f"layer `{name}` ({type(conv).__name__}) replaces the convolution's forward, "
        "and its output is not a zero-padded convolution of its input with its own "
        f"weight for any padding that gives its output size (tried {candidates}); "
        "patterns are not supported for it"
    )


class ConvPaddings:
    """The padding each patterned conv applies, per input size, verified once.

    A stock convolution applies its declared padding.  For one that replaces its
    ``forward``, the padding is inferred and verified (:func:`infer_padding`) the
    first time each input size is seen, and remembered.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, tuple[int, ...]], Padding] = {}

    def __call__(
        self, name: str, module: nn.Module, layer_input: Tensor
    ) -> Padding | None:
        """The padding of ``module`` for ``layer_input`` (``None`` for a Linear)."""
        if not isinstance(module, nn.modules.conv._ConvNd):
            return None
        if not pads_in_forward(module):
            return declared_padding(module)
        key = (name, tuple(layer_input.shape[1:]))
        padding = self._known.get(key)
        if padding is None:
            padding = infer_padding(name, module, layer_input)
            self._known[key] = padding
        return padding


# ---------------------------------------------------------------- products


def input_gradient(
    module: nn.Module,
    weight: Tensor,
    grad_output: Tensor,
    input_shape: torch.Size,
    padding: Padding | None = None,
) -> Tensor:
    """``weight^T grad_output``: the input gradient of ``module`` with ``weight``.

    ``padding`` (for a conv; default its declared padding) is the zero padding
    the convolution applied; an asymmetric one is handled by taking the gradient
    with respect to the padded input and cropping it.
    """
    if isinstance(module, nn.Linear):
        return grad_output @ weight
    assert isinstance(module, nn.modules.conv._ConvNd)
    padding = declared_padding(module) if padding is None else padding
    spatial = len(module.kernel_size)
    conv_input = _CONV_INPUT_GRADIENT[spatial]
    if is_symmetric(padding):
        padded_shape, symmetric = list(input_shape), [b for b, _ in padding]
    else:
        sizes = input_shape[-spatial:]
        padded_shape = list(input_shape[:-spatial]) + [
            n + b + a for n, (b, a) in zip(sizes, padding)
        ]
        symmetric = [0] * spatial
    grad_input = conv_input(
        padded_shape,
        weight,
        grad_output,
        stride=module.stride,
        padding=symmetric,
        dilation=module.dilation,
        groups=module.groups,
    )
    if is_symmetric(padding):
        return grad_input
    for dim, (n, (before, _)) in enumerate(zip(input_shape[-spatial:], padding)):
        grad_input = grad_input.narrow(dim - spatial, before, n)
    return grad_input


#: Convolutions with at most this many output positions per example take their
#: weight products as one matrix product over explicitly unfolded patches:
#: there the patches are small, and oneDNN's weight-gradient kernel measured 1.5
#: to 2.5 times slower than the matrix product on ResNet-18's 7x7 and 4x4 layers
#: (``benchmarks/bench_pgig.py``).
UNFOLD_MAX_POSITIONS = 64
#: Bytes of unfolded patches per chunk of examples on that path (small enough
#: for the allocator to reuse, large enough for efficient matrix products).
UNFOLD_CHUNK_BYTES = 16 * 2**20
#: Elements per temporary when products are added into an accumulator: small
#: enough (8 MiB in float64) for the allocator to reuse the memory, where a
#: weight-sized temporary would map fresh pages, and fault on them, every batch
#: (measured: 23M elements added in 0.07 s in such chunks, 0.3 s at once); large
#: enough to keep the number of small operations low.
ADD_CHUNK = 2**20


class Workspace:
    """Memory reused across layers and batches for per-batch temporaries.

    A fresh activation- or weight-sized tensor per layer and batch is mapped and
    faulted in anew each time (large allocations bypass the allocator's free
    lists); one buffer per purpose, grown to the largest request, is not.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def empty(self, purpose: str, shape: Sequence[int], like: Tensor) -> Tensor:
        """An uninitialized tensor of ``shape``, ``like``'s dtype and device."""
        numel = _numel(shape)
        buffer = self._buffers.get(purpose)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = self._buffers[purpose] = like.new_empty(numel)
        return buffer[:numel].view(tuple(shape))


def weight_products(
    module: nn.Module,
    layer_input: Tensor,
    signal: Tensor,
    padding: Padding | None = None,
    out: Tensor | None = None,
    workspace: Workspace | None = None,
) -> Tensor:
    """``sum_samples signal_o x^T`` for every channel ``o`` of ``signal``.

    ``signal`` is shaped like the layer's output except for its channel count,
    a multiple of the layer's ``groups``; channel ``o`` of group ``g`` is paired
    with the input patches of group ``g``.  A sample is one row of a Linear
    layer's input, one (example, output position) pair of a conv.  The result has
    one row per channel of ``signal``, each shaped like one unit's weight: the
    weight gradient of a layer with that many outputs.  A conv's patches are
    unfolded only where they are small (at most :data:`UNFOLD_MAX_POSITIONS`
    output positions, in chunks of :data:`UNFOLD_CHUNK_BYTES`).

    Args:
        out: If given, a contiguous tensor of the result's shape (e.g. a float64
            accumulator) that the products are added to, a few rows at a time.
        workspace: Where the products are computed before being added to ``out``.
    """
    if isinstance(module, nn.Linear):
        rows = signal.reshape(-1, signal.shape[-1])
        x = layer_input.reshape(-1, layer_input.shape[-1])
        shape = (rows.shape[1], x.shape[1])
        return _added(torch.mm(rows.T, x, out=_scratch(workspace, shape, x)), out)
    assert isinstance(module, nn.modules.conv._ConvNd)
    padding = declared_padding(module) if padding is None else padding
    if is_symmetric(padding):
        x, symmetric = layer_input, [b for b, _ in padding]
    else:
        x, symmetric = pad_input(layer_input, padding), [0] * len(padding)
    weight_shape = (signal.shape[1], *layer_weight(module).shape[1:])
    positions = signal[0, 0].numel()
    if (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and positions <= UNFOLD_MAX_POSITIONS
    ):
        products = _unfolded_products(
            module, x, signal, symmetric, weight_shape, workspace
        )
    else:
        products = _CONV_WEIGHT_GRADIENT[len(module.kernel_size)](
            x,
            weight_shape,
            signal,
            stride=module.stride,
            padding=symmetric,
            dilation=module.dilation,
            groups=module.groups,
        )
    return _added(products, out)


def _scratch(workspace: Workspace | None, shape: Sequence[int], like: Tensor) -> Tensor:
    if workspace is None:
        return like.new_empty(tuple(shape))
    return workspace.empty("products", shape, like)


def _added(products: Tensor, out: Tensor | None) -> Tensor:
    """``out += products`` a few rows at a time (``products`` if ``out`` is None).

    Rows at a time: a dtype-converting add makes a temporary copy, and a
    weight-sized one would be faulted in anew every batch.
    """
    if out is None:
        return products
    rows = out.view(products.shape[0], -1)
    products = products.reshape(rows.shape)
    step = max(1, ADD_CHUNK // rows.shape[1])
    for start in range(0, rows.shape[0], step):
        rows[start : start + step].add_(products[start : start + step])
    return out


def _unfolded_products(
    conv: nn.Conv2d,
    x: Tensor,
    signal: Tensor,
    padding: Sequence[int],
    weight_shape: tuple[int, ...],
    workspace: Workspace | None,
) -> Tensor:
    """The weight products of an ungrouped 2-D conv as matrix products of patches."""
    channels, patch = signal.shape[1], _numel(weight_shape[1:])
    positions = signal[0, 0].numel()
    chunk = max(1, UNFOLD_CHUNK_BYTES // (patch * positions * x.element_size()))
    total = _scratch(workspace, (channels, patch), signal).zero_()
    for start in range(0, x.shape[0], chunk):
        patches = F.unfold(
            x[start : start + chunk],
            conv.kernel_size,
            conv.dilation,
            tuple(padding),
            conv.stride,
        )  # (n, patch, positions)
        rows = signal[start : start + chunk].flatten(2)  # (n, channels, positions)
        total.addmm_(
            rows.transpose(0, 1).reshape(channels, -1),
            patches.transpose(0, 1).reshape(patch, -1).T,
        )
    return total.view(weight_shape)


def _numel(shape: Sequence[int]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def layer_groups(module: nn.Module) -> int:
    """The number of channel groups of a conv (1 for a Linear layer)."""
    return int(getattr(module, "groups", 1))


__all__ = [
    "PATTERNED_LAYER_TYPES",
    "ConvPaddings",
    "Padding",
    "Workspace",
    "apply_batchnorm",
    "batchnorm_scale",
    "check_patterned_layer",
    "declared_padding",
    "effective_weight",
    "infer_padding",
    "input_gradient",
    "is_symmetric",
    "layer_groups",
    "layer_weight",
    "pad_input",
    "pads_in_forward",
    "weight_products",
]
