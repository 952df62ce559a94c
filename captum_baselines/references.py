"""Sources of reference examples: draws without replacement and a reservoir."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ._validation import check_positive_int


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
