"""Every source of reference examples, drawn one way.

Expected Gradients and ``baselines.from_data`` draw references ``x'`` for each
example from a *source*:

- a tensor of references ``(M, *example_shape)`` (a tuple of such tensors for a
  multi-input model; reference ``m`` is the tuple of their ``m``-th rows), or a
  number or one example's tensor (a pool of one);
- a map-style ``Dataset``, or a ``DataLoader`` over one: only the items drawn are
  read, a block of draws at a time, through the loader's ``collate_fn``;
- a source without random access (an ``IterableDataset``, a ``DataLoader`` over
  one, any iterable of batches): read once, keeping a uniform subset of the
  references needed (reservoir sampling);
- a callable ``(inputs, n_samples=..., generator=...)`` returning per-example
  draws ``(n_samples, *inputs.shape)`` (e.g. ``functools.partial(
  cb.baselines.gaussian, sigma=0.5)``).

Items and batches may be ``(x, y, ...)`` tuples: ``x`` is the reference (a tuple
of tensors for a multi-input model).  Each example's draws repeat no reference
while the source has enough of them; beyond that every reference is used equally
often.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from ._engine.inputs import format_reference_pool
from ._validation import check_finite, check_positive_int

#: Draws per example read or made at a time.  Fixed, so that the random stream
#: (and hence the result) does not depend on ``internal_batch_size``.
DRAWS_PER_BLOCK = 16

ReferenceSource = (
    Tensor
    | tuple[Tensor, ...]
    | Dataset[Any]
    | DataLoader[Any]
    | Iterable[Any]
    | Callable[..., Tensor | tuple[Tensor, ...]]
)


@dataclass(frozen=True)
class ReferenceBlock:
    """Draws ``draws`` of every example: example ``n``'s ``j``-th draw of the block
    is ``pool[index[n, j]]``."""

    pool: tuple[Tensor, ...]
    index: Tensor
    draws: slice


def draw_without_replacement(
    population: int,
    n_examples: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draws ``(n_examples, n_samples)`` indices into ``range(population)``.

    Each row repeats no index when ``n_samples <= population``; beyond that every
    index is used ``n_samples // population`` times before any is used once more.
    """
    check_positive_int("population", population)
    rows = []
    for _ in range(n_examples):
        chunks = []
        remaining = n_samples
        while remaining > 0:
            perm = torch.randperm(population, generator=generator)
            chunks.append(perm[:remaining])
            remaining -= len(chunks[-1])
        rows.append(torch.cat(chunks))
    return torch.stack(rows).to(device)


def unpack_example(item: Any, n_inputs: int, name: str = "baselines") -> Any:
    """The reference in an item or a collated batch: the item itself, or its first
    element for ``(x, y, ...)`` tuples (a tuple of tensors for a multi-input model).
    """
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (tuple, list)) and item:
        first = item[0]
        if isinstance(first, (tuple, list)):
            return tuple(first)
        if n_inputs == 1:
            return first
        return tuple(item[:n_inputs])
    raise TypeError(
        f"`{name}` must yield tensors or (x, y) tuples, got {type(item).__name__}"
    )


def reservoir_sample(
    batches: Iterable[tuple[Tensor, ...]],
    capacity: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, ...]:
    """A uniform random subset of at most ``capacity`` examples from a stream.

    ``batches`` yields tuples of tensors sharing their first (example) dimension;
    the examples kept are those with the ``capacity`` smallest random keys, which
    is a uniform draw without replacement, in random order. Memory stays within a
    few times ``capacity`` examples whatever the length of the stream.
    """
    kept: list[tuple[Tensor, ...]] = []
    keys: list[Tensor] = []
    held = 0
    for batch in batches:
        kept.append(batch)
        keys.append(torch.rand(batch[0].shape[0], generator=generator))
        held += batch[0].shape[0]
        if held > 4 * max(capacity, 64):
            best, best_keys = _smallest_keys(kept, keys, capacity)
            kept, keys, held = [best], [best_keys], len(best_keys)
    if held == 0:
        return ()
    return _smallest_keys(kept, keys, capacity)[0]


def _smallest_keys(
    kept: list[tuple[Tensor, ...]], keys: list[Tensor], capacity: int
) -> tuple[tuple[Tensor, ...], Tensor]:
    all_keys = torch.cat(keys)
    best = torch.argsort(all_keys)[:capacity]
    columns = tuple(torch.cat(column) for column in zip(*kept))
    return tuple(c[best.to(c.device)] for c in columns), all_keys[best]


def reference_blocks(
    source: Any,
    inputs: tuple[Tensor, ...],
    n_samples: int,
    generator: torch.Generator | None = None,
    name: str = "baselines",
    allow_callable: bool = True,
) -> Iterator[ReferenceBlock]:
    """The references of every (example, draw), :data:`DRAWS_PER_BLOCK` draws at a
    time.  Checks ``source`` eagerly, before anything is drawn or evaluated.
    """
    n = inputs[0].shape[0]
    if isinstance(source, DataLoader) and not isinstance(
        source.dataset, IterableDataset
    ):
        collate = source.collate_fn if source.batch_size is not None else None
        return _dataset_blocks(
            source.dataset, collate, inputs, n_samples, generator, name
        )
    if isinstance(source, Dataset) and not isinstance(source, IterableDataset):
        return _dataset_blocks(source, None, inputs, n_samples, generator, name)
    data_only = not allow_callable
    if data_only and (
        isinstance(source, (str, bytes)) or not isinstance(source, (Tensor, Iterable))
    ):
        raise TypeError(
            f"`{name}` must be a tensor, a Dataset, a DataLoader or an iterable of "
            f"batches, got {type(source).__name__}"
        )
    if source is None or isinstance(source, (Tensor, tuple, int, float, str, bytes)):
        pool = format_reference_pool(source, inputs, name)
    elif callable(source) and not isinstance(source, (DataLoader, Iterable)):
        return _distribution_blocks(source, inputs, n_samples, generator, name)
    elif isinstance(source, Iterable):
        pool = _reservoir_pool(source, inputs, n_samples, generator, name)
    else:
        raise TypeError(
            f"`{name}` must be a tensor (or tuple of tensors) of references, a "
            "Dataset, a DataLoader, an iterable of batches or a callable "
            f"(inputs, n_samples, generator), got {type(source).__name__}"
        )
    index = draw_without_replacement(len(pool[0]), n, n_samples, generator)
    return _pool_blocks(pool, index)


def _pool_blocks(pool: tuple[Tensor, ...], index: Tensor) -> Iterator[ReferenceBlock]:
    for start in range(0, index.shape[1], DRAWS_PER_BLOCK):
        draws = slice(start, start + DRAWS_PER_BLOCK)
        yield ReferenceBlock(pool, index[:, draws], draws)


def _dataset_blocks(
    dataset: Any,
    collate: Callable[[list[Any]], Any] | None,
    inputs: tuple[Tensor, ...],
    n_samples: int,
    generator: torch.Generator | None,
    name: str,
) -> Iterator[ReferenceBlock]:
    size = len(dataset)
    if size == 0:
        raise ValueError(f"`{name}` is an empty dataset: it holds no references")
    index = draw_without_replacement(size, inputs[0].shape[0], n_samples, generator)

    def read(items: list[Any]) -> tuple[Tensor, ...]:
        if collate is not None:
            batch = unpack_example(collate(items), len(inputs), name)
        else:
            unpacked = [unpack_example(i, len(inputs), name) for i in items]
            batch = default_collate(unpacked)
        return format_reference_pool(batch, inputs, name)

    def blocks() -> Iterator[ReferenceBlock]:
        for start in range(0, n_samples, DRAWS_PER_BLOCK):
            draws = slice(start, start + DRAWS_PER_BLOCK)
            needed, local = torch.unique(index[:, draws], return_inverse=True)
            pool = read([dataset[i] for i in needed.tolist()])
            yield ReferenceBlock(pool, local, draws)

    return blocks()


def _reservoir_pool(
    source: Iterable[Any],
    inputs: tuple[Tensor, ...],
    capacity: int,
    generator: torch.Generator | None,
    name: str,
) -> tuple[Tensor, ...]:
    """A uniform subset of ``capacity`` references from one pass over ``source``."""
    collated = isinstance(source, DataLoader) or not isinstance(source, Dataset)

    def batches() -> Iterator[tuple[Tensor, ...]]:
        for item in source:
            batch = unpack_example(item, len(inputs), name)
            if not collated:
                batch = default_collate([batch])
            yield format_reference_pool(batch, inputs, name)

    pool = reservoir_sample(batches(), capacity, generator)
    if not pool:
        raise ValueError(f"`{name}` yielded no references: it is empty")
    return pool


def _distribution_blocks(
    draw: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    n_samples: int,
    generator: torch.Generator | None,
    name: str,
) -> Iterator[ReferenceBlock]:
    """Calls a per-example distribution for :data:`DRAWS_PER_BLOCK` draws at a time."""
    n = inputs[0].shape[0]
    for start in range(0, n_samples, DRAWS_PER_BLOCK):
        width = min(DRAWS_PER_BLOCK, n_samples - start)
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
                f"a callable `{name}` must return (n_samples, *inputs.shape) draws "
                f"per input, n_samples={width}; got {got}"
            )
        for d in draws:
            check_finite(f"{name} draws", d)
        pool = tuple(
            d.detach()
            .to(device=x.device, dtype=x.dtype)
            .reshape(width * n, *x.shape[1:])
            for d, x in zip(draws, inputs, strict=True)
        )
        # pool row (j, n) -> j * n_examples + n
        index = torch.arange(width) * n + torch.arange(n)[:, None]
        yield ReferenceBlock(pool, index, slice(start, start + width))


def draw_references(
    source: Any,
    inputs: tuple[Tensor, ...],
    n_samples: int,
    generator: torch.Generator | None = None,
    name: str = "data",
) -> tuple[Tensor, ...]:
    """``(N, n_samples, *example_shape)`` references per input, drawn per example."""
    gathered: list[list[Tensor]] = [[] for _ in inputs]
    for block in reference_blocks(
        source, inputs, n_samples, generator, name, allow_callable=False
    ):
        for column, p in zip(gathered, block.pool):
            column.append(p[block.index.to(p.device)])
    return tuple(torch.cat(column, dim=1) for column in gathered)


__all__ = [
    "DRAWS_PER_BLOCK",
    "ReferenceBlock",
    "ReferenceSource",
    "draw_references",
    "draw_without_replacement",
    "reference_blocks",
    "reservoir_sample",
    "unpack_example",
]
